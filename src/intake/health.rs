//! JetStream's state as /health and the metrics tell it, apart from the
//! connection's: `ok`, `stalled` (with the reason) or `disabled`, and the replicas
//! of the stream once it is known.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum JetStreamState {
    Disabled = 0,
    Ok = 1,
    Stalled = 2,
}

impl JetStreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            JetStreamState::Disabled => "disabled",
            JetStreamState::Ok => "ok",
            JetStreamState::Stalled => "stalled",
        }
    }
}

pub struct JetStreamHealth {
    state: AtomicU8,
    reason: Mutex<String>,
    /// The stream's replicas; 0 until the stream is known.
    replicas: AtomicU8,
}

impl JetStreamHealth {
    /// Stalled until the stream and the consumer are set up, when JetStream is on.
    pub fn new(enabled: bool) -> JetStreamHealth {
        let (state, reason) = if enabled {
            (JetStreamState::Stalled, "not set up yet")
        } else {
            (JetStreamState::Disabled, "")
        };
        JetStreamHealth {
            state: AtomicU8::new(state as u8),
            reason: Mutex::new(reason.to_string()),
            replicas: AtomicU8::new(0),
        }
    }

    pub fn state(&self) -> JetStreamState {
        match self.state.load(Relaxed) {
            1 => JetStreamState::Ok,
            2 => JetStreamState::Stalled,
            _ => JetStreamState::Disabled,
        }
    }

    /// Why it is stalled; empty otherwise.
    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_ok(&self) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.state.store(JetStreamState::Ok as u8, Relaxed);
    }

    pub fn set_stalled(&self, reason: &str) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.to_string();
        self.state.store(JetStreamState::Stalled as u8, Relaxed);
    }

    pub fn replicas(&self) -> Option<u8> {
        Some(self.replicas.load(Relaxed)).filter(|n| *n > 0)
    }

    pub fn set_replicas(&self, n: usize) {
        self.replicas.store(n.min(u8::MAX as usize) as u8, Relaxed);
    }
}
