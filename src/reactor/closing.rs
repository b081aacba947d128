//! A connection on its way out: our last bytes (an HTTP answer, a close frame)
//! are queued; once written, the write side is shut, and what the peer still
//! sends is read and dropped until it hangs up or the linger time passes, so the
//! close frame is not lost to a reset.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::conn::{Closing, Conn, State};
use super::effect::{Context, Effect, Effects};
use super::patterns::Pattern;
use super::send_queue::QueueIo;

/// Moves the connection to `Closing` until `until`, queueing a close frame with
/// `code` when it is a WebSocket. Returns the patterns it held, for the worker
/// to take out of its index; `None` when it was already closing.
pub fn begin<S: Read>(
    conn: &mut Conn<S>,
    code: Option<(CloseCode, &'static str)>,
    until: Instant,
) -> Option<Vec<Pattern>> {
    let held = match &mut conn.state {
        State::Closing(_) => return None,
        State::Http(_) => Vec::new(),
        // A stream just ends: there is no close frame in SSE.
        State::Sse(sse) => std::mem::take(&mut sse.subscriptions),
        State::Ws(ws) => {
            if let Some((code, reason)) = code {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let mut io = QueueIo {
                    socket: &mut conn.stream,
                    queue: &mut conn.send,
                };
                // Fails only when a close was already sent (the peer's close
                // answered by tungstenite), and then none is owed.
                let _ = ws.ctx.close(&mut io, Some(frame));
            }
            std::mem::take(&mut ws.subscriptions)
        }
    };
    // Replacing the state gives back a WebSocket's slot.
    conn.state = State::Closing(Closing {
        until,
        write_shut: false,
    });
    Some(held)
}

/// Where reading and dropping a peer's input stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Discarded {
    /// Nothing more to read for now.
    Empty,
    /// The peer hung up (or the socket failed): the connection is over.
    Gone,
    /// The read budget ran out with input still coming.
    More,
}

/// Reads and drops what the peer sends, `reads` reads at most.
pub fn discard_input<S: Read>(stream: &mut S, reads: usize) -> Discarded {
    let mut scratch = [0u8; 4096];
    let mut done = 0;
    while done < reads {
        match stream.read(&mut scratch) {
            Ok(0) => return Discarded::Gone,
            Ok(_) => done += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Discarded::Empty,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Discarded::Gone,
        }
    }
    Discarded::More
}

/// Reads and drops the peer's input; its EOF (or an error) ends the connection.
pub fn on_readable<S: Read>(conn: &mut Conn<S>, out: &mut Effects) {
    if discard_input(&mut conn.stream, usize::MAX) == Discarded::Gone {
        out.push(Effect::Remove);
    }
}

/// A peer that has not hung up by the end of the linger time is dropped.
pub fn on_timer<S>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    if let State::Closing(c) = &conn.state
        && ctx.now >= c.until
    {
        out.push(Effect::Remove);
    }
}

/// Called when everything queued is written: the first time, shuts the write
/// side (the peer reads EOF after our last bytes) and returns true, so the
/// worker reads what the peer sent meanwhile and discards it.
pub fn written(conn: &mut Conn<TcpStream>) -> bool {
    let State::Closing(c) = &mut conn.state else {
        return false;
    };
    if c.write_shut {
        return false;
    }
    c.write_shut = true;
    // Fails only when the peer is gone already, which the next read reports.
    let _ = conn.stream.shutdown(Shutdown::Write);
    true
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use super::*;
    use crate::reactor::patterns::Subscriptions;
    use crate::reactor::testing::{open_websocket, test_conn, test_context};

    #[test]
    fn a_closing_websocket_sends_its_close_and_gives_back_its_slot() {
        let ctx = test_context(&[]);
        let mut conn = open_websocket(&ctx);
        let mut index = Subscriptions::default();
        if let State::Ws(ws) = &mut conn.state {
            ws.subscriptions.push(index.add("a.*", 0));
        }
        let until = ctx.now + Duration::from_secs(5);
        let held = begin(&mut conn, Some((CloseCode::Again, "slow consumer")), until);
        assert_eq!(held.map(|h| h.len()), Some(1));
        let frames = conn.sent_messages();
        let close = format!("{:?}", frames.last().expect("a close frame"));
        assert!(
            close.contains("Again") && close.contains("slow consumer"),
            "{close}"
        );
        assert_eq!(ctx.shared.metrics.connections.load(Relaxed), 0);
        // The socket is still open: the drain waits for it.
        assert_eq!(ctx.shared.live_ws.load(Relaxed), 1);
        assert!(begin(&mut conn, None, until).is_none(), "closing twice");
        drop(conn);
        assert_eq!(ctx.shared.live_ws.load(Relaxed), 0);
    }

    #[test]
    fn input_is_dropped_until_the_peer_hangs_up_or_lingers_too_long() {
        let mut ctx = test_context(&[]);
        let mut conn = test_conn(&ctx, b"whatever".to_vec());
        let until = ctx.now + Duration::from_secs(5);
        begin(&mut conn, None, until);
        let mut out = Effects::new();
        on_readable(&mut conn, &mut out);
        on_timer(&mut conn, &ctx, &mut out);
        assert!(out.is_empty());
        conn.stream.hang_up();
        on_readable(&mut conn, &mut out);
        assert_eq!(out, [Effect::Remove]);
        out.clear();
        ctx.now = until;
        on_timer(&mut conn, &ctx, &mut out);
        assert_eq!(out, [Effect::Remove]);
    }
}
