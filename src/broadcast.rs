//! One message for every subscriber: encoded once into a complete WebSocket text
//! frame that every matching connection shares by reference, and into a
//! Server-Sent Events form on first need, which every SSE stream shares.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tungstenite::Bytes;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::deflate::{Window, codec};
use crate::metrics::Metrics;

/// The `pos` of a broadcast that never went through this process's ring: one
/// history refilled from the JetStream stream at start. Every worker is past it.
pub const OUTSIDE_RING: u64 = u64::MAX;

/// A broadcast as it sits in the ring.
#[derive(Debug)]
pub struct Broadcast {
    /// Position in the ring (unique, increasing); connections dedupe on it.
    pub pos: u64,
    /// The `seq` the client sees.
    pub seq: u64,
    pub channel: Box<str>,
    /// `{"type":"message",...}` framed as one unmasked text frame.
    pub frame: Bytes,
    /// The same message flagged `"conflated":true`, encoded on first need.
    conflated: OnceLock<Bytes>,
    /// The same message flagged `"snapshot":true`, encoded on first need.
    snapshot: OnceLock<Bytes>,
    /// The SSE events of this message, built when the first SSE stream needs them.
    sse: OnceLock<Box<SseForms>>,
    /// `frame` deflated (RSV1 set), one per window class (`Window as usize`),
    /// built when the first compressing subscriber of that class needs it.
    deflated: [OnceLock<Bytes>; 3],
    /// When the message entered the server (NATS receipt or HTTP publish).
    pub received_at: Instant,
    body: MessageBody,
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

    /// The `message` JSON; `flag` is "" or `,"name":true`.
    fn json(&self, seq: u64, flag: &str) -> String {
        format!(
            "{{\"type\":\"message\",\"channel\":{},\"seq\":{seq}{flag},\"data\":{}}}",
            self.channel_json, self.data_json
        )
    }

    fn encode(&self, seq: u64, flag: &str) -> Bytes {
        text_frame(self.json(seq, flag).into_bytes())
    }

    /// The same JSON as an SSE `message` event with `id: <epoch>:<seq>`.
    fn encode_sse(&self, epoch: &str, seq: u64, flag: &str) -> Bytes {
        let id = format!("{epoch}:{seq}");
        Bytes::from(crate::sse::event(
            Some(&id),
            "message",
            &self.json(seq, flag),
        ))
    }
}

/// A broadcast's SSE events: the message, and its conflated and snapshot variants
/// (those on first need), all with the epoch the first SSE stream asked with.
#[derive(Debug)]
struct SseForms {
    epoch: Arc<str>,
    message: Bytes,
    conflated: OnceLock<Bytes>,
    snapshot: OnceLock<Bytes>,
}

/// How a connection's queue carries broadcasts and replies: WebSocket text frames,
/// or SSE events whose ids name `epoch`.
#[derive(Clone, Debug, Default)]
pub enum Form {
    #[default]
    WebSocket,
    Sse(Arc<str>),
}

impl Form {
    /// The broadcast as this form carries it, shared with every connection of the form.
    pub fn message(&self, b: &Broadcast) -> Bytes {
        match self {
            Form::WebSocket => b.frame.clone(),
            Form::Sse(epoch) => b.sse(epoch).message.clone(),
        }
    }

    /// Bytes of `message(b)`, without taking a reference.
    pub fn len_of(&self, b: &Broadcast) -> usize {
        match self {
            Form::WebSocket => b.frame.len(),
            Form::Sse(epoch) => b.sse(epoch).message.len(),
        }
    }

    /// The message flagged `"conflated":true`.
    pub fn conflated(&self, b: &Broadcast) -> Bytes {
        match self {
            Form::WebSocket => b.conflated_frame(),
            Form::Sse(epoch) => {
                let f = b.sse(epoch);
                let e = &f.epoch;
                let flag = ",\"conflated\":true";
                f.conflated
                    .get_or_init(|| b.body.encode_sse(e, b.seq, flag))
                    .clone()
            }
        }
    }

    /// The message flagged `"snapshot":true`.
    pub fn snapshot(&self, b: &Broadcast) -> Bytes {
        match self {
            Form::WebSocket => b.snapshot_frame(),
            Form::Sse(epoch) => {
                let f = b.sse(epoch);
                let e = &f.epoch;
                let flag = ",\"snapshot\":true";
                f.snapshot
                    .get_or_init(|| b.body.encode_sse(e, b.seq, flag))
                    .clone()
            }
        }
    }

    /// A connection's own reply (`subscribed`, `gap`, ...): a text frame, or an SSE
    /// event named `event`, without an id.
    pub fn reply(&self, event: &str, json: String) -> Bytes {
        match self {
            Form::WebSocket => text_frame(json.into_bytes()),
            Form::Sse(_) => Bytes::from(crate::sse::event(None, event, &json)),
        }
    }
}

impl Broadcast {
    pub fn new(pos: u64, seq: u64, channel: &str, body: MessageBody, received_at: Instant) -> Self {
        Broadcast {
            pos,
            seq,
            channel: channel.into(),
            frame: body.encode(seq, ""),
            conflated: OnceLock::new(),
            snapshot: OnceLock::new(),
            sse: OnceLock::new(),
            deflated: Default::default(),
            received_at,
            body,
        }
    }

    /// Whether a reader whose next ring position is `cursor` has passed it (a
    /// broadcast from outside the ring is always behind every reader).
    pub fn before(&self, cursor: u64) -> bool {
        self.pos < cursor || self.pos == OUTSIDE_RING
    }

    /// What this broadcast holds in memory (frame and body), for the ring's byte bound.
    pub fn held_bytes(&self) -> usize {
        self.frame.len() + self.body.channel_json.len() + self.body.data_json.len()
    }

    /// The frame a slow consumer gets after older messages of the channel were dropped.
    pub fn conflated_frame(&self) -> Bytes {
        self.conflated
            .get_or_init(|| self.body.encode(self.seq, ",\"conflated\":true"))
            .clone()
    }

    /// The frame a subscriber asking for a snapshot gets: the channel's latest
    /// message, flagged `"snapshot":true`.
    pub fn snapshot_frame(&self) -> Bytes {
        self.snapshot
            .get_or_init(|| self.body.encode(self.seq, ",\"snapshot\":true"))
            .clone()
    }

    /// The SSE events, built once by the first SSE stream that needs them (any
    /// worker): every other stream shares the bytes.
    fn sse(&self, epoch: &Arc<str>) -> &SseForms {
        self.sse.get_or_init(|| {
            Box::new(SseForms {
                epoch: Arc::clone(epoch),
                message: self.body.encode_sse(epoch, self.seq, ""),
                conflated: OnceLock::new(),
                snapshot: OnceLock::new(),
            })
        })
    }
}

impl Broadcast {
    /// The frame a connection gets: `frame` itself, or for a compressing one
    /// (`window`) the deflated copy shared by its class when the JSON has at
    /// least `min_bytes`.
    pub fn frame_for(&self, window: Option<Window>, min_bytes: usize, metrics: &Metrics) -> Bytes {
        let Some(window) = window else {
            return self.frame.clone();
        };
        let json = frame_payload(&self.frame);
        if json.len() < min_bytes {
            return self.frame.clone();
        }
        self.deflated[window as usize]
            .get_or_init(|| deflated_frame(json, Data::Text, window, metrics))
            .clone()
    }
}

/// `payload` deflated into one final unmasked data frame with RSV1 set, counted.
pub fn deflated_frame(payload: &[u8], data: Data, window: Window, metrics: &Metrics) -> Bytes {
    let body = codec::deflate(payload, window);
    metrics.compressed_frames.fetch_add(1, Relaxed);
    let before = payload.len() as u64;
    metrics.compression_bytes_in.fetch_add(before, Relaxed);
    metrics
        .compression_bytes_out
        .fetch_add(body.len() as u64, Relaxed);
    let mut frame = Frame::message(body, OpCode::Data(data), true);
    frame.header_mut().rsv1 = true;
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// The payload of a frame built here (unmasked, so after the length).
fn frame_payload(frame: &[u8]) -> &[u8] {
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

    #[test]
    fn the_deflated_copy_is_built_once_per_window_and_small_frames_stay_plain() {
        let metrics = Metrics::default();
        let json = format!("[{}]", vec![r#"{"px":101.5,"qty":3}"#; 40].join(","));
        let b = Broadcast::new(
            0,
            1,
            "a.b",
            MessageBody::new("a.b", json.as_bytes()),
            Instant::now(),
        );
        assert_eq!(b.frame_for(None, 256, &metrics), b.frame);
        let first = b.frame_for(Some(Window::Full), 256, &metrics);
        assert_eq!(first[0], 0xc1, "FIN, RSV1, text");
        for _ in 0..10 {
            let again = b.frame_for(Some(Window::Full), 256, &metrics);
            assert_eq!(again.as_ptr(), first.as_ptr(), "the same shared bytes");
        }
        assert_eq!(metrics.compressed_frames.load(Relaxed), 1);
        b.frame_for(Some(Window::Rle), 256, &metrics);
        assert_eq!(metrics.compressed_frames.load(Relaxed), 2);
        let inflated = codec::inflate_message(frame_payload(&first), 1 << 20).unwrap();
        assert_eq!(inflated, frame_payload(&b.frame));
        assert!(
            first.len() * 3 < b.frame.len(),
            "{} vs {}",
            first.len(),
            b.frame.len()
        );
        let small = Broadcast::new(1, 2, "a.b", MessageBody::new("a.b", b"1"), Instant::now());
        assert_eq!(
            small.frame_for(Some(Window::Full), 256, &metrics),
            small.frame
        );
        assert_eq!(metrics.compressed_frames.load(Relaxed), 2);
    }

    #[test]
    fn long_payload_uses_extended_length() {
        let frame = text_frame(vec![b'x'; 300]);
        assert_eq!(frame[1], 126);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 300);
        assert_eq!(frame.len(), 304);
    }
}
