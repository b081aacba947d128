//! An HTTP/1.x response head, as each of the tool's modes reads one: the
//! WebSocket upgrade's answer, the SSE stream's, `/health`'s and `POST /publish`'s.

use crate::scan;

/// A complete response head.
#[derive(Debug, PartialEq)]
pub struct Head<'a> {
    pub status: u16,
    /// Bytes up to and including the blank line; the body starts here.
    pub len: usize,
    /// The header lines (after the status line), with their CRLFs.
    headers: &'a [u8],
}

/// The head at the start of `buf`: None while its blank line has not come yet;
/// Some(Err) when the status line is not `HTTP/1.x NNN`.
pub fn parse(buf: &[u8]) -> Option<Result<Head<'_>, String>> {
    let len = scan::find(buf, b"\r\n\r\n")? + 4;
    let head = &buf[..len - 2];
    let line_end = scan::find(head, b"\r\n")?;
    let status = head[..line_end]
        .strip_prefix(b"HTTP/1.")
        .and_then(|r| r.get(1..5))
        .filter(|r| r[0] == b' ' && r[1..].iter().all(u8::is_ascii_digit))
        .map(|r| r[1..].iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')));
    let Some(status) = status else {
        let line = String::from_utf8_lossy(&head[..line_end.min(64)]);
        return Some(Err(format!("not an HTTP answer: {line:?}")));
    };
    Some(Ok(Head {
        status,
        len,
        headers: &head[line_end + 2..],
    }))
}

impl Head<'_> {
    /// The first `name` header's value (name in any case), spaces trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.split(|&b| b == b'\n').find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = scan::byte(line, b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
    }

    /// Whether header `name` is there and holds `word` (in any case).
    pub fn header_has(&self, name: &str, word: &str) -> bool {
        self.header(name).is_some_and(|v| {
            v.windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_length_and_headers() {
        let buf = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSEC-WebSocket-Extensions:  permessage-deflate; server_no_context_takeover \r\n\r\nframes";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(&buf[head.len..], b"frames");
        assert_eq!(head.header("upgrade"), Some(&b"websocket"[..]));
        let ext = head.header("sec-websocket-extensions").unwrap();
        assert_eq!(ext, b"permessage-deflate; server_no_context_takeover");
        assert!(head.header_has("Sec-WebSocket-Extensions", "PERMESSAGE-DEFLATE"));
        assert_eq!(head.header("Sec-WebSocket-Accept"), None);
        assert!(!head.header_has("Content-Type", "text"));
    }

    #[test]
    fn a_head_without_headers_and_one_not_complete() {
        let head = parse(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, head.len), (503, 36));
        assert_eq!(head.header("retry-after"), None);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"),
            None
        );
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn anything_else_is_not_http() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let err = parse(bad).unwrap().unwrap_err();
            assert!(err.starts_with("not an HTTP answer"), "{err}");
        }
    }
}
