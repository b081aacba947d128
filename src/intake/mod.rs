//! The NATS intake thread: connects (retrying, reconnecting without limit),
//! takes messages from core NATS subscriptions or a durable JetStream pull
//! consumer, and feeds the broadcast ring within the configured rates.
//!
//! The `nats` crate is the synchronous client the design asks for (no async
//! runtime); upstream marks it deprecated in favour of async-nats.
#![allow(deprecated)]

mod connect;
mod core;
mod jetstream;
mod pending;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub use pending::{Incoming, Pending, Queued};

use crate::config::Config;
use crate::shared::Shared;

/// Starts the intake thread when NATS_URL is set; standalone otherwise.
pub fn start(shared: Arc<Shared>) -> Result<(), String> {
    if shared.config().nats_urls.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("nats-intake".into())
        .spawn(move || run(&shared))
        .map(|_| ())
        .map_err(|e| format!("cannot start the NATS intake thread: {e}"))
}

fn run(shared: &Arc<Shared>) {
    let conn = connect::connect(shared);
    let _ = shared.nats_conn.set(conn.clone());
    // /health turns `connected` once the subscriptions or the consumer are live.
    if shared.config().nats_jetstream {
        jetstream::run(shared, &conn);
    } else {
        core::run(shared, &conn);
    }
}

/// Messages per second the intake may hand to the ring: the tighter of the two
/// limits, 0 when neither is set.
pub fn effective_rate(cfg: &Config) -> u32 {
    match (cfg.max_nats_rate, cfg.max_broadcast_rate) {
        (0, b) => b,
        (n, 0) => n,
        (n, b) => n.min(b),
    }
}

/// Tracks CPU pauses of the intake: logs each one and its length, keeps the metrics.
#[derive(Default)]
struct PauseTracker {
    since: Option<Instant>,
}

impl PauseTracker {
    /// Whether intake must pause now.
    fn update(&mut self, shared: &Shared) -> bool {
        let paused = shared.intake_paused.load(Relaxed);
        let m = &shared.metrics;
        match (self.since, paused) {
            (None, true) => {
                let cfg = shared.config();
                log::warn!(
                    "NATS intake paused: CPU {:.1}% of the limit >= WS_CPU_PAUSE_THRESHOLD {}%",
                    m.cpu_percent(),
                    cfg.cpu_pause_threshold
                );
                m.intake_pauses.fetch_add(1, Relaxed);
                m.intake_paused.store(1, Relaxed);
                self.since = Some(Instant::now());
            }
            (Some(since), false) => {
                let length = since.elapsed();
                log::info!(
                    "NATS intake resumed after a pause of {:.1}s",
                    length.as_secs_f64()
                );
                m.intake_paused_ms
                    .fetch_add(length.as_millis() as u64, Relaxed);
                m.intake_paused.store(0, Relaxed);
                self.since = None;
            }
            _ => {}
        }
        paused
    }
}
