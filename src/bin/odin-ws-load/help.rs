//! `odin-ws-load --help`: the modes and every setting with its default and meaning,
//! built from the same constants the settings are read with.

use crate::settings::*;

/// One row of a settings table: name, default, meaning.
type Row = (&'static str, String, &'static str);

fn load_rows() -> Vec<Row> {
    vec![
        (WS_URL, DEFAULT_WS_URL.into(), "server to load"),
        (
            PROTOCOL,
            "odin".into(),
            "odin (odin-ws's JSON protocol) or nats (NATS protocol in WebSocket frames, for nats-server's own listener)",
        ),
        (
            TARGET_CONNECTIONS,
            DEFAULT_TARGET_CONNECTIONS.to_string(),
            "clients to open",
        ),
        (
            RAMP_RATE,
            DEFAULT_RAMP_RATE.to_string(),
            "connections started per second",
        ),
        (
            CONNECTION_TIMEOUT,
            DEFAULT_CONNECTION_TIMEOUT_MS.to_string(),
            "ms for TCP connect + upgrade (a duration like 5s works too)",
        ),
        (
            DURATION,
            "1m".into(),
            "how long to hold the clients after the ramp",
        ),
        (
            CHANNELS,
            DEFAULT_CHANNELS.into(),
            "comma-separated channel templates: {i} is the client's index, {i%N} spreads clients over N channels",
        ),
        (
            CHANNELS_PER_CLIENT,
            "1".into(),
            "with {i%N}: consecutive channels each client takes",
        ),
        (
            WILDCARDS,
            "(none)".into(),
            "comma-separated patterns every client also subscribes to",
        ),
        (
            SOURCE_ADDRS,
            "auto".into(),
            "source addresses 127.0.0.1..N (N) or 127.0.0.A..B (A-B); auto: one per 20,000 clients",
        ),
        (
            STOP_READING_PERCENT,
            "0".into(),
            "share of clients that stop reading after the ramp (counted apart)",
        ),
        (
            STOP_AFTER_MESSAGES,
            "0".into(),
            "stop once this many messages arrived (0: never)",
        ),
        (
            HEALTH_URL,
            "http://<WS_URL host>/health".into(),
            "/health to sample (odin; nats: off); off to skip",
        ),
        (HEALTH_INTERVAL, "5s".into(), "how often /health is sampled"),
        (
            PROGRESS_INTERVAL,
            "10s".into(),
            "a progress line on stderr this often; off for none",
        ),
        (
            TRANSPORT,
            "ws".into(),
            "ws (WebSocket on WS_URL) or sse (GET /sse?channels=... on WS_URL's host; each event's data read in place and checked as a ws message; odin only)",
        ),
        (
            COMPRESSION,
            "off".into(),
            "on: every client offers permessage-deflate; a compressed message is inflated, or is equal byte for byte to one inflated before and takes its text (odin-ws sends one copy per broadcast), then checked as uncompressed (ws, odin only)",
        ),
        (LABEL, "(empty)".into(), "copied into the JSON line"),
        (
            HISTOGRAMS,
            "off".into(),
            "on: the JSON line carries the latency and connect histograms (histograms_us), to merge several processes' reports",
        ),
        (
            RECONNECT,
            "off".into(),
            "resume: a client the server closes comes back (RAMP_RATE/s) with since its last seq",
        ),
    ]
}

fn publish_rows() -> Vec<Row> {
    vec![
        (
            PUBLISH_URL,
            DEFAULT_PUBLISH_URL.into(),
            "nats://host:port, or http://host:port for odin-ws's POST /publish",
        ),
        (
            PUBLISH_TOKEN,
            "(empty)".into(),
            "bearer token for http:// (the server's WS_PUBLISH_TOKEN)",
        ),
        (
            RATE,
            DEFAULT_RATE.to_string(),
            "messages per second over all channels",
        ),
        (
            SIZE,
            DEFAULT_SIZE.to_string(),
            "payload bytes (market: about this many)",
        ),
        (
            PAYLOAD,
            "pad".into(),
            "pad ({ts_us,n} and x padding) or market (order-book JSON: symbol, prices, sizes, timestamps)",
        ),
        (
            CHANNELS,
            DEFAULT_CHANNELS.into(),
            "templates as above; {i%N} publishes round-robin on all N",
        ),
        (DURATION, "1m".into(), "how long to publish"),
        (
            COUNT,
            "0".into(),
            "stop after this many messages (0: no limit)",
        ),
        (LABEL, "(empty)".into(), "copied into the JSON line"),
    ]
}

/// Whether a setting read by the tool appears in the help (checked in debug builds).
pub fn documented(name: &str) -> bool {
    load_rows()
        .iter()
        .chain(publish_rows().iter())
        .any(|(n, _, _)| *n == name)
}

fn table(out: &mut String, rows: &[Row]) {
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let default_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (name, default, meaning) in rows {
        out.push_str(&format!(
            "  {name:<name_width$}  {default:<default_width$}  {meaning}\n"
        ));
    }
}

pub const SUBSCRIBE_USAGE: &str = "\
usage: odin-ws-load subscribe [--count N] [--timeout DURATION] URL CHANNEL...

Connects to odin-ws at URL (ws://host:port/path), subscribes to the CHANNELs
(patterns like token.*.price allowed) and prints each message frame on stdout as
one JSON line, exactly as received. The server's welcome, subscribed ack, errors
and gaps go to stderr, one readable line each.

  --count N           exit after N messages (default 0: run until stopped)
  --timeout DURATION  for TCP connect + upgrade (default 10s)

Exits 0 on Ctrl-C, after --count messages, or when the server closes normally
(1000, 1001); 1 with a one-line error when it cannot connect, the upgrade is
refused (the HTTP status is named) or the server closes with an error code.

example:
  odin-ws-load subscribe ws://127.0.0.1:3002/ws 'token.BTC.trades' 'token.*.price'";

pub fn text() -> String {
    let mut out = String::from(
        "\
usage:
  odin-ws-load [--setting value ...]             load run: open clients, hold, report
  odin-ws-load publish [--setting value ...]     publish timestamped messages
  odin-ws-load subscribe [--count N] URL CHANNEL...  print each message as a JSON line
  odin-ws-load verdict LOAD.json [PUBLISH.json...]   PASS or FAIL: reasons (exit 0 / 1)
  odin-ws-load ratio [--sizes 200,1000 ...]      what deflate saves on market JSON (no server)

Settings come from flags (--target_connections 100, --target-connections=100) or
else from the environment variable of the same name (TARGET_CONNECTIONS=100).
Durations are Go-style (30s, 1m30s).

Load run settings (summary on stderr, one JSON line on stdout):
",
    );
    table(&mut out, &load_rows());
    out.push_str(
        "\nPublish settings (payload {\"ts_us\":..,\"n\":..,\"pad\":..}, or with PAYLOAD=market an order-book update):\n",
    );
    table(&mut out, &publish_rows());
    out.push_str(
        "\nSubscribe: see odin-ws-load subscribe --help.
Verdict: reads the JSON lines of a load run and its publishers and prints PASS, or
FAIL: with every reason (failed or dropped connections, gaps, publish errors,
nothing delivered).

examples:
  odin-ws-load --target_connections 1000 --duration 30s
  PUBLISH_URL=http://127.0.0.1:3002 PUBLISH_TOKEN=secret odin-ws-load publish --rate 50
  odin-ws-load subscribe ws://127.0.0.1:3002/ws odin.bench.0
",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_default_and_a_meaning() {
        for (name, default, meaning) in load_rows().iter().chain(publish_rows().iter()) {
            assert!(!default.is_empty() && !meaning.is_empty(), "{name}");
            assert!(text().contains(name), "{name}");
        }
    }

    #[test]
    fn written_defaults_match_the_constants() {
        use odin_ws::config::parse_duration;
        let default = |name| load_rows().into_iter().find(|r| r.0 == name).unwrap().1;
        assert_eq!(parse_duration(&default(DURATION)), Ok(DEFAULT_DURATION));
        let health = parse_duration(&default(HEALTH_INTERVAL));
        assert_eq!(health, Ok(DEFAULT_HEALTH_INTERVAL));
        let progress = parse_duration(&default(PROGRESS_INTERVAL));
        assert_eq!(progress, Ok(DEFAULT_PROGRESS_INTERVAL));
    }
}
