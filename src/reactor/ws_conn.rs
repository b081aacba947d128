//! An open WebSocket: reading frames through tungstenite and answering the
//! client protocol.

use std::io;
use std::time::Instant;

use tungstenite::protocol::frame::coding::{CloseCode, Data};
use tungstenite::{Error, Message};

use super::conn::{State, WsConn};
use super::patterns::Subscriptions;
use super::send_queue::{QueueIo, SendQueue};
use super::slab::Key;
use super::worker::{READ_BUDGET, Worker};
use crate::broadcast::{data_frame, text_frame};
use crate::channel;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{self, ClientMessage, ErrorCode};

/// What a read turn decided for the connection.
enum Outcome {
    Open,
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer is gone or finished the closing handshake: drop the socket.
    Gone,
}

/// One place maps a failure to its close code (as ws-rs's result.rs does).
fn close_for(err: &Error) -> Outcome {
    use tungstenite::error::ProtocolError;
    match err {
        Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_) => Outcome::Gone,
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Outcome::Gone,
        Error::Capacity(_) => Outcome::Close(CloseCode::Size, "message too big"),
        Error::Utf8(_) => Outcome::Close(CloseCode::Invalid, "invalid UTF-8"),
        _ => Outcome::Close(CloseCode::Protocol, "protocol error"),
    }
}

impl Worker {
    pub(super) fn read_ws(&mut self, key: Key, now: Instant) {
        let cfg = std::sync::Arc::clone(&self.cfg);
        let metrics = &self.shared.metrics;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Ws(ws) = &mut conn.state else {
            return;
        };
        let mut outcome = Outcome::Open;
        let mut budget = READ_BUDGET;
        while matches!(outcome, Outcome::Open) {
            if budget == 0 {
                self.read_again.push(key);
                break;
            }
            budget -= 1;
            let mut io = QueueIo {
                socket: &mut conn.stream,
                queue: &mut conn.send,
            };
            match ws.ctx.read(&mut io) {
                Ok(msg) => {
                    ws.last_read = now;
                    outcome = on_message(
                        msg,
                        key,
                        ws,
                        &mut conn.send,
                        &mut self.subs,
                        &cfg,
                        metrics,
                        now,
                    );
                }
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => outcome = close_for(&e),
            }
        }
        let mut io = QueueIo {
            socket: &mut conn.stream,
            queue: &mut conn.send,
        };
        // Pongs and close replies tungstenite still holds.
        let _ = ws.ctx.flush(&mut io);
        let queued = !conn.send.is_empty();
        match outcome {
            Outcome::Open => {
                if queued {
                    self.mark_dirty(key);
                }
            }
            Outcome::Close(code, reason) => {
                metrics
                    .protocol_closes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.begin_close(key, Some((code, reason)), now);
            }
            Outcome::Gone if queued => self.begin_close(key, None, now),
            Outcome::Gone => self.remove(key),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_message(
    msg: Message,
    key: Key,
    ws: &mut WsConn,
    send: &mut SendQueue,
    subs: &mut Subscriptions,
    cfg: &Config,
    metrics: &Metrics,
    now: Instant,
) -> Outcome {
    let text = match msg {
        Message::Text(text) => text,
        Message::Binary(data) if ws.echo => {
            send.push_own(data_frame(data.to_vec(), Data::Binary));
            return Outcome::Open;
        }
        Message::Binary(_) => {
            return Outcome::Close(CloseCode::Unsupported, "binary frames are not supported");
        }
        // tungstenite answers pings and close frames itself.
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
            return Outcome::Open;
        }
    };
    if !ws.rate.allow(cfg.client_msg_rate, now) {
        // A second's worth of refused messages in a row is abuse, not a burst.
        if ws.rate.refused > cfg.client_msg_rate {
            return Outcome::Close(CloseCode::Policy, "message rate limit exceeded");
        }
        if ws.rate.refused == 1 {
            reply_error(
                send,
                metrics,
                ErrorCode::RateLimited,
                "over WS_CLIENT_MSG_RATE messages per second; slow down",
                None,
            );
        }
        return Outcome::Open;
    }
    if ws.echo {
        send.push_own(text_frame(text.as_bytes().to_vec()));
        return Outcome::Open;
    }
    match protocol::parse(&text) {
        Err(e) => reply_error(send, metrics, e.code, &e.message, e.id.as_deref()),
        Ok(ClientMessage::Ping { id }) => {
            send.push_own(text_frame(protocol::pong(id.as_deref()).into_bytes()))
        }
        Ok(ClientMessage::Subscribe { channels, id }) => {
            let mut ok: Vec<&str> = Vec::new();
            for ch in &channels {
                if let Err(e) = channel::validate_pattern(ch) {
                    let message = format!("invalid channel {ch:?}: {e}");
                    reply_error(
                        send,
                        metrics,
                        ErrorCode::InvalidChannel,
                        &message,
                        id.as_deref(),
                    );
                } else if ws.subscriptions.iter().any(|s| **s == **ch) {
                    ok.push(ch);
                } else if ws.subscriptions.len() >= cfg.max_subscriptions {
                    let message = format!(
                        "cannot subscribe to {ch:?}: limit of {} subscriptions reached",
                        cfg.max_subscriptions
                    );
                    reply_error(
                        send,
                        metrics,
                        ErrorCode::TooManySubscriptions,
                        &message,
                        id.as_deref(),
                    );
                } else {
                    ws.subscriptions.push(subs.add(ch, key));
                    ok.push(ch);
                }
            }
            // Subscriptions are few and long-lived: no growth slack per connection.
            ws.subscriptions.shrink_to_fit();
            if !ok.is_empty() {
                send.push_own(text_frame(
                    protocol::ack("subscribed", &ok, id.as_deref()).into_bytes(),
                ));
            }
        }
        Ok(ClientMessage::Unsubscribe { channels, id }) => {
            let mut ok: Vec<&str> = Vec::new();
            for ch in &channels {
                if let Err(e) = channel::validate_pattern(ch) {
                    let message = format!("invalid channel {ch:?}: {e}");
                    reply_error(
                        send,
                        metrics,
                        ErrorCode::InvalidChannel,
                        &message,
                        id.as_deref(),
                    );
                    continue;
                }
                if let Some(i) = ws.subscriptions.iter().position(|s| **s == **ch) {
                    subs.remove(ws.subscriptions.swap_remove(i), key);
                }
                ok.push(ch);
            }
            if !ok.is_empty() {
                send.push_own(text_frame(
                    protocol::ack("unsubscribed", &ok, id.as_deref()).into_bytes(),
                ));
            }
        }
    }
    Outcome::Open
}

fn reply_error(
    send: &mut SendQueue,
    metrics: &Metrics,
    code: ErrorCode,
    message: &str,
    id: Option<&serde_json::value::RawValue>,
) {
    metrics.client_error(code.as_str());
    send.push_own(text_frame(protocol::error(code, message, id).into_bytes()));
}
