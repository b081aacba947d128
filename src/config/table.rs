//! The configuration as an operator sees it: the table for `--check-config` and
//! start-up, and the differences a SIGHUP reload would apply.

use super::spec::*;
use super::values::{self, mask_url_password};
use super::{Config, format_duration, level_name};

/// Values wider than this do not widen the whole table's value column.
const MAX_VALUE_WIDTH: usize = 40;

impl Config {
    /// (variable, effective value, source) for every variable in DESIGN's table order;
    /// source is "env", "file", "default" or "derived". Secrets show as "***" when set.
    pub fn table_rows(&self) -> Vec<(&'static str, String, &'static str)> {
        self.values()
            .into_iter()
            .map(|(name, value)| (name, shown(name, &value), self.source(name).as_str()))
            .collect()
    }

    /// The rows aligned in columns, one line per variable, then one line per warning.
    pub fn render_table(&self) -> String {
        let rows = self.table_rows();
        let name_width = rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|(_, v, _)| v.chars().count())
            .max()
            .unwrap_or(0)
            .clamp("(empty)".len(), MAX_VALUE_WIDTH);
        let mut out = format!(
            "{:<name_width$}  {:<value_width$}  SOURCE\n",
            "VARIABLE", "VALUE"
        );
        for (name, value, source) in rows {
            let value = if value.is_empty() {
                "(empty)".to_string()
            } else {
                value
            };
            out.push_str(&format!(
                "{name:<name_width$}  {value:<value_width$}  {source}\n"
            ));
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }

    /// The reloadable settings (log level, rates, thresholds, max connections, allowed
    /// origins) that differ in `newer`, as "WS_MAX_CONNECTIONS: 7000 -> 8000".
    pub fn reloadable_diff(&self, newer: &Config) -> Vec<String> {
        let mut changes = self.diff(newer, true);
        // Rotation rewrites the key file in place: its path alone does not tell.
        if let (Some(old), Some(new)) = (&self.auth_key_file, &newer.auth_key_file)
            && old.path == new.path
            && old.keys != new.keys
        {
            changes.push(format!(
                "{WS_AUTH_JWT_KEY_FILE}: {} read again: {} -> {}",
                new.path.display(),
                old.keys.describe(),
                new.keys.describe()
            ));
        }
        changes
    }

    /// This configuration with the reloadable settings taken from `newer`: what a
    /// SIGHUP applies. The rest waits for a restart (`restart_diff`).
    pub fn with_reloaded(&self, newer: &Config) -> Config {
        let mut next = self.clone();
        next.log_level = newer.log_level;
        next.max_nats_rate = newer.max_nats_rate;
        next.max_broadcast_rate = newer.max_broadcast_rate;
        next.write_delay = newer.write_delay;
        next.write_coalesce = newer.write_coalesce;
        next.cpu_reject_threshold = newer.cpu_reject_threshold;
        next.cpu_pause_threshold = newer.cpu_pause_threshold;
        next.max_connections = newer.max_connections;
        next.allowed_origins = newer.allowed_origins.clone();
        next.auth = newer.auth.clone();
        next.auth_secret = newer.auth_secret.clone();
        next.auth_key_file = newer.auth_key_file.clone();
        next
    }

    /// The other settings that differ in `newer`, same format: a reload cannot apply
    /// them, so the server can say that they wait for a restart.
    pub fn restart_diff(&self, newer: &Config) -> Vec<String> {
        self.diff(newer, false)
    }

    fn diff(&self, newer: &Config, reloadable: bool) -> Vec<String> {
        self.values()
            .into_iter()
            .zip(newer.values())
            .filter(|((name, old), (_, new))| RELOADABLE.contains(name) == reloadable && old != new)
            .map(|((name, old), (_, new))| {
                format!("{name}: {} -> {}", shown(name, &old), shown(name, &new))
            })
            .collect()
    }

    fn source(&self, name: &str) -> Source {
        self.sources.get(name).copied().unwrap_or(Source::Default)
    }

    /// Every variable's effective value, unmasked, in table order (a test holds this
    /// order to `VARIABLES`).
    fn values(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            (ENVIRONMENT, self.environment.as_str().to_string()),
            (WS_ADDR, self.ws_addr.to_string()),
            (WS_PATH, self.ws_path.clone()),
            (NATS_URL, self.nats_urls.join(",")),
            (NATS_SUBJECTS, self.nats_subjects.join(",")),
            (WS_CPU_LIMIT, self.cpu_limit.to_string()),
            (WS_MEMORY_LIMIT, self.memory_limit.to_string()),
            (WS_MAX_CONNECTIONS, self.max_connections.to_string()),
            (WS_WORKER_POOL_SIZE, self.worker_pool_size.to_string()),
            (WS_WORKER_QUEUE_SIZE, self.worker_queue_size.to_string()),
            (WS_MAX_NATS_RATE, self.max_nats_rate.to_string()),
            (WS_MAX_BROADCAST_RATE, self.max_broadcast_rate.to_string()),
            (WS_MAX_GOROUTINES, self.max_goroutines.to_string()),
            (
                WS_CPU_REJECT_THRESHOLD,
                self.cpu_reject_threshold.to_string(),
            ),
            (WS_CPU_PAUSE_THRESHOLD, self.cpu_pause_threshold.to_string()),
            (WS_SEND_QUEUE_BYTES, self.send_queue_bytes.to_string()),
            (WS_MAX_BROADCAST_SIZE, self.max_broadcast_size.to_string()),
            (WS_RING_BYTES, self.ring_bytes.to_string()),
            (WS_HISTORY_SIZE, self.history_size.to_string()),
            (WS_HISTORY_TTL, format_duration(self.history_ttl)),
            (WS_HISTORY_BYTES, self.history_bytes.to_string()),
            (WS_RESUME_MAX_MESSAGES, self.resume_max_messages.to_string()),
            (
                WS_SLOW_CLIENT_POLICY,
                self.slow_client_policy.as_str().to_string(),
            ),
            (WS_WRITE_DELAY, format_duration(self.write_delay)),
            (WS_WRITE_COALESCE, self.write_coalesce.as_str().to_string()),
            (WS_MAX_MESSAGE_SIZE, self.max_message_size.to_string()),
            (WS_MAX_SUBSCRIPTIONS, self.max_subscriptions.to_string()),
            (WS_CLIENT_MSG_RATE, self.client_msg_rate.to_string()),
            (WS_PING_INTERVAL, format_duration(self.ping_interval)),
            (WS_IDLE_TIMEOUT, format_duration(self.idle_timeout)),
            (
                WS_HANDSHAKE_TIMEOUT,
                format_duration(self.handshake_timeout),
            ),
            (WS_SHUTDOWN_GRACE, format_duration(self.shutdown_grace)),
            (WS_ALLOWED_ORIGINS, self.allowed_origins.join(",")),
            (WS_PUBLISH_TOKEN, opt(&self.publish_token)),
            (WS_STATUS_TOKEN, opt(&self.status_token)),
            (
                WS_AUTH_JWT_SECRET,
                self.auth_secret
                    .as_ref()
                    .map(|s| s.text.clone())
                    .unwrap_or_default(),
            ),
            (
                WS_AUTH_JWT_KEY_FILE,
                self.auth_key_file
                    .as_ref()
                    .map(|f| f.path.display().to_string())
                    .unwrap_or_default(),
            ),
            (WS_ECHO_PATH, opt(&self.echo_path)),
            (
                WS_COMPRESSION,
                values::on_off_str(self.compression).to_string(),
            ),
            (
                WS_COMPRESSION_MIN_BYTES,
                self.compression_min_bytes.to_string(),
            ),
            (
                WS_COMPRESSION_CHAIN,
                values::on_off_str(self.compression_chain).to_string(),
            ),
            (NATS_USER, opt(&self.nats_user)),
            (NATS_PASSWORD, opt(&self.nats_password)),
            (NATS_TOKEN, opt(&self.nats_token)),
            (
                NATS_CREDS_FILE,
                self.nats_creds_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (NATS_JETSTREAM, self.nats_jetstream.to_string()),
            (JS_STREAM, self.js_stream.clone()),
            (JS_CONSUMER, self.js_consumer.clone()),
            (JS_MAX_AGE, format_duration(self.js_max_age)),
            (JS_MAX_MSGS, self.js_max_msgs.to_string()),
            (JS_ACK_WAIT, format_duration(self.js_ack_wait)),
            (JS_BATCH, self.js_batch.to_string()),
            (
                JS_REPLICAS,
                self.js_replicas
                    .map_or("auto".to_string(), |n| n.to_string()),
            ),
            (JS_MAX_BACKLOG, format_duration(self.js_max_backlog)),
            (METRICS_INTERVAL, format_duration(self.metrics_interval)),
            (LOG_LEVEL, level_name(&self.log_level).to_string()),
            (LOG_FORMAT, self.log_format.as_str().to_string()),
        ]
    }
}

/// A value as it may be shown: secrets masked, passwords in NATS URLs masked.
fn shown(name: &str, value: &str) -> String {
    if SECRETS.contains(&name) && !value.is_empty() {
        MASK.to_string()
    } else if name == NATS_URL {
        value
            .split(',')
            .map(mask_url_password)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        value.to_string()
    }
}
