//! NATS messages on their way to the ring: a FIFO while intake keeps up, and one
//! message per channel (the newest) while it is paused, rate-limited with a
//! backlog, or full. Both bounded by count and by payload bytes.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

#[derive(Debug)]
pub struct Incoming {
    pub subject: String,
    pub payload: Vec<u8>,
    pub received_at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Fifo,
    /// Replaced an older pending message of the same channel.
    Conflated,
    /// New channel held for conflation.
    Latest,
    /// More distinct channels pending than the bound: the message was dropped.
    DroppedChannels,
    /// The per-channel messages would hold more bytes than the bound: dropped.
    DroppedBytes,
}

pub struct Pending {
    fifo: VecDeque<Incoming>,
    fifo_bytes: usize,
    latest: HashMap<String, Incoming>,
    latest_bytes: usize,
    /// Channels in `latest`, in the order they first became pending.
    order: VecDeque<String>,
    max_messages: usize,
    max_bytes: usize,
}

impl Pending {
    pub fn new(max_messages: usize, max_bytes: usize) -> Pending {
        Pending {
            fifo: VecDeque::new(),
            fifo_bytes: 0,
            latest: HashMap::new(),
            latest_bytes: 0,
            order: VecDeque::new(),
            max_messages,
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.fifo.len() + self.latest.len()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.fifo_bytes + self.latest_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.latest.is_empty()
    }

    /// `conflate` asks for the newest-per-channel mode; a full FIFO forces it.
    /// Once any message is held per channel, later ones are too, so a channel's
    /// messages never overtake each other.
    pub fn push(&mut self, msg: Incoming, conflate: bool) -> Queued {
        let fits = self.fifo.len() < self.max_messages
            && self.fifo_bytes + msg.payload.len() <= self.max_bytes;
        if !conflate && self.latest.is_empty() && fits {
            self.fifo_bytes += msg.payload.len();
            self.fifo.push_back(msg);
            return Queued::Fifo;
        }
        let held = self.latest.get(&msg.subject).map_or(0, |m| m.payload.len());
        if self.latest_bytes - held + msg.payload.len() > self.max_bytes {
            return Queued::DroppedBytes;
        }
        if let Some(slot) = self.latest.get_mut(&msg.subject) {
            self.latest_bytes = self.latest_bytes - held + msg.payload.len();
            *slot = msg;
            return Queued::Conflated;
        }
        if self.latest.len() >= self.max_messages {
            return Queued::DroppedChannels;
        }
        self.latest_bytes += msg.payload.len();
        self.order.push_back(msg.subject.clone());
        self.latest.insert(msg.subject.clone(), msg);
        Queued::Latest
    }

    pub fn pop(&mut self) -> Option<Incoming> {
        if let Some(msg) = self.fifo.pop_front() {
            self.fifo_bytes -= msg.payload.len();
            return Some(msg);
        }
        let subject = self.order.pop_front()?;
        let msg = self.latest.remove(&subject)?;
        self.latest_bytes -= msg.payload.len();
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, n: u8) -> Incoming {
        Incoming {
            subject: subject.into(),
            payload: vec![n],
            received_at: Instant::now(),
        }
    }

    fn drain(p: &mut Pending) -> Vec<(String, u8)> {
        std::iter::from_fn(|| p.pop())
            .map(|m| (m.subject, m.payload[0]))
            .collect()
    }

    #[test]
    fn fifo_keeps_everything_in_order() {
        let mut p = Pending::new(10, 1 << 20);
        for n in 0..3 {
            assert_eq!(p.push(msg("a", n), false), Queued::Fifo);
        }
        assert_eq!(
            drain(&mut p),
            [("a".into(), 0), ("a".into(), 1), ("a".into(), 2)]
        );
    }

    #[test]
    fn conflation_keeps_the_newest_per_channel_after_the_fifo() {
        let mut p = Pending::new(10, 1 << 20);
        p.push(msg("a", 0), false);
        assert_eq!(p.push(msg("a", 1), true), Queued::Latest);
        assert_eq!(p.push(msg("b", 2), true), Queued::Latest);
        assert_eq!(p.push(msg("a", 3), true), Queued::Conflated);
        // Not asked to conflate, but per-channel order forces it while any is held.
        assert_eq!(p.push(msg("a", 4), false), Queued::Conflated);
        assert_eq!(p.len(), 3);
        assert_eq!(
            drain(&mut p),
            [("a".into(), 0), ("a".into(), 4), ("b".into(), 2)]
        );
        assert_eq!(p.push(msg("a", 5), false), Queued::Fifo);
    }

    #[test]
    fn full_fifo_conflates_and_distinct_channels_are_bounded() {
        let mut p = Pending::new(2, 1 << 20);
        p.push(msg("a", 0), false);
        p.push(msg("a", 1), false);
        assert_eq!(p.push(msg("a", 2), false), Queued::Latest);
        assert_eq!(p.push(msg("b", 3), false), Queued::Latest);
        assert_eq!(p.push(msg("c", 4), false), Queued::DroppedChannels);
        assert_eq!(p.len(), 4);
    }

    fn sized(subject: &str, len: usize) -> Incoming {
        Incoming {
            subject: subject.into(),
            payload: vec![0; len],
            received_at: Instant::now(),
        }
    }

    /// Few channels with large payloads are bounded by bytes, not only by count;
    /// a replacement counts its own size, and popping gives the bytes back.
    #[test]
    fn per_channel_messages_are_bounded_by_bytes() {
        let mut p = Pending::new(1000, 10_000);
        for subject in ["a", "b", "c"] {
            assert_eq!(p.push(sized(subject, 3000), true), Queued::Latest);
        }
        assert_eq!(p.bytes(), 9000);
        assert_eq!(p.push(sized("d", 3000), true), Queued::DroppedBytes);
        assert_eq!(p.push(sized("a", 4001), true), Queued::DroppedBytes);
        assert_eq!(p.push(sized("a", 1000), true), Queued::Conflated);
        assert_eq!(p.bytes(), 7000);
        assert_eq!(p.push(sized("d", 3000), true), Queued::Latest);
        assert_eq!(p.bytes(), 10_000);
        while p.pop().is_some() {}
        assert_eq!((p.bytes(), p.len()), (0, 0));
    }
}
