//! Connecting to NATS: credentials, unlimited reconnects with backoff, and
//! callbacks that keep /health and the metrics true and name the server (host:port).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::peer;
use crate::shared::{NatsState, Shared};

/// Reconnect backoff: 100 ms doubling to this cap, plus jitter.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Publishes buffered while disconnected (POST /publish in NATS mode).
const RECONNECT_BUFFER: usize = 8 << 20;

pub fn backoff(attempt: usize) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(6) as u32);
    let jitter = Duration::from_millis(u64::from(std::process::id() % 7 + clock_jitter()) * 10);
    base.min(MAX_BACKOFF) + jitter
}

fn clock_jitter() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 10)
        .unwrap_or(0)
}

/// The server the connection is on, for the logs ("unknown" until found).
type Current = Arc<Mutex<Option<SocketAddr>>>;

fn options(shared: &Arc<Shared>, current: &Current) -> nats::Options {
    let cfg = shared.config();
    let opts = if let Some(path) = &cfg.nats_creds_file {
        nats::Options::with_credentials(path)
    } else if let Some(token) = &cfg.nats_token {
        nats::Options::with_token(token)
    } else if let (Some(user), Some(password)) = (&cfg.nats_user, &cfg.nats_password) {
        nats::Options::with_user_pass(user, password)
    } else {
        nats::Options::new()
    };
    let (on_disconnect, on_reconnect, on_lame_duck) =
        (Arc::clone(shared), Arc::clone(shared), Arc::clone(shared));
    let (lost, found, ducking) = (
        Arc::clone(current),
        Arc::clone(current),
        Arc::clone(current),
    );
    let ports = peer::ports(&cfg.nats_urls);
    opts.with_name(&format!("odin-ws {}", shared.instance))
        .retry_on_failed_connect()
        .max_reconnects(None)
        .reconnect_buffer_size(RECONNECT_BUFFER)
        .reconnect_delay_callback(backoff)
        .disconnect_callback(move || {
            log::warn!("NATS disconnected from {}; reconnecting", shown(&lost));
            on_disconnect.metrics.nats_disconnects.fetch_add(1, Relaxed);
            on_disconnect.set_nats_state(NatsState::Reconnecting);
        })
        .reconnect_callback(move || {
            let was = shown(&found);
            *found.lock().unwrap_or_else(|e| e.into_inner()) = peer::connected_server(&ports);
            log::info!("NATS reconnected to {} (was {was})", shown(&found));
            on_reconnect.metrics.nats_reconnects.fetch_add(1, Relaxed);
            on_reconnect.set_nats_state(NatsState::Connected);
            if !on_reconnect.config().nats_jetstream {
                // Core NATS does not replay: whatever was published meanwhile is gone.
                on_reconnect.metrics.nats_gap_events.fetch_add(1, Relaxed);
                log::warn!(
                    "core NATS: subscribed clients may have missed messages published while disconnected"
                );
            }
        })
        .lame_duck_callback(move || {
            log::warn!(
                "NATS server {} entered lame-duck mode; it will close this connection soon",
                shown(&ducking)
            );
            on_lame_duck.metrics.nats_lame_duck.fetch_add(1, Relaxed);
        })
        .error_callback(|e| log::warn!("NATS error: {e}"))
}

fn shown(current: &Current) -> String {
    match *current.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(addr) => addr.to_string(),
        None => "an unknown server".to_string(),
    }
}

/// Blocks until connected; the server serves clients meanwhile (nats: reconnecting).
pub fn connect(shared: &Arc<Shared>) -> nats::Connection {
    let mut attempt = 0;
    let current = Current::default();
    loop {
        // Host names to addresses without libc's resolver (the static build);
        // a name it cannot resolve is left for the nats crate (libc).
        let servers = crate::resolve::nats_urls(&shared.config().nats_urls);
        match options(shared, &current).connect(servers.url_list().as_str()) {
            Ok(conn) => {
                let ports = peer::ports(&shared.config().nats_urls);
                *current.lock().unwrap_or_else(|e| e.into_inner()) = peer::connected_server(&ports);
                log::info!("NATS connected to {} (servers: {servers})", shown(&current));
                return conn;
            }
            Err(e) => {
                // An unparsable URL ends up here; keep trying
                // so a NATS fixed later is picked up without a restart.
                log::error!("NATS connect to {servers} failed: {e}");
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
        }
    }
}
