//! A reactor thread: one mio::Poll and what it owns: the connections (a slab),
//! their timers, the lists of connections to flush or read again, and the
//! subscription index. Connection handlers (http_conn, ws_conn, closing) decide;
//! the worker applies their effects. Each turn: socket events, new sockets, the
//! ring, held broadcasts that are due, timers, then one flush per dirty
//! connection (replies first, broadcasts up to a budget).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use tungstenite::protocol::frame::coding::CloseCode;

use super::accounting::SocketCount;
use super::catch_up;
use super::conn::{Conn, State, Waiting};
use super::delivery::Delivery;
use super::effect::{Context, Effect, Effects};
use super::log_throttle::LogThrottle;
use super::patterns::Subscriptions;
use super::slab::{Key, Slab};
use super::{closing, http_conn, sse_conn, token, ws_conn};
use crate::shared::Shared;

pub const WAKE_TOKEN: Token = Token(usize::MAX);
/// How long a closing connection may take to read our close and hang up: a slow
/// consumer must first drain its kernel buffer to reach the close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Consecutive poll failures after which the worker gives up rather than spin.
const MAX_POLL_ERRORS: u32 = 16;
/// At most one warning about refused Origins per worker this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

pub struct Worker {
    id: usize,
    poll: Poll,
    /// What the handlers read: config snapshot, shared state, this turn's time.
    ctx: Context,
    conns: Slab<Conn>,
    subs: Subscriptions,
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    delivery: Delivery,
    /// Connections with replies, control frames or a writable socket: all flushed
    /// this turn.
    dirty: Vec<Key>,
    /// Connections with input left over from an earlier read.
    read_again: Vec<Key>,
    /// The handlers' effects, applied and cleared after each call.
    effects: Effects,
    /// Keeps a stream of refused Origins to one warning a second.
    origin_refusals: LogThrottle,
    drain_started: bool,
    next_stats: Instant,
    /// Intake's count of events that may have skipped messages (a core NATS
    /// reconnect, a JetStream backlog skipped) when this worker last told its
    /// subscribers.
    skips_told: u64,
}

impl Worker {
    pub fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> Worker {
        let seed = std::process::id() as u64 ^ (id as u64).rotate_left(32) ^ nanos_now();
        let mut ctx = Context::new(Arc::clone(&shared), seed);
        ctx.worker = id;
        Worker {
            id,
            poll,
            delivery: Delivery::new(&shared),
            ctx,
            conns: Slab::default(),
            subs: Subscriptions::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            read_again: Vec::new(),
            effects: Effects::new(),
            origin_refusals: LogThrottle::new(REFUSAL_LOG_INTERVAL),
            drain_started: false,
            next_stats: Instant::now(),
            skips_told: 0,
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
            self.turn(&events);
        }
    }

    fn turn(&mut self, events: &Events) {
        self.ctx.cfg = self.ctx.shared.config();
        self.ctx.now = Instant::now();
        self.ctx.cursor = self.delivery.cursor();
        for event in events.iter() {
            if event.token() == WAKE_TOKEN {
                continue;
            }
            let key = event.token().0 as Key;
            if event.is_writable() {
                self.mark_dirty(key);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.on_readable(key);
            }
        }
        self.take_inbox();
        self.take_stream_replies();
        for key in std::mem::take(&mut self.read_again) {
            self.on_readable(key);
        }
        // Before the ring, so the `gap` comes ahead of what followed the skip.
        self.tell_skips();
        self.deliver();
        self.delivery.release_held(&mut self.conns);
        self.fire_timers();
        self.start_drain();
        self.flush_dirty();
        if self.ctx.now >= self.next_stats {
            self.publish_stats();
        }
        let end = Instant::now();
        let work = end.saturating_duration_since(self.ctx.now);
        self.delivery.end_turn(work, end, &self.ctx.cfg);
    }

    /// After intake may have skipped messages, every subscribed connection gets a
    /// `gap` frame (reason `skipped`; which channels lost what is unknown).
    fn tell_skips(&mut self) {
        let m = &self.ctx.shared.metrics;
        let skips = m.nats_gap_events.load(Relaxed) + m.jetstream_backlog_skipped.load(Relaxed);
        if skips == self.skips_told {
            return;
        }
        self.skips_told = skips;
        let now = self.ctx.now;
        self.delivery
            .tell_gap(&mut self.conns, "skipped", None, &self.ctx, now);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() || self.delivery.has_work(&self.ctx.shared) {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_stats;
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        for at in [timer, self.delivery.next_held()].into_iter().flatten() {
            next = next.min(at);
        }
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn take_inbox(&mut self) {
        let shared = Arc::clone(&self.ctx.shared);
        let inbox = &shared.workers[self.id].inbox;
        let sockets = std::mem::take(&mut *inbox.lock().unwrap_or_else(|e| e.into_inner()));
        for mut stream in sockets {
            let count = SocketCount::take_over(&shared, self.id);
            let key = self.conns.vacant_key();
            let token = Token(key as usize);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                log::warn!("worker {}: cannot register a socket: {e}", self.id);
                continue;
            }
            let (now, timeout) = (self.ctx.now, self.ctx.cfg.handshake_timeout);
            let conn = Conn::new(stream, count, now, timeout);
            self.timers.push(Reverse((conn.wake_at, key)));
            self.conns.insert(conn);
            // The request may already be waiting: edge-triggered readiness was
            // reported at registration, but read now to save a turn.
            self.read_again.push(key);
        }
    }

    fn on_readable(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (ctx, out) = (&self.ctx, &mut self.effects);
        match conn.state {
            State::Http(_) => http_conn::on_readable(conn, ctx, out),
            State::Ws(_) => ws_conn::on_readable(conn, ctx, out),
            State::Sse(_) => super::dead_reader::on_readable(conn, ctx, out),
            State::Closing(_) => closing::on_readable(conn, out),
        }
        self.apply_effects(key);
    }

    fn on_timer(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (ctx, out) = (&self.ctx, &mut self.effects);
        // A token's deadlines first: at its exp the connection ends.
        if token::on_timer(conn, ctx, out) {
            return self.apply_effects(key);
        }
        match conn.state {
            State::Http(_) => http_conn::on_timer(conn, ctx, out),
            State::Ws(_) => ws_conn::on_timer(conn, ctx, out),
            State::Sse(_) => sse_conn::on_timer(conn, ctx, out),
            State::Closing(_) => closing::on_timer(conn, ctx, out),
        }
        self.apply_effects(key);
    }

    /// Does what a handler asked for `key`, in order, and clears the list.
    fn apply_effects(&mut self, key: Key) {
        let mut effects = std::mem::take(&mut self.effects);
        let mut subscribed = false;
        for effect in effects.drain(..) {
            subscribed |= self.apply(key, effect);
        }
        self.effects = effects;
        if subscribed && let Some(sub) = self.conns.get_mut(key).and_then(|c| c.state.subscriber())
        {
            // Subscriptions are few and long-lived: no growth slack per connection.
            sub.subscriptions.shrink_to_fit();
        }
    }

    /// Does one effect for `key`; true when it added a subscription.
    fn apply(&mut self, key: Key, effect: Effect) -> bool {
        match effect {
            Effect::Flush => self.mark_dirty(key),
            Effect::WakeAt(at) => self.schedule(key, at),
            Effect::ReadAgain => self.read_again.push(key),
            Effect::Subscribe(pattern) => return self.subscribe(key, &pattern),
            Effect::Unsubscribe(pattern) => self.unsubscribe(key, &pattern),
            Effect::Close(code, reason) => self.begin_close(key, Some((code, reason))),
            Effect::CloseAfterWrite => self.begin_close(key, None),
            Effect::Remove => self.remove(key),
            Effect::RefusedOrigin(origin) => self.log_refused_origin(key, origin),
            Effect::ReadStream(ask) => self.read_stream(key, ask),
        }
        false
    }

    /// Queues a subscribe's stream read (WebSocket or SSE); what an answer
    /// made at once asks (a flush, a slow consumer's close) is done here.
    fn read_stream(&mut self, key: Key, ask: Box<catch_up::StreamAsk>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(sub) = conn.state.subscriber() else {
            return;
        };
        let mut out = Effects::new();
        catch_up::start_read(sub, key as usize, ask, &mut conn.send, &self.ctx, &mut out);
        for effect in out {
            self.apply(key, effect);
        }
    }

    /// Stream reads answered since the last turn: each waiting connection gets
    /// its ack, catch-up and held broadcasts.
    fn take_stream_replies(&mut self) {
        let shared = Arc::clone(&self.ctx.shared);
        for reply in shared.stream_reads.take_replies(self.id) {
            let key = reply.conn as Key;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let Some(sub) = conn.state.subscriber() else {
                continue;
            };
            catch_up::take_reply(sub, reply, &mut conn.send, &self.ctx, &mut self.effects);
            self.apply_effects(key);
        }
    }

    fn subscribe(&mut self, key: Key, pattern: &str) -> bool {
        let Some(sub) = self.conns.get_mut(key).and_then(|c| c.state.subscriber()) else {
            return false;
        };
        sub.subscriptions.push(self.subs.add(pattern, key));
        true
    }

    fn unsubscribe(&mut self, key: Key, pattern: &str) {
        let Some(sub) = self.conns.get_mut(key).and_then(|c| c.state.subscriber()) else {
            return;
        };
        if let Some(i) = sub.subscriptions.iter().position(|p| **p == *pattern) {
            self.subs.remove(sub.subscriptions.swap_remove(i), key);
        }
    }

    fn mark_dirty(&mut self, key: Key) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn schedule(&mut self, key: Key, at: Instant) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.wake_at = at;
            self.timers.push(Reverse((at, key)));
        }
    }

    /// Moves the connection to `Closing` (with a close frame when `code` is
    /// given for a WebSocket) and takes it out of the subscription index.
    fn begin_close(&mut self, key: Key, code: Option<(CloseCode, &'static str)>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let until = self.ctx.now + CLOSE_LINGER;
        let Some(mut held) = closing::begin(conn, code, until) else {
            return;
        };
        self.subs.remove_all(&mut held, key);
        self.schedule(key, until);
        self.mark_dirty(key);
    }

    /// Drops the socket at once; its guards count it out.
    fn remove(&mut self, key: Key) {
        let Some(mut conn) = self.conns.remove(key) else {
            return;
        };
        // Closing the descriptor (dropping the stream) takes it out of the epoll
        // set anyway, so a failed deregister changes nothing.
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(sub) = conn.state.subscriber() {
            self.subs.remove_all(sub.subscriptions, key);
        }
    }

    /// One warning a second at most, naming the Origin and the peer.
    fn log_refused_origin(&mut self, key: Key, origin: Option<String>) {
        let Some(held_back) = self.origin_refusals.note(self.ctx.now) else {
            return;
        };
        let peer = match self.conns.get(key).map(|c| c.stream.peer_addr()) {
            Some(Ok(addr)) => addr.to_string(),
            _ => "a peer already gone".into(),
        };
        let why = match &origin {
            Some(origin) => format!("Origin {origin:?} is not in WS_ALLOWED_ORIGINS"),
            None => "no Origin header, and WS_ALLOWED_ORIGINS is set".into(),
        };
        let more = match held_back {
            0 => String::new(),
            n => format!(" ({n} more refused since the last such line)"),
        };
        log::warn!(
            "worker {}: refused a WebSocket from {peer}: {why}{more}",
            self.id
        );
    }

    /// Queues new broadcasts; connections over their bound close with 1013, or
    /// with 1008 when their own unread replies fill most of it.
    fn deliver(&mut self) {
        let overflowed = self
            .delivery
            .deliver(&mut self.conns, &mut self.subs, &self.ctx, self.id);
        for key in overflowed {
            if let Some(conn) = self.conns.get_mut(key)
                && matches!(conn.state, State::Ws(_) | State::Sse(_))
            {
                let metrics = &self.ctx.shared.metrics;
                let close = if conn.send.mostly_replies() {
                    metrics.reply_backlog_closes.fetch_add(1, Relaxed);
                    conn.send.discard_unsent();
                    (CloseCode::Policy, ws_conn::REPLY_BACKLOG)
                } else {
                    metrics.slow_consumer_closes.fetch_add(1, Relaxed);
                    conn.send.discard_broadcasts();
                    (CloseCode::Again, "slow consumer")
                };
                self.begin_close(key, Some(close));
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.ctx.now;
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            // A connection gone, or rescheduled to a later time, skips this one.
            if self.conns.get(key).is_some_and(|c| c.wake_at == at) {
                self.on_timer(key);
            }
        }
    }

    /// On SIGTERM: every WebSocket gets a close time, spread evenly over the grace
    /// period so clients do not all reconnect elsewhere in the same second. Slots
    /// come from one counter shared by all workers, so the spread is even across
    /// the whole server however the connections are divided among workers.
    fn start_drain(&mut self) {
        let shared = Arc::clone(&self.ctx.shared);
        if self.drain_started || !shared.is_draining() {
            return;
        }
        self.drain_started = true;
        let grace = self.ctx.cfg.shutdown_grace;
        let started = shared.drain.started.get().copied().unwrap_or(self.ctx.now);
        let total = shared.drain.total.load(Relaxed).max(1);
        let mut draining = 0;
        for key in self.conns.keys() {
            let Some(sub) = self.conns.get_mut(key).and_then(|c| c.state.subscriber()) else {
                continue;
            };
            let slot = shared.drain.next_slot.fetch_add(1, Relaxed).min(total - 1);
            let at = started + grace.mul_f64(slot as f64 / total as f64);
            *sub.drain_at = Some(at);
            self.schedule(key, at);
            draining += 1;
        }
        log::info!(
            "worker {}: draining {} over {grace:?}",
            self.id,
            crate::logging::plural(draining, "connection", "connections")
        );
    }

    /// Flushes every connection with replies, then this turn's slice of those
    /// with broadcasts; the rest wait for the next turn.
    fn flush_dirty(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.dirty = false;
                self.flush(key);
            }
        }
        for key in self.delivery.take_fanout() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.broadcasts = Waiting::No;
                self.flush(key);
            }
        }
    }

    fn flush(&mut self, key: Key) {
        let limit = self.ctx.cfg.send_queue_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        conn.last_flush = now;
        // The oldest broadcast of this write tells how long publishing took to
        // reach the socket, write delay included.
        if let Some(since) = conn.pending_since.take() {
            let metrics = &self.ctx.shared.metrics;
            metrics.observe_latency(now.saturating_duration_since(since));
        }
        match conn.send.flush(&mut conn.stream, limit) {
            Ok(true) => {
                if closing::written(conn) {
                    self.read_again.push(key);
                }
            }
            Ok(false) => {} // the socket is full; a writable event brings us back
            Err(_) => return self.remove(key),
        }
        if ws_conn::resume_reading(conn, limit) {
            self.read_again.push(key);
        }
    }

    fn publish_stats(&mut self) {
        self.next_stats = self.ctx.now + Duration::from_secs(1);
        let shared = &self.ctx.shared;
        self.delivery.publish_deliveries(shared);
        let handle = &shared.workers[self.id];
        let queued: usize = self
            .conns
            .values()
            .map(|c| c.send.len() + c.state.stream_held_bytes())
            .sum();
        handle.queued_bytes.store(queued as u64, Relaxed);
        handle
            .ring_lag
            .store(self.delivery.ring_lag(shared), Relaxed);
        let hold = self.delivery.hold(&self.ctx.cfg).as_micros() as u64;
        handle.write_hold_us.store(hold, Relaxed);
    }
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
