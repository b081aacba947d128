//! The plain HTTP endpoints: /health, /metrics and POST /publish, from a parsed
//! request to its answer. The WebSocket upgrade is the reactor's (http::upgrade).

use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::{self, Keys};
use crate::broadcast::MessageBody;
use crate::channel;
use crate::config::Config;
use crate::grant::Grant;
use crate::http::{Request, Response};
use crate::intake::JetStreamState;
use crate::metrics::{PublishLoss, Reject};
use crate::shared::{NatsState, Shared};

/// The answer to a request for anything but the WebSocket paths; `None` while a
/// publish body is still arriving. `body` is what followed the head so far.
pub fn answer(shared: &Shared, cfg: &Config, req: &Request, body: &[u8]) -> Option<Response> {
    shared.metrics.http_requests.fetch_add(1, Relaxed);
    // JWT authentication turns it on too: a token's `publish` claim grants it.
    let publish_enabled = cfg.publish_token.is_some() || cfg.auth.is_some();
    let resp = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => health(shared, req.query_param("strict").as_deref() == Some("1")),
        ("GET", "/metrics") => metrics(shared),
        (_, path) if crate::browser::PATHS.contains(&path) => {
            crate::browser::answer(shared, cfg, req)
        }
        ("POST", "/publish") if publish_enabled => return publish_request(shared, cfg, req, body),
        (_, "/health" | "/metrics") => Response::text(405, "use GET\n").header("Allow", "GET"),
        (_, "/publish") if publish_enabled => {
            Response::text(405, "use POST\n").header("Allow", "POST")
        }
        _ => Response::text(404, "not found\n"),
    };
    Some(resp)
}

/// `strict`: a JetStream stall answers 503 too (admission stays open for it).
fn health(shared: &Shared, strict: bool) -> Response {
    let cfg = shared.config();
    let closed = shared.admission_closed();
    let starting = shared.is_starting();
    let status = match closed {
        None if starting => "starting",
        None => "ok",
        Some(Reject::Draining) => "draining",
        Some(_) => "closed",
    };
    let rss = shared.metrics.rss_bytes.load(Relaxed);
    let mut body = serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "build": crate::sysinfo::BUILD,
        "instance": shared.instance,
        "connections": shared.metrics.connections.load(Relaxed),
        "max_connections": cfg.max_connections,
        "cpu_percent": (shared.metrics.cpu_percent() * 10.0).round() / 10.0,
        "memory_bytes": rss,
        "memory_percent": ((rss as f64 / cfg.memory_limit.max(1) as f64) * 1000.0).round() / 10.0,
        "workers": shared.workers.len(),
        "nats": shared.nats_state().as_str(),
        "uptime_s": shared.started.elapsed().as_secs(),
    });
    if let Some(reason) = closed.filter(|r| *r != Reject::Draining) {
        body["reason"] = reason.as_str().into();
    }
    let stalled = jetstream_fields(shared, &mut body);
    let code = if closed.is_some() || starting || (strict && stalled) {
        503
    } else {
        200
    };
    let resp = Response::json(code, body.to_string());
    if closed.is_some() || starting {
        resp.retry_later()
    } else {
        resp
    }
}

/// `jetstream` (ok, stalled, disabled), with `jetstream_reason` while stalled and
/// `jetstream_replicas` once the stream is known; true while stalled.
fn jetstream_fields(shared: &Shared, body: &mut serde_json::Value) -> bool {
    let js = &shared.jetstream;
    let state = js.state();
    body["jetstream"] = state.as_str().into();
    if let Some(n) = js.replicas() {
        body["jetstream_replicas"] = n.into();
    }
    let stalled = state == JetStreamState::Stalled;
    if stalled {
        body["jetstream_reason"] = js.reason().into();
    }
    stalled
}

fn metrics(shared: &Shared) -> Response {
    let m = &shared.metrics;
    let sum =
        |f: fn(&crate::shared::WorkerHandle) -> u64| shared.workers.iter().map(f).sum::<u64>();
    m.send_queue_bytes
        .store(sum(|w| w.queued_bytes.load(Relaxed)), Relaxed);
    let lag = shared
        .workers
        .iter()
        .map(|w| w.ring_lag.load(Relaxed))
        .max()
        .unwrap_or(0);
    m.ring_lag.store(lag, Relaxed);
    let hold = shared
        .workers
        .iter()
        .map(|w| w.write_hold_us.load(Relaxed))
        .max();
    m.write_hold_us.store(hold.unwrap_or(0), Relaxed);
    {
        let history = shared.history();
        m.history_messages.store(history.len() as u64, Relaxed);
        m.history_bytes.store(history.bytes() as u64, Relaxed);
        m.history_channels.store(history.channels() as u64, Relaxed);
        m.history_evicted.store(history.evicted(), Relaxed);
    }
    m.handoff_queue.store(
        sum(|w| w.inbox.lock().map(|v| v.len() as u64).unwrap_or(0)),
        Relaxed,
    );
    Response::new(200)
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .body(m.render().into_bytes())
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    data: Box<RawValue>,
}

/// POST /publish: the bearer token, then the declared length (at most
/// WS_MAX_MESSAGE_SIZE), then the body once it is all there. A JWT is verified
/// only once there is an answer to give (an error, or the whole body): this runs
/// again on every read of a body that trickles in, and a signature check per
/// read would cost up to a few hundred µs each.
fn publish_request(shared: &Shared, cfg: &Config, req: &Request, body: &[u8]) -> Option<Response> {
    let jwt_keys = match publish_token(cfg, req) {
        Ok(keys) => keys,
        Err(resp) => return Some(resp),
    };
    let grant = || match jwt_keys {
        Some(keys) => jwt_publisher(shared, keys, req).map(Some),
        None => Ok(None),
    };
    // A refused token answers before anything wrong with the length.
    let refuse = |resp: Response| Some(grant().err().unwrap_or(resp));
    let Some(len) = req.header("Content-Length") else {
        return refuse(Response::text(411, "Content-Length required\n"));
    };
    let Ok(len) = len.parse::<usize>() else {
        return refuse(Response::text(400, "bad Content-Length\n"));
    };
    if len > cfg.max_message_size {
        return refuse(Response::text(413, "body over WS_MAX_MESSAGE_SIZE\n"));
    }
    let body = body.get(..len)?;
    Some(match grant() {
        Ok(grant) => publish(shared, body, grant.as_ref()),
        Err(resp) => resp,
    })
}

/// Whether the request may publish by WS_PUBLISH_TOKEN (`Ok(None)`: anywhere),
/// must show a JWT these keys verify (JWT authentication is on), or gets the 401.
fn publish_token<'a>(cfg: &'a Config, req: &Request) -> Result<Option<&'a Keys>, Response> {
    if let Some(token) = cfg.publish_token.as_deref()
        && token_matches(req.header("Authorization"), token)
    {
        return Ok(None);
    }
    match cfg.auth.as_deref() {
        Some(keys) => Ok(Some(keys)),
        None => Err(Response::text(401, "missing or wrong bearer token\n")
            .header("WWW-Authenticate", "Bearer")),
    }
}

/// A JWT's `publish` grant, or the 401 (the failed check only counted).
fn jwt_publisher(shared: &Shared, keys: &Keys, req: &Request) -> Result<Grant, Response> {
    let bearer = req
        .header("Authorization")
        .and_then(auth::bearer)
        .unwrap_or_default();
    match keys.verify(bearer) {
        Ok(claims) => Ok(claims.publish_grant()),
        Err(why) => {
            shared.metrics.auth_rejected(why);
            Err(auth::unauthorized())
        }
    }
}

/// A complete, authorized publish body; `grant` bounds a JWT's channels.
fn publish(shared: &Shared, body: &[u8], grant: Option<&Grant>) -> Response {
    let parsed: PublishBody = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return bad_request(&format!(
                "body must be {{\"channel\":...,\"data\":...}}: {e}"
            ));
        }
    };
    if let Err(e) = channel::validate_subject(&parsed.channel) {
        return bad_request(&format!("invalid channel {:?}: {e}", parsed.channel));
    }
    if grant.is_some_and(|g| !g.permits(&parsed.channel)) {
        shared.metrics.auth_forbidden.fetch_add(1, Relaxed);
        let message = format!(
            "channel {:?} is outside the token's publish claim",
            parsed.channel
        );
        return Response::json(403, serde_json::json!({ "error": message }).to_string());
    }
    let cfg = shared.config();
    let body = MessageBody::from_json(&parsed.channel, parsed.data.get().into());
    if body.max_frame_len() > cfg.max_broadcast_size {
        return Response::text(413, "message frame over WS_MAX_BROADCAST_SIZE\n");
    }
    if !cfg.nats_urls.is_empty() {
        // Through NATS, so every instance delivers it; it comes back to us only
        // on a subject we consume.
        if !cfg
            .nats_subjects
            .iter()
            .any(|p| channel::pattern_matches(p, &parsed.channel))
        {
            let subjects = cfg.nats_subjects.join(",");
            return bad_request(&format!(
                "channel {:?} is outside NATS_SUBJECTS ({subjects})",
                parsed.channel
            ));
        }
        if let Err((why, message)) = queue_for_nats(shared, &parsed.channel, parsed.data.get()) {
            shared.metrics.publish_lost(why);
            return Response::json(503, serde_json::json!({ "error": message }).to_string())
                .retry_later();
        }
    } else {
        shared.broadcast_local(&parsed.channel, body);
    }
    shared.metrics.messages_in_http.fetch_add(1, Relaxed);
    Response::json(202, "{\"status\":\"accepted\"}".into())
}

/// Hands the message to the publisher thread: the NATS client may block, a
/// reactor thread must not.
fn queue_for_nats(
    shared: &Shared,
    channel: &str,
    data: &str,
) -> Result<(), (PublishLoss, &'static str)> {
    if shared.nats_conn.get().is_none() || shared.nats_state() != NatsState::Connected {
        return Err((PublishLoss::NotConnected, "NATS is not connected"));
    }
    if !shared.publish_queue.offer(&shared.metrics, channel, data) {
        return Err((PublishLoss::QueueFull, "the NATS publish queue is full"));
    }
    Ok(())
}

fn bad_request(message: &str) -> Response {
    Response::json(400, serde_json::json!({ "error": message }).to_string())
}

/// Compares a bearer token without an early exit on the first differing byte.
fn token_matches(header: Option<&str>, token: &str) -> bool {
    header
        .and_then(auth::bearer)
        .is_some_and(|given| same_secret(given, token))
}

/// Compares a given token with the secret in time that does not depend on where
/// they differ (only on the length).
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token() {
        assert!(token_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(token_matches(Some("bearer s3cret"), "s3cret"));
        assert!(token_matches(Some("BEARER  s3cret"), "s3cret"));
        assert!(!token_matches(Some("Bearers3cret"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!token_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
    }

    #[test]
    fn a_jetstream_instance_is_starting_until_history_is_refilled() {
        let env: std::collections::HashMap<String, String> = [
            ("NATS_URL", "nats://127.0.0.1:4222"),
            ("NATS_JETSTREAM", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = Config::from_sources(&[], &env).expect("a valid configuration");
        let shared = Shared::new(cfg, Vec::new(), "test".into());
        let resp = health(&shared, false);
        assert_eq!(resp.status, 503);
        assert!(String::from_utf8_lossy(&resp.to_bytes()).contains(r#""status":"starting""#));
        shared.finish_starting();
        let resp = health(&shared, false);
        assert_eq!(resp.status, 200);
        assert!(String::from_utf8_lossy(&resp.to_bytes()).contains(r#""status":"ok""#));
    }
}
