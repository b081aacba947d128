//! A fresh socket: reads its request and answers it, either by upgrading it to a
//! WebSocket or with one of the plain endpoints (then closing).

use std::io::{self, Read};
use std::sync::Arc;

use tungstenite::Bytes;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::accounting::{CompressingCount, WsSlot};
use super::conn::{Compressing, Conn, RateLimit, State, WsConn};
use super::dead_reader::{self, StreamSocket};
use super::effect::{Context, Effect, Effects};
use super::token;
use crate::auth::Session;
use crate::broadcast::{Deflate, Form, text_frame};
use crate::deflate::inbound::Inbound;
use crate::deflate::{self, Agreed};
use crate::endpoints;
use crate::http::upgrade::{self, Refusal};
use crate::http::{MAX_HEAD_BYTES, ParseError, Request, Response, parse_head};
use crate::metrics::Reject;
use crate::protocol;
use crate::sse::{self, SSE_PATH, SseRequest};

/// tungstenite's read buffer per connection. Client messages are small
/// subscribe requests; 128 KiB (the default) times thousands of sockets is not.
/// Kept at 128 bytes because the buffer never shrinks: tungstenite reserves a
/// frame's whole length on top of what it already holds, so one 330-byte
/// subscribe grew a 512-byte buffer to ~2 KiB for good (heaptrack, scenario E),
/// while from 128 it grows to about the frame's size.
const WS_READ_BUFFER: usize = 128;

/// Characters of a refused Origin header that reach the log.
const MAX_LOGGED_ORIGIN: usize = 200;

/// What a complete request head asks for.
enum Route {
    /// A valid upgrade: the 101 answer is ready, the head is `head_len` bytes.
    Upgrade(Opening),
    Respond(Response),
    /// A valid `GET /sse`: the 200 head, and what to subscribe to.
    Stream(Vec<u8>, SseRequest),
    /// A publish whose body has not fully arrived.
    NeedBody,
}

/// Reads what the socket has; once the head (and a publish body) is complete,
/// answers it.
pub fn on_readable<S: Read + StreamSocket>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    let State::Http(h) = &mut conn.state else {
        return;
    };
    if read_request(&mut conn.stream, &mut h.buf, ctx).is_err() {
        return out.push(Effect::Remove);
    }
    let route = match parse_head(&h.buf) {
        Ok(None) => return,
        Err(ParseError::TooLarge) => {
            Route::Respond(Response::text(431, "request head over 8 KiB\n"))
        }
        Err(ParseError::Malformed(why)) => Route::Respond(Response::text(400, &format!("{why}\n"))),
        Ok(Some(req)) => route(ctx, &req, &h.buf[req.head_len..], out),
    };
    match route {
        Route::NeedBody => {}
        Route::Respond(resp) => respond(conn, resp, out),
        Route::Upgrade(opening) => upgrade(conn, ctx, opening, out),
        Route::Stream(head, req) => {
            if let Err(resp) = super::sse_conn::start(conn, ctx, head, req, out) {
                return respond(conn, resp, out);
            }
            dead_reader::watch(&conn.stream, ctx);
        }
    }
}

/// A request still incomplete at its deadline is dropped without an answer.
pub fn on_timer<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    if let State::Http(h) = &conn.state
        && ctx.now >= h.deadline
    {
        out.push(Effect::Remove);
    }
}

/// Appends what the socket holds to `buf`, up to a head and the largest body.
/// `Err` when the peer hung up or the socket failed.
fn read_request<S: Read>(stream: &mut S, buf: &mut Vec<u8>, ctx: &Context) -> io::Result<()> {
    let cap = MAX_HEAD_BYTES + ctx.cfg.max_message_size;
    let mut chunk = [0u8; 4096];
    while buf.len() < cap {
        let want = chunk.len().min(cap - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn route(ctx: &Context, req: &Request, rest: &[u8], out: &mut Effects) -> Route {
    if req.path == SSE_PATH {
        return match sse_route(ctx, req, out) {
            Ok(route) => route,
            Err(resp) => Route::Respond(resp),
        };
    }
    let is_ws = req.path == ctx.cfg.ws_path;
    let is_echo = ctx.cfg.echo_path.as_deref() == Some(req.path.as_str());
    if !(is_ws || is_echo) {
        return match endpoints::answer(&ctx.shared, &ctx.cfg, req, rest) {
            Some(resp) => Route::Respond(resp),
            None => Route::NeedBody,
        };
    }
    let admission = || ctx.shared.admission_closed();
    match upgrade::check_upgrade(req, &ctx.cfg.allowed_origins, admission) {
        Ok(()) => {
            // The conformance echo needs no token.
            let session = if is_echo {
                None
            } else {
                match token::admit(ctx, req) {
                    Ok(session) => session,
                    Err(resp) => return Route::Respond(resp),
                }
            };
            let deflate = deflate::negotiate(req, ctx.cfg.compression, ctx.cfg.compression_chain);
            let extensions = deflate.map(|d| d.header_value());
            let key = req.header("Sec-WebSocket-Key").unwrap_or_default();
            Route::Upgrade(Opening {
                echo: is_echo,
                answer: upgrade::upgrade_response(key, extensions.as_deref()),
                head_len: req.head_len,
                deflate,
                session,
            })
        }
        Err(refusal) => Route::Respond(refused(ctx, req, refusal, out)),
    }
}

/// `GET /sse`: the Origin (one given must be allowed; a same-origin EventSource
/// sends none), the request, then admission, as for an upgrade.
fn sse_route(ctx: &Context, req: &Request, out: &mut Effects) -> Result<Route, Response> {
    if req.method != "GET" {
        return Err(Response::text(405, "use GET\n").header("Allow", "GET"));
    }
    let allowed = &ctx.cfg.allowed_origins;
    if let Some(origin) = req.header("Origin")
        && !allowed.is_empty()
        && !allowed.iter().any(|o| o.eq_ignore_ascii_case(origin))
    {
        return Err(refused(ctx, req, Refusal::Origin, out));
    }
    // The token (`?token=`, the cookie or Bearer): 401, then its grant: 403.
    let session = token::admit(ctx, req)?;
    let mut sse_req = sse::parse_request(req)?;
    let mut max_subscriptions = ctx.cfg.max_subscriptions;
    if let Some(session) = &session {
        token::check_grant(session, &sse_req.channels, ctx)?;
        sse_req.expires_at = Some(session.expires_at);
        max_subscriptions = session.max_subscriptions;
    }
    sse::check_count(&sse_req.channels, max_subscriptions)?;
    if let Some(why) = ctx.shared.admission_closed() {
        return Err(refused(ctx, req, Refusal::Closed(why), out));
    }
    Ok(Route::Stream(sse::stream_head(&ctx.cfg, req), sse_req))
}

/// Counts the refusal; a refused Origin is also logged, since the browser
/// shows its user only a failed connection (1006).
fn refused(ctx: &Context, req: &Request, refusal: Refusal, out: &mut Effects) -> Response {
    if let Some(why) = refusal.reject_reason() {
        ctx.shared.metrics.reject(why);
    }
    if let Refusal::Origin = refusal {
        let origin = req
            .header("Origin")
            .map(|o| o.chars().take(MAX_LOGGED_ORIGIN).collect());
        out.push(Effect::RefusedOrigin(origin));
    }
    refusal.into_response()
}

/// Queues the answer; the socket closes once it is written.
fn respond<S>(conn: &mut Conn<S>, resp: Response, out: &mut Effects) {
    conn.send.push_own(Bytes::from(resp.to_bytes()));
    out.push(Effect::CloseAfterWrite);
}

/// A valid upgrade's answer and what it agreed to.
struct Opening {
    echo: bool,
    answer: Vec<u8>,
    head_len: usize,
    deflate: Option<Agreed>,
    /// What its token allows (JWT authentication; None when off).
    session: Option<Box<Session>>,
}

/// Takes a WebSocket slot, queues the 101 (and the welcome) and opens the
/// connection; frames sent right behind the request are already buffered.
fn upgrade<S>(conn: &mut Conn<S>, ctx: &Context, opening: Opening, out: &mut Effects) {
    let Opening {
        echo,
        answer,
        head_len,
        deflate,
        session,
    } = opening;
    let Some(slot) = WsSlot::claim(&ctx.shared, ctx.cfg.max_connections) else {
        return respond(conn, upgrade::not_accepting(Reject::MaxConnections), out);
    };
    let State::Http(h) = &mut conn.state else {
        return;
    };
    let leftover = h.buf[head_len..].to_vec();
    conn.count.count_websocket();
    conn.send.push_own(Bytes::from(answer));
    if !echo {
        let cfg = &ctx.cfg;
        let session = ctx.next_session_id();
        let welcome = protocol::welcome(
            &session,
            &ctx.shared.instance,
            cfg.ping_interval.as_millis(),
            &ctx.shared.epoch(),
        );
        conn.send.push_own(text_frame(welcome.into_bytes()));
    }
    if let Some(d) = &deflate {
        conn.send.set_form(Form::Deflated(Deflate {
            window: d.window(),
            min_bytes: ctx.cfg.compression_min_bytes,
            chain: d.chains() && !echo,
            counters: Arc::clone(&ctx.shared.metrics.compression),
        }));
    }
    let mut ws = open_websocket(ctx, echo, leftover, slot, deflate.is_some());
    ws.session = session;
    out.push(Effect::WakeAt(ws.next_deadline(ctx.cfg.idle_timeout)));
    out.push(Effect::Flush);
    out.push(Effect::ReadAgain);
    conn.state = State::Ws(Box::new(ws));
}

/// A compressing connection's first bytes go through its inbound filter.
fn open_websocket(
    ctx: &Context,
    echo: bool,
    leftover: Vec<u8>,
    slot: WsSlot,
    compressing: bool,
) -> WsConn {
    let (cfg, now) = (&ctx.cfg, ctx.now);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    let (leftover, deflate) = if compressing {
        let deflate = Compressing {
            inbound: Inbound::with_leftover(leftover),
            _count: CompressingCount::new(&ctx.shared),
        };
        (Vec::new(), Some(Box::new(deflate)))
    } else {
        (leftover, None)
    };
    WsConn {
        ctx: WebSocketContext::from_partially_read(leftover, Role::Server, Some(ws_config)),
        deflate,
        echo,
        subscriptions: Vec::new(),
        last_pos: None,
        last_read: now,
        next_ping: now + cfg.ping_interval,
        rate: RateLimit::new(cfg.client_msg_rate, now),
        drain_at: None,
        paused_since: None,
        stream_wait: None,
        stream_cuts: Default::default(),
        _slot: slot,
        session: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use super::*;
    use crate::reactor::testing::{Wire, test_conn, test_context, upgrade_request};

    fn answer(conn: &mut Conn<Wire>) -> String {
        String::from_utf8_lossy(&conn.sent_bytes()).into_owned()
    }

    #[test]
    fn an_upgrade_opens_a_websocket_with_a_welcome() {
        let ctx = test_context(&[]);
        let mut conn = test_conn(&ctx, upgrade_request("/ws", ""));
        let mut out = Effects::new();
        on_readable(&mut conn, &ctx, &mut out);
        let State::Ws(ws) = &conn.state else {
            panic!("not upgraded");
        };
        let deadline = ws.next_deadline(ctx.cfg.idle_timeout);
        assert_eq!(
            out,
            [Effect::WakeAt(deadline), Effect::Flush, Effect::ReadAgain]
        );
        let text = answer(&mut conn);
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\"type\":\"welcome\""));
        let (m, shared) = (&ctx.shared.metrics, &ctx.shared);
        assert_eq!(m.connections.load(Relaxed), 1);
        assert_eq!(shared.live_ws.load(Relaxed), 1);
        drop(conn);
        assert_eq!(m.connections.load(Relaxed), 0);
        assert_eq!(shared.live_ws.load(Relaxed), 0);
        assert_eq!(m.sockets.load(Relaxed), 0);
    }

    #[test]
    fn a_head_in_pieces_waits_for_the_rest() {
        let ctx = test_context(&[]);
        let request = upgrade_request("/ws", "");
        let (first, rest) = request.split_at(20);
        let mut conn = test_conn(&ctx, first.to_vec());
        let mut out = Effects::new();
        on_readable(&mut conn, &ctx, &mut out);
        assert!(out.is_empty() && conn.send.is_empty());
        conn.stream.give(rest);
        on_readable(&mut conn, &ctx, &mut out);
        assert!(matches!(conn.state, State::Ws(_)));
    }

    #[test]
    fn a_refused_origin_gets_403_and_is_counted() {
        let ctx = test_context(&[("WS_ALLOWED_ORIGINS", "https://app.example")]);
        let request = upgrade_request("/ws", "Origin: https://evil.example\r\n");
        let mut conn = test_conn(&ctx, request);
        let mut out = Effects::new();
        on_readable(&mut conn, &ctx, &mut out);
        let origin = Some("https://evil.example".to_string());
        assert_eq!(
            out,
            [Effect::RefusedOrigin(origin), Effect::CloseAfterWrite]
        );
        assert!(answer(&mut conn).starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert_eq!(ctx.shared.metrics.rejected(Reject::Origin), 1);
        assert_eq!(ctx.shared.metrics.connections.load(Relaxed), 0);
    }

    #[test]
    fn the_last_slot_taken_means_503() {
        let ctx = test_context(&[("WS_MAX_CONNECTIONS", "1")]);
        let mut first = test_conn(&ctx, upgrade_request("/ws", ""));
        on_readable(&mut first, &ctx, &mut Effects::new());
        // Admission already says full, so this one never gets to the race.
        let mut second = test_conn(&ctx, upgrade_request("/ws", ""));
        let mut out = Effects::new();
        on_readable(&mut second, &ctx, &mut out);
        assert_eq!(out, [Effect::CloseAfterWrite]);
        let text = answer(&mut second);
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("Retry-After: 5\r\n"));
        assert_eq!(ctx.shared.metrics.rejected(Reject::MaxConnections), 1);
    }

    #[test]
    fn garbage_and_oversized_heads_are_answered_and_closed() {
        let ctx = test_context(&[]);
        let cases = [
            (b"\x16\x03\x01 tls".to_vec(), "HTTP/1.1 400 "),
            (vec![b'G'; MAX_HEAD_BYTES + 1], "HTTP/1.1 431 "),
        ];
        for (input, status) in cases {
            let mut conn = test_conn(&ctx, input);
            let mut out = Effects::new();
            on_readable(&mut conn, &ctx, &mut out);
            assert_eq!(out, [Effect::CloseAfterWrite]);
            assert!(answer(&mut conn).starts_with(status));
        }
    }

    #[test]
    fn a_peer_that_hangs_up_is_removed() {
        let ctx = test_context(&[]);
        let mut conn = test_conn(&ctx, b"GET / HT".to_vec());
        conn.stream.hang_up();
        let mut out = Effects::new();
        on_readable(&mut conn, &ctx, &mut out);
        assert_eq!(out, [Effect::Remove]);
    }

    #[test]
    fn the_handshake_deadline_removes_a_silent_socket() {
        let mut ctx = test_context(&[("WS_HANDSHAKE_TIMEOUT", "1s")]);
        let mut conn = test_conn(&ctx, Vec::new());
        let mut out = Effects::new();
        on_timer(&mut conn, &ctx, &mut out);
        assert!(out.is_empty());
        ctx.now += Duration::from_secs(1);
        on_timer(&mut conn, &ctx, &mut out);
        assert_eq!(out, [Effect::Remove]);
    }
}
