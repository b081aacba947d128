//! Client-side helpers shared by every test binary (integration, shipping,
//! load tool): a WebSocket client, raw HTTP, waiting with a deadline.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

pub fn connect(url: &str) -> Client {
    let (mut ws, _) = tungstenite::connect(url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    ws
}

/// The next text frame as JSON (pings are answered by tungstenite).
pub fn read_json(c: &mut Client) -> serde_json::Value {
    loop {
        match c.read().expect("read a frame") {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub fn send(c: &mut Client, json: &str) {
    c.send(Message::text(json)).expect("send");
}

/// Subscribes and waits for the ack.
pub fn subscribe(c: &mut Client, channels: &[&str]) {
    let req = serde_json::json!({"type": "subscribe", "channels": channels, "id": "s"});
    send(c, &req.to_string());
    let ack = read_json(c);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["channels"], serde_json::json!(channels));
}

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends raw bytes and reads the reply until the server closes.
pub fn http(port: u16, raw: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // A server that stopped reading fails the test instead of hanging it.
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    HttpReply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sets a socket option on a test socket.
pub fn setsockopt<T>(sock: &TcpStream, level: i32, name: i32, value: &T) {
    // SAFETY: setsockopt on a socket we own, with a value of the given size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        );
    }
}

/// Polls `check` until it holds or the deadline passes.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An empty directory under cargo's temporary directory for integration tests,
/// emptied again if an earlier run left it behind.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `sig` to a child process of the test.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Waits for a child to exit and returns its status code; `log` explains a timeout.
pub fn wait_exit(child: &mut Child, log: impl Fn() -> String) -> Option<i32> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "did not exit:\n{}", log());
        std::thread::park_timeout(Duration::from_millis(20));
    }
}
