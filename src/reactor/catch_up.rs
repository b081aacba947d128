//! What a subscribe asks for besides live messages: a resume (`since`) replays
//! what the connection missed, a snapshot sends each covered channel's latest
//! message. From history they come only from ring positions before the worker's
//! cursor, and are queued right after the ack: live delivery starts at the cursor,
//! so nothing comes twice and nothing is skipped between the two.
//!
//! In JetStream mode what history cannot answer is read from the stream, off the
//! worker (intake::stream_read): the connection (WebSocket or SSE stream alike)
//! waits in `StreamWait`, its live broadcasts held under the slow-consumer
//! policy, and `take_reply` sends the ack, the replay up to the stream sequence
//! the read stopped at, then the held broadcasts after it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::value::RawValue;
use tungstenite::protocol::frame::coding::CloseCode;

use super::conn::Subscriber;
use super::delivery::queue_gap;
use super::effect::{Context, Effect, Effects};
use super::patterns::Pattern;
use super::send_queue::{Latest, Pushed, SendQueue};
use crate::broadcast::Broadcast;
use crate::channel::pattern_matches;
use crate::config::SlowClientPolicy;
use crate::history::NotRecovered;
use crate::intake::{Reply, Request, Resumed};
use crate::metrics::{DropReason, ResumeResult};
use crate::protocol::{self, CatchUp, Position, Recovery};

/// Queues the `subscribed` ack for `accepted`, with `recovered` when the request
/// had `since`, then the replayed or snapshot messages from memory. In JetStream
/// mode what memory cannot answer (a `since` older than history, a snapshot of
/// channels history lacks) is asked of the stream: the worker is told to queue
/// the read (`Effect::ReadStream`, then `start_read`), and the ack and catch-up
/// follow when the reply comes (`take_reply`). WebSocket and SSE alike.
pub fn acknowledge_or_read(
    accepted: &[&str],
    id: Option<&RawValue>,
    catch_up: &CatchUp,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let may_read = ctx.shared.stream_reads.enabled();
    let resumed = catch_up
        .since
        .as_ref()
        .map(|since| resume(since, accepted, ctx));
    let read_since = match (&resumed, &catch_up.since) {
        (Some((_, _, ResumeResult::TooOld)), Some(since)) if may_read => Some(since.seq),
        _ => None,
    };
    let recovery = resumed.as_ref().map(|(r, _, _)| *r);
    let wants_snapshot = catch_up.snapshot && recovery != Some(Recovery::Recovered);
    // One search of history, under one lock, for both the decision and the snapshot.
    let latest = match wants_snapshot {
        true => ctx.shared.history().latest(accepted, ctx.cursor),
        false => Vec::new(),
    };
    let snapshot_read = may_read && wants_snapshot && !covers_each(accepted, &latest);
    if read_since.is_some() || snapshot_read {
        if read_since.is_none()
            && let Some((_, _, result)) = &resumed
        {
            ctx.shared.metrics.resumed(*result);
        }
        out.push(Effect::ReadStream(Box::new(StreamAsk {
            accepted: accepted.iter().map(|p| Box::from(*p)).collect(),
            id: id.map(|id| id.to_owned()),
            known: if read_since.is_some() { None } else { recovery },
            since: read_since,
            snapshot: catch_up.snapshot,
        })));
        return;
    }
    let replay = match resumed {
        Some((_, replay, result)) => {
            ctx.shared.metrics.resumed(result);
            replay
        }
        None => Vec::new(),
    };
    let ack = protocol::ack("subscribed", accepted, id, recovery);
    let ack = send.form().reply("subscribed", ack);
    send.push_own(ack);
    if !queue_replay(&replay, send, ctx, out) {
        return;
    }
    if wants_snapshot {
        queue_snapshot(&latest, send, ctx);
    }
}

/// Whether `latest` (history's newest before the cursor) holds a message for each
/// of `patterns`, all literal (a wildcard may cover channels history never saw).
fn covers_each(patterns: &[&str], latest: &[Arc<Broadcast>]) -> bool {
    patterns
        .iter()
        .all(|p| !p.contains(['*', '>']) && latest.iter().any(|b| &*b.channel == *p))
}

/// Queues replayed messages; false when the connection overflowed and closes.
fn queue_replay(
    replay: &[Arc<Broadcast>],
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) -> bool {
    let metrics = &ctx.shared.metrics;
    metrics.replayed.fetch_add(replay.len() as u64, Relaxed);
    for b in replay {
        if !queue_broadcast(b, false, send, ctx) {
            close_slow(ctx, out);
            return false;
        }
    }
    true
}

fn queue_snapshot(latest: &[Arc<Broadcast>], send: &mut SendQueue, ctx: &Context) {
    let metrics = &ctx.shared.metrics;
    metrics.snapshots.fetch_add(latest.len() as u64, Relaxed);
    for b in latest {
        send.push_snapshot(b);
    }
}

fn close_slow(ctx: &Context, out: &mut Effects) {
    ctx.shared
        .metrics
        .slow_consumer_closes
        .fetch_add(1, Relaxed);
    out.push(Effect::Close(CloseCode::Again, "slow consumer"));
}

/// What a subscribe asks of the stream, and what its ack needs meanwhile.
#[derive(Debug)]
pub struct StreamAsk {
    pub accepted: Vec<Box<str>>,
    pub id: Option<Box<RawValue>>,
    /// The resume's answer when memory gave it (the stream is asked for a snapshot).
    pub known: Option<Recovery>,
    /// Resume from the stream after this sequence.
    pub since: Option<u64>,
    pub snapshot: bool,
}

impl PartialEq for StreamAsk {
    fn eq(&self, other: &StreamAsk) -> bool {
        let id = |a: &StreamAsk| a.id.as_ref().map(|id| id.get().to_string());
        (&self.accepted, self.known, self.since, self.snapshot)
            == (&other.accepted, other.known, other.since, other.snapshot)
            && id(self) == id(other)
    }
}

impl StreamAsk {
    /// The read for it, on behalf of connection `conn` of `worker`.
    pub fn request(&self, worker: usize, conn: usize, ticket: u64) -> Request {
        Request {
            worker,
            conn,
            ticket,
            patterns: self.accepted.clone(),
            since: self.since,
            // `known` is never Recovered here: a recovered resume needs no read.
            snapshot: self.snapshot,
        }
    }
}

/// A held broadcast, flagged when it replaced older ones of its channel.
type Flagged = (Arc<Broadcast>, bool);

/// A connection waiting for its stream read: live broadcasts are held meanwhile
/// (within WS_SEND_QUEUE_BYTES, past it under the slow-consumer policy), then
/// sent after the replay or snapshot.
pub struct StreamWait {
    pub ticket: u64,
    ask: Box<StreamAsk>,
    /// In ring order, up to the bound.
    held: Vec<Arc<Broadcast>>,
    held_bytes: usize,
    /// `conflate`, once `held` is at its bound: the newest message of each channel
    /// since (as the send queue keeps them).
    latest: Latest,
    /// Held broadcasts `drop_oldest` took: told in a `gap` before the rest.
    dropped: u64,
}

impl StreamWait {
    pub fn new(ticket: u64, ask: Box<StreamAsk>) -> StreamWait {
        StreamWait {
            ticket,
            ask,
            held: Vec::new(),
            held_bytes: 0,
            latest: Latest::default(),
            dropped: 0,
        }
    }

    /// Keeps a live broadcast for later. Past `limit` bytes `policy` decides, as
    /// for a send queue: `conflate` keeps the newest message per channel beyond
    /// the held ones, `drop_oldest` drops the oldest held ones, and `disconnect`
    /// (or a bound that even those pass) is an overflow: a slow consumer.
    pub fn hold(&mut self, b: &Arc<Broadcast>, limit: usize, policy: SlowClientPolicy) -> Pushed {
        let size = b.held_bytes();
        if self.latest.is_empty() && self.held_bytes + size <= limit {
            self.held_bytes += size;
            self.held.push(Arc::clone(b));
            return Pushed::Queued;
        }
        match policy {
            SlowClientPolicy::Disconnect => Pushed::Overflow,
            SlowClientPolicy::DropOldest => {
                self.held_bytes += size;
                self.held.push(Arc::clone(b));
                let n = self.drop_oldest(limit);
                match self.held_bytes <= limit {
                    true => Pushed::DroppedOldest(n),
                    false => Pushed::Overflow,
                }
            }
            SlowClientPolicy::Conflate => self.latest.keep(b, false, Broadcast::held_bytes, limit),
        }
    }

    /// Bytes of the broadcasts held, for the send-queue gauge.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes + self.latest.bytes()
    }

    /// Drops the oldest held broadcasts (never the newest) until `limit` is met.
    fn drop_oldest(&mut self, limit: usize) -> u64 {
        let mut n = 0;
        while self.held_bytes > limit && n + 1 < self.held.len() {
            self.held_bytes -= self.held[n].held_bytes();
            n += 1;
        }
        self.held.drain(..n);
        self.dropped += n as u64;
        n as u64
    }

    /// The ask, everything held in ring order, and how many drop_oldest took.
    fn into_parts(mut self) -> (Box<StreamAsk>, Vec<Flagged>, u64) {
        let latest = self.latest.take();
        let held = self.held.into_iter().map(|b| (b, false));
        (self.ask, held.chain(latest).collect(), self.dropped)
    }
}

/// What a stream read sent that live delivery may still bring (the stream
/// stored it before intake took it into the ring): messages on `patterns` up to
/// `upto` (the replay), and each snapshot channel's up to its snapshot. Live
/// delivery drops those until a broadcast after all of them shows it has passed.
pub struct StreamCut {
    patterns: Vec<Box<str>>,
    upto: u64,
    snapshot: Vec<(Box<str>, u64)>,
    /// The highest sequence this cut drops.
    until: u64,
}

impl StreamCut {
    fn drops(&self, b: &Broadcast) -> bool {
        (b.seq <= self.upto && covers(&self.patterns, b))
            || self
                .snapshot
                .iter()
                .any(|(channel, seq)| **channel == *b.channel && b.seq <= *seq)
    }
}

/// A connection's cuts; a few at most (one stream read at a time, each passed
/// within moments while messages flow).
#[derive(Default)]
pub struct StreamCuts(Vec<StreamCut>);

/// More cuts than this (resumes with no message flowing) drop the oldest.
const MAX_CUTS: usize = 4;

impl StreamCuts {
    /// Whether live broadcast `b` was sent already by a stream read; forgets the
    /// cuts it has passed (the ring is in stream order).
    pub fn drops(&mut self, b: &Broadcast) -> bool {
        if self.0.is_empty() {
            return false;
        }
        self.0.retain(|cut| b.seq <= cut.until);
        self.0.iter().any(|cut| cut.drops(b))
    }

    pub fn add(&mut self, cut: StreamCut) {
        if self.0.len() >= MAX_CUTS {
            self.0.remove(0);
        }
        self.0.push(cut);
    }
}

/// Queues the read `ask` (from `Effect::ReadStream`) for connection `conn`
/// and makes `sub` wait for it, its live broadcasts held; one read per
/// connection at a time, and a full queue, are answered at once without the
/// stream.
pub fn start_read(
    sub: Subscriber<'_>,
    conn: usize,
    ask: Box<StreamAsk>,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let reads = &ctx.shared.stream_reads;
    let ask = if sub.stream_wait.is_some() {
        ask
    } else {
        let ticket = reads.ticket();
        match reads.submit(ask.request(ctx.worker, conn, ticket), &ctx.shared) {
            Ok(()) => {
                *sub.stream_wait = Some(Box::new(StreamWait::new(ticket, ask)));
                return;
            }
            Err(_) => ask,
        }
    };
    let reply = Reply {
        conn,
        ticket: 0,
        resume: ask.since.map(|_| Resumed::Unavailable),
        snapshot: None,
    };
    // Nothing came from the stream: no cut to keep.
    let _ = finish(
        StreamWait::new(0, ask),
        reply,
        sub.subscriptions,
        send,
        ctx,
        out,
    );
}

/// The stream's reply for `sub`, when it is the read `sub` waits for (a
/// connection gone and its key reused has another ticket, or none): see `finish`.
pub fn take_reply(
    sub: Subscriber<'_>,
    reply: Reply,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let Some(wait) = sub.stream_wait.take_if(|w| w.ticket == reply.ticket) else {
        return;
    };
    let patterns = &*sub.subscriptions;
    if let Some(cut) = finish(*wait, reply, patterns, send, ctx, out) {
        sub.stream_cuts.add(cut);
    }
}

/// The stream's reply (or, when the read could not be queued, one made up as
/// `unavailable`): the ack, the replay or snapshot, a `gap` for held broadcasts
/// `drop_oldest` took, then the held broadcasts that the replay or snapshot does
/// not already cover, all of it on the connection's `patterns` now: what was
/// unsubscribed meanwhile (by the client, or by a `refresh` that revoked it) was
/// told as `unsubscribed` already. Returns the cut live delivery keeps to until
/// it has passed what the read sent.
fn finish(
    wait: StreamWait,
    reply: Reply,
    patterns: &[Pattern],
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) -> Option<StreamCut> {
    let (ask, mut held, dropped) = wait.into_parts();
    let mut ask = *ask;
    let (recovery, mut replay, upto) = match (ask.known, reply.resume) {
        (Some(known), _) => (Some(known), Vec::new(), None),
        (None, None) => (None, Vec::new(), None),
        (None, Some(resumed)) => {
            let (recovery, replay, upto, result) = match resumed {
                Resumed::Recovered { upto, messages } => (
                    Recovery::Recovered,
                    messages,
                    Some(upto),
                    ResumeResult::Recovered,
                ),
                Resumed::TooOld => (
                    Recovery::NotRecovered("too_old"),
                    Vec::new(),
                    None,
                    ResumeResult::TooOld,
                ),
                Resumed::Unavailable => (
                    Recovery::NotRecovered("unavailable"),
                    Vec::new(),
                    None,
                    ResumeResult::Unavailable,
                ),
            };
            ctx.shared.metrics.resumed(result);
            (Some(recovery), replay, upto)
        }
    };
    let mut snapshot = reply.snapshot;
    ask.accepted.retain(|p| patterns.iter().any(|q| **q == **p));
    let covered = |b: &Arc<Broadcast>| covers(&ask.accepted, b);
    replay.retain(covered);
    if let Some(latest) = snapshot.as_mut() {
        latest.retain(covered);
    }
    held.retain(|(b, _)| covers(patterns, b));
    let accepted: Vec<&str> = ask.accepted.iter().map(|p| &**p).collect();
    let ack = protocol::ack("subscribed", &accepted, ask.id.as_deref(), recovery);
    let ack = send.form().reply("subscribed", ack);
    send.push_own(ack);
    if !queue_replay(&replay, send, ctx, out) {
        return None;
    }
    let mut snapshot_seqs: Vec<(Box<str>, u64)> = Vec::new();
    if ask.snapshot && recovery != Some(Recovery::Recovered) {
        let latest = snapshot.unwrap_or_else(|| {
            let before = held.first().map_or(ctx.cursor, |(b, _)| b.pos);
            ctx.shared.history().latest(&accepted, before)
        });
        queue_snapshot(&latest, send, ctx);
        snapshot_seqs = latest.iter().map(|b| (b.channel.clone(), b.seq)).collect();
    }
    let upto = upto.unwrap_or(0);
    let until = snapshot_seqs
        .iter()
        .map(|(_, seq)| *seq)
        .fold(upto, u64::max);
    drop(accepted);
    let cut = StreamCut {
        patterns: ask.accepted,
        upto,
        snapshot: snapshot_seqs,
        until,
    };
    out.push(Effect::Flush);
    if dropped > 0 {
        queue_gap(patterns, "dropped", Some(dropped), send, ctx);
    }
    for (b, conflated) in &held {
        // Already sent: in the replay, or as (or older than) its channel's snapshot.
        if cut.drops(b) {
            continue;
        }
        if !queue_broadcast(b, *conflated, send, ctx) {
            close_slow(ctx, out);
            return None;
        }
    }
    let passed = held.last().is_some_and(|(b, _)| b.seq > until);
    (until > 0 && !passed).then_some(cut)
}

/// Whether `b` is on one of `patterns`.
fn covers<P: std::ops::Deref<Target = str>>(patterns: &[P], b: &Broadcast) -> bool {
    patterns.iter().any(|p| pattern_matches(p, &b.channel))
}

/// Whether every message after `since` on `patterns` can be promised from
/// memory, those messages (in order) when it can, and the result to count.
fn resume(
    since: &Position,
    patterns: &[&str],
    ctx: &Context,
) -> (Recovery, Vec<Arc<Broadcast>>, ResumeResult) {
    let epoch = ctx.shared.epoch();
    if epoch.is_empty() {
        let why = Recovery::NotRecovered("unavailable");
        (why, Vec::new(), ResumeResult::Unavailable)
    } else if *since.epoch != *epoch {
        let why = Recovery::NotRecovered("epoch_changed");
        (why, Vec::new(), ResumeResult::EpochChanged)
    } else {
        match ctx.shared.history().replay(patterns, since.seq, ctx.cursor) {
            Ok(replay) => (Recovery::Recovered, replay, ResumeResult::Recovered),
            Err(NotRecovered::TooOld) => {
                let why = Recovery::NotRecovered("too_old");
                (why, Vec::new(), ResumeResult::TooOld)
            }
        }
    }
}

/// A replayed message goes through the slow-consumer policy like a live one;
/// false when the connection overflowed (close it as a slow consumer).
fn queue_broadcast(
    b: &Arc<Broadcast>,
    conflated: bool,
    send: &mut SendQueue,
    ctx: &Context,
) -> bool {
    let (limit, policy) = (ctx.cfg.send_queue_bytes, ctx.cfg.slow_client_policy);
    let metrics = &ctx.shared.metrics;
    let pushed = match conflated {
        true => send.push_conflated(b, limit, policy),
        false => send.push_broadcast(b, limit, policy),
    };
    match pushed {
        Pushed::Queued => {}
        Pushed::Conflated(n) => metrics.dropped(DropReason::Conflated, n),
        Pushed::DroppedOldest(n) => metrics.dropped(DropReason::DropOldest, n),
        Pushed::Overflow => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::broadcast::{MessageBody, OUTSIDE_RING};
    use crate::reactor::conn::{Conn, State};
    use crate::reactor::patterns::Subscriptions;
    use crate::reactor::testing::{Wire, open_websocket, test_context};

    fn msg(pos: u64, seq: u64, channel: &str) -> Arc<Broadcast> {
        let body = MessageBody::new(channel, seq.to_string().as_bytes());
        Arc::new(Broadcast::new(pos, seq, channel, body, Instant::now()))
    }

    fn ask(since: Option<u64>, snapshot: bool) -> Box<StreamAsk> {
        Box::new(StreamAsk {
            accepted: vec!["a.*".into()],
            id: None,
            known: None,
            since,
            snapshot,
        })
    }

    /// (seq, snapshot flag) of the messages sent, after checking the ack first.
    fn sent(frames: &[serde_json::Value]) -> Vec<(u64, bool)> {
        assert_eq!(frames[0]["type"], "subscribed", "{frames:?}");
        frames[1..]
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["snapshot"] == true))
            .collect()
    }

    #[test]
    fn a_stream_replay_is_followed_by_the_held_broadcasts_it_did_not_send() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        conn.sent_json();
        let mut wait = StreamWait::new(1, ask(Some(10), false));
        // Live meanwhile: 12 (in the replay too), 13 of another subscription.
        for held in [msg(0, 12, "a.x"), msg(1, 13, "b.y")] {
            assert_eq!(wait.hold(&held, 1 << 20, DISCONNECT), Pushed::Queued);
        }
        let messages = vec![
            msg(OUTSIDE_RING, 11, "a.x"),
            msg(OUTSIDE_RING, 12, "a.x"),
            msg(OUTSIDE_RING, 15, "a.y"),
        ];
        let resume = Some(Resumed::Recovered { upto: 16, messages });
        let reply = Reply {
            conn: 0,
            ticket: 1,
            resume,
            snapshot: None,
        };
        let mut out = Effects::new();
        let on = patterns(&["a.*", "b.*"]);
        let cut = finish(wait, reply, &on, &mut conn.send, &ctx, &mut out);
        assert_eq!(out, [Effect::Flush]);
        let frames = conn.sent_json();
        assert_eq!(frames[0]["recovered"], true);
        let seqs: Vec<u64> = sent(&frames).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [11, 12, 15, 13]);
        // Stored before intake took it: live brings 14 after the reply; it was sent.
        let mut cuts = StreamCuts::default();
        cuts.add(cut.expect("live has not passed 16 yet"));
        assert!(cuts.drops(&msg(2, 14, "a.y")));
        assert!(
            !cuts.drops(&msg(3, 14, "b.z")),
            "not on the replayed patterns"
        );
        assert!(!cuts.drops(&msg(4, 17, "a.x")));
        assert!(cuts.0.is_empty(), "passed: forgotten");
    }

    #[test]
    fn a_stream_snapshot_comes_before_newer_held_broadcasts_and_older_ones_are_dropped() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        conn.sent_json();
        let mut wait = StreamWait::new(1, ask(None, true));
        for held in [msg(0, 5, "a.x"), msg(1, 9, "a.x")] {
            assert_eq!(wait.hold(&held, 1 << 20, DISCONNECT), Pushed::Queued);
        }
        let snapshot = Some(vec![
            msg(OUTSIDE_RING, 7, "a.x"),
            msg(OUTSIDE_RING, 8, "a.y"),
        ]);
        let reply = Reply {
            conn: 0,
            ticket: 1,
            resume: None,
            snapshot,
        };
        let mut out = Effects::new();
        let cut = finish(
            wait,
            reply,
            &patterns(&["a.*"]),
            &mut conn.send,
            &ctx,
            &mut out,
        );
        let frames = conn.sent_json();
        assert!(frames[0].get("recovered").is_none(), "{frames:?}");
        assert_eq!(sent(&frames), [(7, true), (8, true), (9, false)]);
        assert!(cut.is_none(), "the held 9 is past every snapshot");
    }

    const DISCONNECT: SlowClientPolicy = SlowClientPolicy::Disconnect;

    #[test]
    fn held_broadcasts_past_the_bound_under_disconnect_make_a_slow_consumer() {
        let mut wait = StreamWait::new(1, ask(Some(1), false));
        let big = msg(0, 2, "a.x");
        let limit = big.held_bytes();
        assert_eq!(wait.hold(&big, limit, DISCONNECT), Pushed::Queued);
        assert_eq!(
            wait.hold(&msg(1, 3, "a.x"), limit, DISCONNECT),
            Pushed::Overflow
        );
    }

    fn patterns(list: &[&str]) -> Vec<Pattern> {
        let mut subs = Subscriptions::default();
        list.iter().map(|p| subs.add(p, 0)).collect()
    }

    /// `conn` subscribed to `a.*` and waiting (ticket 1) for `ask`'s read.
    fn waiting(conn: &mut Conn<Wire>, ask: Box<StreamAsk>) -> &mut StreamWait {
        let State::Ws(ws) = &mut conn.state else {
            panic!("not a WebSocket");
        };
        ws.subscriptions = patterns(&["a.*"]);
        ws.stream_wait.insert(Box::new(StreamWait::new(1, ask)))
    }

    /// The reply to a resume after 10: `messages`, up to 10 + their count.
    fn recovered(messages: Vec<Arc<Broadcast>>) -> Reply {
        let upto = 10 + messages.len() as u64;
        Reply {
            conn: 0,
            ticket: 1,
            resume: Some(Resumed::Recovered { upto, messages }),
            snapshot: None,
        }
    }

    fn take(conn: &mut Conn<Wire>, reply: Reply, ctx: &Context) -> Effects {
        let mut out = Effects::new();
        let sub = conn.state.subscriber().expect("a subscriber");
        take_reply(sub, reply, &mut conn.send, ctx, &mut out);
        out
    }

    #[test]
    fn held_broadcasts_past_the_bound_under_drop_oldest_are_dropped_and_told_as_a_gap() {
        let ctx = test_context(&[("WS_SLOW_CLIENT_POLICY", "drop_oldest")]);
        let mut conn = open_websocket(&ctx);
        let wait = waiting(&mut conn, ask(Some(10), false));
        let held: Vec<_> = (20..24).map(|seq| msg(seq, seq, "a.x")).collect();
        let limit = 2 * held[0].held_bytes();
        let policy = ctx.cfg.slow_client_policy;
        let pushed: Vec<Pushed> = held.iter().map(|b| wait.hold(b, limit, policy)).collect();
        use Pushed::{DroppedOldest, Queued};
        assert_eq!(pushed, [Queued, Queued, DroppedOldest(1), DroppedOldest(1)]);
        let out = take(
            &mut conn,
            recovered(vec![msg(OUTSIDE_RING, 11, "a.y")]),
            &ctx,
        );
        assert_eq!(out, [Effect::Flush], "the connection lives on");
        let frames = conn.sent_json();
        assert_eq!(frames[0]["type"], "subscribed");
        assert_eq!(frames[1]["seq"], 11, "the replay");
        assert_eq!(
            (
                &frames[2]["type"],
                &frames[2]["reason"],
                &frames[2]["count"]
            ),
            (&"gap".into(), &"dropped".into(), &2.into()),
            "{frames:?}"
        );
        assert_eq!(frames[2]["channels"], serde_json::json!(["a.*"]));
        let rest: Vec<_> = frames[3..].iter().map(|m| m["seq"].as_u64()).collect();
        assert_eq!(rest, [Some(22), Some(23)], "the newest held ones");
    }

    #[test]
    fn held_broadcasts_past_the_bound_under_conflate_keep_the_newest_per_channel_flagged() {
        let ctx = test_context(&[("WS_SLOW_CLIENT_POLICY", "conflate")]);
        let mut conn = open_websocket(&ctx);
        let wait = waiting(&mut conn, ask(Some(10), false));
        let held = [
            msg(20, 20, "a.x"),
            msg(21, 21, "a.y"),
            msg(22, 22, "a.x"),
            msg(23, 23, "a.z"),
            msg(24, 24, "a.x"),
        ];
        let limit = 2 * held[0].held_bytes();
        let policy = ctx.cfg.slow_client_policy;
        let pushed: Vec<Pushed> = held.iter().map(|b| wait.hold(b, limit, policy)).collect();
        use Pushed::{Conflated, Queued};
        assert_eq!(pushed, [Queued, Queued, Queued, Queued, Conflated(1)]);
        // One more channel past the bound, one per channel: a slow consumer.
        let mut full = StreamWait::new(1, ask(Some(10), false));
        for b in &held {
            full.hold(b, limit, policy);
        }
        assert_eq!(
            full.hold(&msg(25, 25, "a.w"), limit, policy),
            Pushed::Overflow
        );
        let out = take(&mut conn, recovered(vec![]), &ctx);
        assert_eq!(out, [Effect::Flush], "the connection lives on");
        let frames = conn.sent_json();
        let sent: Vec<_> = frames[1..]
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["conflated"] == true))
            .collect();
        let expected = [(20, false), (21, false), (23, false), (24, true)];
        assert_eq!(sent, expected, "in ring order; 22 replaced by 24");
    }

    #[test]
    fn what_was_unsubscribed_during_the_read_is_left_out() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let mut two = ask(Some(10), false);
        two.accepted = vec!["a.*".into(), "b.*".into()];
        let wait = waiting(&mut conn, two);
        for held in [msg(20, 20, "a.x"), msg(21, 21, "b.x")] {
            assert_eq!(wait.hold(&held, 1 << 20, DISCONNECT), Pushed::Queued);
        }
        // An unsubscribe, or a `refresh` that revoked `a.*`, leaves `b.*` alone.
        let State::Ws(ws) = &mut conn.state else {
            unreachable!()
        };
        ws.subscriptions = patterns(&["b.*"]);
        let replay = vec![msg(OUTSIDE_RING, 11, "a.x"), msg(OUTSIDE_RING, 12, "b.y")];
        take(&mut conn, recovered(replay), &ctx);
        let frames = conn.sent_json();
        assert_eq!(
            frames[0]["channels"],
            serde_json::json!(["b.*"]),
            "{frames:?}"
        );
        assert_eq!(frames[0]["recovered"], true);
        let seqs: Vec<u64> = sent(&frames).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [12, 21], "nothing on what it no longer holds");
    }

    #[test]
    fn a_reply_for_an_earlier_connection_under_the_same_key_is_dropped() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        waiting(&mut conn, ask(Some(10), false));
        let mut reply = recovered(vec![msg(OUTSIDE_RING, 11, "a.x")]);
        reply.ticket = 2;
        assert_eq!(take(&mut conn, reply, &ctx), []);
        assert!(conn.sent_json().is_empty());
        assert!(matches!(&conn.state, State::Ws(ws) if ws.stream_wait.is_some()));
    }
}
