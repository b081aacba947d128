//! State every thread reads: the config, counters, the ring, admission flags and
//! the handles of the workers.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use mio::Waker;
use mio::net::TcpStream;

use crate::broadcast::{Broadcast, MessageBody};
use crate::config::Config;
use crate::history::{self, History};
use crate::intake::{JetStreamHealth, StreamReads};
use crate::metrics::{Metrics, Refusal, Reject};
use crate::publish_queue::{self, PublishQueue};
use crate::ring::Ring;

/// Sockets waiting for one worker; the acceptor refuses more than this.
pub const HANDOFF_CAPACITY: usize = 65_536;

/// How long a JetStream instance may report `starting` (503) while it refills
/// history from the stream: past it /health answers as usual, so a broken stream
/// does not keep the instance out of service.
pub const STARTING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// At most one log line per this many ms about refused broadcasts.
const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NatsState {
    Disabled = 0,
    Connected = 1,
    Reconnecting = 2,
}

impl NatsState {
    pub fn as_str(self) -> &'static str {
        match self {
            NatsState::Disabled => "disabled",
            NatsState::Connected => "connected",
            NatsState::Reconnecting => "reconnecting",
        }
    }
}

/// The drain's schedule, shared so workers spread closes evenly between them.
#[derive(Default)]
pub struct Drain {
    pub started: OnceLock<Instant>,
    /// WebSocket connections open when the drain began.
    pub total: AtomicUsize,
    /// The next close slot, 0..total.
    pub next_slot: AtomicUsize,
}

/// The acceptor's and the main thread's line to one worker.
pub struct WorkerHandle {
    pub waker: Waker,
    pub inbox: Mutex<Vec<TcpStream>>,
    /// Sockets owned (handed over and not yet closed): the acceptor picks the lowest.
    pub load: AtomicUsize,
    pub queued_bytes: AtomicU64,
    pub ring_lag: AtomicU64,
    /// This worker's write hold (µs), published once a second.
    pub write_hold_us: AtomicU64,
}

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub metrics: Metrics,
    pub ring: Ring,
    pub workers: Vec<WorkerHandle>,
    draining: AtomicBool,
    pub drain: Drain,
    /// Set by the monitor thread from CPU and memory samples.
    pub cpu_over: AtomicBool,
    pub memory_over: AtomicBool,
    /// Set by the monitor thread while CPU >= WS_CPU_PAUSE_THRESHOLD.
    pub intake_paused: AtomicBool,
    nats: AtomicU8,
    /// The NATS connection once the first connect succeeded; POST /publish uses it.
    #[allow(deprecated)] // the sync client, by design
    pub nats_conn: OnceLock<nats::Connection>,
    /// JetStream's own state, apart from the connection's (intake::js_watch sets it).
    pub jetstream: JetStreamHealth,
    /// POST /publish messages on their way to NATS (NATS mode only).
    pub publish_queue: PublishQueue,
    /// When (ms since `started`) a refused broadcast was last logged, plus one.
    refusal_logged_ms: AtomicU64,
    /// WebSocket connections whose socket is still open (closing ones included):
    /// the drain waits for it to reach zero.
    pub live_ws: AtomicUsize,
    pub started: Instant,
    pub instance: String,
    /// Recent broadcasts per channel for resume and snapshots. Producers take it
    /// before the ring's lock, so history and ring agree on the order.
    pub history: Mutex<History>,
    /// The sequence space of `seq` that `welcome` announces (docs/protocol.md).
    epoch: RwLock<Arc<str>>,
    /// JetStream mode until history is refilled from the stream: /health says
    /// `starting` (503) meanwhile, for at most STARTING_DEADLINE.
    starting: AtomicBool,
    /// Resumes and snapshots memory cannot answer, on their way to the JetStream
    /// stream and back (intake::stream_read).
    pub stream_reads: StreamReads,
}

impl Shared {
    pub fn new(config: Config, workers: Vec<WorkerHandle>, instance: String) -> Shared {
        let workers_len = workers.len();
        let nats = if config.nats_urls.is_empty() {
            NatsState::Disabled
        } else {
            NatsState::Reconnecting
        };
        let jetstream = config.nats_jetstream && !config.nats_urls.is_empty();
        let cfg_history = (
            config.history_size,
            config.history_ttl,
            config.history_bytes,
        );
        // Core mode: `seq` counts from 1 in every process, so each start is a new
        // epoch. JetStream mode learns the stream's own when it connects.
        let epoch = if config.nats_jetstream {
            String::new()
        } else {
            process_epoch()
        };
        Shared {
            ring: Ring::new(config.worker_queue_size, config.ring_bytes),
            config: RwLock::new(Arc::new(config)),
            metrics: Metrics::default(),
            workers,
            draining: AtomicBool::new(false),
            drain: Drain::default(),
            cpu_over: AtomicBool::new(false),
            memory_over: AtomicBool::new(false),
            intake_paused: AtomicBool::new(false),
            nats: AtomicU8::new(nats as u8),
            nats_conn: OnceLock::new(),
            jetstream: JetStreamHealth::new(jetstream),
            publish_queue: PublishQueue::new(publish_queue::MAX_MESSAGES, publish_queue::MAX_BYTES),
            refusal_logged_ms: AtomicU64::new(0),
            live_ws: AtomicUsize::new(0),
            started: Instant::now(),
            instance,
            history: Mutex::new(History::new(history::Limits {
                per_channel: cfg_history.0,
                ttl: cfg_history.1,
                bytes: cfg_history.2,
            })),
            epoch: RwLock::new(epoch.into()),
            starting: AtomicBool::new(jetstream),
            stream_reads: StreamReads::new(workers_len),
        }
    }

    /// The epoch clients resume in; "" while unknown (JetStream before the stream
    /// is known).
    pub fn epoch(&self) -> Arc<str> {
        Arc::clone(&self.epoch.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_epoch(&self, epoch: &str) {
        *self.epoch.write().unwrap_or_else(|e| e.into_inner()) = epoch.into();
    }

    /// Whether /health should still say `starting`: history is being refilled
    /// and STARTING_DEADLINE has not passed.
    pub fn is_starting(&self) -> bool {
        self.starting.load(Ordering::Acquire) && self.started.elapsed() < STARTING_DEADLINE
    }

    pub fn finish_starting(&self) {
        self.starting.store(false, Ordering::Release);
    }

    pub fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    pub fn nats_state(&self) -> NatsState {
        match self.nats.load(Ordering::Relaxed) {
            1 => NatsState::Connected,
            2 => NatsState::Reconnecting,
            _ => NatsState::Disabled,
        }
    }

    pub fn set_nats_state(&self, state: NatsState) {
        self.nats.store(state as u8, Ordering::Relaxed);
        let up = u64::from(state == NatsState::Connected);
        self.metrics.nats_connected.store(up, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the drain: the schedule first, then the flag the workers look at.
    pub fn start_drain(&self) {
        let _ = self.drain.started.set(Instant::now());
        let open = self.metrics.connections.load(Ordering::Relaxed) as usize;
        self.drain.total.store(open, Ordering::Relaxed);
        self.draining.store(true, Ordering::Release);
        self.wake_workers();
    }

    /// Why a new WebSocket would be refused right now, if it would.
    pub fn admission_closed(&self) -> Option<Reject> {
        if self.is_draining() {
            Some(Reject::Draining)
        } else if self.metrics.connections.load(Ordering::Relaxed)
            >= self.config().max_connections as u64
        {
            Some(Reject::MaxConnections)
        } else if self.cpu_over.load(Ordering::Relaxed) {
            Some(Reject::Cpu)
        } else if self.memory_over.load(Ordering::Relaxed) {
            Some(Reject::Memory)
        } else {
            None
        }
    }

    /// Puts a message into the ring without waking the workers (the caller wakes
    /// them once per batch). `seq` is the JetStream stream sequence, or `None` for
    /// the instance's own counter (ring position + 1).
    pub fn push_broadcast(
        &self,
        channel: &str,
        body: MessageBody,
        received_at: Instant,
        seq: Option<u64>,
    ) {
        let mut history = self.history();
        let appended = self.ring.push_with(|pos| {
            Broadcast::new(pos, seq.unwrap_or(pos + 1), channel, body, received_at)
        });
        history.insert(&appended.broadcast, Instant::now());
        drop(history);
        let m = &self.metrics;
        m.broadcasts.fetch_add(1, Ordering::Relaxed);
        m.ring_released
            .fetch_add(appended.released, Ordering::Relaxed);
        m.ring_bytes.store(appended.bytes as u64, Ordering::Relaxed);
    }

    /// The body of a NATS message (core or JetStream) when its frame fits
    /// WS_MAX_BROADCAST_SIZE; else `None`, counted and logged (rate-limited). A
    /// frame larger than a send queue would close every subscriber instead.
    pub fn admit_broadcast(&self, channel: &str, payload: &[u8]) -> Option<MessageBody> {
        let max = self.config().max_broadcast_size;
        // The encoded frame is never shorter than the payload: skip escaping it.
        if payload.len() <= max {
            let body = MessageBody::new(channel, payload);
            if body.max_frame_len() <= max {
                return Some(body);
            }
        }
        self.refuse_broadcast(Refusal::TooLarge, channel, payload.len());
        None
    }

    /// Counts a message that never reaches the ring, and logs it at most once per
    /// REFUSAL_LOG_INTERVAL_MS with the count so far.
    pub fn refuse_broadcast(&self, why: Refusal, channel: &str, payload_len: usize) {
        self.metrics.refuse(why);
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.refusal_logged_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms >= last + REFUSAL_LOG_INTERVAL_MS;
        if due
            && self
                .refusal_logged_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let limit = match why {
                Refusal::TooLarge => {
                    let max = self.config().max_broadcast_size;
                    format!("its frame is over WS_MAX_BROADCAST_SIZE={max}")
                }
                Refusal::IntakeChannels | Refusal::IntakeBytes => {
                    "the intake queue is full".to_string()
                }
            };
            log::warn!(
                "NATS message on {channel} ({payload_len} bytes) not broadcast: {limit} \
                 ({} so far: odin_ws_broadcasts_refused_total{{reason=\"{}\"}})",
                self.metrics.refused(why),
                why.as_str()
            );
        }
    }

    /// A message for this instance's clients only.
    pub fn broadcast_local(&self, channel: &str, body: MessageBody) {
        self.push_broadcast(channel, body, Instant::now(), None);
        self.wake_workers();
    }

    pub fn wake_workers(&self) {
        for w in &self.workers {
            if let Err(e) = w.waker.wake() {
                log::error!("cannot wake a worker: {e}");
            }
        }
    }
}

/// A new epoch for this process: its start time and pid, in hex.
fn process_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}
