//! Parsers for the variables whose values have a shape of their own: addresses,
//! paths, URLs, origins, names. Each error is the message after the variable name.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::auth::Keys;
use crate::channel::validate_pattern;

/// Schemes the NATS client understands.
const NATS_SCHEMES: &[&str] = &["nats", "tls", "ws", "wss"];

/// `:port` listens on every interface; `host:port` is resolved, first address wins.
pub(super) fn ws_addr(s: &str) -> Result<SocketAddr, String> {
    let shape = || format!("must be \":port\" or \"host:port\", got {s:?}");
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(shape)?;
    let port: u16 = port.parse().map_err(|_| shape())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("host {host:?} cannot be resolved ({e}), got {s:?}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("host {host:?} resolves to no address, got {s:?}"))
}

/// An HTTP path of our own: absolute, nothing the router would split on.
pub(super) fn path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("must start with '/', got {s:?}"));
    }
    if s.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return Err(format!(
            "must be a path without spaces, '?' or '#', got {s:?}"
        ));
    }
    Ok(s.to_string())
}

/// `WS_ECHO_PATH`: empty disables the endpoint.
pub(super) fn optional_path(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        path(s).map(Some)
    }
}

/// One NATS server: `scheme://[user[:password]@]host[:port]`, or `host:port`, which
/// becomes `nats://host:port`.
/// `WS_COMPRESSION`: on or off (true/false, 1/0 and yes/no too).
pub(super) fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("must be on or off, got {s:?}")),
    }
}

/// How `on_off` values are shown.
pub(super) fn on_off_str(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

pub(super) fn nats_url(entry: &str) -> Result<String, String> {
    let (bare, rest) = match entry.split_once("://") {
        Some((scheme, rest)) if NATS_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) => {
            (false, rest)
        }
        Some(_) => return Err(scheme_message()),
        None => (true, entry),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(host_port);
    if bare && port.is_none() {
        // A bare word is more likely a typo than a host relying on the default port.
        return Err(scheme_message());
    }
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("has an invalid port {port:?}"));
    }
    Ok(if bare {
        format!("nats://{entry}")
    } else {
        entry.to_string()
    })
}

fn scheme_message() -> String {
    "must start with nats://, tls://, ws:// or wss:// (or be host:port)".to_string()
}

/// `host:port`, `[v6]:port`, `host`; the port is None when absent.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(v6) = s.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (v6, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    }
}

/// A subscription pattern for NATS_SUBJECTS.
pub(super) fn subject(entry: &str) -> Result<String, String> {
    if validate_pattern(entry).is_ok() {
        Ok(entry.to_string())
    } else {
        Err(
            "is not a valid subject pattern: tokens separated by '.', '*' for one whole token, \
             '>' only as the last token, no spaces, at most 256 bytes"
                .to_string(),
        )
    }
}

/// An Origin header value: `scheme://host[:port]`, which never has a path, so
/// `https://example.com/` would never match and is refused.
pub(super) fn origin(entry: &str) -> Result<String, String> {
    let ok = entry.split_once("://").is_some_and(|(scheme, host)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !host.is_empty()
            && !host.contains('/')
    });
    if ok {
        Ok(entry.to_string())
    } else {
        Err(
            "must be an origin like https://example.com (scheme, host, optional port; no path)"
                .to_string(),
        )
    }
}

/// JetStream stream and consumer names: letters, digits, '_' and '-' only.
pub(super) fn js_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(is_name_char) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "must contain only A-Z, a-z, 0-9, '_' and '-', got {s:?}"
        ))
    }
}

/// JS_CONSUMER: empty means derive from the host name.
pub(super) fn optional_js_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        js_name(s)
    }
}

/// JS_REPLICAS: `auto` (None) or 1-5, JetStream's limit.
pub(super) fn js_replicas(s: &str) -> Result<Option<u8>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match s.parse::<u8>() {
        Ok(n @ 1..=5) => Ok(Some(n)),
        _ => Err(format!("must be auto or 1-5, got {s:?}")),
    }
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// NATS_CREDS_FILE: checked now so a typo fails the deploy, not the first reconnect.
pub(super) fn creds_file(s: &str) -> Result<Option<PathBuf>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    std::fs::File::open(s).map_err(|e| format!("{s:?} cannot be read: {e}"))?;
    Ok(Some(PathBuf::from(s)))
}

/// WS_AUTH_JWT_SECRET: long enough for HS256 (the error never quotes it), made
/// into its key once, here.
pub(super) fn jwt_secret(s: &str) -> Result<JwtSecret, String> {
    Ok(JwtSecret {
        text: s.to_string(),
        keys: Keys::from_secret(s)?,
    })
}

/// WS_AUTH_JWT_SECRET as given (for the table, masked, and the reload diff) and
/// its key. No Debug: it would show the secret.
#[derive(Clone)]
pub struct JwtSecret {
    pub text: String,
    pub keys: Keys,
}

/// WS_AUTH_JWT_KEY_FILE: a readable file of PEM public keys (RS256 or ES256),
/// read now; empty = none.
pub(super) fn key_file(s: &str) -> Result<Option<KeyFile>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(s).map_err(|e| format!("{s:?} cannot be read: {e}"))?;
    let keys = Keys::from_pem(&text).map_err(|e| format!("{s:?} {e}"))?;
    Ok(Some(KeyFile {
        path: PathBuf::from(s),
        keys,
    }))
}

/// The key file as read at load (a reload reads it again: key rotation).
#[derive(Clone, Debug)]
pub struct KeyFile {
    pub path: PathBuf,
    pub keys: Keys,
}

/// Replaces the secret in a URL's user info: `nats://u:***@h`, and a token
/// (`nats://tok@h`) as `nats://***@h`. Text that is not such a URL is returned as is.
pub(crate) fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}://{user}{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_addrs() {
        let ok: &[(&str, &str)] = &[
            (":3002", "0.0.0.0:3002"),
            ("127.0.0.1:3002", "127.0.0.1:3002"),
            ("0.0.0.0:0", "0.0.0.0:0"),
            ("[::1]:3002", "[::1]:3002"),
        ];
        for &(text, addr) in ok {
            assert_eq!(ws_addr(text), Ok(addr.parse().unwrap()), "{text}");
        }
        assert_eq!(ws_addr("localhost:3002").unwrap().port(), 3002);
        assert!(ws_addr("localhost:3002").unwrap().ip().is_loopback());
        for text in ["", "3002", ":", ":port", "host:99999"] {
            assert_eq!(
                ws_addr(text),
                Err(format!("must be \":port\" or \"host:port\", got {text:?}")),
                "{text}"
            );
        }
        assert!(
            ws_addr("no-such-host.invalid:3002")
                .unwrap_err()
                .contains("cannot be resolved")
        );
    }

    #[test]
    fn nats_urls() {
        let ok: &[(&str, &str)] = &[
            ("nats://10.0.0.5:4222", "nats://10.0.0.5:4222"),
            ("tls://nats.example.com", "tls://nats.example.com"),
            ("ws://h:8080/path", "ws://h:8080/path"),
            ("wss://u:p@h:443", "wss://u:p@h:443"),
            ("NATS://h:4222", "NATS://h:4222"),
            ("h:4222", "nats://h:4222"),
            ("[::1]:4222", "nats://[::1]:4222"),
            ("nats://[::1]:4222", "nats://[::1]:4222"),
        ];
        for &(entry, url) in ok {
            assert_eq!(nats_url(entry), Ok(url.to_string()), "{entry}");
        }
        let bad: &[(&str, &str)] = &[
            (
                "http://h:4222",
                "must start with nats://, tls://, ws:// or wss:// (or be host:port)",
            ),
            (
                "natshost",
                "must start with nats://, tls://, ws:// or wss:// (or be host:port)",
            ),
            ("nats://:4222", "has no host"),
            ("nats://h:42x", "has an invalid port \"42x\""),
            ("nats://h:0", "has an invalid port \"0\""),
        ];
        for &(entry, message) in bad {
            assert_eq!(nats_url(entry), Err(message.to_string()), "{entry}");
        }
    }

    #[test]
    fn masks_url_secrets() {
        let cases: &[(&str, &str)] = &[
            ("nats://u:secret@h:4222", "nats://u:***@h:4222"),
            ("nats://token@h:4222", "nats://***@h:4222"),
            ("nats://h:4222", "nats://h:4222"),
            ("ws://h/a@b", "ws://h/a@b"),
            ("plain", "plain"),
        ];
        for &(url, shown) in cases {
            assert_eq!(mask_url_password(url), shown);
        }
    }

    #[test]
    fn paths_origins_and_names() {
        assert_eq!(path("/ws"), Ok("/ws".to_string()));
        assert_eq!(
            path("ws"),
            Err("must start with '/', got \"ws\"".to_string())
        );
        assert_eq!(
            path("/ws?x=1"),
            Err("must be a path without spaces, '?' or '#', got \"/ws?x=1\"".to_string())
        );
        assert_eq!(optional_path(""), Ok(None));
        assert!(origin("https://example.com").is_ok());
        assert!(origin("http://localhost:3000").is_ok());
        for bad in ["example.com", "https://example.com/", "://x", "https://"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        assert_eq!(js_name("odin-ws_1"), Ok("odin-ws_1".to_string()));
        assert_eq!(
            js_name("a.b"),
            Err("must contain only A-Z, a-z, 0-9, '_' and '-', got \"a.b\"".to_string())
        );
        assert!(js_name("").is_err());
        assert_eq!(optional_js_name(""), Ok(String::new()));
        assert_eq!(js_replicas("auto"), Ok(None));
        assert_eq!(js_replicas("3"), Ok(Some(3)));
        assert_eq!(
            js_replicas("0"),
            Err("must be auto or 1-5, got \"0\"".into())
        );
        assert!(js_replicas("6").is_err() && js_replicas("-1").is_err());
    }

    #[test]
    fn creds_file_must_be_readable() {
        assert_eq!(creds_file(""), Ok(None));
        let path = std::env::temp_dir().join(format!("odin-ws-creds-{}.creds", std::process::id()));
        std::fs::write(&path, "creds").unwrap();
        assert_eq!(creds_file(path.to_str().unwrap()), Ok(Some(path.clone())));
        std::fs::remove_file(&path).unwrap();
        let err = creds_file("/nonexistent/x.creds").unwrap_err();
        assert!(
            err.starts_with("\"/nonexistent/x.creds\" cannot be read: "),
            "{err}"
        );
    }
}
