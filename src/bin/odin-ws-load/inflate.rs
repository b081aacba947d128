//! permessage-deflate on the client side (COMPRESSION=on): the offer, whether the
//! server took it, and inflating its compressed messages with miniz_oxide.
//! odin-ws compresses with no context takeover, so every message inflates on its
//! own and one inflater (reset per message) serves every client of the tool.

use std::cell::RefCell;

use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

use crate::scan;

/// What a browser offers (Chrome's header), so the server's answer is the usual one.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The empty stored block each compressed message's last frame leaves off (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether a 101 head agreed to permessage-deflate.
pub fn negotiated(head: &[u8]) -> bool {
    let lower = head.to_ascii_lowercase();
    scan::find(&lower, b"\r\nsec-websocket-extensions:")
        .is_some_and(|at| scan::find(&lower[at..], b"permessage-deflate").is_some())
}

pub struct Inflater {
    state: Box<InflateState>,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl Inflater {
    /// `max`: the largest message inflated; a larger one is an error.
    pub fn new(max: usize) -> Inflater {
        Inflater {
            state: InflateState::new_boxed(DataFormat::Raw),
            // One byte more than allowed: filling it means the message is larger.
            out: vec![0; max + 1],
            input: Vec::new(),
        }
    }

    /// Inflates one message's payload (all its frames, joined).
    pub fn message(&mut self, payload: &[u8]) -> Result<&[u8], String> {
        self.state.reset(DataFormat::Raw);
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&TAIL);
        let r = inflate(&mut self.state, &self.input, &mut self.out, MZFlush::Sync);
        let max = self.out.len() - 1;
        match r.status {
            _ if r.bytes_written > max => Err("compressed message too large".into()),
            Ok(MZStatus::Ok | MZStatus::StreamEnd) if r.bytes_consumed == self.input.len() => {
                Ok(&self.out[..r.bytes_written])
            }
            Ok(_) => Err("compressed message cut short".into()),
            Err(e) => Err(format!("bad compressed message ({e:?})")),
        }
    }
}

thread_local! {
    /// The tool's one inflater (its reactor is one thread), made on first use.
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
}

/// Hands `f` the inflated text of one compressed message of at most `max` bytes.
pub fn with_inflated<R>(
    payload: &[u8],
    max: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, String> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = slot.get_or_insert_with(|| Inflater::new(max));
        inflater.message(payload).map(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deflates exactly as odin-ws does.
    fn server_deflate(text: &[u8]) -> Vec<u8> {
        odin_ws::deflate::codec::deflate(text, odin_ws::deflate::Window::Full)
    }

    #[test]
    fn messages_inflate_one_by_one_with_one_inflater() {
        let mut inflater = Inflater::new(1 << 16);
        for text in [
            &b"{\"a\":1,\"a\":1,\"a\":1}"[..],
            b"another message, another message",
        ] {
            let got = inflater.message(&server_deflate(text)).unwrap();
            assert_eq!(got, text);
        }
        assert!(inflater.message(b"\xff\xff\xff").is_err());
        let mut small = Inflater::new(8);
        assert!(small.message(&server_deflate(&[b'x'; 100])).is_err());
    }

    #[test]
    fn the_answer_says_whether_the_server_agreed() {
        let yes = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert!(negotiated(yes));
        assert!(!negotiated(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        ));
    }
}
