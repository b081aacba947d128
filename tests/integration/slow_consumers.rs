//! Slow consumers under each WS_SLOW_CLIENT_POLICY: 500 clients never read while
//! 1,000 others read at 25 msg/s. The readers lose nothing, memory stays bounded,
//! and the policy's outcome is counted.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::raw::upgrade_request;
use crate::support::*;

const READERS: usize = 1000;
const STALLED: usize = 500;
const MESSAGES: i64 = 150;
const RATE_PER_S: u64 = 25;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A reading client with a deep receive buffer: a test reader starved of CPU
/// for a moment must not turn into a slow consumer itself.
fn reader(port: u16) -> Client {
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    set_receive_buffer(&sock, 4 << 20);
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut c, _) = tungstenite::client(
        url.as_str(),
        tungstenite::stream::MaybeTlsStream::Plain(sock),
    )
    .unwrap_or_else(|e| panic!("handshake: {e}"));
    assert_eq!(read_json(&mut c)["type"], "welcome");
    subscribe(&mut c, &["feed.tick"]);
    c
}

/// A client that upgrades and then never reads, with a small receive buffer so
/// the server's queue is what fills.
fn stalled(port: u16) -> TcpStream {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    set_receive_buffer(&sock, 4096);
    sock.write_all(upgrade_request("/ws").as_bytes()).unwrap();
    sock.write_all(&masked_subscribe()).unwrap();
    sock
}

fn set_receive_buffer(sock: &TcpStream, size: libc::c_int) {
    setsockopt(sock, libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
}

/// `{"type":"subscribe","channels":["feed.tick"]}` as a masked client frame.
fn masked_subscribe() -> Vec<u8> {
    let payload = br#"{"type":"subscribe","channels":["feed.tick"]}"#;
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    frame
}

/// `n` and `ts_us` of the next message, found without a full JSON parse: 1,000
/// readers in a debug build must keep up on two cores.
fn read_tick(c: &mut Client) -> (i64, u64) {
    let text = loop {
        match c.read().expect("read a frame") {
            tungstenite::Message::Text(t) => break t,
            tungstenite::Message::Ping(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    };
    let field = |name: &str| -> &str {
        let start = text
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            + name.len();
        let rest = &text[start..];
        &rest[..rest.find([',', '}']).unwrap()]
    };
    (
        field("\"n\":").parse().unwrap(),
        field("\"ts_us\":").parse().unwrap(),
    )
}

/// Returns the server, the close code the late stalled client read (if any), and
/// the connections still open when publishing ended.
fn run_policy(policy: &str) -> (Server, Option<u16>, usize) {
    let _heavy = heavy();
    let s = Server::start(&[
        ("WS_SLOW_CLIENT_POLICY", policy),
        ("WS_SEND_QUEUE_BYTES", "16384"),
    ]);
    let readers: Vec<Client> = (0..READERS).map(|_| reader(s.port)).collect();
    let mut stalled: Vec<TcpStream> = (0..STALLED).map(|_| stalled(s.port)).collect();
    wait_for("every client connected", || {
        s.health()["connections"] == READERS + STALLED
    });
    // One stalled client wakes up as soon as the first slow consumer is closed
    // and reads what it was sent, to its close frame (if it gets one).
    let late = crate::raw::RawWs::from_stream(stalled.pop().unwrap());
    let port = s.port;
    let expect_close = policy == "disconnect";
    let late_reader = std::thread::spawn(move || {
        if !expect_close {
            return (None, late);
        }
        let mut late = late;
        let closes = || {
            let body = http(port, b"GET /metrics HTTP/1.1\r\n\r\n").body;
            body.lines()
                .any(|l| l.starts_with("odin_ws_slow_consumer_closes_total ") && !l.ends_with(" 0"))
        };
        let deadline = Instant::now() + DEADLINE;
        while !closes() && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        // Waking up, it reads with a normal buffer.
        set_receive_buffer(&late.stream, 1 << 20);
        (late.close_code(), late)
    });

    let port = s.port;
    let publisher = std::thread::spawn(move || {
        let pad = "x".repeat(2000);
        let start = Instant::now();
        for n in 0..MESSAGES {
            let due = start + Duration::from_micros(n as u64 * 1_000_000 / RATE_PER_S);
            std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
            let body = format!(
                "{{\"channel\":\"feed.tick\",\"data\":{{\"n\":{n},\"ts_us\":{},\"pad\":\"{pad}\"}}}}",
                now_us()
            );
            let req = format!(
                "POST /publish HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            assert_eq!(http(port, req.as_bytes()).status, 202);
        }
    });

    let (latencies, _readers): (Vec<Vec<u64>>, Vec<Vec<Client>>) = std::thread::scope(|scope| {
        let mut chunks: Vec<Vec<Client>> = (0..4).map(|_| Vec::new()).collect();
        for (i, c) in readers.into_iter().enumerate() {
            chunks[i % 4].push(c);
        }
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|mut chunk| {
                scope.spawn(move || {
                    let mut lat = Vec::new();
                    for want in 0..MESSAGES {
                        for c in &mut chunk {
                            let (n, ts_us) = read_tick(c);
                            assert_eq!(n, want, "a reader lost a message");
                            lat.push(now_us().saturating_sub(ts_us));
                        }
                    }
                    (lat, chunk)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    publisher.join().unwrap();
    let (late_close, _late) = late_reader.join().unwrap();
    let connected = s.health()["connections"].as_u64().unwrap() as usize;
    let mut latencies: Vec<u64> = latencies.into_iter().flatten().collect();
    latencies.sort_unstable();
    let p99 = latencies[latencies.len() * 99 / 100];
    let rss = s.health()["memory_bytes"].as_u64().unwrap();
    eprintln!(
        "policy {policy}: readers' publish-to-read p99 {p99} us (for reference; speed is measured by scripts/bench), server RSS {rss} bytes"
    );
    // 1,500 connections with 16 KiB queues: far below this unless a queue is unbounded.
    assert!(rss < 200 << 20, "RSS {rss} bytes with {policy}");
    (s, late_close, connected)
}

#[test]
fn conflate_holds_the_newest_message_per_channel() {
    let (s, _, connected) = run_policy("conflate");
    assert_eq!(connected, READERS + STALLED, "conflate keeps slow clients");
    assert!(s.metric("odin_ws_drops_total{reason=\"conflated\"}") > 0.0);
    assert_eq!(s.metric("odin_ws_slow_consumer_closes_total"), 0.0);
}

#[test]
fn drop_oldest_drops_queued_messages() {
    let (s, _, connected) = run_policy("drop_oldest");
    assert_eq!(
        connected,
        READERS + STALLED,
        "drop_oldest keeps slow clients"
    );
    assert!(s.metric("odin_ws_drops_total{reason=\"drop_oldest\"}") > 0.0);
    assert_eq!(s.metric("odin_ws_slow_consumer_closes_total"), 0.0);
}

#[test]
fn disconnect_closes_every_stalled_client_with_1013() {
    let (s, late_close, connected) = run_policy("disconnect");
    assert_eq!(connected, READERS, "only the stalled clients were closed");
    wait_for("every stalled client closed", || {
        s.metric("odin_ws_slow_consumer_closes_total") >= (STALLED - 1) as f64
    });
    assert_eq!(late_close, Some(1013), "what was sent, then 1013");
}
