//! Parses an HTTP/1.x request head. Anything it does not understand is an error,
//! never a panic: this is the first thing a stranger's bytes reach.

/// A head larger than this is answered with 431.
pub const MAX_HEAD_BYTES: usize = 8192;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target without its query string.
    pub path: String,
    /// What followed `?` in the target (empty when nothing did).
    pub query: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// Bytes the head took, including the blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 400 with the reason.
    Malformed(&'static str),
    /// 431.
    TooLarge,
}

impl Request {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, percent-decoded (`+` is a space);
    /// `None` when absent or not valid UTF-8 once decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| percent_decode(value))
    }

    /// Whether a comma-separated header holds `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// `Ok(None)` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, ParseError> {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() >= MAX_HEAD_BYTES {
            Err(ParseError::TooLarge)
        } else if buf.len() >= 2 && !is_token_byte(buf[0]) {
            // A request line starts with a method, a token; fail fast on
            // garbage. Only what the full parse would reject too, so the
            // answer never depends on how the head was split across reads.
            Err(ParseError::Malformed("bad request line"))
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD_BYTES {
        return Err(ParseError::TooLarge);
    }
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::Malformed("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let (method, target, minor_version) = parse_request_line(request_line)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooLarge);
        }
        headers.push(parse_header(line)?);
    }
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version,
        headers,
        head_len: end,
    }))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Method, target (path and query) and HTTP minor version.
fn parse_request_line(line: &str) -> Result<(&str, &str, u8), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::Malformed("bad method"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::Malformed("bad request target"));
    }
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(ParseError::Malformed("unsupported HTTP version")),
    };
    Ok((method, target, minor_version))
}

/// `%XX` escapes and `+` decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}

fn parse_header(line: &str) -> Result<(String, String), ParseError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(ParseError::Malformed("header without ':'"))?;
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(ParseError::Malformed("bad header name"));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ParseError::Malformed("control character in header value"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request from the lines of its head (without the closing blank line), for
/// the unit tests of whatever answers one.
#[cfg(test)]
pub fn test_request(head: &str) -> Request {
    parse_head(format!("{head}\r\n\r\n").as_bytes())
        .expect("a valid test request")
        .expect("a complete test request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head() {
        let raw = b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\nrest";
        let req = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.head_len, raw.len() - 4);
        assert_eq!(req.header("host"), Some("a"));
        assert!(req.header_has_token("connection", "upgrade"));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let raw = b"GET /status?a=1&token=s%3Dc+r%2B&flag HTTP/1.1\r\n\r\n";
        let req = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.path, "/status");
        assert_eq!(req.query_param("token").as_deref(), Some("s=c r+"));
        assert_eq!(req.query_param("a").as_deref(), Some("1"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("missing"), None);
        let bad = parse_head(b"GET /s?token=%zz HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(bad.query_param("token"), None);
    }

    #[test]
    fn incomplete_and_bad_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        let cases: [&[u8]; 7] = [
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET noslash HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 tls hello",
        ];
        for raw in cases {
            assert!(
                matches!(parse_head(raw), Err(ParseError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// Found by `cargo fuzz run http_head`: a head whose method starts with a
    /// lowercase letter parsed when it came in one read, but its first two
    /// bytes alone were rejected as "bad request line", so the answer (404 or
    /// 400) depended on how TCP split the bytes.
    #[test]
    fn fuzz_regression_method_prefix_not_rejected_early() {
        let raw = b"gET /ws HTTP/1.1\r\nHost: a\r\n\r\n";
        let req = parse_head(raw).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("gET", "/ws"));
        for len in 1..raw.len() {
            assert_eq!(parse_head(&raw[..len]), Ok(None), "first {len} bytes");
        }
    }

    #[test]
    fn oversized_head_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&raw), Err(ParseError::TooLarge));
    }
}
