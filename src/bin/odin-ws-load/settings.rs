//! Settings of the load tool and the publisher: every one from a flag of the same
//! name in lower case (`--target_connections 100`, `--target-connections=100`) or
//! else from the environment (`TARGET_CONNECTIONS=100`), else its default.
//!
//! Values are parsed as given first, then checked against each other.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

use odin_ws::config::parse_duration;

// Names and defaults, in one place.
pub const WS_URL: &str = "WS_URL";
pub const DEFAULT_WS_URL: &str = "ws://127.0.0.1:3002/ws";
pub const PROTOCOL: &str = "PROTOCOL";
pub const TARGET_CONNECTIONS: &str = "TARGET_CONNECTIONS";
/// The seed's sustained test: 7,000 clients.
pub const DEFAULT_TARGET_CONNECTIONS: u32 = 7_000;
pub const RAMP_RATE: &str = "RAMP_RATE";
/// Connections started per second; the seed's 100/s.
pub const DEFAULT_RAMP_RATE: f64 = 100.0;
pub const CONNECTION_TIMEOUT: &str = "CONNECTION_TIMEOUT";
/// Milliseconds for TCP connect plus the upgrade handshake (the seed's 10 s).
pub const DEFAULT_CONNECTION_TIMEOUT_MS: u64 = 10_000;
pub const DURATION: &str = "DURATION";
/// How long the tool holds its clients after the ramp (or the publisher runs).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
pub const CHANNELS: &str = "CHANNELS";
/// Clients spread over ten channels; the publisher publishes on all ten.
pub const DEFAULT_CHANNELS: &str = "odin.bench.{i%10}";
pub const CHANNELS_PER_CLIENT: &str = "CHANNELS_PER_CLIENT";
pub const WILDCARDS: &str = "WILDCARDS";
pub const SOURCE_ADDRS: &str = "SOURCE_ADDRS";
/// Connections per source address when SOURCE_ADDRS is `auto`: under the ~28k
/// ephemeral ports Linux has per (source, destination) pair, with room to spare.
pub const CONNECTIONS_PER_SOURCE: u32 = 20_000;
pub const STOP_READING_PERCENT: &str = "STOP_READING_PERCENT";
pub const STOP_AFTER_MESSAGES: &str = "STOP_AFTER_MESSAGES";
pub const HEALTH_URL: &str = "HEALTH_URL";
pub const HEALTH_INTERVAL: &str = "HEALTH_INTERVAL";
/// The 5 s /health sampling period.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const PROGRESS_INTERVAL: &str = "PROGRESS_INTERVAL";
/// A progress line on stderr this often, so a long run is never silent.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
pub const LABEL: &str = "LABEL";
// Reach (issue 16): how the clients connect, and what the publisher sends.
pub const TRANSPORT: &str = "TRANSPORT";
pub const COMPRESSION: &str = "COMPRESSION";
pub const PAYLOAD: &str = "PAYLOAD";
/// `resume`: clients the server closes come back with `since` (resume.rs).
pub const RECONNECT: &str = "RECONNECT";
/// `on`: the JSON line carries the latency and connect histograms, so the reports
/// of several processes merge (scripts/bench-report --merge).
pub const HISTOGRAMS: &str = "HISTOGRAMS";

pub const PUBLISH_URL: &str = "PUBLISH_URL";
pub const DEFAULT_PUBLISH_URL: &str = "nats://127.0.0.1:4222";
pub const PUBLISH_TOKEN: &str = "PUBLISH_TOKEN";
pub const RATE: &str = "RATE";
/// Messages per second over all channels.
pub const DEFAULT_RATE: f64 = 250.0;
pub const SIZE: &str = "SIZE";
/// Payload bytes: the issue's ~200 B market-data message.
pub const DEFAULT_SIZE: usize = 200;
pub const COUNT: &str = "COUNT";

/// What the clients speak inside WebSocket frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// odin-ws's JSON protocol (also the Node peer's).
    Odin,
    /// NATS's text protocol, for nats-server's own WebSocket listener.
    Nats,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Odin => "odin",
            Protocol::Nats => "nats",
        }
    }
}

/// How a client reaches the server's feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket on WS_URL's path.
    WebSocket,
    /// Server-Sent Events: `GET /sse?channels=...` on WS_URL's host (odin only).
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// What every client of a run speaks: the transport, and whether it offers
/// permessage-deflate (WebSocket only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    pub transport: Transport,
    pub compression: bool,
}

/// The publisher's payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `ts_us`, `n` and `x` padding: cheap, and all but incompressible to nothing.
    Pad,
    /// Order-book and trade JSON (symbols, prices, sizes, timestamps): what
    /// compression figures must be measured with.
    Market,
}

/// A `ws://host:port/path` URL, resolved once.
#[derive(Clone, Debug)]
pub struct WsUrl {
    pub text: String,
    pub host: String,
    pub addr: SocketAddrV4,
    pub path: String,
}

#[derive(Clone, Debug)]
pub struct LoadSettings {
    pub url: WsUrl,
    pub protocol: Protocol,
    pub wire: Wire,
    pub target: u32,
    pub ramp_rate: f64,
    pub connection_timeout: Duration,
    pub duration: Duration,
    pub channels: Vec<Template>,
    pub channels_per_client: u32,
    pub wildcards: Vec<String>,
    /// Source addresses 127.0.0.1..=127.0.0.N, or none when the target is not loopback.
    pub sources: Vec<Ipv4Addr>,
    pub stop_reading_percent: f64,
    pub stop_after_messages: u64,
    /// RECONNECT=resume.
    pub reconnect: bool,
    /// `host:port` and path of /health, or None.
    pub health: Option<(SocketAddrV4, String)>,
    pub health_interval: Duration,
    /// None: no progress lines (`off` or 0).
    pub progress_interval: Option<Duration>,
    pub label: String,
    /// HISTOGRAMS=on.
    pub histograms: bool,
}

#[derive(Clone, Debug)]
pub enum PublishTarget {
    Nats(String),
    Http { addr: SocketAddrV4, token: String },
}

#[derive(Clone, Debug)]
pub struct PublishSettings {
    pub target: PublishTarget,
    pub rate: f64,
    pub size: usize,
    pub payload: Payload,
    pub channels: Vec<String>,
    pub duration: Duration,
    pub count: u64,
    pub label: String,
}

/// One channel template: literal text with at most one `{i}` or `{i%N}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    prefix: String,
    hole: Hole,
    suffix: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hole {
    None,
    Index,
    Modulo(u32),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let Some(open) = text.find('{') else {
            return Ok(Template {
                prefix: text.to_string(),
                hole: Hole::None,
                suffix: String::new(),
            });
        };
        let close = text[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed '{{' in channel template {text:?}"))?;
        let inner = &text[open + 1..close];
        let hole = match inner.strip_prefix("i") {
            Some("") => Hole::Index,
            Some(m) => match m.strip_prefix('%').and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n > 0 => Hole::Modulo(n),
                _ => return Err(format!("bad {{{inner}}} in {text:?}: use {{i}} or {{i%N}}")),
            },
            None => return Err(format!("bad {{{inner}}} in {text:?}: use {{i}} or {{i%N}}")),
        };
        let suffix = &text[close + 1..];
        if suffix.contains('{') {
            return Err(format!("more than one hole in channel template {text:?}"));
        }
        Ok(Template {
            prefix: text[..open].to_string(),
            hole,
            suffix: suffix.to_string(),
        })
    }

    /// The channels of client `i`: `{i%N}` gives `per_client` consecutive values
    /// starting at `i * per_client`, so clients spread evenly over the N channels.
    pub fn for_client(&self, i: u32, per_client: u32, out: &mut Vec<String>) {
        match self.hole {
            Hole::None => out.push(self.prefix.clone()),
            Hole::Index => out.push(format!("{}{i}{}", self.prefix, self.suffix)),
            Hole::Modulo(n) => {
                let base = u64::from(i) * u64::from(per_client);
                for j in 0..u64::from(per_client.min(n)) {
                    let k = (base + j) % u64::from(n);
                    out.push(format!("{}{k}{}", self.prefix, self.suffix));
                }
            }
        }
    }

    /// Every channel the template can name, for the publisher.
    pub fn all(&self) -> Result<Vec<String>, String> {
        match self.hole {
            Hole::None => Ok(vec![self.prefix.clone()]),
            Hole::Index => Err(format!(
                "the publisher cannot expand {{i}} in {}{{i}}{}: use {{i%N}}",
                self.prefix, self.suffix
            )),
            Hole::Modulo(n) => Ok((0..n)
                .map(|k| format!("{}{k}{}", self.prefix, self.suffix))
                .collect()),
        }
    }
}

/// Flags and environment, looked up by the variable's name.
pub struct Source {
    flags: HashMap<String, String>,
    env: HashMap<String, String>,
}

impl Source {
    /// Parses `--name value` and `--name=value` pairs (name in lower case, `-` or `_`).
    pub fn new(args: &[String], env: HashMap<String, String>) -> Result<Source, String> {
        let mut flags = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None => (
                    flag,
                    it.next()
                        .ok_or_else(|| format!("--{flag} needs a value"))?
                        .clone(),
                ),
            };
            flags.insert(name.replace('-', "_").to_ascii_uppercase(), value);
        }
        Ok(Source { flags, env })
    }

    pub fn from_process(args: &[String]) -> Result<Source, String> {
        Source::new(args, std::env::vars().collect())
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.flags
            .get(name)
            .or_else(|| self.env.get(name))
            .map(String::as_str)
    }

    /// Flags that no setting read: a typo must not pass silently.
    fn check_flags_used(&self, known: &[&str]) -> Result<(), String> {
        let mut unknown: Vec<_> = self
            .flags
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("--{}", k.to_ascii_lowercase()))
            .collect();
        unknown.sort();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown flag(s): {}", unknown.join(", ")))
        }
    }
}

/// Collects every error so the user sees them all at once.
struct Reader<'a> {
    source: &'a Source,
    errors: Vec<String>,
    names: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(source: &'a Source) -> Self {
        Reader {
            source,
            errors: Vec::new(),
            names: Vec::new(),
        }
    }

    fn get<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        debug_assert!(
            crate::help::documented(name),
            "{name} is missing from odin-ws-load --help"
        );
        self.names.push(name);
        match self.source.raw(name) {
            None => default,
            Some(text) => parse(text.trim()).unwrap_or_else(|e| {
                self.errors.push(format!("{name}={text:?}: {e}"));
                default
            }),
        }
    }

    fn string(&mut self, name: &'static str, default: &str) -> String {
        self.get(name, default.to_string(), |s| Ok(s.to_string()))
    }

    fn number<T: std::str::FromStr>(&mut self, name: &'static str, default: T) -> T {
        self.get(name, default, |s| {
            s.parse().map_err(|_| "expected a number".to_string())
        })
    }

    fn duration(&mut self, name: &'static str, default: Duration) -> Duration {
        self.get(name, default, parse_duration)
    }

    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.errors.push(message());
        }
    }

    fn finish(self) -> Result<(), String> {
        let known = self.names.clone();
        let mut errors = self.errors;
        if let Err(e) = self.source.check_flags_used(&known) {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// `CONNECTION_TIMEOUT` is milliseconds as the seed wrote it; a Go duration works too.
fn parse_millis_or_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => parse_duration(s),
    }
}

/// A duration, or `off` (or 0) for none.
fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    if s == "off" {
        return Ok(None);
    }
    parse_duration(s).map(|d| Some(d).filter(|d| !d.is_zero()))
}

fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_templates(s: &str) -> Result<Vec<Template>, String> {
    parse_list(s).iter().map(|t| Template::parse(t)).collect()
}

/// Resolves `host:port` to one IPv4 address.
fn resolve(hostport: &str) -> Result<SocketAddrV4, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .find_map(|a| match a {
            std::net::SocketAddr::V4(v4) => Some(v4),
            std::net::SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| format!("{hostport} has no IPv4 address"))
}

/// Splits `scheme://host[:port][/path]`.
fn split_url<'s>(s: &'s str, scheme: &str, default_port: u16) -> Result<(String, &'s str), String> {
    let rest = s
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("expected {scheme}://host:port/path"))?;
    let (hostport, path) = match rest.find('/') {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err("missing host".into());
    }
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    Ok((hostport, path))
}

pub fn parse_ws_url(s: &str) -> Result<WsUrl, String> {
    let (hostport, path) = split_url(s, "ws", 80)?;
    Ok(WsUrl {
        text: s.to_string(),
        addr: resolve(&hostport)?,
        host: hostport,
        path: path.to_string(),
    })
}

fn parse_http_addr(s: &str) -> Result<(SocketAddrV4, String), String> {
    let (hostport, path) = split_url(s, "http", 80)?;
    Ok((resolve(&hostport)?, path.to_string()))
}

/// `auto`, `N` (127.0.0.1..=127.0.0.N) or `A-B` (127.0.0.A..=127.0.0.B), so that
/// several load processes can use different source addresses.
fn parse_sources(s: &str) -> Result<Option<(u8, u8)>, String> {
    if s == "auto" {
        return Ok(None);
    }
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u8>(), b.trim().parse::<u8>()),
        None => (Ok(1), s.parse::<u8>()),
    };
    match (a, b) {
        (Ok(a), Ok(b)) if a >= 1 && a <= b && b < 255 => Ok(Some((a, b))),
        _ => Err("expected auto, N or A-B with 1 <= A <= B <= 254".into()),
    }
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    match s {
        "ws" => Ok(Transport::WebSocket),
        "sse" => Ok(Transport::Sse),
        _ => Err("expected ws or sse".into()),
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

fn parse_payload(s: &str) -> Result<Payload, String> {
    match s {
        "pad" => Ok(Payload::Pad),
        "market" => Ok(Payload::Market),
        _ => Err("expected pad or market".into()),
    }
}

fn parse_reconnect(s: &str) -> Result<bool, String> {
    match s {
        "off" => Ok(false),
        "resume" => Ok(true),
        _ => Err("expected off or resume".into()),
    }
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "odin" => Ok(Protocol::Odin),
        "nats" => Ok(Protocol::Nats),
        _ => Err("expected odin or nats".into()),
    }
}

impl LoadSettings {
    pub fn read(source: &Source) -> Result<LoadSettings, String> {
        let mut r = Reader::new(source);
        let fallback_url = parse_ws_url(DEFAULT_WS_URL).expect("the default URL is valid");
        let url = r.get(WS_URL, fallback_url, parse_ws_url);
        let protocol = r.get(PROTOCOL, Protocol::Odin, parse_protocol);
        let transport = r.get(TRANSPORT, Transport::WebSocket, parse_transport);
        let compression = r.get(COMPRESSION, false, parse_on_off);
        let target = r.number(TARGET_CONNECTIONS, DEFAULT_TARGET_CONNECTIONS);
        let ramp_rate = r.number(RAMP_RATE, DEFAULT_RAMP_RATE);
        let connection_timeout = r.get(
            CONNECTION_TIMEOUT,
            Duration::from_millis(DEFAULT_CONNECTION_TIMEOUT_MS),
            parse_millis_or_duration,
        );
        let duration = r.duration(DURATION, DEFAULT_DURATION);
        let default_channels = parse_templates(DEFAULT_CHANNELS).expect("valid default");
        let channels = r.get(CHANNELS, default_channels, parse_templates);
        let channels_per_client = r.number(CHANNELS_PER_CLIENT, 1u32);
        let wildcards = r.get(WILDCARDS, Vec::new(), |s| Ok(parse_list(s)));
        let sources = r.get(SOURCE_ADDRS, None, parse_sources);
        let stop_reading_percent = r.number(STOP_READING_PERCENT, 0.0f64);
        let stop_after_messages = r.number(STOP_AFTER_MESSAGES, 0u64);
        let default_health = match protocol {
            Protocol::Odin => format!("http://{}/health", url.host),
            Protocol::Nats => String::new(),
        };
        let health_text = r.string(HEALTH_URL, &default_health);
        let health = if health_text.is_empty() || health_text == "off" {
            None
        } else {
            match parse_http_addr(&health_text) {
                Ok(h) => Some(h),
                Err(e) => {
                    r.errors.push(format!("{HEALTH_URL}={health_text:?}: {e}"));
                    None
                }
            }
        };
        let health_interval = r.duration(HEALTH_INTERVAL, DEFAULT_HEALTH_INTERVAL);
        let progress_interval = r.get(
            PROGRESS_INTERVAL,
            Some(DEFAULT_PROGRESS_INTERVAL),
            parse_optional_duration,
        );
        let reconnect = r.get(RECONNECT, false, parse_reconnect);
        let label = r.string(LABEL, "");
        let histograms = r.get(HISTOGRAMS, false, parse_on_off);

        r.check(target > 0, || format!("{TARGET_CONNECTIONS} must be > 0"));
        r.check(
            protocol == Protocol::Odin || (transport, compression) == (Transport::WebSocket, false),
            || format!("{TRANSPORT}=sse and {COMPRESSION}=on need {PROTOCOL}=odin"),
        );
        r.check(transport == Transport::WebSocket || !compression, || {
            format!("{COMPRESSION}=on is permessage-deflate: it needs {TRANSPORT}=ws")
        });
        r.check(transport == Transport::WebSocket || !reconnect, || {
            format!(
                "{RECONNECT}=resume resubscribes with since over WebSocket: it needs {TRANSPORT}=ws"
            )
        });
        r.check(ramp_rate > 0.0, || format!("{RAMP_RATE} must be > 0"));
        r.check(!connection_timeout.is_zero(), || {
            format!("{CONNECTION_TIMEOUT} must be > 0")
        });
        r.check(channels_per_client > 0, || {
            format!("{CHANNELS_PER_CLIENT} must be > 0")
        });
        r.check((0.0..=100.0).contains(&stop_reading_percent), || {
            format!("{STOP_READING_PERCENT} must be 0-100")
        });
        r.check(!health_interval.is_zero(), || {
            format!("{HEALTH_INTERVAL} must be > 0")
        });
        r.finish()?;

        let (first, last) = sources.unwrap_or_else(|| {
            let n = target.div_ceil(CONNECTIONS_PER_SOURCE).clamp(1, 254) as u8;
            (1, n)
        });
        let sources = if url.addr.ip().is_loopback() {
            (first..=last)
                .map(|x| Ipv4Addr::new(127, 0, 0, x))
                .collect()
        } else {
            Vec::new()
        };
        Ok(LoadSettings {
            url,
            protocol,
            wire: Wire {
                transport,
                compression,
            },
            target,
            ramp_rate,
            connection_timeout,
            duration,
            channels,
            channels_per_client,
            wildcards,
            sources,
            stop_reading_percent,
            stop_after_messages,
            health,
            health_interval,
            progress_interval,
            reconnect,
            label,
            histograms,
        })
    }

    /// Every channel and pattern client `i` subscribes to.
    pub fn subscriptions(&self, i: u32) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.channels {
            t.for_client(i, self.channels_per_client, &mut out);
        }
        out.extend(self.wildcards.iter().cloned());
        out
    }

    /// Whether client `i` is one of the STOP_READING_PERCENT that stop reading
    /// once the ramp is done: every (100/p)-th client, spread over the ramp.
    pub fn stops_reading(&self, i: u32) -> bool {
        if self.stop_reading_percent <= 0.0 {
            return false;
        }
        let step = (100.0 / self.stop_reading_percent).round().max(1.0) as u32;
        i % step == step - 1
    }
}

impl PublishSettings {
    pub fn read(source: &Source) -> Result<PublishSettings, String> {
        let mut r = Reader::new(source);
        let url = r.string(PUBLISH_URL, DEFAULT_PUBLISH_URL);
        let token = r.string(PUBLISH_TOKEN, "");
        let rate = r.number(RATE, DEFAULT_RATE);
        let size = r.number(SIZE, DEFAULT_SIZE);
        let payload = r.get(PAYLOAD, Payload::Pad, parse_payload);
        let default_channels = parse_templates(DEFAULT_CHANNELS).expect("valid default");
        let templates = r.get(CHANNELS, default_channels, parse_templates);
        let duration = r.duration(DURATION, DEFAULT_DURATION);
        let count = r.number(COUNT, 0u64);
        let label = r.string(LABEL, "");

        let target = if url.starts_with("nats://") {
            Some(PublishTarget::Nats(url.clone()))
        } else {
            match parse_http_addr(&url) {
                Ok((addr, _)) => Some(PublishTarget::Http {
                    addr,
                    token: token.clone(),
                }),
                Err(e) => {
                    r.errors
                        .push(format!("{PUBLISH_URL}={url:?}: {e} (or nats://host:port)"));
                    None
                }
            }
        };
        let mut channels = Vec::new();
        for t in &templates {
            match t.all() {
                Ok(mut all) => channels.append(&mut all),
                Err(e) => r.errors.push(format!("{CHANNELS}: {e}")),
            }
        }
        r.check(rate > 0.0, || format!("{RATE} must be > 0"));
        r.check(!channels.is_empty(), || format!("{CHANNELS} is empty"));
        r.check(
            matches!(target, Some(PublishTarget::Nats(_))) || !token.is_empty(),
            || format!("{PUBLISH_TOKEN} is needed to publish over HTTP"),
        );
        r.finish()?;
        Ok(PublishSettings {
            target: target.expect("checked above"),
            rate,
            size,
            payload,
            channels,
            duration,
            count,
            label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(args: &[&str], env: &[(&str, &str)]) -> Source {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Source::new(&args, env).unwrap()
    }

    #[test]
    fn flags_win_over_environment_in_either_spelling() {
        let s = source(
            &["--target_connections", "100", "--ramp-rate=50"],
            &[("TARGET_CONNECTIONS", "9"), ("DURATION", "1m30s")],
        );
        let l = LoadSettings::read(&s).unwrap();
        assert_eq!(l.target, 100);
        assert_eq!(l.ramp_rate, 50.0);
        assert_eq!(l.duration, Duration::from_secs(90));
        assert_eq!(l.connection_timeout, Duration::from_secs(10));
        assert_eq!(l.progress_interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn progress_lines_can_be_turned_off() {
        for off in ["off", "0", "0s"] {
            let l = LoadSettings::read(&source(&["--progress_interval", off], &[])).unwrap();
            assert_eq!(l.progress_interval, None, "{off}");
        }
        let l = LoadSettings::read(&source(&[], &[("PROGRESS_INTERVAL", "1s")])).unwrap();
        assert_eq!(l.progress_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn connection_timeout_is_millis_or_duration() {
        let l = LoadSettings::read(&source(&[], &[("CONNECTION_TIMEOUT", "5000")])).unwrap();
        assert_eq!(l.connection_timeout, Duration::from_secs(5));
        let l = LoadSettings::read(&source(&["--connection_timeout", "2s"], &[])).unwrap();
        assert_eq!(l.connection_timeout, Duration::from_secs(2));
    }

    #[test]
    fn every_error_is_reported_with_its_name() {
        let err = LoadSettings::read(&source(
            &["--target_connections", "x", "--bogus", "1"],
            &[("DURATION", "30")],
        ))
        .unwrap_err();
        assert!(err.contains("TARGET_CONNECTIONS=\"x\""), "{err}");
        assert!(err.contains("DURATION=\"30\""), "{err}");
        assert!(err.contains("--bogus"), "{err}");
    }

    #[test]
    fn templates_spread_clients_over_channels() {
        let t = Template::parse("odin.e.{i%500}.t").unwrap();
        let mut out = Vec::new();
        t.for_client(3, 20, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(out[0], "odin.e.60.t");
        assert_eq!(out[19], "odin.e.79.t");
        out.clear();
        t.for_client(24, 20, &mut out);
        assert_eq!(out[0], "odin.e.480.t");
        assert_eq!(out[19], "odin.e.499.t");
        assert_eq!(t.all().unwrap().len(), 500);
        let mut out = Vec::new();
        Template::parse("u.{i}").unwrap().for_client(7, 3, &mut out);
        assert_eq!(out, ["u.7"]);
        assert!(Template::parse("a.{j}").is_err());
        assert!(Template::parse("a.{i%0}").is_err());
        assert!(Template::parse("a.{i}.{i}").is_err());
    }

    #[test]
    fn sources_cycle_over_loopback_addresses() {
        let l = LoadSettings::read(&source(&["--target_connections", "45000"], &[])).unwrap();
        assert_eq!(l.sources.len(), 3);
        assert_eq!(l.sources[2], Ipv4Addr::new(127, 0, 0, 3));
        let l = LoadSettings::read(&source(&["--source_addrs", "8"], &[])).unwrap();
        assert_eq!(l.sources.len(), 8);
        let l = LoadSettings::read(&source(&["--source_addrs", "3-4"], &[])).unwrap();
        assert_eq!(
            l.sources,
            [Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)]
        );
        assert!(LoadSettings::read(&source(&["--source_addrs", "4-3"], &[])).is_err());
    }

    #[test]
    fn stop_reading_picks_one_in_a_hundred() {
        let l = LoadSettings::read(&source(&["--stop_reading_percent", "1"], &[])).unwrap();
        assert_eq!((0..7000).filter(|&i| l.stops_reading(i)).count(), 70);
    }

    #[test]
    fn transport_compression_and_payload_are_checked_together() {
        let l = LoadSettings::read(&source(&["--compression", "on"], &[])).unwrap();
        assert_eq!(l.wire.transport, Transport::WebSocket);
        assert!(l.wire.compression);
        let l = LoadSettings::read(&source(&[], &[("TRANSPORT", "sse")])).unwrap();
        assert_eq!(
            (l.wire.transport, l.wire.compression),
            (Transport::Sse, false)
        );
        let err = LoadSettings::read(&source(&["--transport", "sse", "--compression", "on"], &[]))
            .unwrap_err();
        assert!(err.contains("needs TRANSPORT=ws"), "{err}");
        let err = LoadSettings::read(&source(&["--transport", "sse", "--protocol", "nats"], &[]))
            .unwrap_err();
        assert!(err.contains("PROTOCOL=odin"), "{err}");
        let err = LoadSettings::read(&source(&["--transport", "tcp"], &[])).unwrap_err();
        assert!(
            err.contains("TRANSPORT=\"tcp\": expected ws or sse"),
            "{err}"
        );
        assert!(!LoadSettings::read(&source(&[], &[])).unwrap().histograms);
        let l = LoadSettings::read(&source(&[], &[("HISTOGRAMS", "on")])).unwrap();
        assert!(l.histograms);
        let err = LoadSettings::read(&source(&["--histograms", "yes"], &[])).unwrap_err();
        assert!(err.contains("HISTOGRAMS=\"yes\""), "{err}");
        let p = PublishSettings::read(&source(&["--payload", "market"], &[])).unwrap();
        assert_eq!(p.payload, Payload::Market);
        assert!(PublishSettings::read(&source(&["--payload", "json"], &[])).is_err());
    }

    #[test]
    fn publisher_expands_templates_and_needs_a_token_for_http() {
        let p = PublishSettings::read(&source(&[], &[])).unwrap();
        assert_eq!(p.channels.len(), 10);
        assert!(matches!(p.target, PublishTarget::Nats(_)));
        let err = PublishSettings::read(&source(&["--publish_url", "http://127.0.0.1:9"], &[]))
            .unwrap_err();
        assert!(err.contains("PUBLISH_TOKEN"), "{err}");
        let p = PublishSettings::read(&source(
            &[
                "--publish_url",
                "http://127.0.0.1:9",
                "--channels",
                "a.{i%3},b",
            ],
            &[("PUBLISH_TOKEN", "t")],
        ))
        .unwrap();
        assert_eq!(p.channels, ["a.0", "a.1", "a.2", "b"]);
    }
}
