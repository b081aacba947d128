//! /client.js with JWT authentication in Chromium: the page's `token` option is a
//! function that fetches a token from its own site. The first token is short-lived,
//! so the server says `token_expiring` at once; the client asks for a new token and
//! sends `refresh`, and the same connection keeps receiving past the first token's
//! `exp` (no 4001 close, no reconnect).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::chromium::Chromium;
use crate::support::{Server, wait_for};

const SECRET: &str = "browser-test-secret-of-at-least-32-bytes";
/// Seconds the first token lives: under the 30 s warning, so it comes at once, and
/// long enough for a loaded machine to start the page and connect with it.
const FIRST_LIFETIME: u64 = 12;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(exp: u64) -> String {
    let claims = json!({"exp": exp, "sub": "page", "channels": ["token.*.price"]});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The page's site: `/token` hands out tokens (the first expiring at
/// `first_exp`, later ones in two minutes) and counts them; anything else is
/// `html`.
fn serve_site(html: String, first_exp: u64, issued: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut head = [0u8; 4096];
            let n = stream.read(&mut head).unwrap_or(0);
            let target = String::from_utf8_lossy(&head[..n])
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .to_string();
            if target == "/token" {
                let exp = match issued.fetch_add(1, SeqCst) {
                    0 => first_exp,
                    _ => now() + 120,
                };
                reply(&mut stream, "text/plain", &token(exp));
            } else {
                reply(&mut stream, "text/html; charset=utf-8", &html);
            }
        }
    });
    port
}

fn reply(stream: &mut TcpStream, kind: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn page(server_port: u16) -> String {
    format!(
        r#"<!doctype html><title>refresh test</title><script type="module">
import {{ OdinWS }} from "http://127.0.0.1:{server_port}/client.js";
const log = {{ states: [], errors: [], prices: [] }};
window.log = log;
const c = new OdinWS("ws://127.0.0.1:{server_port}/ws", {{
  token: async () => (await fetch("/token")).text(),
  onState: (s, d) => log.states.push(s),
  onError: (e) => log.errors.push(e.code),
}});
c.subscribe("token.*.price", (m) => log.prices.push(m.data));
</script>"#
    )
}

#[test]
fn a_page_with_a_short_lived_token_refreshes_and_keeps_receiving() {
    let Some(mut chromium) = Chromium::start("refresh") else {
        return;
    };
    let server = Server::start(&[("WS_AUTH_JWT_SECRET", SECRET)]);
    let issued = Arc::new(AtomicU64::new(0));
    let first_exp = now() + FIRST_LIFETIME;
    let site = serve_site(page(server.port), first_exp, Arc::clone(&issued));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    // token_expiring came at once: the client fetched a second token and refreshed.
    wait_for("the refresh", || {
        server.metric("odin_ws_auth_refreshes_total") == 1.0
    });
    assert_eq!(
        issued.load(SeqCst),
        2,
        "one token to connect, one to refresh"
    );
    // The same connection outlives the first token.
    wait_for("the first token's exp to pass", || now() > first_exp + 1);
    wait_for("a message after the first exp", || {
        assert_eq!(server.publish("token.BTC.price", "7").status, 202);
        chromium.eval("log.prices.length > 0") == Value::Bool(true)
    });
    assert_eq!(chromium.eval("log.prices[0]"), json!(7));
    assert_eq!(chromium.eval("log.states"), json!(["connecting", "open"]));
    assert_eq!(chromium.eval("log.errors"), json!([]));
    assert_eq!(server.metric("odin_ws_auth_expired_total"), 0.0);
    assert_eq!(
        server.metric("odin_ws_auth_rejected_total{reason=\"missing\"}"),
        0.0
    );
}
