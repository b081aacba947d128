//! Helpers for the reactor's unit tests: a real `Shared` built from a real
//! `Config`, connections over an in-memory `Wire` instead of a socket, client
//! frames in, decoded replies out.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use mio::{Poll, Waker};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role, WebSocketContext};

use super::WAKE_TOKEN;
use super::accounting::SocketCount;
use super::conn::{Conn, State};
use super::effect::{Context, Effects};
use super::http_conn;
use crate::config::Config;
use crate::shared::{Shared, WorkerHandle};

/// A configuration from the defaults plus `env` (name, value) pairs.
pub fn test_config(env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(&[], &env).expect("a valid test configuration")
}

/// Shared state for one worker (worker 0) with `env` applied to the defaults.
pub fn test_shared(env: &[(&str, &str)]) -> Arc<Shared> {
    let poll = Poll::new().expect("an epoll instance");
    let handle = WorkerHandle {
        waker: Waker::new(poll.registry(), WAKE_TOKEN).expect("an eventfd"),
        inbox: Mutex::new(Vec::new()),
        load: Default::default(),
        queued_bytes: Default::default(),
        ring_lag: Default::default(),
        write_hold_us: Default::default(),
    };
    Arc::new(Shared::new(test_config(env), vec![handle], "test".into()))
}

/// A context for handlers, at a fixed `now` the test may move.
pub fn test_context(env: &[(&str, &str)]) -> Context {
    Context::new(test_shared(env), 1)
}

/// A fresh connection (counted in, as the acceptor and worker would) whose
/// peer has sent `input`.
pub fn test_conn(ctx: &Context, input: Vec<u8>) -> Conn<Wire> {
    SocketCount::hand_off(&ctx.shared, 0);
    let count = SocketCount::take_over(&ctx.shared, 0);
    Conn::new(Wire::new(input), count, ctx.now, ctx.cfg.handshake_timeout)
}

/// An upgraded connection on WS_PATH, its 101 and welcome already taken.
pub fn open_websocket(ctx: &Context) -> Conn<Wire> {
    let mut conn = test_conn(ctx, upgrade_request("/ws", ""));
    http_conn::on_readable(&mut conn, ctx, &mut Effects::new());
    assert!(matches!(conn.state, State::Ws(_)), "upgrade refused");
    conn.sent_bytes();
    conn
}

/// A valid upgrade request for `path` with `extra_headers` ("Name: value\r\n" each).
pub fn upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    )
    .into_bytes()
}

/// A masked client data frame, as a browser would send it.
pub fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    masked(Frame::message(payload.to_vec(), opcode, true))
}

/// A client close frame with code 1000.
pub fn client_close() -> Vec<u8> {
    masked(Frame::close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
}

fn masked(mut frame: Frame) -> Vec<u8> {
    frame.header_mut().mask = Some([0x12, 0x34, 0x56, 0x78]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).expect("writing to a Vec");
    bytes
}

/// A client text frame.
pub fn client_text(text: &str) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Text), text.as_bytes())
}

/// The socket's far end: hands out `input`, then would block, or reads EOF
/// once hung up.
pub struct Wire {
    input: Vec<u8>,
    read: usize,
    hung_up: bool,
}

impl Wire {
    pub fn new(input: Vec<u8>) -> Wire {
        Wire {
            input,
            read: 0,
            hung_up: false,
        }
    }

    /// More bytes from the peer.
    pub fn give(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    pub fn hang_up(&mut self) {
        self.hung_up = true;
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.read..];
        if left.is_empty() {
            return if self.hung_up {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S> Conn<S> {
    /// Takes everything queued for the peer, as bytes.
    pub fn sent_bytes(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.send
            .flush(&mut bytes, usize::MAX)
            .expect("writing to a Vec");
        bytes
    }

    /// Takes the frames queued for the peer (after an HTTP head, if any),
    /// decoded by a client-side tungstenite.
    pub fn sent_messages(&mut self) -> Vec<Message> {
        let bytes = self.sent_bytes();
        let frames = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) if bytes.starts_with(b"HTTP/") => bytes[end + 4..].to_vec(),
            _ => bytes,
        };
        let mut client = WebSocketContext::new(Role::Client, None);
        let mut wire = Wire::new(frames);
        let mut messages = Vec::new();
        loop {
            match client.read(&mut wire) {
                Ok(msg) => messages.push(msg),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return messages;
                }
                Err(tungstenite::Error::ConnectionClosed) => return messages,
                Err(e) => panic!("the server sent a bad frame: {e}"),
            }
        }
    }

    /// The JSON of every text frame queued for the peer.
    pub fn sent_json(&mut self) -> Vec<serde_json::Value> {
        self.sent_messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Text(text) => Some(serde_json::from_str(&text).expect("JSON replies")),
                _ => None,
            })
            .collect()
    }
}
