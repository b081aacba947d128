//! The mio reactor: an acceptor thread and a fixed pool of worker threads. A
//! worker owns its connections and applies what their handlers decide: each
//! handler (http_conn, ws_conn, closing) is a function of one connection and a
//! `Context`, returning `Effect`s.

mod acceptor;
mod accounting;
mod catch_up;
mod closing;
mod coalesce;
mod conn;
mod dead_reader;
mod delivery;
mod effect;
mod http_conn;
mod log_throttle;
mod patterns;
mod send_queue;
mod slab;
mod sse_conn;
#[cfg(test)]
mod testing;
mod token;
mod worker;
mod ws_conn;

pub use acceptor::{Acceptor, bind};
pub use send_queue::{Pushed, SendQueue};
pub use worker::{WAKE_TOKEN, Worker};
