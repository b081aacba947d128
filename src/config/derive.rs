//! Stage four: the values left to the machine (CPU and memory limits, pool and ring
//! sizes, consumer name), and the warnings about settings that work but look wrong.

use std::sync::Arc;

use super::Config;
use super::parse::Reader;
use super::spec::*;
use super::values::is_name_char;
use crate::auth::Keys;
use crate::sysinfo;

/// Ring capacity bounds: 16 keeps a tiny ring useful, 2^20 bounds its memory.
const MIN_QUEUE: usize = 16;
const MAX_QUEUE: usize = 1 << 20;
/// A derived ring holds at least this many messages...
const DERIVED_QUEUE_FLOOR: usize = 4096;
/// ...and this many per worker, so a burst reaching every worker at once fits.
const QUEUE_PER_WORKER: usize = 1024;
/// WS_MAX_BROADCAST_SIZE when derived: at most this...
const DERIVED_BROADCAST_SIZE: usize = 256 * 1024;
/// ...and the ring holds at least this many of the largest broadcasts.
pub(super) const RING_BROADCASTS: usize = 4;
/// More reactor threads than this many per core only add context switches.
const POOL_PER_CPU_WARNING: f64 = 4.0;

/// The keys of WS_AUTH_JWT_SECRET and WS_AUTH_JWT_KEY_FILE together (both read
/// already); None when neither is set.
fn auth_keys(c: &Config) -> Option<Arc<Keys>> {
    let secret = c.auth_secret.as_ref().map(|s| s.keys.clone());
    let file = c.auth_key_file.as_ref().map(|f| f.keys.clone());
    let keys = match (secret, file) {
        (Some(a), Some(b)) => a.merge(b),
        (Some(k), None) | (None, Some(k)) => k,
        (None, None) => return None,
    };
    Some(Arc::new(keys))
}

/// WS_WORKER_QUEUE_SIZE: 0 (derive) or MIN_QUEUE..=MAX_QUEUE.
pub(super) fn queue_size(s: &str) -> Result<usize, String> {
    let range = format!("0 (derive from the pool) or {MIN_QUEUE}-{MAX_QUEUE}");
    let value: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("must be an integer {range}, got {s:?}"))?;
    if value != 0 && !(MIN_QUEUE..=MAX_QUEUE).contains(&value) {
        return Err(format!("must be {range}, got {value}"));
    }
    Ok(value)
}

pub(super) fn derive(c: &mut Config, r: &mut Reader) {
    c.auth = auth_keys(c);
    if c.cpu_limit == 0.0 {
        c.cpu_limit = sysinfo::detect_cpu_limit();
        r.set_source(WS_CPU_LIMIT, Source::Derived);
    }
    if c.memory_limit == 0 {
        c.memory_limit = sysinfo::detect_memory_limit();
        r.set_source(WS_MEMORY_LIMIT, Source::Derived);
    }
    if c.worker_pool_size == 0 {
        c.worker_pool_size = default_pool_size(c.cpu_limit);
        r.set_source(WS_WORKER_POOL_SIZE, Source::Derived);
    } else if c.worker_pool_size as f64 > POOL_PER_CPU_WARNING * c.cpu_limit {
        r.warnings.push(format!(
            "WS_WORKER_POOL_SIZE={} is more than {POOL_PER_CPU_WARNING}x the CPU limit ({}): \
             reactor threads beyond the cores only add context switches (0 derives {})",
            c.worker_pool_size,
            c.cpu_limit,
            default_pool_size(c.cpu_limit)
        ));
    }
    if c.worker_queue_size == 0 {
        c.worker_queue_size = DERIVED_QUEUE_FLOOR
            .max(QUEUE_PER_WORKER * c.worker_pool_size)
            .next_power_of_two()
            .min(MAX_QUEUE);
        r.set_source(WS_WORKER_QUEUE_SIZE, Source::Derived);
    } else if !c.worker_queue_size.is_power_of_two() {
        let rounded = c.worker_queue_size.next_power_of_two();
        r.warnings.push(format!(
            "WS_WORKER_QUEUE_SIZE={} rounded up to {rounded} (the broadcast ring's capacity is a power of two)",
            c.worker_queue_size
        ));
        c.worker_queue_size = rounded;
    }
    if c.max_broadcast_size == 0 {
        c.max_broadcast_size = broadcast_size(0, c.send_queue_bytes);
        r.set_source(WS_MAX_BROADCAST_SIZE, Source::Derived);
    }
    if c.js_consumer.is_empty() {
        c.js_consumer = consumer_name(&sysinfo::hostname());
        r.set_source(JS_CONSUMER, Source::Derived);
    }
    warn_about_leftovers(c, r);
}

/// WS_MAX_BROADCAST_SIZE as configured, or derived from the send queue when 0.
pub(super) fn broadcast_size(configured: usize, send_queue_bytes: usize) -> usize {
    if configured == 0 {
        DERIVED_BROADCAST_SIZE.min(send_queue_bytes / 2)
    } else {
        configured
    }
}

/// ceil(CPU limit), at least one.
fn default_pool_size(cpu_limit: f64) -> usize {
    (cpu_limit.ceil() as usize).max(1)
}

/// "odin-ws-" + the host name with every character JetStream refuses replaced by '-'.
fn consumer_name(host: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .collect();
    format!("{JS_CONSUMER_PREFIX}{host}")
}

/// Settings that are accepted but do nothing here.
fn warn_about_leftovers(c: &Config, r: &mut Reader) {
    if c.max_goroutines > 0 {
        r.warnings.push(format!(
            "WS_MAX_GOROUTINES={} has no effect (accepted for compatibility with the Go server; \
             odin-ws runs {} reactor threads and WS_MAX_CONNECTIONS bounds the connections)",
            c.max_goroutines, c.worker_pool_size
        ));
    }
    let credentials = [NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS_FILE];
    if c.nats_urls.is_empty() && credentials.iter().any(|n| r.is_set(n)) {
        r.warnings.push(
            "NATS credentials are set but NATS_URL is empty (standalone): they are unused"
                .to_string(),
        );
    }
    for (i, a) in c.nats_subjects.iter().enumerate() {
        for b in &c.nats_subjects[i + 1..] {
            if crate::grant::intersects(a, b) {
                r.warnings.push(format!(
                    "NATS_SUBJECTS {a:?} and {b:?} overlap: NATS delivers a message matching both \
                     once per subscription, so clients would receive it twice"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sizes() {
        assert_eq!(queue_size("0"), Ok(0));
        assert_eq!(queue_size("19200"), Ok(19200));
        assert_eq!(queue_size("1048576"), Ok(1 << 20));
        let range = "0 (derive from the pool) or 16-1048576";
        assert_eq!(queue_size("8"), Err(format!("must be {range}, got 8")));
        assert_eq!(
            queue_size("1048577"),
            Err(format!("must be {range}, got 1048577"))
        );
        assert_eq!(
            queue_size("-1"),
            Err(format!("must be an integer {range}, got \"-1\""))
        );
    }

    #[test]
    fn pool_sizes_and_consumer_names() {
        let cases: &[(f64, usize)] = &[(0.5, 1), (1.0, 1), (1.9, 2), (2.0, 2), (15.01, 16)];
        for &(cpu, pool) in cases {
            assert_eq!(default_pool_size(cpu), pool, "{cpu}");
        }
        assert_eq!(
            consumer_name("web-1.example.com"),
            "odin-ws-web-1-example-com"
        );
        assert_eq!(consumer_name("box_2"), "odin-ws-box_2");
    }
}
