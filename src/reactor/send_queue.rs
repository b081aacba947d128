//! A connection's outbound bytes: its own replies plus shared broadcast frames,
//! written with one vectored write per flush. Bounded by WS_SEND_QUEUE_BYTES,
//! with the slow-consumer policy deciding what happens past the bound.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use tungstenite::Bytes;

use crate::broadcast::{Broadcast, Flag, Form, WindowEnd};
use crate::config::SlowClientPolicy;

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// Queue slots an empty queue may keep: a write delay's worth of a busy feed.
const KEPT_SLOTS: usize = 8;

enum Item {
    /// A reply, handshake or control frame of this connection alone. Never dropped.
    Own(Bytes, Trace),
    Shared(Bytes, Trace),
}

impl Item {
    fn bytes(&self) -> &Bytes {
        match self {
            Item::Own(b, _) | Item::Shared(b, _) => b,
        }
    }

    fn trace(&self) -> &Trace {
        match self {
            Item::Own(_, t) | Item::Shared(_, t) => t,
        }
    }
}

/// What a queued broadcast frame leaves in a compressing client's LZ77 window,
/// which only compressed messages pass through (RFC 7692 section 6).
enum Trace {
    /// Sent uncompressed: the window stays as it was.
    Untouched,
    /// The plain message compressed: the window ends with it. `chained` is set
    /// when the frame is the copy chained on the message before it: that
    /// message, and the copy deflated alone, for when that one is dropped unsent.
    Ends {
        end: WindowEnd,
        chained: Option<(WindowEnd, Bytes)>,
    },
    /// A flagged message compressed: nothing chains on it.
    Breaks,
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
    /// A chaining connection's window once everything queued is written, and
    /// once what was taken from the queue is (where a re-chain starts).
    queued_end: Option<WindowEnd>,
    written_end: Option<WindowEnd>,
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
        self.push_own_traced(bytes, Trace::Untouched);
    }

    fn push_own_traced(&mut self, bytes: Bytes, trace: Trace) {
        self.note(&trace);
        self.bytes += bytes.len();
        self.own_bytes += bytes.len();
        self.items.push_back(Item::Own(bytes, trace));
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
        // Held back already: no frame yet (a chained copy built now, after this
        // connection's stale window end, would take the slot from everyone else).
        if policy == SlowClientPolicy::Conflate && !self.latest.is_empty() {
            let form = &self.form;
            return self.latest.keep(b, conflated, |b| form.len_of(b), limit);
        }
        let flag = if conflated {
            Flag::Conflated
        } else {
            Flag::Plain
        };
        let (frame, trace) = self.frame_of(b, flag);
        let fits = self.latest.is_empty() && self.bytes + frame.len() <= limit;
        if fits {
            self.push_shared(frame, trace);
            return Pushed::Queued;
        }
        match policy {
            SlowClientPolicy::Disconnect => Pushed::Overflow,
            SlowClientPolicy::DropOldest => {
                self.push_shared(frame, trace);
                // A chained frame swapped for its larger copy can pass the bound again.
                let (mut dropped, mut upto) = self.drop_oldest_until(limit);
                while dropped > 0 && self.rechain(upto) && self.bytes > limit {
                    let (more, to) = self.drop_oldest_until(limit);
                    (dropped, upto) = (dropped + more, to);
                }
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

    /// The snapshot of `b`, as the connection's own (never dropped).
    pub fn push_snapshot(&mut self, b: &Arc<Broadcast>) {
        let (frame, trace) = self.frame_of(b, Flag::Snapshot);
        self.push_own_traced(frame, trace);
    }

    /// `b` flagged `flag` in this connection's form, and what it does to the
    /// client's window: a chaining connection whose window ends with the
    /// channel's previous message gets the copy chained on it.
    fn frame_of(&mut self, b: &Arc<Broadcast>, flag: Flag) -> (Bytes, Trace) {
        let frame = self.form.variant(b, flag);
        // Only a chaining connection tracks its window (nothing else reads it).
        let Form::Deflated(d) = &self.form else {
            return (frame, Trace::Untouched);
        };
        if !d.chain || !b.is_deflated_for(d) {
            return (frame, Trace::Untouched);
        }
        if flag != Flag::Plain {
            return (frame, Trace::Breaks);
        }
        let end = WindowEnd::of(b);
        if let Some(last) = &self.queued_end
            && let Some(chained) = b.chained(last, d)
        {
            let chained_on = Some((last.clone(), frame));
            return (
                chained,
                Trace::Ends {
                    end,
                    chained: chained_on,
                },
            );
        }
        (frame, Trace::Ends { end, chained: None })
    }

    /// Moves the queued window end past a frame with `trace` (only a chaining
    /// connection's frames have traces that move it).
    fn note(&mut self, trace: &Trace) {
        advance_end(&mut self.queued_end, trace);
    }

    fn push_shared(&mut self, frame: Bytes, trace: Trace) {
        self.note(&trace);
        self.bytes += frame.len();
        self.items.push_back(Item::Shared(frame, trace));
    }

    /// After broadcasts were dropped unsent from the first `upto` items: a
    /// chained frame whose message before it went is swapped for its copy
    /// deflated alone (the client's window will not hold what it reaches back
    /// into). Only the first frame past them that touches the window can have
    /// lost its predecessor; the queued end changes only when there is none.
    /// Whether any frame was swapped.
    fn rechain(&mut self, upto: usize) -> bool {
        if !matches!(&self.form, Form::Deflated(d) if d.chain) {
            return false;
        }
        let mut swapped = false;
        let mut end = self.written_end.clone();
        for (i, item) in self.items.iter_mut().enumerate() {
            let (Item::Own(frame, trace) | Item::Shared(frame, trace)) = item;
            let half_written = i == 0 && self.offset > 0;
            if let Trace::Ends { chained, .. } = trace
                && let Some((after, _)) = chained
                && !end.as_ref().is_some_and(|e| e.is(after))
                && !half_written
            {
                let (_, standalone) = chained.take().expect("matched");
                self.bytes = self.bytes - frame.len() + standalone.len();
                *frame = standalone;
                swapped = true;
            }
            advance_end(&mut end, trace);
            if i >= upto && !matches!(trace, Trace::Untouched) {
                return swapped;
            }
        }
        self.queued_end = end;
        swapped
    }

    /// Drops whole broadcasts from the front (never a half-written one, never
    /// our own replies); how many, and how many items from the front it looked at.
    fn drop_oldest_until(&mut self, limit: usize) -> (u64, usize) {
        let mut dropped = 0;
        let mut i = usize::from(self.offset > 0);
        while self.bytes > limit && i < self.items.len() {
            if matches!(self.items[i], Item::Shared(..)) {
                let item = self.items.remove(i).expect("index checked");
                self.bytes -= item.bytes().len();
                dropped += 1;
            } else {
                i += 1;
            }
        }
        (dropped, i)
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
            if let Item::Own(b, _) = item {
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
            let flag = if conflated {
                Flag::Conflated
            } else {
                Flag::Plain
            };
            let (frame, trace) = self.frame_of(&b, flag);
            self.push_shared(frame, trace);
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
            if matches!(front, Item::Own(..)) {
                self.own_bytes -= n;
            }
            written -= n;
            if n == front_left {
                if let Some(item) = self.items.pop_front() {
                    advance_end(&mut self.written_end, item.trace());
                }
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

/// The window end after a frame with `trace`.
fn advance_end(end: &mut Option<WindowEnd>, trace: &Trace) {
    match trace {
        Trace::Untouched => {}
        Trace::Ends { end: e, .. } => *end = Some(e.clone()),
        Trace::Breaks => *end = None,
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

    /// A market-data message of channel `ch` at `pos` that deflates well, and
    /// better still after the one before it.
    fn book(pos: u64, ch: &str) -> Arc<Broadcast> {
        let levels: Vec<String> = (0..12)
            .map(|i| {
                format!(
                    r#"["97{:03}.50","{}.{:04}"]"#,
                    pos * 7 + i,
                    i,
                    pos * 31 % 9973
                )
            })
            .collect();
        let json = format!(
            r#"{{"symbol":"BTC-USD","n":{pos},"bids":[{}]}}"#,
            levels.join(",")
        );
        let body = MessageBody::new(ch, json.as_bytes());
        Arc::new(Broadcast::new(pos, pos + 1, ch, body, Instant::now()))
    }

    fn deflating(chain: bool) -> SendQueue {
        let mut q = SendQueue::default();
        q.set_form(Form::Deflated(crate::broadcast::Deflate {
            window: crate::deflate::Window::Full,
            min_bytes: 256,
            chain,
            counters: Default::default(),
        }));
        q
    }

    /// What a client keeping its window reads from `bytes`: each message's text,
    /// and the frame's length.
    fn client_reads(bytes: &[u8]) -> Vec<(String, usize)> {
        let mut inflater = crate::deflate::codec::KeptInflater::default();
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (len, start) = match rest[1] & 0x7f {
                126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 => panic!("no test frame is that long"),
                n => (n as usize, 2),
            };
            let payload = &rest[start..start + len];
            let text = if rest[0] & 0x40 != 0 {
                inflater
                    .message(payload, 1 << 20)
                    .expect("inflates in the kept window")
            } else {
                payload.to_vec()
            };
            out.push((String::from_utf8(text).unwrap(), start + len));
            rest = &rest[start + len..];
        }
        out
    }

    fn json_of(b: &Broadcast) -> String {
        String::from_utf8(b.frame[4..].to_vec()).unwrap()
    }

    #[test]
    fn consecutive_messages_of_a_channel_go_chained_and_inflate_in_a_kept_window() {
        let (mut q, limit) = (deflating(true), 1 << 20);
        let msgs = [
            book(1, "a"),
            book(2, "a"),
            book(3, "b"),
            book(4, "a"),
            book(5, "a"),
        ];
        for b in &msgs {
            q.push_broadcast(b, limit, SlowClientPolicy::DropOldest);
        }
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        assert!(q.flush(&mut sink, limit).unwrap());
        let read = client_reads(&sink.got);
        let texts: Vec<&str> = read.iter().map(|(t, _)| t.as_str()).collect();
        let want: Vec<String> = msgs.iter().map(|b| json_of(b)).collect();
        assert_eq!(texts, want);
        let alone = |b: &Arc<Broadcast>| deflating(false).form.message(b).len();
        // 2 follows 1 on its channel; 3 is another channel's; 4 follows 3 (not
        // its channel's); 5 follows 4.
        let chained: Vec<bool> = read
            .iter()
            .zip(&msgs)
            .map(|((_, n), b)| *n < alone(b))
            .collect();
        assert_eq!(chained, [false, true, false, false, true]);
        let (_, n2) = &read[1];
        assert!(n2 * 3 < alone(&msgs[1]) * 2, "{n2} vs {}", alone(&msgs[1]));
    }

    #[test]
    fn a_connection_that_asked_for_no_takeover_gets_only_copies_deflated_alone() {
        let (mut q, limit) = (deflating(false), 1 << 20);
        let msgs = [book(1, "a"), book(2, "a")];
        for b in &msgs {
            q.push_broadcast(b, limit, SlowClientPolicy::DropOldest);
        }
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        q.flush(&mut sink, limit).unwrap();
        let mut rest = &sink.got[..];
        for b in &msgs {
            let frame = q.form.message(b);
            assert_eq!(&rest[..frame.len()], &frame[..]);
            let body = &frame[4..];
            assert!(crate::deflate::codec::inflate_message(body, 1 << 20).is_ok());
            rest = &rest[frame.len()..];
        }
    }

    /// drop_oldest takes the message a chained one reaches back into: the
    /// chained one goes deflated alone instead, and the client still reads it.
    #[test]
    fn a_chained_message_whose_predecessor_is_dropped_goes_deflated_alone() {
        let mut q = deflating(true);
        let msgs = [book(1, "a"), book(2, "a"), book(3, "a")];
        q.push_broadcast(&msgs[0], usize::MAX, SlowClientPolicy::DropOldest);
        q.push_broadcast(&msgs[1], usize::MAX, SlowClientPolicy::DropOldest);
        // Room for the second deflated alone and the third chained (about as
        // long as the second chained): the third push drops the first.
        let chained_len = q.len() - q.form.message(&msgs[0]).len();
        let limit = q.form.message(&msgs[1]).len() + chained_len + 20;
        let pushed = q.push_broadcast(&msgs[2], limit, SlowClientPolicy::DropOldest);
        assert_eq!(pushed, Pushed::DroppedOldest(1));
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        q.flush(&mut sink, limit).unwrap();
        let read = client_reads(&sink.got);
        let texts: Vec<&str> = read.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts.last().copied(), Some(json_of(&msgs[2]).as_str()));
        assert!(
            !texts.contains(&json_of(&msgs[0]).as_str()),
            "the oldest was dropped"
        );
    }

    /// A written message stays the window's end: a later one chains on it even
    /// after the queue emptied; a compressed snapshot in between breaks it.
    #[test]
    fn the_window_end_outlives_the_queue_and_a_snapshot_ends_it() {
        let (mut q, limit) = (deflating(true), 1 << 20);
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        // The ring or history holds a broadcast a while; a client never does.
        let b1 = book(1, "a");
        q.push_broadcast(&b1, limit, SlowClientPolicy::DropOldest);
        q.flush(&mut sink, limit).unwrap();
        let b2 = book(2, "a");
        q.push_broadcast(&b2, limit, SlowClientPolicy::DropOldest);
        q.push_snapshot(&book(7, "c"));
        let b3 = book(3, "a");
        q.push_broadcast(&b3, limit, SlowClientPolicy::DropOldest);
        q.flush(&mut sink, limit).unwrap();
        let read = client_reads(&sink.got);
        assert_eq!(read.len(), 4);
        let alone = |b: &Arc<Broadcast>| deflating(false).form.message(b).len();
        assert!(read[1].1 < alone(&b2), "chained on the written one");
        assert_eq!(read[3].1, alone(&b3), "after a snapshot: alone");
        assert!(read[2].0.contains(r#""snapshot":true"#));
    }

    /// A conflating connection holding messages back (its `latest` is not
    /// empty) builds no chained copy after its stale window end: that would
    /// take the shared slot from every client whose window ends with the
    /// channel's previous message.
    #[test]
    fn a_stalled_conflating_connection_does_not_take_the_chained_copy() {
        let (b1, b2, b3) = (book(1, "a"), book(2, "a"), book(3, "a"));
        let big = 1 << 20;
        let mut healthy = deflating(true);
        healthy.push_broadcast(&b1, big, SlowClientPolicy::Conflate);
        healthy.push_broadcast(&b2, big, SlowClientPolicy::Conflate);
        let mut stalled = deflating(true);
        let limit = 4096;
        stalled.push_broadcast(&b1, limit, SlowClientPolicy::Conflate);
        stalled.push_own(Bytes::from(vec![b'r'; limit - stalled.len()]));
        assert_eq!(
            stalled.push_broadcast(&b2, limit, SlowClientPolicy::Conflate),
            Pushed::Queued
        );
        assert!(!stalled.latest.is_empty(), "b2 is held back");
        // b3 reaches the stalled connection first (slab order, or its worker).
        assert_eq!(
            stalled.push_broadcast(&b3, limit, SlowClientPolicy::Conflate),
            Pushed::Conflated(1)
        );
        healthy.push_broadcast(&b3, big, SlowClientPolicy::Conflate);
        let alone = deflating(false).form.message(&b3).len();
        let sent = healthy.items.back().unwrap().bytes().len();
        assert!(
            sent < alone,
            "the healthy client got b3 deflated alone ({sent} bytes, chained would be smaller than {alone})"
        );
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
