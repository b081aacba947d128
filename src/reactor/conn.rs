//! One socket's state: reading an HTTP request, an open WebSocket, or closing;
//! plus the worker's bookkeeping for it (timer, flush lists, write delay).

use std::time::{Duration, Instant};

use mio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use super::accounting::{CompressingCount, SocketCount, SseClient, WsSlot};
use super::catch_up::{StreamCuts, StreamWait};
use super::patterns::Pattern;
use super::send_queue::SendQueue;
use crate::auth::Session;
use crate::deflate::inbound::Inbound;
use crate::rate::TokenBucket;

/// Generic over the stream so the handlers run in unit tests without a socket.
pub struct Conn<S = TcpStream> {
    pub stream: S,
    pub send: SendQueue,
    pub state: State,
    /// Counts the socket out when the connection is dropped.
    pub count: SocketCount,
    /// When the timer handler next needs to look at this connection.
    pub wake_at: Instant,
    /// Already in the worker's list of connections to flush this turn.
    pub dirty: bool,
    /// Where its queued broadcasts wait for a flush.
    pub broadcasts: Waiting,
    /// When this connection was last flushed; the write delay counts from here.
    pub last_flush: Instant,
    /// When the oldest broadcast queued since the last flush was received.
    pub pending_since: Option<Instant>,
}

impl<S> Conn<S> {
    /// A fresh socket, reading its request until `now + handshake_timeout`.
    pub fn new(
        stream: S,
        count: SocketCount,
        now: Instant,
        handshake_timeout: Duration,
    ) -> Conn<S> {
        let deadline = now + handshake_timeout;
        Conn {
            stream,
            send: SendQueue::default(),
            state: State::Http(HttpConn {
                buf: Vec::new(),
                deadline,
            }),
            count,
            wake_at: deadline,
            dirty: false,
            broadcasts: Waiting::No,
            last_flush: now,
            pending_since: None,
        }
    }
}

/// A connection's queued broadcasts are in at most one of the worker's lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Not waiting in either list (nothing queued, or a reply flush takes them).
    No,
    /// In the held heap until its write delay has passed.
    Held,
    /// In the fan-out list, flushed within a turn's budget.
    Fanout,
}

pub enum State {
    Http(HttpConn),
    Ws(Box<WsConn>),
    /// A Server-Sent Events stream (`GET /sse`).
    Sse(Box<SseConn>),
    Closing(Closing),
}

/// An SSE stream: subscribed like a WebSocket, but it sends nothing after its
/// request, so no rate limit, keep-alive comments instead of pings, and an idle
/// timeout by writes instead of reads (see `Progress`).
pub struct SseConn {
    pub subscriptions: Vec<Pattern>,
    /// As `WsConn::last_pos`.
    pub last_pos: Option<u64>,
    pub next_keep_alive: Instant,
    pub progress: Progress,
    /// When the drain ends this stream.
    pub drain_at: Option<Instant>,
    /// When its token expires and the stream ends (JWT authentication).
    pub expires_at: Option<Instant>,
    /// As `WsConn::stream_wait`: its resume or snapshot waiting for the stream.
    pub stream_wait: Option<Box<StreamWait>>,
    /// As `WsConn::stream_cuts`.
    pub stream_cuts: StreamCuts,
    /// One of WS_MAX_CONNECTIONS, given back when the stream ends.
    pub _slot: WsSlot,
    /// Counts the stream in `odin_ws_sse_clients`.
    pub _client: SseClient,
}

impl SseConn {
    pub fn next_deadline(&self, idle_timeout: Duration) -> Instant {
        let stalled = self.progress.since + idle_timeout;
        [self.drain_at, self.expires_at]
            .into_iter()
            .flatten()
            .fold(self.next_keep_alive.min(stalled), Instant::min)
    }
}

/// Whether a stream's reader still takes what is queued for it: a WebSocket
/// client that stops reading stops answering pings and meets WS_IDLE_TIMEOUT; an
/// SSE client never sends anything, so its idle time is counted from the last
/// moment its queue was empty or a byte of it was written.
pub struct Progress {
    /// `SendQueue::written` when last looked at.
    pub written: u64,
    pub since: Instant,
}

impl Progress {
    pub fn new(now: Instant) -> Progress {
        Progress {
            written: 0,
            since: now,
        }
    }

    /// Notes the queue's state at `now`; true when it has held unwritten bytes,
    /// none of them taken, for `idle_timeout`.
    pub fn stalled(&mut self, queue: &SendQueue, now: Instant, idle_timeout: Duration) -> bool {
        if queue.is_empty() || queue.written() != self.written {
            self.written = queue.written();
            self.since = now;
            return false;
        }
        now >= self.since + idle_timeout
    }
}

/// What delivery, the drain, the subscription index and stream reads need of a
/// subscriber, WebSocket or SSE stream alike.
pub struct Subscriber<'a> {
    pub subscriptions: &'a mut Vec<Pattern>,
    pub last_pos: &'a mut Option<u64>,
    pub drain_at: &'a mut Option<Instant>,
    pub stream_wait: &'a mut Option<Box<StreamWait>>,
    pub stream_cuts: &'a mut StreamCuts,
}

impl State {
    /// Bytes of live broadcasts held for a stream read (queued, in effect).
    pub fn stream_held_bytes(&self) -> usize {
        let wait = match self {
            State::Ws(ws) => &ws.stream_wait,
            State::Sse(sse) => &sse.stream_wait,
            State::Http(_) | State::Closing(_) => return 0,
        };
        wait.as_ref().map_or(0, |w| w.held_bytes())
    }

    /// The subscriber behind an open WebSocket or SSE stream.
    pub fn subscriber(&mut self) -> Option<Subscriber<'_>> {
        match self {
            State::Ws(ws) => Some(Subscriber {
                subscriptions: &mut ws.subscriptions,
                last_pos: &mut ws.last_pos,
                drain_at: &mut ws.drain_at,
                stream_wait: &mut ws.stream_wait,
                stream_cuts: &mut ws.stream_cuts,
            }),
            State::Sse(sse) => Some(Subscriber {
                subscriptions: &mut sse.subscriptions,
                last_pos: &mut sse.last_pos,
                drain_at: &mut sse.drain_at,
                stream_wait: &mut sse.stream_wait,
                stream_cuts: &mut sse.stream_cuts,
            }),
            State::Http(_) | State::Closing(_) => None,
        }
    }
}

/// Reading a request head (and a publish body).
pub struct HttpConn {
    pub buf: Vec<u8>,
    pub deadline: Instant,
}

pub struct WsConn {
    pub ctx: WebSocketContext,
    /// The conformance echo endpoint rather than the client protocol.
    pub echo: bool,
    pub subscriptions: Vec<Pattern>,
    /// Ring position of the last broadcast queued: a message matched by two of the
    /// connection's patterns is sent once.
    pub last_pos: Option<u64>,
    pub last_read: Instant,
    pub next_ping: Instant,
    pub rate: RateLimit,
    /// When the drain closes this connection.
    pub drain_at: Option<Instant>,
    /// Since when it is not read because its send queue is over its bound.
    pub paused_since: Option<Instant>,
    /// Given back when the connection starts closing (its state is replaced).
    pub _slot: WsSlot,
    /// Set when permessage-deflate was negotiated (the send queue holds the window).
    pub deflate: Option<Box<Compressing>>,
    /// What its token allows, until when (JWT authentication; None when off).
    pub session: Option<Box<Session>>,
    /// A subscribe waiting for its JetStream stream read (live broadcasts held).
    pub stream_wait: Option<Box<StreamWait>>,
    /// What stream reads sent that live delivery may still bring.
    pub stream_cuts: StreamCuts,
}

/// A connection that negotiated permessage-deflate: client frames pass through
/// its inbound filter; counted while it lives.
pub struct Compressing {
    pub inbound: Inbound,
    pub _count: CompressingCount,
}

/// Our last words are queued; once written, the write side is shut and what the
/// peer still sends is read and discarded until it closes or `until` passes, so the
/// close frame is not lost to a reset.
pub struct Closing {
    pub until: Instant,
    pub write_shut: bool,
}

/// The client message limit: a token bucket plus the count of refusals in a row.
pub struct RateLimit {
    bucket: TokenBucket,
    /// Messages refused since the last one allowed.
    pub refused: u32,
}

impl RateLimit {
    pub fn new(per_second: u32, now: Instant) -> RateLimit {
        RateLimit {
            bucket: TokenBucket::full(per_second, now),
            refused: 0,
        }
    }

    pub fn allow(&mut self, per_second: u32, now: Instant) -> bool {
        if self.bucket.try_take(per_second, now) {
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

impl WsConn {
    /// The next moment the timer handler must run for this connection.
    pub fn next_deadline(&self, idle_timeout: Duration) -> Instant {
        let idle = self.last_read + idle_timeout;
        let stall = self.paused_since.map(|p| p + super::ws_conn::STALL_GRACE);
        let token = self.session.as_ref().map(|s| s.next_deadline());
        [self.drain_at, stall, token]
            .into_iter()
            .flatten()
            .fold(self.next_ping.min(idle), Instant::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_stalled_only_when_its_queue_held_bytes_none_written_for_the_timeout() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(10);
        let mut queue = SendQueue::default();
        let mut p = Progress::new(t0);
        assert!(!p.stalled(&queue, t0 + idle * 5, idle), "an empty queue");
        let t1 = t0 + idle * 5;
        queue.push_own(tungstenite::Bytes::from_static(b"event"));
        assert!(!p.stalled(&queue, t1 + idle / 2, idle));
        assert!(p.stalled(&queue, t1 + idle, idle), "nothing written");
        let mut one = OneByte(Vec::new());
        let _ = queue.flush(&mut one, 1 << 20);
        queue.push_own(tungstenite::Bytes::from_static(b"more"));
        assert!(
            !p.stalled(&queue, t1 + idle * 2, idle),
            "bytes were written"
        );
        assert!(p.stalled(&queue, t1 + idle * 3, idle));
    }

    /// A socket that takes one byte and then would block.
    struct OneByte(Vec<u8>);

    impl std::io::Write for OneByte {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.is_empty() && !buf.is_empty() {
                self.0.push(buf[0]);
                Ok(1)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rate_limit_allows_a_second_of_burst_then_refills() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(5, t0);
        assert!((0..5).all(|_| r.allow(5, t0)));
        assert!(!r.allow(5, t0));
        assert!(!r.allow(5, t0));
        assert_eq!(r.refused, 2);
        assert!(r.allow(5, t0 + Duration::from_millis(200)));
        assert_eq!(r.refused, 0);
    }
}
