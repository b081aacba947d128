//! Every variable's name and default, in DESIGN's table order. The table printed by
//! `--check-config`, `.env.example` and the parsers all follow this one list.

/// Declares one `&str` constant per variable (its own name) and `VARIABLES`, the
/// ordered (name, default) list. A default is written as an operator would write it
/// and goes through the same parser as a configured value.
macro_rules! variables {
    ($($name:ident = $default:expr;)*) => {
        $(pub(crate) const $name: &str = stringify!($name);)*
        pub(crate) const VARIABLES: &[(&str, &str)] = &[$(($name, $default)),*];
    };
}

variables! {
    ENVIRONMENT = "development";
    WS_ADDR = ":3002";
    WS_PATH = "/ws";
    NATS_URL = "";
    NATS_SUBJECTS = "odin.>";
    // 0 = detect from the cgroup quota, else the CPUs the process may run on.
    WS_CPU_LIMIT = "0";
    // 0 = detect from the cgroup limit, else physical memory. Bytes.
    WS_MEMORY_LIMIT = "0";
    WS_MAX_CONNECTIONS = "10000";
    // 0 = ceil(CPU limit) reactor threads.
    WS_WORKER_POOL_SIZE = "0";
    // 0 = max(4096, 1024 per worker), so a burst of one message per worker per ms fits.
    WS_WORKER_QUEUE_SIZE = "0";
    WS_MAX_NATS_RATE = "0";
    WS_MAX_BROADCAST_RATE = "0";
    // Read only to warn: the Go server's files set it.
    WS_MAX_GOROUTINES = "0";
    WS_CPU_REJECT_THRESHOLD = "75";
    WS_CPU_PAUSE_THRESHOLD = "80";
    // 1 MiB per connection: several seconds of a busy market-data stream.
    WS_SEND_QUEUE_BYTES = "1048576";
    // 0 = min(256 KiB, WS_SEND_QUEUE_BYTES / 2): the largest encoded broadcast frame
    // taken in; one that could never fit a send queue would close every subscriber.
    WS_MAX_BROADCAST_SIZE = "0";
    // 64 MiB: far above 32,768 slots of ordinary market data, far below the memory
    // the ring could hold with 32,768 payloads of 1 MB.
    WS_RING_BYTES = "67108864";
    // Resume and snapshots: recent messages per channel, by count, age and bytes.
    WS_HISTORY_SIZE = "1000";
    WS_HISTORY_TTL = "5m";
    WS_HISTORY_BYTES = "67108864";
    // JetStream: the most messages one resume or snapshot reads from the stream
    // (as many as memory keeps per channel by default).
    WS_RESUME_MAX_MESSAGES = "1000";
    WS_SLOW_CLIENT_POLICY = "conflate";
    // The most a broadcast may wait to share a write with the next ones: at 25 msg/s
    // per client, 100ms means ~2.5 messages per write instead of one. At the seed's
    // load it beat uWebSockets on both CPU and p99 where 150ms lost on p99
    // (BENCHMARKS.md, "Write coalescing").
    WS_WRITE_DELAY = "100ms";
    // busy: hold only while a worker is busy (market data wants no added latency
    // when there is headroom); always: hold every connection up to the delay.
    WS_WRITE_COALESCE = "busy";
    WS_MAX_MESSAGE_SIZE = "65536";
    WS_MAX_SUBSCRIPTIONS = "100";
    WS_CLIENT_MSG_RATE = "50";
    WS_PING_INTERVAL = "30s";
    // Three missed pings.
    WS_IDLE_TIMEOUT = "90s";
    WS_HANDSHAKE_TIMEOUT = "10s";
    WS_SHUTDOWN_GRACE = "30s";
    WS_ALLOWED_ORIGINS = "";
    WS_PUBLISH_TOKEN = "";
    WS_STATUS_TOKEN = "";
    // JWT authentication, off while both are empty: an HS256 secret (32+ bytes),
    // and/or a PEM file of RS256/ES256 public keys (two during a key rotation).
    WS_AUTH_JWT_SECRET = "";
    WS_AUTH_JWT_KEY_FILE = "";
    WS_ECHO_PATH = "";
    // permessage-deflate for clients that offer it; one deflated copy per broadcast.
    WS_COMPRESSION = "on";
    // Smaller JSON gains little from deflate and costs a compressed copy to build.
    WS_COMPRESSION_MIN_BYTES = "256";
    // Chained copies for clients that keep their window: off answers every
    // client server_no_context_takeover (each message deflated alone).
    WS_COMPRESSION_CHAIN = "on";
    NATS_USER = "";
    NATS_PASSWORD = "";
    NATS_TOKEN = "";
    NATS_CREDS_FILE = "";
    NATS_JETSTREAM = "false";
    JS_STREAM = "ODIN_WS";
    // Empty = "odin-ws-<host name>", one durable consumer per instance.
    JS_CONSUMER = "";
    JS_MAX_AGE = "24h";
    JS_MAX_MSGS = "1000000";
    JS_ACK_WAIT = "30s";
    JS_BATCH = "256";
    // auto = 3 when JetStream accepts three (three or more servers), else 1.
    JS_REPLICAS = "auto";
    // Older than this behind the stream's newest message: backlog, skipped.
    JS_MAX_BACKLOG = "60s";
    METRICS_INTERVAL = "15s";
    LOG_LEVEL = "info";
    LOG_FORMAT = "text";
}

/// Shown as "***" when set, in the table, the logs and diffs.
pub(crate) const SECRETS: &[&str] = &[
    WS_PUBLISH_TOKEN,
    WS_STATUS_TOKEN,
    WS_AUTH_JWT_SECRET,
    NATS_PASSWORD,
    NATS_TOKEN,
];

/// What a set secret is shown as.
pub(crate) const MASK: &str = "***";

/// Applied on SIGHUP without a restart (DESIGN: log level, rates, thresholds, max
/// connections, allowed origins; and the write delay, a rate of writes; and the
/// JWT keys, for rotation: the key file is read again).
/// WS_CLIENT_MSG_RATE is left out: each connection keeps the rate it was accepted
/// with.
pub(crate) const RELOADABLE: &[&str] = &[
    LOG_LEVEL,
    WS_MAX_NATS_RATE,
    WS_MAX_BROADCAST_RATE,
    WS_WRITE_DELAY,
    WS_WRITE_COALESCE,
    WS_CPU_REJECT_THRESHOLD,
    WS_CPU_PAUSE_THRESHOLD,
    WS_MAX_CONNECTIONS,
    WS_ALLOWED_ORIGINS,
    WS_AUTH_JWT_SECRET,
    WS_AUTH_JWT_KEY_FILE,
];

/// Paths the HTTP router answers itself; WS_PATH and WS_ECHO_PATH must not shadow them.
pub(crate) const RESERVED_PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/publish",
    "/client.js",
    "/client.d.ts",
    "/status",
    "/status.json",
    "/sse",
];

/// The env file read when `--env-file` is not given; skipped when absent.
pub(crate) const DEFAULT_ENV_FILE: &str = ".env";

/// The `ConfigError::variable` of a problem with the env file itself.
pub(crate) const ENV_FILE_FLAG: &str = "--env-file";

/// Prefix of the derived JetStream consumer name.
pub(crate) const JS_CONSUMER_PREFIX: &str = "odin-ws-";

/// Where a value came from, for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Env,
    File,
    Default,
    Derived,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
            Source::Derived => "derived",
        }
    }
}

/// The default of `name`; "" for a name that is not a variable.
pub(crate) fn default_of(name: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, d)| d)
}

/// The variable's own `&'static str` name, when `name` is one of ours.
pub(crate) fn known(name: &str) -> Option<&'static str> {
    VARIABLES.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_list_names_variables() {
        for (i, (name, _)) in VARIABLES.iter().enumerate() {
            assert!(
                VARIABLES[i + 1..].iter().all(|(n, _)| n != name),
                "{name} twice"
            );
        }
        for name in SECRETS.iter().chain(RELOADABLE) {
            assert!(known(name).is_some(), "{name} is not a variable");
        }
        assert_eq!(VARIABLES.len(), 57);
    }
}
