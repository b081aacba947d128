//! TRANSPORT=sse: each client reads `GET /sse?channels=...` over plain HTTP, as a
//! browser's EventSource would, and hands each event's data (the same JSON as a
//! WebSocket message) to the same counting as WebSocket clients.

use crate::scan;

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
    let end = scan::find(buf, b"\r\n\r\n")? + 4;
    let head = &buf[..end];
    let status = std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.strip_prefix("HTTP/1.1 "))
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    Some(match status {
        Some(200) if scan::find(&head.to_ascii_lowercase(), b"text/event-stream").is_some() => {
            Head::Stream(end)
        }
        Some(200) | None => Head::Invalid,
        Some(code) => Head::Refused(code),
    })
}

/// The first complete event in `buf`: its `data:` lines joined by `\n` into
/// `data` (left empty for a comment, such as a keep-alive); the bytes it took.
/// None while no event is complete.
pub fn next_event(buf: &[u8], data: &mut Vec<u8>) -> Option<usize> {
    let end = scan::find(buf, b"\n\n")?;
    data.clear();
    for line in buf[..end].split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    Some(end + 2)
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
        let mut data = Vec::new();
        let used = next_event(stream, &mut data).unwrap();
        assert_eq!(data, b"{\"a\":\n1}");
        let rest = &stream[used..];
        let used = next_event(rest, &mut data).unwrap();
        assert!(data.is_empty(), "a comment has no data");
        assert_eq!(next_event(&rest[used..], &mut data), None, "incomplete");
    }
}
