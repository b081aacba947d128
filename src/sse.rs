//! Server-Sent Events (`GET /sse`): the request's channels and catch-up, and the
//! event text. The stream itself is a worker's connection state (reactor/sse_conn.rs).

use std::time::Instant;

use crate::channel;
use crate::config::Config;
use crate::http::{Request, Response};
use crate::protocol::{self, CatchUp, ErrorCode, Position, RefusedChannels};

/// The path SSE streams are served on.
pub const SSE_PATH: &str = "/sse";
/// The comment written every WS_PING_INTERVAL to an idle stream.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
/// The comment a stream ends with when the server drains.
pub const SHUTTING_DOWN: &[u8] = b": server shutting down\n\n";

/// A valid `/sse` request: what to subscribe to, what to catch up on, and
/// when its token expires.
#[derive(Debug)]
pub struct SseRequest {
    /// As the client listed them (the ack echoes them so).
    pub channels: Vec<String>,
    pub catch_up: CatchUp,
    /// The token's `exp` (JWT authentication), set once the token is checked.
    pub expires_at: Option<Instant>,
}

/// Reads `channels=`, `snapshot=`, and the resume position (`Last-Event-ID`,
/// which wins over `since=`: a browser reconnecting sends both). A bad request
/// gets its 400 answer. How many channels it may name is `check_count`'s, once
/// the token (if any) has said its limit.
pub fn parse_request(req: &Request) -> Result<SseRequest, Response> {
    let list = req.query_param("channels").unwrap_or_default();
    let channels: Vec<String> = list
        .split(',')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    if channels.is_empty() {
        let why = "channels= must list one or more channels, comma-separated";
        return Err(error(ErrorCode::InvalidChannel, why));
    }
    let mut invalid = RefusedChannels::default();
    for ch in &channels {
        if let Err(e) = channel::validate_pattern(ch) {
            invalid.add(ch, || e.to_string());
        }
    }
    if let Some(json) = invalid.error(ErrorCode::InvalidChannel, "invalid channels", None) {
        return Err(Response::json(400, json));
    }
    let snapshot = match req.query_param("snapshot").as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return Err(bad("snapshot= must be 1 or 0")),
    };
    let last_event_id = req.header("Last-Event-ID").filter(|v| !v.trim().is_empty());
    let since = match (last_event_id, req.query_param("since")) {
        (Some(id), _) => {
            Some(position(id).ok_or_else(|| bad("Last-Event-ID must be <epoch>:<seq>"))?)
        }
        (None, Some(q)) if !q.is_empty() => {
            Some(position(&q).ok_or_else(|| bad("since= must be <epoch>:<seq>"))?)
        }
        _ => None,
    };
    Ok(SseRequest {
        channels,
        catch_up: CatchUp { since, snapshot },
        expires_at: None,
    })
}

/// More distinct channels than `max` (WS_MAX_SUBSCRIPTIONS, or a token's smaller
/// `max_subscriptions`) is 400 `too_many_subscriptions`; a duplicate counts once.
pub fn check_count(channels: &[String], max: usize) -> Result<(), Response> {
    let mut distinct: Vec<&str> = channels.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > max {
        let why = format!(
            "{} channels, over the limit of {max} subscriptions",
            distinct.len()
        );
        return Err(error(ErrorCode::TooManySubscriptions, &why));
    }
    Ok(())
}

/// `<epoch>:<seq>`, split at the last colon.
fn position(text: &str) -> Option<Position> {
    let (epoch, seq) = text.trim().rsplit_once(':')?;
    Some(Position {
        epoch: epoch.to_string(),
        seq: seq.parse().ok()?,
    })
}

fn error(code: ErrorCode, message: &str) -> Response {
    Response::json(400, protocol::error(code, message, None))
}

fn bad(message: &str) -> Response {
    Response::json(400, serde_json::json!({ "error": message }).to_string())
}

/// One event: `id:` when given, `event:`, and `data` on one `data:` line per line
/// (a JSON payload's whitespace may hold line breaks; the client joins them with
/// `\n`), then the blank line that ends it.
pub fn event(id: Option<&str>, event: &str, data: &str) -> Vec<u8> {
    let mut out = String::with_capacity(data.len() + event.len() + 40);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    for line in data.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

/// The 200 head of a stream: no length (the stream ends when the connection does).
pub fn stream_head(cfg: &Config, req: &Request) -> Vec<u8> {
    let resp = Response::new(200)
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache")
        // nginx and friends pass the events on at once.
        .header("X-Accel-Buffering", "no");
    crate::browser::with_cors(resp, cfg, req).stream_head()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_request as request;

    #[test]
    fn channels_snapshot_and_positions_are_read_from_the_request() {
        let r = request("GET /sse?channels=a.b,token.*.price&snapshot=1&since=E:5 HTTP/1.1");
        let r = parse_request(&r).unwrap();
        assert_eq!(r.channels, ["a.b", "token.*.price"]);
        assert!(r.catch_up.snapshot);
        let since = r.catch_up.since.unwrap();
        assert_eq!((since.epoch.as_str(), since.seq), ("E", 5));
        let r = request("GET /sse?channels=a&since=E:5 HTTP/1.1\r\nLast-Event-ID: x:y:9");
        let since = parse_request(&r).unwrap().catch_up.since.unwrap();
        assert_eq!(
            (since.epoch.as_str(), since.seq),
            ("x:y", 9),
            "the header wins"
        );
    }

    #[test]
    fn bad_requests_are_400() {
        for head in [
            "GET /sse HTTP/1.1",
            "GET /sse?channels=a..b HTTP/1.1",
            "GET /sse?channels=a&snapshot=yes HTTP/1.1",
            "GET /sse?channels=a HTTP/1.1\r\nLast-Event-ID: 12",
        ] {
            let err = parse_request(&request(head)).unwrap_err();
            assert_eq!(err.status, 400, "{head}");
        }
    }

    #[test]
    fn more_distinct_channels_than_the_limit_are_400() {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let err = check_count(&list(&["a", "b", "c"]), 2).unwrap_err();
        assert_eq!(err.status, 400);
        let text = String::from_utf8(err.to_bytes()).unwrap();
        assert!(
            text.contains("\"code\":\"too_many_subscriptions\""),
            "{text}"
        );
        assert!(check_count(&list(&["a", "b"]), 2).is_ok());
        assert!(
            check_count(&list(&["a", "a", "b"]), 2).is_ok(),
            "duplicates count once"
        );
    }

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        let e = event(None, "message", "{\"a\":\n1}");
        assert_eq!(e, b"event: message\ndata: {\"a\":\ndata: 1}\n\n");
    }
}
