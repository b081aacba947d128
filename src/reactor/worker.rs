//! A reactor thread: one mio::Poll, the connections it owns, their timers and its
//! subscription index. Each turn: socket events, new sockets, the ring, held
//! broadcasts that are due, timers, then one flush per dirty connection (replies
//! first, broadcasts up to a budget).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use tungstenite::Bytes;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::accounting::SocketCount;
use super::conn::{Closing, Conn, HttpConn, State, Waiting};
use super::patterns::Subscriptions;
use super::send_queue::{Pushed, QueueIo, SendQueue};
use super::slab::{Key, Slab};
use crate::broadcast::Broadcast;
use crate::config::Config;
use crate::metrics::DropReason;
use crate::shared::Shared;

pub const WAKE_TOKEN: Token = Token(usize::MAX);
/// Broadcasts taken from the ring per turn, so sockets are served between batches.
const RING_BATCH: usize = 64;
/// Connections flushed for broadcasts per turn: a turn stays a few milliseconds
/// long, so new sockets and handshakes are served between slices of a fan-out.
const FANOUT_BUDGET: usize = 256;
/// Messages read from one connection per turn before others get their turn.
pub(super) const READ_BUDGET: usize = 32;
/// How long a closing connection may take to read our close and hang up: a slow
/// consumer must first drain its kernel buffer to reach the close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// An empty ping frame, shared by every connection.
static PING_FRAME: [u8; 2] = [0x89, 0x00];
/// Consecutive poll failures after which the worker gives up rather than spin.
const MAX_POLL_ERRORS: u32 = 16;

pub struct Worker {
    pub(super) id: usize,
    poll: Poll,
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Arc<Config>,
    pub(super) conns: Slab<Conn>,
    pub(super) subs: Subscriptions,
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    cursor: u64,
    batch: Vec<Arc<Broadcast>>,
    /// Connections with replies, control frames or a writable socket: all flushed
    /// this turn.
    dirty: Vec<Key>,
    /// Connections with broadcasts to write, oldest first, FANOUT_BUDGET a turn.
    fanout: Vec<Key>,
    /// Connections whose broadcasts wait out WS_WRITE_DELAY, by when they are due.
    held: BinaryHeap<Reverse<(Instant, Key)>>,
    pub(super) read_again: Vec<Key>,
    matched: Vec<Key>,
    drain_started: bool,
    next_stats: Instant,
    deliveries: u64,
    pub(super) session_seed: u64,
}

impl Worker {
    pub fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> Worker {
        let cursor = shared.ring.head();
        let cfg = shared.config();
        let seed = std::process::id() as u64 ^ (id as u64).rotate_left(32) ^ nanos_now();
        Worker {
            id,
            poll,
            cfg,
            shared,
            conns: Slab::default(),
            subs: Subscriptions::default(),
            timers: BinaryHeap::new(),
            cursor,
            batch: Vec::with_capacity(RING_BATCH),
            dirty: Vec::new(),
            fanout: Vec::new(),
            held: BinaryHeap::new(),
            read_again: Vec::new(),
            matched: Vec::new(),
            drain_started: false,
            next_stats: Instant::now(),
            deliveries: 0,
            session_seed: seed | 1,
        }
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut poll_errors = 0;
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                poll_errors += 1;
                log::error!("worker {}: poll failed: {e}", self.id);
                if poll_errors >= MAX_POLL_ERRORS {
                    log::error!("worker {}: poll keeps failing, exiting", self.id);
                    std::process::exit(1);
                }
                continue;
            }
            poll_errors = 0;
            self.cfg = self.shared.config();
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == WAKE_TOKEN {
                    continue;
                }
                let key = event.token().0 as Key;
                if event.is_writable() {
                    self.mark_dirty(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(key, now);
                }
            }
            self.take_inbox(now);
            for key in std::mem::take(&mut self.read_again) {
                self.on_readable(key, now);
            }
            self.deliver();
            self.release_held();
            self.fire_timers(now);
            self.start_drain(now);
            self.flush_dirty();
            if now >= self.next_stats {
                self.publish_stats(now);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty()
            || !self.fanout.is_empty()
            || self.cursor < self.shared.ring.head()
        {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut next = self.next_stats;
        for heap in [&self.timers, &self.held] {
            if let Some(Reverse((at, _))) = heap.peek() {
                next = next.min(*at);
            }
        }
        Some(next.saturating_duration_since(now))
    }

    fn take_inbox(&mut self, now: Instant) {
        let handle = &self.shared.workers[self.id];
        let sockets = std::mem::take(&mut *handle.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        for mut stream in sockets {
            let count = SocketCount::take_over(&self.shared, self.id);
            let key = self.conns.vacant_key();
            let token = Token(key as usize);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("worker {}: cannot register a socket: {e}", self.id);
                continue;
            }
            let deadline = now + self.cfg.handshake_timeout;
            self.conns.insert(Conn {
                stream,
                send: SendQueue::default(),
                count,
                state: State::Http(HttpConn {
                    buf: Vec::new(),
                    deadline,
                }),
                wake_at: deadline,
                dirty: false,
                broadcasts: Waiting::No,
                last_flush: now,
                pending_since: None,
            });
            self.timers.push(Reverse((deadline, key)));
            // The request may already be waiting: edge-triggered readiness was
            // reported at registration, but read now to save a turn.
            self.read_again.push(key);
        }
    }

    fn on_readable(&mut self, key: Key, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.state {
            State::Http(_) => self.read_http(key, now),
            State::Ws(_) => self.read_ws(key, now),
            State::Closing(_) => self.discard_input(key),
        }
    }

    /// A closing connection's input is read and dropped until the peer hangs up.
    fn discard_input(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut scratch = [0u8; 4096];
        loop {
            match conn.stream.read(&mut scratch) {
                Ok(0) => return self.remove(key),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(key),
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, key: Key) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    pub(super) fn schedule(&mut self, key: Key, at: Instant) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.wake_at = at;
            self.timers.push(Reverse((at, key)));
        }
    }

    /// Queues a close (with a frame when `code` is given for a WebSocket) and
    /// moves the connection to `Closing`.
    pub(super) fn begin_close(&mut self, key: Key, code: Option<(CloseCode, &str)>, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match &mut conn.state {
            State::Ws(ws) => {
                if let Some((code, reason)) = code {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let mut io = QueueIo {
                        socket: &mut conn.stream,
                        queue: &mut conn.send,
                    };
                    let _ = ws.ctx.close(&mut io, Some(frame));
                }
                self.subs.remove_all(&mut ws.subscriptions, key);
            }
            State::Closing(_) => return,
            State::Http(_) => {}
        }
        let until = now + CLOSE_LINGER;
        // Replacing the state drops the WebSocket's slot.
        conn.state = State::Closing(Closing {
            until,
            write_shut: false,
        });
        self.schedule(key, until);
        self.mark_dirty(key);
    }

    /// Drops the socket at once; its guards count it out.
    pub(super) fn remove(&mut self, key: Key) {
        let Some(mut conn) = self.conns.remove(key) else {
            return;
        };
        // Closing the descriptor (dropping the stream) takes it out of the epoll
        // set anyway, so a failed deregister changes nothing.
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let State::Ws(ws) = &mut conn.state {
            self.subs.remove_all(&mut ws.subscriptions, key);
        }
    }

    /// Takes new broadcasts from the ring and queues each on every matching
    /// connection. A connection written to within the last WS_WRITE_DELAY is held
    /// until the delay has passed, so the broadcasts meanwhile share one write.
    fn deliver(&mut self) {
        let overrun = self
            .shared
            .ring
            .read_from(&mut self.cursor, RING_BATCH, &mut self.batch);
        if overrun > 0 {
            self.shared
                .metrics
                .dropped(DropReason::RingOverrun, overrun);
            log::warn!(
                "worker {}: fell {overrun} broadcasts behind the ring and skipped them",
                self.id
            );
        }
        if self.batch.is_empty() {
            return;
        }
        let (limit, policy) = (self.cfg.send_queue_bytes, self.cfg.slow_client_policy);
        let delay = self.cfg.write_delay;
        let now = Instant::now();
        let mut overflowed = Vec::new();
        let (mut conflated, mut dropped) = (0, 0);
        let batch = std::mem::take(&mut self.batch);
        for b in &batch {
            let matched = &mut self.matched;
            self.subs.for_each_match(&b.channel, |k| matched.push(k));
            for key in self.matched.drain(..) {
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                let State::Ws(ws) = &mut conn.state else {
                    continue;
                };
                if ws.last_pos == Some(b.pos) {
                    continue;
                }
                ws.last_pos = Some(b.pos);
                // Only a socket that will not take more makes a slow consumer: a
                // worker that fell behind (a long turn, a burst) flushes first.
                if conn.send.len() + b.frame.len() > limit {
                    let _ = conn.send.flush(&mut conn.stream, limit);
                }
                match conn.send.push_broadcast(b, limit, policy) {
                    Pushed::Queued => {}
                    Pushed::Conflated(n) => conflated += n,
                    Pushed::DroppedOldest(n) => dropped += n,
                    Pushed::Overflow => {
                        overflowed.push(key);
                        continue;
                    }
                }
                self.deliveries += 1;
                conn.pending_since.get_or_insert(b.received_at);
                if conn.dirty || conn.broadcasts != Waiting::No {
                    continue;
                }
                let due = conn.last_flush + delay;
                if due <= now {
                    conn.broadcasts = Waiting::Fanout;
                    self.fanout.push(key);
                } else {
                    conn.broadcasts = Waiting::Held;
                    self.held.push(Reverse((due, key)));
                }
            }
        }
        self.batch = batch;
        self.batch.clear();
        self.shared
            .metrics
            .dropped(DropReason::Conflated, conflated);
        self.shared.metrics.dropped(DropReason::DropOldest, dropped);
        for key in overflowed {
            if let Some(conn) = self.conns.get_mut(key)
                && matches!(conn.state, State::Ws(_))
            {
                conn.send.discard_broadcasts();
                self.shared
                    .metrics
                    .slow_consumer_closes
                    .fetch_add(1, Relaxed);
                self.begin_close(key, Some((CloseCode::Again, "slow consumer")), now);
            }
        }
    }

    /// Moves the held connections whose write delay has passed to this turn's flush.
    fn release_held(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, key))) = self.held.peek().copied() {
            if due > now {
                break;
            }
            self.held.pop();
            if let Some(conn) = self.conns.get_mut(key)
                && conn.broadcasts == Waiting::Held
            {
                conn.broadcasts = Waiting::Fanout;
                self.fanout.push(key);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            if conn.wake_at != at {
                continue; // superseded by a later schedule
            }
            self.on_timer(key, now);
        }
    }

    fn on_timer(&mut self, key: Key, now: Instant) {
        let idle_timeout = self.cfg.idle_timeout;
        let ping_interval = self.cfg.ping_interval;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match &mut conn.state {
            State::Http(h) => {
                if now >= h.deadline {
                    self.remove(key);
                }
            }
            State::Closing(c) => {
                if now >= c.until {
                    self.remove(key);
                }
            }
            State::Ws(ws) => {
                if ws.drain_at.is_some_and(|d| now >= d) {
                    return self.begin_close(
                        key,
                        Some((CloseCode::Away, "server shutting down")),
                        now,
                    );
                }
                if now >= ws.last_read + idle_timeout {
                    return self.begin_close(key, Some((CloseCode::Away, "idle timeout")), now);
                }
                if now >= ws.next_ping {
                    ws.next_ping = now + ping_interval;
                    conn.send.push_own(Bytes::from_static(&PING_FRAME));
                }
                let next = ws.next_deadline(idle_timeout);
                self.schedule(key, next);
                self.mark_dirty(key);
            }
        }
    }

    /// On SIGTERM: every WebSocket gets a close time, spread evenly over the grace
    /// period so clients do not all reconnect elsewhere in the same second. Slots
    /// come from one counter shared by all workers, so the spread is even across
    /// the whole server however the connections are divided among workers.
    fn start_drain(&mut self, now: Instant) {
        if self.drain_started || !self.shared.is_draining() {
            return;
        }
        self.drain_started = true;
        let keys: Vec<Key> = self
            .conns
            .keys()
            .into_iter()
            .filter(|k| matches!(self.conns.get(*k).map(|c| &c.state), Some(State::Ws(_))))
            .collect();
        let grace = self.cfg.shutdown_grace;
        let started = self.shared.drain.started.get().copied().unwrap_or(now);
        let total = self.shared.drain.total.load(Relaxed).max(1);
        for key in &keys {
            let slot = self
                .shared
                .drain
                .next_slot
                .fetch_add(1, Relaxed)
                .min(total - 1);
            let at = started + grace.mul_f64(slot as f64 / total as f64);
            if let Some(State::Ws(ws)) = self.conns.get_mut(*key).map(|c| &mut c.state) {
                ws.drain_at = Some(at);
            }
            self.schedule(*key, at);
        }
        log::info!(
            "worker {}: draining {} connections over {grace:?}",
            self.id,
            keys.len()
        );
    }

    /// Flushes every connection with replies, then up to FANOUT_BUDGET with
    /// broadcasts, oldest first; the rest wait for the next turn.
    fn flush_dirty(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.dirty = false;
                self.flush(key);
            }
        }
        let mut slice = std::mem::take(&mut self.fanout);
        if slice.len() > FANOUT_BUDGET {
            self.fanout = slice.split_off(FANOUT_BUDGET);
        }
        for key in slice {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.broadcasts = Waiting::No;
                self.flush(key);
            }
        }
    }

    fn flush(&mut self, key: Key) {
        let limit = self.cfg.send_queue_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        conn.last_flush = now;
        // The oldest broadcast of this write tells how long publishing took to
        // reach the socket, write delay included.
        if let Some(since) = conn.pending_since.take() {
            self.shared
                .metrics
                .observe_latency(now.saturating_duration_since(since));
        }
        match conn.send.flush(&mut conn.stream, limit) {
            Ok(true) => {
                if let State::Closing(c) = &mut conn.state
                    && !c.write_shut
                {
                    c.write_shut = true;
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    // Whatever the peer sent meanwhile is discarded; EOF removes it.
                    self.read_again.push(key);
                }
            }
            Ok(false) => {} // the socket is full; a writable event brings us back
            Err(_) => self.remove(key),
        }
    }

    fn publish_stats(&mut self, now: Instant) {
        self.next_stats = now + Duration::from_secs(1);
        let handle = &self.shared.workers[self.id];
        self.shared
            .metrics
            .deliveries
            .fetch_add(std::mem::take(&mut self.deliveries), Relaxed);
        let queued: usize = self.conns.values().map(|c| c.send.len()).sum();
        handle.queued_bytes.store(queued as u64, Relaxed);
        handle
            .ring_lag
            .store(self.shared.ring.head().saturating_sub(self.cursor), Relaxed);
    }
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
