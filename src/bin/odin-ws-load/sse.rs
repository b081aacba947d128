//! TRANSPORT=sse: each client reads `GET /sse?channels=...` over plain HTTP, as a
//! browser's EventSource would, and hands each event's data (the same JSON as a
//! WebSocket message) to the same counting as WebSocket clients.

use crate::{head, scan};

/// The request for `channels` on the server at `host` (commas split the list, so
/// they and anything outside a URL's plain characters are percent-encoded).
pub fn request(host: &str, channels: &[String]) -> Vec<u8> {
    let mut list = String::new();
    for (i, ch) in channels.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        for b in ch.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
                list.push(b as char);
            } else {
                list.push_str(&format!("%{b:02X}"));
            }
        }
    }
    format!(
        "GET /sse?channels={list} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
}

/// The answer's head, once complete.
#[derive(Debug, PartialEq)]
pub enum Head {
    /// 200 `text/event-stream`; `usize` is the head's length.
    Stream(usize),
    /// Any other status (400 bad channels, 503 admission closed).
    Refused(u16),
    /// Not HTTP, or a 200 that is not an event stream.
    Invalid,
}

pub fn parse_head(buf: &[u8]) -> Option<Head> {
    Some(match head::parse(buf)? {
        Ok(h) if h.status == 200 && h.header_has("Content-Type", "text/event-stream") => {
            Head::Stream(h.len)
        }
        Ok(h) if h.status != 200 => Head::Refused(h.status),
        _ => Head::Invalid,
    })
}

/// The first complete event in `buf`: its data and the bytes it took; None while
/// no event is complete. The data is the event's `data:` lines joined by `\n`,
/// empty for a comment (a keep-alive). One data line, what odin-ws sends for a
/// JSON message, is returned where it lies in `buf`; only several are copied,
/// joined, into `joined`. One pass over the event's line ends, no other copy.
pub fn next_event<'a>(buf: &'a [u8], joined: &'a mut Vec<u8>) -> Option<(&'a [u8], usize)> {
    let mut first: Option<&[u8]> = None;
    let mut lines = 0;
    let mut at = 0;
    loop {
        let eol = at + scan::byte(&buf[at..], b'\n')?;
        if eol == at {
            let data = if lines > 1 {
                &joined[..]
            } else {
                first.unwrap_or_default()
            };
            return Some((data, eol + 1));
        }
        if let Some(value) = buf[at..eol].strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            lines += 1;
            match lines {
                1 => first = Some(value),
                2 => {
                    joined.clear();
                    joined.extend_from_slice(first.unwrap_or_default());
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                }
                _ => {
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                }
            }
        }
        at = eol + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_encodes_each_channel() {
        let req = request("h:1", &["a.b".into(), "token.*.price".into(), "x.>".into()]);
        let text = String::from_utf8(req).unwrap();
        assert!(
            text.starts_with("GET /sse?channels=a.b,token.*.price,x.%3E HTTP/1.1\r\nHost: h:1\r\n"),
            "{text}"
        );
    }

    #[test]
    fn heads_are_streams_refusals_or_invalid() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent:";
        assert_eq!(parse_head(ok), Some(Head::Stream(ok.len() - 6)));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), None);
        let refused = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n";
        assert_eq!(parse_head(refused), Some(Head::Refused(503)));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n";
        assert_eq!(parse_head(html), Some(Head::Invalid));
    }

    #[test]
    fn events_and_comments_split_on_blank_lines() {
        let stream = b"id: E:1\nevent: message\ndata: {\"a\":\ndata: 1}\n\n: keep-alive\n\nevent: gap\ndata: {";
        let mut joined = Vec::new();
        let (data, used) = next_event(stream, &mut joined).unwrap();
        assert_eq!(data, b"{\"a\":\n1}");
        let rest = &stream[used..];
        let (data, used) = next_event(rest, &mut joined).unwrap();
        assert!(data.is_empty(), "a comment has no data");
        assert_eq!(next_event(&rest[used..], &mut joined), None, "incomplete");
    }

    #[test]
    fn one_data_line_is_read_in_place() {
        let stream = b"id: E1:7\nevent: message\ndata: {\"seq\":7}\n\nevent: gap\ndata:{}\n\n";
        let mut joined = Vec::new();
        let (data, used) = next_event(stream, &mut joined).unwrap();
        assert_eq!(data, b"{\"seq\":7}");
        assert_eq!(data.as_ptr(), stream[30..].as_ptr(), "not copied");
        assert!(joined.is_empty());
        // `data:` without its space, and a three-line payload after a one-line one.
        let (data, used2) = next_event(&stream[used..], &mut joined).unwrap();
        assert_eq!(data, b"{}");
        assert_eq!(used + used2, stream.len());
        let three = b"data: a\ndata:\ndata: c\n\n";
        assert_eq!(next_event(three, &mut joined).unwrap().0, b"a\n\nc");
    }

    #[test]
    fn an_event_waits_for_its_blank_line() {
        let event = b"event: message\ndata: {\"n\":1}\n\n";
        let mut joined = Vec::new();
        for cut in 0..event.len() {
            assert_eq!(next_event(&event[..cut], &mut joined), None, "cut at {cut}");
        }
        assert_eq!(next_event(event, &mut joined).unwrap().1, event.len());
    }
}
