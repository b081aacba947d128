//! Between the socket and tungstenite on a compressing connection: tungstenite
//! 0.30 rejects frames with RSV1, so client frames are parsed here first. A
//! compressed message (RSV1 on its first frame) is collected, inflated with a
//! bound and handed on as one plain masked frame; everything else passes
//! through byte for byte, for tungstenite to check as always.

use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;

use super::codec::{self, InflateError};
use crate::metrics::Metrics;

/// Bytes read from the socket at a time.
const CHUNK: usize = 4096;
/// Buffer capacity kept once emptied; a burst's larger buffer is given back.
const KEPT_CAPACITY: usize = 256;

/// Why the connection fails; each is one close code (see ws_conn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A frame or message (compressed or inflated) over WS_MAX_MESSAGE_SIZE: 1009.
    TooBig,
    /// RSV1 where RFC 7692 forbids it, or a broken message sequence: 1002.
    Protocol,
    /// Not a valid deflate stream: 1007.
    Corrupt,
}

/// The per-connection state: empty buffers while idle.
#[derive(Default)]
pub struct Inbound {
    /// Bytes from the socket not yet parsed into frames.
    raw: Vec<u8>,
    /// Bytes ready for tungstenite, from `sent` on.
    ready: Vec<u8>,
    sent: usize,
    message: Message,
    failed: Option<Failure>,
    /// Messages inflated since the reader last counted them.
    inflated: u64,
}

/// Where the client is in a fragmented message.
#[derive(Default)]
enum Message {
    #[default]
    None,
    /// An uncompressed one: its continuations pass through.
    Plain,
    /// A compressed one: opcode of its first frame, compressed bytes so far.
    Compressed(u8, Vec<u8>),
}

/// One parsed frame header.
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl Inbound {
    /// Bytes that followed the upgrade request in its last read.
    pub fn with_leftover(leftover: Vec<u8>) -> Inbound {
        Inbound {
            raw: leftover,
            ..Inbound::default()
        }
    }

    /// Why the connection must close, once a read has failed for it.
    pub fn failure(&self) -> Option<Failure> {
        self.failed
    }

    /// The stream tungstenite reads: `socket` through this filter.
    pub fn reader<'a, S: Read>(
        &'a mut self,
        socket: &'a mut S,
        limit: usize,
        metrics: &'a Metrics,
    ) -> Reader<'a, S> {
        Reader {
            inbound: self,
            socket,
            limit,
            metrics,
        }
    }

    /// Moves whole frames from `raw` to `ready`; `Ok(false)` when `raw` holds no
    /// whole frame.
    fn parse_frame(&mut self, limit: usize) -> Result<bool, Failure> {
        let Some(h) = parse_header(&self.raw) else {
            return Ok(false);
        };
        if h.payload_len > limit {
            return Err(Failure::TooBig);
        }
        let end = h.header_len + h.payload_len;
        if self.raw.len() < end {
            return Ok(false);
        }
        let control = h.opcode >= 8;
        let message = std::mem::take(&mut self.message);
        self.message = match (message, h.opcode, h.rsv1) {
            (_, _, true) if control => return Err(Failure::Protocol),
            (m, _, false) if control => {
                self.pass(end);
                m
            }
            (Message::Compressed(op, mut body), 0, false) => {
                self.append(&h, &mut body, limit)?;
                self.finish(op, body, h.fin, limit)?
            }
            // RSV1 on a continuation, or a new message before the last ended.
            (Message::Compressed(..), _, _) => return Err(Failure::Protocol),
            (Message::None, op @ (1 | 2), true) => {
                let mut body = Vec::new();
                self.append(&h, &mut body, limit)?;
                self.finish(op, body, h.fin, limit)?
            }
            (_, _, true) => return Err(Failure::Protocol),
            (m, op, false) => {
                self.pass(end);
                match (m, op, h.fin) {
                    (_, _, true) => Message::None,
                    (Message::None, 1 | 2, false) => Message::Plain,
                    (m, _, false) => m,
                }
            }
        };
        self.raw.drain(..end);
        Ok(true)
    }

    /// A frame tungstenite reads as it came.
    fn pass(&mut self, end: usize) {
        self.ready.extend_from_slice(&self.raw[..end]);
    }

    /// The frame's payload, unmasked, onto a compressed message's body.
    fn append(&self, h: &Header, body: &mut Vec<u8>, limit: usize) -> Result<(), Failure> {
        if body.len() + h.payload_len > limit {
            return Err(Failure::TooBig);
        }
        let start = body.len();
        body.extend_from_slice(&self.raw[h.header_len..h.header_len + h.payload_len]);
        if let Some(mask) = h.mask {
            for (i, b) in body[start..].iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        Ok(())
    }

    /// At the last frame, the inflated message as one masked frame for
    /// tungstenite; before it, the message as it stands.
    fn finish(
        &mut self,
        op: u8,
        body: Vec<u8>,
        fin: bool,
        limit: usize,
    ) -> Result<Message, Failure> {
        if !fin {
            return Ok(Message::Compressed(op, body));
        }
        let payload = codec::inflate_message(&body, limit).map_err(|e| match e {
            InflateError::TooLarge => Failure::TooBig,
            InflateError::Corrupt => Failure::Corrupt,
        })?;
        write_masked_frame(&mut self.ready, op, &payload);
        self.inflated += 1;
        Ok(Message::None)
    }

    fn fail(&mut self, why: Failure) -> io::Error {
        self.failed = Some(why);
        io::Error::new(io::ErrorKind::InvalidData, format!("{why:?}"))
    }
}

/// The header at the start of `buf`, once all of it has arrived.
fn parse_header(buf: &[u8]) -> Option<Header> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len_bytes, short) = match b1 & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as usize)),
    };
    let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return None;
    }
    let payload_len = match short {
        Some(n) => n,
        None => {
            let mut n: u64 = 0;
            for b in &buf[2..2 + len_bytes] {
                n = n << 8 | u64::from(*b);
            }
            usize::try_from(n).unwrap_or(usize::MAX)
        }
    };
    let mask = masked.then(|| {
        let at = 2 + len_bytes;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0f,
        mask,
        header_len,
        payload_len,
    })
}

/// A final client frame of `opcode` around `payload`, masked with a zero key (so
/// the payload is written as it is).
fn write_masked_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
}

/// `Read` for tungstenite: the ready bytes, refilled from the socket.
pub struct Reader<'a, S> {
    inbound: &'a mut Inbound,
    socket: &'a mut S,
    limit: usize,
    metrics: &'a Metrics,
}

impl<S: Read> Read for Reader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inb = &mut *self.inbound;
        loop {
            if inb.sent < inb.ready.len() {
                let n = (inb.ready.len() - inb.sent).min(buf.len());
                buf[..n].copy_from_slice(&inb.ready[inb.sent..inb.sent + n]);
                inb.sent += n;
                if inb.sent == inb.ready.len() {
                    inb.ready.clear();
                    inb.sent = 0;
                    if inb.ready.capacity() > KEPT_CAPACITY {
                        inb.ready = Vec::new();
                    }
                }
                return Ok(n);
            }
            if let Some(why) = inb.failed {
                return Err(inb.fail(why));
            }
            match inb.parse_frame(self.limit) {
                Ok(true) => {
                    let inflated = std::mem::take(&mut inb.inflated);
                    self.metrics.inflated_messages.fetch_add(inflated, Relaxed);
                    continue;
                }
                Ok(false) => {}
                Err(why) => return Err(inb.fail(why)),
            }
            if inb.raw.is_empty() && inb.raw.capacity() > KEPT_CAPACITY {
                inb.raw = Vec::new();
            }
            let mut chunk = [0u8; CHUNK];
            match self.socket.read(&mut chunk)? {
                0 => return Ok(0),
                n => inb.raw.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Window;

    /// A masked client frame: `first` is the first header byte.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// What tungstenite would read after the client sent `input`.
    fn filtered(input: &[u8], limit: usize) -> (Vec<u8>, Option<Failure>, u64) {
        let metrics = Metrics::default();
        let mut inbound = Inbound::default();
        let mut socket = input;
        let mut out = Vec::new();
        let mut reader = inbound.reader(&mut socket, limit, &metrics);
        let _ = reader.read_to_end(&mut out);
        let inflated = metrics.inflated_messages.load(Relaxed);
        (out, inbound.failure(), inflated)
    }

    #[test]
    fn a_fragmented_compressed_message_with_a_ping_between_becomes_one_plain_frame() {
        let body = codec::deflate(b"hello, compressed world", Window::Full);
        let (a, b) = body.split_at(body.len() / 2);
        let mut input = frame(0x41, a); // text, RSV1, not final
        input.extend(frame(0x89, b"p")); // ping between fragments
        input.extend(frame(0x80, b)); // final continuation
        input.extend(frame(0x81, b"plain")); // an uncompressed message passes
        let (out, failure, inflated) = filtered(&input, 1024);
        assert_eq!((failure, inflated), (None, 1));
        let mut want = frame(0x89, b"p");
        write_masked_frame(&mut want, 1, b"hello, compressed world");
        want.extend(frame(0x81, b"plain"));
        assert_eq!(out, want);
    }

    #[test]
    fn rsv1_where_rfc_7692_forbids_it_fails_the_connection() {
        let body = codec::deflate(b"x", Window::Full);
        let cases = [
            frame(0xc9, b"p"),                                 // a control frame
            [frame(0x01, b"a"), frame(0xc0, &body)].concat(),  // a continuation
            [frame(0x41, &body), frame(0xc1, &body)].concat(), // a new message mid-message
        ];
        for input in cases {
            assert_eq!(filtered(&input, 1024).1, Some(Failure::Protocol));
        }
        assert_eq!(
            filtered(&frame(0xc1, &[0xff; 8]), 1024).1,
            Some(Failure::Corrupt)
        );
    }

    #[test]
    fn a_message_inflating_past_the_limit_is_too_big() {
        let body = codec::deflate(&vec![b'a'; 100_000], Window::Full);
        assert!(body.len() < 1024);
        let (out, failure, _) = filtered(&frame(0xc1, &body), 1024);
        assert_eq!((out.len(), failure), (0, Some(Failure::TooBig)));
        // A frame longer than the limit fails before its payload is buffered.
        let mut head = vec![0xc1, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 40).to_be_bytes());
        head.extend_from_slice(&[0; 4]);
        assert_eq!(filtered(&head, 1024).1, Some(Failure::TooBig));
    }
}
