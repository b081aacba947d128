//! What a subscribe asks for besides live messages: a resume (`since`) replays
//! what the connection missed, a snapshot sends each covered channel's latest
//! message. Both come from history, only from ring positions before the worker's
//! cursor, and are queued right after the ack: live delivery starts at the cursor,
//! so nothing comes twice and nothing is skipped between the two.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::value::RawValue;
use tungstenite::protocol::frame::coding::CloseCode;

use super::effect::{Context, Effect, Effects};
use super::send_queue::{Pushed, SendQueue};
use crate::broadcast::Broadcast;
use crate::history::NotRecovered;
use crate::metrics::{DropReason, ResumeResult};
use crate::protocol::{self, CatchUp, Position, Recovery};

/// Queues the `subscribed` ack for `accepted`, with `recovered` when the request
/// had `since`, then the replayed or snapshot messages.
pub fn acknowledge(
    accepted: &[&str],
    id: Option<&RawValue>,
    catch_up: &CatchUp,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let (recovery, replay) = match &catch_up.since {
        Some(since) => {
            let (recovery, replay) = resume(since, accepted, ctx);
            (Some(recovery), replay)
        }
        None => (None, Vec::new()),
    };
    let ack = protocol::ack("subscribed", accepted, id, recovery);
    let ack = send.form().reply("subscribed", ack);
    send.push_own(ack);
    let metrics = &ctx.shared.metrics;
    metrics.replayed.fetch_add(replay.len() as u64, Relaxed);
    for b in &replay {
        if !queue_broadcast(b, send, ctx) {
            ctx.shared
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Relaxed);
            out.push(Effect::Close(CloseCode::Again, "slow consumer"));
            return;
        }
    }
    // With a recovered resume the replay is the catch-up (docs/protocol.md).
    if catch_up.snapshot && recovery != Some(Recovery::Recovered) {
        let latest = ctx.shared.history().latest(accepted, ctx.cursor);
        metrics.snapshots.fetch_add(latest.len() as u64, Relaxed);
        for b in latest {
            let event = send.form().snapshot(&b);
            send.push_own(event);
        }
    }
}

/// Whether every message after `since` on `patterns` can be promised, and those
/// messages (in order) when it can.
fn resume(since: &Position, patterns: &[&str], ctx: &Context) -> (Recovery, Vec<Arc<Broadcast>>) {
    let epoch = ctx.shared.epoch();
    let (recovery, replay, result) = if epoch.is_empty() {
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
    };
    ctx.shared.metrics.resumed(result);
    (recovery, replay)
}

/// A replayed message goes through the slow-consumer policy like a live one;
/// false when the connection overflowed (close it as a slow consumer).
fn queue_broadcast(b: &Arc<Broadcast>, send: &mut SendQueue, ctx: &Context) -> bool {
    let (limit, policy) = (ctx.cfg.send_queue_bytes, ctx.cfg.slow_client_policy);
    let metrics = &ctx.shared.metrics;
    match send.push_broadcast(b, limit, policy) {
        Pushed::Queued => {}
        Pushed::Conflated(n) => metrics.dropped(DropReason::Conflated, n),
        Pushed::DroppedOldest(n) => metrics.dropped(DropReason::DropOldest, n),
        Pushed::Overflow => return false,
    }
    true
}
