//! A connection's outbound bytes: its own replies plus shared broadcast frames,
//! written with one vectored write per flush. Bounded by WS_SEND_QUEUE_BYTES,
//! with the slow-consumer policy deciding what happens past the bound.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use tungstenite::Bytes;

use crate::broadcast::{Broadcast, Form};
use crate::config::SlowClientPolicy;

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// Queue slots an empty queue may keep: a write delay's worth of a busy feed.
const KEPT_SLOTS: usize = 8;

enum Item {
    /// A reply, handshake or control frame of this connection alone. Never dropped.
    Own(Bytes),
    Shared(Bytes),
}

impl Item {
    fn bytes(&self) -> &Bytes {
        match self {
            Item::Own(b) | Item::Shared(b) => b,
        }
    }
}

/// What a push did beyond queueing.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The message replaced this many older pending ones of its channel.
    Conflated(u64),
    /// This many of the oldest queued broadcasts were dropped to make room.
    DroppedOldest(u64),
    /// The connection cannot keep up within its bound: close it with 1013.
    Overflow,
}

#[derive(Default)]
pub struct SendQueue {
    items: VecDeque<Item>,
    /// Bytes of the front item already written.
    offset: usize,
    /// Unwritten bytes in `items`.
    bytes: usize,
    /// Unwritten bytes of `Own` items (replies, pongs, control frames).
    own_bytes: usize,
    /// Bytes written so far (wrapping): a stalled reader is one whose count stops.
    written: u64,
    /// conflate policy: the newest message per channel, held while the queue is full.
    latest: Latest,
    /// WebSocket frames (deflated or not), or SSE events, for broadcasts and
    /// replies alike.
    form: Form,
}

impl SendQueue {
    /// Bytes held, including conflated messages not yet queued.
    pub fn len(&self) -> usize {
        self.bytes + self.latest.bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.latest.is_empty()
    }

    /// Bytes written since the queue was made (wrapping); only changes tell anything.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes this queue an SSE stream's or a compressing WebSocket's (or back).
    pub fn set_form(&mut self, form: Form) {
        self.form = form;
    }

    pub fn form(&self) -> &Form {
        &self.form
    }

    pub fn push_own(&mut self, bytes: Bytes) {
        self.bytes += bytes.len();
        self.own_bytes += bytes.len();
        self.items.push_back(Item::Own(bytes));
    }

    /// Whether the connection's own replies, not broadcasts, make up most of
    /// what it holds: over the bound, that is abuse rather than slowness.
    pub fn mostly_replies(&self) -> bool {
        self.own_bytes * 2 > self.len()
    }

    /// Queues `b` in this connection's form (a WebSocket frame, the shared deflated
    /// copy, or an SSE event), under the slow-consumer policy past `limit`.
    pub fn push_broadcast(
        &mut self,
        b: &Arc<Broadcast>,
        limit: usize,
        policy: SlowClientPolicy,
    ) -> Pushed {
        self.push_message(b, false, limit, policy)
    }

    /// As `push_broadcast`, for a message that already replaced older ones of its
    /// channel (a stream read's held broadcasts, conflated): flagged `"conflated":true`.
    pub fn push_conflated(
        &mut self,
        b: &Arc<Broadcast>,
        limit: usize,
        policy: SlowClientPolicy,
    ) -> Pushed {
        self.push_message(b, true, limit, policy)
    }

    fn push_message(
        &mut self,
        b: &Arc<Broadcast>,
        conflated: bool,
        limit: usize,
        policy: SlowClientPolicy,
    ) -> Pushed {
        let frame = match conflated {
            true => self.form.conflated(b),
            false => self.form.message(b),
        };
        let fits = self.latest.is_empty() && self.bytes + frame.len() <= limit;
        if fits {
            self.push_shared(frame);
            return Pushed::Queued;
        }
        match policy {
            SlowClientPolicy::Disconnect => Pushed::Overflow,
            SlowClientPolicy::DropOldest => {
                self.push_shared(frame);
                let dropped = self.drop_oldest_until(limit);
                if self.bytes > limit {
                    Pushed::Overflow
                } else {
                    Pushed::DroppedOldest(dropped)
                }
            }
            SlowClientPolicy::Conflate => {
                let form = &self.form;
                self.latest.keep(b, conflated, |b| form.len_of(b), limit)
            }
        }
    }

    fn push_shared(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.items.push_back(Item::Shared(frame));
    }

    /// Drops whole broadcasts from the front (never a half-written one, never our own replies).
    fn drop_oldest_until(&mut self, limit: usize) -> u64 {
        let mut dropped = 0;
        let mut i = usize::from(self.offset > 0);
        while self.bytes > limit && i < self.items.len() {
            if matches!(self.items[i], Item::Shared(_)) {
                let item = self.items.remove(i).expect("index checked");
                self.bytes -= item.bytes().len();
                dropped += 1;
            } else {
                i += 1;
            }
        }
        dropped
    }

    /// A connection closed as a slow consumer: its unsent broadcasts go, so the
    /// close frame is next after whatever is half-written.
    pub fn discard_broadcasts(&mut self) {
        self.drop_oldest_until(0);
        self.latest.clear();
    }

    /// A connection closed for leaving its replies unread: everything unsent
    /// goes (but a half-written frame), so the close frame is next.
    pub fn discard_unsent(&mut self) {
        let keep = usize::from(self.offset > 0);
        for item in self.items.drain(keep..) {
            self.bytes -= item.bytes().len();
            if let Item::Own(b) = item {
                self.own_bytes -= b.len();
            }
        }
        self.latest.clear();
    }

    /// Once a conflating connection has drained half its bound, the newest message of
    /// every channel goes back into the queue in publish order, flagged when older ones
    /// were dropped.
    fn release_latest(&mut self, limit: usize) {
        if self.latest.is_empty() || self.bytes > limit / 2 {
            return;
        }
        for (b, conflated) in self.latest.take() {
            let frame = if conflated {
                self.form.conflated(&b)
            } else {
                self.form.message(&b)
            };
            self.push_shared(frame);
        }
    }

    /// Writes as much as the socket takes. `Ok(true)` when everything is written.
    pub fn flush(&mut self, out: &mut impl Write, limit: usize) -> io::Result<bool> {
        loop {
            self.release_latest(limit);
            if self.items.is_empty() {
                // A burst (a stall, a slow turn) grew the queue; its slots would
                // stay with this connection for good.
                if self.items.capacity() > KEPT_SLOTS {
                    self.items = VecDeque::new();
                }
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, item) in self.items.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(&item.bytes()[start..]);
                n += 1;
            }
            match out.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        self.written = self.written.wrapping_add(written as u64);
        while written > 0 {
            let front = &self.items[0];
            let front_left = front.bytes().len() - self.offset;
            let n = written.min(front_left);
            if matches!(front, Item::Own(_)) {
                self.own_bytes -= n;
            }
            written -= n;
            if n == front_left {
                self.items.pop_front();
                self.offset = 0;
            } else {
                self.offset += n;
            }
        }
    }
}

/// What `conflate` keeps past a bound (a send queue's, a stream read's held
/// broadcasts): the newest message per channel, flagged when it replaced an
/// older one, and the bytes they hold.
#[derive(Default)]
pub struct Latest {
    by_channel: HashMap<Box<str>, (Arc<Broadcast>, bool)>,
    bytes: usize,
}

impl Latest {
    /// Keeps `b` as its channel's newest (`flagged`: it replaced older ones
    /// already), `len` bytes each. Past `limit` one message per channel is still
    /// too much (a wildcard over endless channels): an overflow.
    pub fn keep(
        &mut self,
        b: &Arc<Broadcast>,
        flagged: bool,
        len: impl Fn(&Broadcast) -> usize,
        limit: usize,
    ) -> Pushed {
        self.bytes += len(b);
        let replaced = self
            .by_channel
            .insert(b.channel.clone(), (Arc::clone(b), flagged));
        let n = match replaced {
            Some((old, _)) => {
                self.bytes -= len(&old);
                self.by_channel
                    .get_mut(&b.channel)
                    .expect("just inserted")
                    .1 = true;
                1
            }
            None => 0,
        };
        match (self.bytes <= limit, n) {
            (false, _) => Pushed::Overflow,
            (true, 0) => Pushed::Queued,
            (true, n) => Pushed::Conflated(n),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Everything kept, in publish order, flagged; leaves it empty.
    pub fn take(&mut self) -> Vec<(Arc<Broadcast>, bool)> {
        let mut kept: Vec<_> = self.by_channel.drain().map(|(_, v)| v).collect();
        kept.sort_by_key(|(b, _)| b.pos);
        self.bytes = 0;
        kept
    }

    pub fn clear(&mut self) {
        self.by_channel.clear();
        self.bytes = 0;
    }
}

/// Lets tungstenite write its frames (pongs, close replies, our text replies) into
/// the queue in order with broadcasts, while reading from the socket.
pub struct QueueIo<'a, R> {
    pub socket: &'a mut R,
    pub queue: &'a mut SendQueue,
}

impl<R: io::Read> io::Read for QueueIo<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read(buf)
    }
}

impl<R> Write for QueueIo<'_, R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.queue.push_own(Bytes::copy_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::MessageBody;
    use std::time::Instant;

    fn msg(pos: u64, channel: &str) -> Arc<Broadcast> {
        Arc::new(Broadcast::new(
            pos,
            pos,
            channel,
            MessageBody::new(channel, b"1"),
            Instant::now(),
        ))
    }

    /// A socket that takes `room` bytes, then would block.
    struct Sink {
        got: Vec<u8>,
        room: usize,
    }
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn seqs(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .split("\"seq\":")
            .skip(1)
            .map(|s| s.split([',', '}']).next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn an_emptied_queue_gives_back_the_slots_of_a_burst() {
        let mut q = SendQueue::default();
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        for pos in 0..3 {
            q.push_broadcast(&msg(pos, "a"), 1 << 20, SlowClientPolicy::Conflate);
        }
        assert!(q.flush(&mut sink, 1 << 20).unwrap());
        let steady = q.items.capacity();
        assert!(steady > 0 && steady <= KEPT_SLOTS);
        for pos in 3..100 {
            q.push_broadcast(&msg(pos, "a"), 1 << 20, SlowClientPolicy::Conflate);
        }
        assert!(q.items.capacity() >= 97);
        assert!(q.flush(&mut sink, 1 << 20).unwrap());
        assert!(q.items.capacity() <= KEPT_SLOTS);
        assert_eq!(seqs(&sink.got).len(), 100);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = SendQueue::default();
        q.push_own(Bytes::from_static(b"hello "));
        q.push_broadcast(&msg(1, "a"), 1 << 20, SlowClientPolicy::Conflate);
        let total = q.len();
        let mut sink = Sink {
            got: Vec::new(),
            room: 3,
        };
        assert!(!q.flush(&mut sink, 1 << 20).unwrap());
        assert_eq!(q.len(), total - 3);
        sink.room = usize::MAX;
        assert!(q.flush(&mut sink, 1 << 20).unwrap());
        assert!(sink.got.starts_with(b"hello \x81"));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn own_bytes_are_told_apart_through_partial_writes() {
        let mut q = SendQueue::default();
        q.push_broadcast(&msg(1, "a"), 1 << 20, SlowClientPolicy::Conflate);
        q.push_own(Bytes::from(vec![b'r'; 100]));
        assert!(q.mostly_replies());
        let mut sink = Sink {
            got: Vec::new(),
            room: q.len() - 60,
        };
        assert!(!q.flush(&mut sink, 1 << 20).unwrap());
        assert_eq!((q.own_bytes, q.len()), (60, 60));
        q.push_broadcast(&msg(2, "a"), 1 << 20, SlowClientPolicy::Conflate);
        q.push_broadcast(&msg(3, "a"), 1 << 20, SlowClientPolicy::Conflate);
        assert!(!q.mostly_replies());
        sink.room = usize::MAX;
        assert!(q.flush(&mut sink, 1 << 20).unwrap());
        assert_eq!(q.own_bytes, 0);
    }

    #[test]
    fn conflate_keeps_newest_per_channel_and_flags_it() {
        let one = msg(0, "a").frame.len();
        let limit = one * 2;
        let mut q = SendQueue::default();
        for pos in 0..2 {
            assert_eq!(
                q.push_broadcast(&msg(pos, "a"), limit, SlowClientPolicy::Conflate),
                Pushed::Queued
            );
        }
        assert_eq!(
            q.push_broadcast(&msg(2, "a"), limit, SlowClientPolicy::Conflate),
            Pushed::Queued
        );
        assert_eq!(
            q.push_broadcast(&msg(3, "b"), limit, SlowClientPolicy::Conflate),
            Pushed::Queued
        );
        assert_eq!(
            q.push_broadcast(&msg(4, "a"), limit, SlowClientPolicy::Conflate),
            Pushed::Conflated(1)
        );
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        assert!(q.flush(&mut sink, limit).unwrap());
        assert_eq!(seqs(&sink.got), ["0", "1", "3", "4"]);
        let text = String::from_utf8_lossy(&sink.got);
        assert!(text.contains("\"seq\":4,\"conflated\":true"));
        assert!(!text.contains("\"seq\":3,\"conflated\""));
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let limit = msg(0, "a").frame.len() * 2;
        let mut q = SendQueue::default();
        for pos in 0..2 {
            q.push_broadcast(&msg(pos, "a"), limit, SlowClientPolicy::DropOldest);
        }
        assert_eq!(
            q.push_broadcast(&msg(2, "a"), limit, SlowClientPolicy::DropOldest),
            Pushed::DroppedOldest(1)
        );
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        q.flush(&mut sink, limit).unwrap();
        assert_eq!(seqs(&sink.got), ["1", "2"]);
    }

    #[test]
    fn disconnect_policy_overflows() {
        let limit = msg(0, "a").frame.len();
        let mut q = SendQueue::default();
        assert_eq!(
            q.push_broadcast(&msg(0, "a"), limit, SlowClientPolicy::Disconnect),
            Pushed::Queued
        );
        assert_eq!(
            q.push_broadcast(&msg(1, "a"), limit, SlowClientPolicy::Disconnect),
            Pushed::Overflow
        );
    }
}
