//! One load client: connect, upgrade, subscribe, then count what arrives.
//!
//! `Connecting -> Upgrading -> Open`; any error closes the client and is returned
//! as a short reason that the driver counts (a failure before `Open`, a drop after).
//! With COMPRESSION=on it offers permessage-deflate and inflates (inflate.rs); with
//! TRANSPORT=sse, `Upgrading` is the GET /sse request and events come instead of
//! frames (sse.rs).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::resume::{self, Carried, Position};
use crate::settings::{Protocol, Transport, Wire};
use crate::stats::{Stats, unix_micros};
use crate::wsframe::{self, Decoded, Upgrade};
use crate::{inflate, scan, sse};

/// Largest server frame or NATS protocol line accepted.
const MAX_FRAME: usize = 1 << 20;
const MAX_NATS_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Connecting,
    Upgrading,
    Open,
}

/// Channel names to small integers, so each client tracks its `n` per channel cheaply.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<Box<[u8]>, u32>,
}

impl Interner {
    fn id(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(name.into(), id);
        id
    }
}

/// What one event needs besides the client.
pub struct Ctx<'a> {
    pub stats: &'a mut Stats,
    pub interner: &'a mut Interner,
    /// COMPRESSION=on: the messages inflated so far, shared by every client.
    pub inflated: &'a mut inflate::Inflated,
    pub protocol: Protocol,
    pub start: Instant,
    pub now: Instant,
    /// Wall clock in Unix microseconds, to compare with the publisher's `ts_us`.
    pub now_us: u64,
}

impl<'a> Ctx<'a> {
    /// Takes the driver's fields one by one, so the driver can lend them while it
    /// holds one of its clients.
    pub fn new(
        stats: &'a mut Stats,
        interner: &'a mut Interner,
        inflated: &'a mut inflate::Inflated,
        protocol: Protocol,
        start: Instant,
        now: Instant,
    ) -> Ctx<'a> {
        Ctx {
            stats,
            interner,
            inflated,
            protocol,
            start,
            now,
            now_us: unix_micros(),
        }
    }
}

pub struct Client {
    pub stream: TcpStream,
    pub phase: Phase,
    pub started: Instant,
    /// Subscription acknowledged (odin: `subscribed`; NATS: the PONG after SUBs).
    pub subscribed: bool,
    /// Counted in the driver's "awaiting" until subscribed or closed.
    pub awaiting: bool,
    /// One of the clients that stop reading after the ramp; counted apart.
    pub slow: bool,
    wire: Wire,
    /// permessage-deflate agreed in the upgrade answer.
    deflate: bool,
    /// The message being reassembled from fragments came compressed.
    compressed: bool,
    /// What this client's deflate window ends with, when the server may rely on
    /// it (odin-ws's chained copies): its last compressed message.
    window: Option<inflate::Text>,
    keeps_window: bool,
    subscriptions: Vec<String>,
    out: Vec<u8>,
    /// Bytes read but not yet parsed (a partial head or frame).
    inbuf: Vec<u8>,
    /// odin: the fragments of a message; NATS: protocol bytes not yet parsed.
    message: Vec<u8>,
    /// (channel id, last `n`) per channel seen.
    pub last_n: Vec<(u32, u64)>,
    mask_seed: u32,
    /// RECONNECT=resume: the epoch and highest `seq` seen, and whether the
    /// subscribe carried `since` (its ack is then counted).
    pub resume: bool,
    pub epoch: Option<Box<str>>,
    pub last_seq: u64,
    since_sent: bool,
    /// A reconnect: when the client was closed.
    pub reconnect_from: Option<Instant>,
}

/// A short, countable reason for an io error.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::AddrNotAvailable => "no free source port (EADDRNOTAVAIL)".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        _ => match e.raw_os_error() {
            Some(libc::EMFILE) => "too many open files (EMFILE)".into(),
            _ => format!("io error: {e}"),
        },
    }
}

impl Client {
    pub fn new(
        index: u32,
        stream: TcpStream,
        now: Instant,
        subscriptions: Vec<String>,
        slow: bool,
        wire: Wire,
    ) -> Client {
        Client {
            stream,
            phase: Phase::Connecting,
            started: now,
            subscribed: false,
            awaiting: true,
            slow,
            wire,
            deflate: false,
            compressed: false,
            window: None,
            keeps_window: false,
            subscriptions,
            out: Vec::new(),
            inbuf: Vec::new(),
            message: Vec::new(),
            last_n: Vec::new(),
            mask_seed: index.wrapping_mul(2_654_435_761) | 1,
            resume: false,
            epoch: None,
            last_seq: 0,
            since_sent: false,
            reconnect_from: None,
        }
    }

    /// Where to resume from: the epoch and the highest `seq` seen in it.
    pub fn position(&self) -> Option<Position> {
        let epoch = self.epoch.clone().filter(|_| self.last_seq > 0)?;
        Some(Position {
            epoch,
            seq: self.last_seq,
        })
    }

    /// Takes over what the client had before it was closed.
    pub fn carry_in(&mut self, carried: Carried) {
        self.resume = true;
        self.last_n = carried.last_n;
        if let Some(p) = carried.position {
            self.epoch = Some(p.epoch);
            self.last_seq = p.seq;
        }
        self.reconnect_from = Some(carried.closed_at);
        self.awaiting = false;
    }

    /// What the next connection needs; `closed_at` as the reconnect's start.
    pub fn carry_out(self, closed_at: Instant) -> Carried {
        Carried {
            position: self.position(),
            last_n: self.last_n,
            closed_at,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret here, only present.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_ne_bytes()
    }

    /// Handles a readiness event. `Err` is the reason the client is finished.
    pub fn on_event(
        &mut self,
        url_host: &str,
        url_path: &str,
        scratch: &mut [u8],
        ctx: &mut Ctx,
    ) -> Result<(), String> {
        if self.phase == Phase::Connecting {
            if let Some(e) = self.stream.take_error().map_err(|e| io_reason(&e))? {
                return Err(io_reason(&e));
            }
            match self.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(io_reason(&e)),
            }
            self.phase = Phase::Upgrading;
            self.out = match self.wire {
                Wire {
                    transport: Transport::Sse,
                    ..
                } => sse::request(url_host, &self.subscriptions),
                Wire { compression, .. } => wsframe::upgrade_request(
                    url_host,
                    url_path,
                    compression.then_some(inflate::OFFER),
                ),
            };
        }
        self.flush()?;
        self.read(scratch, ctx)?;
        self.flush()
    }

    /// Reads until the socket would block.
    pub fn read(&mut self, scratch: &mut [u8], ctx: &mut Ctx) -> Result<(), String> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(match self.phase {
                        Phase::Open => "closed by server (eof)".into(),
                        _ => "closed before upgrade".into(),
                    });
                }
                Ok(n) => {
                    ctx.stats.bytes_read += n as u64;
                    self.ingest(&scratch[..n], ctx)?;
                    // A short read emptied the socket; with edge-triggered epoll the
                    // next arrival is a new event, so skip the read that would only
                    // say WouldBlock (half the tool's syscalls at 175k messages/s).
                    if n < scratch.len() && self.phase == Phase::Open {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_reason(&e)),
            }
        }
    }

    pub fn flush(&mut self) -> Result<(), String> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_reason(&e)),
            }
        }
        Ok(())
    }

    fn ingest(&mut self, data: &[u8], ctx: &mut Ctx) -> Result<(), String> {
        let mut pending = std::mem::take(&mut self.inbuf);
        let result = parse_after(&mut pending, data, |bytes| self.parse(bytes, ctx));
        self.inbuf = pending;
        result
    }

    /// Parses what it can of `buf`; returns the bytes used.
    fn parse(&mut self, buf: &[u8], ctx: &mut Ctx) -> Result<usize, String> {
        if self.wire.transport == Transport::Sse {
            return self.parse_sse(buf, ctx);
        }
        let mut at = 0;
        if self.phase == Phase::Upgrading {
            match wsframe::parse_upgrade(buf) {
                None if buf.len() > wsframe::MAX_HEAD => return Err("upgrade head too long".into()),
                None => return Ok(0),
                Some(Upgrade::Refused(code)) => return Err(format!("http {code}")),
                Some(Upgrade::Invalid) => return Err("bad upgrade answer".into()),
                Some(Upgrade::Switched {
                    len,
                    deflate,
                    keeps_window,
                }) => {
                    at = len;
                    self.deflate = self.wire.compression && deflate;
                    (self.keeps_window, self.window) = (self.deflate && keeps_window, None);
                    ctx.stats.compressing_clients += u64::from(self.deflate);
                    self.on_open(ctx);
                }
            }
        }
        loop {
            match wsframe::decode(&buf[at..], MAX_FRAME) {
                Decoded::NeedMore => return Ok(at),
                Decoded::Invalid => return Err("invalid frame from server".into()),
                Decoded::Frame(frame, used) => {
                    at += used;
                    match frame.opcode {
                        wsframe::OP_PING => {
                            let mask = self.mask();
                            wsframe::encode(&mut self.out, wsframe::OP_PONG, frame.payload, mask);
                        }
                        wsframe::OP_PONG => {}
                        wsframe::OP_CLOSE => {
                            let code = match frame.payload {
                                [a, b, ..] => u16::from_be_bytes([*a, *b]).to_string(),
                                _ => "no code".into(),
                            };
                            return Err(format!("closed by server ({code})"));
                        }
                        wsframe::OP_TEXT | wsframe::OP_BINARY | wsframe::OP_CONTINUATION => {
                            if frame.opcode != wsframe::OP_CONTINUATION {
                                if frame.rsv1 && !self.deflate {
                                    return Err(
                                        "compressed frame without permessage-deflate".into()
                                    );
                                }
                                self.compressed = frame.rsv1;
                            }
                            self.on_data(frame.fin, frame.payload, ctx)?
                        }
                        other => return Err(format!("unknown opcode {other}")),
                    }
                }
            }
        }
    }

    /// An SSE stream: its 200 head, then events; returns the bytes used.
    fn parse_sse(&mut self, buf: &[u8], ctx: &mut Ctx) -> Result<usize, String> {
        let mut at = 0;
        if self.phase == Phase::Upgrading {
            match sse::parse_head(buf) {
                None if buf.len() > wsframe::MAX_HEAD => return Err("sse head too long".into()),
                None => return Ok(0),
                Some(sse::Head::Refused(code)) => return Err(format!("http {code}")),
                Some(sse::Head::Invalid) => return Err("not an event stream".into()),
                Some(sse::Head::Stream(end)) => {
                    at = end;
                    self.on_open(ctx);
                }
            }
        }
        let mut joined = std::mem::take(&mut self.message);
        let mut result = Ok(());
        while let Some((data, used)) = sse::next_event(&buf[at..], &mut joined) {
            at += used;
            if !data.is_empty() {
                result = self.on_odin_text(data, ctx);
                if result.is_err() {
                    break;
                }
            }
        }
        joined.clear();
        self.message = joined;
        result?;
        if buf.len() - at > MAX_FRAME {
            return Err("event too large".into());
        }
        Ok(at)
    }

    fn on_open(&mut self, ctx: &mut Ctx) {
        self.phase = Phase::Open;
        let elapsed = ctx.now.duration_since(self.started);
        ctx.stats.succeeded += 1;
        ctx.stats
            .window(ctx.now.duration_since(ctx.start))
            .succeeded += 1;
        ctx.stats.connect_us.record(elapsed.as_micros() as u64);
        if self.reconnect_from.is_some() {
            let r = &mut ctx.stats.resume;
            r.connect_us.record(elapsed.as_micros() as u64);
        }
        let mask = self.mask();
        match ctx.protocol {
            // The request named the channels; the stream starts with `subscribed`.
            _ if self.wire.transport == Transport::Sse => {}
            Protocol::Odin => {
                let mut req = serde_json::json!({
                    "type": "subscribe",
                    "channels": self.subscriptions,
                    "id": 1,
                });
                if let Some(p) = self.position().filter(|_| self.resume) {
                    req["since"] = resume::since(&p);
                    self.since_sent = true;
                }
                let text = req.to_string();
                wsframe::encode(&mut self.out, wsframe::OP_TEXT, text.as_bytes(), mask);
            }
            Protocol::Nats => {
                let mut text = String::from(
                    "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"odin-ws-load\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}\r\n",
                );
                for (sid, s) in self.subscriptions.iter().enumerate() {
                    text.push_str(&format!("SUB {s} {}\r\n", sid + 1));
                }
                text.push_str("PING\r\n");
                wsframe::encode(&mut self.out, wsframe::OP_BINARY, text.as_bytes(), mask);
            }
        }
        // Not needed any more; a few hundred bytes per client at 20k clients.
        self.subscriptions = Vec::new();
    }

    fn on_data(&mut self, fin: bool, payload: &[u8], ctx: &mut Ctx) -> Result<(), String> {
        match ctx.protocol {
            Protocol::Odin => {
                if fin && self.message.is_empty() {
                    self.on_odin_payload(payload, ctx)?;
                } else {
                    self.message.extend_from_slice(payload);
                    if self.message.len() > MAX_FRAME {
                        return Err("message too large".into());
                    }
                    if fin {
                        let whole = std::mem::take(&mut self.message);
                        self.on_odin_payload(&whole, ctx)?;
                    }
                }
            }
            Protocol::Nats => {
                // NATS over WebSocket is a byte stream cut into frames anywhere.
                let mut pending = std::mem::take(&mut self.message);
                let result = parse_after(&mut pending, payload, |bytes| self.on_nats(bytes, ctx));
                self.message = pending;
                result?;
                if self.message.len() > MAX_FRAME {
                    return Err("NATS message too large".into());
                }
            }
        }
        Ok(())
    }

    /// A whole message's payload: inflated first when it came compressed (or given
    /// the text of the same bytes inflated before).
    fn on_odin_payload(&mut self, payload: &[u8], ctx: &mut Ctx) -> Result<(), String> {
        if !self.compressed {
            return self.on_odin_text(payload, ctx);
        }
        ctx.stats.compressed_messages += 1;
        let (text, inflated) = ctx
            .inflated
            .text(payload, MAX_FRAME, self.window.as_ref())?;
        ctx.stats.inflated_messages += u64::from(inflated);
        let result = self.on_odin_text(&text.bytes, ctx);
        if self.keeps_window {
            self.window = Some(text);
        }
        result
    }

    fn on_odin_text(&mut self, text: &[u8], ctx: &mut Ctx) -> Result<(), String> {
        if let Some(m) = scan::odin_message(text) {
            if self.resume
                && let Some(seq) = scan::number_after(text, b"\"seq\":")
            {
                self.last_seq = self.last_seq.max(seq);
            }
            self.on_message(m.channel, m.data, m.conflated, ctx);
        } else if self.resume
            && let Some(epoch) = resume::welcome_epoch(text)
        {
            if epoch.is_empty() && self.position().is_some() {
                // A JetStream server still starting cannot resume yet.
                return Err(resume::NOT_READY.into());
            }
            let epoch: Box<str> = String::from_utf8_lossy(epoch).into();
            if self.epoch.as_ref() != Some(&epoch) {
                self.epoch = Some(epoch);
                self.last_seq = 0;
            }
        } else if scan::find(text, b"\"type\":\"subscribed\"").is_some() {
            if std::mem::take(&mut self.since_sent) {
                match resume::recovery(text) {
                    Ok(()) => ctx.stats.resume.recovered += 1,
                    Err(reason) => *ctx.stats.resume.not_recovered.entry(reason).or_default() += 1,
                }
            }
            self.on_subscribed(ctx);
        } else if scan::find(text, b"\"type\":\"error\"").is_some() {
            let code = scan::string_after(text, b"\"code\":\"").unwrap_or(b"?");
            let code = String::from_utf8_lossy(code).into_owned();
            *ctx.stats.server_errors.entry(code).or_default() += 1;
        }
        Ok(())
    }

    fn on_subscribed(&mut self, ctx: &mut Ctx) {
        if self.subscribed {
            return;
        }
        self.subscribed = true;
        match self.reconnect_from {
            // Back: counted apart from the ramp's subscriptions.
            Some(closed_at) => {
                let r = &mut ctx.stats.resume;
                r.reopened += 1;
                let since_close = ctx.now.duration_since(closed_at);
                r.reconnect_us.record(since_close.as_micros() as u64);
            }
            None => ctx.stats.subscribed += 1,
        }
    }

    /// Parses NATS protocol operations; returns the bytes used.
    fn on_nats(&mut self, buf: &[u8], ctx: &mut Ctx) -> Result<usize, String> {
        let mut at = 0;
        while let Some(eol) = scan::find(&buf[at..], b"\r\n").map(|e| at + e) {
            let line = &buf[at..eol];
            if let Some(args) = line.strip_prefix(b"MSG ") {
                // `MSG <subject> <sid> [reply-to] <#bytes>`: first and last word.
                let subject = args.split(|&b| b == b' ').next().unwrap_or_default();
                let size = args.rsplit(|&b| b == b' ').next().unwrap_or_default();
                let size: usize = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad MSG size")?;
                let body = eol + 2;
                if buf.len() < body + size + 2 {
                    return Ok(at);
                }
                self.on_message(subject, &buf[body..body + size], false, ctx);
                at = body + size + 2;
                continue;
            }
            if line == b"PING" {
                let mask = self.mask();
                wsframe::encode(&mut self.out, wsframe::OP_BINARY, b"PONG\r\n", mask);
            } else if line == b"PONG" {
                self.on_subscribed(ctx);
            } else if let Some(err) = line.strip_prefix(b"-ERR ") {
                let err = format!("nats {}", String::from_utf8_lossy(err));
                *ctx.stats.server_errors.entry(err).or_default() += 1;
            }
            at = eol + 2;
        }
        // The loop ended on a line without its CRLF yet.
        if buf.len() - at > MAX_NATS_LINE {
            return Err("NATS line too long".into());
        }
        Ok(at)
    }

    fn on_message(&mut self, channel: &[u8], data: &[u8], conflated: bool, ctx: &mut Ctx) {
        let fields = scan::payload_fields(data);
        let now = ctx.now;
        let stats = &mut *ctx.stats;
        let latency = fields
            .ts_us
            .map(|ts| ctx.now_us.saturating_sub(ts))
            .unwrap_or(0);
        if self.slow {
            let s = &mut stats.slow;
            s.messages += 1;
            s.conflated += u64::from(conflated);
            if fields.ts_us.is_some() {
                s.latency_us.record(latency);
            }
        } else {
            stats.messages += 1;
            let window = stats.window(now.duration_since(ctx.start));
            window.messages += 1;
            if fields.ts_us.is_some() {
                window.latency_us.record(latency);
                stats.latency_us.record(latency);
            }
            stats.first_message.get_or_insert(now);
            stats.last_message = Some(now);
            stats.conflated += u64::from(conflated);
        }
        let Some(n) = fields.n else {
            stats.unparsed += 1;
            return;
        };
        if fields.ts_us.is_none() {
            stats.unparsed += 1;
        }
        let id = ctx.interner.id(channel);
        match self.last_n.iter_mut().find(|(c, _)| *c == id) {
            None => self.last_n.push((id, n)),
            Some((_, last)) => {
                if n > *last + 1 {
                    let missing = n - *last - 1;
                    if self.slow {
                        stats.slow.missing += missing;
                    } else if conflated {
                        stats.conflated_skipped += missing;
                    } else {
                        stats.gaps += 1;
                        stats.missing += missing;
                    }
                } else if n <= *last {
                    stats.out_of_order += 1;
                }
                *last = (*last).max(n);
            }
        }
    }
}

/// Parses `data` as the continuation of `pending`; `parse` returns how many bytes
/// it used, and the rest stays in `pending` for the next read.
fn parse_after(
    pending: &mut Vec<u8>,
    data: &[u8],
    mut parse: impl FnMut(&[u8]) -> Result<usize, String>,
) -> Result<(), String> {
    if pending.is_empty() {
        let used = parse(data)?;
        pending.extend_from_slice(&data[used..]);
    } else {
        pending.extend_from_slice(data);
        let used = parse(pending)?;
        pending.drain(..used);
    }
    Ok(())
}
