//! Raw deflate of one message and bounded inflate of one message (RFC 7692
//! section 7.2), with miniz_oxide. Each thread keeps one compressor per window
//! class and one inflater, reset between messages: their tables (hundreds of
//! KiB) are never per connection or per broadcast.

use std::cell::RefCell;

use miniz_oxide::DataFormat;
use miniz_oxide::deflate::core::{
    CompressionStrategy, CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output,
};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{MZError, MZFlush, MZStatus};

use super::Window;

/// What a sync flush ends a deflated message with; the sender drops it and the
/// receiver appends it (RFC 7692 section 7.2.1 and 7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// miniz_oxide's default level: once per broadcast, the ratio is worth more than
/// the microseconds.
const LEVEL: u8 = 6;

thread_local! {
    static COMPRESSORS: RefCell<[Option<Box<CompressorOxide>>; 3]> =
        const { RefCell::new([None, None, None]) };
    static INFLATER: RefCell<Option<Box<InflateState>>> = const { RefCell::new(None) };
}

/// `payload` as the body of one compressed message for a client that allows
/// `window`: raw deflate, sync-flushed, the trailing 00 00 ff ff removed.
pub fn deflate(payload: &[u8], window: Window) -> Vec<u8> {
    deflate_with(window, None, payload)
}

/// `payload` as the body of one compressed message for a client that keeps its
/// window between messages (context takeover) and whose window ends with
/// `dictionary`: its matches may reach back into `dictionary`, which the client
/// already has. Full window only (32 KiB; only that much of `dictionary` counts).
pub fn deflate_after(dictionary: &[u8], payload: &[u8]) -> Vec<u8> {
    let tail = &dictionary[dictionary.len().saturating_sub(WINDOW_BYTES)..];
    deflate_with(Window::Full, Some(tail), payload)
}

/// The largest LZ77 window, 15 bits: no match reaches further back.
pub const WINDOW_BYTES: usize = 1 << 15;

fn deflate_with(window: Window, dictionary: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    COMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        let window = window.class();
        let slot = &mut all[window as usize];
        let d = slot.get_or_insert_with(|| Box::new(compressor(window)));
        d.reset();
        if let Some(dictionary) = dictionary {
            // Compressed and thrown away: what stays is the compressor's window.
            compress_to_output(d, dictionary, TDEFLFlush::Sync, |_| true);
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        let (status, _) = compress_to_output(d, payload, TDEFLFlush::Sync, |chunk| {
            out.extend_from_slice(chunk);
            true
        });
        debug_assert_eq!(status, TDEFLStatus::Okay);
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    })
}

/// The compressor for a window class. Only the full window may use LZ77 matches:
/// miniz_oxide takes window bits under 15 to mean its level-1 fast mode, whose
/// matches reach back the whole 32 KiB whatever the bits (and which ignores its
/// RLE strategy), so a client that allowed 9 bits got distances it cannot follow
/// (Autobahn 13.3.8: "invalid distance too far back"). Run-length matches
/// (distance 1) at LEVEL, through its normal mode, fit every window. The window
/// bits passed are 15 because raw deflate has no header to carry them and lower
/// ones only select that fast mode.
fn compressor(window: Window) -> CompressorOxide {
    let strategy = match window {
        Window::Full => CompressionStrategy::Default,
        Window::Short | Window::Rle => CompressionStrategy::RLE,
    };
    CompressorOxide::with_params(DataFormat::Raw, LEVEL, strategy, 15)
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the limit (the rest is not inflated).
    TooLarge,
    /// Not a valid deflate stream.
    Corrupt,
}

/// Inflates the body of one compressed message, stopping as soon as it passes
/// `limit` bytes (a small message that inflates to gigabytes costs at most
/// `limit` of memory).
pub fn inflate_message(body: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = slot.get_or_insert_with(|| InflateState::new_boxed(DataFormat::Raw));
        state.reset(DataFormat::Raw);
        let mut out = Vec::new();
        // A message ended with a final block (BFINAL) needs no tail.
        if !inflate_into(state, body, limit, &mut out)? {
            inflate_into(state, &TAIL, limit, &mut out)?;
        }
        Ok(out)
    })
}

/// A compressor that keeps its window between messages (per-connection context
/// takeover, which odin-ws does not do): for measuring what it would give
/// (`odin-ws-load ratio`), at the server's level and full window.
pub struct KeptDeflater(Box<CompressorOxide>);

impl Default for KeptDeflater {
    fn default() -> Self {
        KeptDeflater(Box::new(compressor(Window::Full)))
    }
}

impl KeptDeflater {
    /// The body of one compressed message: sync-flushed, the tail dropped.
    pub fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        let (status, _) = compress_to_output(&mut self.0, payload, TDEFLFlush::Sync, |chunk| {
            out.extend_from_slice(chunk);
            true
        });
        debug_assert_eq!(status, TDEFLStatus::Okay);
        out.truncate(out.len().saturating_sub(TAIL.len()));
        out
    }
}

/// An inflater that keeps its window between messages, as a client does under
/// context takeover (what odin-ws's chained copies rely on): for clients and
/// tests, the server's own inbound messages never need it.
pub struct KeptInflater(Box<InflateState>);

impl Default for KeptInflater {
    fn default() -> Self {
        KeptInflater(InflateState::new_boxed(DataFormat::Raw))
    }
}

impl KeptInflater {
    /// Inflates the body of one compressed message, up to `limit` bytes.
    pub fn message(&mut self, body: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        if !inflate_into(&mut self.0, body, limit, &mut out)? {
            inflate_into(&mut self.0, &TAIL, limit, &mut out)?;
        }
        Ok(out)
    }
}

/// Feeds all of `input`, growing `out` up to one byte past `limit`; whether the
/// deflate stream ended.
fn inflate_into(
    state: &mut InflateState,
    mut input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<bool, InflateError> {
    loop {
        if out.len() > limit {
            return Err(InflateError::TooLarge);
        }
        let have = out.len();
        let room = (input.len() * 4).clamp(1024, 64 * 1024);
        out.resize((have + room).min(limit + 1), 0);
        let result = inflate(state, input, &mut out[have..], MZFlush::None);
        out.truncate(have + result.bytes_written);
        input = &input[result.bytes_consumed..];
        match result.status {
            Ok(MZStatus::StreamEnd) => return Ok(true),
            Ok(_) | Err(MZError::Buf) => {}
            Err(_) => return Err(InflateError::Corrupt),
        }
        let stalled = result.bytes_consumed == 0 && result.bytes_written == 0;
        if input.is_empty() && (stalled || out.len() < have + room) {
            return Ok(false);
        }
        if stalled && out.len() <= limit {
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market_json(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"sym":"BTC-USD","px":{},"qty":{}}}"#,
                    60000 + i % 7,
                    i % 13
                )
            })
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes()
    }

    #[test]
    fn every_window_round_trips_and_repetitive_json_shrinks() {
        let json = market_json(200);
        for window in Window::ALL {
            let body = deflate(&json, window);
            assert!(!body.ends_with(&TAIL));
            assert_eq!(inflate_message(&body, 1 << 20).unwrap(), json, "{window:?}");
        }
        let full = deflate(&json, Window::Full);
        assert!(
            full.len() * 5 < json.len(),
            "{} of {}",
            full.len(),
            json.len()
        );
    }

    #[test]
    fn smaller_windows_get_no_match_reaching_back_past_them() {
        // 1 KiB of noise 64 times: only matches 1 KiB back can shrink it.
        let mut x: u32 = 2_463_534_242;
        let block: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let data = block.repeat(64);
        let full = deflate(&data, Window::Full);
        assert!(full.len() * 10 < data.len(), "{}", full.len());
        for window in [Window::Short, Window::Rle] {
            let body = deflate(&data, window);
            assert!(body.len() * 2 > data.len(), "{window:?}: {}", body.len());
            assert_eq!(inflate_message(&body, 1 << 20).unwrap(), data);
        }
    }

    #[test]
    fn a_message_deflated_after_the_last_one_inflates_in_a_kept_window_only() {
        let prev = br#"{"type":"message","channel":"md.BTC","seq":1,"data":{"bid":"97012.50","ask":"97013.00","bids":[["97012.50","1.2540"]]}}"#;
        let cur = br#"{"type":"message","channel":"md.BTC","seq":2,"data":{"bid":"97012.75","ask":"97013.00","bids":[["97012.75","0.2540"]]}}"#;
        let chained = deflate_after(prev, cur);
        assert!(
            chained.len() * 2 < deflate(cur, Window::Full).len(),
            "{}",
            chained.len()
        );
        let mut client = KeptInflater::default();
        let limit = 1 << 20;
        assert_eq!(
            client.message(&deflate(prev, Window::Full), limit).unwrap(),
            prev
        );
        assert_eq!(client.message(&chained, limit).unwrap(), cur);
        // A fresh window has nothing to reach back into (miniz_oxide reads
        // zeros there rather than failing).
        assert_ne!(inflate_message(&chained, 1 << 20).ok(), Some(cur.to_vec()));
    }

    #[test]
    fn a_kept_deflater_s_messages_inflate_in_a_kept_window() {
        let (first, second) = (
            &b"{\"seq\":1,\"px\":101.5}"[..],
            &b"{\"seq\":2,\"px\":101.5}"[..],
        );
        let mut deflater = KeptDeflater::default();
        let (a, b) = (deflater.message(first), deflater.message(second));
        assert!(b.len() < a.len(), "the second reaches back into the first");
        let mut client = KeptInflater::default();
        assert_eq!(client.message(&a, 1 << 16).unwrap(), first);
        assert_eq!(client.message(&b, 1 << 16).unwrap(), second);
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let body = deflate(&zeros, Window::Full);
        assert!(body.len() < 2048, "{}", body.len());
        assert_eq!(inflate_message(&body, 65536), Err(InflateError::TooLarge));
        assert_eq!(inflate_message(&body, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_message_ended_with_a_final_block_needs_no_tail() {
        let body = miniz_oxide::deflate::compress_to_vec(b"hello hello hello", 6);
        assert_eq!(inflate_message(&body, 1024).unwrap(), b"hello hello hello");
    }

    #[test]
    fn garbage_is_corrupt_and_empty_is_empty() {
        assert_eq!(
            inflate_message(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate_message(&[], 1024).unwrap(), b"");
        assert_eq!(
            inflate_message(&deflate(b"", Window::Full), 1024).unwrap(),
            b""
        );
    }
}
