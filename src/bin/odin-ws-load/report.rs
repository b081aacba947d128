//! What a run reports: a progress line while it runs and, at the end, a human
//! summary (stderr) and one JSON line (stdout).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Value, json};

use crate::driver::Outcome;
use crate::health::Sample;
use crate::resume::ResumeStats;
use crate::settings::LoadSettings;
use crate::stats::{Histogram, Stats, WINDOW};

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "p50": ms(h.quantile(0.50)),
        "p99": ms(h.quantile(0.99)),
        "p999": ms(h.quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// A histogram of µs whole, for merging reports: `max` and `[value, count]` buckets.
fn buckets(h: &Histogram) -> Value {
    json!({"max": h.max(), "buckets": h.buckets()})
}

/// Two decimals, for the JSON reports of both modes.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn json_line(s: &LoadSettings, o: &Outcome, health: &[Sample]) -> Value {
    let st = &o.stats;
    let span = match (st.first_message, st.last_message) {
        (Some(a), Some(b)) if b > a => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if span > 0.0 {
        st.messages as f64 / span
    } else {
        0.0
    };
    let timeline: Vec<Value> = st
        .timeline
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "t_s": i as u64 * WINDOW.as_secs(),
                "attempted": w.attempted,
                "succeeded": w.succeeded,
                "failed": w.failed,
                "dropped": w.dropped,
                "messages": w.messages,
                "latency_p50_ms": ms(w.latency_us.quantile(0.50)),
                "latency_p99_ms": ms(w.latency_us.quantile(0.99)),
            })
        })
        .collect();
    let health: Vec<Value> = health
        .iter()
        .map(|h| json!({"t_s": round2(h.t_s), "health": h.body}))
        .collect();
    let mut line = json!({
        "label": s.label,
        "url": s.url.text,
        "protocol": s.protocol.as_str(),
        "transport": s.wire.transport.as_str(),
        "compression": s.wire.compression,
        "target_connections": s.target,
        "ramp_rate": s.ramp_rate,
        "connection_timeout_ms": s.connection_timeout.as_millis() as u64,
        "attempted": st.attempted,
        "succeeded": st.succeeded,
        "failed": st.failed,
        "failures": st.failures,
        "dropped": st.dropped,
        "drop_reasons": st.drop_reasons,
        "open_at_end": o.open_at_end,
        "subscribed": st.subscribed,
        "server_errors": st.server_errors,
        "connect_ms": spread(&st.connect_us),
        "messages_received": st.messages,
        "messages_per_s": round2(rate),
        "latency_ms": latency(&st.latency_us),
        "gaps": st.gaps,
        "missing": st.missing,
        "out_of_order": st.out_of_order,
        "conflated": st.conflated,
        "conflated_skipped": st.conflated_skipped,
        "unparsed": st.unparsed,
        "bytes_read": st.bytes_read,
        "bytes_per_message": if st.messages > 0 {
            round2(st.bytes_read as f64 / st.messages as f64)
        } else {
            0.0
        },
        "compressing_clients": st.compressing_clients,
        "compressed_messages": st.compressed_messages,
        "inflated_messages": st.inflated_messages,
        "slow_readers": {
            "clients": st.slow.clients,
            "messages": st.slow.messages,
            "conflated": st.slow.conflated,
            "missing": st.slow.missing,
            "closed_by_server": st.slow.closed,
            "latency_ms": latency(&st.slow.latency_us),
        },
        "ramp_s": o.ramp.map(|r| round2(r.as_secs_f64())),
        "hold_s": round2(o.hold.as_secs_f64()),
        "elapsed_s": round2(o.elapsed.as_secs_f64()),
        "tool_cpu_s": round2(o.tool_cpu_s),
        "stopped_by": o.stopped_by,
        "timeline": timeline,
        "health": health,
        "resume": s.reconnect.then(|| resume_json(&st.resume)),
    });
    // Apart: json! recurses once per key and the object above is at its limit.
    if s.histograms {
        line["histograms_us"] = json!({
            "latency": buckets(&st.latency_us),
            "connect": buckets(&st.connect_us),
        });
    }
    line
}

/// p50, p99 and max of a histogram of µs, in ms.
fn spread(h: &Histogram) -> Value {
    json!({"p50": ms(h.quantile(0.50)), "p99": ms(h.quantile(0.99)), "max": ms(h.max())})
}

/// RECONNECT=resume's figures.
fn resume_json(r: &ResumeStats) -> Value {
    json!({
        "closed": r.closed,
        "attempts": r.attempts,
        "retries": r.retries,
        "failures": r.failures,
        "reopened": r.reopened,
        "recovered": r.recovered,
        "not_recovered": r.not_recovered,
        "connect_ms": spread(&r.connect_us),
        "reconnect_ms": spread(&r.reconnect_us),
    })
}

/// The p99 in ms, or `n/a` when nothing was measured.
fn p99_text(h: &Histogram) -> String {
    if h.count() == 0 {
        "n/a".into()
    } else {
        ms(h.quantile(0.99)).to_string()
    }
}

/// One /health sample: its figures, or the error that stood in for them.
fn health_row(body: &Value) -> String {
    if let Some(error) = body["error"].as_str() {
        return format!("error: {error}");
    }
    format!(
        "connections {} cpu% {} memory {} status {}",
        body["connections"], body["cpu_percent"], body["memory_bytes"], body["status"]
    )
}

/// The periodic progress line: messages/s over the last interval, the rest so far.
pub struct Progress {
    start: Instant,
    last_at: Instant,
    last_messages: u64,
}

impl Progress {
    pub fn new(start: Instant) -> Progress {
        Progress {
            start,
            last_at: start,
            last_messages: 0,
        }
    }

    pub fn line(&mut self, st: &Stats, target: u32, now: Instant) -> String {
        let interval = now.duration_since(self.last_at).as_secs_f64();
        let new_messages = st.messages - self.last_messages;
        let rate = if interval > 0.0 {
            new_messages as f64 / interval
        } else {
            0.0
        };
        (self.last_at, self.last_messages) = (now, st.messages);
        let mut line = format!(
            "progress {:.0}s: open {}/{target}, attempted {}, failed {}",
            now.duration_since(self.start).as_secs_f64(),
            st.succeeded - st.dropped,
            st.attempted,
            st.failed,
        );
        if st.failed > 0 {
            let _ = write!(line, " ({})", reasons(&st.failures));
        }
        let _ = write!(line, ", dropped {}", st.dropped);
        if st.dropped > 0 {
            let _ = write!(line, " ({})", reasons(&st.drop_reasons));
        }
        let _ = write!(line, ", {rate:.0} msg/s, p99 {}", p99_text(&st.latency_us));
        if st.latency_us.count() > 0 {
            line.push_str(" ms");
        }
        line
    }
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn human(s: &LoadSettings, o: &Outcome, health: &[Sample]) -> String {
    let st = &o.stats;
    let v = json_line(s, o, health);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== odin-ws-load {} ({}) {}",
        s.url.text,
        s.protocol.as_str(),
        s.label
    );
    let _ = writeln!(
        out,
        "connections: attempted {}  succeeded {}  failed {}  dropped later {}  open at end {}",
        st.attempted, st.succeeded, st.failed, st.dropped, o.open_at_end
    );
    let _ = writeln!(out, "failures: {}", reasons(&st.failures));
    if st.dropped > 0 {
        let _ = writeln!(out, "drops: {}", reasons(&st.drop_reasons));
    }
    let c = &v["connect_ms"];
    if st.connect_us.count() == 0 {
        let _ = writeln!(out, "connect+handshake ms: n/a (no connection succeeded)");
    } else {
        let _ = writeln!(
            out,
            "connect+handshake ms: p50 {}  p99 {}  max {}",
            c["p50"], c["p99"], c["max"]
        );
    }
    let _ = writeln!(
        out,
        "messages: {} received, {} /s; gaps {} ({} missing), out of order {}, conflated {}",
        st.messages, v["messages_per_s"], st.gaps, st.missing, st.out_of_order, st.conflated
    );
    let _ = writeln!(
        out,
        "wire ({}{}): {} bytes read, {} per message; {} clients compressing, {} messages decompressed ({} inflated, the rest equal to one of those)",
        s.wire.transport.as_str(),
        if s.wire.compression {
            ", deflate offered"
        } else {
            ""
        },
        st.bytes_read,
        v["bytes_per_message"],
        st.compressing_clients,
        st.compressed_messages,
        st.inflated_messages
    );
    if s.reconnect {
        let r = &st.resume;
        let _ = writeln!(
            out,
            "reconnects: {} closed, {} back and subscribed ({} retries: {}); resumes recovered {}, not {}; \
             connect p99 {} ms, close to subscribed again p99 {} ms",
            r.closed,
            r.reopened,
            r.retries,
            reasons(&r.failures),
            r.recovered,
            reasons(&r.not_recovered),
            p99_text(&r.connect_us),
            p99_text(&r.reconnect_us),
        );
    }
    let l = &v["latency_ms"];
    if st.latency_us.count() == 0 {
        let _ = writeln!(
            out,
            "publish-to-receive ms: n/a (no timestamped message received)"
        );
    } else {
        let _ = writeln!(
            out,
            "publish-to-receive ms: p50 {}  p99 {}  p999 {}  max {}",
            l["p50"], l["p99"], l["p999"], l["max"]
        );
    }
    if st.slow.clients > 0 {
        let _ = writeln!(
            out,
            "stopped reading: {} clients; at the end {} messages waiting ({} conflated), {} closed by the server",
            st.slow.clients, st.slow.messages, st.slow.conflated, st.slow.closed
        );
    }
    if !st.server_errors.is_empty() {
        let _ = writeln!(out, "server errors: {}", reasons(&st.server_errors));
    }
    let _ = writeln!(out, "timeline (10 s windows):");
    let _ = writeln!(
        out,
        "  {:>6} {:>9} {:>9} {:>7} {:>7} {:>10} {:>9}",
        "t", "attempted", "succeeded", "failed", "dropped", "messages", "p99 ms"
    );
    for (i, w) in st.timeline.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>5}s {:>9} {:>9} {:>7} {:>7} {:>10} {:>9}",
            i as u64 * WINDOW.as_secs(),
            w.attempted,
            w.succeeded,
            w.failed,
            w.dropped,
            w.messages,
            p99_text(&w.latency_us)
        );
    }
    if !health.is_empty() {
        let _ = writeln!(out, "server /health:");
        for h in health {
            let _ = writeln!(out, "  {:>7.1}s {}", h.t_s, health_row(&h.body));
        }
    }
    let _ = writeln!(
        out,
        "ramp {}s, hold {}s, stopped by {}; this tool used {:.2} s of CPU",
        v["ramp_s"], v["hold_s"], o.stopped_by, o.tool_cpu_s
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn progress_names_failures_and_says_na_before_any_latency() {
        let start = Instant::now();
        let mut progress = Progress::new(start);
        let mut st = Stats {
            attempted: 30,
            succeeded: 20,
            ..Stats::default()
        };
        st.fail(Duration::ZERO, "connection refused".into());
        st.drop_conn(Duration::ZERO, "closed by server (1013)".into());
        let line = progress.line(&st, 100, start + Duration::from_secs(10));
        assert_eq!(
            line,
            "progress 10s: open 19/100, attempted 30, failed 1 (connection refused: 1), dropped 1 (closed by server (1013): 1), 0 msg/s, p99 n/a"
        );
        st.messages = 50;
        st.latency_us.record(1500);
        let line = progress.line(&st, 100, start + Duration::from_secs(20));
        assert!(line.ends_with(", 5 msg/s, p99 1.5 ms"), "{line}");
    }

    #[test]
    fn a_health_error_is_shown_not_nulls() {
        let row = health_row(&serde_json::json!({"error": "Connection refused (os error 111)"}));
        assert_eq!(row, "error: Connection refused (os error 111)");
        let row = health_row(&serde_json::json!({"connections": 3, "status": "ok"}));
        assert!(row.starts_with("connections 3 "), "{row}");
    }
}
