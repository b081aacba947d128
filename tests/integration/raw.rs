//! A raw WebSocket client that sends whatever bytes a test wants: bad frames,
//! unmasked frames, floods, half-written heads.

use std::io::Write;
use std::net::TcpStream;

use crate::support::{DEADLINE, read_head, read_more};

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Close(Option<u16>),
    Other(u8),
}

impl RawWs {
    /// Connects to `path` and completes the handshake.
    pub fn open(port: u16, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(upgrade_request(path).as_bytes()).unwrap();
        RawWs::from_stream(stream)
    }

    /// A socket that already sent its upgrade request: reads the 101 head.
    pub fn from_stream(stream: TcpStream) -> RawWs {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let end = read_head(&mut ws.stream, &mut ws.buf);
        assert!(
            ws.buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&ws.buf)
        );
        ws.buf.drain(..end);
        ws
    }

    fn fill(&mut self) -> bool {
        read_more(&mut self.stream, &mut self.buf)
    }

    /// Sends one frame: `first` is the first header byte (FIN, RSV, opcode).
    pub fn send_raw(&mut self, first: u8, payload: &[u8], masked: bool) {
        // The server may close mid-write on abuse; that is the point of some tests.
        let _ = self.stream.write_all(&frame_bytes(first, payload, masked));
    }

    /// Sends one masked text frame; an error when the server stopped taking
    /// input (a write timeout) or closed.
    pub fn try_send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.stream
            .write_all(&frame_bytes(0x81, text.as_bytes(), true))
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_raw(0x81, text.as_bytes(), true);
    }

    /// The next frame, or `None` once the server has closed the socket.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads past other frames to the close frame; its code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.read_frame()? {
                Frame::Close(code) => return code,
                _ => continue,
            }
        }
    }

    /// Reads past pings to the next text frame, as JSON.
    pub fn next_json(&mut self) -> serde_json::Value {
        loop {
            match self.read_frame().expect("a frame") {
                Frame::Text(t) => return serde_json::from_str(&t).unwrap(),
                Frame::Ping => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Parses one unmasked server frame.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = &buf[at..at + len];
    at += len;
    let frame = match opcode {
        1 => Frame::Text(String::from_utf8_lossy(payload).into_owned()),
        2 => Frame::Binary(payload.to_vec()),
        8 => Frame::Close((len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
        9 => Frame::Ping,
        other => Frame::Other(other),
    };
    Some((frame, at))
}

/// One frame as a client sends it: `first` is the first header byte.
pub fn frame_bytes(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x11, 0x22, 0x33, 0x44];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}
