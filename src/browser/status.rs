//! /status.json: the server's state in one object, with per-second rates and the
//! publish-to-write p50/p99 over the time since the previous sample.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde_json::{Value, json};

use crate::metrics::{DropReason, Reject};
use crate::shared::Shared;

/// Samples closer together than this reuse the previous rates: several pages
/// polling at once must not shrink the window to noise.
const MIN_WINDOW_S: f64 = 0.5;

/// The counters that rates are computed from.
#[derive(Clone, Copy)]
struct Totals {
    at: Instant,
    accepted: u64,
    rejected: u64,
    messages_in: u64,
    deliveries: u64,
    dropped: u64,
    latency: [(f64, u64); 14],
}

/// Per second over the last window, and the latency quantiles of that window.
#[derive(Clone, Copy, Default)]
struct Rates {
    accepted: f64,
    rejected: f64,
    messages_in: f64,
    deliveries: f64,
    dropped: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// The previous sample and the rates it ended; one per process, like the server.
static LAST: Mutex<Option<(Totals, Rates)>> = Mutex::new(None);

/// The whole /status.json body.
pub fn snapshot(shared: &Shared) -> Value {
    let m = &shared.metrics;
    let cfg = shared.config();
    let now = totals(shared);
    let rates = rates_since_last(now);
    let closed = shared.admission_closed();
    let rss = m.rss_bytes.load(Relaxed);
    json!({
        "instance": shared.instance,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": shared.started.elapsed().as_secs(),
        "connections": m.connections.load(Relaxed),
        "max_connections": cfg.max_connections,
        "accepted": now.accepted,
        "messages_in": now.messages_in,
        "deliveries": now.deliveries,
        "broadcasts": m.broadcasts.load(Relaxed),
        "nats": shared.nats_state().as_str(),
        "nats_reconnects": m.nats_reconnects.load(Relaxed),
        "cpu_percent": (m.cpu_percent() * 10.0).round() / 10.0,
        "memory_bytes": rss,
        "memory_percent": ((rss as f64 / cfg.memory_limit.max(1) as f64) * 1000.0).round() / 10.0,
        "rates": rates_json(&rates),
        "latency_ms": {"p50": rates.p50_ms, "p99": rates.p99_ms, "count": m.latency_count()},
        "admission": admission(shared, closed),
        "slow_consumers": {
            "closes": m.slow_consumer_closes.load(Relaxed),
            "conflated": m.drops(DropReason::Conflated),
            "drop_oldest": m.drops(DropReason::DropOldest),
            "ring_overrun": m.drops(DropReason::RingOverrun),
            "policy": cfg.slow_client_policy.as_str(),
        },
        "workers": workers(shared),
    })
}

fn totals(shared: &Shared) -> Totals {
    let m = &shared.metrics;
    Totals {
        at: Instant::now(),
        accepted: m.accepted.load(Relaxed),
        rejected: Reject::ALL.iter().map(|r| m.rejected(*r)).sum(),
        messages_in: m.messages_in_nats.load(Relaxed) + m.messages_in_http.load(Relaxed),
        deliveries: m.deliveries.load(Relaxed),
        dropped: DropReason::ALL.iter().map(|r| m.drops(*r)).sum(),
        latency: m.latency_buckets(),
    }
}

fn rates_since_last(now: Totals) -> Rates {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let Some((prev, prev_rates)) = *last else {
        *last = Some((now, Rates::default()));
        return Rates::default();
    };
    let window = now.at.duration_since(prev.at).as_secs_f64();
    if window < MIN_WINDOW_S {
        return prev_rates;
    }
    let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / window;
    let window_counts: Vec<(f64, u64)> = now
        .latency
        .iter()
        .zip(prev.latency)
        .map(|((le, n), (_, was))| (*le, n.saturating_sub(was)))
        .collect();
    let rates = Rates {
        accepted: per_s(now.accepted, prev.accepted),
        rejected: per_s(now.rejected, prev.rejected),
        messages_in: per_s(now.messages_in, prev.messages_in),
        deliveries: per_s(now.deliveries, prev.deliveries),
        dropped: per_s(now.dropped, prev.dropped),
        p50_ms: quantile(&window_counts, 0.5).map(|s| s * 1000.0),
        p99_ms: quantile(&window_counts, 0.99).map(|s| s * 1000.0),
    };
    *last = Some((now, rates));
    rates
}

fn rates_json(r: &Rates) -> Value {
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "accepted_per_s": round(r.accepted),
        "rejected_per_s": round(r.rejected),
        "messages_in_per_s": round(r.messages_in),
        "deliveries_per_s": round(r.deliveries),
        "dropped_per_s": round(r.dropped),
    })
}

/// The `q` quantile (seconds) of a histogram given as (upper bound, count in that
/// bucket), interpolated inside its bucket like Prometheus' histogram_quantile.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut below, mut lower) = (0u64, 0.0);
    for &(upper, n) in buckets {
        if n > 0 && (below + n) as f64 >= rank {
            let within = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += n;
        lower = upper;
    }
    Some(lower)
}

fn admission(shared: &Shared, closed: Option<Reject>) -> Value {
    let rejected: serde_json::Map<String, Value> = Reject::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), shared.metrics.rejected(*r).into()))
        .collect();
    json!({
        "open": closed.is_none(),
        "reason": closed.map(Reject::as_str),
        "draining": shared.is_draining(),
        "cpu_over": shared.cpu_over.load(Relaxed),
        "memory_over": shared.memory_over.load(Relaxed),
        "intake_paused": shared.intake_paused.load(Relaxed),
        "rejected": rejected,
    })
}

fn workers(shared: &Shared) -> Value {
    shared
        .workers
        .iter()
        .map(|w| {
            json!({
                "connections": w.load.load(Relaxed),
                "queued_bytes": w.queued_bytes.load(Relaxed),
                "ring_lag": w.ring_lag.load(Relaxed),
                "write_hold_us": w.write_hold_us.load(Relaxed),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        assert_eq!(quantile(&[(0.001, 0), (0.01, 0)], 0.5), None);
        let b = [(0.001, 50), (0.01, 50)];
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((p99 - (0.001 + 0.009 * 0.98)).abs() < 1e-9, "{p99}");
        // All in the first bucket: interpolated from zero.
        assert_eq!(quantile(&[(0.002, 4)], 0.5), Some(0.001));
    }
}
