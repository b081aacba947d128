//! What browsers fetch besides the WebSocket: the client module (/client.js and its
//! TypeScript declarations /client.d.ts), embedded in the binary with an ETag, and
//! the live status page (/status) with its data (/status.json) behind WS_STATUS_TOKEN.

mod status;

use crate::auth;
use crate::config::Config;
use crate::endpoints::same_secret;
use crate::http::{Request, Response};
use crate::shared::Shared;

/// A file embedded at build time, with its ETag computed at build time too.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: u64,
}

const CLIENT_JS: Asset = asset(include_str!("client.js"), "text/javascript; charset=utf-8");
const CLIENT_DTS: Asset = asset(
    include_str!("client.d.ts"),
    "application/typescript; charset=utf-8",
);
const STATUS_HTML: &str = include_str!("status.html");

/// Browsers may reuse the module for a few minutes, then revalidate (304).
const ASSET_CACHE: &str = "public, max-age=300, must-revalidate";

/// The status page runs inline scripts and styles and talks only to its own origin.
const STATUS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'";

/// The paths this module answers.
pub const PATHS: [&str; 4] = ["/client.js", "/client.d.ts", "/status", "/status.json"];

/// The answer to a request for one of `PATHS` (the router checks the path).
pub fn answer(shared: &Shared, cfg: &Config, req: &Request) -> Response {
    if req.method != "GET" {
        return Response::text(405, "use GET\n").header("Allow", "GET");
    }
    match req.path.as_str() {
        "/client.js" => serve_asset(&CLIENT_JS, cfg, req),
        "/client.d.ts" => serve_asset(&CLIENT_DTS, cfg, req),
        path => status_request(shared, cfg, req, path == "/status.json"),
    }
}

const fn asset(body: &'static str, content_type: &'static str) -> Asset {
    Asset {
        body,
        content_type,
        etag: fnv1a(body.as_bytes()),
    }
}

/// FNV-1a, 64 bits: enough to tell two builds' files apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

fn serve_asset(asset: &Asset, cfg: &Config, req: &Request) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = req.header("If-None-Match").is_some_and(|tags| {
        tags.split(',')
            .any(|t| matches!(t.trim(), "*") || t.trim() == etag)
    });
    let resp = if fresh {
        Response::new(304)
    } else {
        Response::new(200)
            .header("Content-Type", asset.content_type)
            .body(asset.body.as_bytes().to_vec())
    };
    let resp = resp
        .header("ETag", etag)
        .header("Cache-Control", ASSET_CACHE);
    with_cors(resp, cfg, req)
}

/// `*` when any origin may connect, else the request's Origin when it is allowed
/// (and nothing, so the browser refuses the module, when it is not).
pub(crate) fn with_cors(resp: Response, cfg: &Config, req: &Request) -> Response {
    if cfg.allowed_origins.is_empty() {
        return resp.header("Access-Control-Allow-Origin", "*");
    }
    let resp = resp.header("Vary", "Origin");
    match req.header("Origin") {
        Some(origin)
            if cfg
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin)) =>
        {
            resp.header("Access-Control-Allow-Origin", origin)
        }
        _ => resp,
    }
}

/// /status and /status.json: 404 unless WS_STATUS_TOKEN is set; a wrong token 401.
/// The page holds no data, so it comes without a token too (it asks for one); with
/// a wrong one it comes as a 401 and asks again.
fn status_request(shared: &Shared, cfg: &Config, req: &Request, json: bool) -> Response {
    let Some(token) = cfg.status_token.as_deref() else {
        return Response::text(404, "not found\n");
    };
    let given = auth::bearer_or_query(req);
    let authorized = given.as_deref().is_some_and(|g| same_secret(g, token));
    let resp = if json && !authorized {
        Response::json(401, "{\"error\":\"missing or wrong status token\"}".into())
            .header("WWW-Authenticate", "Bearer")
    } else if json {
        Response::json(200, status::snapshot(shared).to_string())
    } else {
        let code = if given.is_some() && !authorized {
            401
        } else {
            200
        };
        Response::new(code)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Content-Security-Policy", STATUS_CSP)
            .header("Referrer-Policy", "no-referrer")
            .body(STATUS_HTML.as_bytes().to_vec())
    };
    resp.header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::same_secret;
    use crate::http::test_request as request;

    #[test]
    fn etag_is_the_content_hash() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(CLIENT_JS.etag, CLIENT_DTS.etag);
    }

    #[test]
    fn tokens_from_header_or_query() {
        let bearer = request("GET /status.json HTTP/1.1\r\nAuthorization: bearer  abc ");
        assert_eq!(auth::bearer_or_query(&bearer).as_deref(), Some("abc"));
        let query = request("GET /status?token=a%20b HTTP/1.1");
        assert_eq!(auth::bearer_or_query(&query).as_deref(), Some("a b"));
        let empty = request("GET /status?token= HTTP/1.1");
        assert_eq!(
            auth::bearer_or_query(&empty),
            None,
            "no token: the page asks"
        );
        assert_eq!(
            auth::bearer_or_query(&request("GET /status HTTP/1.1")),
            None
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }
}
