//! `http::parse_head` on arbitrary bytes: it must never panic, and
//! - `Ok(Some(req))`: `head_len <= input.len()` and `<= MAX_HEAD_BYTES`, the head
//!   ends with the blank line, the path starts with '/', and parsing just the
//!   head gives the same request;
//! - every prefix shorter than a complete head that parses is `Ok(None)`: the
//!   answer must not depend on how TCP split the bytes;
//! - an input of `MAX_HEAD_BYTES` or more without a complete head is
//!   `Err(TooLarge)` (checked on the input itself and on the input padded out
//!   to `MAX_HEAD_BYTES`, so short inputs test it too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_ws::http::{MAX_HEAD_BYTES, ParseError, parse_head};

const BLANK_LINE: &[u8] = b"\r\n\r\n";

fn has_complete_head(buf: &[u8]) -> bool {
    buf.windows(BLANK_LINE.len()).any(|w| w == BLANK_LINE)
}

fuzz_target!(|data: &[u8]| {
    let result = parse_head(data);
    match &result {
        Ok(Some(req)) => {
            assert!(req.head_len <= data.len(), "head_len past the input");
            assert!(req.head_len <= MAX_HEAD_BYTES, "head over the limit");
            assert!(data[..req.head_len].ends_with(BLANK_LINE));
            assert!(req.path.starts_with('/'), "path {:?}", req.path);
            assert_eq!(parse_head(&data[..req.head_len]), result);
            // Every shorter prefix is still incomplete, not an error. All of
            // them up to 16 bytes (where early rejection lives), then the last.
            let short = (1..req.head_len.min(16)).chain([req.head_len - 1]);
            for len in short {
                assert_eq!(
                    parse_head(&data[..len]),
                    Ok(None),
                    "prefix of {len} bytes of a head that parses"
                );
            }
            let _ = req.header("host");
            let _ = req.header_has_token("connection", "upgrade");
        }
        Ok(None) => {
            assert!(!has_complete_head(data));
            assert!(data.len() < MAX_HEAD_BYTES, "Ok(None) at the limit");
        }
        Err(_) => {}
    }
    if !has_complete_head(data) {
        if data.len() >= MAX_HEAD_BYTES {
            assert_eq!(result, Err(ParseError::TooLarge));
        } else {
            // Any window that holds an 'a' is not a blank line, so the padded
            // input has no complete head either.
            let mut padded = data.to_vec();
            padded.resize(MAX_HEAD_BYTES, b'a');
            assert_eq!(parse_head(&padded), Err(ParseError::TooLarge));
        }
    }
});
