//! The contract between a connection's handlers and the worker: a handler is
//! given its one connection and a `Context`, queues its replies on the
//! connection, and lists in `Effects` what the worker must do with what it owns
//! (timers, flush lists, the subscription index, the socket's life).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use tungstenite::protocol::frame::coding::CloseCode;

use crate::config::Config;
use crate::shared::Shared;

/// What one connection asks of the worker, applied in order after the handler
/// returns.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Bytes were queued: flush the connection this turn.
    Flush,
    /// Run the timer handler for the connection at this moment.
    WakeAt(Instant),
    /// Input may be waiting beyond this turn's read budget: read again next turn.
    ReadAgain,
    /// Put the connection on this channel pattern (validated, not held yet).
    Subscribe(String),
    /// Take the connection off this pattern, which it holds.
    Unsubscribe(String),
    /// Send a WebSocket close frame with this code and reason, then close.
    Close(CloseCode, &'static str),
    /// Close once what is queued is written: an HTTP answer, or the end of a
    /// closing handshake the peer started.
    CloseAfterWrite,
    /// The peer is gone: drop the socket now.
    Remove,
    /// Queue this subscribe's stream read; its ack and catch-up wait for the reply.
    ReadStream(Box<super::catch_up::StreamAsk>),
    /// An upgrade was refused for this Origin header (`None`: it had none):
    /// warn, at a rate the log can bear.
    RefusedOrigin(Option<String>),
}

/// The worker's reusable list: empty when a handler starts.
pub type Effects = Vec<Effect>;

/// What a handler may read besides its connection.
pub struct Context {
    /// This turn's configuration (SIGHUP swaps it between turns).
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    /// When this turn started.
    pub now: Instant,
    /// The worker's next ring position to deliver: what comes before it went out
    /// (or was skipped) already, so a resume replays only positions before it and
    /// live delivery brings the rest.
    pub cursor: u64,
    /// The worker's index (stream reads answer to it).
    pub worker: usize,
    /// xorshift64 state for session ids.
    session_state: Cell<u64>,
}

impl Context {
    /// `seed` makes the session ids of each worker and process differ.
    pub fn new(shared: Arc<Shared>, seed: u64) -> Context {
        Context {
            cfg: shared.config(),
            shared,
            now: Instant::now(),
            cursor: 0,
            worker: 0,
            session_state: Cell::new(seed | 1),
        }
    }

    /// Unique enough to tell sessions apart in logs; not a secret.
    pub fn next_session_id(&self) -> String {
        let mut x = self.session_state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.session_state.set(x);
        format!("{x:016x}")
    }
}
