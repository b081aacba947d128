//! An SSE stream (`GET /sse`) in a worker: started from a parsed request (slot,
//! 200 head, the `subscribed` event and the catch-up through catch_up.rs, the
//! same as a WebSocket subscribe), then fed by delivery like any subscriber; its
//! timer writes keep-alive comments and ends it at its drain time.

use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;

use tungstenite::Bytes;

use super::accounting::{SseClient, WsSlot};
use super::catch_up;
use super::closing::{self, Discarded};
use super::conn::{Conn, Progress, SseConn, State};
use super::effect::{Context, Effect, Effects};
use crate::broadcast::Form;
use crate::http::Response;
use crate::http::upgrade;
use crate::metrics::Reject;
use crate::sse::{self, SseRequest};

/// Reads of what a stream's client still sends, per turn (it is discarded).
const READ_BUDGET: usize = 8;

/// Opens the stream: `Err` with the 503 answer when no slot is free.
pub fn start<S>(
    conn: &mut Conn<S>,
    ctx: &Context,
    head: Vec<u8>,
    req: SseRequest,
    out: &mut Effects,
) -> Result<(), Response> {
    let Some(slot) = WsSlot::claim(&ctx.shared, ctx.cfg.max_connections) else {
        return Err(upgrade::not_accepting(Reject::MaxConnections));
    };
    // The drain waits for streams as for WebSockets.
    conn.count.count_websocket();
    conn.send.set_form(Form::Sse(ctx.shared.epoch()));
    conn.send.push_own(Bytes::from(head));
    let mut held: Vec<&str> = Vec::new();
    for ch in &req.channels {
        if !held.contains(&ch.as_str()) {
            held.push(ch);
            out.push(Effect::Subscribe(ch.clone()));
        }
    }
    let accepted: Vec<&str> = req.channels.iter().map(String::as_str).collect();
    catch_up::acknowledge_or_read(&accepted, None, &req.catch_up, &mut conn.send, ctx, out);
    let stream = SseConn {
        subscriptions: Vec::new(),
        last_pos: None,
        next_keep_alive: ctx.now + ctx.cfg.ping_interval,
        progress: Progress::new(ctx.now),
        drain_at: None,
        expires_at: req.expires_at,
        stream_wait: None,
        stream_cuts: Default::default(),
        _slot: slot,
        _client: SseClient::count(&ctx.shared),
    };
    out.push(Effect::WakeAt(stream.next_deadline(ctx.cfg.idle_timeout)));
    out.push(Effect::Flush);
    conn.state = State::Sse(Box::new(stream));
    Ok(())
}

/// Discards what the client sends; its hang-up ends the stream.
pub fn on_readable<S: Read>(conn: &mut Conn<S>, out: &mut Effects) {
    match closing::discard_input(&mut conn.stream, READ_BUDGET) {
        Discarded::Gone => out.push(Effect::Remove),
        Discarded::More => out.push(Effect::ReadAgain),
        Discarded::Empty => {}
    }
}

/// A keep-alive comment when due and nothing else waits to be written (a full
/// queue is not idle, and comments must not pile up there); at the drain time, a
/// last comment and the end of the stream. A reader that took none of its
/// queued bytes for WS_IDLE_TIMEOUT is dropped as a slow consumer: nothing more
/// could reach it, not even a last comment.
pub fn on_timer<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    let State::Sse(stream) = &mut conn.state else {
        return;
    };
    if stream
        .progress
        .stalled(&conn.send, ctx.now, ctx.cfg.idle_timeout)
    {
        let metrics = &ctx.shared.metrics;
        metrics.slow_consumer_closes.fetch_add(1, Relaxed);
        return out.push(Effect::Remove);
    }
    if stream.drain_at.is_some_and(|d| ctx.now >= d) {
        conn.send.push_own(Bytes::from_static(sse::SHUTTING_DOWN));
        return out.push(Effect::CloseAfterWrite);
    }
    if ctx.now >= stream.next_keep_alive {
        stream.next_keep_alive = ctx.now + ctx.cfg.ping_interval;
        if conn.send.is_empty() {
            conn.send.push_own(Bytes::from_static(sse::KEEP_ALIVE));
            out.push(Effect::Flush);
        }
    }
    out.push(Effect::WakeAt(stream.next_deadline(ctx.cfg.idle_timeout)));
}
