//! permessage-deflate on the client side (COMPRESSION=on): the offer, whether the
//! server took it, and inflating its compressed messages. odin-ws compresses with
//! no context takeover, so every message inflates on its own, with the server's
//! own bounded inflate (`deflate::codec::inflate_message`).

use odin_ws::deflate::codec::inflate_message;

use crate::scan;

/// What a browser offers (Chrome's header), so the server's answer is the usual one.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Whether a 101 head agreed to permessage-deflate.
pub fn negotiated(head: &[u8]) -> bool {
    let lower = head.to_ascii_lowercase();
    scan::find(&lower, b"\r\nsec-websocket-extensions:")
        .is_some_and(|at| scan::find(&lower[at..], b"permessage-deflate").is_some())
}

/// One compressed message's payload (all its frames, joined) inflated, at most
/// `max` bytes: odin-ws's own bounded inflate, as its server side uses it.
pub fn message(payload: &[u8], max: usize) -> Result<Vec<u8>, String> {
    inflate_message(payload, max).map_err(|e| format!("bad compressed message ({e:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deflates exactly as odin-ws does.
    fn server_deflate(text: &[u8]) -> Vec<u8> {
        odin_ws::deflate::codec::deflate(text, odin_ws::deflate::Window::Full)
    }

    #[test]
    fn messages_inflate_one_by_one() {
        for text in [
            &b"{\"a\":1,\"a\":1,\"a\":1}"[..],
            b"another message, another message",
        ] {
            let got = message(&server_deflate(text), 1 << 16).unwrap();
            assert_eq!(got, text);
        }
        assert!(message(b"\xff\xff\xff", 1 << 16).is_err());
        assert!(message(&server_deflate(&[b'x'; 100]), 8).is_err());
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
