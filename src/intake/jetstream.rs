//! JetStream: the stream over NATS_SUBJECTS is created when absent; a durable
//! pull consumer (JS_CONSUMER) fetches JS_BATCH at a time and each message is
//! acked once it is in the ring. Pausing simply stops fetching, so a pause, a
//! NATS restart or an odin-ws restart loses nothing.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use nats::jetstream::{
    AckPolicy, BatchOptions, ConsumerConfig, DeliverPolicy, JetStream, PullSubscribeOptions,
    PullSubscription, StorageType, StreamConfig,
};

use super::throttle::{Step, Throttle, effective_rate};
use crate::broadcast::MessageBody;
use crate::config::Config;
use crate::shared::{NatsState, Shared};

/// How long the server holds one pull request open.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// While paused or after a failed fetch.
const IDLE: Duration = Duration::from_millis(100);

pub fn run(shared: &Arc<Shared>, conn: &nats::Connection) {
    let js = nats::jetstream::new(conn.clone());
    let mut attempt = 0;
    let sub = loop {
        match setup(&js, &shared.config()) {
            Ok(sub) => break sub,
            Err(e) => {
                log::error!("JetStream setup failed: {e}; retrying");
                std::thread::sleep(super::connect::backoff(attempt));
                attempt += 1;
            }
        }
    };
    shared.set_nats_state(NatsState::Connected);
    consume(shared, &sub);
}

fn setup(js: &JetStream, cfg: &Config) -> io::Result<PullSubscription> {
    let (stream, consumer) = (&cfg.js_stream, &cfg.js_consumer);
    if js.stream_info(stream).is_err() {
        js.add_stream(StreamConfig {
            name: stream.clone(),
            subjects: cfg.nats_subjects.clone(),
            max_age: cfg.js_max_age,
            max_msgs: cfg.js_max_msgs,
            max_bytes: -1,
            max_msgs_per_subject: -1,
            max_consumers: -1,
            storage: StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })?;
        log::info!(
            "JetStream stream {stream} created over {}",
            cfg.nats_subjects.join(",")
        );
    }
    if js.consumer_info(stream, consumer).is_err() {
        js.add_consumer(
            stream,
            ConsumerConfig {
                durable_name: Some(consumer.clone()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: cfg.js_ack_wait,
                ..Default::default()
            },
        )?;
        log::info!("JetStream durable consumer {consumer} created on {stream}");
    }
    let options = PullSubscribeOptions::new()
        .bind_stream(stream.clone())
        .durable_name(consumer.clone());
    let sub = js.pull_subscribe_with_options(&cfg.nats_subjects[0], &options)?;
    log::info!("JetStream consuming {stream} through {consumer}");
    Ok(sub)
}

fn consume(shared: &Shared, sub: &PullSubscription) {
    let mut throttle = Throttle::new(effective_rate(&shared.config()), Instant::now());
    // Redeliveries (an ack lost to a disconnect) are acked again but not re-sent.
    let mut last_seq = 0;
    loop {
        let batch = match throttle.step(shared, shared.config().js_batch) {
            Step::Paused => {
                std::thread::sleep(IDLE);
                continue;
            }
            Step::Wait(wait) => {
                std::thread::sleep(wait.min(IDLE));
                continue;
            }
            Step::Take(batch) => batch,
        };
        let options = BatchOptions {
            batch,
            expires: Some(FETCH_EXPIRES.as_nanos() as usize),
            no_wait: false,
        };
        let messages = match sub.timeout_fetch(options, FETCH_EXPIRES + IDLE) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("JetStream fetch failed: {e}");
                std::thread::sleep(IDLE);
                continue;
            }
        };
        let taken = broadcast_batch(shared, messages, &mut last_seq);
        throttle.took(taken);
        if taken > 0 {
            shared.wake_workers();
        }
    }
}

/// Puts a fetched batch into the ring and acks each message; returns how many
/// arrived. `last_seq`: the highest stream sequence already broadcast.
fn broadcast_batch(
    shared: &Shared,
    messages: impl Iterator<Item = io::Result<nats::Message>>,
    last_seq: &mut u64,
) -> usize {
    let mut taken = 0;
    for msg in messages {
        // A timeout or an expired request ends this batch.
        let Ok(msg) = msg else { break };
        taken += 1;
        let received_at = Instant::now();
        let seq = msg.jetstream_message_info().map(|i| i.stream_seq);
        if seq.is_none_or(|s| s > *last_seq) {
            shared.metrics.messages_in_nats.fetch_add(1, Relaxed);
            let body = MessageBody::new(&msg.subject, &msg.data);
            shared.push_broadcast(&msg.subject, body, received_at, seq);
            *last_seq = seq.unwrap_or(*last_seq);
        }
        if let Err(e) = msg.ack() {
            log::warn!("JetStream ack of {} failed: {e}", seq.unwrap_or(0));
        }
    }
    taken
}
