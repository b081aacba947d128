//! RECONNECT=resume: a client the server closes (a drain, a restart) comes back,
//! paced at RAMP_RATE per second, and resubscribes with `since` its last
//! position, as a real client does after a deploy. Its per-channel counters
//! carry over, so a message missing across the reconnect counts as a gap. A
//! reconnect that fails (refused while the server is down, an upgrade refused,
//! a server still starting) is tried again after a short pause.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::scan;
use crate::stats::Histogram;

/// Why a client closes a connection whose server cannot resume yet (epoch "").
pub const NOT_READY: &str = "server not ready to resume";

/// Between failed reconnects of one client: the server is restarting.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Where a client is in the server's sequence space.
#[derive(Clone, Debug)]
pub struct Position {
    pub epoch: Box<str>,
    pub seq: u64,
}

/// What a client carries from one connection to the next.
pub struct Carried {
    pub position: Option<Position>,
    pub last_n: Vec<(u32, u64)>,
    /// When it was closed: its reconnect time counts from here.
    pub closed_at: Instant,
}

#[derive(Default)]
pub struct ResumeStats {
    /// Clients closed by the server and queued to come back.
    pub closed: u64,
    /// Reconnect attempts, and those that failed and were tried again.
    pub attempts: u64,
    pub retries: u64,
    pub failures: BTreeMap<String, u64>,
    /// Clients back and subscribed again.
    pub reopened: u64,
    /// Subscribes with `since` answered `recovered:true`, and the others by reason.
    pub recovered: u64,
    pub not_recovered: BTreeMap<String, u64>,
    /// From the close to the subscription acknowledged again, µs.
    pub reconnect_us: Histogram,
    /// Connect + handshake of every reconnect attempt that upgraded, µs (C's
    /// connect target).
    pub connect_us: Histogram,
}

/// The reconnects waiting for their turn, paced at `rate` per second.
pub struct Queue {
    waiting: VecDeque<(Instant, u32, Carried)>,
    rate: f64,
    next: Instant,
}

impl Queue {
    pub fn new(rate: f64, now: Instant) -> Queue {
        Queue {
            waiting: VecDeque::new(),
            rate,
            next: now,
        }
    }

    /// Client `i` comes back no sooner than `at`.
    pub fn push(&mut self, at: Instant, i: u32, carried: Carried) {
        self.waiting.push_back((at, i, carried));
    }

    /// The next reconnect due now within the pace, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u32, Carried)> {
        let (at, _, _) = self.waiting.front()?;
        if *at > now || self.next > now {
            return None;
        }
        // No burst to make up for an idle pace.
        self.next = self.next.max(now - Duration::from_millis(100))
            + Duration::from_secs_f64(1.0 / self.rate);
        self.waiting.pop_front().map(|(_, i, c)| (i, c))
    }

    /// When the next one may start.
    pub fn next_at(&self) -> Option<Instant> {
        let (at, _, _) = self.waiting.front()?;
        Some((*at).max(self.next))
    }
}

/// The `epoch` of a `welcome` frame.
pub fn welcome_epoch(text: &[u8]) -> Option<&[u8]> {
    scan::find(text, b"\"type\":\"welcome\"")?;
    scan::string_after(text, b"\"epoch\":\"")
}

/// The `since` field for a subscribe.
pub fn since(p: &Position) -> serde_json::Value {
    serde_json::json!({ "epoch": &*p.epoch, "seq": p.seq })
}

/// How a `subscribed` ack to a subscribe with `since` was answered: Ok when
/// recovered, else its reason.
pub fn recovery(ack: &[u8]) -> Result<(), String> {
    if scan::find(ack, b"\"recovered\":true").is_some() {
        return Ok(());
    }
    let reason = scan::string_after(ack, b"\"reason\":\"").unwrap_or(b"none");
    Err(String::from_utf8_lossy(reason).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_and_ack_fields_are_read() {
        let w = br#"{"type":"welcome","session":"s","epoch":"S-1f","ping_interval_ms":1}"#;
        assert_eq!(welcome_epoch(w), Some(&b"S-1f"[..]));
        assert_eq!(welcome_epoch(br#"{"type":"pong"}"#), None);
        assert_eq!(
            recovery(br#"{"type":"subscribed","recovered":true}"#),
            Ok(())
        );
        let refused = br#"{"type":"subscribed","recovered":false,"reason":"too_old"}"#;
        assert_eq!(recovery(refused), Err("too_old".into()));
    }

    #[test]
    fn the_queue_paces_reconnects_and_keeps_their_order() {
        let t0 = Instant::now();
        let mut q = Queue::new(10.0, t0);
        for i in 0..3 {
            let carried = Carried {
                position: None,
                last_n: Vec::new(),
                closed_at: t0,
            };
            q.push(t0, i, carried);
        }
        assert_eq!(q.pop_due(t0).map(|(i, _)| i), Some(0));
        assert!(q.pop_due(t0).is_none(), "one per 100 ms");
        let later = t0 + Duration::from_millis(100);
        assert_eq!(q.pop_due(later).map(|(i, _)| i), Some(1));
        assert!(q.next_at().unwrap() > later);
    }
}
