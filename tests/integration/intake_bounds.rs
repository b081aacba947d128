//! What intake may hold, against the real binary (and a real nats-server): a
//! broadcast too large for a send queue is refused instead of closing every
//! subscriber, the ring is bounded by bytes, POST /publish never waits for NATS,
//! and the bearer scheme is case-insensitive.
#![allow(deprecated)] // the sync nats client, as in the server

use crate::support::*;

/// The `n` field of the next message; any other frame (a close) fails the test.
fn next_n(c: &mut Client) -> i64 {
    let msg = read_json(c);
    assert_eq!(msg["type"], "message", "{msg}");
    msg["data"]["n"].as_i64().unwrap_or(-1)
}

/// A POST /publish of `body` (any JSON) with `authorization` as the whole header.
fn post(s: &Server, authorization: &str, body: &str) -> HttpReply {
    s.http(&format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\n{authorization}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// A 20 KB payload of control bytes is a ~120 KB frame once JSON-escaped: over a
/// 64 KiB send queue. It is refused at intake, counted, logged; both subscribers
/// stay connected and get the next message.
#[test]
fn oversized_nats_broadcast_is_refused_and_subscribers_keep_receiving() {
    let nats = NatsServer::start(false);
    let s = Server::start(&[
        ("NATS_URL", &nats.url()),
        ("NATS_SUBJECTS", "odin.>"),
        ("WS_SEND_QUEUE_BYTES", "65536"),
    ]);
    s.wait_nats("connected");
    let mut subscribers: Vec<Client> = (0..2).map(|_| s.client()).collect();
    for c in &mut subscribers {
        subscribe(c, &["odin.>"]);
    }
    let publisher = nats.client();
    publisher.publish("odin.big", vec![1u8; 20_000]).unwrap();
    publisher.publish("odin.big", vec![b'x'; 40_000]).unwrap();
    publisher.publish("odin.small", "{\"n\":1}").unwrap();
    publisher.flush().unwrap();
    for c in &mut subscribers {
        assert_eq!(next_n(c), 1);
    }
    assert_eq!(
        s.metric("odin_ws_broadcasts_refused_total{reason=\"too_large\"}"),
        2.0
    );
    assert_eq!(s.metric("odin_ws_slow_consumer_closes_total"), 0.0);
    assert_eq!(s.health()["connections"], 2);
    let log = s.log.lock().unwrap().clone();
    let lines = log
        .matches("not broadcast: its frame is over WS_MAX_BROADCAST_SIZE=32768")
        .count();
    assert_eq!(
        lines, 1,
        "one line per interval, not one per message:\n{log}"
    );
}

/// POST /publish: a body whose frame would exceed WS_MAX_BROADCAST_SIZE is 413
/// (escapes count: the data is embedded as sent), and nobody is closed for it.
#[test]
fn oversized_publish_is_413_and_lower_case_bearer_is_accepted() {
    let s = Server::start(&[
        ("WS_SEND_QUEUE_BYTES", "65536"),
        ("WS_MAX_MESSAGE_SIZE", "1048576"),
    ]);
    let mut c = s.client();
    subscribe(&mut c, &["a.b"]);
    let escaped = "\\u0001".repeat(6000);
    let reply = s.publish("a.b", &format!("\"{escaped}\""));
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body.contains("WS_MAX_BROADCAST_SIZE"), "{reply:?}");
    let reply = post(
        &s,
        &format!("authorization: bearer {TOKEN}"),
        "{\"channel\":\"a.b\",\"data\":{\"n\":7}}",
    );
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(next_n(&mut c), 7);
    let reply = post(&s, "Authorization: Basic x", "{}");
    assert_eq!(reply.status, 401, "{reply:?}");
}

/// The ring holds at most WS_RING_BYTES (8 MiB) and history, which keeps
/// broadcasts alive after the ring lets them go, at most WS_HISTORY_BYTES (8 MiB):
/// 300 broadcasts of 200 KB (a frame and a payload each, ~120 MB in 300 slots
/// without the bounds) keep the server's peak RSS under 64 MiB.
#[test]
fn ring_is_bounded_by_bytes() {
    let _heavy = heavy();
    let s = Server::start(&[
        ("WS_SEND_QUEUE_BYTES", "2097152"),
        ("WS_MAX_MESSAGE_SIZE", "1048576"),
        ("WS_RING_BYTES", "8388608"),
        ("WS_HISTORY_BYTES", "8388608"),
    ]);
    let mut c = s.client();
    subscribe(&mut c, &["a.b"]);
    let data = format!("\"{}\"", "x".repeat(200_000));
    for _ in 0..300 {
        assert_eq!(s.publish("a.z", &data).status, 202);
    }
    s.publish("a.b", "{\"n\":1}");
    assert_eq!(next_n(&mut c), 1);
    let peak = peak_rss_kib(s.child.id());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(s.metric("odin_ws_ring_bytes") <= 8_388_608.0);
    assert!(s.metric("odin_ws_history_bytes") <= 8_388_608.0);
    assert!(s.metric("odin_ws_ring_released_total") >= 250.0);
}

/// VmHWM (the peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// NATS stalled (SIGSTOP): POST /publish answers at once, 202 while its queue has
/// room and 503 + Retry-After once it is full, and the worker it runs on keeps
/// answering its WebSocket clients; once NATS resumes the queue drains.
#[test]
fn publish_with_nats_stalled_never_blocks_the_worker() {
    let _heavy = heavy();
    let nats = NatsServer::start(false);
    let s = Server::start(&[
        ("NATS_URL", &nats.url()),
        ("NATS_SUBJECTS", "odin.>"),
        ("WS_WORKER_POOL_SIZE", "1"),
        ("WS_SEND_QUEUE_BYTES", "4194304"),
        ("WS_MAX_MESSAGE_SIZE", "1048576"),
    ]);
    s.wait_nats("connected");
    let mut c = s.client();
    nats.signal(libc::SIGSTOP);
    // 40 MB: more than the socket buffers and the 8 MiB queue together.
    let data = format!("\"{}\"", "x".repeat(200_000));
    let mut refused = None;
    for _ in 0..200 {
        let reply = s.publish("odin.x", &data);
        assert!([202, 503].contains(&reply.status), "{reply:?}");
        if reply.status == 503 {
            refused = Some(reply);
        }
    }
    let refused = refused.expect("the queue filled up");
    assert!(refused.head.contains("Retry-After"), "{refused:?}");
    send(&mut c, "{\"type\":\"ping\",\"id\":1}");
    assert_eq!(read_json(&mut c)["type"], "pong");
    assert!(s.metric("odin_ws_publish_lost_total{reason=\"queue_full\"}") > 0.0);
    nats.signal(libc::SIGCONT);
    wait_for("the publish queue to drain", || {
        s.metric("odin_ws_publish_queue") == 0.0
    });
}
