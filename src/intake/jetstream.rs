//! JetStream: after `js_setup`, a durable pull consumer fetches JS_BATCH at a time
//! and each message is acked once it is in the ring, exactly once: a redelivery of
//! a sequence already there is acked and not re-sent (`Seen`), and a sequence that
//! skips ahead of the highest one first has the missing ones (deliveries lost with
//! a connection) fetched by sequence, so clients get them once and in order. Status
//! messages are control, never data. A backlog more than JS_MAX_BACKLOG behind the
//! stream's newest message is acked and skipped, counted and logged. Pausing stops
//! fetching, so a pause, a NATS restart or an odin-ws restart loses nothing.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use nats::header::{DESCRIPTION, STATUS};
use nats::jetstream::{BatchOptions, PullSubscription};

use super::js_setup::{self, Ready};
use super::js_watch::{self, Progress, unix_ns};
use super::jsapi::{self, ApiError};
use super::seen::Seen;
use super::throttle::{Step, Throttle, effective_rate};
use crate::shared::{NatsState, Shared};

/// How long the server holds one pull request open.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// While paused or after a failed fetch.
const IDLE: Duration = Duration::from_millis(100);
/// A jump of more sequences than this is not filled in by sequence (more than a
/// few batches lost in flight; the rest comes with JetStream's redelivery).
const MAX_GAP_FILL: u64 = 1024;

pub fn run(shared: &Arc<Shared>, conn: &nats::Connection) {
    let mut attempt = 0;
    let ready = loop {
        match js_setup::setup(shared, conn, attempt) {
            Ok(ready) => break ready,
            Err(e) => {
                log::warn!("JetStream setup failed: {e}; retrying");
                shared.jetstream.set_stalled(&format!("setup failed: {e}"));
                std::thread::sleep(super::connect::backoff(attempt));
                attempt += 1;
            }
        }
    };
    let first = ready.stream.state.first_seq;
    super::refill::refill(shared, conn, first, ready.ack_floor, ready.history_start);
    // Resumes are answered from here on (before: `unavailable`), from a full history.
    shared.set_epoch(&ready.epoch);
    super::stream_read::start(shared, conn);
    shared.finish_starting();
    shared.set_nats_state(NatsState::Connected);
    let progress = Arc::new(Progress::new(unix_ns(ready.stream.state.last_ts)));
    js_watch::start(Arc::clone(shared), conn.clone(), Arc::clone(&progress));
    let mut intake = Intake {
        shared,
        conn,
        progress: &progress,
        fill_gaps: ready.fill_gaps,
        max_backlog_ns: shared.config().js_max_backlog.as_nanos() as i64,
        seen: Seen::default(),
        skipped: Skipped::default(),
    };
    if ready.ack_floor > 0 {
        // History holds up to the floor: what a previous run took but had not
        // acked comes back only after JS_ACK_WAIT, so the first message past it
        // has them fetched by sequence first, in order (`fill_gap`).
        intake.seen.insert(ready.ack_floor);
    }
    intake.consume(&ready);
}

struct Intake<'a> {
    shared: &'a Shared,
    conn: &'a nats::Connection,
    progress: &'a Progress,
    /// False when the consumer filters subjects: its sequences have legitimate gaps.
    fill_gaps: bool,
    /// JS_MAX_BACKLOG.
    max_backlog_ns: i64,
    seen: Seen,
    skipped: Skipped,
}

/// What became of one fetched message.
enum Taken {
    /// Into the ring, with this many lost predecessors before it.
    Sent(usize),
    /// Acked without sending: a duplicate or backlog.
    Acked,
    /// A status message; `more`: the pull request goes on (a heartbeat).
    Status { more: bool },
}

impl Intake<'_> {
    fn consume(&mut self, ready: &Ready) {
        let shared = self.shared;
        let mut throttle = Throttle::new(effective_rate(&shared.config()), Instant::now());
        loop {
            let batch = match throttle.step(shared, shared.config().js_batch) {
                Step::Paused => {
                    std::thread::sleep(IDLE);
                    continue;
                }
                Step::Wait(wait) => {
                    std::thread::sleep(wait.min(IDLE));
                    continue;
                }
                Step::Take(batch) => batch,
            };
            let sent = self.fetch(&ready.sub, batch);
            throttle.took(sent);
            if sent > 0 {
                shared.wake_workers();
            }
        }
    }

    /// One pull request; returns how many messages went into the ring.
    fn fetch(&mut self, sub: &PullSubscription, batch: usize) -> usize {
        let options = BatchOptions {
            batch,
            expires: Some(FETCH_EXPIRES.as_nanos() as usize),
            no_wait: false,
        };
        let messages = match sub.timeout_fetch(options, FETCH_EXPIRES + IDLE) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("JetStream fetch failed: {e}");
                std::thread::sleep(IDLE);
                return 0;
            }
        };
        let mut sent = 0;
        for msg in messages {
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    // Ours timing out is no answer; the server's 408 (expired,
                    // nothing more) is one.
                    if e.kind() != io::ErrorKind::TimedOut {
                        self.progress.answered();
                    }
                    self.skipped.report();
                    break;
                }
            };
            match self.take(msg) {
                Taken::Sent(n) => sent += n + 1,
                Taken::Acked => {}
                Taken::Status { more: true } => continue,
                Taken::Status { more: false } => {
                    // The request ended (503 no responders, 409): during an
                    // election, do not ask again at once.
                    std::thread::sleep(IDLE);
                    break;
                }
            }
            self.progress.answered();
        }
        sent
    }

    fn take(&mut self, msg: nats::Message) -> Taken {
        let Some(info) = msg.jetstream_message_info() else {
            return self.status(&msg);
        };
        let (seq, published) = (info.stream_seq, unix_ns(info.published));
        let m = &self.shared.metrics;
        // Both times are the NATS server's clock.
        let behind = self.progress.stream_last_ns().saturating_sub(published);
        let taken = if self.seen.contains(seq) {
            m.jetstream_duplicates.fetch_add(1, Relaxed);
            Taken::Acked
        } else if behind > self.max_backlog_ns {
            self.seen.insert(seq);
            self.skipped.add(seq);
            m.jetstream_backlog_skipped.fetch_add(1, Relaxed);
            Taken::Acked
        } else {
            self.skipped.report();
            let filled = self.fill_gap(seq);
            self.broadcast(&msg.subject, &msg.data, seq);
            Taken::Sent(filled)
        };
        if let Err(e) = msg.ack() {
            log::warn!("JetStream ack of stream sequence {seq} failed: {e}");
        }
        taken
    }

    /// A message without a JetStream reply subject: a status (100 heartbeat, 409
    /// request ended or leadership change, 503 no responders) or anything else
    /// that is not stream data. Never counted as a message, never broadcast.
    fn status(&self, msg: &nats::Message) -> Taken {
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map_or("", String::as_str)
        };
        let code = header(STATUS);
        self.shared
            .metrics
            .jetstream_status_messages
            .fetch_add(1, Relaxed);
        log::debug!(
            "JetStream status {code} {:?} on {} (control, not data)",
            header(DESCRIPTION),
            msg.subject
        );
        Taken::Status {
            more: code == "100",
        }
    }

    /// Puts the sequences between the highest one in the ring and `seq` into the
    /// ring first: deliveries lost with a connection, which JetStream would only
    /// redeliver after JS_ACK_WAIT and out of order. Returns how many.
    fn fill_gap(&mut self, seq: u64) -> usize {
        let Some(highest) = self.seen.highest() else {
            return 0;
        };
        if !self.fill_gaps || seq <= highest + 1 || seq - highest - 1 > MAX_GAP_FILL {
            return 0;
        }
        let stream = self.shared.config().js_stream.clone();
        let mut filled = 0;
        for missing in highest + 1..seq {
            match jsapi::get_message(self.conn, &stream, missing) {
                Ok(m) => {
                    self.broadcast(&m.subject, &m.data, missing);
                    filled += 1;
                }
                // Deleted or expired: nothing to send.
                Err(ApiError::NotFound) => {}
                Err(e) => {
                    log::warn!(
                        "JetStream: cannot fetch stream sequence {missing} ({e}); \
                         it comes with JetStream's redelivery, out of order"
                    );
                    break;
                }
            }
        }
        if filled > 0 {
            log::info!(
                "JetStream: {filled} message(s) lost in flight (stream sequences {}-{}) \
                 fetched by sequence and sent in order",
                highest + 1,
                seq - 1
            );
            let m = &self.shared.metrics;
            m.jetstream_gap_fills.fetch_add(filled as u64, Relaxed);
        }
        filled
    }

    /// Into the ring, unless its frame is over WS_MAX_BROADCAST_SIZE (refused and
    /// counted; it is acked all the same, being no better the second time).
    fn broadcast(&mut self, subject: &str, data: &[u8], seq: u64) {
        self.seen.insert(seq);
        self.shared.metrics.messages_in_nats.fetch_add(1, Relaxed);
        if let Some(body) = self.shared.admit_broadcast(subject, data) {
            self.shared
                .push_broadcast(subject, body, Instant::now(), Some(seq));
        }
    }
}

/// A run of backlog messages skipped, logged once when it ends.
#[derive(Default)]
struct Skipped {
    count: u64,
    first: u64,
    last: u64,
}

impl Skipped {
    fn add(&mut self, seq: u64) {
        if self.count == 0 {
            self.first = seq;
        }
        self.count += 1;
        self.last = seq;
    }

    fn report(&mut self) {
        if self.count > 0 {
            log::warn!(
                "JetStream: skipped {} backlog message(s) published more than JS_MAX_BACKLOG \
                 before the stream's newest (stream sequences {}-{})",
                self.count,
                self.first,
                self.last
            );
            *self = Skipped::default();
        }
    }
}
