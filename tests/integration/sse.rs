//! Server-Sent Events over a raw TcpStream reader: the `subscribed` event first,
//! messages with `id: <epoch>:<seq>`, resume with `Last-Event-ID` or `since=`,
//! snapshots, 400s before the stream, keep-alives, the drain, and a reader that
//! never reads held to its bound, then dropped after WS_IDLE_TIMEOUT.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use crate::support::*;

/// One parsed event: (id, event, data).
type Event = (Option<String>, String, String);

/// An SSE client: the request sent, its answer's head read, events parsed.
pub(crate) struct Stream {
    reader: BufReader<TcpStream>,
    pub head: String,
}

impl Stream {
    pub(crate) fn open(s: &Server, query: &str, extra: &str) -> Stream {
        let (_, head, reader) = sse_request(s.port, query, extra);
        Stream { reader, head }
    }

    /// The next line, without its `\n`; None at the end of the stream.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
            Err(e) => panic!("reading the stream: {e}"),
        }
    }

    /// The next event (comments skipped); None at the end of the stream.
    fn event(&mut self) -> Option<Event> {
        let (mut id, mut kind, mut data) = (None, String::new(), Vec::new());
        loop {
            let line = self.line()?;
            if line.is_empty() {
                if kind.is_empty() && data.is_empty() {
                    continue;
                }
                return Some((id, kind, data.join("\n")));
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
            match field {
                "id" => id = Some(value.to_string()),
                "event" => kind = value.to_string(),
                "data" => data.push(value.to_string()),
                other => panic!("unexpected field {other}"),
            }
        }
    }

    pub(crate) fn expect(&mut self, kind: &str) -> (Option<String>, serde_json::Value) {
        let (id, k, data) = self.event().expect("an event");
        assert_eq!(k, kind, "{data}");
        (id, serde_json::from_str(&data).expect("JSON data"))
    }
}

fn publish_n(s: &Server, channel: &str, n: i64) {
    assert_eq!(s.publish(channel, &format!("{{\"n\":{n}}}")).status, 202);
}

#[test]
fn a_stream_gets_its_subscribed_event_then_matching_messages_with_ids() {
    let s = Server::start(&[]);
    let mut st = Stream::open(&s, "channels=px.a,token.*.price", "");
    assert!(st.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", st.head);
    assert!(st.head.contains("Content-Type: text/event-stream\r\n"));
    assert!(st.head.contains("Cache-Control: no-cache\r\n"));
    assert!(st.head.contains("Access-Control-Allow-Origin: *\r\n"));
    let (id, ack) = st.expect("subscribed");
    assert_eq!(id, None);
    assert_eq!(
        ack["channels"],
        serde_json::json!(["px.a", "token.*.price"])
    );
    assert_eq!(s.metric("odin_ws_sse_clients"), 1.0);
    publish_n(&s, "other", 0);
    publish_n(&s, "px.a", 1);
    publish_n(&s, "token.BTC.price", 2);
    let epoch = s.client_epoch();
    for n in [1, 2] {
        let (id, m) = st.expect("message");
        assert_eq!(m["type"], "message");
        assert_eq!(m["data"]["n"], n, "only matching messages");
        assert_eq!(id.unwrap(), format!("{epoch}:{}", m["seq"]));
    }
    assert_eq!(s.metric("odin_ws_sse_connections_total"), 1.0);
}

#[test]
fn last_event_id_resumes_with_no_gap_and_no_duplicate_while_messages_flow() {
    let s = std::sync::Arc::new(Server::start(&[]));
    let mut st = Stream::open(&s, "channels=race", "");
    st.expect("subscribed");
    publish_n(&s, "race", 0);
    let (id, _) = st.expect("message");
    let last_id = id.unwrap();
    drop(st);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (s, done) = (std::sync::Arc::clone(&s), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let mut n = 1;
            while !done.load(std::sync::atomic::Ordering::Relaxed) && n < 400 {
                publish_n(&s, "race", n);
                n += 1;
            }
            n
        })
    };
    // A browser reconnects with its first URL (since= too) and Last-Event-ID.
    let mut st = Stream::open(
        &s,
        "channels=race&since=stale:0",
        &format!("Last-Event-ID: {last_id}\r\n"),
    );
    let (_, ack) = st.expect("subscribed");
    assert_eq!(ack["recovered"], true, "{ack}");
    let mut seen = vec![0];
    while seen.len() < 100 {
        let (_, m) = st.expect("message");
        seen.push(m["data"]["n"].as_i64().unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    assert_eq!(
        seen,
        (0..100).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
}

#[test]
fn since_in_the_query_and_snapshot_catch_up() {
    let s = Server::start(&[]);
    for n in 0..3 {
        publish_n(&s, "q.a", n);
    }
    publish_n(&s, "q.b", 10);
    let epoch = s.client_epoch();
    let mut st = Stream::open(&s, "channels=q.*&snapshot=1", "");
    st.expect("subscribed");
    let mut snap: Vec<i64> = (0..2)
        .map(|_| {
            let (id, m) = st.expect("message");
            assert!(id.is_some());
            assert_eq!(m["snapshot"], true, "{m}");
            m["data"]["n"].as_i64().unwrap()
        })
        .collect();
    snap.sort();
    assert_eq!(snap, [2, 10], "the latest of each channel");
    let mut st = Stream::open(&s, &format!("channels=q.a&since={epoch}:1"), "");
    let (_, ack) = st.expect("subscribed");
    assert_eq!(ack["recovered"], true, "{ack}");
    let replay: Vec<i64> = (0..2)
        .map(|_| st.expect("message").1["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(replay, [1, 2]);
    let mut st = Stream::open(&s, "channels=q.a&since=other:1", "");
    let (_, ack) = st.expect("subscribed");
    assert_eq!(
        (&ack["recovered"], &ack["reason"]),
        (
            &serde_json::json!(false),
            &serde_json::json!("epoch_changed")
        )
    );
}

#[test]
fn bad_requests_are_refused_before_the_stream() {
    let s = Server::start(&[("WS_MAX_SUBSCRIPTIONS", "2")]);
    for (query, code) in [
        ("channels=a..b", "invalid_channel"),
        ("", "invalid_channel"),
        ("channels=a,b,c", "too_many_subscriptions"),
    ] {
        let r = s.get(&format!("/sse?{query}"));
        assert_eq!(r.status, 400, "{query}: {r:?}");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["code"], code, "{query}");
    }
    assert_eq!(s.metric("odin_ws_sse_connections_total"), 0.0);
}

#[test]
fn an_idle_stream_gets_keep_alive_comments() {
    let s = Server::start(&[("WS_PING_INTERVAL", "200ms")]);
    let mut st = Stream::open(&s, "channels=idle", "");
    st.expect("subscribed");
    wait_for("a keep-alive comment", || {
        st.line().expect("the stream stays open") == ": keep-alive"
    });
}

#[test]
fn the_drain_ends_streams_and_health_says_draining() {
    let mut s = Server::start(&[("WS_SHUTDOWN_GRACE", "2s")]);
    let mut st = Stream::open(&s, "channels=d", "");
    st.expect("subscribed");
    s.signal(libc::SIGTERM);
    wait_for("/health to answer 503 draining", || {
        let r = s.get("/health");
        r.status == 503 && r.body.contains("\"draining\"")
    });
    assert_eq!(s.get("/sse?channels=d").status, 503, "no new streams");
    assert!(st.event().is_none(), "the stream ends");
    assert_eq!(s.wait_exit(), Some(0));
}

/// A stream on `channels` whose socket, with a small receive buffer, this test
/// never reads; returned once the server counts it.
fn unread_stream(s: &Server, channels: &str) -> TcpStream {
    let sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let size: libc::c_int = 4096;
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
    write!(
        &sock,
        "GET /sse?channels={channels} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    wait_for("the stream to open", || {
        s.metric("odin_ws_sse_clients") == 1.0
    });
    sock
}

#[test]
fn a_reader_that_never_reads_is_held_to_its_bound() {
    let _heavy = heavy();
    let s = Server::start(&[
        ("WS_SEND_QUEUE_BYTES", "65536"),
        ("WS_SLOW_CLIENT_POLICY", "conflate"),
    ]);
    let sock = unread_stream(&s, "slow.*");
    let data = format!("\"{}\"", "x".repeat(1000));
    let mut n = 0;
    wait_for("the policy to conflate", || {
        for _ in 0..50 {
            s.publish(&format!("slow.{}", n % 20), &data);
            n += 1;
        }
        s.metric("odin_ws_drops_total{reason=\"conflated\"}") > 0.0
    });
    let queued = s.metric("odin_ws_send_queue_bytes");
    assert!(queued <= 2.0 * 65536.0, "{queued} bytes queued");
    drop(sock);
}

#[test]
fn a_reader_that_stops_reading_is_dropped_after_the_idle_timeout() {
    let _heavy = heavy();
    let s = Server::start(&[
        ("WS_SEND_QUEUE_BYTES", "65536"),
        ("WS_PING_INTERVAL", "300ms"),
        ("WS_IDLE_TIMEOUT", "1s"),
    ]);
    let mut sock = unread_stream(&s, "stall.*");
    // A reader that keeps up is not dropped: this idle one, opened before the
    // stalled one, lives on past the stalled one's end.
    let mut live = Stream::open(&s, "channels=calm", "");
    live.expect("subscribed");
    let data = format!("\"{}\"", "x".repeat(1000));
    let mut n = 0;
    wait_for("the stalled stream to be dropped", || {
        for _ in 0..20 {
            s.publish(&format!("stall.{}", n % 20), &data);
            n += 1;
        }
        s.metric("odin_ws_sse_clients") == 1.0
    });
    assert_eq!(s.metric("odin_ws_slow_consumer_closes_total"), 1.0);
    for _ in 0..3 {
        wait_for("a keep-alive on the live stream", || {
            live.line().expect("the live stream stays open") == ": keep-alive"
        });
    }
    publish_n(&s, "calm", 7);
    assert_eq!(live.expect("message").1["data"]["n"], 7);
    // The dropped stream's socket is closed: once its buffers are read, EOF.
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    assert!(
        std::io::Read::read_to_end(&mut sock, &mut rest).is_ok(),
        "the server closes the socket"
    );
}
