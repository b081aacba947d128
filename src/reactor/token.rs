//! JWT authentication in a worker (DESIGN "Authentication"): a request admitted
//! by its token, an SSE stream's channels held to the grant, `refresh` on an open
//! WebSocket, and the timer that warns before `exp` and ends the connection at
//! it. The subscribe-time check itself is `Session::grant` in ws_conn.rs; nothing
//! here runs on the delivery path.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::value::RawValue;
use tungstenite::Bytes;
use tungstenite::protocol::frame::coding::CloseCode;

use super::conn::{Conn, State};
use super::effect::{Context, Effect, Effects};
use super::send_queue::SendQueue;
use crate::auth::{self, Session, TokenError};
use crate::broadcast::text_frame;
use crate::http::{Request, Response};
use crate::protocol::{self, ErrorCode, RefusedChannels};

/// The close code of a connection whose token expired without a refresh.
pub const TOKEN_EXPIRED: u16 = 4001;
/// What an SSE stream ends with at its token's `exp`.
const SSE_TOKEN_EXPIRED: &[u8] = b": token expired\n\n";
/// Channels named in one `unsubscribed` frame after a refresh; more take more
/// frames, so each frame stays small however many subscriptions were revoked.
const REVOKED_PER_FRAME: usize = 64;

/// The session of a request whose token is valid; `Ok(None)` while JWT
/// authentication is off; otherwise the 401, counted by reason.
pub fn admit(ctx: &Context, req: &Request) -> Result<Option<Box<Session>>, Response> {
    let Some(keys) = ctx.cfg.auth.as_deref() else {
        return Ok(None);
    };
    match auth::verify_request(keys, req) {
        Ok(claims) => {
            let max = ctx.cfg.max_subscriptions;
            Ok(Some(Box::new(Session::new(&claims, max, ctx.now))))
        }
        Err(why) => {
            ctx.shared.metrics.auth_rejected(why);
            Err(auth::unauthorized())
        }
    }
}

/// An SSE request's channels against its token's grant: one outside it is 403,
/// with the error frame a WebSocket would get.
pub fn check_grant(session: &Session, channels: &[String], ctx: &Context) -> Result<(), Response> {
    let mut forbidden = RefusedChannels::default();
    for ch in channels.iter().filter(|c| !session.grant.permits(c)) {
        forbidden.add(ch, String::new);
    }
    if let Some(json) = forbidden.error(ErrorCode::Forbidden, FORBIDDEN, None) {
        ctx.shared.metrics.auth_forbidden.fetch_add(1, Relaxed);
        return Err(Response::json(403, json));
    }
    Ok(())
}

/// The summary of a `forbidden` error frame.
pub const FORBIDDEN: &str = "not allowed by the connection's token";

/// The token's deadlines: `token_expiring` when the warning is due; at `exp` a
/// WebSocket is closed with 4001 and an SSE stream ends. `true` when the
/// connection ends (its state's own timer is then not run).
pub fn on_timer<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) -> bool {
    let now = ctx.now;
    match &mut conn.state {
        State::Ws(ws) => {
            let Some(session) = ws.session.as_deref_mut() else {
                return false;
            };
            if now >= session.expires_at {
                ctx.shared.metrics.auth_expired.fetch_add(1, Relaxed);
                out.push(Effect::Close(
                    CloseCode::from(TOKEN_EXPIRED),
                    "token expired",
                ));
                return true;
            }
            if session.warn_at.is_some_and(|w| now >= w) {
                session.warn_at = None;
                let in_ms = (session.expires_at - now).as_millis();
                let frame = protocol::token_expiring(in_ms);
                conn.send.push_own(text_frame(frame.into_bytes()));
                out.push(Effect::Flush);
            }
            false
        }
        State::Sse(stream) if stream.expires_at.is_some_and(|e| now >= e) => {
            ctx.shared.metrics.auth_expired.fetch_add(1, Relaxed);
            conn.send.push_own(Bytes::from_static(SSE_TOKEN_EXPIRED));
            out.push(Effect::CloseAfterWrite);
            true
        }
        _ => false,
    }
}

/// `refresh`: a valid token naming the connection's `sub` replaces its session
/// at once; the subscriptions of `held` (what it holds once this turn's changes
/// apply) the new grant does not allow are listed to drop and told as
/// `unsubscribed` with `"reason":"forbidden"`, then `refreshed`. Any other token
/// gets `invalid_token` and the old session stays until its `exp`. `true` when
/// the session (and so its deadlines) changed.
pub fn refresh(
    session: &mut Option<Box<Session>>,
    held: &[String],
    token: &str,
    id: Option<&RawValue>,
    send: &mut SendQueue,
    ctx: &Context,
    out: &mut Effects,
) -> bool {
    let refused = |send: &mut SendQueue, why: &str| {
        ctx.shared.metrics.client_error(ErrorCode::InvalidToken);
        let frame = protocol::error(ErrorCode::InvalidToken, why, id);
        send.push_own(text_frame(frame.into_bytes()));
        false
    };
    let Some(keys) = ctx.cfg.auth.as_deref() else {
        return refused(send, "token authentication is off on this server");
    };
    let Some(current) = session.as_deref() else {
        return refused(send, "this connection was opened without a token");
    };
    let claims = match keys.verify(token) {
        Ok(c) if c.sub == current.sub => c,
        result => {
            let why = result.err().unwrap_or(TokenError::OtherSubject);
            ctx.shared.metrics.auth_rejected(why);
            return refused(send, INVALID_REFRESH);
        }
    };
    let next = Session::new(&claims, ctx.cfg.max_subscriptions, ctx.now);
    let revoked: Vec<&str> = held
        .iter()
        .map(String::as_str)
        .filter(|p| !next.grant.permits(p))
        .collect();
    for pattern in &revoked {
        out.push(Effect::Unsubscribe(pattern.to_string()));
    }
    for chunk in revoked.chunks(REVOKED_PER_FRAME) {
        send.push_own(text_frame(protocol::revoked(chunk, id).into_bytes()));
    }
    send.push_own(text_frame(protocol::refreshed(id).into_bytes()));
    ctx.shared.metrics.auth_refreshes.fetch_add(1, Relaxed);
    *session = Some(Box::new(next));
    true
}

/// The message of every refused refresh: which check failed is only counted.
const INVALID_REFRESH: &str = "refresh refused: the token is not valid for this connection";

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};

    use super::*;
    use crate::reactor::http_conn;
    use crate::reactor::testing::{Wire, client_text, test_conn, test_context, upgrade_request};
    use crate::reactor::ws_conn;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn auth_context() -> Context {
        test_context(&[("WS_AUTH_JWT_SECRET", SECRET)])
    }

    fn token(exp_in: u64, sub: &str, channels: &[&str]) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + exp_in;
        let claims = serde_json::json!({"exp": exp, "sub": sub, "channels": channels});
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        encode(&Header::default(), &claims, &key).unwrap()
    }

    /// The upgrade answered, its bytes taken.
    fn open(ctx: &Context, headers: &str) -> (Conn<Wire>, Effects) {
        let mut conn = test_conn(ctx, upgrade_request("/ws", headers));
        let mut out = Effects::new();
        http_conn::on_readable(&mut conn, ctx, &mut out);
        (conn, out)
    }

    fn feed(conn: &mut Conn<Wire>, ctx: &Context, texts: &[&str]) -> Effects {
        for t in texts {
            conn.stream.give(&client_text(t));
        }
        let mut out = Effects::new();
        ws_conn::on_readable(conn, ctx, &mut out);
        out
    }

    #[test]
    fn no_token_is_401_before_the_upgrade() {
        let ctx = auth_context();
        let (mut conn, out) = open(&ctx, "");
        assert_eq!(out, [Effect::CloseAfterWrite]);
        let text = String::from_utf8(conn.sent_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
        assert_eq!(ctx.shared.metrics.auth_rejections(TokenError::Missing), 1);
        assert!(matches!(conn.state, State::Closing(_) | State::Http(_)));
    }

    #[test]
    fn a_refresh_in_the_same_read_as_a_subscribe_revokes_it() {
        let ctx = auth_context();
        let bearer = format!("Authorization: Bearer {}\r\n", token(60, "u", &["a.*"]));
        let (mut conn, _) = open(&ctx, &bearer);
        conn.sent_bytes();
        let narrow = token(60, "u", &["b.*"]);
        let refresh = format!(r#"{{"type":"refresh","token":"{narrow}","id":2}}"#);
        let out = feed(
            &mut conn,
            &ctx,
            &[
                r#"{"type":"subscribe","channels":["a.x","b.x"],"id":1}"#,
                &refresh,
            ],
        );
        let State::Ws(ws) = &conn.state else {
            panic!("closed");
        };
        let wake = Effect::WakeAt(ws.next_deadline(ctx.cfg.idle_timeout));
        let expected = [
            Effect::Subscribe("a.x".into()),
            Effect::Unsubscribe("a.x".into()),
            wake,
            Effect::Flush,
        ];
        assert_eq!(out, expected);
        let kinds: Vec<_> = conn
            .sent_json()
            .iter()
            .map(|r| (r["type"].clone(), r["channels"].clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("error".into(), serde_json::json!(["b.x"])),
                ("subscribed".into(), serde_json::json!(["a.x"])),
                ("unsubscribed".into(), serde_json::json!(["a.x"])),
                ("refreshed".into(), serde_json::Value::Null),
            ]
        );
    }

    #[test]
    fn the_timer_warns_then_closes_with_4001() {
        let mut ctx = auth_context();
        let bearer = format!("Authorization: Bearer {}\r\n", token(100, "u", &["a"]));
        let (mut conn, _) = open(&ctx, &bearer);
        conn.sent_bytes();
        let State::Ws(ws) = &conn.state else {
            panic!("not upgraded");
        };
        let session = ws.session.as_deref().unwrap();
        let (warn_at, expires_at) = (session.warn_at.unwrap(), session.expires_at);
        assert_eq!(expires_at - warn_at, auth::EXPIRY_WARNING);
        let mut out = Effects::new();
        ctx.now = warn_at;
        assert!(!on_timer(&mut conn, &ctx, &mut out));
        assert_eq!(out, [Effect::Flush]);
        let warning = &conn.sent_json()[0];
        assert_eq!(warning["type"], "token_expiring");
        assert_eq!(warning["in_ms"], 30_000);
        out.clear();
        ctx.now = expires_at - Duration::from_millis(1);
        assert!(!on_timer(&mut conn, &ctx, &mut out), "warned once");
        assert!(out.is_empty() && conn.sent_json().is_empty());
        ctx.now = expires_at;
        assert!(on_timer(&mut conn, &ctx, &mut out));
        let close = Effect::Close(CloseCode::Library(TOKEN_EXPIRED), "token expired");
        assert_eq!(out, [close]);
        assert_eq!(ctx.shared.metrics.auth_expired.load(Relaxed), 1);
    }

    #[test]
    fn many_revoked_subscriptions_are_told_in_frames_of_64() {
        let ctx = test_context(&[
            ("WS_AUTH_JWT_SECRET", SECRET),
            ("WS_MAX_SUBSCRIPTIONS", "200"),
        ]);
        let bearer = format!("Authorization: Bearer {}\r\n", token(60, "u", &[">"]));
        let (mut conn, _) = open(&ctx, &bearer);
        conn.sent_bytes();
        let channels: Vec<String> = (0..150).map(|i| format!("c.{i}")).collect();
        let subscribe = serde_json::json!({"type": "subscribe", "channels": channels});
        let refresh = serde_json::json!({"type": "refresh", "token": token(60, "u", &["d.*"])});
        let out = feed(
            &mut conn,
            &ctx,
            &[&subscribe.to_string(), &refresh.to_string()],
        );
        let dropped = out
            .iter()
            .filter(|e| matches!(e, Effect::Unsubscribe(_)))
            .count();
        assert_eq!(dropped, 150);
        let sizes: Vec<usize> = conn
            .sent_json()
            .iter()
            .filter(|r| r["type"] == "unsubscribed")
            .map(|r| r["channels"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [64, 64, 22]);
    }

    #[test]
    fn an_sse_stream_first_wakes_at_its_token_expiry() {
        let ctx = auth_context();
        let request = format!(
            "GET /sse?channels=a HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n",
            token(10, "u", &["a"])
        );
        let mut conn = test_conn(&ctx, request.into_bytes());
        let mut out = Effects::new();
        http_conn::on_readable(&mut conn, &ctx, &mut out);
        let State::Sse(stream) = &conn.state else {
            panic!("no stream");
        };
        let expires_at = stream.expires_at.expect("the token's exp");
        assert!(expires_at < ctx.now + ctx.cfg.ping_interval);
        let wakes: Vec<_> = out
            .iter()
            .filter(|e| matches!(e, Effect::WakeAt(_)))
            .collect();
        assert_eq!(wakes, [&Effect::WakeAt(expires_at)], "one timer, at exp");
    }

    #[test]
    fn without_auth_nothing_changes_and_refresh_is_refused() {
        let ctx = test_context(&[]);
        let (mut conn, _) = open(&ctx, "");
        assert!(matches!(&conn.state, State::Ws(ws) if ws.session.is_none()));
        conn.sent_bytes();
        let mut out = Effects::new();
        assert!(!on_timer(&mut conn, &ctx, &mut out));
        let out = feed(&mut conn, &ctx, &[r#"{"type":"refresh","token":"x.y.z"}"#]);
        assert_eq!(out, [Effect::Flush]);
        assert_eq!(conn.sent_json()[0]["code"], "invalid_token");
    }
}
