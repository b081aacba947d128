//! The load run: one mio reactor that ramps clients up at RAMP_RATE, enforces
//! CONNECTION_TIMEOUT, holds them for DURATION after the ramp, and counts.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::client::{Client, Ctx, Interner, Phase, io_reason};
use crate::inflate::Inflated;
use crate::net;
use crate::resume;
use crate::settings::LoadSettings;
use crate::stats::Stats;

/// Longest poll wait, so a stop signal is seen promptly.
const TICK: Duration = Duration::from_millis(100);
/// Most connects started in one turn, so reads are not starved during a fast ramp.
const MAX_STARTS_PER_TURN: u32 = 500;
/// After the last attempt, how long subscription acks may take beyond the timeout.
const ACK_GRACE: Duration = Duration::from_secs(5);
const SCRATCH: usize = 256 * 1024;
const EVENTS: usize = 4096;

pub struct Outcome {
    pub stats: Stats,
    pub elapsed: Duration,
    /// From start to the end of the ramp (every attempt settled).
    pub ramp: Option<Duration>,
    /// From the end of the ramp to the end.
    pub hold: Duration,
    pub open_at_end: u64,
    pub stopped_by: &'static str,
    /// CPU seconds (user + system) this process used, to tell whether the tool
    /// itself was the bottleneck.
    pub tool_cpu_s: f64,
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

struct Run<'s> {
    s: &'s LoadSettings,
    poll: Poll,
    clients: Vec<Option<Client>>,
    stats: Stats,
    interner: Interner,
    inflated: Inflated,
    start: Instant,
    /// Attempts started so far.
    started: u32,
    /// Clients not yet subscribed nor closed.
    awaiting: u32,
    /// Connect deadlines in start order (the timeout is the same for all).
    deadlines: VecDeque<(Instant, u32)>,
    scratch: Vec<u8>,
    /// Set at the end of the ramp: the slow clients stop reading.
    slow_stopped: bool,
    /// RECONNECT=resume: closed clients waiting to come back.
    reconnects: resume::Queue,
}

/// Runs the load; calls `on_ready` once at the end of the ramp and `on_progress`
/// every PROGRESS_INTERVAL.
pub fn run(
    s: &LoadSettings,
    stop: &AtomicBool,
    on_ready: impl FnOnce(&Stats),
    mut on_progress: impl FnMut(&Stats, Instant),
) -> io::Result<Outcome> {
    let mut run = Run {
        s,
        poll: Poll::new()?,
        clients: (0..s.target).map(|_| None).collect(),
        stats: Stats::default(),
        interner: Interner::default(),
        inflated: Inflated::default(),
        start: Instant::now(),
        started: 0,
        awaiting: 0,
        deadlines: VecDeque::new(),
        scratch: vec![0; SCRATCH],
        slow_stopped: false,
        reconnects: resume::Queue::new(s.ramp_rate, Instant::now()),
    };
    let mut events = Events::with_capacity(EVENTS);
    let mut on_ready = Some(on_ready);
    let mut ready_at: Option<Instant> = None;
    let mut next_progress = s.progress_interval.map(|p| run.start + p);
    let stopped_by;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            stopped_by = "signal";
            break;
        }
        if let (Some(due), Some(every)) = (next_progress, s.progress_interval)
            && now >= due
        {
            on_progress(&run.stats, now);
            next_progress = Some(due + every);
        }
        run.start_due(now);
        run.start_reconnects(now);
        run.expire(now);
        if ready_at.is_none() && run.ramp_done(now) {
            ready_at = Some(now);
            run.stop_slow_readers();
            if let Some(f) = on_ready.take() {
                f(&run.stats);
            }
        }
        let end = ready_at.map(|r| r + s.duration);
        if end.is_some_and(|e| now >= e) {
            stopped_by = "duration";
            break;
        }
        if s.stop_after_messages > 0 && run.stats.messages >= s.stop_after_messages {
            stopped_by = "stop_after_messages";
            break;
        }
        let mut wait = TICK;
        if run.started < s.target {
            wait = wait.min(run.next_start_at().saturating_duration_since(now));
        }
        if let Some(&(d, _)) = run.deadlines.front() {
            wait = wait.min(d.saturating_duration_since(now));
        }
        if let Some(at) = run.reconnects.next_at() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(e) = end {
            wait = wait.min(e.saturating_duration_since(now));
        }
        if let Err(e) = run.poll.poll(&mut events, Some(wait)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            run.on_event(ev.token().0 as u32);
        }
    }
    let end = Instant::now();
    run.drain_slow_readers();
    let open_at_end = run
        .clients
        .iter()
        .filter(|c| c.as_ref().is_some_and(|c| c.phase == Phase::Open))
        .count() as u64;
    Ok(Outcome {
        elapsed: end.duration_since(run.start),
        ramp: ready_at.map(|r| r.duration_since(run.start)),
        hold: ready_at.map(|r| end.duration_since(r)).unwrap_or_default(),
        open_at_end,
        stopped_by,
        tool_cpu_s: own_cpu_seconds(),
        stats: run.stats,
    })
}

impl Run<'_> {
    fn next_start_at(&self) -> Instant {
        self.start + Duration::from_secs_f64(f64::from(self.started) / self.s.ramp_rate)
    }

    /// Starts every connection whose time in the ramp has come.
    fn start_due(&mut self, now: Instant) {
        let mut n = 0;
        while self.started < self.s.target && self.next_start_at() <= now && n < MAX_STARTS_PER_TURN
        {
            self.start_one(self.started, now);
            self.started += 1;
            n += 1;
        }
    }

    fn start_one(&mut self, i: u32, now: Instant) {
        let since = now.duration_since(self.start);
        self.stats.attempted += 1;
        self.stats.window(since).attempted += 1;
        let source =
            (!self.s.sources.is_empty()).then(|| self.s.sources[i as usize % self.s.sources.len()]);
        let stream = match self.connect(i, source) {
            Ok(stream) => stream,
            Err(e) => return self.stats.fail(since, io_reason(&e)),
        };
        let mut client = Client::new(
            i,
            stream,
            now,
            self.s.subscriptions(i),
            self.s.stops_reading(i),
            self.s.wire,
        );
        client.resume = self.s.reconnect;
        self.admit(i, client, now);
    }

    /// A connect started and its socket registered with epoll as client `i`.
    fn connect(&mut self, i: u32, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
        let mut stream = net::connect(self.s.url.addr, source)?;
        self.poll.registry().register(
            &mut stream,
            Token(i as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    /// Tracks a client whose socket is registered, with its connect deadline.
    fn admit(&mut self, i: u32, client: Client, now: Instant) {
        if client.awaiting {
            self.awaiting += 1;
        }
        self.deadlines
            .push_back((now + self.s.connection_timeout, i));
        self.clients[i as usize] = Some(client);
    }

    /// RECONNECT=resume: brings back the closed clients whose turn has come.
    fn start_reconnects(&mut self, now: Instant) {
        let mut n = 0;
        while n < MAX_STARTS_PER_TURN
            && let Some((i, carried)) = self.reconnects.pop_due(now)
        {
            n += 1;
            self.stats.resume.attempts += 1;
            let source = (!self.s.sources.is_empty())
                .then(|| self.s.sources[i as usize % self.s.sources.len()]);
            // A connect or an epoll registration that fails: again after the pause.
            let stream = match self.connect(i, source) {
                Ok(stream) => stream,
                Err(e) => {
                    self.retry(i, carried, now, io_reason(&e));
                    continue;
                }
            };
            let mut client =
                Client::new(i, stream, now, self.s.subscriptions(i), false, self.s.wire);
            client.carry_in(carried);
            self.admit(i, client, now);
        }
    }

    /// A reconnect that failed comes back after a pause.
    fn retry(&mut self, i: u32, carried: resume::Carried, now: Instant, reason: String) {
        let r = &mut self.stats.resume;
        r.retries += 1;
        *r.failures.entry(reason).or_default() += 1;
        self.reconnects.push(now + resume::RETRY_PAUSE, i, carried);
    }

    /// Fails the attempts still not upgraded at their deadline.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, i)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            // A reconnect reuses the index: only the current attempt's own deadline counts.
            let timeout = self.s.connection_timeout;
            let late = self.clients[i as usize]
                .as_ref()
                .is_some_and(|c| c.phase < Phase::Open && c.started + timeout <= now);
            if late {
                self.close(i, now, "timeout".into());
            }
        }
    }

    /// Every attempt made and settled (subscribed or closed), or the acks overdue.
    fn ramp_done(&self, now: Instant) -> bool {
        self.started == self.s.target
            && (self.awaiting == 0
                || now >= self.next_start_at() + self.s.connection_timeout + ACK_GRACE)
    }

    fn on_event(&mut self, i: u32) {
        let Some(client) = self.clients.get_mut(i as usize).and_then(Option::as_mut) else {
            return;
        };
        // A client that stopped reading leaves its bytes in the kernel.
        if self.slow_stopped && client.slow && client.phase == Phase::Open {
            return;
        }
        let now = Instant::now();
        let mut ctx = Ctx::new(
            &mut self.stats,
            &mut self.interner,
            &mut self.inflated,
            self.s.protocol,
            self.start,
            now,
        );
        let result = client.on_event(
            &self.s.url.host,
            &self.s.url.path,
            &mut self.scratch,
            &mut ctx,
        );
        if client.awaiting && client.subscribed {
            client.awaiting = false;
            self.awaiting -= 1;
        }
        if let Err(reason) = result {
            self.close(i, now, reason);
        }
    }

    /// From now on the STOP_READING_PERCENT clients ignore their readiness events.
    fn stop_slow_readers(&mut self) {
        self.slow_stopped = true;
        self.stats.slow.clients = self
            .clients
            .iter()
            .flatten()
            .filter(|c| c.slow && c.phase == Phase::Open)
            .count() as u64;
    }

    /// Reads once what the slow readers' kernel buffers hold: did the server keep
    /// them (and conflate) or close them?
    fn drain_slow_readers(&mut self) {
        if !self.slow_stopped {
            return;
        }
        let now = Instant::now();
        for slot in self.clients.iter_mut() {
            let Some(client) = slot.as_mut().filter(|c| c.slow && c.phase == Phase::Open) else {
                continue;
            };
            let mut ctx = Ctx::new(
                &mut self.stats,
                &mut self.interner,
                &mut self.inflated,
                self.s.protocol,
                self.start,
                now,
            );
            if client.read(&mut self.scratch, &mut ctx).is_err() {
                self.stats.slow.closed += 1;
                *slot = None;
            }
        }
    }

    fn close(&mut self, i: u32, now: Instant, reason: String) {
        let Some(client) = self.clients[i as usize].take() else {
            return;
        };
        if client.awaiting {
            self.awaiting -= 1;
        }
        if self.s.reconnect {
            // A reconnect that did not get as far as its subscription: again.
            if let Some(closed_at) = client.reconnect_from.filter(|_| !client.subscribed) {
                let carried = client.carry_out(closed_at);
                return self.retry(i, carried, now, reason);
            }
            if client.phase == Phase::Open {
                self.stats.resume.closed += 1;
                let since = now.duration_since(self.start);
                self.stats.drop_conn(since, reason);
                self.reconnects.push(now, i, client.carry_out(now));
                return;
            }
        }
        let since = now.duration_since(self.start);
        if client.phase == Phase::Open {
            self.stats.drop_conn(since, reason);
        } else {
            self.stats.fail(since, reason);
        }
    }
}
