//! Helpers for the reactor's unit tests: a real `Shared` built from a real
//! `Config`, with one worker handle, and no sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mio::{Poll, Waker};

use super::WAKE_TOKEN;
use crate::config::Config;
use crate::shared::{Shared, WorkerHandle};

/// A configuration from the defaults plus `env` (name, value) pairs.
pub fn test_config(env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(&[], &env).expect("a valid test configuration")
}

/// Shared state for one worker (worker 0) with `env` applied to the defaults.
pub fn test_shared(env: &[(&str, &str)]) -> Arc<Shared> {
    let poll = Poll::new().expect("an epoll instance");
    let handle = WorkerHandle {
        waker: Waker::new(poll.registry(), WAKE_TOKEN).expect("an eventfd"),
        inbox: Mutex::new(Vec::new()),
        load: Default::default(),
        queued_bytes: Default::default(),
        ring_lag: Default::default(),
    };
    Arc::new(Shared::new(test_config(env), vec![handle], "test".into()))
}
