//! One message for every subscriber: encoded once into a complete WebSocket text
//! frame that every matching connection shares by reference, and into a
//! Server-Sent Events form on first need, which every SSE stream shares.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use tungstenite::Bytes;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::deflate::{Window, codec};

/// The `pos` of a broadcast that never went through this process's ring: one
/// history refilled from the JetStream stream at start. Every worker is past it.
pub const OUTSIDE_RING: u64 = u64::MAX;

/// A broadcast as it sits in the ring (and, for resume, in history): the frame
/// and what finds it. Every other form of the message is derived from the frame's
/// JSON on first need and kept in `forms`, so a message nobody needs another way
/// costs its frame and this struct, nothing more.
#[derive(Debug)]
pub struct Broadcast {
    /// Position in the ring (unique, increasing); connections dedupe on it.
    pub pos: u64,
    /// The `seq` the client sees.
    pub seq: u64,
    pub channel: Box<str>,
    /// `{"type":"message",...}` framed as one unmasked text frame.
    pub frame: Bytes,
    /// When the message entered the server (NATS receipt or HTTP publish).
    pub received_at: Instant,
    /// Where in the frame's JSON a flag (`,"conflated":true`) goes: after `seq`.
    flag_at: u32,
    /// `frame` deflated for the default window class, the one nearly every
    /// compressing client uses (kept here, so it needs no `forms`).
    deflated_full: OnceLock<Bytes>,
    /// The other forms, built when a connection first needs one.
    forms: OnceLock<Box<Forms>>,
}

/// A message's variants: flagged, deflated for the other window classes, and as
/// SSE events. Each is built once, by the first connection that needs it (any
/// worker), and shared by every other.
#[derive(Debug, Default)]
struct Forms {
    /// The conflated and the snapshot frame (`Flag as usize - 1`).
    flagged: [OnceLock<Bytes>; 2],
    /// The plain frame deflated for the smaller windows (`Window::class` Rle).
    deflated_small: OnceLock<Bytes>,
    /// Deflated copies of the flagged frames, by flag and by full or smaller
    /// window (rare: slow consumers and snapshots of compressing clients).
    flagged_deflated: OnceLock<Box<[[OnceLock<Bytes>; 2]; 2]>>,
    /// The plain frame deflated after the JSON of this broadcast on the same
    /// channel: for clients whose window ends with that message.
    chained: OnceLock<(WindowEnd, Bytes)>,
    sse: OnceLock<SseForms>,
}

/// A broadcast's SSE events by flag, all with the epoch the first SSE stream
/// asked with.
#[derive(Debug)]
struct SseForms {
    epoch: Arc<str>,
    events: [OnceLock<Bytes>; 3],
}

/// Which variant of a message a connection takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Plain,
    /// Older messages of the channel were dropped for a slow consumer.
    Conflated,
    /// The channel's latest message, sent at subscribe.
    Snapshot,
}

impl Flag {
    fn json(self) -> &'static str {
        match self {
            Flag::Plain => "",
            Flag::Conflated => ",\"conflated\":true",
            Flag::Snapshot => ",\"snapshot\":true",
        }
    }
}

/// The parts of the JSON message that do not depend on `seq` (the payload checked
/// and escaped), prepared before the ring lock; the frame that adds `seq` is
/// formatted under it (`Ring::push_with` says why).
#[derive(Debug)]
pub struct MessageBody {
    channel_json: String,
    data_json: Box<str>,
}

impl MessageBody {
    /// `data` is the payload itself when it is JSON, else the payload as a JSON string.
    pub fn new(channel: &str, payload: &[u8]) -> MessageBody {
        let data_json: Box<str> = if is_json(payload) {
            String::from_utf8_lossy(payload).trim().into()
        } else {
            serde_json::to_string(&String::from_utf8_lossy(payload))
                .expect("a string always serializes")
                .into()
        };
        MessageBody::from_json(channel, data_json)
    }

    /// `data_json` must already be valid JSON.
    pub fn from_json(channel: &str, data_json: Box<str>) -> MessageBody {
        let channel_json = serde_json::to_string(channel).expect("a string always serializes");
        MessageBody {
            channel_json,
            data_json,
        }
    }

    /// The most bytes the frame of this body can take: its JSON with the longest
    /// `seq` and the conflated flag, and the longest frame header.
    pub fn max_frame_len(&self) -> usize {
        const OVERHEAD: usize =
            r#"{"type":"message","channel":,"seq":,"conflated":true,"data":}"#.len();
        const SEQ_DIGITS: usize = 20;
        const FRAME_HEADER: usize = 10;
        OVERHEAD + SEQ_DIGITS + FRAME_HEADER + self.channel_json.len() + self.data_json.len()
    }

    /// The `message` JSON, and where in it a flag goes.
    fn json(&self, seq: u64) -> (String, usize) {
        let head = format!(
            "{{\"type\":\"message\",\"channel\":{},\"seq\":{seq}",
            self.channel_json
        );
        let flag_at = head.len();
        (head + ",\"data\":" + &self.data_json + "}", flag_at)
    }
}

/// How a connection's queue carries broadcasts and replies: WebSocket text frames
/// (deflated ones for a compressing connection), or SSE events whose ids name
/// `epoch`.
#[derive(Clone, Debug, Default)]
pub enum Form {
    #[default]
    WebSocket,
    Deflated(Deflate),
    Sse(Arc<str>),
}

/// What a compressing connection agreed to: its window class; messages whose JSON
/// has at least `min_bytes` go as that class's shared deflated copy. With `chain`
/// (a full window the client keeps between messages), a message may go as the
/// copy deflated after the channel's previous one (`Broadcast::chained`).
#[derive(Clone, Debug)]
pub struct Deflate {
    pub window: Window,
    pub min_bytes: usize,
    pub chain: bool,
    pub counters: Arc<CompressionCounters>,
}

/// The message a compressing client's LZ77 window ends with: the last broadcast
/// it was sent in plain form and compressed (RFC 7692 passes only compressed
/// messages through the window). `Weak`: a client must not keep a broadcast
/// alive. Told apart by identity, not `pos` (every broadcast refilled from the
/// stream has the same one); a `Weak` keeps its allocation, so no other
/// broadcast can take its address meanwhile.
#[derive(Clone, Debug)]
pub struct WindowEnd(Weak<Broadcast>);

impl WindowEnd {
    pub fn of(b: &Arc<Broadcast>) -> WindowEnd {
        WindowEnd(Arc::downgrade(b))
    }

    pub fn is(&self, other: &WindowEnd) -> bool {
        Weak::ptr_eq(&self.0, &other.0)
    }
}

impl Form {
    /// The broadcast as this form carries it, shared with every connection of the form.
    pub fn message(&self, b: &Broadcast) -> Bytes {
        self.variant(b, Flag::Plain)
    }

    /// Bytes of the plain frame or event: what the queue bounds count for `b`
    /// (for a compressing connection, the uncompressed frame: an upper bound).
    pub fn len_of(&self, b: &Broadcast) -> usize {
        match self {
            Form::WebSocket | Form::Deflated(_) => b.frame.len(),
            Form::Sse(epoch) => b.sse_event(epoch, Flag::Plain).len(),
        }
    }

    /// The message flagged `"conflated":true`.
    pub fn conflated(&self, b: &Broadcast) -> Bytes {
        self.variant(b, Flag::Conflated)
    }

    /// The message flagged `"snapshot":true`.
    pub fn snapshot(&self, b: &Broadcast) -> Bytes {
        self.variant(b, Flag::Snapshot)
    }

    /// The message flagged `flag`.
    pub fn variant(&self, b: &Broadcast, flag: Flag) -> Bytes {
        match self {
            Form::WebSocket => b.frame_flagged(flag),
            Form::Deflated(d) => b.deflated(flag, d),
            Form::Sse(epoch) => b.sse_event(epoch, flag),
        }
    }

    /// The window class of a compressing connection.
    pub fn window(&self) -> Option<Window> {
        match self {
            Form::Deflated(d) => Some(d.window),
            _ => None,
        }
    }

    /// A connection's own reply (`subscribed`, `gap`, ...): a text frame, or an SSE
    /// event named `event`, without an id.
    pub fn reply(&self, event: &str, json: String) -> Bytes {
        match self {
            Form::WebSocket | Form::Deflated(_) => text_frame(json.into_bytes()),
            Form::Sse(_) => Bytes::from(crate::sse::event(None, event, &json)),
        }
    }
}

impl Broadcast {
    pub fn new(pos: u64, seq: u64, channel: &str, body: MessageBody, received_at: Instant) -> Self {
        let (json, flag_at) = body.json(seq);
        Broadcast {
            pos,
            seq,
            channel: channel.into(),
            frame: text_frame(json.into_bytes()),
            received_at,
            flag_at: flag_at as u32,
            deflated_full: OnceLock::new(),
            forms: OnceLock::new(),
        }
    }

    /// Whether a reader whose next ring position is `cursor` has passed it (a
    /// broadcast from outside the ring is always behind every reader).
    pub fn before(&self, cursor: u64) -> bool {
        self.pos < cursor || self.pos == OUTSIDE_RING
    }

    /// What this broadcast holds in memory when it is made (its frame and channel),
    /// for the ring's and history's byte bounds. Forms built later for some
    /// connections are not counted: at most one per flag, window class and SSE,
    /// and one chained copy, each about the frame's size or (deflated) smaller
    /// (docs/architecture.md, "Where each queue is bounded").
    pub fn held_bytes(&self) -> usize {
        self.frame.len() + self.channel.len()
    }

    /// The frame a slow consumer gets after older messages of the channel were dropped.
    pub fn conflated_frame(&self) -> Bytes {
        self.frame_flagged(Flag::Conflated)
    }

    /// The frame a subscriber asking for a snapshot gets: the channel's latest
    /// message, flagged `"snapshot":true`.
    pub fn snapshot_frame(&self) -> Bytes {
        self.frame_flagged(Flag::Snapshot)
    }

    /// The message's JSON: the frame's payload.
    fn json(&self) -> &[u8] {
        frame_payload(&self.frame)
    }

    /// The JSON with `flag` after `seq`.
    fn json_flagged(&self, flag: Flag) -> Vec<u8> {
        let (json, at) = (self.json(), self.flag_at as usize);
        [&json[..at], flag.json().as_bytes(), &json[at..]].concat()
    }

    fn forms(&self) -> &Forms {
        self.forms.get_or_init(Box::default)
    }

    fn frame_flagged(&self, flag: Flag) -> Bytes {
        match flag {
            Flag::Plain => self.frame.clone(),
            _ => self.forms().flagged[flag as usize - 1]
                .get_or_init(|| text_frame(self.json_flagged(flag)))
                .clone(),
        }
    }

    /// The frame a compressing connection gets: the deflated copy shared by its
    /// window class when the JSON has at least `min_bytes`, else the plain one.
    fn deflated(&self, flag: Flag, d: &Deflate) -> Bytes {
        if !self.is_deflated_for(d) {
            return self.frame_flagged(flag);
        }
        let build = || match flag {
            Flag::Plain => deflated_frame(self.json(), Data::Text, d.window, &d.counters),
            _ => deflated_frame(&self.json_flagged(flag), Data::Text, d.window, &d.counters),
        };
        let small = d.window.class() != Window::Full;
        let slot = match (flag, small) {
            (Flag::Plain, false) => &self.deflated_full,
            (Flag::Plain, true) => &self.forms().deflated_small,
            (flag, small) => &self.forms().flagged_deflated.get_or_init(Box::default)
                [flag as usize - 1][usize::from(small)],
        };
        slot.get_or_init(build).clone()
    }

    /// Whether a compressing connection sends this message compressed (and so
    /// passes it through the client's window).
    pub fn is_deflated_for(&self, d: &Deflate) -> bool {
        self.json().len() >= d.min_bytes
    }

    /// The plain frame deflated with `end`'s JSON as its dictionary, for a client
    /// whose window ends with exactly that message: about a third smaller than
    /// the copy deflated alone, since consecutive messages of a channel share
    /// most of their text. Built by the first such client, for the channel's
    /// previous message it has, and shared by every client that has the same;
    /// `None` for anyone else (they take the copy deflated alone).
    pub fn chained(&self, end: &WindowEnd, d: &Deflate) -> Option<Bytes> {
        if !d.chain || d.window != Window::Full || !self.is_deflated_for(d) {
            return None;
        }
        let built = || self.forms.get().and_then(|f| f.chained.get());
        // The forms box only once there is something to put in it.
        if built().is_none()
            && let Some(prev) = end.0.upgrade()
            && prev.channel == self.channel
            && prev.is_deflated_for(d)
        {
            let body = codec::deflate_after(prev.json(), self.json());
            let (before, after) = (self.json().len(), body.len());
            let frame = compressed_frame(body, Data::Text);
            // Another worker may have set it meanwhile: theirs stands, and only
            // the copy kept is counted.
            if self.forms().chained.set((end.clone(), frame)).is_ok() {
                d.counters.count(before, after);
                d.counters.chained.fetch_add(1, Relaxed);
            }
        }
        match built() {
            Some((after, frame)) if after.is(end) => Some(frame.clone()),
            _ => None,
        }
    }

    /// An SSE event of this message, built once by the first SSE stream that needs
    /// it: every other stream shares the bytes.
    fn sse_event(&self, epoch: &Arc<str>, flag: Flag) -> Bytes {
        let sse = self.forms().sse.get_or_init(|| SseForms {
            epoch: Arc::clone(epoch),
            events: Default::default(),
        });
        sse.events[flag as usize]
            .get_or_init(|| {
                let id = format!("{}:{}", sse.epoch, self.seq);
                let json = self.json_flagged(flag);
                let json = std::str::from_utf8(&json).expect("the frame's JSON is UTF-8");
                Bytes::from(crate::sse::event(Some(&id), "message", json))
            })
            .clone()
    }
}

/// What deflating broadcasts and echoes did, for /metrics.
#[derive(Debug, Default)]
pub struct CompressionCounters {
    /// Deflated frames built: one per broadcast, flag and window class, one per echo.
    pub frames: AtomicU64,
    /// Payload bytes of those frames before and after deflate.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Of `frames`, those deflated after the channel's previous message.
    pub chained: AtomicU64,
}

/// `payload` deflated into one final unmasked data frame with RSV1 set, counted.
pub fn deflated_frame(
    payload: &[u8],
    data: Data,
    window: Window,
    counters: &CompressionCounters,
) -> Bytes {
    let body = codec::deflate(payload, window);
    counters.count(payload.len(), body.len());
    compressed_frame(body, data)
}

impl CompressionCounters {
    /// One deflated frame built, `before` bytes deflated to `after`.
    fn count(&self, before: usize, after: usize) {
        self.frames.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(before as u64, Relaxed);
        self.bytes_out.fetch_add(after as u64, Relaxed);
    }
}

/// A deflated `body` as one final unmasked data frame with RSV1 set.
fn compressed_frame(body: Vec<u8>, data: Data) -> Bytes {
    let mut frame = Frame::message(body, OpCode::Data(data), true);
    frame.header_mut().rsv1 = true;
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// The payload of a frame built here (unmasked, so after the length).
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    let start = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[start..]
}

/// Whether a NATS payload is a JSON document.
pub fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

/// Frames `payload` as one final, unmasked server text frame.
pub fn text_frame(payload: Vec<u8>) -> Bytes {
    data_frame(payload, Data::Text)
}

/// Frames `payload` as one final, unmasked server data frame of kind `data`.
pub fn data_frame(payload: Vec<u8>, data: Data) -> Bytes {
    let frame = Frame::message(payload, OpCode::Data(data), true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(frame: &[u8]) -> &str {
        // Short frames: 2-byte header; medium: 4 bytes.
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        std::str::from_utf8(&frame[start..]).unwrap()
    }

    #[test]
    fn json_payload_is_embedded_and_text_is_quoted() {
        let b = Broadcast::new(
            0,
            7,
            "a.b",
            MessageBody::new("a.b", br#"{"p":1}"#),
            Instant::now(),
        );
        assert_eq!(b.frame[0], 0x81);
        assert_eq!(
            payload_of(&b.frame),
            r#"{"type":"message","channel":"a.b","seq":7,"data":{"p":1}}"#
        );
        let b = Broadcast::new(
            1,
            8,
            "a.b",
            MessageBody::new("a.b", b"hi \"x\""),
            Instant::now(),
        );
        assert_eq!(
            payload_of(&b.frame),
            r#"{"type":"message","channel":"a.b","seq":8,"data":"hi \"x\""}"#
        );
        assert!(payload_of(&b.conflated_frame()).contains(r#""seq":8,"conflated":true,"#));
    }

    /// Control bytes grow ~6x as a JSON string: the bound is on the encoded frame.
    #[test]
    fn max_frame_len_bounds_the_encoded_frame() {
        let body = MessageBody::new("a.b", &[1u8; 1000]);
        let bound = body.max_frame_len();
        assert!(bound > 6000, "{bound}");
        let b = Broadcast::new(0, u64::MAX, "a.b", body, Instant::now());
        assert!(b.frame.len() <= bound && b.conflated_frame().len() <= bound);
        assert!(b.frame.len() + 40 > bound, "{} vs {bound}", b.frame.len());
    }

    #[test]
    fn the_sse_form_is_built_once_and_carries_the_same_json() {
        let b = Broadcast::new(
            0,
            7,
            "a.b",
            MessageBody::new("a.b", br#"{"p":1}"#),
            Instant::now(),
        );
        let sse = Form::Sse("E1".into());
        let event = sse.message(&b);
        let json = payload_of(&b.frame);
        let expected = format!("id: E1:7\nevent: message\ndata: {json}\n\n");
        assert_eq!(&event[..], expected.as_bytes());
        // Shared: the same allocation for every stream.
        assert_eq!(sse.message(&b).as_ptr(), event.as_ptr());
        assert_eq!(sse.len_of(&b), event.len());
        let conflated = String::from_utf8(sse.conflated(&b).to_vec()).unwrap();
        assert!(
            conflated.contains(r#""seq":7,"conflated":true,"#),
            "{conflated}"
        );
        let snapshot = String::from_utf8(sse.snapshot(&b).to_vec()).unwrap();
        assert!(snapshot.starts_with("id: E1:7\n"), "{snapshot}");
        assert_eq!(&Form::WebSocket.message(&b)[..], &b.frame[..]);
        let reply = sse.reply("gap", "{}".into());
        assert_eq!(&reply[..], b"event: gap\ndata: {}\n\n");
    }

    /// A message that deflates well: repetitive market-data JSON.
    fn compressible(seq: u64) -> Broadcast {
        let json = format!("[{}]", vec![r#"{"px":101.5,"qty":3}"#; 40].join(","));
        let body = MessageBody::new("a.b", json.as_bytes());
        Broadcast::new(0, seq, "a.b", body, Instant::now())
    }

    fn deflate(window: Window, counters: &Arc<CompressionCounters>) -> Form {
        Form::Deflated(Deflate {
            window,
            min_bytes: 256,
            chain: true,
            counters: Arc::clone(counters),
        })
    }

    #[test]
    fn the_deflated_copy_is_built_once_per_window_and_small_frames_stay_plain() {
        let counters = Arc::new(CompressionCounters::default());
        let b = compressible(1);
        let full = deflate(Window::Full, &counters);
        let first = full.message(&b);
        assert_eq!(first[0], 0xc1, "FIN, RSV1, text");
        for _ in 0..10 {
            let again = full.message(&b);
            assert_eq!(again.as_ptr(), first.as_ptr(), "the same shared bytes");
        }
        assert_eq!(counters.frames.load(Relaxed), 1);
        let rle = deflate(Window::Rle, &counters).message(&b);
        assert_eq!(counters.frames.load(Relaxed), 2);
        assert_ne!(rle.as_ptr(), first.as_ptr());
        let short = deflate(Window::Short, &counters).message(&b);
        assert_eq!(short.as_ptr(), rle.as_ptr(), "Short shares Rle's copy");
        assert_eq!(counters.frames.load(Relaxed), 2);
        let inflated = codec::inflate_message(frame_payload(&first), 1 << 20).unwrap();
        assert_eq!(inflated, frame_payload(&b.frame));
        assert!(
            first.len() * 3 < b.frame.len(),
            "{} vs {}",
            first.len(),
            b.frame.len()
        );
        let small = Broadcast::new(1, 2, "a.b", MessageBody::new("a.b", b"1"), Instant::now());
        assert_eq!(full.message(&small), small.frame);
        assert_eq!(full.snapshot(&small), small.snapshot_frame());
        assert_eq!(counters.frames.load(Relaxed), 2);
    }

    /// The chained copy is for the one predecessor it was built after, told by
    /// identity: broadcasts refilled from the stream all share one `pos`.
    #[test]
    fn a_chained_copy_serves_only_windows_that_end_with_its_predecessor() {
        let counters = Arc::new(CompressionCounters::default());
        let Form::Deflated(d) = deflate(Window::Full, &counters) else {
            unreachable!()
        };
        let refilled = |seq: u64| {
            let json = format!(
                "[{}]",
                vec![format!(r#"{{"px":101.5,"n":{seq}}}"#); 30].join(",")
            );
            let body = MessageBody::new("a.b", json.as_bytes());
            Arc::new(Broadcast::new(
                OUTSIDE_RING,
                seq,
                "a.b",
                body,
                Instant::now(),
            ))
        };
        let (p1, p2, b) = (refilled(1), refilled(2), refilled(3));
        let chained = b.chained(&WindowEnd::of(&p1), &d).expect("built after p1");
        assert!(chained.len() < Form::Deflated(d.clone()).message(&b).len());
        assert_eq!(b.chained(&WindowEnd::of(&p1), &d), Some(chained));
        assert_eq!(
            b.chained(&WindowEnd::of(&p2), &d),
            None,
            "same pos, another message"
        );
        assert_eq!(counters.chained.load(Relaxed), 1);
        let json = frame_payload(&b.frame).to_vec();
        let other = Broadcast::new(0, 9, "c.d", MessageBody::new("c.d", &json), Instant::now());
        assert_eq!(
            Arc::new(other).chained(&WindowEnd::of(&p1), &d),
            None,
            "only after a message of its own channel"
        );
    }

    /// Asking for a chained copy that cannot be built (the window ends with
    /// another channel's message) costs no `Forms` box.
    #[test]
    fn asking_for_a_chained_copy_that_cannot_be_built_allocates_nothing() {
        let counters = Arc::new(CompressionCounters::default());
        let Form::Deflated(d) = deflate(Window::Full, &counters) else {
            unreachable!()
        };
        let big = |ch: &str, seq: u64| {
            let json = format!(
                "[{}]",
                vec![format!(r#"{{"px":101.5,"n":{seq}}}"#); 30].join(",")
            );
            Arc::new(Broadcast::new(
                seq,
                seq,
                ch,
                MessageBody::new(ch, json.as_bytes()),
                Instant::now(),
            ))
        };
        let (other, b) = (big("c.d", 1), big("a.b", 2));
        assert_eq!(b.chained(&WindowEnd::of(&other), &d), None);
        assert!(
            b.forms.get().is_none(),
            "a {}-byte Forms box for nothing",
            std::mem::size_of::<Forms>()
        );
    }

    /// Slow consumers and snapshots of compressing clients get the flagged message
    /// deflated too, built once and shared like the plain copy.
    #[test]
    fn flagged_variants_are_deflated_once_and_carry_the_flag() {
        let counters = Arc::new(CompressionCounters::default());
        let b = compressible(9);
        for window in Window::ALL {
            let form = deflate(window, &counters);
            for (frame, flag) in [
                (form.conflated(&b), Flag::Conflated),
                (form.snapshot(&b), Flag::Snapshot),
            ] {
                assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
                let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
                let inflated = codec::inflate_message(&frame[start..], 1 << 20).unwrap();
                assert_eq!(inflated, b.json_flagged(flag));
                let text = String::from_utf8(inflated).unwrap();
                assert!(text.contains(&format!(r#""seq":9{},"data""#, flag.json())));
            }
            assert_eq!(form.conflated(&b).as_ptr(), form.conflated(&b).as_ptr());
        }
        // Short shares Rle's bytes (Window::class): one per flag and class.
        assert_eq!(counters.frames.load(Relaxed), 4, "one per flag and class");
    }

    #[test]
    fn long_payload_uses_extended_length() {
        let frame = text_frame(vec![b'x'; 300]);
        assert_eq!(frame[1], 126);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 300);
        assert_eq!(frame.len(), 304);
    }
}
