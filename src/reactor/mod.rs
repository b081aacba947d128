//! The mio reactor: an acceptor thread and a fixed pool of worker threads.

mod acceptor;
mod accounting;
mod conn;
mod http_conn;
mod patterns;
mod send_queue;
mod slab;
#[cfg(test)]
mod testing;
mod worker;
mod ws_conn;

pub use acceptor::{Acceptor, bind};
pub use send_queue::{Pushed, SendQueue};
pub use worker::{WAKE_TOKEN, Worker};
