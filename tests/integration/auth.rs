//! JWT authentication (issue 15) against the real binary: tokens made here with
//! jsonwebtoken (HS256) and with keys openssl generates (RS256, ES256). Every
//! rejection reason, the three token sources, allow/deny with wildcards (a table
//! and a randomised cross-check against a brute-force matcher), refresh widening
//! and narrowing, token_expiring and the 4001 close, key rotation through SIGHUP,
//! publish permissions, SSE 401/403 and its end at exp, and no token or secret in
//! the logs, /health or /metrics.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;

use crate::support::*;

pub(crate) const SECRET: &str = "integration-test-secret-of-32-bytes-or-more";
/// Seconds a short-lived token lives: under the 30 s warning, and long enough to
/// connect with on a loaded machine.
const SHORT_LIFETIME: u64 = 4;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs(claims: &Value) -> String {
    hs_with(claims, SECRET)
}

fn hs_with(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// A token for `sub` allowed `channels`, valid for a minute.
pub(crate) fn token(sub: &str, channels: &[&str]) -> String {
    hs(&json!({"exp": now() + 60, "sub": sub, "channels": channels}))
}

fn start(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("WS_AUTH_JWT_SECRET", SECRET)];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// A raw upgrade of `target` with `headers` ("Name: value\r\n" each): the head,
/// and the body when it is not a 101 (an open WebSocket would not end).
fn upgrade(s: &Server, target: &str, headers: &str) -> HttpReply {
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        sock,
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    )
    .unwrap();
    let (status, head, mut reader) = response_head(sock);
    let body = match status {
        101 => String::new(),
        _ => rest_of(&mut reader).join("\n") + "\n",
    };
    HttpReply { status, head, body }
}

/// A client that sent `header` with its upgrade and read its welcome.
fn client_with_header(s: &Server, name: &'static str, value: &str) -> Client {
    let mut req = s.url().into_client_request().unwrap();
    req.headers_mut().insert(name, value.parse().unwrap());
    let (mut c, _) = tungstenite::connect(req).expect("upgrade");
    if let MaybeTlsStream::Plain(sock) = c.get_mut() {
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    assert_eq!(read_json(&mut c)["type"], "welcome");
    c
}

/// A client whose token is in the upgrade URL's query, welcome read.
pub(crate) fn client_with_token(s: &Server, token: &str) -> Client {
    let mut c = connect(&format!("{}?token={token}", s.url()));
    assert_eq!(read_json(&mut c)["type"], "welcome");
    c
}

/// Sends a subscribe for `channels` and returns every reply up to its ack (or
/// up to the error frames alone when nothing was subscribed).
fn subscribe_replies(c: &mut Client, channels: &[&str], id: u64) -> Vec<Value> {
    send(
        c,
        &json!({"type": "subscribe", "channels": channels, "id": id}).to_string(),
    );
    send(c, &json!({"type": "ping", "id": "end"}).to_string());
    let mut replies = Vec::new();
    loop {
        let r = read_json(c);
        if r["type"] == "pong" && r["id"] == "end" {
            return replies;
        }
        replies.push(r);
    }
}

/// The frames up to the close, and the close's code and reason.
fn until_close(c: &mut Client) -> (Vec<Value>, u16, String) {
    let mut frames = Vec::new();
    loop {
        match c.read().expect("a frame before the close") {
            Message::Text(t) => frames.push(serde_json::from_str(&t).unwrap()),
            Message::Close(Some(f)) => return (frames, u16::from(f.code), f.reason.to_string()),
            Message::Close(None) => panic!("close without a code"),
            _ => {}
        }
    }
}

fn metric(s: &Server, reason: &str) -> f64 {
    s.metric(&format!(
        "odin_ws_auth_rejected_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn every_rejection_reason_is_401_alike_and_counted() {
    let s = start(&[("WS_ECHO_PATH", "/echo")]);
    let t = now();
    let cases = [
        ("missing", String::new()),
        ("malformed", "not-a-jwt".to_string()),
        ("malformed", hs(&json!({"sub": "no exp"}))),
        ("malformed", hs(&json!({"exp": "soon"}))),
        // GHSA-h395-gr6q-cpjc: a string nbf must not skip the nbf check.
        (
            "malformed",
            hs(&json!({"exp": t + 60, "nbf": "99999999999"})),
        ),
        (
            "bad_signature",
            hs_with(&json!({"exp": t + 60}), "another-secret-another-secret-xyz"),
        ),
        ("expired", hs(&json!({"exp": t - 5}))),
        ("not_yet_valid", hs(&json!({"exp": t + 60, "nbf": t + 30}))),
    ];
    let mut bodies = Vec::new();
    for (reason, token) in &cases {
        let before = metric(&s, reason);
        let target = match token.is_empty() {
            true => "/ws".to_string(),
            false => format!("/ws?token={token}"),
        };
        let reply = upgrade(&s, &target, "");
        assert_eq!(reply.status, 401, "{reason}: {reply:?}");
        assert!(reply.head.contains("WWW-Authenticate: Bearer"), "{reply:?}");
        bodies.push(reply.body);
        assert_eq!(metric(&s, reason), before + 1.0, "{reason}");
    }
    bodies.dedup();
    assert_eq!(
        bodies,
        ["a valid token is required\n"],
        "one answer for all"
    );
    // The conformance echo needs no token.
    let echo = upgrade(&s, "/echo", "");
    assert_eq!(echo.status, 101, "{echo:?}");
}

#[test]
fn the_token_may_come_in_the_header_the_query_or_the_cookie() {
    let s = start(&[]);
    let t = token("u1", &["a.>"]);
    let mut clients = vec![
        client_with_header(&s, "Authorization", &format!("Bearer {t}")),
        client_with_token(&s, &t),
        client_with_header(&s, "Cookie", &format!("theme=dark; odin_ws_token={t}")),
    ];
    for c in &mut clients {
        subscribe(c, &["a.b"]);
    }
    assert_eq!(s.publish("a.b", "1").status, 202);
    for c in &mut clients {
        assert_eq!(read_json(c)["channel"], "a.b");
    }
    // A wrong header is not rescued by a good cookie: the first source found counts.
    let reply = upgrade(
        &s,
        "/ws",
        &format!("Authorization: Bearer nope\r\nCookie: odin_ws_token={t}\r\n"),
    );
    assert_eq!(reply.status, 401);
}

#[test]
fn subscribes_are_held_to_the_grant_with_wildcards_and_deny() {
    let s = start(&[]);
    let t = hs(&json!({
        "exp": now() + 60, "sub": "u1",
        "channels": ["token.>", "user.u1.*"],
        "deny": ["token.*.secret"],
    }));
    // (pattern, allowed): a wildcard that could reach a denied or not allowed
    // subject is forbidden.
    let table = [
        ("token.BTC.price", true),
        ("token.*.price", true),
        ("token.BTC.trades.1m", true),
        ("user.u1.orders", true),
        ("user.u1.*", true),
        ("token.BTC.>", false),
        ("token.>", false),
        ("token.*.secret", false),
        ("token.ETH.secret", false),
        ("user.u2.orders", false),
        ("user.*.orders", false),
        ("user.u1.orders.x", false),
        (">", false),
    ];
    let mut c = client_with_token(&s, &t);
    let channels: Vec<&str> = table.iter().map(|(p, _)| *p).collect();
    let replies = subscribe_replies(&mut c, &channels, 5);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let (error, ack) = (&replies[0], &replies[1]);
    assert_eq!(
        (&error["type"], &error["code"], &error["id"]),
        (&json!("error"), &json!("forbidden"), &json!(5))
    );
    let want = |allowed: bool| -> Value {
        table
            .iter()
            .filter(|(_, a)| *a == allowed)
            .map(|(p, _)| *p)
            .collect()
    };
    assert_eq!(error["channels"], want(false));
    assert_eq!(
        (&ack["type"], &ack["channels"]),
        (&json!("subscribed"), &want(true))
    );
    // The allowed ones deliver; nothing reaches the client on a denied subject.
    assert_eq!(s.publish("token.BTC.secret", "0").status, 202);
    assert_eq!(s.publish("token.BTC.price", "1").status, 202);
    let m = read_json(&mut c);
    assert_eq!(
        (&m["channel"], &m["data"]),
        (&json!("token.BTC.price"), &json!(1))
    );
    assert!(s.metric("odin_ws_client_errors_total{code=\"forbidden\"}") >= 1.0);
}

#[test]
fn max_subscriptions_is_the_smaller_of_the_claim_and_the_server() {
    let s = start(&[("WS_MAX_SUBSCRIPTIONS", "3")]);
    let small = hs(&json!({"exp": now() + 60, "channels": [">"], "max_subscriptions": 1}));
    let mut c = client_with_token(&s, &small);
    let r = subscribe_replies(&mut c, &["a", "b"], 1);
    assert_eq!(r[0]["code"], "too_many_subscriptions");
    assert_eq!(r[1]["channels"], json!(["a"]));
    let large = hs(&json!({"exp": now() + 60, "channels": [">"], "max_subscriptions": 50}));
    let mut c = client_with_token(&s, &large);
    let r = subscribe_replies(&mut c, &["a", "b", "c", "d"], 2);
    assert_eq!(r[0]["channels"], json!(["d"]));
    assert_eq!(r[1]["channels"], json!(["a", "b", "c"]));
}

/// xorshift64: the same cases on every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// A pattern of 1..=3 tokens over {a, b, *}, maybe ending in `>`.
    fn pattern(&mut self) -> String {
        let len = 1 + self.below(3);
        let mut tokens: Vec<&str> = (0..len).map(|_| ["a", "b", "*"][self.below(3)]).collect();
        if self.below(3) == 0 {
            *tokens.last_mut().unwrap() = ">";
        }
        tokens.join(".")
    }
}

/// The reference matcher: NATS semantics, written here independently.
fn matches(pattern: &str, subject: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), subject.split('.').collect());
    for (i, token) in p.iter().enumerate() {
        match *token {
            ">" => return s.len() > i,
            "*" if i < s.len() => {}
            t if i < s.len() && s[i] == t => {}
            _ => return false,
        }
    }
    p.len() == s.len()
}

/// Every subject of 1..=4 tokens over {a, b, z} (`z`: a token no pattern names;
/// four tokens: one more than any pattern spans).
fn subjects() -> Vec<String> {
    let mut all = Vec::new();
    let mut level = vec![String::new()];
    for _ in 0..4 {
        let next: Vec<String> = level
            .iter()
            .flat_map(|p| {
                ["a", "b", "z"].map(|t| match p.is_empty() {
                    true => t.to_string(),
                    false => format!("{p}.{t}"),
                })
            })
            .collect();
        all.extend(next.iter().cloned());
        level = next;
    }
    all
}

/// Random grants and requests through real connections: a pattern is forbidden
/// exactly when some subject it matches is outside every allow pattern's (the
/// server checks pattern by pattern, see grant.rs) or inside a deny pattern's.
#[test]
fn random_grants_agree_with_brute_force() {
    let s = start(&[("WS_MAX_SUBSCRIPTIONS", "1000")]);
    let subjects = subjects();
    let reach = |p: &str| -> Vec<&String> { subjects.iter().filter(|s| matches(p, s)).collect() };
    let mut rng = Rng(0x5eed_0015_2026_1207);
    let mut forbidden_seen = 0;
    for round in 0..25 {
        let allow: Vec<String> = (0..1 + rng.below(2)).map(|_| rng.pattern()).collect();
        let deny: Vec<String> = (0..rng.below(2)).map(|_| rng.pattern()).collect();
        let mut asked: Vec<String> = (0..12).map(|_| rng.pattern()).collect();
        asked.sort();
        asked.dedup();
        let t = hs(&json!({"exp": now() + 60, "channels": allow, "deny": deny}));
        let mut c = client_with_token(&s, &t);
        let asked_refs: Vec<&str> = asked.iter().map(String::as_str).collect();
        let replies = subscribe_replies(&mut c, &asked_refs, round);
        let mut refused: Vec<String> = Vec::new();
        for r in &replies {
            if r["type"] == "error" {
                assert_eq!(r["code"], "forbidden", "{r}");
                refused.extend(
                    r["channels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string()),
                );
            }
        }
        for p in &asked {
            let covered = allow.iter().any(|g| reach(p).iter().all(|s| matches(g, s)));
            let touches_deny = deny.iter().any(|d| reach(p).iter().any(|s| matches(d, s)));
            let want_forbidden = !covered || touches_deny;
            assert_eq!(
                refused.contains(p),
                want_forbidden,
                "{p} under allow {allow:?} deny {deny:?}"
            );
            forbidden_seen += usize::from(want_forbidden);
        }
    }
    assert!(
        forbidden_seen > 20 && forbidden_seen < 25 * 12,
        "{forbidden_seen}"
    );
}

#[test]
fn refresh_widens_then_narrows_and_a_bad_one_keeps_the_old_grant() {
    let s = start(&[]);
    let mut c = client_with_token(&s, &token("u1", &["a.*"]));
    subscribe(&mut c, &["a.x"]);
    assert_eq!(
        subscribe_replies(&mut c, &["b.x"], 1)[0]["code"],
        "forbidden"
    );
    // Widening: b.* becomes allowed at once.
    let wide = token("u1", &["a.*", "b.*"]);
    send(
        &mut c,
        &json!({"type": "refresh", "token": wide, "id": 2}).to_string(),
    );
    assert_eq!(read_json(&mut c), json!({"type": "refreshed", "id": 2}));
    subscribe(&mut c, &["b.x"]);
    // Narrowing: a.x is taken away and said so, before `refreshed`.
    let narrow = token("u1", &["b.*"]);
    send(
        &mut c,
        &json!({"type": "refresh", "token": narrow, "id": 3}).to_string(),
    );
    assert_eq!(
        read_json(&mut c),
        json!({"type": "unsubscribed", "channels": ["a.x"], "reason": "forbidden", "id": 3})
    );
    assert_eq!(read_json(&mut c), json!({"type": "refreshed", "id": 3}));
    assert_eq!(s.publish("a.x", "1").status, 202);
    assert_eq!(s.publish("b.x", "2").status, 202);
    let m = read_json(&mut c);
    assert_eq!((&m["channel"], &m["data"]), (&json!("b.x"), &json!(2)));
    // Another sub, a bad signature, an expired token: invalid_token, grant kept.
    let before = metric(&s, "other_subject");
    let bad = [
        token("u2", &[">"]),
        hs_with(
            &json!({"exp": now() + 60, "sub": "u1", "channels": [">"]}),
            "x".repeat(40).as_str(),
        ),
        hs(&json!({"exp": now() - 1, "sub": "u1", "channels": [">"]})),
    ];
    for (i, t) in bad.iter().enumerate() {
        send(
            &mut c,
            &json!({"type": "refresh", "token": t, "id": 10 + i}).to_string(),
        );
        let e = read_json(&mut c);
        assert_eq!(
            (&e["code"], &e["id"]),
            (&json!("invalid_token"), &json!(10 + i)),
            "{e}"
        );
        assert!(
            !e.to_string().contains(t.as_str()),
            "the token is not echoed"
        );
    }
    assert_eq!(metric(&s, "other_subject"), before + 1.0);
    assert_eq!(
        subscribe_replies(&mut c, &["c.x"], 20)[0]["code"],
        "forbidden"
    );
    subscribe(&mut c, &["b.y"]);
    assert!(s.metric("odin_ws_auth_refreshes_total") >= 2.0);
}

#[test]
fn an_expiring_token_is_warned_then_closed_with_4001() {
    let s = start(&[]);
    let exp = now() + SHORT_LIFETIME;
    let t = hs(&json!({"exp": exp, "sub": "u1", "channels": ["a"]}));
    let mut c = client_with_token(&s, &t);
    let warning = read_json(&mut c);
    assert_eq!(
        warning["type"], "token_expiring",
        "less than 30 s left: at once"
    );
    let in_ms = warning["in_ms"].as_u64().unwrap();
    assert!(in_ms <= SHORT_LIFETIME * 1000, "{warning}");
    let (frames, code, reason) = until_close(&mut c);
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
    assert!(now() >= exp, "closed before exp");
    assert_eq!(s.metric("odin_ws_auth_expired_total"), 1.0);
}

#[test]
fn a_refreshed_connection_outlives_its_first_token() {
    let s = start(&[]);
    let first_exp = now() + SHORT_LIFETIME;
    let t = hs(&json!({"exp": first_exp, "sub": "u1", "channels": ["a"]}));
    let mut c = client_with_token(&s, &t);
    assert_eq!(read_json(&mut c)["type"], "token_expiring");
    send(
        &mut c,
        &json!({"type": "refresh", "token": token("u1", &["a"]), "id": 1}).to_string(),
    );
    assert_eq!(read_json(&mut c)["type"], "refreshed");
    wait_for("the first token's exp to pass", || now() > first_exp + 1);
    send(&mut c, r#"{"type":"ping","id":"alive"}"#);
    assert_eq!(read_json(&mut c), json!({"type": "pong", "id": "alive"}));
    assert_eq!(s.metric("odin_ws_auth_expired_total"), 0.0);
}

/// `openssl genpkey` into `dir`: (private key PEM, public key PEM).
fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> (Vec<u8>, String) {
    let private = dir.join(format!("{name}.key"));
    let ok = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .expect("openssl");
    assert!(public.status.success());
    (
        std::fs::read(&private).unwrap(),
        String::from_utf8(public.stdout).unwrap(),
    )
}

#[test]
fn key_rotation_through_sighup_accepts_both_keys_during_the_overlap() {
    let dir = scratch("auth-rotation");
    let (rsa_private, rsa_public) = openssl_key(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_private, ec_public) = openssl_key(
        &dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let claims = json!({"exp": now() + 120, "sub": "u1", "channels": ["a"]});
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
    )
    .unwrap();
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&ec_private).unwrap(),
    )
    .unwrap();
    let keys = dir.join("keys.pem");
    std::fs::write(&keys, &rsa_public).unwrap();
    let s = Server::start(&[("WS_AUTH_JWT_KEY_FILE", keys.to_str().unwrap())]);
    let status = |t: &str| upgrade(&s, &format!("/ws?token={t}"), "").status;
    assert_eq!((status(&rs), status(&es)), (101, 401));
    let reloads = |s: &Server| s.log.lock().unwrap().matches("read again").count();
    // The overlap: both keys in the file.
    std::fs::write(&keys, format!("{rsa_public}{ec_public}")).unwrap();
    s.signal(libc::SIGHUP);
    wait_for("the first reload", || reloads(&s) == 1);
    assert_eq!((status(&rs), status(&es)), (101, 101));
    // The old key retired.
    std::fs::write(&keys, &ec_public).unwrap();
    s.signal(libc::SIGHUP);
    wait_for("the second reload", || reloads(&s) == 2);
    assert_eq!((status(&rs), status(&es)), (401, 101));
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("read again: RS256 -> RS256, ES256"), "{log}");
    // A file broken by a bad edit is refused whole; the running keys stay.
    std::fs::write(
        &keys,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    wait_for("the rejected reload", || {
        s.log.lock().unwrap().contains("keeping the running one")
    });
    assert_eq!(status(&es), 101);
}

/// POST /publish with `Authorization: Bearer <token>`.
fn publish_as(s: &Server, token: &str, channel: &str) -> HttpReply {
    let body = json!({"channel": channel, "data": 1}).to_string();
    s.http(&format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

#[test]
fn publish_takes_a_jwt_within_its_publish_claim() {
    // JWT authentication alone turns POST /publish on.
    let s = start(&[("WS_PUBLISH_TOKEN", "")]);
    let publisher = hs(&json!({"exp": now() + 60, "sub": "svc", "publish": ["user.u1.*"]}));
    assert_eq!(publish_as(&s, &publisher, "user.u1.orders").status, 202);
    let outside = publish_as(&s, &publisher, "user.u2.orders");
    assert_eq!(outside.status, 403, "{outside:?}");
    assert!(
        outside.body.contains("outside the token's publish claim"),
        "{outside:?}"
    );
    let reader = token("u1", &[">"]);
    assert_eq!(
        publish_as(&s, &reader, "user.u1.orders").status,
        403,
        "no publish claim"
    );
    let expired = hs(&json!({"exp": now() - 1, "publish": [">"]}));
    let before = metric(&s, "expired");
    assert_eq!(publish_as(&s, &expired, "a").status, 401);
    assert_eq!(metric(&s, "expired"), before + 1.0);
    assert_eq!(
        publish_as(&s, TOKEN, "a").status,
        401,
        "no WS_PUBLISH_TOKEN here"
    );
    assert_eq!(s.metric("odin_ws_auth_forbidden_total"), 2.0);
    // With both, WS_PUBLISH_TOKEN keeps publishing anywhere.
    let both = start(&[]);
    assert_eq!(publish_as(&both, TOKEN, "any.channel").status, 202);
    assert_eq!(publish_as(&both, &publisher, "user.u1.x").status, 202);
    assert_eq!(publish_as(&both, &publisher, "any.channel").status, 403);
}

/// An SSE request: the status, the head, and the reader positioned after it.
fn sse(s: &Server, query: &str, headers: &str) -> (u16, String, BufReader<TcpStream>) {
    sse_request(s.port, query, headers)
}

/// The lines of a stream up to its end.
fn rest_of(reader: &mut BufReader<TcpStream>) -> Vec<String> {
    reader.lines().map_while(Result::ok).collect()
}

#[test]
fn sse_needs_a_token_within_its_grant_and_ends_at_exp() {
    let s = start(&[]);
    let (status, _, _) = sse(&s, "channels=a.b", "");
    assert_eq!(status, 401);
    let t = token("u1", &["a.*"]);
    let (status, _, mut reader) = sse(&s, &format!("channels=a.b,b.c&token={t}"), "");
    assert_eq!(status, 403);
    let body = rest_of(&mut reader).join("\n");
    let error: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        (&error["code"], &error["channels"]),
        (&json!("forbidden"), &json!(["b.c"]))
    );
    assert_eq!(s.metric("odin_ws_auth_forbidden_total"), 1.0);
    // The token's max_subscriptions, after its grant (as for a subscribe).
    let one = hs(&json!({"exp": now() + 600, "channels": ["a.*"], "max_subscriptions": 1}));
    for (channels, status, code) in [
        ("a.b,a.c", 400, "too_many_subscriptions"),
        ("a.b,a.b", 200, ""),
        ("a.b,b.c", 403, "forbidden"),
    ] {
        let query = format!("channels={channels}&token={one}");
        let (got, head, mut reader) = sse(&s, &query, "");
        assert_eq!(got, status, "{channels}: {head}");
        if status != 200 {
            let body = rest_of(&mut reader).join("\n");
            let error: Value = serde_json::from_str(body.trim()).unwrap();
            assert_eq!(error["code"], code, "{channels}");
        }
    }
    // The cookie, and a short token: the stream ends at its exp.
    let exp = now() + SHORT_LIFETIME;
    let short = hs(&json!({"exp": exp, "sub": "u1", "channels": ["a.*"]}));
    let (status, head, mut reader) = sse(
        &s,
        "channels=a.b",
        &format!("Cookie: odin_ws_token={short}\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    let lines = rest_of(&mut reader);
    assert!(lines.iter().any(|l| l == "event: subscribed"), "{lines:?}");
    assert_eq!(
        lines.iter().rev().find(|l| !l.is_empty()).unwrap(),
        ": token expired"
    );
    assert!(now() >= exp, "ended before exp");
    assert_eq!(s.metric("odin_ws_auth_expired_total"), 1.0);
}

#[test]
fn a_short_secret_is_refused_at_start_without_printing_it() {
    let out = Command::new(BIN)
        .args(["--check-config", "--env-file", "/dev/null"])
        .env("WS_AUTH_JWT_SECRET", "short-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WS_AUTH_JWT_SECRET must be at least 32 bytes, got 18"),
        "{stderr}"
    );
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains("short-secret-value"), "{all}");
    let ok = Command::new(BIN)
        .args(["--check-config", "--env-file", "/dev/null"])
        .env("WS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&ok.stdout);
    assert!(table.contains("WS_AUTH_JWT_SECRET"), "{table}");
    assert!(!table.contains(SECRET), "{table}");
}

/// Everything a token touches, at debug level; then neither a token nor the
/// secret may appear in the log, /health, /metrics or an answer.
#[test]
fn no_token_or_secret_is_ever_printed() {
    let s = start(&[("LOG_LEVEL", "debug")]);
    let good = token("u1", &["a.*"]);
    let refresh = token("u1", &["a.*", "b.*"]);
    let expired = hs(&json!({"exp": now() - 1, "sub": "u1"}));
    let forged = hs_with(
        &json!({"exp": now() + 60}),
        "forged-secret-forged-secret-forged",
    );
    let mut answers = String::new();
    let mut c = client_with_token(&s, &good);
    answers.push_str(
        &subscribe_replies(&mut c, &["a.x", "c.x"], 1)
            .iter()
            .map(Value::to_string)
            .collect::<String>(),
    );
    for t in [&refresh, &expired, &forged] {
        send(
            &mut c,
            &json!({"type": "refresh", "token": t, "id": 2}).to_string(),
        );
        answers.push_str(&read_json(&mut c).to_string());
    }
    for t in [&expired, &forged] {
        answers.push_str(&upgrade(&s, &format!("/ws?token={t}"), "").body);
        answers.push_str(&publish_as(&s, t, "a.x").body);
        let (_, head, mut r) = sse(&s, &format!("channels=a.x&token={t}"), "");
        answers.push_str(&head);
        answers.push_str(&rest_of(&mut r).join("\n"));
    }
    answers.push_str(&publish_as(&s, &good, "a.x").body);
    s.signal(libc::SIGHUP);
    wait_for("the reload", || s.log.lock().unwrap().contains("SIGHUP"));
    let health = s.get("/health").body;
    let metrics = s.get("/metrics").body;
    drop(c);
    let log = s.log.lock().unwrap().clone();
    for (name, text) in [
        ("log", &log),
        ("health", &health),
        ("metrics", &metrics),
        ("answers", &answers),
    ] {
        for secret in [SECRET, &good, &refresh, &expired, &forged] {
            assert!(
                !text.contains(secret),
                "{name} holds a token or the secret:\n{text}"
            );
        }
        // Nor a token's signature alone.
        for t in [&good, &forged] {
            let signature = t.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "{name} holds a signature");
        }
    }
    assert!(log.contains("JWT authentication on (HS256)"), "{log}");
}
