//! permessage-deflate against the real binary: a raw client that offers it and
//! inflates what it gets with miniz_oxide, as a browser would with zlib: keeping
//! its window from message to message unless it asked the server not to rely on
//! it (`server_no_context_takeover`).

use std::io::Write;
use std::net::TcpStream;

use miniz_oxide::inflate::stream::InflateState;

use crate::raw::{KEY, frame_bytes};
use crate::support::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One server frame: its first header byte and payload, and for a data frame
/// its message's text (inflated when RSV1 says it is compressed).
struct Frame {
    first: u8,
    payload: Vec<u8>,
    text: String,
}

impl Frame {
    fn compressed(&self) -> bool {
        self.first & 0x40 != 0
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap()
    }
}

/// A client's inflate: a sync-flushed message has no final block, so the stream
/// is read until its input is used up rather than to its end. `state` is the
/// connection's, kept between messages (context takeover), or a fresh one.
fn client_inflate(
    state: &mut miniz_oxide::inflate::stream::InflateState,
    payload: &[u8],
) -> Vec<u8> {
    use miniz_oxide::inflate::stream::inflate;
    let mut body = payload.to_vec();
    body.extend_from_slice(&TAIL);
    let mut out = vec![0u8; 1 << 20];
    let r = inflate(state, &body, &mut out, miniz_oxide::MZFlush::Sync);
    assert!(r.status.is_ok(), "{:?}", r.status);
    assert_eq!(r.bytes_consumed, body.len());
    out.truncate(r.bytes_written);
    out
}

struct Deflating {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The 101's Sec-WebSocket-Extensions value.
    extensions: Option<String>,
    /// The window kept between messages, unless the answer said the server
    /// keeps none (then each message is inflated in a fresh one).
    window: Option<Box<miniz_oxide::inflate::stream::InflateState>>,
}

impl Deflating {
    fn open(port: u16, offer: Option<&str>) -> Deflating {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut c = Deflating {
            stream,
            buf: Vec::new(),
            extensions: None,
            window: None,
        };
        let end = read_head(&mut c.stream, &mut c.buf);
        let head = String::from_utf8_lossy(&c.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        c.extensions = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
            .map(str::to_string);
        c.buf.drain(..end);
        let fresh = c
            .extensions
            .as_deref()
            .is_some_and(|e| e.contains("server_no_context_takeover"));
        if !fresh {
            c.window = Some(InflateState::new_boxed(miniz_oxide::DataFormat::Raw));
        }
        c
    }

    fn fill(&mut self) -> bool {
        read_more(&mut self.stream, &mut self.buf)
    }

    fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let first = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    let text = if first & 0x40 == 0 {
                        payload.clone()
                    } else if let Some(window) = &mut self.window {
                        client_inflate(window, &payload)
                    } else {
                        let mut fresh = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
                        client_inflate(&mut fresh, &payload)
                    };
                    let text = String::from_utf8_lossy(&text).into_owned();
                    return Some(Frame {
                        first,
                        payload,
                        text,
                    });
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Past the welcome, subscribes to `channel` and waits for the ack.
    fn subscribe(&mut self, channel: &str) {
        self.data();
        let sub = format!(r#"{{"type":"subscribe","channels":["{channel}"]}}"#);
        self.stream
            .write_all(&frame_bytes(0x81, sub.as_bytes(), true))
            .unwrap();
        assert_eq!(self.data().json()["type"], "subscribed");
    }

    /// The next data frame, past pings.
    fn data(&mut self) -> Frame {
        loop {
            let f = self.frame().expect("a frame");
            if f.first & 0x0f != 0x9 {
                return f;
            }
        }
    }

    /// Sends `text` as one compressed, masked text message.
    fn send_compressed(&mut self, text: &[u8]) {
        // compress_to_vec ends the stream with a final block (BFINAL), which
        // RFC 7692 section 7.2.3.3 allows: the receiver's tail is then unused.
        let body = miniz_oxide::deflate::compress_to_vec(text, 6);
        let _ = self.stream.write_all(&frame_bytes(0xc1, &body, true));
    }

    fn close_code(&mut self) -> Option<u16> {
        loop {
            let f = self.frame()?;
            if f.first & 0x0f == 0x8 {
                return Some(u16::from_be_bytes([f.payload[0], f.payload[1]]));
            }
        }
    }
}

/// A market-data JSON payload of about `n` quotes.
fn quotes(n: usize) -> String {
    let q: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"sym":"ETH-USD","bid":{}.5,"ask":{}.7,"size":{}}}"#,
                3000 + i % 5,
                3000 + i % 5,
                i % 9
            )
        })
        .collect();
    format!("[{}]", q.join(","))
}

#[test]
fn compressed_broadcasts_are_decoded_and_built_once_for_every_subscriber() {
    let server = Server::start(&[]);
    let mut clients: Vec<Deflating> = (0..3)
        .map(|_| Deflating::open(server.port, Some(OFFER)))
        .collect();
    let mut plain = Deflating::open(server.port, None);
    assert_eq!(plain.extensions, None);
    let sub = r#"{"type":"subscribe","channels":["md.eth"]}"#;
    for c in clients.iter_mut().chain([&mut plain]) {
        assert!(
            !c.data().compressed(),
            "the welcome is a reply: uncompressed"
        );
        c.stream
            .write_all(&frame_bytes(0x81, sub.as_bytes(), true))
            .unwrap();
        assert_eq!(c.data().json()["type"], "subscribed");
    }
    assert_eq!(
        clients[0].extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    wait_for("compressing connections", || {
        server.metric("odin_ws_compressing_connections") == 3.0
    });
    let big = quotes(50);
    assert_eq!(server.publish("md.eth", &big).status, 202);
    assert_eq!(server.publish("md.eth", "1").status, 202);
    let want: serde_json::Value = serde_json::from_str(&big).unwrap();
    for c in &mut clients {
        let f = c.data();
        assert!(f.compressed());
        assert!(
            f.payload.len() * 3 < big.len(),
            "{} of {}",
            f.payload.len(),
            big.len()
        );
        let msg = f.json();
        assert_eq!((&msg["channel"], &msg["data"]), (&"md.eth".into(), &want));
        let small = c.data();
        assert!(!small.compressed(), "under WS_COMPRESSION_MIN_BYTES");
        assert_eq!(small.json()["data"], 1);
    }
    let f = plain.data();
    assert!(!f.compressed());
    assert_eq!(f.json()["data"], want);
    assert_eq!(server.metric("odin_ws_compressed_frames_total"), 1.0);
    let (inb, outb) = (
        server.metric("odin_ws_compression_bytes_in_total"),
        server.metric("odin_ws_compression_bytes_out_total"),
    );
    assert!(outb > 0.0 && outb * 3.0 < inb, "{inb} -> {outb}");
    drop(clients);
    wait_for("compressing connections gone", || {
        server.metric("odin_ws_compressing_connections") == 0.0
    });
}

#[test]
fn a_compressed_request_is_inflated_and_answered() {
    let server = Server::start(&[]);
    let mut c = Deflating::open(server.port, Some(OFFER));
    c.data();
    c.send_compressed(br#"{"type":"ping","id":42}"#);
    let pong = c.data().json();
    assert_eq!((&pong["type"], &pong["id"]), (&"pong".into(), &42.into()));
    assert_eq!(server.metric("odin_ws_inflated_messages_total"), 1.0);
}

#[test]
fn a_message_inflating_past_the_limit_closes_with_1009() {
    let server = Server::start(&[("WS_MAX_MESSAGE_SIZE", "1024")]);
    let mut c = Deflating::open(server.port, Some(OFFER));
    c.data();
    // 1 MiB of spaces deflates to about a kilobyte: a small bomb.
    let mut bomb = br#"{"type":"ping","pad":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 1 << 20));
    c.send_compressed(&bomb);
    assert_eq!(c.close_code(), Some(1009));
}

#[test]
fn compression_off_declines_every_offer() {
    let server = Server::start(&[("WS_COMPRESSION", "off")]);
    let mut c = Deflating::open(server.port, Some(OFFER));
    assert_eq!(c.extensions, None);
    assert!(!c.data().compressed());
    assert_eq!(server.publish("x", &quotes(50)).status, 202);
    assert_eq!(server.metric("odin_ws_compressing_connections"), 0.0);
}

/// Consecutive messages of a channel: the second goes as the copy deflated after
/// the first (smaller, built once for every subscriber whose window ends with
/// the first) to clients that keep their window, and deflated alone to a client
/// that asked the server not to rely on it; every client reads them all.
#[test]
fn a_channel_s_next_message_goes_chained_to_clients_that_keep_their_window() {
    let server = Server::start(&[]);
    let no_takeover = "permessage-deflate; server_no_context_takeover";
    let mut keeping: Vec<Deflating> = (0..3)
        .map(|_| Deflating::open(server.port, Some(OFFER)))
        .collect();
    let mut fresh = Deflating::open(server.port, Some(no_takeover));
    assert_eq!(
        fresh.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    for c in keeping.iter_mut().chain([&mut fresh]) {
        c.subscribe("md.eth");
    }
    let (first, second) = (quotes(50), quotes(51));
    assert_eq!(server.publish("md.eth", &first).status, 202);
    assert_eq!(server.publish("md.eth", &second).status, 202);
    let want = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let mut lens = Vec::new();
    for c in keeping.iter_mut().chain([&mut fresh]) {
        let (a, b) = (c.data(), c.data());
        assert!(a.compressed() && b.compressed());
        assert_eq!(a.json()["data"], want(&first));
        assert_eq!(b.json()["data"], want(&second));
        lens.push((a.payload.len(), b.payload.len()));
    }
    let (alone, chained) = lens[0];
    assert!(chained * 4 < alone, "chained {chained} vs alone {alone}");
    assert!(lens[..3].iter().all(|l| *l == lens[0]), "{lens:?}");
    assert!(lens[3].1 > chained * 4, "deflated alone: {lens:?}");
    assert_eq!(
        server.metric("odin_ws_compressed_chained_frames_total"),
        1.0
    );
    assert_eq!(server.metric("odin_ws_compressed_frames_total"), 3.0);
}

/// WS_COMPRESSION_CHAIN=off: every client is told the server keeps no context,
/// and consecutive messages each inflate on their own.
#[test]
fn chaining_off_answers_no_context_takeover_and_sends_each_message_alone() {
    let server = Server::start(&[("WS_COMPRESSION_CHAIN", "off")]);
    let mut c = Deflating::open(server.port, Some(OFFER));
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    c.subscribe("md.eth");
    let (first, second) = (quotes(50), quotes(51));
    assert_eq!(server.publish("md.eth", &first).status, 202);
    assert_eq!(server.publish("md.eth", &second).status, 202);
    assert_eq!(c.data().json()["data"].as_array().unwrap().len(), 50);
    assert_eq!(c.data().json()["data"].as_array().unwrap().len(), 51);
    assert_eq!(
        server.metric("odin_ws_compressed_chained_frames_total"),
        0.0
    );
}
