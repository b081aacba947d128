//! `odin-ws-load ratio`: what permessage-deflate saves on market-data JSON
//! (PAYLOAD=market) with odin-ws's shared copy, and what per-connection context
//! takeover would save and cost instead. Measured on this machine, in process,
//! with the server's own frame and deflate code, so the figures need no server.
//!
//! - alone: each broadcast deflated on its own, once, for every compressing
//!   client (DESIGN "Compression");
//! - chained: each broadcast deflated after its channel's previous one, once,
//!   for every client whose window ends with that one (what odin-ws sends a
//!   client that keeps its window; `Broadcast::chained`);
//! - takeover: one compressor per connection that keeps its window across
//!   messages (what the shared copy gives up), for a client on one channel and
//!   for one on every channel; its CPU is paid per delivery and its memory per
//!   connection.

use std::sync::Arc;
use std::time::Instant;

use odin_ws::broadcast::{Broadcast, Deflate, Form, MessageBody, WindowEnd, frame_payload};
use odin_ws::deflate::Window;
use odin_ws::deflate::codec::KeptDeflater;
use serde_json::{Value, json};

use crate::market;

pub const USAGE: &str = "usage: odin-ws-load ratio [--sizes 200,1000,2000,4000] [--messages 2000] [--channels 10] [--connections 1000]

Deflates PAYLOAD=market messages of about each size, framed as odin-ws frames them,
three ways: odin-ws's shared copies (each broadcast alone, and chained after its
channel's previous one; each built once for every client) and per-connection
context takeover (a compressor per connection keeping its window: one client on one
channel, one on all of them). Prints a Markdown table and a JSON line: bytes per
message, ratio to the plain frame, CPU µs per broadcast (shared copies) or per
delivery (takeover), and takeover's RSS per connection from --connections
compressors held at once.";

#[derive(Debug, PartialEq)]
pub struct Args {
    pub sizes: Vec<usize>,
    pub messages: usize,
    pub channels: usize,
    pub connections: usize,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args {
            sizes: vec![200, 1000, 2000, 4000],
            messages: 2000,
            channels: 10,
            connections: 1000,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let v = inline
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let number = |v: &str| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag} {v:?}: expected a number above 0"))
            };
            match flag {
                "--sizes" => a.sizes = v.split(',').map(number).collect::<Result<_, _>>()?,
                "--messages" => a.messages = number(&v)?,
                "--channels" => a.channels = number(&v)?,
                "--connections" => a.connections = number(&v)?,
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(a)
    }
}

/// One size's figures.
#[derive(Debug)]
struct Row {
    size: usize,
    payload: f64,
    plain: f64,
    shared: f64,
    shared_us: f64,
    chained: f64,
    chained_us: f64,
    one_channel: f64,
    all_channels: f64,
    takeover_us: f64,
    takeover_kib: f64,
}

pub fn run(a: &Args) -> Value {
    // First, while freed memory cannot yet be reused for them: once the
    // process has freed this much, more compressors would not raise its RSS.
    let sample = market::payload(1_765_000_000_000_000, 0, 0, 1000);
    let kib = held_kib_per_compressor(a.connections, sample.as_bytes());
    let rows: Vec<Row> = a.sizes.iter().map(|&size| measure(a, size, kib)).collect();
    print_table(a, &rows);
    json!({
        "mode": "ratio",
        "messages": a.messages,
        "channels": a.channels,
        "connections": a.connections,
        "rows": rows.iter().map(|r| json!({
            "size": r.size, "payload_b": r.payload, "plain_b": r.plain,
            "shared_b": r.shared, "shared_us_per_broadcast": r.shared_us,
            "chained_b": r.chained, "chained_us_per_broadcast": r.chained_us,
            "takeover_one_channel_b": r.one_channel, "takeover_all_channels_b": r.all_channels,
            "takeover_us_per_delivery": r.takeover_us, "takeover_kib_per_connection": r.takeover_kib,
        })).collect::<Vec<_>>(),
    })
}

fn measure(a: &Args, size: usize, takeover_kib: f64) -> Row {
    let channel = |i: usize| format!("odin.bench.{}", i % a.channels);
    let payloads: Vec<String> = (0..a.messages)
        .map(|i| {
            let (ch, n) = (i % a.channels, (i / a.channels) as u64);
            market::payload(1_765_000_000_000_000 + i as u64 * 4_000, n, ch, size)
        })
        .collect();
    let broadcasts: Vec<Broadcast> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let body = MessageBody::new(&channel(i), p.as_bytes());
            Broadcast::new(
                i as u64,
                (i / a.channels) as u64 + 1,
                &channel(i),
                body,
                Instant::now(),
            )
        })
        .collect();
    let frames: Vec<_> = broadcasts
        .iter()
        .map(|b| Form::WebSocket.message(b))
        .collect();
    let deflated = Form::Deflated(Deflate {
        window: Window::Full,
        min_bytes: 0,
        chain: false,
        counters: Default::default(),
    });
    let t = Instant::now();
    let shared: usize = broadcasts.iter().map(|b| deflated.message(b).len()).sum();
    let shared_us = t.elapsed().as_secs_f64() * 1e6 / a.messages as f64;

    // Takeover: the frames' JSON through compressors that keep their window.
    let json = |i: usize| frame_payload(&frames[i]);
    let mut per_channel: Vec<KeptDeflater> =
        (0..a.channels).map(|_| KeptDeflater::default()).collect();
    let mut everything = KeptDeflater::default();
    let (mut one_channel, mut all_channels) = (0, 0);
    let t = Instant::now();
    for i in 0..a.messages {
        one_channel += framed_len(per_channel[i % a.channels].message(json(i)).len());
    }
    let takeover_us = t.elapsed().as_secs_f64() * 1e6 / a.messages as f64;
    for i in 0..a.messages {
        all_channels += framed_len(everything.message(json(i)).len());
    }
    // odin-ws's chained copies: each broadcast after its channel's previous one.
    let broadcasts: Vec<Arc<Broadcast>> = broadcasts.into_iter().map(Arc::new).collect();
    let chaining = Deflate {
        window: Window::Full,
        min_bytes: 0,
        chain: true,
        counters: Default::default(),
    };
    let t = Instant::now();
    let chained: usize = (0..a.messages)
        .map(|i| match i.checked_sub(a.channels) {
            Some(prev) => {
                let end = WindowEnd::of(&broadcasts[prev]);
                broadcasts[i]
                    .chained(&end, &chaining)
                    .expect("built after its channel's previous message")
                    .len()
            }
            None => Form::Deflated(chaining.clone())
                .message(&broadcasts[i])
                .len(),
        })
        .sum();
    let chained_us = t.elapsed().as_secs_f64() * 1e6 / a.messages as f64;

    let m = a.messages as f64;
    Row {
        size,
        payload: payloads.iter().map(String::len).sum::<usize>() as f64 / m,
        plain: frames.iter().map(|f| f.len()).sum::<usize>() as f64 / m,
        shared: shared as f64 / m,
        shared_us,
        chained: chained as f64 / m,
        chained_us,
        one_channel: one_channel as f64 / m,
        all_channels: all_channels as f64 / m,
        takeover_us,
        takeover_kib,
    }
}

/// RSS added per compressor when `count` of them are held at once, each having
/// deflated `message` (as a connection's would after its first delivery).
fn held_kib_per_compressor(count: usize, message: &[u8]) -> f64 {
    let before = odin_ws::sysinfo::process_rss_bytes();
    let held: Vec<KeptDeflater> = (0..count)
        .map(|_| {
            let mut c = KeptDeflater::default();
            c.message(message);
            c
        })
        .collect();
    let after = odin_ws::sysinfo::process_rss_bytes();
    drop(held);
    after.saturating_sub(before) as f64 / 1024.0 / count as f64
}

/// A server frame's length for a payload of `len` bytes (RFC 6455 section 5.2).
fn framed_len(len: usize) -> usize {
    len + match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn print_table(a: &Args, rows: &[Row]) {
    println!(
        "{} messages of PAYLOAD=market JSON on {} channels; takeover's memory from {} compressors held at once.\n",
        a.messages, a.channels, a.connections
    );
    println!(
        "| payload ~B | frame B | alone: B | ratio | µs per broadcast | chained: B | ratio | µs per broadcast | takeover, 1 channel: B | ratio | takeover, all {} channels: B | ratio | takeover µs per delivery | takeover KiB per connection |",
        a.channels
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} ({:.0}) | {:.1} | {:.1} | {:.2}× | {:.2} | {:.1} | {:.2}× | {:.2} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.2} | {:.0} |",
            r.size,
            r.payload,
            r.plain,
            r.shared,
            r.plain / r.shared,
            r.shared_us,
            r.chained,
            r.plain / r.chained,
            r.chained_us,
            r.one_channel,
            r.plain / r.one_channel,
            r.all_channels,
            r.plain / r.all_channels,
            r.takeover_us,
            r.takeover_kib,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_are_read_and_bad_ones_named() {
        let a = args(&["--sizes", "300,900", "--messages=50"]).unwrap();
        assert_eq!((a.sizes, a.messages, a.channels), (vec![300, 900], 50, 10));
        assert!(args(&["--sizes", "1,x"]).unwrap_err().contains("--sizes"));
        assert!(args(&["--messages", "0"]).unwrap_err().contains("above 0"));
        assert!(args(&["--bogus", "1"]).unwrap_err().contains("--bogus"));
    }

    #[test]
    fn takeover_shrinks_more_than_the_shared_copy_and_every_copy_is_smaller() {
        let a = args(&[
            "--sizes",
            "1000",
            "--messages",
            "200",
            "--connections",
            "20",
        ])
        .unwrap();
        let r = measure(&a, 1000, 0.0);
        assert!(r.shared < r.plain, "{r:?}");
        assert!(r.chained < r.shared, "{r:?}");
        assert!(r.one_channel < r.shared, "{r:?}");
        assert!(r.all_channels < r.shared, "{r:?}");
        assert!(r.payload > 800.0 && r.plain > r.payload, "{r:?}");
    }

    #[test]
    fn a_kept_deflated_message_inflates_back() {
        let first = br#"{"type":"message","seq":1}"#;
        let body = KeptDeflater::default().message(first);
        let back = odin_ws::deflate::codec::inflate_message(&body, 1 << 16).unwrap();
        assert_eq!(back, first);
    }
}
