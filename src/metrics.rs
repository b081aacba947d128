//! Every counter the server keeps, and their Prometheus text. Each metric's name,
//! type and help are written once, in `FAMILIES`; hot paths (deliveries) are
//! summed per worker turn before they get here.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::auth::TokenError;
use crate::broadcast::CompressionCounters;
use crate::protocol::ErrorCode;

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

/// Why a message was refused or dropped before it reached the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its encoded frame is over WS_MAX_BROADCAST_SIZE.
    TooLarge,
    /// The intake's newest-per-channel map held its most channels.
    IntakeChannels,
    /// The intake's newest-per-channel map held its most bytes.
    IntakeBytes,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::IntakeChannels => "intake_channels",
            Refusal::IntakeBytes => "intake_bytes",
        }
    }
}

/// Why a POST /publish to NATS was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishLoss {
    /// Answered 503: the publish queue was full.
    QueueFull,
    /// Answered 503: NATS was not connected.
    NotConnected,
    /// Queued (202), then the NATS client refused it.
    Failed,
}

impl PublishLoss {
    pub const ALL: [PublishLoss; 3] = [
        PublishLoss::QueueFull,
        PublishLoss::NotConnected,
        PublishLoss::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PublishLoss::QueueFull => "queue_full",
            PublishLoss::NotConnected => "not_connected",
            PublishLoss::Failed => "failed",
        }
    }
}

/// Why a client was told it missed messages (`gap` frames).
pub const GAP_REASONS: [&str; 3] = ["overrun", "dropped", "skipped"];

/// How a subscribe with `since` was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeResult {
    Recovered,
    EpochChanged,
    TooOld,
    Unavailable,
}

impl ResumeResult {
    pub const ALL: [ResumeResult; 4] = [
        ResumeResult::Recovered,
        ResumeResult::EpochChanged,
        ResumeResult::TooOld,
        ResumeResult::Unavailable,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeResult::Recovered => "recovered",
            ResumeResult::EpochChanged => "epoch_changed",
            ResumeResult::TooOld => "too_old",
            ResumeResult::Unavailable => "unavailable",
        }
    }
}

/// Upper bounds (seconds) of the publish-to-write latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub sockets: AtomicU64,
    /// Open SSE streams (also in `connections`), and streams started.
    pub sse_clients: AtomicU64,
    pub sse_connections: AtomicU64,
    pub accepted: AtomicU64,
    rejected: [AtomicU64; Reject::ALL.len()],
    pub http_requests: AtomicU64,
    pub messages_in_nats: AtomicU64,
    pub messages_in_http: AtomicU64,
    pub broadcasts: AtomicU64,
    pub deliveries: AtomicU64,
    drops: [AtomicU64; 3],
    pub slow_consumer_closes: AtomicU64,
    /// Error frames sent to clients, indexed by `ErrorCode as usize`.
    client_errors: [AtomicU64; ErrorCode::ALL.len()],
    pub protocol_closes: AtomicU64,
    /// Connections closed with 1008 for leaving their own replies unread.
    pub reply_backlog_closes: AtomicU64,
    /// Times a connection stopped being read because its queue passed its bound.
    pub reads_paused: AtomicU64,
    /// Refused channels counted in an error frame but not named there.
    pub unlisted_channels: AtomicU64,
    /// Tokens refused (401, or a refresh answered `invalid_token`), by reason.
    auth_rejected: [AtomicU64; TokenError::ALL.len()],
    /// SSE streams and POST /publish requests refused (403) for a channel outside
    /// their token's grant.
    pub auth_forbidden: AtomicU64,
    /// Tokens replaced by a `refresh` on an open connection.
    pub auth_refreshes: AtomicU64,
    /// Connections and streams ended at their token's `exp`.
    pub auth_expired: AtomicU64,
    pub send_queue_bytes: AtomicU64,
    pub handoff_queue: AtomicU64,
    pub ring_lag: AtomicU64,
    /// The longest write hold of any worker now (µs); refreshed on each scrape.
    pub write_hold_us: AtomicU64,
    /// Writes that waited for a connection's hold to pass.
    pub held_writes: AtomicU64,
    /// Open WebSocket connections that negotiated permessage-deflate.
    pub compressing_connections: AtomicU64,
    /// Deflated frames built and their bytes, shared with the connections' forms.
    pub compression: Arc<CompressionCounters>,
    /// Compressed client messages inflated.
    pub inflated_messages: AtomicU64,
    pub nats_connected: AtomicU64,
    pub nats_reconnects: AtomicU64,
    pub nats_disconnects: AtomicU64,
    pub nats_lame_duck: AtomicU64,
    /// Core NATS reconnects: subscribed clients may have missed messages.
    pub nats_gap_events: AtomicU64,
    pub jetstream_stalled: AtomicU64,
    pub jetstream_stalls: AtomicU64,
    pub jetstream_duplicates: AtomicU64,
    pub jetstream_backlog_skipped: AtomicU64,
    pub jetstream_gap_fills: AtomicU64,
    pub jetstream_status_messages: AtomicU64,
    pub intake_queue: AtomicU64,
    pub intake_conflated: AtomicU64,
    pub intake_dropped: AtomicU64,
    pub intake_paused: AtomicU64,
    pub intake_pauses: AtomicU64,
    pub intake_paused_ms: AtomicU64,
    /// Payload bytes held by the intake queue (FIFO and newest-per-channel map).
    pub intake_queue_bytes: AtomicU64,
    refused: [AtomicU64; 3],
    pub ring_bytes: AtomicU64,
    /// Broadcasts the ring released before their slot came round (byte bound).
    pub ring_released: AtomicU64,
    /// NATS publishes waiting for the publisher thread, and their bytes.
    pub publish_queue: AtomicU64,
    pub publish_queue_bytes: AtomicU64,
    publish_losses: [AtomicU64; PublishLoss::ALL.len()],
    resumes: [AtomicU64; ResumeResult::ALL.len()],
    /// Gap frames sent, indexed like `GAP_REASONS`.
    gaps: [AtomicU64; GAP_REASONS.len()],
    /// Messages sent again to resuming subscribers, and as snapshots.
    pub replayed: AtomicU64,
    pub snapshots: AtomicU64,
    /// JetStream stream reads for resumes and snapshots (intake::stream_read).
    pub stream_reads_queued: AtomicU64,
    pub stream_reads_in_flight: AtomicU64,
    pub stream_reads: AtomicU64,
    pub stream_read_messages: AtomicU64,
    /// Reads over WS_RESUME_MAX_MESSAGES, and requests refused with the queue full.
    pub stream_reads_over_bound: AtomicU64,
    pub stream_reads_refused: AtomicU64,
    /// What history holds, refreshed on each scrape.
    pub history_messages: AtomicU64,
    pub history_bytes: AtomicU64,
    pub history_channels: AtomicU64,
    pub history_evicted: AtomicU64,
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
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }
    /// Counts a `gap` frame by its reason (one of `GAP_REASONS`).
    pub fn gap_sent(&self, reason: &str) {
        if let Some(i) = GAP_REASONS.iter().position(|r| *r == reason) {
            self.gaps[i].fetch_add(1, Relaxed);
        }
    }
    pub fn resumed(&self, how: ResumeResult) {
        self.resumes[how as usize].fetch_add(1, Relaxed);
    }
    pub fn publish_lost(&self, why: PublishLoss) {
        self.publish_losses[why as usize].fetch_add(1, Relaxed);
    }
    pub fn dropped(&self, why: DropReason, n: u64) {
        self.drops[why as usize].fetch_add(n, Relaxed);
    }
    pub fn drops(&self, why: DropReason) -> u64 {
        self.drops[why as usize].load(Relaxed)
    }
    pub fn auth_rejected(&self, why: TokenError) {
        self.auth_rejected[why as usize].fetch_add(1, Relaxed);
    }
    pub fn auth_rejections(&self, why: TokenError) -> u64 {
        self.auth_rejected[why as usize].load(Relaxed)
    }
    /// Counts an error frame by its code.
    pub fn client_error(&self, code: ErrorCode) {
        self.client_errors[code as usize].fetch_add(1, Relaxed);
    }
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
    /// The publish-to-write histogram as (upper bound in seconds, count in that
    /// bucket alone); observations over the last bound are in neither.
    pub fn latency_buckets(&self) -> [(f64, u64); 14] {
        std::array::from_fn(|i| (LATENCY_BUCKETS[i], self.latency_buckets[i].load(Relaxed)))
    }
    pub fn latency_count(&self) -> u64 {
        self.latency_count.load(Relaxed)
    }
    pub fn cpu_percent(&self) -> f64 {
        self.cpu_percent_x100.load(Relaxed) as f64 / 100.0
    }

    /// Prometheus text exposition format 0.0.4: every family of `FAMILIES`, in order.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for family in FAMILIES {
            family.write(self, &mut out);
        }
        out
    }

    /// The sample lines of the publish-to-write histogram, cumulative as Prometheus wants.
    fn write_latency_histogram(&self, name: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Prefix of every metric name.
const PREFIX: &str = "odin_ws_";

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// How a family's sample lines are read from the counters.
enum Samples {
    /// One unlabelled sample: the counter as it is.
    Plain(fn(&Metrics) -> &AtomicU64),
    /// One unlabelled sample: the counter divided by `divisor`, with `decimals` places.
    Scaled {
        value: fn(&Metrics) -> &AtomicU64,
        divisor: f64,
        decimals: usize,
    },
    /// One sample per value of `label`, in the order `values` lists them.
    Labelled {
        label: &'static str,
        values: fn(&Metrics) -> Vec<(&'static str, u64)>,
    },
    /// The publish-to-write histogram (`_bucket`, `_sum`, `_count`).
    LatencyHistogram,
}

/// One metric family of the exposition: the only place its name, type and help are written.
struct Family {
    /// Without `PREFIX`.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    samples: Samples,
}

impl Family {
    fn write(&self, m: &Metrics, out: &mut String) {
        let (name, help, kind) = (self.name, self.help, self.kind.as_str());
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
        match &self.samples {
            Samples::Plain(value) => {
                let _ = writeln!(out, "{PREFIX}{name} {}", value(m).load(Relaxed));
            }
            Samples::Scaled {
                value,
                divisor,
                decimals,
            } => {
                let scaled = value(m).load(Relaxed) as f64 / divisor;
                let _ = writeln!(out, "{PREFIX}{name} {scaled:.decimals$}");
            }
            Samples::Labelled { label, values } => {
                for (label_value, n) in values(m) {
                    let _ = writeln!(out, "{PREFIX}{name}{{{label}=\"{label_value}\"}} {n}");
                }
            }
            Samples::LatencyHistogram => m.write_latency_histogram(&format!("{PREFIX}{name}"), out),
        }
    }
}

/// A counter family of one unlabelled sample.
const fn counter(
    name: &'static str,
    help: &'static str,
    value: fn(&Metrics) -> &AtomicU64,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
        samples: Samples::Plain(value),
    }
}

/// A gauge family of one unlabelled sample.
const fn gauge(
    name: &'static str,
    help: &'static str,
    value: fn(&Metrics) -> &AtomicU64,
) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
        samples: Samples::Plain(value),
    }
}

/// Every metric family /metrics shows, in the order it shows them.
const FAMILIES: &[Family] = &[
    gauge(
        "connections",
        "Open client connections: WebSocket and SSE streams.",
        |m| &m.connections,
    ),
    gauge("sockets", "Open TCP sockets (WebSocket and HTTP).", |m| {
        &m.sockets
    }),
    gauge(
        "sse_clients",
        "Open Server-Sent Events streams (counted in connections too).",
        |m| &m.sse_clients,
    ),
    counter(
        "sse_connections_total",
        "Server-Sent Events streams started.",
        |m| &m.sse_connections,
    ),
    counter(
        "connections_accepted_total",
        "WebSocket upgrades accepted.",
        |m| &m.accepted,
    ),
    Family {
        name: "connections_rejected_total",
        kind: Kind::Counter,
        help: "Connections refused, by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                Reject::ALL
                    .iter()
                    .map(|&r| (r.as_str(), m.rejected(r)))
                    .collect()
            },
        },
    },
    counter("http_requests_total", "Plain HTTP requests served.", |m| {
        &m.http_requests
    }),
    Family {
        name: "messages_in_total",
        kind: Kind::Counter,
        help: "Messages taken in, by source.",
        samples: Samples::Labelled {
            label: "source",
            values: |m| {
                vec![
                    ("nats", m.messages_in_nats.load(Relaxed)),
                    ("http", m.messages_in_http.load(Relaxed)),
                ]
            },
        },
    },
    counter(
        "broadcasts_total",
        "Messages put into the broadcast ring.",
        |m| &m.broadcasts,
    ),
    counter(
        "deliveries_total",
        "Messages queued to client connections.",
        |m| &m.deliveries,
    ),
    Family {
        name: "drops_total",
        kind: Kind::Counter,
        help: "Messages not delivered, by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                DropReason::ALL
                    .iter()
                    .map(|&d| (d.as_str(), m.drops(d)))
                    .collect()
            },
        },
    },
    counter(
        "slow_consumer_closes_total",
        "Connections closed with 1013 as slow consumers.",
        |m| &m.slow_consumer_closes,
    ),
    counter(
        "protocol_closes_total",
        "Connections closed for protocol violations or abuse.",
        |m| &m.protocol_closes,
    ),
    counter(
        "reply_backlog_closes_total",
        "Connections closed with 1008 while their own unread replies held their send queue over WS_SEND_QUEUE_BYTES.",
        |m| &m.reply_backlog_closes,
    ),
    counter(
        "reads_paused_total",
        "Times a connection stopped being read because its send queue was over WS_SEND_QUEUE_BYTES.",
        |m| &m.reads_paused,
    ),
    counter(
        "unlisted_channels_total",
        "Refused channels counted in an error frame but not named there (past the list's cap).",
        |m| &m.unlisted_channels,
    ),
    Family {
        name: "auth_rejected_total",
        kind: Kind::Counter,
        help: "Tokens refused (401 before an upgrade, SSE stream or publish; invalid_token for a refresh), by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                TokenError::ALL
                    .map(|r| (r.as_str(), m.auth_rejections(r)))
                    .to_vec()
            },
        },
    },
    counter(
        "auth_forbidden_total",
        "SSE streams and POST /publish requests refused with 403 for a channel outside their token's grant.",
        |m| &m.auth_forbidden,
    ),
    counter(
        "auth_refreshes_total",
        "Tokens replaced by a refresh on an open connection.",
        |m| &m.auth_refreshes,
    ),
    counter(
        "auth_expired_total",
        "Connections (closed with 4001) and SSE streams ended at their token's exp.",
        |m| &m.auth_expired,
    ),
    Family {
        name: "client_errors_total",
        kind: Kind::Counter,
        help: "Error frames sent to clients, by code.",
        samples: Samples::Labelled {
            label: "code",
            values: |m| {
                let count = |code: ErrorCode| m.client_errors[code as usize].load(Relaxed);
                ErrorCode::ALL
                    .map(|code| (code.as_str(), count(code)))
                    .to_vec()
            },
        },
    },
    gauge(
        "send_queue_bytes",
        "Bytes waiting in all per-connection send queues.",
        |m| &m.send_queue_bytes,
    ),
    gauge(
        "handoff_queue",
        "Accepted sockets not yet taken by a worker.",
        |m| &m.handoff_queue,
    ),
    gauge(
        "ring_lag",
        "Largest number of broadcasts a worker has yet to read.",
        |m| &m.ring_lag,
    ),
    Family {
        name: "write_hold_seconds",
        kind: Kind::Gauge,
        help: "Longest time any worker now holds a connection's broadcasts to share one write (0 with headroom; at most WS_WRITE_DELAY).",
        samples: Samples::Scaled {
            value: |m| &m.write_hold_us,
            divisor: 1e6,
            decimals: 3,
        },
    },
    counter(
        "held_writes_total",
        "Writes of broadcasts that waited for the connection's write hold.",
        |m| &m.held_writes,
    ),
    gauge(
        "compressing_connections",
        "Open WebSocket connections that negotiated permessage-deflate.",
        |m| &m.compressing_connections,
    ),
    counter(
        "compressed_frames_total",
        "Deflated frames built (once per broadcast, flag and window class, shared by every compressing subscriber; once per echoed message).",
        |m| &m.compression.frames,
    ),
    counter(
        "compressed_chained_frames_total",
        "Of the deflated frames, those deflated after the channel's previous message (once per broadcast, shared by every client whose window ends with that message).",
        |m| &m.compression.chained,
    ),
    counter(
        "compression_bytes_in_total",
        "Payload bytes of the deflated frames before compression.",
        |m| &m.compression.bytes_in,
    ),
    counter(
        "compression_bytes_out_total",
        "Payload bytes of the deflated frames after compression.",
        |m| &m.compression.bytes_out,
    ),
    counter(
        "inflated_messages_total",
        "Compressed client messages inflated.",
        |m| &m.inflated_messages,
    ),
    gauge("nats_connected", "1 when connected to NATS.", |m| {
        &m.nats_connected
    }),
    counter("nats_reconnects_total", "NATS reconnections.", |m| {
        &m.nats_reconnects
    }),
    counter("nats_disconnects_total", "NATS disconnections.", |m| {
        &m.nats_disconnects
    }),
    counter(
        "nats_lame_duck_total",
        "NATS servers that announced lame-duck mode.",
        |m| &m.nats_lame_duck,
    ),
    counter(
        "nats_gap_events_total",
        "Core NATS reconnects after which subscribed clients may have missed messages.",
        |m| &m.nats_gap_events,
    ),
    gauge(
        "jetstream_stalled",
        "1 while JetStream delivers nothing (no leader, or pending messages not fetched).",
        |m| &m.jetstream_stalled,
    ),
    counter(
        "jetstream_stalls_total",
        "Times JetStream delivery stalled.",
        |m| &m.jetstream_stalls,
    ),
    counter(
        "jetstream_duplicates_total",
        "JetStream redeliveries of messages already in the ring: acked, not sent again.",
        |m| &m.jetstream_duplicates,
    ),
    counter(
        "jetstream_backlog_skipped_total",
        "JetStream messages over JS_MAX_BACKLOG behind the stream's newest: acked, not sent.",
        |m| &m.jetstream_backlog_skipped,
    ),
    counter(
        "jetstream_gap_fills_total",
        "JetStream messages lost in flight, fetched by sequence and sent in order.",
        |m| &m.jetstream_gap_fills,
    ),
    counter(
        "jetstream_status_messages_total",
        "JetStream status messages (heartbeats, 409, 503): control, never broadcast.",
        |m| &m.jetstream_status_messages,
    ),
    counter(
        "intake_conflated_total",
        "NATS messages replaced by a newer one of the same channel before broadcast.",
        |m| &m.intake_conflated,
    ),
    counter(
        "intake_dropped_total",
        "NATS messages dropped because the intake queue was full (by channels or bytes).",
        |m| &m.intake_dropped,
    ),
    Family {
        name: "broadcasts_refused_total",
        kind: Kind::Counter,
        help: "Messages that never reached the ring, by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                [
                    Refusal::TooLarge,
                    Refusal::IntakeChannels,
                    Refusal::IntakeBytes,
                ]
                .map(|r| (r.as_str(), m.refused(r)))
                .to_vec()
            },
        },
    },
    gauge(
        "intake_queue_bytes",
        "Payload bytes of the NATS messages waiting for the ring (bounded).",
        |m| &m.intake_queue_bytes,
    ),
    gauge(
        "ring_bytes",
        "Bytes held by the broadcast ring (bounded by WS_RING_BYTES).",
        |m| &m.ring_bytes,
    ),
    counter(
        "ring_released_total",
        "Broadcasts the ring released early to stay within WS_RING_BYTES.",
        |m| &m.ring_released,
    ),
    gauge(
        "publish_queue",
        "POST /publish messages waiting to be published to NATS (bounded).",
        |m| &m.publish_queue,
    ),
    gauge(
        "publish_queue_bytes",
        "Bytes of the POST /publish messages waiting to be published to NATS.",
        |m| &m.publish_queue_bytes,
    ),
    Family {
        name: "publish_lost_total",
        kind: Kind::Counter,
        help: "POST /publish messages not published to NATS, by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                PublishLoss::ALL
                    .map(|p| (p.as_str(), m.publish_losses[p as usize].load(Relaxed)))
                    .to_vec()
            },
        },
    },
    Family {
        name: "resumes_total",
        kind: Kind::Counter,
        help: "Subscribes with since, by how they were answered.",
        samples: Samples::Labelled {
            label: "result",
            values: |m| {
                ResumeResult::ALL
                    .map(|r| (r.as_str(), m.resumes[r as usize].load(Relaxed)))
                    .to_vec()
            },
        },
    },
    Family {
        name: "gaps_total",
        kind: Kind::Counter,
        help: "Gap frames sent to clients that missed messages, by reason.",
        samples: Samples::Labelled {
            label: "reason",
            values: |m| {
                GAP_REASONS
                    .iter()
                    .zip(&m.gaps)
                    .map(|(r, n)| (*r, n.load(Relaxed)))
                    .collect()
            },
        },
    },
    counter(
        "replayed_total",
        "Messages sent again to resuming subscribers.",
        |m| &m.replayed,
    ),
    counter(
        "snapshots_total",
        "Messages sent as snapshots (the latest of a channel, on subscribe).",
        |m| &m.snapshots,
    ),
    gauge(
        "stream_read_queue",
        "Resumes and snapshots waiting for a JetStream stream read (bounded).",
        |m| &m.stream_reads_queued,
    ),
    gauge(
        "stream_reads_in_flight",
        "JetStream stream reads for resumes and snapshots being made now.",
        |m| &m.stream_reads_in_flight,
    ),
    counter(
        "stream_reads_total",
        "JetStream stream reads for resumes and snapshots answered.",
        |m| &m.stream_reads,
    ),
    counter(
        "stream_read_messages_total",
        "Messages read from the JetStream stream for resumes and snapshots.",
        |m| &m.stream_read_messages,
    ),
    counter(
        "stream_reads_over_bound_total",
        "Stream reads stopped at WS_RESUME_MAX_MESSAGES (a resume is too_old).",
        |m| &m.stream_reads_over_bound,
    ),
    counter(
        "stream_reads_refused_total",
        "Stream reads refused because the queue was full (a resume is unavailable).",
        |m| &m.stream_reads_refused,
    ),
    gauge(
        "history_messages",
        "Messages history holds for resume and snapshots.",
        |m| &m.history_messages,
    ),
    gauge(
        "history_bytes",
        "Bytes history counts against WS_HISTORY_BYTES.",
        |m| &m.history_bytes,
    ),
    gauge(
        "history_channels",
        "Channels history holds messages of.",
        |m| &m.history_channels,
    ),
    counter(
        "history_evicted_total",
        "Messages history let go (count per channel, age or bytes).",
        |m| &m.history_evicted,
    ),
    counter(
        "intake_pauses_total",
        "Times NATS intake paused for CPU.",
        |m| &m.intake_pauses,
    ),
    gauge(
        "intake_queue",
        "NATS messages waiting for the ring (bounded).",
        |m| &m.intake_queue,
    ),
    gauge(
        "intake_paused",
        "1 while NATS intake is paused for CPU.",
        |m| &m.intake_paused,
    ),
    Family {
        name: "intake_paused_seconds_total",
        kind: Kind::Counter,
        help: "Time NATS intake spent paused.",
        samples: Samples::Scaled {
            value: |m| &m.intake_paused_ms,
            divisor: 1000.0,
            decimals: 3,
        },
    },
    Family {
        name: "cpu_percent",
        kind: Kind::Gauge,
        help: "Process CPU use as a percentage of the CPU limit.",
        samples: Samples::Scaled {
            value: |m| &m.cpu_percent_x100,
            divisor: 100.0,
            decimals: 2,
        },
    },
    gauge("memory_bytes", "Resident set size.", |m| &m.rss_bytes),
    Family {
        name: "publish_to_write_seconds",
        kind: Kind::Histogram,
        help: "From intake to the first socket write, per broadcast and worker.",
        samples: Samples::LatencyHistogram,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_only_counters_end_in_total() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        for f in FAMILIES {
            let counter = matches!(f.kind, Kind::Counter);
            assert_eq!(counter, f.name.ends_with("_total"), "{}", f.name);
        }
    }

    #[test]
    fn docs_http_lists_every_family_and_only_those() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/http.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `odin_ws_"))
            .filter_map(|l| l.split(['`', '{']).next())
            .collect();
        for f in FAMILIES {
            assert!(
                documented.contains(&f.name),
                "docs/http.md lacks odin_ws_{}",
                f.name
            );
        }
        for name in documented {
            assert!(
                FAMILIES.iter().any(|f| f.name == name),
                "docs/http.md lists odin_ws_{name}, which /metrics does not serve"
            );
        }
    }

    #[test]
    fn client_errors_have_one_sample_per_code() {
        let m = Metrics::default();
        m.client_error(ErrorCode::TooManySubscriptions);
        let text = m.render();
        for code in ErrorCode::ALL {
            let n = u64::from(code == ErrorCode::TooManySubscriptions);
            let line = format!(
                "odin_ws_client_errors_total{{code=\"{}\"}} {n}\n",
                code.as_str()
            );
            assert!(text.contains(&line), "{line}");
        }
    }

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
