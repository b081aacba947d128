//! JetStream at start: the stream over NATS_SUBJECTS is created when absent with
//! JS_REPLICAS replicas (a stream that exists with fewer is a warning), and the
//! durable consumer is created to start at new messages, never a day of backlog;
//! a consumer that exists keeps its position, so a restart loses nothing.

use nats::jetstream::{PullSubscribeOptions, PullSubscription, StreamInfo};
use serde_json::json;

use super::jsapi::{self, ApiError};
use crate::config::Config;
use crate::shared::Shared;

/// JS_REPLICAS=auto asks for this many, and takes 1 when JetStream refuses it
/// (fewer than three JetStream servers up).
const AUTO_REPLICAS: usize = 3;

pub struct Ready {
    pub sub: PullSubscription,
    pub stream: StreamInfo,
    /// The consumer takes every subject of the stream, so a gap in its sequences
    /// is a loss (with a filter, other subjects' sequences are gaps too).
    pub fill_gaps: bool,
    /// The stream sequence up to which the consumer has every message acked: what
    /// came after it comes through the consumer, what came before is history
    /// (`refill`).
    pub ack_floor: u64,
    /// The first stream sequence history may promise when nothing is refilled.
    pub history_start: u64,
    /// The epoch clients resume in, announced once history is refilled.
    pub epoch: String,
}

/// `attempt`: how many setups failed before this one (JS_REPLICAS=auto waits a
/// few for a cluster that is still forming before it settles for one replica).
pub fn setup(shared: &Shared, conn: &nats::Connection, attempt: usize) -> Result<Ready, String> {
    let cfg = shared.config();
    let stream = ensure_stream(conn, &cfg, attempt)?;
    let replicas = stream.config.num_replicas;
    shared.jetstream.set_replicas(replicas);
    let (fill_gaps, ack_floor, history_start) = ensure_consumer(conn, &cfg, replicas)?;
    let (name, consumer) = (&cfg.js_stream, &cfg.js_consumer);
    let options = PullSubscribeOptions::new()
        .bind_stream(name.clone())
        .durable_name(consumer.clone());
    let sub = nats::jetstream::new(conn.clone())
        .pull_subscribe_with_options(&cfg.nats_subjects[0], &options)
        .map_err(|e| format!("binding to consumer {consumer}: {e}"))?;
    log::info!(
        "JetStream consuming {name} ({replicas} replica(s), leader {}) through {consumer}",
        stream.cluster.leader.as_deref().unwrap_or("unknown")
    );
    Ok(Ready {
        sub,
        epoch: epoch_of(&stream),
        stream,
        fill_gaps,
        ack_floor,
        history_start,
    })
}

/// JetStream's err_code for "replicas > 1 not supported in non-clustered mode".
const NOT_CLUSTERED: u16 = 10074;
/// Failed setups (backoff from 100 ms, doubling to 5 s: about 16 s in all)
/// before JS_REPLICAS=auto takes one replica on a refusal that is not NOT_CLUSTERED.
const AUTO_PATIENCE: usize = 8;

/// The epoch clients resume in: the stream's name and creation time, the same on
/// every instance and new when the stream is made anew (its sequences restart).
fn epoch_of(stream: &StreamInfo) -> String {
    format!(
        "{}-{:x}",
        stream.config.name,
        stream.created.unix_timestamp_nanos()
    )
}

fn ensure_stream(
    conn: &nats::Connection,
    cfg: &Config,
    attempt: usize,
) -> Result<StreamInfo, String> {
    match jsapi::stream_info(conn, &cfg.js_stream) {
        Ok(info) => {
            warn_about_replicas(cfg, &info);
            Ok(info)
        }
        Err(ApiError::NotFound) => create_stream(conn, cfg, attempt),
        Err(e) => Err(format!("stream {}: {e}", cfg.js_stream)),
    }
}

fn create_stream(
    conn: &nats::Connection,
    cfg: &Config,
    attempt: usize,
) -> Result<StreamInfo, String> {
    let name = &cfg.js_stream;
    let wanted = cfg.js_replicas.map_or(AUTO_REPLICAS, usize::from);
    let info = match jsapi::create_stream(conn, name, &stream_config(cfg, wanted)) {
        // A cluster still forming refuses replicas it will have in a moment
        // (insufficient resources): setup is tried again, a few times, before
        // auto settles for one. A single server says so at once.
        Err(ApiError::Refused {
            err_code,
            description,
            ..
        }) if cfg.js_replicas.is_none() && err_code != NOT_CLUSTERED && attempt < AUTO_PATIENCE => {
            return Err(format!(
                "JetStream refused {wanted} replicas for stream {name} ({description}); \
                 a cluster may still be forming (JS_REPLICAS=auto)"
            ));
        }
        Err(ApiError::Refused { description, .. }) if cfg.js_replicas.is_none() => {
            log::info!(
                "JetStream refused {wanted} replicas for stream {name} ({description}): \
                 fewer than three JetStream servers; creating it with 1 (JS_REPLICAS=auto)"
            );
            jsapi::create_stream(conn, name, &stream_config(cfg, 1))
        }
        other => other,
    }
    .map_err(|e| format!("creating stream {name}: {e}"))?;
    log::info!(
        "JetStream stream {name} created over {} with {} replica(s)",
        cfg.nats_subjects.join(","),
        info.config.num_replicas
    );
    Ok(info)
}

fn stream_config(cfg: &Config, replicas: usize) -> serde_json::Value {
    json!({
        "name": cfg.js_stream,
        "subjects": cfg.nats_subjects,
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": cfg.js_max_msgs,
        "max_bytes": -1,
        "max_age": cfg.js_max_age.as_nanos() as u64,
        "max_msgs_per_subject": -1,
        "discard": "old",
        "storage": "file",
        "num_replicas": replicas,
    })
}

/// An existing stream keeps its replicas: say so when it has fewer than asked
/// (auto asks for more than one on a cluster).
fn warn_about_replicas(cfg: &Config, info: &StreamInfo) {
    let (name, has) = (&cfg.js_stream, info.config.num_replicas);
    match (cfg.js_replicas, &info.cluster.name) {
        (Some(asked), _) if has < usize::from(asked) => log::warn!(
            "JetStream stream {name} exists with {has} replica(s), fewer than JS_REPLICAS={asked}: \
             odin-ws does not change an existing stream (nats stream edit {name} --replicas {asked})"
        ),
        (None, Some(cluster)) if has == 1 => log::warn!(
            "JetStream stream {name} exists with 1 replica on cluster {cluster}: it stops whenever \
             its one server does (nats stream edit {name} --replicas 3)"
        ),
        _ => {}
    }
}

/// Whether the consumer takes every subject of the stream, the stream sequence
/// up to which what the stream holds is history, not news (its ack floor), and
/// the first sequence history may promise without a refill.
fn ensure_consumer(
    conn: &nats::Connection,
    cfg: &Config,
    replicas: usize,
) -> Result<(bool, u64, u64), String> {
    let (stream, consumer) = (&cfg.js_stream, &cfg.js_consumer);
    match jsapi::consumer_info(conn, stream, consumer) {
        Ok(info) => {
            log::info!(
                "JetStream durable consumer {consumer} resumes after stream sequence {} ({} pending)",
                info.ack_floor.stream_seq,
                info.num_pending
            );
            let floor = info.ack_floor.stream_seq;
            // One that never acked anything: history only from what it delivers
            // next (what it delivered unacked comes again, after JS_ACK_WAIT).
            let start = match floor {
                0 => info.delivered.stream_seq + 1,
                floor => floor + 1,
            };
            Ok((info.config.filter_subject.is_empty(), floor, start))
        }
        Err(ApiError::NotFound) => {
            let config = json!({
                "durable_name": consumer,
                // Live data from now on; what came before is history, not news.
                "deliver_policy": "new",
                "ack_policy": "explicit",
                "ack_wait": cfg.js_ack_wait.as_nanos() as u64,
                "replay_policy": "instant",
                "num_replicas": replicas,
            });
            let info = jsapi::create_consumer(conn, stream, consumer, &config)
                .map_err(|e| format!("creating consumer {consumer}: {e}"))?;
            log::info!(
                "JetStream durable consumer {consumer} created on {stream}, starting at new messages"
            );
            // Starting at new messages: what the stream holds now is history (a
            // message stored meanwhile comes through the consumer as well).
            let last = jsapi::stream_info(conn, stream)
                .map_err(|e| format!("stream {stream} after creating {consumer}: {e}"))?
                .state
                .last_seq;
            let floor = last.max(info.ack_floor.stream_seq);
            Ok((true, floor, floor + 1))
        }
        Err(e) => Err(format!("consumer {consumer}: {e}")),
    }
}
