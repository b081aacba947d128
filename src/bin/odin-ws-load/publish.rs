//! `odin-ws-load publish`: RATE messages/s of SIZE bytes, round-robin over the
//! CHANNELS, to NATS or to POST /publish. Each payload is
//! `{"ts_us":<send time, Unix µs>,"n":<per-channel counter>,"pad":"x…"}` (or with
//! PAYLOAD=market an order-book update after those two fields: market.rs), so the
//! load tool measures publish-to-receive latency and counts per-channel gaps.

// The nats crate's sync client is deprecated upstream in favour of async-nats, but
// it is the client the design allows (no async runtime).
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::round2;
use crate::settings::{Payload, PublishSettings, PublishTarget};
use crate::stats::unix_micros;
use crate::{head, market};

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

enum Sink {
    Nats(nats::Connection),
    Http { addr: SocketAddrV4, token: String },
}

impl Sink {
    fn open(target: &PublishTarget) -> Result<Sink, String> {
        Ok(match target {
            PublishTarget::Nats(url) => Sink::Nats(
                nats::Options::new()
                    .with_name("odin-ws-load publish")
                    .connect(url.as_str())
                    .map_err(|e| format!("cannot connect to {url}: {e}"))?,
            ),
            PublishTarget::Http { addr, token } => Sink::Http {
                addr: *addr,
                token: token.clone(),
            },
        })
    }

    fn send(&self, channel: &str, payload: &str) -> Result<(), String> {
        match self {
            Sink::Nats(nc) => nc
                .publish(channel, payload)
                .map_err(|e| format!("nats: {e}")),
            Sink::Http { addr, token } => http_publish(*addr, token, channel, payload),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self {
            Sink::Nats(nc) => {
                let flushed = nc
                    .flush_timeout(FLUSH_TIMEOUT)
                    .map_err(|e| format!("nats flush: {e}"));
                nc.close();
                flushed
            }
            Sink::Http { .. } => Ok(()),
        }
    }
}

/// One POST /publish on its own connection (the server closes after each answer).
fn http_publish(
    addr: SocketAddrV4,
    token: &str,
    channel: &str,
    payload: &str,
) -> Result<(), String> {
    let body = format!(
        "{{\"channel\":{},\"data\":{payload}}}",
        serde_json::to_string(channel).unwrap_or_default()
    );
    let mut s = TcpStream::connect_timeout(&addr.into(), HTTP_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // The server closes after its answer; an error once the head is in is no matter.
    let mut reply = Vec::new();
    let read = s.read_to_end(&mut reply);
    let head = match head::parse(&reply) {
        Some(head) => head?,
        None => {
            return Err(read
                .err()
                .map_or("no answer".into(), |e| format!("read: {e}")));
        }
    };
    match head.status {
        202 => Ok(()),
        401 => Err("http 401 (the server refused PUBLISH_TOKEN)".into()),
        404 => Err("http 404 (publishing is off: the server has no WS_PUBLISH_TOKEN)".into()),
        code => Err(format!("http {code}")),
    }
}

/// The payload, padded with `x` to `size` bytes when `size` is larger than the fields.
pub fn payload(ts_us: u64, n: u64, size: usize) -> String {
    let mut p = format!("{{\"ts_us\":{ts_us},\"n\":{n},\"pad\":\"");
    // The closing `"}` is the rest of the bare payload.
    let pad = size.saturating_sub(p.len() + 2);
    p.extend(std::iter::repeat_n('x', pad));
    p.push_str("\"}");
    p
}

/// Counts a failure; the first of each kind is shown at once, not only in the report.
fn count_failure(failures: &mut BTreeMap<String, u64>, reason: String) {
    if !failures.contains_key(&reason) {
        eprintln!("odin-ws-load publish: error: {reason}; more like it are only counted");
    }
    *failures.entry(reason).or_default() += 1;
}

pub fn run(s: &PublishSettings, stop: &AtomicBool) -> Result<Value, String> {
    let sink = Sink::open(&s.target)?;
    let mut counters = vec![0u64; s.channels.len()];
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut published, mut failed) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + s.duration;
    let mut k: u64 = 0;
    loop {
        if (s.count > 0 && k >= s.count) || stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + Duration::from_secs_f64(k as f64 / s.rate);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ch = (k % s.channels.len() as u64) as usize;
        counters[ch] += 1;
        let body = match s.payload {
            Payload::Pad => payload(unix_micros(), counters[ch], s.size),
            Payload::Market => market::payload(unix_micros(), counters[ch], ch, s.size),
        };
        match sink.send(&s.channels[ch], &body) {
            Ok(()) => published += 1,
            Err(e) => {
                failed += 1;
                count_failure(&mut failures, e);
            }
        }
        k += 1;
    }
    let flushed = sink.finish();
    let elapsed = start.elapsed().as_secs_f64();
    if let Err(e) = flushed {
        count_failure(&mut failures, e);
    }
    Ok(json!({
        "mode": "publish",
        "label": s.label,
        "published": published,
        "failed": failed,
        "failures": failures,
        "channels": s.channels.len(),
        "size": s.size,
        "payload": match s.payload {
            Payload::Pad => "pad",
            Payload::Market => "market",
        },
        "rate_target": s.rate,
        "rate_per_s": if elapsed > 0.0 { round2(published as f64 / elapsed) } else { 0.0 },
        "elapsed_s": round2(elapsed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_padded_to_size_and_parses() {
        let p = payload(1_700_000_000_000_000, 7, 200);
        assert_eq!(p.len(), 200);
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["n"], 7);
        assert_eq!(payload(1, 1, 10), r#"{"ts_us":1,"n":1,"pad":""}"#);
    }
}
