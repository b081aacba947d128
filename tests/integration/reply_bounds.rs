//! A client that never reads cannot grow the server: its replies, error frames
//! and pongs count against WS_SEND_QUEUE_BYTES like broadcasts, it stops being
//! read past the bound and is closed with 1008, while others receive on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::hardening::publisher;
use crate::raw::{RawWs, frame_bytes};
use crate::support::*;

/// Growth of the server's resident memory a hostile client may cause.
const RSS_BOUND: u64 = 20 << 20;

/// The server's resident memory, from /proc.
fn rss(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .expect("a VmRSS line");
    kb.trim().parse::<u64>().unwrap() * 1024
}

fn assert_rss_within(s: &Server, base: u64, what: &str) {
    let now = rss(s);
    assert!(
        now < base + RSS_BOUND,
        "RSS grew by {} MB {what}",
        (now.saturating_sub(base)) >> 20
    );
}

/// A metric's value, 0 when the server does not have it.
fn metric_or_zero(s: &Server, name: &str) -> f64 {
    let body = s.get("/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// A raw client that never reads, with a small receive window so the kernel
/// holds little of what the server sends it.
fn non_reader(s: &Server) -> RawWs {
    let mut ws = RawWs::open(s.port, "/ws");
    assert_eq!(ws.next_json()["type"], "welcome");
    setsockopt(&ws.stream, libc::SOL_SOCKET, libc::SO_RCVBUF, &4096i32);
    ws.stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    ws
}

/// About 56 KB: a 30 KB id and 3,016 invalid channels (16 of them long).
fn hostile_subscribe() -> String {
    let mut channels: Vec<String> = (0..16).map(|i| format!("{i:060} x")).collect();
    channels.extend((0..3000).map(|i| format!("{i} x")));
    let id = "i".repeat(30_000);
    serde_json::json!({"type": "subscribe", "channels": channels, "id": id}).to_string()
}

/// Readers of `feed.*` on their own threads, each checking that `feed.tick`
/// counts up from 0 without a gap until a message with `"last":true`; each
/// returns how many it got.
fn gapless_readers(s: &Server, n: usize) -> Vec<std::thread::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let mut c = s.client();
            subscribe(&mut c, &["feed.*"]);
            std::thread::spawn(move || {
                for want in 0.. {
                    let msg = read_json(&mut c);
                    assert_eq!(msg["data"]["n"], want, "a reader missed one");
                    if msg["data"]["last"] == true {
                        return want + 1;
                    }
                }
                unreachable!()
            })
        })
        .collect()
}

/// Waits until the server answered `sent` requests or stopped reading the
/// client; whether it stopped.
fn answered_or_paused(s: &Server, sent: f64) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if metric_or_zero(s, "odin_ws_reads_paused_total") >= 1.0 {
            return true;
        }
        let errors = metric_or_zero(s, "odin_ws_client_errors_total{code=\"invalid_channel\"}");
        if errors >= sent {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "the server neither answered nor paused"
        );
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

#[test]
fn subscribe_floods_from_a_client_that_never_reads_cost_bounded_memory_and_a_1008() {
    let _heavy = heavy();
    let s = Server::start(&[
        ("WS_SEND_QUEUE_BYTES", "131072"),
        ("WS_CLIENT_MSG_RATE", "1000"),
    ]);
    let readers = gapless_readers(&s, 10);
    let stop = Arc::new(AtomicBool::new(false));
    let feed = publisher(s.port, Arc::clone(&stop));
    let base = rss(&s);
    let mut hostile = non_reader(&s);
    let request = hostile_subscribe();
    assert!(request.len() > 50_000 && request.len() < 65_536);
    let mut sent = 0;
    let paused = loop {
        if hostile.try_send_text(&request).is_err() {
            break true; // the server no longer takes its input
        }
        sent += 1;
        let paused = answered_or_paused(&s, sent as f64);
        assert_rss_within(&s, base, &format!("after {sent} requests"));
        if paused || sent == 2000 {
            break paused;
        }
    };
    assert!(
        paused,
        "still read after {sent} requests nobody read the answers of"
    );
    // Still not reading when its grace ends: closed. (Reading before would
    // drain the queue, and the connection would be read again.)
    wait_for("the reply backlog close", || {
        metric_or_zero(&s, "odin_ws_reply_backlog_closes_total") == 1.0
    });
    // It reads at last, at full speed: what the kernel holds, then the close.
    setsockopt(
        &hostile.stream,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        &(1i32 << 20),
    );
    assert_eq!(hostile.close_code(), Some(1008));
    assert_rss_within(&s, base, "after the close");
    stop.store(true, Ordering::Relaxed);
    let published = feed.join().unwrap();
    assert!(published > 0);
    let last = format!("{{\"n\":{published},\"last\":true}}");
    assert_eq!(s.publish("feed.tick", &last).status, 202);
    for reader in readers {
        assert_eq!(reader.join().unwrap(), published + 1);
    }
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_is_closed_with_1008() {
    let s = Server::start(&[]);
    let base = rss(&s);
    let mut hostile = non_reader(&s);
    let ping = frame_bytes(0x89, &[b'p'; 125], true);
    let batch: Vec<u8> = ping.repeat(1000);
    let mut batches = 0;
    // 400,000 pings: 50 MB of pongs if each were queued. Writes go on after
    // the close: a closing connection's input is read and discarded a while.
    while batches < 400 && std::io::Write::write_all(&mut hostile.stream, &batch).is_ok() {
        batches += 1;
        assert_rss_within(&s, base, &format!("after {batches}000 pings"));
    }
    assert_rss_within(&s, base, "after the flood");
    assert_eq!(hostile.close_code(), Some(1008));
    assert_eq!(s.metric("odin_ws_protocol_closes_total"), 1.0);
    // The server lives on for others.
    let mut c = s.client();
    send(&mut c, r#"{"type":"ping","id":1}"#);
    assert_eq!(read_json(&mut c)["type"], "pong");
}

#[test]
fn one_error_frame_per_request_names_the_bad_channels_capped() {
    let s = Server::start(&[("WS_MAX_SUBSCRIPTIONS", "2")]);
    let mut c = s.client();
    let mut channels: Vec<String> = (0..40).map(|i| format!("bad {i}")).collect();
    channels.extend(["ok.a", "ok.b", "ok.c"].map(String::from));
    let id = format!("{:0200}", 7);
    let request = serde_json::json!({"type": "subscribe", "channels": channels, "id": id});
    send(&mut c, &request.to_string());
    let invalid = read_json(&mut c);
    assert_eq!(invalid["code"], "invalid_channel");
    let named: Vec<&str> = invalid["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        channels[..16]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(invalid["unlisted"], 24);
    assert_eq!(invalid["id_omitted"], true);
    let over = read_json(&mut c);
    assert_eq!(over["code"], "too_many_subscriptions");
    assert_eq!(over["channels"], serde_json::json!(["ok.c"]));
    let ack = read_json(&mut c);
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["channels"], serde_json::json!(["ok.a", "ok.b"]));
    send(&mut c, r#"{"type":"ping","id":2}"#);
    assert_eq!(
        read_json(&mut c)["id"],
        2,
        "nothing else came before the pong"
    );
    assert_eq!(
        s.metric("odin_ws_client_errors_total{code=\"invalid_channel\"}"),
        1.0
    );
    assert_eq!(s.metric("odin_ws_unlisted_channels_total"), 24.0);
}
