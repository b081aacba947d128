//! JetStream reads for what memory cannot answer: a resume from a position older
//! than history, a snapshot of channels history does not hold. A worker never
//! waits on NATS: it queues a `Request` here (at most READ_QUEUE waiting; over
//! it the worker answers without the stream) and goes on; one of READERS
//! threads makes the read (so at most READERS NATS requests are in flight for
//! this) and leaves the `Reply` in that worker's list, then wakes it.
//!
//! A resume reads every message on the subscription's patterns after `since`
//! up to the stream's last sequence when the read began (`upto`), by subject,
//! one stored message a request, at most WS_RESUME_MAX_MESSAGES (more: too_old).
//! Everything the worker's ring held at the subscribe was in the stream by then,
//! so the replay and the live messages after `upto` meet with no gap. A snapshot
//! takes each literal channel's last message (`last_by_subj`) and, for a
//! wildcard, the last per subject through an ephemeral consumer
//! (DeliverLastPerSubject), bounded likewise.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nats::jetstream::StreamMessage;

use super::js_watch::unix_ns;
use super::jsapi::{self, ApiError};
use super::refill::published_instant;
use crate::broadcast::{Broadcast, OUTSIDE_RING};
use crate::shared::Shared;

/// Threads making stream reads: the most NATS requests in flight for them.
pub const READERS: usize = 4;
/// Requests waiting for a reader; a worker answers the ones beyond without the stream.
pub const READ_QUEUE: usize = 256;
/// How long an ephemeral snapshot consumer outlives a reader that died mid-read.
const EPHEMERAL_INACTIVE: Duration = Duration::from_secs(30);

/// What one subscribe needs from the stream.
#[derive(Debug)]
pub struct Request {
    pub worker: usize,
    /// The connection's slab key and the ticket that tells it from a later one
    /// under the same key.
    pub conn: usize,
    pub ticket: u64,
    pub patterns: Vec<Box<str>>,
    /// Resume after this stream sequence.
    pub since: Option<u64>,
    /// A snapshot, when the resume (if any) is not recovered.
    pub snapshot: bool,
}

#[derive(Debug)]
pub struct Reply {
    pub conn: usize,
    pub ticket: u64,
    /// The resume's answer, when the request had `since`.
    pub resume: Option<Resumed>,
    /// The snapshot, newest message per channel in sequence order; None when
    /// none was read (not asked, over the bound, or the stream did not answer).
    pub snapshot: Option<Vec<Arc<Broadcast>>>,
}

#[derive(Debug)]
pub enum Resumed {
    /// Every message after `since` up to `upto` on the patterns, in order.
    Recovered {
        upto: u64,
        messages: Vec<Arc<Broadcast>>,
    },
    /// The stream no longer has them all, or more than WS_RESUME_MAX_MESSAGES.
    TooOld,
    /// The stream did not answer.
    Unavailable,
}

/// The queue between workers and readers, and each worker's replies.
pub struct StreamReads {
    queue: Mutex<VecDeque<Request>>,
    ready: Condvar,
    replies: Vec<Mutex<Vec<Reply>>>,
    next_ticket: AtomicU64,
    /// Set once the readers run (JetStream mode, the stream known).
    started: std::sync::OnceLock<()>,
}

impl StreamReads {
    pub fn new(workers: usize) -> StreamReads {
        StreamReads {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            replies: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            next_ticket: AtomicU64::new(1),
            started: std::sync::OnceLock::new(),
        }
    }

    /// Whether requests are taken: JetStream mode once its readers run.
    pub fn enabled(&self) -> bool {
        self.started.get().is_some()
    }

    pub fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Relaxed)
    }

    /// Queues `req`; gives it back when READ_QUEUE are waiting already.
    pub fn submit(&self, req: Request, shared: &Shared) -> Result<(), Request> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= READ_QUEUE {
            shared.metrics.stream_reads_refused.fetch_add(1, Relaxed);
            return Err(req);
        }
        queue.push_back(req);
        shared
            .metrics
            .stream_reads_queued
            .store(queue.len() as u64, Relaxed);
        self.ready.notify_one();
        Ok(())
    }

    /// The replies readers left for `worker` since the last call.
    pub fn take_replies(&self, worker: usize) -> Vec<Reply> {
        match self.replies.get(worker) {
            Some(list) => std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    fn next(&self, shared: &Shared) -> Request {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(req) = queue.pop_front() {
                let m = &shared.metrics;
                m.stream_reads_queued.store(queue.len() as u64, Relaxed);
                return req;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Starts the readers on `conn` (once).
pub fn start(shared: &Arc<Shared>, conn: &nats::Connection) {
    if shared.stream_reads.started.set(()).is_err() {
        return;
    }
    for i in 0..READERS {
        let (shared, conn) = (Arc::clone(shared), conn.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("stream-read-{i}"))
            .spawn(move || serve(&shared, &conn));
        if let Err(e) = spawned {
            log::error!("cannot start a stream reader thread: {e}");
        }
    }
}

fn serve(shared: &Shared, conn: &nats::Connection) {
    loop {
        let req = shared.stream_reads.next(shared);
        let m = &shared.metrics;
        m.stream_reads_in_flight.fetch_add(1, Relaxed);
        let reply = read(shared, conn, &req);
        m.stream_reads_in_flight.fetch_sub(1, Relaxed);
        m.stream_reads.fetch_add(1, Relaxed);
        if let Some(list) = shared.stream_reads.replies.get(req.worker) {
            list.lock().unwrap_or_else(|e| e.into_inner()).push(reply);
        }
        if let Some(w) = shared.workers.get(req.worker)
            && let Err(e) = w.waker.wake()
        {
            log::warn!("cannot wake worker {}: {e}", req.worker);
        }
    }
}

fn read(shared: &Shared, conn: &nats::Connection, req: &Request) -> Reply {
    let reader = Reader {
        shared,
        conn,
        stream: shared.config().js_stream.clone(),
        max: shared.config().resume_max_messages,
    };
    let resume = req.since.map(|since| reader.resume(&req.patterns, since));
    let recovered = matches!(resume, Some(Resumed::Recovered { .. }));
    let snapshot = (req.snapshot && !recovered)
        .then(|| reader.snapshot(&req.patterns))
        .flatten();
    Reply {
        conn: req.conn,
        ticket: req.ticket,
        resume,
        snapshot,
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    conn: &'a nats::Connection,
    stream: String,
    /// WS_RESUME_MAX_MESSAGES.
    max: usize,
}

impl Reader<'_> {
    fn resume(&self, patterns: &[Box<str>], since: u64) -> Resumed {
        let state = match jsapi::stream_info(self.conn, &self.stream) {
            Ok(info) => info.state,
            Err(e) => {
                log::warn!("resume from the stream: no stream info ({e})");
                return Resumed::Unavailable;
            }
        };
        let upto = state.last_seq;
        // Messages after `since` the stream let go (age, count) may have been ours.
        if since < upto && since + 1 < state.first_seq {
            return Resumed::TooOld;
        }
        let mut found: BTreeMap<u64, StreamMessage> = BTreeMap::new();
        for pattern in patterns {
            let mut seq = since + 1;
            while seq <= upto {
                let m = match jsapi::next_message(self.conn, &self.stream, seq, pattern) {
                    Ok(m) if m.sequence > upto => break,
                    Ok(m) => m,
                    Err(ApiError::NotFound) => break,
                    Err(e) => {
                        log::warn!("resume from the stream: read at {seq} failed ({e})");
                        return Resumed::Unavailable;
                    }
                };
                seq = m.sequence + 1;
                found.insert(m.sequence, m);
                if found.len() > self.max {
                    self.shared
                        .metrics
                        .stream_reads_over_bound
                        .fetch_add(1, Relaxed);
                    return Resumed::TooOld;
                }
            }
        }
        let messages = self.broadcasts(found.into_values());
        Resumed::Recovered { upto, messages }
    }

    /// The newest message of each channel the patterns cover, in sequence order.
    fn snapshot(&self, patterns: &[Box<str>]) -> Option<Vec<Arc<Broadcast>>> {
        let mut newest: HashMap<String, StreamMessage> = HashMap::new();
        for pattern in patterns {
            let found = if !pattern.contains(['*', '>']) {
                match jsapi::last_message(self.conn, &self.stream, pattern) {
                    Ok(m) => vec![m],
                    Err(ApiError::NotFound) => Vec::new(),
                    Err(e) => {
                        log::warn!("snapshot from the stream: {pattern}: {e}");
                        return None;
                    }
                }
            } else {
                self.last_per_subject(pattern)?
            };
            for m in found {
                if newest
                    .get(&m.subject)
                    .is_none_or(|o| o.sequence < m.sequence)
                {
                    newest.insert(m.subject.clone(), m);
                }
            }
            if newest.len() > self.max {
                let m = &self.shared.metrics;
                m.stream_reads_over_bound.fetch_add(1, Relaxed);
                return None;
            }
        }
        let mut messages: Vec<StreamMessage> = newest.into_values().collect();
        messages.sort_by_key(|m| m.sequence);
        Some(self.broadcasts(messages.into_iter()))
    }

    /// The last message of each subject `pattern` matches, through an ephemeral
    /// consumer deleted afterwards; None over the bound or on a failed read.
    fn last_per_subject(&self, pattern: &str) -> Option<Vec<StreamMessage>> {
        let config = serde_json::json!({
            "deliver_policy": "last_per_subject",
            "filter_subject": pattern,
            // Pull consumers need explicit acks on this server; none is sent.
            "ack_policy": "explicit",
            "max_ack_pending": self.max + 1,
            "inactive_threshold": EPHEMERAL_INACTIVE.as_nanos() as u64,
            "mem_storage": true,
            "num_replicas": 1,
        });
        let info = match jsapi::create_ephemeral(self.conn, &self.stream, &config) {
            Ok(info) => info,
            Err(e) => {
                log::warn!("snapshot from the stream: {pattern}: consumer ({e})");
                return None;
            }
        };
        let pending = info.num_pending as usize;
        let got = if pending > self.max {
            let m = &self.shared.metrics;
            m.stream_reads_over_bound.fetch_add(1, Relaxed);
            None
        } else {
            // All of them, or none: a short answer would leave channels out.
            let got = jsapi::pull(self.conn, &self.stream, &info.name, pending);
            got.ok().filter(|m| m.len() == pending)
        };
        if let Err(e) = jsapi::delete_consumer(self.conn, &self.stream, &info.name) {
            log::debug!(
                "snapshot consumer {} not deleted ({e}); it expires",
                info.name
            );
        }
        got
    }

    fn broadcasts(&self, messages: impl Iterator<Item = StreamMessage>) -> Vec<Arc<Broadcast>> {
        let mut out = Vec::new();
        for m in messages {
            self.shared
                .metrics
                .stream_read_messages
                .fetch_add(1, Relaxed);
            // One too large for WS_MAX_BROADCAST_SIZE was refused live too.
            if let Some(body) = self.shared.admit_broadcast(&m.subject, &m.data) {
                let at = published_instant(unix_ns(m.time));
                out.push(Arc::new(Broadcast::new(
                    OUTSIDE_RING,
                    m.sequence,
                    &m.subject,
                    body,
                    at,
                )));
            }
        }
        out
    }
}
