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

/// An SSE request's channels against its token: one outside the grant is 403,
/// more distinct channels than the token's `max_subscriptions` 400, both with
/// the error frame a WebSocket would get.
pub fn check_stream(session: &Session, channels: &[String], ctx: &Context) -> Result<(), Response> {
    let mut forbidden = RefusedChannels::default();
    for ch in channels.iter().filter(|c| !session.grant.permits(c)) {
        forbidden.add(ch, String::new);
    }
    if let Some(json) = forbidden.error(ErrorCode::Forbidden, FORBIDDEN, None) {
        ctx.shared.metrics.auth_forbidden.fetch_add(1, Relaxed);
        return Err(Response::json(403, json));
    }
    let mut distinct: Vec<&str> = channels.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > session.max_subscriptions {
        let why = format!(
            "{} channels, over the token's limit of {} subscriptions",
            distinct.len(),
            session.max_subscriptions
        );
        let json = protocol::error(ErrorCode::TooManySubscriptions, &why, None);
        return Err(Response::json(400, json));
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
