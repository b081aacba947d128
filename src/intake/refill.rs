//! A (re)started instance's history, refilled from the JetStream stream before it
//! reports healthy: the newest stream messages up to the consumer's ack floor
//! (what came after comes through the consumer, into the ring and history as
//! usual), at most REFILL_MAX_MESSAGES of them, read one by sequence, inserted in
//! stream order with their publish time, so history's own bounds (count per
//! channel, age, bytes) keep what they would have kept. A failed read ends the
//! refill early: history then begins later and older positions are `too_old`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::js_watch::unix_ns;
use super::jsapi::{self, ApiError};
use crate::broadcast::{Broadcast, OUTSIDE_RING};
use crate::shared::Shared;

/// The most stream messages a refill reads (the newest ones before the ack floor).
pub const REFILL_MAX_MESSAGES: u64 = 10_000;

/// Reads `(first..=ack_floor)` (the newest REFILL_MAX_MESSAGES of it) into
/// history, which promises positions from there on (from `history_start` when
/// there is nothing to read); returns how many were inserted.
pub fn refill(
    shared: &Shared,
    conn: &nats::Connection,
    first: u64,
    ack_floor: u64,
    history_start: u64,
) -> u64 {
    if ack_floor == 0 || ack_floor < first {
        shared.history().starts_at(history_start);
        return 0;
    }
    let from = first
        .max(ack_floor.saturating_sub(REFILL_MAX_MESSAGES - 1))
        .max(1);
    shared.history().starts_at(from);
    let stream = shared.config().js_stream.clone();
    let started = Instant::now();
    let mut inserted = 0;
    for seq in from..=ack_floor {
        let m = match jsapi::get_message(conn, &stream, seq) {
            Ok(m) => m,
            // Deleted or expired: nothing to keep.
            Err(ApiError::NotFound) => continue,
            Err(e) => {
                log::warn!(
                    "history refill stopped at stream sequence {seq} ({e}); \
                     positions before {ack_floor} are not resumed from memory"
                );
                shared.history().starts_at(ack_floor + 1);
                break;
            }
        };
        let Some(body) = shared.admit_broadcast(&m.subject, &m.data) else {
            continue;
        };
        let at = published_instant(unix_ns(m.time));
        let b = Broadcast::new(OUTSIDE_RING, seq, &m.subject, body, at);
        shared.history().insert(&Arc::new(b), at);
        inserted += 1;
    }
    shared.history().evict(Instant::now());
    log::info!(
        "history refilled from the stream: {inserted} message(s) of stream sequences \
         {from}-{ack_floor} in {:?}",
        started.elapsed()
    );
    inserted
}

/// The moment a message published at `unix_ns` (the NATS server's clock) was,
/// on this process's monotonic clock.
pub fn published_instant(unix_ns: i64) -> Instant {
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let age = Duration::from_nanos(now_ns.saturating_sub(unix_ns).max(0) as u64);
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}
