//! Counters, a log-linear histogram for latencies, and the 10 s timeline.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock in Unix microseconds: the publisher stamps each message with it
/// and the clients subtract it on receipt (one machine, one clock).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Values below this are exact; above, each power of two has this many buckets
/// (under 1% error).
const SUB_BUCKETS: u64 = 128;
const SUB_BITS: u32 = 7;
/// Highest power of two tracked: 2^40 µs is 12 days; beyond lands in the last bucket.
const MAX_EXPONENT: u32 = 40;
const BUCKETS: usize = (SUB_BUCKETS + (MAX_EXPONENT - SUB_BITS + 1) as u64 * SUB_BUCKETS) as usize;

/// A histogram of non-negative integers (microseconds here).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXPONENT);
    let shift = exp - SUB_BITS;
    let mantissa = (v >> shift).min(2 * SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return i;
    }
    let shift = (i - SUB_BUCKETS) / SUB_BUCKETS;
    let mantissa = SUB_BUCKETS + (i - SUB_BUCKETS) % SUB_BUCKETS;
    (mantissa << shift) + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The non-empty buckets, lowest first, as (bucket value, count): what a report
    /// carries so that several processes' histograms merge (scripts/bench-report
    /// --merge) into the quantiles one process would have given: the value of the
    /// bucket where the count reaches the rank, at most the largest `max`.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        let used = self.counts.iter().enumerate().filter(|(_, c)| **c > 0);
        used.map(|(i, &c)| (value(i), c)).collect()
    }

    /// The value at quantile `q` (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }
}

/// Counts of one 10 s window of the run.
#[derive(Clone, Default)]
pub struct Window {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dropped: u64,
    pub messages: u64,
    /// Publish-to-receive latency of this window's messages, µs.
    pub latency_us: Histogram,
}

pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Stats {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Why attempts failed (connect error, timeout, HTTP status, ...).
    pub failures: BTreeMap<String, u64>,
    /// Connections that were open and then closed by the server or the network.
    pub dropped: u64,
    pub drop_reasons: BTreeMap<String, u64>,
    /// Clients whose subscription was acknowledged.
    pub subscribed: u64,
    pub server_errors: BTreeMap<String, u64>,
    /// Connect + handshake, µs.
    pub connect_us: Histogram,
    /// Publish to receive, µs, over the clients that keep reading.
    pub latency_us: Histogram,
    pub messages: u64,
    /// Messages flagged `"conflated":true` by odin-ws.
    pub conflated: u64,
    /// Messages the server replaced by a newer one (the gap before a conflated message).
    pub conflated_skipped: u64,
    /// Per-channel counter `n` skipped forward (messages missing).
    pub gaps: u64,
    pub missing: u64,
    /// Per-channel counter `n` not above the last one (duplicates, reordering).
    pub out_of_order: u64,
    /// Messages without a parsable `ts_us` or `n`.
    pub unparsed: u64,
    pub first_message: Option<std::time::Instant>,
    pub last_message: Option<std::time::Instant>,
    /// Bytes read from the server's sockets (heads, frames or events, all of it).
    pub bytes_read: u64,
    /// Clients whose upgrade agreed to permessage-deflate.
    pub compressing_clients: u64,
    /// Messages that came compressed (RSV1) and were inflated, or were equal byte
    /// for byte to one inflated before (inflate.rs).
    pub compressed_messages: u64,
    /// Of those, the ones run through the inflater.
    pub inflated_messages: u64,
    pub timeline: Vec<Window>,
    pub slow: SlowStats,
    /// RECONNECT=resume: the reconnects and how their resumes were answered.
    pub resume: crate::resume::ResumeStats,
}

/// What the clients that stopped reading saw when drained at the end.
#[derive(Default)]
pub struct SlowStats {
    pub clients: u64,
    pub messages: u64,
    pub conflated: u64,
    pub missing: u64,
    pub closed: u64,
    pub latency_us: Histogram,
}

impl Stats {
    pub fn window(&mut self, since_start: Duration) -> &mut Window {
        let i = (since_start.as_secs() / WINDOW.as_secs()) as usize;
        if self.timeline.len() <= i {
            self.timeline.resize(i + 1, Window::default());
        }
        &mut self.timeline[i]
    }

    pub fn fail(&mut self, since_start: Duration, reason: String) {
        self.failed += 1;
        self.window(since_start).failed += 1;
        *self.failures.entry(reason).or_default() += 1;
    }

    pub fn drop_conn(&mut self, since_start: Duration, reason: String) {
        self.dropped += 1;
        self.window(since_start).dropped += 1;
        *self.drop_reasons.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000f64), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.quantile(1.0), 100_000);
    }

    #[test]
    fn the_buckets_give_the_same_quantiles() {
        let mut h = Histogram::default();
        for v in (0..50_000u64).map(|i| i * i % 2_000_003) {
            h.record(v);
        }
        let buckets = h.buckets();
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), h.count());
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "lowest first");
        // The merge's rule, as scripts/bench-report --merge applies it.
        let quantile = |q: f64| {
            let rank = ((q * h.count() as f64).ceil() as u64).clamp(1, h.count());
            let mut seen = 0;
            let at = buckets.iter().find(|b| {
                seen += b.1;
                seen >= rank
            });
            at.unwrap().0.min(h.max())
        };
        for q in [0.0, 0.5, 0.99, 0.999, 1.0] {
            assert_eq!(quantile(q), h.quantile(q), "q{q}");
        }
    }

    #[test]
    fn small_values_are_exact_and_huge_ones_do_not_panic() {
        let mut h = Histogram::default();
        h.record(3);
        assert_eq!(h.quantile(0.5), 3);
        h.record(u64::MAX);
        assert_eq!(h.max(), u64::MAX);
        assert!(index(u64::MAX) < BUCKETS);
    }
}
