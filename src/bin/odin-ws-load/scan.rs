//! Picks the few fields the tool needs out of a message without a JSON parser:
//! at 175k messages/s on the server's own box, the load tool must stay cheap.
//!
//! odin-ws frames look like
//! `{"type":"message","channel":"C","seq":1,["conflated":true,]"data":{"ts_us":…,"n":…,"pad":"…"}}`.

const MESSAGE_PREFIX: &[u8] = b"{\"type\":\"message\"";
const CHANNEL_KEY: &[u8] = b"\"channel\":\"";
const DATA_KEY: &[u8] = b"\"data\":";
const CONFLATED: &[u8] = b"\"conflated\":true";
const TS_KEY: &[u8] = b"\"ts_us\":";
const N_KEY: &[u8] = b"\"n\":";

/// The first `b` in `hay`: glibc's vectorised memchr, which the tool's per-message
/// scans (an SSE event's line ends, a key's first byte) spend most of their time in.
pub fn byte(hay: &[u8], b: u8) -> Option<usize> {
    // SAFETY: memchr reads at most `hay.len()` bytes from the start of `hay`.
    let at = unsafe { libc::memchr(hay.as_ptr().cast(), libc::c_int::from(b), hay.len()) };
    (!at.is_null()).then(|| at as usize - hay.as_ptr() as usize)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut at = 0;
    while at + needle.len() <= hay.len() {
        let start = at + byte(&hay[at..=hay.len() - needle.len()], first)?;
        if &hay[start + 1..start + needle.len()] == rest {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// The JSON string value following `key` (no unescaping: channels need none).
pub fn string_after<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = find(hay, key)? + key.len();
    let len = hay[start..].iter().position(|&b| b == b'"')?;
    Some(&hay[start..start + len])
}

fn number_at(hay: &[u8]) -> Option<u64> {
    let digits = hay.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&hay[..digits]).ok()?.parse().ok()
}

pub fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    number_at(&hay[find(hay, key)? + key.len()..])
}

pub struct OdinMessage<'a> {
    pub channel: &'a [u8],
    pub data: &'a [u8],
    pub conflated: bool,
}

/// A `message` frame's channel, data and conflation flag; None for other frames.
pub fn odin_message(text: &[u8]) -> Option<OdinMessage<'_>> {
    if !text.starts_with(MESSAGE_PREFIX) {
        return None;
    }
    let channel = string_after(text, CHANNEL_KEY)?;
    let data_at = find(text, DATA_KEY)?;
    let conflated = find(&text[..data_at], CONFLATED).is_some();
    Some(OdinMessage {
        channel,
        data: &text[data_at + DATA_KEY.len()..],
        conflated,
    })
}

/// The publisher's fields in a payload.
pub struct PayloadFields {
    pub ts_us: Option<u64>,
    pub n: Option<u64>,
}

pub fn payload_fields(data: &[u8]) -> PayloadFields {
    PayloadFields {
        ts_us: number_after(data, TS_KEY),
        n: number_after(data, N_KEY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_message_frame() {
        let f = br#"{"type":"message","channel":"odin.a.1","seq":9,"conflated":true,"data":{"ts_us":1700000000123456,"n":42,"pad":"xx"}}"#;
        let m = odin_message(f).unwrap();
        assert_eq!(m.channel, b"odin.a.1");
        assert!(m.conflated);
        let p = payload_fields(m.data);
        assert_eq!(p.ts_us, Some(1_700_000_000_123_456));
        assert_eq!(p.n, Some(42));
    }

    #[test]
    fn other_frames_are_not_messages() {
        assert!(odin_message(br#"{"type":"subscribed","channels":["a"],"id":1}"#).is_none());
        let plain = br#"{"type":"message","channel":"a","seq":1,"data":"text"}"#;
        let m = odin_message(plain).unwrap();
        assert!(!m.conflated);
        assert_eq!(payload_fields(m.data).n, None);
    }

    #[test]
    fn find_handles_edges() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"", b"a"), None);
        assert_eq!(find(b"a", b"a"), Some(0));
        assert_eq!(byte(b"", b'a'), None);
        assert_eq!(byte(b"xya", b'a'), Some(2));
    }
}
