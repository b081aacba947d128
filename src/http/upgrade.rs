//! The WebSocket opening handshake, server side: which requests may upgrade
//! (RFC 6455 section 4.2.1, the Origin list, admission) and the 101 answer.

use tungstenite::handshake::derive_accept_key;

use super::{Request, Response};
use crate::metrics::Reject;

/// Why an upgrade request is refused; each maps to one answer.
#[derive(Debug)]
pub enum Refusal {
    /// Not a handshake we accept: the answer (400 or 426) says why.
    Handshake(Response),
    /// The Origin header is not in WS_ALLOWED_ORIGINS.
    Origin,
    /// Valid, but the server takes no new WebSocket now.
    Closed(Reject),
}

impl Refusal {
    /// The counter it adds to (`odin_ws_rejected_total`), if any.
    pub fn reject_reason(&self) -> Option<Reject> {
        match self {
            Refusal::Handshake(_) => None,
            Refusal::Origin => Some(Reject::Origin),
            Refusal::Closed(why) => Some(*why),
        }
    }

    pub fn into_response(self) -> Response {
        match self {
            Refusal::Handshake(resp) => resp,
            Refusal::Origin => Response::text(403, "origin not allowed\n"),
            Refusal::Closed(why) => not_accepting(why),
        }
    }
}

/// The checks in the order a client should learn of them: the handshake itself,
/// then the Origin, then admission (`admission` is asked only for a request that
/// passed the others, so a bad request never counts as refused for load).
pub fn check_upgrade(
    req: &Request,
    allowed_origins: &[String],
    admission: impl FnOnce() -> Option<Reject>,
) -> Result<(), Refusal> {
    check_handshake(req).map_err(Refusal::Handshake)?;
    if !origin_allowed(allowed_origins, req.header("Origin")) {
        return Err(Refusal::Origin);
    }
    match admission() {
        Some(why) => Err(Refusal::Closed(why)),
        None => Ok(()),
    }
}

/// 503 for a WebSocket the server will not take now, with when to try again.
pub fn not_accepting(why: Reject) -> Response {
    Response::text(
        503,
        &format!("not accepting connections: {}\n", why.as_str()),
    )
    .retry_later()
}

/// RFC 6455 section 4.2.1: GET over HTTP/1.1 with Upgrade, Connection, version 13
/// and a well-formed key.
fn check_handshake(req: &Request) -> Result<(), Response> {
    let upgrade_required = || {
        Response::text(426, "this endpoint speaks WebSocket\n")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
    };
    if !req.header_has_token("Upgrade", "websocket") {
        return Err(upgrade_required());
    }
    if req.method != "GET" || req.minor_version < 1 {
        return Err(Response::text(
            400,
            "WebSocket upgrade needs GET over HTTP/1.1\n",
        ));
    }
    if !req.header_has_token("Connection", "upgrade") {
        return Err(Response::text(
            400,
            "Connection header must include Upgrade\n",
        ));
    }
    if req.header("Sec-WebSocket-Version") != Some("13") {
        return Err(upgrade_required());
    }
    if !req.header("Sec-WebSocket-Key").is_some_and(valid_key) {
        return Err(Response::text(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64\n",
        ));
    }
    Ok(())
}

/// An empty list allows any Origin (and none); otherwise an exact match,
/// ignoring ASCII case.
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let origin = origin.unwrap_or_default();
    allowed.is_empty() || allowed.iter().any(|o| o.eq_ignore_ascii_case(origin))
}

/// A Sec-WebSocket-Key is 16 bytes in base64: 22 characters and "==".
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The 101 answer to a valid upgrade request carrying `key`, with the
/// extensions agreed to (a `Sec-WebSocket-Extensions` value), if any.
pub fn upgrade_response(key: &str, extensions: Option<&str>) -> Vec<u8> {
    let extensions = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extensions}\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid upgrade request with `extra_headers` ("Name: value\r\n" each).
    fn raw_request(extra_headers: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra_headers}\r\n"
        )
    }

    fn request(extra_headers: &str) -> Request {
        parse_head(raw_request(extra_headers).as_bytes())
            .unwrap()
            .unwrap()
    }

    fn status(result: Result<(), Refusal>) -> u16 {
        result.map_or_else(|r| r.into_response().status, |()| 101)
    }

    #[test]
    fn websocket_keys() {
        assert!(valid_key(KEY));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!valid_key(""));
    }

    #[test]
    fn accept_key_from_rfc6455() {
        let text = String::from_utf8(upgrade_response(KEY, None)).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn a_valid_handshake_passes() {
        assert_eq!(status(check_upgrade(&request(""), &[], || None)), 101);
    }

    #[test]
    fn each_broken_handshake_gets_its_own_answer() {
        let cases = [
            ("Upgrade: websocket", "Upgrade: h2c", 426),
            ("Connection: Upgrade", "Connection: keep-alive", 400),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
            (KEY, "short==", 400),
            ("GET /ws HTTP/1.1", "POST /ws HTTP/1.1", 400),
            ("GET /ws HTTP/1.1", "GET /ws HTTP/1.0", 400),
        ];
        for (from, to, want) in cases {
            let raw = raw_request("").replace(from, to);
            let req = parse_head(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(status(check_upgrade(&req, &[], || None)), want, "{to}");
        }
    }

    #[test]
    fn origin_is_checked_before_admission_and_ignores_case() {
        let allowed = ["https://App.example".to_string()];
        let asked = std::cell::Cell::new(false);
        let admission = || {
            asked.set(true);
            Some(Reject::Cpu)
        };
        let refused = check_upgrade(
            &request("Origin: https://evil.example\r\n"),
            &allowed,
            admission,
        );
        assert!(matches!(refused, Err(Refusal::Origin)));
        assert!(
            !asked.get(),
            "admission asked for a request refused earlier"
        );
        assert_eq!(status(check_upgrade(&request(""), &allowed, || None)), 403);
        let ok = request("Origin: https://app.EXAMPLE\r\n");
        assert_eq!(status(check_upgrade(&ok, &allowed, || None)), 101);
    }

    #[test]
    fn closed_admission_is_503_with_retry_after() {
        let refused = check_upgrade(&request(""), &[], || Some(Reject::Memory)).unwrap_err();
        assert_eq!(refused.reject_reason(), Some(Reject::Memory));
        let text = String::from_utf8(refused.into_response().to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "));
        assert!(text.contains("Retry-After: "));
        assert!(text.ends_with("not accepting connections: memory\n"));
    }
}
