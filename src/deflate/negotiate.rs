//! permessage-deflate negotiation (RFC 7692 section 7.1): picks the first offer the
//! server can honour and writes the answer. The server answers
//! `server_no_context_takeover` only when the client asks for it: otherwise the
//! client keeps its window between messages (the RFC's default), and a broadcast
//! may go as the shared copy deflated after the channel's previous message
//! (`Broadcast::chained`); the server itself keeps no compressor per connection.
//! It always answers `client_no_context_takeover` (7.1.1.1 lets a server ask for
//! it unasked), so each inbound message is inflated on its own.

use super::Window;
use crate::http::Request;

/// The extension's token in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What the server agreed to for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The `server_max_window_bits` the client asked for (8-15), if any.
    pub server_max_window_bits: Option<u8>,
    /// The client asked the server not to rely on its window between messages.
    pub server_no_context_takeover: bool,
}

impl Agreed {
    /// Which shared deflated copy of a broadcast this connection can take.
    pub fn window(&self) -> Window {
        Window::for_bits(self.server_max_window_bits.unwrap_or(15))
    }

    /// Whether broadcasts may go deflated after the client's last message: it
    /// keeps its window, and the window is the full 32 KiB.
    pub fn chains(&self) -> bool {
        !self.server_no_context_takeover && self.window() == Window::Full
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub fn header_value(&self) -> String {
        let mut value = EXTENSION.to_string();
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        value.push_str("; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            value.push_str(&format!("; server_max_window_bits={bits}"));
        }
        value
    }
}

/// The first permessage-deflate offer of the request that the server accepts;
/// `None` when compression is off, nothing is offered, or no offer can be
/// honoured (the extension is declined, the connection goes on uncompressed).
pub fn negotiate(req: &Request, enabled: bool) -> Option<Agreed> {
    if !enabled {
        return None;
    }
    req.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .flat_map(|(_, v)| v.split(','))
        .find_map(accept_offer)
}

/// One offer ("name; param; param=value"): accepted when it is permessage-deflate
/// with valid parameters, each at most once.
fn accept_offer(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut agreed = Agreed {
        server_max_window_bits: None,
        server_no_context_takeover: false,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => {
                agreed.server_max_window_bits = Some(window_bits(v)?);
            }
            // The client may use any window up to its own limit: each inbound
            // message is inflated with a fresh 32 KiB window.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(agreed)
}

/// A value as a token or a quoted string (RFC 7692 section 7.1: the same syntax
/// either way).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// 8-15, written without a leading zero (RFC 7692 section 7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn request(extensions: &[&str]) -> Request {
        let headers: String = extensions
            .iter()
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .collect();
        let raw = format!("GET /ws HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        parse_head(raw.as_bytes()).unwrap().unwrap()
    }

    fn agreed(extensions: &[&str]) -> Option<Agreed> {
        negotiate(&request(extensions), true)
    }

    const PLAIN: Agreed = Agreed {
        server_max_window_bits: None,
        server_no_context_takeover: false,
    };

    #[test]
    fn nothing_offered_or_compression_off_means_no_extension() {
        assert_eq!(agreed(&[]), None);
        assert_eq!(agreed(&["x-webkit-deflate-frame"]), None);
        let offer = request(&["permessage-deflate"]);
        assert_eq!(negotiate(&offer, false), None);
        assert_eq!(negotiate(&offer, true), Some(PLAIN));
    }

    /// The client keeps its window unless it asks not to; ours is never kept.
    #[test]
    fn the_answer_drops_the_server_context_only_when_asked() {
        let chrome = agreed(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(
            chrome.header_value(),
            "permessage-deflate; client_no_context_takeover"
        );
        assert!(chrome.chains());
        let asked = agreed(&["permessage-deflate; server_no_context_takeover"]).unwrap();
        assert_eq!(
            asked.header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(!asked.chains());
        let small = agreed(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert!(!small.chains(), "chaining needs the full window");
    }

    /// A browser's offer, and one that asks to drop both contexts.
    #[test]
    fn usual_offers_are_accepted() {
        let chrome = "permessage-deflate; client_max_window_bits";
        assert_eq!(agreed(&[chrome]), Some(PLAIN));
        let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        let no_takeover = Agreed {
            server_no_context_takeover: true,
            ..PLAIN
        };
        assert_eq!(agreed(&[both]), Some(no_takeover));
        let quoted = "Permessage-Deflate; client_max_window_bits=\"10\"";
        assert_eq!(agreed(&[quoted]), Some(PLAIN));
    }

    #[test]
    fn a_server_window_limit_is_honoured_and_answered() {
        let a = agreed(&["permessage-deflate; server_max_window_bits=9"]).unwrap();
        assert_eq!(a.server_max_window_bits, Some(9));
        assert_eq!(a.window(), Window::Rle);
        assert!(a.header_value().ends_with("; server_max_window_bits=9"));
        let a = agreed(&["permessage-deflate; server_max_window_bits=12"]).unwrap();
        assert_eq!(a.window(), Window::Short);
        let a = agreed(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert_eq!(a.window(), Window::Full);
        assert_eq!(PLAIN.window(), Window::Full);
    }

    #[test]
    fn an_offer_we_cannot_honour_is_declined_and_the_next_one_taken() {
        let bad = [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=20",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
        ];
        for offer in bad {
            assert_eq!(agreed(&[offer]), None, "{offer}");
        }
        let two = "permessage-deflate; mystery, permessage-deflate; server_max_window_bits=10";
        let a = agreed(&[two]).unwrap();
        assert_eq!(a.server_max_window_bits, Some(10));
        let headers = [
            "permessage-deflate; server_max_window_bits=99",
            "permessage-deflate",
        ];
        assert_eq!(agreed(&headers), Some(PLAIN));
    }
}
