//! permessage-deflate on the client side (COMPRESSION=on): the offer and
//! inflating the server's compressed messages (whether it took the offer, and
//! whether it may rely on the client's window, is read with the upgrade's
//! answer, wsframe.rs), with the server's own bounded inflate
//! (`deflate::codec`).
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
//!
//! A client that keeps its window (the server did not answer
//! `server_no_context_takeover`) may get a channel's next message as odin-ws's
//! copy chained after the one before: its text depends on what the window ends
//! with. Such a message is inflated after the client's last compressed message
//! (only that: odin-ws reaches back no further, and a server that did would show
//! as garbage), and its cached text is given only to a client whose window ends
//! with the same text.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use odin_ws::deflate::Window;
use odin_ws::deflate::codec::{KeptInflater, WINDOW_BYTES, deflate, inflate_message};

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

/// `payload` inflated in a window that ends with `window` (context takeover):
/// only its last 32 KiB can be reached, so only they prime the inflater.
pub fn message_after(window: &[u8], payload: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut inflater = KeptInflater::default();
    let bad = |e| format!("bad compressed message ({e:?})");
    let tail = &window[window.len().saturating_sub(WINDOW_BYTES)..];
    inflater
        .message(&deflate(tail, Window::Full), max)
        .map_err(bad)?;
    inflater.message(payload, max).map_err(bad)
}

/// An inflated message's text, and its hash (what a window is told apart by).
#[derive(Clone, Debug)]
pub struct Text {
    pub bytes: Rc<[u8]>,
    hash: u64,
}

impl Text {
    fn new(bytes: Vec<u8>) -> Text {
        Text {
            hash: hash(&bytes),
            bytes: bytes.into(),
        }
    }
}

struct Entry {
    compressed: Box<[u8]>,
    text: Text,
    /// The hash of the window its text depends on, if it does.
    after: Option<u64>,
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
    /// `payload` inflated (at most `max` bytes) for a client whose window ends
    /// with `window` (`None`: a fresh one), and whether it was inflated now
    /// rather than equal to a message inflated before.
    pub fn text(
        &mut self,
        payload: &[u8],
        max: usize,
        window: Option<&Text>,
    ) -> Result<(Text, bool), String> {
        let key = hash(payload);
        let window_hash = window.map(|w| w.hash);
        match self.entries.get(&key) {
            Some(e)
                if *e.compressed == *payload && e.after.is_none_or(|h| Some(h) == window_hash) =>
            {
                return Ok((e.text.clone(), false));
            }
            // Another message with the same hash, or one that depends on another
            // window: inflated, not cached.
            Some(_) => return Ok((Self::inflate(payload, max, window)?.0, true)),
            None => {}
        }
        let (text, after) = Self::inflate(payload, max, window)?;
        let size = payload.len() + text.bytes.len();
        if size <= CACHE_LARGEST {
            self.bytes += size;
            self.order.push_back(key);
            let compressed = payload.into();
            let entry = Entry {
                compressed,
                text: text.clone(),
                after,
            };
            self.entries.insert(key, entry);
            while self.bytes > CACHE_BYTES
                && let Some(old) = self.order.pop_front()
                && let Some(e) = self.entries.remove(&old)
            {
                self.bytes -= e.compressed.len() + e.text.bytes.len();
            }
        }
        Ok((text, true))
    }

    /// The text, and the hash of the window it depends on: a message inflated
    /// in `window` that does not inflate the same alone.
    fn inflate(
        payload: &[u8],
        max: usize,
        window: Option<&Text>,
    ) -> Result<(Text, Option<u64>), String> {
        let alone = message(payload, max);
        let Some(w) = window else {
            return Ok((Text::new(alone?), None));
        };
        let after = message_after(&w.bytes, payload, max)?;
        let depends = alone.as_deref().ok() != Some(&after[..]);
        Ok((Text::new(after), depends.then_some(w.hash)))
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
        let (text, inflated) = cache.text(&a, 1 << 16, None).unwrap();
        assert!(inflated);
        assert_eq!(message(&a, 1 << 16).unwrap(), &text.bytes[..]);
        let (again, inflated) = cache.text(&a, 1 << 16, None).unwrap();
        assert!(
            !inflated,
            "the same bytes: the same text, not inflated again"
        );
        assert!(Rc::ptr_eq(&text.bytes, &again.bytes));
        let (other, inflated) = cache.text(&b, 1 << 16, None).unwrap();
        assert!(inflated);
        assert!(other.bytes.ends_with(br#""n":2}}"#));
        // A copy of `a` with one byte changed is inflated: corrupt, or another text.
        let mut bad = a.clone();
        bad[a.len() / 2] ^= 0x55;
        match cache.text(&bad, 1 << 16, None) {
            Ok((t, inflated)) => assert!(inflated && t.bytes != text.bytes),
            Err(e) => assert!(e.starts_with("bad compressed message"), "{e}"),
        }
        assert!(cache.text(b"\xff\xff\xff", 1 << 16, None).is_err());
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
            cache.text(&body, 1 << 16, None).unwrap();
            assert!(cache.bytes <= CACHE_BYTES, "{} bytes", cache.bytes);
        }
        assert_eq!(cache.entries.len(), cache.order.len());
        assert!(
            cache.text(&first, 1 << 16, None).unwrap().1,
            "the oldest was dropped"
        );
        // Too large to keep: inflated each time.
        let big = server_deflate(&vec![b'y'; CACHE_LARGEST + 1]);
        assert!(cache.text(&big, 1 << 20, None).unwrap().1);
        assert!(cache.text(&big, 1 << 20, None).unwrap().1);
    }

    /// A chained copy inflates after the window it was made for; its cached
    /// text goes only to a client whose window ends the same way.
    #[test]
    fn a_chained_message_inflates_after_the_one_before_and_is_cached_for_that_window() {
        let prev = br#"{"type":"message","channel":"md.BTC","seq":1,"data":{"bid":"97012.50","ask":"97013.00","bids":[["97012.50","1.2540"]]}}"#;
        let cur = br#"{"type":"message","channel":"md.BTC","seq":2,"data":{"bid":"97012.75","ask":"97013.00","bids":[["97012.75","0.2540"]]}}"#;
        let mut cache = Inflated::default();
        let (first, _) = cache.text(&server_deflate(prev), 1 << 16, None).unwrap();
        assert_eq!(&first.bytes[..], prev);
        let chained = odin_ws::deflate::codec::deflate_after(prev, cur);
        let (text, inflated) = cache.text(&chained, 1 << 16, Some(&first)).unwrap();
        assert!(inflated);
        assert_eq!(&text.bytes[..], cur);
        let (again, inflated) = cache.text(&chained, 1 << 16, Some(&first)).unwrap();
        assert!(!inflated && again.bytes == text.bytes);
        // A client whose window ends otherwise does not get the cached text.
        let other = Text::new(b"something else entirely".to_vec());
        let (wrong, inflated) = cache
            .text(&chained, 1 << 16, Some(&other))
            .unwrap_or((other.clone(), true));
        assert!(inflated && &wrong.bytes[..] != cur);
    }
}
