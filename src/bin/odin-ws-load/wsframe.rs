//! The client side of RFC 6455, as little as a load client needs: the upgrade
//! request, masked frames out, unmasked frames in.

use crate::head;

/// A fixed key is fine for a load client; the answer is checked against it.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// base64(SHA-1(KEY + GUID)), from RFC 6455 section 1.3.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Longest upgrade answer head we accept.
pub const MAX_HEAD: usize = 8192;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The upgrade request, with a `Sec-WebSocket-Extensions` offer when given.
pub fn upgrade_request(host: &str, path: &str, extensions: Option<&str>) -> Vec<u8> {
    let offer = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// The answer to the upgrade request, once its head is complete.
#[derive(Debug, PartialEq)]
pub enum Upgrade {
    /// 101 with the right accept key: the head's length, whether the server
    /// agreed to permessage-deflate, and whether it may rely on the client's
    /// window between messages (it did not answer `server_no_context_takeover`).
    Switched {
        len: usize,
        deflate: bool,
        keeps_window: bool,
    },
    /// Any other status (503 when the server refuses new clients).
    Refused(u16),
    /// Not HTTP, or 101 without the right accept key.
    Invalid,
}

/// None while the head is incomplete.
pub fn parse_upgrade(buf: &[u8]) -> Option<Upgrade> {
    Some(match head::parse(buf)? {
        Err(_) => Upgrade::Invalid,
        Ok(h) if h.status != 101 => Upgrade::Refused(h.status),
        Ok(h) if h.header("Sec-WebSocket-Accept") == Some(ACCEPT.as_bytes()) => {
            let deflate = h.header_has("Sec-WebSocket-Extensions", "permessage-deflate");
            let no_takeover =
                h.header_has("Sec-WebSocket-Extensions", "server_no_context_takeover");
            Upgrade::Switched {
                len: h.len,
                deflate,
                keeps_window: deflate && !no_takeover,
            }
        }
        Ok(_) => Upgrade::Invalid,
    })
}

/// Appends one masked, final frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// One frame from the server.
#[derive(Debug, PartialEq)]
pub struct Frame<'a> {
    pub fin: bool,
    /// RSV1: with permessage-deflate, the first frame of a compressed message.
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq)]
pub enum Decoded<'a> {
    /// A frame and the bytes it took.
    Frame(Frame<'a>, usize),
    NeedMore,
    /// A masked server frame or a length beyond `max`.
    Invalid,
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8], max: usize) -> Decoded<'_> {
    if buf.len() < 2 {
        return Decoded::NeedMore;
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 != 0 {
        return Decoded::Invalid;
    }
    let (len, at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Decoded::NeedMore;
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Decoded::NeedMore;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            match usize::try_from(u64::from_be_bytes(b)) {
                Ok(l) => (l, 10),
                Err(_) => return Decoded::Invalid,
            }
        }
        l => (usize::from(l), 2),
    };
    if len > max {
        return Decoded::Invalid;
    }
    if buf.len() < at + len {
        return Decoded::NeedMore;
    }
    Decoded::Frame(
        Frame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload: &buf[at..at + len],
        },
        at + len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_answers() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\nxx"
        );
        let switched = Upgrade::Switched {
            len: ok.len() - 2,
            deflate: false,
            keeps_window: false,
        };
        assert_eq!(parse_upgrade(ok.as_bytes()), Some(switched));
        let deflate = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        let switched = Upgrade::Switched {
            len: deflate.len(),
            deflate: true,
            keeps_window: false,
        };
        assert_eq!(parse_upgrade(deflate.as_bytes()), Some(switched));
        let keeping = deflate.replace("; server_no_context_takeover", "");
        let switched = Upgrade::Switched {
            len: keeping.len(),
            deflate: true,
            keeps_window: true,
        };
        assert_eq!(parse_upgrade(keeping.as_bytes()), Some(switched));
        assert_eq!(parse_upgrade(b"HTTP/1.1 101 Sw"), None);
        assert_eq!(
            parse_upgrade(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Some(Upgrade::Refused(503))
        );
        assert_eq!(
            parse_upgrade(b"HTTP/1.1 101 x\r\nSec-WebSocket-Accept: nope\r\n\r\n"),
            Some(Upgrade::Invalid)
        );
    }

    #[test]
    fn masked_frames_round_trip_through_tungstenite_lengths() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            encode(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
            // Unmask and decode as a server frame would be read.
            let header = out.len() - len - 4;
            let mask = [
                out[header],
                out[header + 1],
                out[header + 2],
                out[header + 3],
            ];
            let mut plain = out[..header].to_vec();
            plain[1] &= 0x7f;
            plain.extend(
                out[header + 4..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4]),
            );
            match decode(&plain, 1 << 20) {
                Decoded::Frame(f, used) => {
                    assert_eq!(used, plain.len());
                    assert_eq!(f.payload, &payload[..]);
                    assert!(f.fin);
                    assert_eq!(f.opcode, OP_TEXT);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                decode(&plain[..plain.len() - 1], 1 << 20),
                Decoded::NeedMore
            );
        }
    }

    #[test]
    fn refuses_masked_or_oversized_server_frames() {
        assert_eq!(decode(&[0x81, 0x81, 0, 0, 0, 0, 0], 100), Decoded::Invalid);
        assert_eq!(decode(&[0x81, 126, 0x10, 0], 100), Decoded::Invalid);
    }
}
