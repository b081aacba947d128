//! Recent messages per channel, for resume (`since`) and snapshots: the broadcasts
//! the ring already shares, kept a while longer by reference (no copy of a frame).
//!
//! Bounded three ways, the tightest winning: messages per channel
//! (WS_HISTORY_SIZE), age (WS_HISTORY_TTL) and total bytes (WS_HISTORY_BYTES).
//! Eviction remembers, per channel, the newest sequence it gave up, so a resume
//! that would need an evicted message is answered `too_old` instead of silently
//! skipping it. Producers insert in ring order (under the ring's lock), so each
//! channel's entries and the global age order are both in sequence order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broadcast::Broadcast;
use crate::channel::pattern_matches;

/// What one retained message costs besides its frame and channel name: the
/// broadcast itself (with its Arc), its slot in the channel and its place in the
/// age order.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Broadcast>()
    + 16
    + std::mem::size_of::<Arc<Broadcast>>()
    + std::mem::size_of::<(Instant, Arc<str>, u64)>();
/// What one channel costs besides its entries: the map slot and its name.
const CHANNEL_OVERHEAD: usize = 128;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_channel: usize,
    pub ttl: Duration,
    pub bytes: usize,
}

/// Why a resume cannot be promised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRecovered {
    /// A message after the position was evicted (or came before this history began).
    TooOld,
}

struct Channel {
    /// The map's key, shared with the age order's entries.
    name: Arc<str>,
    entries: VecDeque<Arc<Broadcast>>,
    /// The newest sequence evicted from this channel (0: none).
    evicted_up_to: u64,
}

impl Channel {
    fn new(name: Arc<str>) -> Channel {
        Channel {
            name,
            entries: VecDeque::new(),
            evicted_up_to: 0,
        }
    }
}

pub struct History {
    limits: Limits,
    channels: HashMap<Arc<str>, Channel>,
    /// Every retained entry as (received, channel, seq), oldest first; entries
    /// already evicted by the per-channel bound are skipped when reached. The
    /// name is the channel's key, shared.
    order: VecDeque<(Instant, Arc<str>, u64)>,
    bytes: usize,
    /// Messages retained (kept here: summing the channels would cost a pass over
    /// every channel on each insert).
    messages: usize,
    /// The newest sequence evicted with a channel that was then forgotten whole.
    forgotten_up_to: u64,
    /// The sequence of the first message this history saw: positions before it
    /// were never here.
    first_seq: Option<u64>,
    evicted: u64,
}

impl History {
    pub fn new(limits: Limits) -> History {
        History {
            limits,
            channels: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            messages: 0,
            forgotten_up_to: 0,
            first_seq: None,
            evicted: 0,
        }
    }

    /// Keeps `b` (called in sequence order), then evicts what the bounds require.
    pub fn insert(&mut self, b: &Arc<Broadcast>, now: Instant) {
        if self.limits.per_channel == 0 || self.limits.bytes == 0 {
            return;
        }
        self.first_seq.get_or_insert(b.seq);
        // One lookup for a known channel, on every message under the ring's lock.
        let channel = match self.channels.get_mut(&*b.channel) {
            Some(c) => c,
            None => {
                self.bytes += CHANNEL_OVERHEAD + b.channel.len();
                let name: Arc<str> = b.channel.as_ref().into();
                self.channels
                    .entry(Arc::clone(&name))
                    .or_insert_with(|| Channel::new(name))
            }
        };
        let name = Arc::clone(&channel.name);
        channel.entries.push_back(Arc::clone(b));
        self.bytes += entry_bytes(b);
        self.messages += 1;
        if channel.entries.len() > self.limits.per_channel
            && let Some(old) = channel.entries.pop_front()
        {
            channel.evicted_up_to = old.seq;
            self.bytes -= entry_bytes(&old);
            self.messages -= 1;
            self.evicted += 1;
        }
        self.order.push_back((now, name, b.seq));
        self.evict(now);
        self.compact_order();
    }

    /// Positions before `seq` cannot be promised (what came before it is not all
    /// here): a history refilled from the stream starts where its refill did, or
    /// where the consumer takes over when nothing was refilled.
    pub fn starts_at(&mut self, seq: u64) {
        self.first_seq = Some(self.first_seq.map_or(seq, |first| first.max(seq)));
    }

    /// Drops the oldest entries past the age or the byte bound.
    pub fn evict(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > self.limits.ttl;
            if !expired && self.bytes <= self.limits.bytes {
                break;
            }
            let (_, name, seq) = self.order.pop_front().expect("front exists");
            self.evict_front(&name, seq);
        }
    }

    /// Removes `seq` from the front of `name` if it is still there (the per-channel
    /// bound may have taken it already), and the channel once it is empty.
    fn evict_front(&mut self, name: &str, seq: u64) {
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        if channel.entries.front().is_none_or(|b| b.seq != seq) {
            return;
        }
        let old = channel.entries.pop_front().expect("front exists");
        channel.evicted_up_to = old.seq;
        self.bytes -= entry_bytes(&old);
        self.messages -= 1;
        self.evicted += 1;
        if channel.entries.is_empty() {
            let gone = self.channels.remove(name).expect("present");
            self.forgotten_up_to = self.forgotten_up_to.max(gone.evicted_up_to);
            self.bytes -= CHANNEL_OVERHEAD + name.len();
        }
    }

    /// The age order keeps entries the per-channel bound already took; once they
    /// outnumber the live ones, rebuild it without them.
    fn compact_order(&mut self) {
        let live = self.len();
        if self.order.len() <= 2 * live + 64 {
            return;
        }
        let channels = &self.channels;
        self.order.retain(|(_, name, seq)| {
            channels
                .get(name)
                .is_some_and(|c| c.entries.front().is_some_and(|f| f.seq <= *seq))
        });
    }

    /// Every retained message after `since` on channels `patterns` cover, in
    /// sequence order, up to (not including) ring position `before_pos` (the
    /// reader delivers that one and later live). `TooOld` when one may be missing:
    /// this history began after `since`, a covered channel evicted a message after
    /// it, or a channel forgotten whole (which may have been covered) had.
    pub fn replay(
        &self,
        patterns: &[&str],
        since: u64,
        before_pos: u64,
    ) -> Result<Vec<Arc<Broadcast>>, NotRecovered> {
        if self.first_seq.is_some_and(|first| since + 1 < first) || self.forgotten_up_to > since {
            return Err(NotRecovered::TooOld);
        }
        let mut out = Vec::new();
        for channel in self.covered(patterns) {
            if channel.evicted_up_to > since {
                return Err(NotRecovered::TooOld);
            }
            let after = channel.entries.partition_point(|b| b.seq <= since);
            out.extend(
                channel
                    .entries
                    .range(after..)
                    .filter(|b| b.before(before_pos))
                    .cloned(),
            );
        }
        out.sort_by_key(|b| b.seq);
        Ok(out)
    }

    /// The newest retained message of each channel `patterns` cover, before ring
    /// position `before_pos`, in sequence order.
    pub fn latest(&self, patterns: &[&str], before_pos: u64) -> Vec<Arc<Broadcast>> {
        let mut out: Vec<Arc<Broadcast>> = self
            .covered(patterns)
            .filter_map(|c| c.entries.iter().rev().find(|b| b.before(before_pos)))
            .cloned()
            .collect();
        out.sort_by_key(|b| b.seq);
        out
    }

    /// The channels any of `patterns` matches.
    fn covered<'a>(&'a self, patterns: &'a [&'a str]) -> impl Iterator<Item = &'a Channel> + 'a {
        self.channels
            .iter()
            .filter(move |(name, _)| patterns.iter().any(|p| pattern_matches(p, name)))
            .map(|(_, c)| c)
    }

    /// Messages retained.
    pub fn len(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Messages evicted since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// What keeping `b` costs: its frame and channel name (as the ring counts them)
/// and the entry.
fn entry_bytes(b: &Broadcast) -> usize {
    ENTRY_OVERHEAD + b.held_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::MessageBody;

    const MS: Duration = Duration::from_millis(1);

    fn limits(per_channel: usize, bytes: usize) -> Limits {
        Limits {
            per_channel,
            ttl: Duration::from_secs(300),
            bytes,
        }
    }

    /// Broadcast number `seq` (ring position seq - 1) on `channel`.
    fn msg(seq: u64, channel: &str) -> Arc<Broadcast> {
        let body = MessageBody::new(channel, seq.to_string().as_bytes());
        Arc::new(Broadcast::new(seq - 1, seq, channel, body, Instant::now()))
    }

    fn seqs(v: &[Arc<Broadcast>]) -> Vec<u64> {
        v.iter().map(|b| b.seq).collect()
    }

    fn fill(h: &mut History, n: u64, channels: &[&str], t0: Instant) {
        for seq in 1..=n {
            h.insert(&msg(seq, channels[(seq as usize) % channels.len()]), t0);
        }
    }

    #[test]
    fn replay_returns_what_came_after_in_order_across_wildcards() {
        let mut h = History::new(limits(100, 1 << 20));
        let t0 = Instant::now();
        fill(&mut h, 9, &["a.x", "a.y", "b.z"], t0);
        // a.x: 3, 6, 9; a.y: 1, 4, 7; b.z: 2, 5, 8.
        assert_eq!(
            seqs(&h.replay(&["a.*"], 3, u64::MAX).unwrap()),
            [4, 6, 7, 9]
        );
        assert_eq!(
            seqs(&h.replay(&["b.z", "a.y"], 0, u64::MAX).unwrap()),
            [1, 2, 4, 5, 7, 8]
        );
        // Positions the reader has not reached are its live ones, not the replay's.
        assert_eq!(seqs(&h.replay(&["a.*"], 3, 5).unwrap()), [4]);
        assert!(h.replay(&["c.>"], 5, u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn latest_is_the_newest_of_each_covered_channel() {
        let mut h = History::new(limits(100, 1 << 20));
        fill(&mut h, 9, &["a.x", "a.y", "b.z"], Instant::now());
        assert_eq!(seqs(&h.latest(&["a.>"], u64::MAX)), [7, 9]);
        assert_eq!(seqs(&h.latest(&["a.>"], 8)), [6, 7]);
        assert_eq!(seqs(&h.latest(&[">"], u64::MAX)), [7, 8, 9]);
    }

    #[test]
    fn the_per_channel_bound_makes_older_positions_too_old() {
        let mut h = History::new(limits(2, 1 << 20));
        fill(&mut h, 9, &["a.x", "a.y", "b.z"], Instant::now());
        // a.x keeps 6 and 9; 3 was evicted.
        assert_eq!(
            h.replay(&["a.x"], 2, u64::MAX).err(),
            Some(NotRecovered::TooOld)
        );
        assert_eq!(seqs(&h.replay(&["a.x"], 3, u64::MAX).unwrap()), [6, 9]);
        assert_eq!(h.len(), 6);
    }

    #[test]
    fn the_age_bound_evicts_and_forgets_quiet_channels() {
        let mut h = History::new(limits(100, 1 << 20));
        let t0 = Instant::now();
        h.insert(&msg(1, "quiet"), t0);
        h.insert(&msg(2, "busy"), t0 + Duration::from_secs(200));
        h.insert(&msg(3, "busy"), t0 + Duration::from_secs(301));
        assert_eq!(h.channels(), 1, "quiet aged out and was forgotten");
        // Whether "quiet" was covered is unknown now: anything before 1 is too old.
        assert_eq!(
            h.replay(&["busy"], 0, u64::MAX).err(),
            Some(NotRecovered::TooOld)
        );
        assert_eq!(seqs(&h.replay(&["busy"], 1, u64::MAX).unwrap()), [2, 3]);
        h.evict(t0 + Duration::from_secs(601) + MS);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn the_byte_bound_holds_under_ten_thousand_channels() {
        let bound = 256 * 1024;
        let mut h = History::new(limits(1000, bound));
        let t0 = Instant::now();
        for seq in 1..=50_000u64 {
            let channel = format!("c.{}", seq % 10_000);
            h.insert(&msg(seq, &channel), t0);
            assert!(h.bytes() <= bound, "{} bytes at {seq}", h.bytes());
        }
        assert!(h.evicted() > 0);
        assert!(
            h.order.len() <= 2 * h.len() + 64,
            "the age order stays compact"
        );
        let counted: usize = h.channels.values().map(|c| c.entries.len()).sum();
        assert_eq!(h.len(), counted);
        // The newest messages are still there and resumable from recent positions.
        let last = h.replay(&["c.0"], 49_990, u64::MAX).unwrap();
        assert_eq!(seqs(&last), [50_000]);
    }

    #[test]
    fn a_history_that_began_later_cannot_promise_older_positions() {
        let mut h = History::new(limits(100, 1 << 20));
        let t0 = Instant::now();
        for seq in 50..=60 {
            h.insert(&msg(seq, "a"), t0);
        }
        assert_eq!(
            h.replay(&["a"], 10, u64::MAX).err(),
            Some(NotRecovered::TooOld)
        );
        assert_eq!(seqs(&h.replay(&["a"], 58, u64::MAX).unwrap()), [59, 60]);
        assert_eq!(seqs(&h.replay(&["a"], 49, u64::MAX).unwrap()).len(), 11);
    }

    #[test]
    fn zero_limits_keep_nothing() {
        let mut h = History::new(limits(0, 1 << 20));
        h.insert(&msg(1, "a"), Instant::now());
        assert!(h.is_empty());
    }
}
