//! An open WebSocket: reads frames through tungstenite and answers the client
//! protocol (subscribe, unsubscribe, ping; the echo endpoint echoes), and its
//! timer (pings, the idle timeout, the drain). Replies go into the connection's
//! send queue; subscription changes and closes go to the worker as effects.
//! A connection whose queue is over WS_SEND_QUEUE_BYTES is not read until it
//! drains, and is closed if it stays over (see `on_timer`).

use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::value::RawValue;
use tungstenite::protocol::frame::coding::{CloseCode, Data};
use tungstenite::{Bytes, Error, Message};

use super::catch_up;
use super::conn::{Conn, State, WsConn};
use super::effect::{Context, Effect, Effects};
use super::patterns::Pattern;
use super::send_queue::{QueueIo, SendQueue};
use super::token;
use crate::auth::Session;
use crate::broadcast::{Form, data_frame, deflated_frame, text_frame};
use crate::channel;
use crate::deflate::inbound::Failure;
use crate::protocol::{self, CatchUp, ClientMessage, ErrorCode, RefusedChannels};

/// Messages read from one connection per turn before others get their turn.
const READ_BUDGET: usize = 32;
/// An empty ping frame, shared by every connection.
static PING_FRAME: [u8; 2] = [0x89, 0x00];
/// How long a connection may stay over its queue bound, unread, before it is
/// closed: long enough for a client that paused to catch up.
pub const STALL_GRACE: Duration = Duration::from_secs(5);

/// Why a read turn ends the connection.
#[derive(Debug, PartialEq)]
enum Ending {
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer is gone or finished the closing handshake.
    Gone,
}

/// One place maps a failure to its close code (as ws-rs's result.rs does).
fn ending_for(err: &Error) -> Ending {
    use tungstenite::error::ProtocolError;
    match err {
        Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_) => Ending::Gone,
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Gone,
        Error::Capacity(_) => Ending::Close(CloseCode::Size, "message too big"),
        Error::Utf8(_) => Ending::Close(CloseCode::Invalid, "invalid UTF-8"),
        _ => Ending::Close(CloseCode::Protocol, "protocol error"),
    }
}

/// Reads and answers up to READ_BUDGET messages.
pub fn on_readable<S: Read>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    let Conn {
        stream,
        send,
        state,
        ..
    } = conn;
    let State::Ws(ws) = state else {
        return;
    };
    let ending = read_messages(stream, send, ws, ctx, out);
    // Pongs and close replies tungstenite still holds go into the queue; writing
    // there cannot fail, and a closed context's error repeats the read's.
    let _ = ws.ctx.flush(&mut QueueIo {
        socket: stream,
        queue: send,
    });
    let queued = !send.is_empty();
    match ending {
        None if queued => out.push(Effect::Flush),
        None => {}
        Some(Ending::Close(code, reason)) => {
            ctx.shared.metrics.protocol_closes.fetch_add(1, Relaxed);
            out.push(Effect::Close(code, reason));
        }
        Some(Ending::Gone) if queued => out.push(Effect::CloseAfterWrite),
        Some(Ending::Gone) => out.push(Effect::Remove),
    }
}

fn read_messages<S: Read>(
    stream: &mut S,
    send: &mut SendQueue,
    ws: &mut WsConn,
    ctx: &Context,
    out: &mut Effects,
) -> Option<Ending> {
    for _ in 0..READ_BUDGET {
        // What it asked for is still unread by it: read no more until it is.
        if send.len() > ctx.cfg.send_queue_bytes {
            pause_reading(ws, ctx, out);
            return None;
        }
        let ending = match read_one(stream, send, ws, ctx) {
            Ok(msg) => {
                ws.last_read = ctx.now;
                on_message(msg, ws, send, ctx, out)
            }
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) => Some(inbound_ending(ws).unwrap_or_else(|| ending_for(&e))),
        };
        if ending.is_some() {
            return ending;
        }
    }
    out.push(Effect::ReadAgain);
    None
}

/// One message through tungstenite; on a compressing connection the socket is
/// read through its inbound filter, which inflates compressed messages.
fn read_one<S: Read>(
    stream: &mut S,
    send: &mut SendQueue,
    ws: &mut WsConn,
    ctx: &Context,
) -> Result<Message, Error> {
    let limit = ctx.cfg.max_message_size;
    match ws.deflate.as_deref_mut() {
        Some(d) => {
            let mut socket = d.inbound.reader(stream, limit, &ctx.shared.metrics);
            let mut io = QueueIo {
                socket: &mut socket,
                queue: send,
            };
            ws.ctx.read(&mut io)
        }
        None => ws.ctx.read(&mut QueueIo {
            socket: stream,
            queue: send,
        }),
    }
}

/// The close a failed inbound filter asks for (its read error says only that
/// it failed).
fn inbound_ending(ws: &WsConn) -> Option<Ending> {
    let failure = ws.deflate.as_ref()?.inbound.failure()?;
    Some(match failure {
        Failure::TooBig => Ending::Close(CloseCode::Size, "message too big"),
        Failure::Protocol => Ending::Close(CloseCode::Protocol, "protocol error"),
        Failure::Corrupt => Ending::Close(CloseCode::Invalid, "invalid compressed data"),
    })
}

/// Stops reading a connection over its queue bound (the worker reads it again
/// once its queue drains, see `resume_reading`) and wakes it when its grace ends.
fn pause_reading(ws: &mut WsConn, ctx: &Context, out: &mut Effects) {
    if ws.paused_since.is_none() {
        ws.paused_since = Some(ctx.now);
        ctx.shared.metrics.reads_paused.fetch_add(1, Relaxed);
        out.push(Effect::WakeAt(ws.next_deadline(ctx.cfg.idle_timeout)));
    }
}

/// After a flush: whether a paused connection has drained to half its bound
/// and is read again (the caller reads it; input may wait from before).
pub fn resume_reading<S>(conn: &mut Conn<S>, limit: usize) -> bool {
    let State::Ws(ws) = &mut conn.state else {
        return false;
    };
    if ws.paused_since.is_none() || conn.send.len() > limit / 2 {
        return false;
    }
    ws.paused_since = None;
    true
}

/// A connection still over its bound when its grace ends: closed with 1008 when
/// its own replies fill most of the queue; when broadcasts do, their
/// slow-client policy has the say and it waits another grace.
fn check_stall<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) -> bool {
    let State::Ws(ws) = &mut conn.state else {
        return false;
    };
    let Some(since) = ws.paused_since.filter(|s| ctx.now >= *s + STALL_GRACE) else {
        return false;
    };
    if conn.send.len() <= ctx.cfg.send_queue_bytes {
        ws.paused_since = None;
        out.push(Effect::ReadAgain);
        return false;
    }
    if conn.send.mostly_replies() {
        conn.send.discard_unsent();
        ctx.shared
            .metrics
            .reply_backlog_closes
            .fetch_add(1, Relaxed);
        out.push(Effect::Close(CloseCode::Policy, REPLY_BACKLOG));
        return true;
    }
    ws.paused_since = Some(since.max(ctx.now));
    false
}

/// The close reason of a connection that does not read what it asked for.
pub const REPLY_BACKLOG: &str = "not reading its replies";

/// Pings when due; closes an idle connection, one whose drain time has come,
/// or one that stayed over its queue bound with its own replies.
pub fn on_timer<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    if check_stall(conn, ctx, out) {
        return;
    }
    let State::Ws(ws) = &mut conn.state else {
        return;
    };
    let (now, idle_timeout) = (ctx.now, ctx.cfg.idle_timeout);
    if ws.drain_at.is_some_and(|d| now >= d) {
        return out.push(Effect::Close(CloseCode::Away, "server shutting down"));
    }
    if now >= ws.last_read + idle_timeout {
        return out.push(Effect::Close(CloseCode::Away, "idle timeout"));
    }
    if now >= ws.next_ping {
        ws.next_ping = now + ctx.cfg.ping_interval;
        conn.send.push_own(Bytes::from_static(&PING_FRAME));
    }
    out.push(Effect::WakeAt(ws.next_deadline(idle_timeout)));
    out.push(Effect::Flush);
}

fn on_message(
    msg: Message,
    ws: &mut WsConn,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) -> Option<Ending> {
    let text = match msg {
        Message::Text(text) => text,
        Message::Binary(data) if ws.echo => {
            send.push_own(echo_frame(&data, Data::Binary, send.form(), ctx));
            return None;
        }
        Message::Binary(_) => {
            return Some(Ending::Close(
                CloseCode::Unsupported,
                "binary frames are not supported",
            ));
        }
        // tungstenite answers pings (each costs a pong, so they count against
        // the rate) and close frames itself.
        Message::Ping(_) => return take_rate_token(ws, send, ctx).err(),
        Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
            return None;
        }
    };
    match take_rate_token(ws, send, ctx) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(ending) => return Some(ending),
    }
    if ws.echo {
        let frame = echo_frame(text.as_bytes(), Data::Text, send.form(), ctx);
        send.push_own(frame);
        return None;
    }
    answer_request(&text, ws, send, ctx, out);
    None
}

/// The echo of a message: deflated for a compressing connection (at least
/// WS_COMPRESSION_MIN_BYTES), as broadcasts are.
fn echo_frame(payload: &[u8], data: Data, form: &Form, ctx: &Context) -> Bytes {
    match form {
        Form::Deflated(d) if payload.len() >= d.min_bytes => {
            deflated_frame(payload, data, d.window, &ctx.shared.metrics.compression)
        }
        _ => data_frame(payload.to_vec(), data),
    }
}

/// Whether a message may be answered under WS_CLIENT_MSG_RATE: the first refusal
/// in a row is warned of, and a second's worth of them closes with 1008.
fn take_rate_token(ws: &mut WsConn, send: &mut SendQueue, ctx: &Context) -> Result<bool, Ending> {
    let rate = ctx.cfg.client_msg_rate;
    if ws.rate.allow(rate, ctx.now) {
        return Ok(true);
    }
    // A second's worth of refused messages in a row is abuse, not a burst.
    if ws.rate.refused > rate {
        return Err(Ending::Close(
            CloseCode::Policy,
            "message rate limit exceeded",
        ));
    }
    if ws.rate.refused == 1 {
        let why = "over WS_CLIENT_MSG_RATE messages per second; slow down";
        reply_error(send, ctx, ErrorCode::RateLimited, why, None);
    }
    Ok(false)
}

/// A text message of the client protocol.
fn answer_request(
    text: &str,
    ws: &mut WsConn,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let held = &ws.subscriptions;
    let session = ws.session.as_deref();
    match protocol::parse(text) {
        Err(e) => reply_error(send, ctx, e.code, &e.message, e.id.as_deref()),
        Ok(ClientMessage::Ping { id }) => {
            send.push_own(text_frame(protocol::pong(id.as_deref()).into_bytes()))
        }
        Ok(ClientMessage::Subscribe {
            channels,
            id,
            catch_up,
        }) => {
            let change = Change::Subscribe(&catch_up, session);
            change_subscriptions(change, &channels, id.as_deref(), held, send, ctx, out);
        }
        Ok(ClientMessage::Unsubscribe { channels, id }) => {
            let id = id.as_deref();
            change_subscriptions(Change::Unsubscribe, &channels, id, held, send, ctx, out);
        }
        Ok(ClientMessage::Refresh { token, id }) => {
            let held = held_patterns(held, out);
            let id = id.as_deref();
            if token::refresh(&mut ws.session, &held, &token, id, send, ctx, out) {
                out.push(Effect::WakeAt(ws.next_deadline(ctx.cfg.idle_timeout)));
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Change<'a> {
    /// With what the subscriber asks for besides live messages, and what its
    /// token allows (None: JWT authentication is off).
    Subscribe(&'a CatchUp, Option<&'a Session>),
    Unsubscribe,
}

/// Validates each channel, then changes it; refusals are answered with one
/// error frame per reason (naming a capped number of them), then the accepted
/// channels are acknowledged together in the request's order.
fn change_subscriptions(
    change: Change<'_>,
    channels: &[String],
    id: Option<&RawValue>,
    held: &[Pattern],
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) {
    let mut accepted = Vec::new();
    let mut invalid = RefusedChannels::default();
    let mut forbidden = RefusedChannels::default();
    let mut over_limit = RefusedChannels::default();
    let session = match change {
        Change::Subscribe(_, session) => session,
        Change::Unsubscribe => None,
    };
    let max = session.map_or(ctx.cfg.max_subscriptions, |s| s.max_subscriptions);
    for ch in channels {
        match (channel::validate_pattern(ch), change) {
            (Err(e), _) => invalid.add(ch, || e.to_string()),
            (Ok(()), Change::Subscribe(..)) if session.is_some_and(|s| !s.grant.permits(ch)) => {
                forbidden.add(ch, String::new);
            }
            (Ok(()), Change::Subscribe(..)) if !subscribe(ch, held, max, out) => {
                over_limit.add(ch, String::new);
            }
            (Ok(()), Change::Subscribe(..)) => accepted.push(ch.as_str()),
            (Ok(()), Change::Unsubscribe) => {
                unsubscribe(ch, held, out);
                accepted.push(ch.as_str());
            }
        }
    }
    let over = format!("limit of {max} subscriptions reached; not subscribed");
    reply_refusals(
        ErrorCode::InvalidChannel,
        "invalid channels",
        &invalid,
        id,
        send,
        ctx,
    );
    reply_refusals(
        ErrorCode::Forbidden,
        token::FORBIDDEN,
        &forbidden,
        id,
        send,
        ctx,
    );
    reply_refusals(
        ErrorCode::TooManySubscriptions,
        &over,
        &over_limit,
        id,
        send,
        ctx,
    );
    if accepted.is_empty() {
        return;
    }
    match change {
        Change::Subscribe(catch_up, _) => {
            catch_up::acknowledge_or_read(&accepted, id, catch_up, send, ctx, out);
        }
        Change::Unsubscribe => {
            let ack = protocol::ack("unsubscribed", &accepted, id, None);
            send.push_own(text_frame(ack.into_bytes()));
        }
    }
}

/// The one error frame for a request's channels refused with `code`, if any.
fn reply_refusals(
    code: ErrorCode,
    summary: &str,
    refused: &RefusedChannels,
    id: Option<&RawValue>,
    send: &mut SendQueue,
    ctx: &Context,
) {
    if let Some(frame) = refused.error(code, summary, id) {
        let metrics = &ctx.shared.metrics;
        metrics.client_error(code);
        let unlisted = refused.unlisted() as u64;
        metrics.unlisted_channels.fetch_add(unlisted, Relaxed);
        send.push_own(text_frame(frame.into_bytes()));
    }
}

/// Lists `pattern` to add unless it is held already; `false` (refused) past `max`.
fn subscribe(pattern: &str, held: &[Pattern], max: usize, out: &mut Effects) -> bool {
    if holds(held, out, pattern) {
        return true;
    }
    if held_count(held, out) >= max {
        return false;
    }
    out.push(Effect::Subscribe(pattern.to_string()));
    true
}

/// Lists `pattern` to drop when it is held (one not held is acknowledged all
/// the same).
fn unsubscribe(pattern: &str, held: &[Pattern], out: &mut Effects) {
    if holds(held, out, pattern) {
        out.push(Effect::Unsubscribe(pattern.to_string()));
    }
}

/// Whether the connection holds `pattern` once the changes listed so far this
/// turn are applied: the last one naming it wins.
fn holds(held: &[Pattern], out: &Effects, pattern: &str) -> bool {
    let pending = out.iter().rev().find_map(|e| match e {
        Effect::Subscribe(p) if p == pattern => Some(true),
        Effect::Unsubscribe(p) if p == pattern => Some(false),
        _ => None,
    });
    pending.unwrap_or_else(|| held.iter().any(|p| **p == *pattern))
}

/// The patterns the connection holds once the changes listed so far this turn
/// are applied.
fn held_patterns(held: &[Pattern], out: &Effects) -> Vec<String> {
    let mut now: Vec<String> = held.iter().map(|p| String::from(&**p)).collect();
    for e in out {
        match e {
            Effect::Subscribe(p) => now.push(p.clone()),
            Effect::Unsubscribe(p) => now.retain(|q| q != p),
            _ => {}
        }
    }
    now
}

/// How many patterns the connection holds once the listed changes are applied
/// (each is listed only when it changes what is held).
fn held_count(held: &[Pattern], out: &Effects) -> usize {
    out.iter().fold(held.len(), |n, e| match e {
        Effect::Subscribe(_) => n + 1,
        Effect::Unsubscribe(_) => n - 1,
        _ => n,
    })
}

fn reply_error(
    send: &mut SendQueue,
    ctx: &Context,
    code: ErrorCode,
    message: &str,
    id: Option<&RawValue>,
) {
    ctx.shared.metrics.client_error(code);
    send.push_own(text_frame(protocol::error(code, message, id).into_bytes()));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tungstenite::protocol::frame::coding::OpCode;

    use super::*;
    use crate::reactor::testing::{
        Wire, client_close, client_frame, client_text, open_websocket, test_conn, test_context,
        upgrade_request,
    };

    /// What the handler asks after the peer sent `frames`.
    fn feed(conn: &mut Conn<Wire>, ctx: &Context, frames: &[Vec<u8>]) -> Effects {
        for frame in frames {
            conn.stream.give(frame);
        }
        let mut out = Effects::new();
        on_readable(conn, ctx, &mut out);
        out
    }

    fn subscribe_to(channels: &[&str]) -> Vec<u8> {
        let json = serde_json::json!({"type": "subscribe", "channels": channels, "id": 7});
        client_text(&json.to_string())
    }

    #[test]
    fn subscribe_lists_new_patterns_and_acks_every_valid_one() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let out = feed(&mut conn, &ctx, &[subscribe_to(&["a.b", "a.*", "a.b"])]);
        let sub = |p: &str| Effect::Subscribe(p.into());
        assert_eq!(out, [sub("a.b"), sub("a.*"), Effect::Flush]);
        let replies = conn.sent_json();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["type"], "subscribed");
        assert_eq!(
            replies[0]["channels"],
            serde_json::json!(["a.b", "a.*", "a.b"])
        );
        assert_eq!(replies[0]["id"], 7);
    }

    #[test]
    fn changes_listed_earlier_in_the_same_read_count() {
        let ctx = test_context(&[("WS_MAX_SUBSCRIPTIONS", "2")]);
        let mut conn = open_websocket(&ctx);
        let unsub = client_text(r#"{"type":"unsubscribe","channels":["a","zzz"]}"#);
        let frames = [subscribe_to(&["a", "b"]), unsub, subscribe_to(&["c", "d"])];
        let out = feed(&mut conn, &ctx, &frames);
        let expected = [
            Effect::Subscribe("a".into()),
            Effect::Subscribe("b".into()),
            Effect::Unsubscribe("a".into()),
            Effect::Subscribe("c".into()),
            Effect::Flush,
        ];
        assert_eq!(out, expected);
        let replies = conn.sent_json();
        let kinds: Vec<_> = replies
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["subscribed", "unsubscribed", "error", "subscribed"]);
        assert_eq!(replies[1]["channels"], serde_json::json!(["a", "zzz"]));
        assert_eq!(replies[2]["code"], "too_many_subscriptions");
        assert_eq!(replies[3]["channels"], serde_json::json!(["c"]));
    }

    #[test]
    fn bad_requests_get_an_error_and_the_connection_lives_on() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let frames = [
            client_text("{not json"),
            client_text(r#"{"type":"dance"}"#),
            client_text(r#"{"type":"subscribe","channels":["a..b"],"id":"x"}"#),
            client_text(r#"{"type":"ping","id":1}"#),
        ];
        assert_eq!(feed(&mut conn, &ctx, &frames), [Effect::Flush]);
        let replies = conn.sent_json();
        let codes: Vec<_> = replies.iter().map(|r| r["code"].clone()).collect();
        assert_eq!(
            codes[..3],
            ["invalid_json", "unknown_type", "invalid_channel"]
        );
        assert_eq!(replies[2]["id"], "x");
        assert_eq!(
            (replies[3]["type"].as_str(), replies[3]["id"].as_i64()),
            (Some("pong"), Some(1))
        );
        assert!(matches!(conn.state, State::Ws(_)));
    }

    /// A subscribe naming `bad` invalid channels (each `width` bytes) and the
    /// valid `good` ones, with an id of `id_bytes` bytes of JSON.
    fn hostile_subscribe(bad: usize, width: usize, good: &[&str], id_bytes: usize) -> Vec<u8> {
        let mut channels: Vec<String> = (0..bad)
            .map(|i| format!("{i:0width$} x", width = width - 2))
            .collect();
        channels.extend(good.iter().map(|g| g.to_string()));
        let id = "i".repeat(id_bytes - 2);
        let json = serde_json::json!({"type": "subscribe", "channels": channels, "id": id});
        client_text(&json.to_string())
    }

    #[test]
    fn thousands_of_bad_channels_get_one_capped_error_then_the_ack() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let frame = hostile_subscribe(2500, 8, &["ok.a", "ok.*"], 30_000);
        assert!(frame.len() < ctx.cfg.max_message_size);
        let out = feed(&mut conn, &ctx, &[frame]);
        assert_eq!(out.iter().filter(|e| **e == Effect::Flush).count(), 1);
        assert!(conn.send.len() < 4096, "{} bytes queued", conn.send.len());
        let replies = conn.sent_json();
        let kinds: Vec<_> = replies
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["error", "subscribed"]);
        let error = &replies[0];
        assert_eq!(error["code"], "invalid_channel");
        let named = error["channels"].as_array().unwrap();
        assert_eq!(named.len(), protocol::MAX_LISTED_CHANNELS);
        assert_eq!(named[0], "000000 x");
        assert_eq!(error["unlisted"], 2500 - protocol::MAX_LISTED_CHANNELS);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("\"000000 x\" (invalid character ' ')"),
            "{message}"
        );
        assert!(message.ends_with("and 2484 more"), "{message}");
        for reply in &replies {
            assert_eq!(
                (reply.get("id"), &reply["id_omitted"]),
                (None, &serde_json::json!(true))
            );
        }
        assert_eq!(replies[1]["channels"], serde_json::json!(["ok.a", "ok.*"]));
        let metrics = &ctx.shared.metrics;
        assert_eq!(metrics.unlisted_channels.load(Relaxed), 2484);
    }

    #[test]
    fn long_bad_channel_names_are_cut_and_short_ids_echoed() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        feed(&mut conn, &ctx, &[hostile_subscribe(1, 5000, &[], 128)]);
        let replies = conn.sent_json();
        assert_eq!(replies.len(), 1);
        let named = replies[0]["channels"][0].as_str().unwrap();
        assert_eq!(named.len(), protocol::MAX_ECHOED_CHANNEL);
        assert_eq!(replies[0]["id"].as_str().unwrap().len(), 126);
        assert!(replies[0].get("unlisted").is_none());
    }

    #[test]
    fn too_many_subscriptions_is_one_frame_per_request() {
        let ctx = test_context(&[("WS_MAX_SUBSCRIPTIONS", "2")]);
        let mut conn = open_websocket(&ctx);
        let out = feed(
            &mut conn,
            &ctx,
            &[subscribe_to(&["a", "b", "c", "d", "a..b"])],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        let replies = conn.sent_json();
        let codes: Vec<_> = replies.iter().map(|r| r["code"].clone()).collect();
        assert_eq!(codes[..2], ["invalid_channel", "too_many_subscriptions"]);
        assert_eq!(replies[1]["channels"], serde_json::json!(["c", "d"]));
        assert_eq!(replies[2]["channels"], serde_json::json!(["a", "b"]));
        assert!(replies.iter().all(|r| r["id"] == 7));
    }

    /// Requests that each queue one error frame of about 2.4 KB.
    fn costly_requests(n: usize) -> Vec<Vec<u8>> {
        vec![hostile_subscribe(16, 60, &[], 10); n]
    }

    #[test]
    fn a_connection_over_its_bound_is_not_read_then_closed_with_1008() {
        let mut ctx = test_context(&[("WS_SEND_QUEUE_BYTES", "4096")]);
        let mut conn = open_websocket(&ctx);
        let out = feed(&mut conn, &ctx, &costly_requests(10));
        let paused_at = ctx.now;
        assert_eq!(
            out,
            [Effect::WakeAt(paused_at + STALL_GRACE), Effect::Flush]
        );
        let held = conn.send.len();
        assert!((4096..4096 + 2600).contains(&held), "{held} bytes");
        // More input is not read while the queue stays over.
        assert_eq!(feed(&mut conn, &ctx, &costly_requests(1)), [Effect::Flush]);
        assert_eq!(conn.send.len(), held);
        assert_eq!(ctx.shared.metrics.reads_paused.load(Relaxed), 1);
        ctx.now = paused_at + STALL_GRACE;
        let mut out = Effects::new();
        on_timer(&mut conn, &ctx, &mut out);
        assert_eq!(out, [Effect::Close(CloseCode::Policy, REPLY_BACKLOG)]);
        assert_eq!(conn.send.len(), 0, "its unread replies are dropped");
        assert_eq!(ctx.shared.metrics.reply_backlog_closes.load(Relaxed), 1);
    }

    #[test]
    fn a_paused_connection_that_drains_is_read_again() {
        let ctx = test_context(&[("WS_SEND_QUEUE_BYTES", "8192")]);
        let mut conn = open_websocket(&ctx);
        feed(&mut conn, &ctx, &costly_requests(6));
        assert!(!resume_reading(&mut conn, 8192), "still over");
        let first = conn.sent_json().len();
        assert!(first < 6, "{first} answered before the pause");
        assert!(resume_reading(&mut conn, 8192));
        let out = feed(&mut conn, &ctx, &[]);
        assert_eq!(first + conn.sent_json().len(), 6, "{out:?}");
        assert!(matches!(&conn.state, State::Ws(ws) if ws.paused_since.is_none()));
    }

    #[test]
    fn ping_frames_count_against_the_message_rate() {
        let ctx = test_context(&[("WS_CLIENT_MSG_RATE", "2")]);
        let mut conn = open_websocket(&ctx);
        // A masked ping frame with the payload "p" (mask 0).
        let ping = vec![0x89, 0x81, 0, 0, 0, 0, b'p'];
        let out = feed(&mut conn, &ctx, &vec![ping; 5]);
        let close = Effect::Close(CloseCode::Policy, "message rate limit exceeded");
        assert_eq!(out, [close]);
        let replies = conn.sent_json();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["code"], "rate_limited");
    }

    #[test]
    fn a_burst_over_the_rate_is_warned_once_then_closed_with_1008() {
        let ctx = test_context(&[("WS_CLIENT_MSG_RATE", "2")]);
        let mut conn = open_websocket(&ctx);
        let ping = client_text(r#"{"type":"ping"}"#);
        // 2 allowed, 2 refused (one warning), the 5th refusal in a row closes.
        let out = feed(&mut conn, &ctx, &vec![ping.clone(); 4]);
        assert_eq!(out, [Effect::Flush]);
        let replies = conn.sent_json();
        let kinds: Vec<_> = replies
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["pong", "pong", "error"]);
        assert_eq!(replies[2]["code"], "rate_limited");
        let out = feed(&mut conn, &ctx, &[ping]);
        assert_eq!(
            out,
            [Effect::Close(
                CloseCode::Policy,
                "message rate limit exceeded"
            )]
        );
        assert_eq!(ctx.shared.metrics.protocol_closes.load(Relaxed), 1);
    }

    #[test]
    fn oversize_binary_and_broken_frames_close_with_their_codes() {
        let cases = [
            (client_text(&"x".repeat(200)), CloseCode::Size),
            (
                client_frame(OpCode::Data(Data::Binary), b"\x01"),
                CloseCode::Unsupported,
            ),
            (
                client_frame(OpCode::Data(Data::Text), b"\xff\xfe"),
                CloseCode::Invalid,
            ),
            (b"\x81\x05hello".to_vec(), CloseCode::Protocol), // unmasked
        ];
        for (frame, code) in cases {
            let ctx = test_context(&[("WS_MAX_MESSAGE_SIZE", "128")]);
            let mut conn = open_websocket(&ctx);
            let out = feed(&mut conn, &ctx, &[frame]);
            assert!(
                matches!(out[..], [Effect::Close(c, _)] if c == code),
                "{code:?}: {out:?}"
            );
        }
    }

    #[test]
    fn the_peer_hanging_up_removes_the_socket_unless_replies_are_queued() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        conn.stream.hang_up();
        assert_eq!(feed(&mut conn, &ctx, &[]), [Effect::Remove]);
        let mut conn = open_websocket(&ctx);
        conn.stream.hang_up();
        let out = feed(&mut conn, &ctx, &[client_text(r#"{"type":"ping"}"#)]);
        assert_eq!(out, [Effect::CloseAfterWrite]);
    }

    #[test]
    fn a_close_frame_is_answered_and_ends_after_the_write() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let out = feed(&mut conn, &ctx, &[client_close()]);
        assert_eq!(out, [Effect::CloseAfterWrite]);
        assert!(matches!(conn.sent_messages()[..], [Message::Close(_)]));
    }

    #[test]
    fn a_long_burst_is_read_over_several_turns() {
        let ctx = test_context(&[("WS_CLIENT_MSG_RATE", "1000")]);
        let mut conn = open_websocket(&ctx);
        let ping = client_text(r#"{"type":"ping"}"#);
        let out = feed(&mut conn, &ctx, &vec![ping; READ_BUDGET + 8]);
        assert_eq!(out, [Effect::ReadAgain, Effect::Flush]);
        assert_eq!(conn.sent_json().len(), READ_BUDGET);
        assert_eq!(feed(&mut conn, &ctx, &[]), [Effect::Flush]);
        assert_eq!(conn.sent_json().len(), 8);
    }

    #[test]
    fn the_timer_pings_then_closes_an_idle_connection() {
        let mut ctx = test_context(&[("WS_PING_INTERVAL", "10s"), ("WS_IDLE_TIMEOUT", "25s")]);
        let mut conn = open_websocket(&ctx);
        let start = ctx.now;
        ctx.now = start + Duration::from_secs(10);
        let mut out = Effects::new();
        on_timer(&mut conn, &ctx, &mut out);
        let next_ping = start + Duration::from_secs(20);
        assert_eq!(out, [Effect::WakeAt(next_ping), Effect::Flush]);
        assert!(matches!(conn.sent_messages()[..], [Message::Ping(_)]));
        out.clear();
        ctx.now = start + Duration::from_secs(25);
        on_timer(&mut conn, &ctx, &mut out);
        assert_eq!(out, [Effect::Close(CloseCode::Away, "idle timeout")]);
    }

    #[test]
    fn the_echo_endpoint_echoes_text_and_binary() {
        let ctx = test_context(&[("WS_ECHO_PATH", "/echo")]);
        let mut conn = test_conn(&ctx, upgrade_request("/echo", ""));
        crate::reactor::http_conn::on_readable(&mut conn, &ctx, &mut Effects::new());
        assert!(
            conn.sent_messages().is_empty(),
            "no welcome on the echo path"
        );
        let frames = [
            client_text("hi"),
            client_frame(OpCode::Data(Data::Binary), b"\x00\x01"),
        ];
        assert_eq!(feed(&mut conn, &ctx, &frames), [Effect::Flush]);
        let echoed = conn.sent_messages();
        assert_eq!(echoed, [Message::text("hi"), Message::binary(vec![0u8, 1])]);
    }
}
