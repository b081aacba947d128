//! POST /publish in NATS mode: workers put messages into a queue bounded by count
//! and bytes, and one publisher thread hands them to the blocking NATS client, so
//! a slow or stalled NATS server never stalls a reactor thread.
#![allow(deprecated)] // the sync nats client, by design

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};

use crate::metrics::{Metrics, PublishLoss};
use crate::shared::Shared;

/// Messages and bytes waiting for NATS before POST /publish answers 503.
pub const MAX_MESSAGES: usize = 1024;
pub const MAX_BYTES: usize = 8 << 20;

struct Publish {
    channel: String,
    data: Box<str>,
}

impl Publish {
    fn bytes(&self) -> usize {
        self.channel.len() + self.data.len()
    }
}

#[derive(Default)]
struct Held {
    items: VecDeque<Publish>,
    bytes: usize,
}

pub struct PublishQueue {
    held: Mutex<Held>,
    ready: Condvar,
    max_messages: usize,
    max_bytes: usize,
}

impl PublishQueue {
    pub fn new(max_messages: usize, max_bytes: usize) -> PublishQueue {
        PublishQueue {
            held: Mutex::new(Held::default()),
            ready: Condvar::new(),
            max_messages,
            max_bytes,
        }
    }

    /// Queues a message; false when the queue is full (by count or bytes).
    pub fn offer(&self, metrics: &Metrics, channel: &str, data: &str) -> bool {
        let publish = Publish {
            channel: channel.to_string(),
            data: data.into(),
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.items.len() >= self.max_messages || held.bytes + publish.bytes() > self.max_bytes {
            return false;
        }
        held.bytes += publish.bytes();
        held.items.push_back(publish);
        show(metrics, &held);
        drop(held);
        self.ready.notify_one();
        true
    }

    /// Waits for the next message.
    fn take(&self, metrics: &Metrics) -> Publish {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(publish) = held.items.pop_front() {
                held.bytes -= publish.bytes();
                show(metrics, &held);
                return publish;
            }
            held = self.ready.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn show(metrics: &Metrics, held: &Held) {
    metrics
        .publish_queue
        .store(held.items.len() as u64, Relaxed);
    metrics
        .publish_queue_bytes
        .store(held.bytes as u64, Relaxed);
}

/// Starts the publisher thread when NATS_URL is set; standalone publishes go
/// straight into the ring and need none.
pub fn start(shared: Arc<Shared>) -> Result<(), String> {
    if shared.config().nats_urls.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("nats-publish".into())
        .spawn(move || run(&shared))
        .map(|_| ())
        .map_err(|e| format!("cannot start the NATS publisher thread: {e}"))
}

fn run(shared: &Shared) {
    loop {
        let publish = shared.publish_queue.take(&shared.metrics);
        // Queued only once the connection exists (POST /publish checks).
        let Some(conn) = shared.nats_conn.get() else {
            shared.metrics.publish_lost(PublishLoss::Failed);
            continue;
        };
        if let Err(e) = conn.publish(&publish.channel, publish.data.as_bytes()) {
            shared.metrics.publish_lost(PublishLoss::Failed);
            log::warn!("NATS publish to {} failed: {e}", publish.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_bytes() {
        let m = Metrics::default();
        let q = PublishQueue::new(3, 100);
        assert!(q.offer(&m, "a", "1"));
        assert!(q.offer(&m, "a", &"x".repeat(90)));
        assert!(!q.offer(&m, "a", &"x".repeat(10)), "bytes");
        assert!(q.offer(&m, "a", "2"));
        assert!(!q.offer(&m, "a", "3"), "count");
        assert_eq!(m.publish_queue.load(Relaxed), 3);
        assert_eq!(&*q.take(&m).data, "1");
        assert_eq!(m.publish_queue_bytes.load(Relaxed), 93);
        assert!(q.offer(&m, "a", "3"));
    }
}
