//! The NATS intake thread: connects (retrying, reconnecting without limit),
//! takes messages from core NATS subscriptions or a durable JetStream pull
//! consumer, and feeds the broadcast ring within the configured rates: `connect`
//! holds the connection (`peer` names its server), `core` and `jetstream` the two
//! modes, `throttle` the pause and rate rules both obey, `pending` core NATS's
//! bounded queue. JetStream: `js_setup` makes the stream and the consumer,
//! `refill` fills history from the stream at start, `stream_read` answers resumes
//! and snapshots memory cannot, `seen` keeps delivery exactly once, `js_watch` and
//! `health` tell a stall, `jsapi` makes the API requests.
//!
//! The `nats` crate is the synchronous client the design asks for (no async
//! runtime); upstream marks it deprecated in favour of async-nats.
#![allow(deprecated)]

mod connect;
mod core;
mod health;
mod jetstream;
mod js_setup;
mod js_watch;
mod jsapi;
mod peer;
mod pending;
mod refill;
mod seen;
mod stream_read;
mod throttle;

use std::sync::Arc;

pub use health::{JetStreamHealth, JetStreamState};
pub use pending::{Incoming, Pending, Queued};
pub use stream_read::{Reply, Request, Resumed, StreamReads};
pub use throttle::effective_rate;

use crate::shared::Shared;

/// Starts the intake thread when NATS_URL is set; standalone otherwise.
pub fn start(shared: Arc<Shared>) -> Result<(), String> {
    if shared.config().nats_urls.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("nats-intake".into())
        .spawn(move || run(&shared))
        .map(|_| ())
        .map_err(|e| format!("cannot start the NATS intake thread: {e}"))
}

fn run(shared: &Arc<Shared>) {
    let conn = connect::connect(shared);
    let _ = shared.nats_conn.set(conn.clone());
    // /health turns `connected` once the subscriptions or the consumer are live.
    if shared.config().nats_jetstream {
        jetstream::run(shared, &conn);
    } else {
        core::run(shared, &conn);
    }
}
