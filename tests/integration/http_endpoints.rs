//! The plain HTTP side of the port: statuses, /health, /metrics, /publish.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn statuses_for_every_kind_of_request() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/nope").status, 404);
    assert_eq!(
        s.get("/ws").status,
        426,
        "GET of the upgrade path without Upgrade"
    );
    assert_eq!(s.http("POST /health HTTP/1.1\r\n\r\n").status, 405);
    assert_eq!(s.http("GARBAGE\r\n\r\n").status, 400);
    assert_eq!(s.http("GET / HTTP/3.0\r\n\r\n").status, 400);
    let long = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(s.http(&long).status, 431);
    let bad_version = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let reply = s.http(bad_version);
    assert_eq!(reply.status, 426);
    assert!(reply.head.contains("Sec-WebSocket-Version: 13"));
    let bad_key = bad_version
        .replace("Version: 8", "Version: 13")
        .replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    assert_eq!(s.http(&bad_key).status, 400);
}

#[test]
fn publish_needs_the_token_and_a_valid_body() {
    let s = Server::start(&[]);
    let unauthorized =
        "POST /publish HTTP/1.1\r\nAuthorization: Bearer wrong\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(s.http(unauthorized).status, 401);
    assert_eq!(
        s.http("POST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
            .status,
        401
    );
    assert_eq!(s.publish("a..b", "1").status, 400, "invalid channel");
    assert_eq!(
        s.publish("a.*", "1").status,
        400,
        "wildcards are for subscribers"
    );
    assert_eq!(s.publish("a.b", "not json").status, 400);
    assert_eq!(s.publish("a.b", "{\"p\":1}").status, 202);
    wait_for("the publish counted", || {
        s.metric("odin_ws_messages_in_total{source=\"http\"}") == 1.0
    });

    let without_token = Server::start(&[("WS_PUBLISH_TOKEN", "")]);
    assert_eq!(
        without_token.publish("a.b", "1").status,
        404,
        "publish is off without a token"
    );
}

#[test]
fn health_and_metrics_count_connections() {
    let s = Server::start(&[("WS_MAX_CONNECTIONS", "5")]);
    let health = s.health();
    for key in [
        "status",
        "version",
        "connections",
        "max_connections",
        "cpu_percent",
        "memory_bytes",
        "memory_percent",
        "workers",
        "nats",
        "uptime_s",
    ] {
        assert!(health.get(key).is_some(), "/health lacks {key}: {health}");
    }
    assert_eq!(health["nats"], "disabled");
    assert_eq!(health["max_connections"], 5);
    let mut clients: Vec<Client> = (0..5).map(|_| s.client()).collect();
    assert_eq!(s.health()["connections"], 5);
    assert_eq!(s.metric("odin_ws_connections"), 5.0);

    // Full: the sixth upgrade gets 503 and /health says closed.
    let reply = s.http("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(reply.status, 503);
    assert!(reply.head.contains("Retry-After:"));
    assert_eq!(s.get("/health").status, 503);
    assert_eq!(
        s.metric("odin_ws_connections_rejected_total{reason=\"max_connections\"}"),
        1.0
    );

    clients.truncate(2);
    wait_for("/health to count 2 connections", || {
        s.health()["connections"] == 2
    });
    assert_eq!(s.get("/health").status, 200);
    wait_for("the memory sample", || {
        s.health()["memory_bytes"].as_u64().unwrap() > 0
    });
}

#[test]
fn incomplete_head_is_closed_after_the_handshake_timeout() {
    let s = Server::start(&[("WS_HANDSHAKE_TIMEOUT", "300ms")]);
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let started = Instant::now();
    sock.write_all(b"GET /ws HTTP/1.1\r\nHost: slow").unwrap();
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() >= Duration::from_millis(250));
}
