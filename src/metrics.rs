//! Every counter the server keeps, and their Prometheus text. Names live here
//! only; hot paths (deliveries) are summed per worker turn before they get here.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a connection or upgrade was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    MaxConnections,
    Cpu,
    Memory,
    Draining,
    Origin,
    /// Sockets beyond max connections plus HTTP headroom, closed at accept.
    Overload,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::MaxConnections,
        Reject::Cpu,
        Reject::Memory,
        Reject::Draining,
        Reject::Origin,
        Reject::Overload,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MaxConnections => "max_connections",
            Reject::Cpu => "cpu",
            Reject::Memory => "memory",
            Reject::Draining => "draining",
            Reject::Origin => "origin",
            Reject::Overload => "overload",
        }
    }
}

/// Why a message meant for a client was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Replaced by a newer message of the same channel (slow consumer, conflate).
    Conflated,
    /// Oldest queued message dropped (slow consumer, drop_oldest).
    DropOldest,
    /// A worker fell more than the ring's capacity behind.
    RingOverrun,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Conflated,
        DropReason::DropOldest,
        DropReason::RingOverrun,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Conflated => "conflated",
            DropReason::DropOldest => "drop_oldest",
            DropReason::RingOverrun => "ring_overrun",
        }
    }
}

/// Error frames sent to clients, by code.
pub const ERROR_CODES: [&str; 5] = [
    "invalid_json",
    "unknown_type",
    "invalid_channel",
    "too_many_subscriptions",
    "rate_limited",
];

/// Upper bounds (seconds) of the publish-to-write latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub sockets: AtomicU64,
    pub accepted: AtomicU64,
    rejected: [AtomicU64; 6],
    pub http_requests: AtomicU64,
    pub messages_in_nats: AtomicU64,
    pub messages_in_http: AtomicU64,
    pub broadcasts: AtomicU64,
    pub deliveries: AtomicU64,
    drops: [AtomicU64; 3],
    pub slow_consumer_closes: AtomicU64,
    client_errors: [AtomicU64; 5],
    pub protocol_closes: AtomicU64,
    pub send_queue_bytes: AtomicU64,
    pub handoff_queue: AtomicU64,
    pub ring_lag: AtomicU64,
    pub nats_connected: AtomicU64,
    pub nats_reconnects: AtomicU64,
    pub nats_disconnects: AtomicU64,
    pub nats_lame_duck: AtomicU64,
    pub intake_queue: AtomicU64,
    pub intake_conflated: AtomicU64,
    pub intake_dropped: AtomicU64,
    pub intake_paused: AtomicU64,
    pub intake_pauses: AtomicU64,
    pub intake_paused_ms: AtomicU64,
    pub cpu_percent_x100: AtomicU64,
    pub rss_bytes: AtomicU64,
    latency_buckets: [AtomicU64; 14],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, why: Reject) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }
    pub fn rejected(&self, why: Reject) -> u64 {
        self.rejected[why as usize].load(Relaxed)
    }
    pub fn dropped(&self, why: DropReason, n: u64) {
        self.drops[why as usize].fetch_add(n, Relaxed);
    }
    pub fn drops(&self, why: DropReason) -> u64 {
        self.drops[why as usize].load(Relaxed)
    }
    pub fn client_error(&self, code: &str) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.client_errors[i].fetch_add(1, Relaxed);
        }
    }
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
    pub fn cpu_percent(&self) -> f64 {
        self.cpu_percent_x100.load(Relaxed) as f64 / 100.0
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let g = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP odin_ws_{name} {help}\n# TYPE odin_ws_{name} {kind}"
            );
            let _ = writeln!(out, "odin_ws_{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Relaxed).to_string();
        g(
            &mut out,
            "connections",
            "Open WebSocket connections.",
            "gauge",
            load(&self.connections),
        );
        g(
            &mut out,
            "sockets",
            "Open TCP sockets (WebSocket and HTTP).",
            "gauge",
            load(&self.sockets),
        );
        g(
            &mut out,
            "connections_accepted_total",
            "WebSocket upgrades accepted.",
            "counter",
            load(&self.accepted),
        );
        let _ = writeln!(
            out,
            "# HELP odin_ws_connections_rejected_total Connections refused, by reason.\n# TYPE odin_ws_connections_rejected_total counter"
        );
        for r in Reject::ALL {
            let _ = writeln!(
                out,
                "odin_ws_connections_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejected(r)
            );
        }
        g(
            &mut out,
            "http_requests_total",
            "Plain HTTP requests served.",
            "counter",
            load(&self.http_requests),
        );
        let _ = writeln!(
            out,
            "# HELP odin_ws_messages_in_total Messages taken in, by source.\n# TYPE odin_ws_messages_in_total counter"
        );
        let _ = writeln!(
            out,
            "odin_ws_messages_in_total{{source=\"nats\"}} {}",
            load(&self.messages_in_nats)
        );
        let _ = writeln!(
            out,
            "odin_ws_messages_in_total{{source=\"http\"}} {}",
            load(&self.messages_in_http)
        );
        g(
            &mut out,
            "broadcasts_total",
            "Messages put into the broadcast ring.",
            "counter",
            load(&self.broadcasts),
        );
        g(
            &mut out,
            "deliveries_total",
            "Messages queued to client connections.",
            "counter",
            load(&self.deliveries),
        );
        let _ = writeln!(
            out,
            "# HELP odin_ws_drops_total Messages not delivered, by reason.\n# TYPE odin_ws_drops_total counter"
        );
        for d in DropReason::ALL {
            let _ = writeln!(
                out,
                "odin_ws_drops_total{{reason=\"{}\"}} {}",
                d.as_str(),
                self.drops(d)
            );
        }
        g(
            &mut out,
            "slow_consumer_closes_total",
            "Connections closed with 1013 as slow consumers.",
            "counter",
            load(&self.slow_consumer_closes),
        );
        g(
            &mut out,
            "protocol_closes_total",
            "Connections closed for protocol violations or abuse.",
            "counter",
            load(&self.protocol_closes),
        );
        let _ = writeln!(
            out,
            "# HELP odin_ws_client_errors_total Error frames sent to clients, by code.\n# TYPE odin_ws_client_errors_total counter"
        );
        for (i, code) in ERROR_CODES.iter().enumerate() {
            let _ = writeln!(
                out,
                "odin_ws_client_errors_total{{code=\"{code}\"}} {}",
                load(&self.client_errors[i])
            );
        }
        g(
            &mut out,
            "send_queue_bytes",
            "Bytes waiting in all per-connection send queues.",
            "gauge",
            load(&self.send_queue_bytes),
        );
        g(
            &mut out,
            "handoff_queue",
            "Accepted sockets not yet taken by a worker.",
            "gauge",
            load(&self.handoff_queue),
        );
        g(
            &mut out,
            "ring_lag",
            "Largest number of broadcasts a worker has yet to read.",
            "gauge",
            load(&self.ring_lag),
        );
        g(
            &mut out,
            "nats_connected",
            "1 when connected to NATS.",
            "gauge",
            load(&self.nats_connected),
        );
        g(
            &mut out,
            "nats_reconnects_total",
            "NATS reconnections.",
            "counter",
            load(&self.nats_reconnects),
        );
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "nats_disconnects_total",
                "NATS disconnections.",
                &self.nats_disconnects,
            ),
            (
                "nats_lame_duck_total",
                "NATS servers that announced lame-duck mode.",
                &self.nats_lame_duck,
            ),
            (
                "intake_conflated_total",
                "NATS messages replaced by a newer one of the same channel before broadcast.",
                &self.intake_conflated,
            ),
            (
                "intake_dropped_total",
                "NATS messages dropped because the intake queue was full.",
                &self.intake_dropped,
            ),
            (
                "intake_pauses_total",
                "Times NATS intake paused for CPU.",
                &self.intake_pauses,
            ),
            (
                "intake_queue",
                "NATS messages waiting for the ring (bounded).",
                &self.intake_queue,
            ),
            (
                "intake_paused",
                "1 while NATS intake is paused for CPU.",
                &self.intake_paused,
            ),
        ];
        for (name, help, value) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            g(&mut out, name, help, kind, load(value));
        }
        let paused = format!("{:.3}", self.intake_paused_ms.load(Relaxed) as f64 / 1000.0);
        g(
            &mut out,
            "intake_paused_seconds_total",
            "Time NATS intake spent paused.",
            "counter",
            paused,
        );
        g(
            &mut out,
            "cpu_percent",
            "Process CPU use as a percentage of the CPU limit.",
            "gauge",
            format!("{:.2}", self.cpu_percent()),
        );
        g(
            &mut out,
            "memory_bytes",
            "Resident set size.",
            "gauge",
            load(&self.rss_bytes),
        );
        let _ = writeln!(
            out,
            "# HELP odin_ws_publish_to_write_seconds From intake to the first socket write, per broadcast and worker.\n# TYPE odin_ws_publish_to_write_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "odin_ws_publish_to_write_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "odin_ws_publish_to_write_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "odin_ws_publish_to_write_seconds_sum {sum}");
        let _ = writeln!(out, "odin_ws_publish_to_write_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_latency(Duration::from_micros(50));
        m.observe_latency(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("odin_ws_publish_to_write_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("odin_ws_publish_to_write_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("odin_ws_publish_to_write_seconds_count 2\n"));
        m.reject(Reject::Origin);
        assert!(
            m.render()
                .contains("odin_ws_connections_rejected_total{reason=\"origin\"} 1\n")
        );
    }
}
