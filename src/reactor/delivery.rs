//! Broadcast delivery for one worker: takes new broadcasts from the ring, queues
//! each once on every matching connection under the slow-consumer policy, and
//! lists who to flush for broadcasts: now (the fan-out list, FANOUT_BUDGET a
//! turn) or once their write hold has passed (held). A connection written to
//! within the last hold waits, so the broadcasts meanwhile share one write; the
//! hold is WS_WRITE_DELAY with WS_WRITE_COALESCE=always, else the coalescer's,
//! which is zero while the worker has headroom (coalesce.rs).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::coalesce::Coalescer;
use super::conn::{Conn, Waiting};
use super::effect::Context;
use super::patterns::{Pattern, Subscriptions};
use super::send_queue::{Pushed, SendQueue};
use super::slab::{Key, Slab};
use crate::broadcast::Broadcast;
use crate::config::{Config, WriteCoalesce};
use crate::metrics::DropReason;
use crate::protocol;
use crate::shared::Shared;

/// Broadcasts taken from the ring per turn, so sockets are served between batches.
const RING_BATCH: usize = 64;
/// Connections flushed for broadcasts per turn: a turn stays a few milliseconds
/// long, so new sockets and handshakes are served between slices of a fan-out.
const FANOUT_BUDGET: usize = 256;

pub struct Delivery {
    /// The next ring position to read.
    cursor: u64,
    /// This turn's broadcasts; kept for its capacity.
    batch: Vec<Arc<Broadcast>>,
    /// Connections one broadcast matched; kept for its capacity.
    matched: Vec<Key>,
    /// Connections with broadcasts to write, oldest first.
    fanout: Vec<Key>,
    /// Connections whose broadcasts wait out WS_WRITE_DELAY, by when they are due.
    held: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Broadcasts queued since `publish_deliveries`.
    deliveries: u64,
    /// Flushes that waited for a hold, since `publish_deliveries`.
    held_writes: u64,
    /// The write hold that follows this worker's load.
    coalescer: Coalescer,
}

/// What queueing one broadcast on one connection did.
enum Queued {
    /// Not a subscriber, already queued through another of its patterns, or
    /// held for its stream read.
    Skipped,
    Yes,
    /// Over its bound: close it as a slow consumer.
    Overflow,
}

/// Messages the slow-consumer policy dropped this turn, counted once at the end.
#[derive(Default)]
struct Dropped {
    conflated: u64,
    oldest: u64,
}

impl Delivery {
    /// Starts at the ring's head: a new worker owes nothing older.
    pub fn new(shared: &Shared) -> Delivery {
        Delivery {
            cursor: shared.ring.head(),
            batch: Vec::with_capacity(RING_BATCH),
            matched: Vec::new(),
            fanout: Vec::new(),
            held: BinaryHeap::new(),
            deliveries: 0,
            held_writes: 0,
            coalescer: Coalescer::new(Instant::now()),
        }
    }

    /// How long after its last write a connection's broadcasts may wait now.
    pub fn hold(&self, cfg: &Config) -> Duration {
        match cfg.write_coalesce {
            WriteCoalesce::Always => cfg.write_delay,
            WriteCoalesce::Busy => self.coalescer.hold().min(cfg.write_delay),
        }
    }

    /// Counts one turn's work (from the poll's return to now) for the coalescer.
    pub fn end_turn(&mut self, work: Duration, now: Instant, cfg: &Config) {
        self.coalescer.turn(work, now, cfg.write_delay);
    }

    /// Queues up to RING_BATCH new broadcasts on their subscribers. Returns the
    /// connections that overflowed, for the worker to close as slow consumers.
    pub fn deliver<S: Write>(
        &mut self,
        conns: &mut Slab<Conn<S>>,
        subs: &mut Subscriptions,
        ctx: &Context,
        worker_id: usize,
    ) -> Vec<Key> {
        let mut overflowed = Vec::new();
        let now = Instant::now();
        let (fresh, overrun) = self.read_ring(&ctx.shared, worker_id);
        if overrun > 0 {
            self.tell_gap(conns, "overrun", None, ctx, now);
        }
        if !fresh {
            return overflowed;
        }
        let hold = self.hold(&ctx.cfg);
        let mut dropped = Dropped::default();
        let batch = std::mem::take(&mut self.batch);
        let mut matched = std::mem::take(&mut self.matched);
        for b in &batch {
            subs.for_each_match(&b.channel, |k| matched.push(k));
            for key in matched.drain(..) {
                let Some(conn) = conns.get_mut(key) else {
                    continue;
                };
                let dropped_before = dropped.oldest;
                match enqueue(conn, b, &ctx.cfg, &mut dropped) {
                    Queued::Skipped => {}
                    Queued::Yes if dropped.oldest > dropped_before => {
                        // drop_oldest took older messages: say so, then carry on.
                        let count = Some(dropped.oldest - dropped_before);
                        push_gap(conn, "dropped", count, ctx);
                        self.deliveries += 1;
                        conn.pending_since.get_or_insert(b.received_at);
                        self.schedule(conn, key, hold, now);
                    }
                    Queued::Overflow => overflowed.push(key),
                    Queued::Yes => {
                        self.deliveries += 1;
                        conn.pending_since.get_or_insert(b.received_at);
                        self.schedule(conn, key, hold, now);
                    }
                }
            }
        }
        (self.batch, self.matched) = (batch, matched);
        self.batch.clear();
        let metrics = &ctx.shared.metrics;
        metrics.dropped(DropReason::Conflated, dropped.conflated);
        metrics.dropped(DropReason::DropOldest, dropped.oldest);
        overflowed
    }

    /// Queues a `gap` frame on every subscribed connection (their patterns; the
    /// count is unknown per connection) and lists them for this turn's flush.
    pub fn tell_gap<S>(
        &mut self,
        conns: &mut Slab<Conn<S>>,
        reason: &str,
        count: Option<u64>,
        ctx: &Context,
        now: Instant,
    ) {
        for key in conns.keys() {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if push_gap(conn, reason, count, ctx) {
                self.schedule(conn, key, Duration::ZERO, now);
            }
        }
    }

    /// Fills the batch from the ring: whether there is something new, and how many
    /// broadcasts this worker skipped because it fell behind.
    fn read_ring(&mut self, shared: &Shared, worker_id: usize) -> (bool, u64) {
        let overrun = shared
            .ring
            .read_from(&mut self.cursor, RING_BATCH, &mut self.batch);
        if overrun > 0 {
            shared.metrics.dropped(DropReason::RingOverrun, overrun);
            log::warn!(
                "worker {worker_id}: fell {overrun} broadcasts behind the ring and skipped them"
            );
        }
        (!self.batch.is_empty(), overrun)
    }

    /// Lists a connection with new broadcasts once: not at all when a reply flush
    /// this turn takes them anyway, in the fan-out list when its hold has passed,
    /// else held until it has.
    fn schedule<S>(&mut self, conn: &mut Conn<S>, key: Key, hold: Duration, now: Instant) {
        if conn.dirty || conn.broadcasts != Waiting::No {
            return;
        }
        let due = conn.last_flush + hold;
        if due <= now {
            conn.broadcasts = Waiting::Fanout;
            self.fanout.push(key);
        } else {
            conn.broadcasts = Waiting::Held;
            self.held.push(Reverse((due, key)));
        }
    }

    /// Moves the held connections whose write delay has passed to the fan-out list.
    pub fn release_held<S>(&mut self, conns: &mut Slab<Conn<S>>) {
        let now = Instant::now();
        while let Some(Reverse((due, key))) = self.held.peek().copied() {
            if due > now {
                break;
            }
            self.held.pop();
            if let Some(conn) = conns.get_mut(key)
                && conn.broadcasts == Waiting::Held
            {
                conn.broadcasts = Waiting::Fanout;
                self.fanout.push(key);
                self.held_writes += 1;
            }
        }
    }

    /// This turn's slice of the fan-out list, oldest first; the rest waits.
    pub fn take_fanout(&mut self) -> Vec<Key> {
        let mut slice = std::mem::take(&mut self.fanout);
        if slice.len() > FANOUT_BUDGET {
            self.fanout = slice.split_off(FANOUT_BUDGET);
        }
        slice
    }

    /// The next ring position this worker will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether the next turn has delivery work without waiting for an event.
    pub fn has_work(&self, shared: &Shared) -> bool {
        !self.fanout.is_empty() || self.cursor < shared.ring.head()
    }

    /// When the first held connection is due.
    pub fn next_held(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse((due, _))| *due)
    }

    /// Broadcasts the ring holds that this worker has not read yet.
    pub fn ring_lag(&self, shared: &Shared) -> u64 {
        shared.ring.head().saturating_sub(self.cursor)
    }

    /// Adds the deliveries and held writes counted since the last call to the
    /// shared counters.
    pub fn publish_deliveries(&mut self, shared: &Shared) {
        let n = std::mem::take(&mut self.deliveries);
        shared.metrics.deliveries.fetch_add(n, Relaxed);
        let held = std::mem::take(&mut self.held_writes);
        shared.metrics.held_writes.fetch_add(held, Relaxed);
    }
}

/// Queues a `gap` frame naming the connection's patterns; false for a connection
/// that is not a subscribed WebSocket.
fn push_gap<S>(conn: &mut Conn<S>, reason: &str, count: Option<u64>, ctx: &Context) -> bool {
    let Some(sub) = conn.state.subscriber() else {
        return false;
    };
    queue_gap(sub.subscriptions, reason, count, &mut conn.send, ctx)
}

/// Queues a `gap` frame naming a subscriber's `patterns`; false when it has none.
pub fn queue_gap(
    patterns: &[Pattern],
    reason: &str,
    count: Option<u64>,
    send: &mut SendQueue,
    ctx: &Context,
) -> bool {
    if patterns.is_empty() {
        return false;
    }
    let patterns: Vec<&str> = patterns.iter().map(|p| &**p).collect();
    let frame = protocol::gap(&patterns, reason, count);
    let frame = send.form().reply("gap", frame);
    send.push_own(frame);
    ctx.shared.metrics.gap_sent(reason);
    true
}

/// Queues `b` on `conn` once, however many of its patterns match. Only a socket
/// that will not take more makes a slow consumer: a worker that fell behind (a
/// long turn, a burst) flushes first.
fn enqueue<S: Write>(
    conn: &mut Conn<S>,
    b: &Arc<Broadcast>,
    cfg: &Config,
    dropped: &mut Dropped,
) -> Queued {
    let Some(sub) = conn.state.subscriber() else {
        return Queued::Skipped;
    };
    if *sub.last_pos == Some(b.pos) {
        return Queued::Skipped;
    }
    *sub.last_pos = Some(b.pos);
    let (limit, policy) = (cfg.send_queue_bytes, cfg.slow_client_policy);
    if sub.stream_cuts.drops(b) {
        return Queued::Skipped;
    }
    if let Some(wait) = sub.stream_wait.as_mut() {
        // Sent after the stream's replay or snapshot (catch_up::take_reply),
        // behind the `gap` for what drop_oldest took meanwhile.
        return match wait.hold(b, limit, policy) {
            Pushed::Queued => Queued::Skipped,
            Pushed::Conflated(n) => {
                dropped.conflated += n;
                Queued::Skipped
            }
            Pushed::DroppedOldest(n) => {
                dropped.oldest += n;
                Queued::Skipped
            }
            Pushed::Overflow => Queued::Overflow,
        };
    }
    if conn.send.len() + conn.send.form().len_of(b) > limit {
        // An error shows again at the connection's next flush, which removes it.
        let _ = conn.send.flush(&mut conn.stream, limit);
    }
    match conn.send.push_broadcast(b, limit, policy) {
        Pushed::Queued => {}
        Pushed::Conflated(n) => dropped.conflated += n,
        Pushed::DroppedOldest(n) => dropped.oldest += n,
        Pushed::Overflow => return Queued::Overflow,
    }
    Queued::Yes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::MessageBody;
    use crate::reactor::conn::State;
    use crate::reactor::testing::{Wire, open_websocket, test_context};

    /// One open WebSocket (whose socket takes nothing) on `patterns`.
    fn subscriber(ctx: &Context, patterns: &[&str]) -> (Slab<Conn<Wire>>, Subscriptions, Key) {
        let (mut conns, mut subs) = (Slab::default(), Subscriptions::default());
        let key = conns.vacant_key();
        let mut conn = open_websocket(ctx);
        if let State::Ws(ws) = &mut conn.state {
            ws.subscriptions = patterns.iter().map(|p| subs.add(p, key)).collect();
        }
        conns.insert(conn);
        (conns, subs, key)
    }

    fn publish(ctx: &Context, channel: &str, payload: &[u8]) {
        let body = MessageBody::new(channel, payload);
        ctx.shared
            .push_broadcast(channel, body, Instant::now(), None);
    }

    #[test]
    fn a_broadcast_two_patterns_match_is_queued_once_and_held_for_the_write_delay() {
        let ctx = test_context(&[("WS_WRITE_DELAY", "150ms"), ("WS_WRITE_COALESCE", "always")]);
        let (mut conns, mut subs, key) = subscriber(&ctx, &["a.*", "a.b"]);
        let mut delivery = Delivery::new(&ctx.shared);
        publish(&ctx, "a.b", b"1");
        publish(&ctx, "c.d", b"2");
        let overflowed = delivery.deliver(&mut conns, &mut subs, &ctx, 0);
        assert!(overflowed.is_empty());
        let conn = conns.get_mut(key).unwrap();
        assert_eq!(conn.sent_json().len(), 1);
        // Just flushed (opened): its broadcasts wait out the delay.
        assert!(conn.broadcasts == Waiting::Held);
        assert!(delivery.take_fanout().is_empty());
        assert!(delivery.next_held().is_some());
        delivery.publish_deliveries(&ctx.shared);
        assert_eq!(ctx.shared.metrics.deliveries.load(Relaxed), 1);
    }

    #[test]
    fn a_worker_with_headroom_writes_at_once() {
        let ctx = test_context(&[("WS_WRITE_DELAY", "1s")]);
        let (mut conns, mut subs, key) = subscriber(&ctx, &["a.b"]);
        let mut delivery = Delivery::new(&ctx.shared);
        assert_eq!(delivery.hold(&ctx.cfg), Duration::ZERO);
        publish(&ctx, "a.b", b"1");
        delivery.deliver(&mut conns, &mut subs, &ctx, 0);
        // Just flushed (opened), but nothing holds it: this turn's fan-out.
        assert!(conns.get_mut(key).unwrap().broadcasts == Waiting::Fanout);
        assert_eq!(delivery.take_fanout(), vec![key]);
        assert!(delivery.next_held().is_none());
    }

    #[test]
    fn a_busy_worker_holds_but_never_past_the_write_delay() {
        let ctx = test_context(&[("WS_WRITE_DELAY", "50ms")]);
        let mut delivery = Delivery::new(&ctx.shared);
        let t0 = Instant::now();
        for i in 1..=10u32 {
            let now = t0 + Duration::from_millis(100) * i;
            delivery.end_turn(Duration::from_millis(100), now, &ctx.cfg);
        }
        assert_eq!(delivery.hold(&ctx.cfg), Duration::from_millis(50));
        let zero = test_context(&[("WS_WRITE_DELAY", "0s")]);
        assert_eq!(delivery.hold(&zero.cfg), Duration::ZERO);
    }

    #[test]
    fn a_worker_that_fell_behind_the_ring_tells_its_subscribers() {
        // A ring of 16 slots and 20 broadcasts before the worker reads: 4 skipped.
        let ctx = test_context(&[("WS_WORKER_QUEUE_SIZE", "16")]);
        let (mut conns, mut subs, key) = subscriber(&ctx, &["a.*"]);
        let mut delivery = Delivery::new(&ctx.shared);
        for n in 0..20 {
            publish(&ctx, "a.b", n.to_string().as_bytes());
        }
        delivery.deliver(&mut conns, &mut subs, &ctx, 0);
        let sent = conns.get_mut(key).unwrap().sent_json();
        assert_eq!(sent[0]["type"], "gap", "{sent:?}");
        assert_eq!(sent[0]["reason"], "overrun");
        assert_eq!(sent[0]["channels"], serde_json::json!(["a.*"]));
        let data: Vec<i64> = sent[1..]
            .iter()
            .map(|m| m["data"].as_i64().unwrap())
            .collect();
        assert_eq!(
            data,
            (4..20).collect::<Vec<_>>(),
            "the newest after the gap"
        );
        assert_eq!(delivery.take_fanout(), vec![key]);
    }

    #[test]
    fn a_connection_past_its_bound_is_returned_to_close() {
        let env = [
            ("WS_SLOW_CLIENT_POLICY", "disconnect"),
            ("WS_SEND_QUEUE_BYTES", "4096"),
        ];
        let ctx = test_context(&env);
        let (mut conns, mut subs, key) = subscriber(&ctx, &["a"]);
        let mut delivery = Delivery::new(&ctx.shared);
        for _ in 0..5 {
            publish(&ctx, "a", &[b'7'; 1000]);
        }
        // Listed for each broadcast it could not take; the worker closes it once.
        let overflowed = delivery.deliver(&mut conns, &mut subs, &ctx, 0);
        assert!(!overflowed.is_empty() && overflowed.iter().all(|k| *k == key));
    }
}
