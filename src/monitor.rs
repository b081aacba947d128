//! The monitor thread: samples CPU (against the CPU limit) and RSS every second
//! and sets the admission flags.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::shared::Shared;
use crate::sysinfo;

const PERIOD: Duration = Duration::from_secs(1);

pub fn run(shared: &Shared) {
    let mut last_cpu = sysinfo::process_cpu_time();
    let mut last_at = Instant::now();
    loop {
        std::thread::sleep(PERIOD);
        let (cpu, at) = (sysinfo::process_cpu_time(), Instant::now());
        let wall = at.duration_since(last_at).as_secs_f64();
        let cfg = shared.config();
        let used = cpu.saturating_sub(last_cpu).as_secs_f64();
        let percent = if wall > 0.0 {
            used / wall / cfg.cpu_limit * 100.0
        } else {
            0.0
        };
        (last_cpu, last_at) = (cpu, at);
        let rss = sysinfo::process_rss_bytes();
        let m = &shared.metrics;
        m.cpu_percent_x100.store((percent * 100.0) as u64, Relaxed);
        m.rss_bytes.store(rss, Relaxed);
        shared
            .cpu_over
            .store(percent >= cfg.cpu_reject_threshold, Relaxed);
        shared.memory_over.store(rss >= cfg.memory_limit, Relaxed);
        shared
            .intake_paused
            .store(percent >= cfg.cpu_pause_threshold, Relaxed);
        // History ages out even while nothing new arrives.
        shared.history().evict(at);
    }
}
