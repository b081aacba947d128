//! Configuration: environment > env file > defaults (DESIGN "Configuration").
//!
//! Loading runs in stages so that an operator sees every mistake at once: each
//! variable is parsed into its type and range (`parse`), then the settings are checked
//! against each other (`checks`), then the values left to the machine are derived
//! (`derive`). Names and defaults live in `spec`.

mod checks;
mod derive;
mod duration;
mod envfile;
mod parse;
mod spec;
mod table;
mod values;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use duration::{format_duration, parse_duration};

use parse::Reader;
use spec::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// What a connection whose send queue passed WS_SEND_QUEUE_BYTES loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowClientPolicy {
    /// Keep only the newest pending message per channel.
    Conflate,
    DropOldest,
    /// Close with 1013.
    Disconnect,
}

impl SlowClientPolicy {
    const ALL: [SlowClientPolicy; 3] = [
        SlowClientPolicy::Conflate,
        SlowClientPolicy::DropOldest,
        SlowClientPolicy::Disconnect,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SlowClientPolicy::Conflate => "conflate",
            SlowClientPolicy::DropOldest => "drop_oldest",
            SlowClientPolicy::Disconnect => "disconnect",
        }
    }
}

/// When a worker holds a connection's broadcasts to share one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCoalesce {
    /// Only while the worker is busy, up to WS_WRITE_DELAY (reactor/coalesce.rs).
    Busy,
    /// Always: a connection written to less than WS_WRITE_DELAY ago waits.
    Always,
}

impl WriteCoalesce {
    const ALL: [WriteCoalesce; 2] = [WriteCoalesce::Busy, WriteCoalesce::Always];

    pub fn as_str(&self) -> &'static str {
        match self {
            WriteCoalesce::Busy => "busy",
            WriteCoalesce::Always => "always",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    Pretty,
}

impl LogFormat {
    const ALL: [LogFormat; 3] = [LogFormat::Json, LogFormat::Text, LogFormat::Pretty];

    pub fn as_str(&self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

/// LOG_LEVEL's values; trace is left out (too much for a server carrying thousands of
/// connections).
const LOG_LEVELS: [log::LevelFilter; 4] = [
    log::LevelFilter::Debug,
    log::LevelFilter::Info,
    log::LevelFilter::Warn,
    log::LevelFilter::Error,
];

fn level_name(level: &log::LevelFilter) -> &'static str {
    match level {
        log::LevelFilter::Off => "off",
        log::LevelFilter::Error => "error",
        log::LevelFilter::Warn => "warn",
        log::LevelFilter::Info => "info",
        log::LevelFilter::Debug => "debug",
        log::LevelFilter::Trace => "trace",
    }
}

/// One configuration mistake. `message` is the whole sentence and names the variable
/// and the value; `Display` prints just that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The effective settings. Built only by `load` / `from_sources`, so every value has
/// passed its checks and every derived value is filled in.
#[derive(Clone)]
pub struct Config {
    pub environment: Environment,
    pub ws_addr: SocketAddr,
    pub ws_path: String,
    /// Empty = standalone (HTTP publish only).
    pub nats_urls: Vec<String>,
    pub nats_subjects: Vec<String>,
    /// Cores; WS_CPU_LIMIT or detected.
    pub cpu_limit: f64,
    /// Bytes; WS_MEMORY_LIMIT or detected.
    pub memory_limit: u64,
    pub max_connections: usize,
    pub worker_pool_size: usize,
    /// Broadcast ring capacity, a power of two.
    pub worker_queue_size: usize,
    /// Messages/s; 0 = unlimited.
    pub max_nats_rate: u32,
    /// Broadcasts/s; 0 = unlimited.
    pub max_broadcast_rate: u32,
    /// Percent of the CPU limit.
    pub cpu_reject_threshold: f64,
    /// Percent of the CPU limit, >= the reject threshold.
    pub cpu_pause_threshold: f64,
    pub send_queue_bytes: usize,
    /// Largest encoded broadcast frame taken in; at most half WS_SEND_QUEUE_BYTES.
    pub max_broadcast_size: usize,
    /// Bytes the broadcast ring may hold before it releases its oldest slots.
    pub ring_bytes: usize,
    /// Messages kept per channel for resume and snapshots (0 = none).
    pub history_size: usize,
    /// How long a message stays in history.
    pub history_ttl: Duration,
    /// Bytes all history may hold.
    pub history_bytes: usize,
    /// JetStream: the most messages one resume or snapshot reads from the stream.
    pub resume_max_messages: usize,
    pub slow_client_policy: SlowClientPolicy,
    /// The most a connection's broadcasts may wait to share one write.
    pub write_delay: Duration,
    pub write_coalesce: WriteCoalesce,
    pub max_message_size: usize,
    pub max_subscriptions: usize,
    /// Inbound messages/s per connection.
    pub client_msg_rate: u32,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Empty = any origin.
    pub allowed_origins: Vec<String>,
    pub publish_token: Option<String>,
    /// Enables GET /status and /status.json.
    pub status_token: Option<String>,
    pub echo_path: Option<String>,
    /// JWT authentication: the keys tokens are checked against (WS_AUTH_JWT_SECRET
    /// and WS_AUTH_JWT_KEY_FILE together); None = off.
    pub auth: Option<Arc<crate::auth::Keys>>,
    /// The two as given, for the table and the reload diff.
    auth_secret: Option<values::JwtSecret>,
    auth_key_file: Option<values::KeyFile>,
    /// permessage-deflate offered by clients is accepted (WS_COMPRESSION=on).
    pub compression: bool,
    /// Broadcast and echo payloads smaller than this go uncompressed.
    pub compression_min_bytes: usize,
    /// Chained deflated copies for clients that keep their window (WS_COMPRESSION_CHAIN=on).
    pub compression_chain: bool,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    pub nats_creds_file: Option<PathBuf>,
    pub nats_jetstream: bool,
    pub js_stream: String,
    pub js_consumer: String,
    /// Zero = no age limit.
    pub js_max_age: Duration,
    pub js_max_msgs: i64,
    pub js_ack_wait: Duration,
    pub js_batch: usize,
    /// Replicas of a stream odin-ws creates; None = auto (3 when possible, else 1).
    pub js_replicas: Option<u8>,
    /// A message published this long before the stream's newest is skipped.
    pub js_max_backlog: Duration,
    pub metrics_interval: Duration,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// Non-fatal notes for the operator, printed with the table.
    pub warnings: Vec<String>,
    /// Read only to warn about it and show it in the table.
    max_goroutines: u64,
    sources: HashMap<&'static str, Source>,
}

impl fmt::Debug for Config {
    /// The table's rows, so secrets stay masked wherever a Config is debug-printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.table_rows()
                    .into_iter()
                    .map(|(name, value, _)| (name, value)),
            )
            .finish()
    }
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Ranges that keep later arithmetic (ceil to a thread count, a socket count plus
/// headroom, percentages of the limit) far from overflow: 1024 cores (the most
/// reactor threads WS_WORKER_POOL_SIZE allows), 1 PiB, ten million sockets.
const MAX_CPU_LIMIT: f64 = 1024.0;
const MAX_MEMORY_LIMIT: u64 = 1 << 50;
const MAX_CONNECTIONS: usize = 10_000_000;
/// Longer than a second would be a batch job, not a live feed.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

impl Config {
    /// environment > env file > defaults. `env_file`: Some(path) = named explicitly
    /// (a missing file is an error naming the path); None = `./.env` when it exists.
    pub fn load(env_file: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        match env_file {
            Some(path) => load_from(path, true, &env),
            None => load_from(Path::new(DEFAULT_ENV_FILE), false, &env),
        }
    }

    /// The pure core: `file` holds the env file's KEY=VALUE pairs (already expanded),
    /// `env` the process environment.
    pub fn from_sources(
        file: &[(String, String)],
        env: &HashMap<String, String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut r = Reader::new(file, env);
        let mut config = read(&mut r);
        checks::cross_fields(&config, &mut r);
        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        derive::derive(&mut config, &mut r);
        config.warnings = r.warnings;
        config.sources = r.sources;
        Ok(config)
    }
}

impl Config {
    /// LOG_FORMAT as far as it can be read (environment, then the env file) when the
    /// configuration as a whole is invalid, so that even its errors reach a log
    /// collector in the format it expects; text when it cannot be read.
    pub fn log_format_hint(env_file: Option<&Path>) -> LogFormat {
        let from_file = || {
            let path = env_file.unwrap_or(Path::new(DEFAULT_ENV_FILE));
            let file = envfile::read(path, false, &HashMap::new()).ok()?;
            let (_, value) = file
                .pairs
                .into_iter()
                .rev()
                .find(|(k, _)| k == LOG_FORMAT)?;
            Some(value)
        };
        let value = std::env::var(LOG_FORMAT).ok().or_else(from_file);
        let wanted = value.as_deref().unwrap_or_default().trim();
        LogFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(wanted))
            .unwrap_or(LogFormat::Text)
    }
}

/// `load` with the environment as a map; `required`: a missing file is an error.
fn load_from(
    path: &Path,
    required: bool,
    env: &HashMap<String, String>,
) -> Result<Config, Vec<ConfigError>> {
    let file = envfile::read(path, required, env).map_err(|e| vec![e])?;
    match Config::from_sources(&file.pairs, env) {
        Ok(_) if !file.errors.is_empty() => Err(file.errors),
        Ok(mut config) => {
            config.warnings.extend(file.unset_warnings());
            Ok(config)
        }
        Err(mut errors) => {
            file.explain(&mut errors);
            Err(file.errors.into_iter().chain(errors).collect())
        }
    }
}

/// Stage one: every variable in table order, parsed and range-checked.
fn read(r: &mut Reader) -> Config {
    Config {
        environment: r.choice(ENVIRONMENT, &Environment::ALL, Environment::as_str),
        ws_addr: r.parse(WS_ADDR, values::ws_addr),
        ws_path: r.parse(WS_PATH, values::path),
        nats_urls: r.list(NATS_URL, values::nats_url),
        nats_subjects: r.list(NATS_SUBJECTS, values::subject),
        cpu_limit: r.float(WS_CPU_LIMIT, 0.0, MAX_CPU_LIMIT, "0-1024 (0 = detect)"),
        memory_limit: r.int(WS_MEMORY_LIMIT, 0, MAX_MEMORY_LIMIT),
        max_connections: r.int(WS_MAX_CONNECTIONS, 1, MAX_CONNECTIONS),
        worker_pool_size: r.int(WS_WORKER_POOL_SIZE, 0, 1024),
        worker_queue_size: r.parse(WS_WORKER_QUEUE_SIZE, derive::queue_size),
        max_nats_rate: r.int(WS_MAX_NATS_RATE, 0, u32::MAX),
        max_broadcast_rate: r.int(WS_MAX_BROADCAST_RATE, 0, u32::MAX),
        max_goroutines: r.int(WS_MAX_GOROUTINES, 0, u64::MAX),
        cpu_reject_threshold: r.float(WS_CPU_REJECT_THRESHOLD, 0.0, 100.0, "0-100"),
        cpu_pause_threshold: r.float(WS_CPU_PAUSE_THRESHOLD, 0.0, 100.0, "0-100"),
        send_queue_bytes: r.int(WS_SEND_QUEUE_BYTES, 4 * KIB, 1024 * MIB),
        max_broadcast_size: r.int(WS_MAX_BROADCAST_SIZE, 0, 512 * MIB),
        ring_bytes: r.int(WS_RING_BYTES, MIB, 64 * 1024 * MIB),
        history_size: r.int(WS_HISTORY_SIZE, 0, 1_000_000),
        history_ttl: r.duration(WS_HISTORY_TTL, false),
        history_bytes: r.int(WS_HISTORY_BYTES, 0, 64 * 1024 * MIB),
        resume_max_messages: r.int(WS_RESUME_MAX_MESSAGES, 1, 1_000_000),
        slow_client_policy: r.choice(
            WS_SLOW_CLIENT_POLICY,
            &SlowClientPolicy::ALL,
            SlowClientPolicy::as_str,
        ),
        write_delay: r.duration_up_to(WS_WRITE_DELAY, MAX_WRITE_DELAY),
        write_coalesce: r.choice(
            WS_WRITE_COALESCE,
            &WriteCoalesce::ALL,
            WriteCoalesce::as_str,
        ),
        max_message_size: r.int(WS_MAX_MESSAGE_SIZE, 128, 16 * MIB),
        max_subscriptions: r.int(WS_MAX_SUBSCRIPTIONS, 1, 10_000),
        client_msg_rate: r.int(WS_CLIENT_MSG_RATE, 1, 100_000),
        ping_interval: r.duration(WS_PING_INTERVAL, false),
        idle_timeout: r.duration(WS_IDLE_TIMEOUT, false),
        handshake_timeout: r.duration(WS_HANDSHAKE_TIMEOUT, false),
        shutdown_grace: r.duration(WS_SHUTDOWN_GRACE, true),
        allowed_origins: r.list(WS_ALLOWED_ORIGINS, values::origin),
        publish_token: r.optional(WS_PUBLISH_TOKEN),
        status_token: r.optional(WS_STATUS_TOKEN),
        echo_path: r.parse(WS_ECHO_PATH, values::optional_path),
        auth: None,
        auth_secret: r.secret(WS_AUTH_JWT_SECRET, values::jwt_secret),
        auth_key_file: r.parse(WS_AUTH_JWT_KEY_FILE, values::key_file),
        compression: r.parse(WS_COMPRESSION, values::on_off),
        compression_min_bytes: r.int(WS_COMPRESSION_MIN_BYTES, 0, 16 * MIB),
        compression_chain: r.parse(WS_COMPRESSION_CHAIN, values::on_off),
        nats_user: r.optional(NATS_USER),
        nats_password: r.optional(NATS_PASSWORD),
        nats_token: r.optional(NATS_TOKEN),
        nats_creds_file: r.parse(NATS_CREDS_FILE, values::creds_file),
        nats_jetstream: r.boolean(NATS_JETSTREAM),
        js_stream: r.parse(JS_STREAM, values::js_name),
        js_consumer: r.parse(JS_CONSUMER, values::optional_js_name),
        js_max_age: r.duration(JS_MAX_AGE, true),
        js_max_msgs: r.int(JS_MAX_MSGS, 1, i64::MAX),
        js_ack_wait: r.duration(JS_ACK_WAIT, false),
        js_batch: r.int(JS_BATCH, 1, 10_000),
        js_replicas: r.parse(JS_REPLICAS, values::js_replicas),
        js_max_backlog: r.duration(JS_MAX_BACKLOG, false),
        metrics_interval: r.duration(METRICS_INTERVAL, false),
        log_level: r.choice(LOG_LEVEL, &LOG_LEVELS, level_name),
        log_format: r.choice(LOG_FORMAT, &LogFormat::ALL, LogFormat::as_str),
        warnings: Vec::new(),
        sources: HashMap::new(),
    }
}
