//! Reading a request on a fresh socket and answering it: the upgrade to a
//! WebSocket, or one of the plain endpoints.

use std::io::{self, Read};
use std::time::Instant;

use tungstenite::Bytes;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::accounting::WsSlot;
use super::conn::{RateLimit, State, WsConn};
use super::slab::Key;
use super::worker::Worker;
use crate::broadcast::text_frame;
use crate::config::Config;
use crate::endpoints;
use crate::http::{MAX_HEAD_BYTES, ParseError, Request, Response, parse_head, upgrade};
use crate::metrics::Reject;
use crate::protocol;
use crate::shared::Shared;

/// tungstenite's read buffer per connection. Client messages are small
/// subscribe requests; 128 KiB (the default) times thousands of sockets is not.
/// Kept at 128 bytes because the buffer never shrinks: tungstenite reserves a
/// frame's whole length on top of what it already holds, so one 330-byte
/// subscribe grew a 512-byte buffer to ~2 KiB for good (heaptrack, scenario E),
/// while from 128 it grows to about the frame's size.
const WS_READ_BUFFER: usize = 128;

enum Route {
    /// A valid upgrade: the 101 answer is ready, the head is `head_len` bytes.
    Upgrade {
        echo: bool,
        answer: Vec<u8>,
        head_len: usize,
    },
    Respond(Response),
    /// A publish whose body has not fully arrived.
    NeedBody,
}

impl Worker {
    pub(super) fn read_http(&mut self, key: Key, now: Instant) {
        let max_body = self.cfg.max_message_size;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Http(h) = &mut conn.state else {
            return;
        };
        let cap = MAX_HEAD_BYTES + max_body;
        let mut chunk = [0u8; 4096];
        while h.buf.len() < cap {
            let want = chunk.len().min(cap - h.buf.len());
            match conn.stream.read(&mut chunk[..want]) {
                Ok(0) => return self.remove(key),
                Ok(n) => h.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(key),
            }
        }
        let route = match parse_head(&h.buf) {
            Ok(None) => return,
            Err(ParseError::TooLarge) => {
                Route::Respond(Response::text(431, "request head over 8 KiB\n"))
            }
            Err(ParseError::Malformed(why)) => {
                Route::Respond(Response::text(400, &format!("{why}\n")))
            }
            Ok(Some(req)) => route(&self.cfg, &self.shared, &req, &h.buf[req.head_len..]),
        };
        match route {
            Route::NeedBody => {}
            Route::Respond(resp) => self.respond(key, resp, now),
            Route::Upgrade {
                echo,
                answer,
                head_len,
            } => self.upgrade(key, echo, answer, head_len, now),
        }
    }

    fn respond(&mut self, key: Key, resp: Response, now: Instant) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.send.push_own(Bytes::from(resp.to_bytes()));
        }
        self.begin_close(key, None, now);
    }

    fn upgrade(&mut self, key: Key, echo: bool, answer: Vec<u8>, head_len: usize, now: Instant) {
        let Some(slot) = WsSlot::claim(&self.shared, self.cfg.max_connections) else {
            return self.respond(key, upgrade::not_accepting(Reject::MaxConnections), now);
        };
        let session = self.next_session_id();
        let cfg = &self.cfg;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Http(h) = &mut conn.state else {
            return;
        };
        conn.count.count_websocket();
        conn.send.push_own(Bytes::from(answer));
        let leftover = h.buf[head_len..].to_vec();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(cfg.max_message_size))
            .max_frame_size(Some(cfg.max_message_size));
        let ctx = WebSocketContext::from_partially_read(leftover, Role::Server, Some(ws_config));
        if !echo {
            let welcome = protocol::welcome(
                &session,
                &self.shared.instance,
                cfg.ping_interval.as_millis(),
            );
            conn.send.push_own(text_frame(welcome.into_bytes()));
        }
        let ws = WsConn {
            ctx,
            echo,
            subscriptions: Vec::new(),
            last_pos: None,
            last_read: now,
            next_ping: now + cfg.ping_interval,
            rate: RateLimit::new(cfg.client_msg_rate, now),
            drain_at: None,
            _slot: slot,
        };
        let next = ws.next_deadline(cfg.idle_timeout);
        conn.state = State::Ws(Box::new(ws));
        self.schedule(key, next);
        self.mark_dirty(key);
        // Frames sent right behind the request are already buffered.
        self.read_again.push(key);
    }

    fn next_session_id(&mut self) -> String {
        // xorshift64: unique enough to tell sessions apart in logs; not a secret.
        let mut x = self.session_seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.session_seed = x;
        format!("{:016x}", x)
    }
}

fn route(cfg: &Config, shared: &Shared, req: &Request, rest: &[u8]) -> Route {
    let is_ws = req.path == cfg.ws_path;
    let is_echo = cfg.echo_path.as_deref() == Some(req.path.as_str());
    if !(is_ws || is_echo) {
        return match endpoints::answer(shared, cfg, req, rest) {
            Some(resp) => Route::Respond(resp),
            None => Route::NeedBody,
        };
    }
    match upgrade::check_upgrade(req, &cfg.allowed_origins, || shared.admission_closed()) {
        Ok(()) => Route::Upgrade {
            echo: is_echo,
            answer: upgrade::upgrade_response(req.header("Sec-WebSocket-Key").unwrap_or_default()),
            head_len: req.head_len,
        },
        Err(refusal) => {
            if let Some(why) = refusal.reject_reason() {
                shared.metrics.reject(why);
            }
            Route::Respond(refusal.into_response())
        }
    }
}
