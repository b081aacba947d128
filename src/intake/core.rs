//! Core NATS: subscription handlers put messages into the bounded `Pending`
//! queue; this thread moves them into the ring within the rate and while CPU
//! allows. While paused or over the rate, each channel keeps only its newest
//! message (conflation), so nothing queues without bound.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::pending::{Incoming, Pending, Queued};
use super::throttle::{Step, Throttle, effective_rate};
use crate::metrics::Refusal;
use crate::shared::{NatsState, Shared};

/// Messages held while intake cannot keep up: count and payload bytes.
const MAX_PENDING: usize = 65_536;
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Messages moved to the ring between wake-ups of the workers.
const BATCH: usize = 256;
/// How often a waiting intake re-checks the pause flag and the rate.
const RECHECK: Duration = Duration::from_millis(100);

struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

pub fn run(shared: &Arc<Shared>, conn: &nats::Connection) {
    let queue = Arc::new(Queue {
        pending: Mutex::new(Pending::new(MAX_PENDING, MAX_PENDING_BYTES)),
        ready: Condvar::new(),
    });
    let mut handlers = Vec::new();
    for subject in shared.config().nats_subjects.iter() {
        let (queue, shared) = (Arc::clone(&queue), Arc::clone(shared));
        loop {
            match conn.subscribe(subject) {
                Ok(sub) => {
                    handlers.push(sub.with_handler(move |msg| {
                        on_message(&shared, &queue, msg);
                        Ok(())
                    }));
                    log::info!("NATS subscribed to {subject}");
                    break;
                }
                Err(e) => {
                    log::error!("NATS subscribe to {subject} failed: {e}; retrying");
                    std::thread::sleep(super::connect::backoff(3));
                }
            }
        }
    }
    // One round trip so the server has our subscriptions before we say connected.
    if let Err(e) = conn.flush() {
        log::warn!("NATS flush after subscribing failed: {e}");
    }
    shared.set_nats_state(NatsState::Connected);
    drain(shared, &queue);
}

/// Runs on the nats crate's handler thread: never blocks beyond the queue lock.
fn on_message(shared: &Shared, queue: &Queue, msg: nats::Message) {
    let incoming = Incoming {
        subject: msg.subject,
        payload: msg.data,
        received_at: Instant::now(),
    };
    let (m, cfg) = (&shared.metrics, shared.config());
    m.messages_in_nats.fetch_add(1, Relaxed);
    // Cheap early refusal (the frame is never shorter than the payload), so an
    // oversized message takes no room in the queue; `drain` checks the frame.
    if incoming.payload.len() > cfg.max_broadcast_size {
        shared.refuse_broadcast(Refusal::TooLarge, &incoming.subject, incoming.payload.len());
        return;
    }
    let (subject, len) = (incoming.subject.clone(), incoming.payload.len());
    let rate_limited = effective_rate(&cfg) > 0;
    let mut pending = queue.pending.lock().unwrap_or_else(|e| e.into_inner());
    let conflate = shared.intake_paused.load(Relaxed) || (rate_limited && !pending.is_empty());
    let queued = pending.push(incoming, conflate);
    match queued {
        Queued::Conflated => {
            m.intake_conflated.fetch_add(1, Relaxed);
        }
        Queued::DroppedChannels | Queued::DroppedBytes => {
            m.intake_dropped.fetch_add(1, Relaxed);
        }
        Queued::Fifo | Queued::Latest => {}
    }
    m.intake_queue.store(pending.len() as u64, Relaxed);
    m.intake_queue_bytes.store(pending.bytes() as u64, Relaxed);
    drop(pending);
    match queued {
        Queued::DroppedChannels => shared.refuse_broadcast(Refusal::IntakeChannels, &subject, len),
        Queued::DroppedBytes => shared.refuse_broadcast(Refusal::IntakeBytes, &subject, len),
        _ => {}
    }
    queue.ready.notify_one();
}

fn drain(shared: &Shared, queue: &Queue) {
    let mut throttle = Throttle::new(effective_rate(&shared.config()), Instant::now());
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let step = throttle.step(shared, BATCH);
        let mut pending = queue.pending.lock().unwrap_or_else(|e| e.into_inner());
        let allowed = match step {
            // Paused, or nothing to move: wait for a message or the next look.
            Step::Paused => 0,
            _ if pending.is_empty() => 0,
            Step::Wait(wait) => {
                drop(pending);
                std::thread::sleep(wait.min(RECHECK));
                continue;
            }
            Step::Take(allowed) => allowed,
        };
        if allowed == 0 {
            let _ = queue.ready.wait_timeout(pending, RECHECK);
            continue;
        }
        batch.extend(std::iter::from_fn(|| pending.pop()).take(allowed));
        let m = &shared.metrics;
        m.intake_queue.store(pending.len() as u64, Relaxed);
        m.intake_queue_bytes.store(pending.bytes() as u64, Relaxed);
        drop(pending);
        throttle.took(batch.len());
        for msg in batch.drain(..) {
            if let Some(body) = shared.admit_broadcast(&msg.subject, &msg.payload) {
                shared.push_broadcast(&msg.subject, body, msg.received_at, None);
            }
        }
        shared.wake_workers();
    }
}
