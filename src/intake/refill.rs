//! A (re)started instance's history, refilled from the JetStream stream before it
//! reports healthy: the newest stream messages up to the consumer's ack floor
//! (what came after comes through the consumer, into the ring and history as
//! usual), at most REFILL_MAX_MESSAGES of them, read in batches through an
//! ephemeral consumer, inserted in
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
/// Messages one pull request of the refill asks for.
const REFILL_BATCH: usize = 1_000;

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
    let inserted = match read_range(shared, conn, &stream, from, ack_floor) {
        Ok(n) => n,
        Err((n, e)) => {
            log::warn!(
                "history refill stopped after {n} message(s) ({e}); \
                 positions before {ack_floor} are not resumed from memory"
            );
            shared.history().starts_at(ack_floor + 1);
            n
        }
    };
    shared.history().evict(Instant::now());
    log::info!(
        "history refilled from the stream: {inserted} message(s) of stream sequences \
         {from}-{ack_floor} in {:?}",
        started.elapsed()
    );
    inserted
}

/// Inserts the stored messages `from..=upto` into history, in order, through an
/// ephemeral consumer read REFILL_BATCH at a time (one request a message took a
/// loaded machine 25 s for 3,600); deleted ones are simply absent. Returns how
/// many were inserted, with the error that stopped it early.
fn read_range(
    shared: &Shared,
    conn: &nats::Connection,
    stream: &str,
    from: u64,
    upto: u64,
) -> Result<u64, (u64, ApiError)> {
    let config = serde_json::json!({
        "deliver_policy": "by_start_sequence",
        "opt_start_seq": from,
        // Pull consumers need explicit acks on this server; none is sent.
        "ack_policy": "explicit",
        "max_ack_pending": REFILL_MAX_MESSAGES + 1,
        "inactive_threshold": 30_000_000_000u64,
        "mem_storage": true,
        "num_replicas": 1,
    });
    let info = jsapi::create_ephemeral(conn, stream, &config).map_err(|e| (0, e))?;
    let mut inserted = 0;
    let result = loop {
        let batch = match jsapi::pull(conn, stream, &info.name, REFILL_BATCH) {
            Ok(batch) => batch,
            Err(e) => break Err(e),
        };
        let last = batch.last().map(|m| m.sequence);
        for m in batch.into_iter().take_while(|m| m.sequence <= upto) {
            if let Some(body) = shared.admit_broadcast(&m.subject, &m.data) {
                let at = published_instant(unix_ns(m.time));
                let b = Broadcast::new(OUTSIDE_RING, m.sequence, &m.subject, body, at);
                shared.history().insert(&Arc::new(b), at);
                inserted += 1;
            }
        }
        // Done at the floor, or when the stream has nothing more (deleted tail).
        if last.is_none_or(|seq| seq >= upto) {
            break Ok(inserted);
        }
    };
    if let Err(e) = jsapi::delete_consumer(conn, stream, &info.name) {
        log::debug!(
            "refill consumer {} not deleted ({e}); it expires",
            info.name
        );
    }
    result.map_err(|e| (inserted, e))
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
