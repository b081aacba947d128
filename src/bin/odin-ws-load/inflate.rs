//! permessage-deflate on the client side (COMPRESSION=on): the offer and
//! inflating the server's compressed messages (whether it took the offer is read
//! with the upgrade's answer, wsframe.rs). odin-ws compresses with
//! no context takeover, so every message inflates on its own, with the server's
//! own bounded inflate (`deflate::codec::inflate_message`).
//!
//! odin-ws deflates a broadcast once and sends the same bytes to every compressing
//! client of its window class (DESIGN "Compression"), so 7,000 clients would
//! inflate the same bytes 700 times each broadcast; one thread cannot (about
//! 100,000 inflates/s, most of it building each message's Huffman tables, which
//! stopping early would not save). `Inflated` keeps the text of the messages it
//! inflated, found by their compressed bytes: a message whose bytes equal, in
//! full, those of one inflated before is given that one's text (the same bytes
//! inflate to the same text); any other, a corrupt copy included, is inflated and
//! checked on its own.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use odin_ws::deflate::codec::inflate_message;

/// What a browser offers (Chrome's header), so the server's answer is the usual one.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Bytes (compressed and inflated) the cache keeps: about 5,000 one-kilobyte
/// broadcasts, 20 s of R's 250 broadcasts/s, longer than any is in flight.
const CACHE_BYTES: usize = 8 << 20;
/// Larger messages are inflated every time rather than crowd the cache out.
const CACHE_LARGEST: usize = 64 << 10;

/// One compressed message's payload (all its frames, joined) inflated, at most
/// `max` bytes: odin-ws's own bounded inflate, as its server side uses it.
pub fn message(payload: &[u8], max: usize) -> Result<Vec<u8>, String> {
    inflate_message(payload, max).map_err(|e| format!("bad compressed message ({e:?})"))
}

struct Entry {
    compressed: Box<[u8]>,
    text: Rc<[u8]>,
}

/// The texts of messages inflated before, by their compressed bytes, oldest
/// dropped first past CACHE_BYTES.
#[derive(Default)]
pub struct Inflated {
    entries: HashMap<u64, Entry>,
    order: VecDeque<u64>,
    bytes: usize,
}

impl Inflated {
    /// `payload` inflated (at most `max` bytes), and whether it was inflated now
    /// rather than equal to a message inflated before.
    pub fn text(&mut self, payload: &[u8], max: usize) -> Result<(Rc<[u8]>, bool), String> {
        let key = hash(payload);
        match self.entries.get(&key) {
            Some(e) if *e.compressed == *payload => return Ok((e.text.clone(), false)),
            // Another message with the same hash: inflated, not cached.
            Some(_) => return Ok((message(payload, max)?.into(), true)),
            None => {}
        }
        let text: Rc<[u8]> = message(payload, max)?.into();
        let size = payload.len() + text.len();
        if size <= CACHE_LARGEST {
            self.bytes += size;
            self.order.push_back(key);
            let compressed = payload.into();
            let entry = Entry {
                compressed,
                text: text.clone(),
            };
            self.entries.insert(key, entry);
            while self.bytes > CACHE_BYTES
                && let Some(old) = self.order.pop_front()
                && let Some(e) = self.entries.remove(&old)
            {
                self.bytes -= e.compressed.len() + e.text.len();
            }
        }
        Ok((text, true))
    }
}

/// A fast hash of the bytes, 8 at a time; equal hashes are confirmed by comparing
/// the bytes, so a collision costs an inflate, never a wrong text.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    h
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
    fn equal_bytes_are_inflated_once_and_others_on_their_own() {
        let mut cache = Inflated::default();
        let a = server_deflate(br#"{"type":"message","channel":"a","seq":1,"data":{"n":1}}"#);
        let b = server_deflate(br#"{"type":"message","channel":"a","seq":2,"data":{"n":2}}"#);
        let (text, inflated) = cache.text(&a, 1 << 16).unwrap();
        assert!(inflated);
        assert_eq!(message(&a, 1 << 16).unwrap(), &text[..]);
        let (again, inflated) = cache.text(&a, 1 << 16).unwrap();
        assert!(
            !inflated,
            "the same bytes: the same text, not inflated again"
        );
        assert!(Rc::ptr_eq(&text, &again));
        let (other, inflated) = cache.text(&b, 1 << 16).unwrap();
        assert!(inflated);
        assert!(other.ends_with(br#""n":2}}"#));
        // A copy of `a` with one byte changed is inflated: corrupt, or another text.
        let mut bad = a.clone();
        bad[a.len() / 2] ^= 0x55;
        match cache.text(&bad, 1 << 16) {
            Ok((t, inflated)) => assert!(inflated && t != text),
            Err(e) => assert!(e.starts_with("bad compressed message"), "{e}"),
        }
        assert!(cache.text(b"\xff\xff\xff", 1 << 16).is_err());
    }

    #[test]
    fn the_cache_keeps_its_byte_bound() {
        let mut cache = Inflated::default();
        let mut first = Vec::new();
        for i in 0..30_000u32 {
            let body =
                server_deflate(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(300)).as_bytes());
            if i == 0 {
                first = body.clone();
            }
            cache.text(&body, 1 << 16).unwrap();
            assert!(cache.bytes <= CACHE_BYTES, "{} bytes", cache.bytes);
        }
        assert_eq!(cache.entries.len(), cache.order.len());
        assert!(
            cache.text(&first, 1 << 16).unwrap().1,
            "the oldest was dropped"
        );
        // Too large to keep: inflated each time.
        let big = server_deflate(&vec![b'y'; CACHE_LARGEST + 1]);
        assert!(cache.text(&big, 1 << 20).unwrap().1);
        assert!(cache.text(&big, 1 << 20).unwrap().1);
    }
}
