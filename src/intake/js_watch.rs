//! Watches JetStream from its own thread, so the intake never waits on it: once a
//! second it asks for the stream's and the consumer's state, logs leader changes,
//! and says `stalled` (warn once, with the reason; the end at info) while the
//! stream or the consumer has no leader or does not answer, or while the consumer
//! has pending messages and no fetch has been answered for STALL_AFTER.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use nats::jetstream::ClusterInfo;

use super::jsapi;
use crate::config::Config;
use crate::shared::Shared;

/// How often the state is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Pending messages and no fetch answered for this long: stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(3);

/// What the intake tells the watcher, and the watcher the intake.
pub struct Progress {
    origin: Instant,
    /// Milliseconds after `origin` of the last fetch the server answered.
    answered_ms: AtomicU64,
    /// Publish time (server clock, Unix nanoseconds) of the stream's newest message.
    stream_last_ns: AtomicI64,
}

impl Progress {
    pub fn new(stream_last_ns: i64) -> Progress {
        Progress {
            origin: Instant::now(),
            answered_ms: AtomicU64::new(0),
            stream_last_ns: AtomicI64::new(stream_last_ns),
        }
    }

    /// A fetch delivered messages or was answered "nothing more".
    pub fn answered(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.answered_ms.store(ms, Relaxed);
    }

    fn since_answer(&self) -> Duration {
        let ms = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(ms.saturating_sub(self.answered_ms.load(Relaxed)))
    }

    pub fn stream_last_ns(&self) -> i64 {
        self.stream_last_ns.load(Relaxed)
    }
}

pub fn start(shared: Arc<Shared>, conn: nats::Connection, progress: Arc<Progress>) {
    let spawned = std::thread::Builder::new()
        .name("jetstream-watch".into())
        .spawn(move || watch(&shared, &conn, &progress));
    if let Err(e) = spawned {
        log::error!("cannot start the JetStream watch thread: {e}; /health cannot tell a stall");
    }
}

fn watch(shared: &Shared, conn: &nats::Connection, progress: &Progress) {
    let mut leaders = Leaders::default();
    let mut stalled_since: Option<Instant> = None;
    loop {
        let verdict = check(&shared.config(), conn, progress, &mut leaders);
        let m = &shared.metrics;
        match (verdict, stalled_since) {
            (Err(reason), None) => {
                log::warn!("JetStream stalled: {reason}");
                shared.jetstream.set_stalled(&reason);
                m.jetstream_stalls.fetch_add(1, Relaxed);
                m.jetstream_stalled.store(1, Relaxed);
                stalled_since = Some(Instant::now());
            }
            (Err(reason), Some(_)) => shared.jetstream.set_stalled(&reason),
            (Ok(()), Some(since)) => {
                log::info!(
                    "JetStream delivering again after {:.1}s stalled",
                    since.elapsed().as_secs_f64()
                );
                stalled_since = None;
                m.jetstream_stalled.store(0, Relaxed);
                shared.jetstream.set_ok();
            }
            (Ok(()), None) => shared.jetstream.set_ok(),
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

/// Ok, or why JetStream is not delivering.
fn check(
    cfg: &Config,
    conn: &nats::Connection,
    progress: &Progress,
    leaders: &mut Leaders,
) -> Result<(), String> {
    let (stream, consumer) = (&cfg.js_stream, &cfg.js_consumer);
    let info = jsapi::stream_info(conn, stream).map_err(|e| format!("stream {stream}: {e}"))?;
    progress
        .stream_last_ns
        .store(unix_ns(info.state.last_ts), Relaxed);
    leaders
        .stream
        .note(&format!("stream {stream}"), &info.cluster)?;
    let info = jsapi::consumer_info(conn, stream, consumer)
        .map_err(|e| format!("consumer {consumer}: {e}"))?;
    leaders
        .consumer
        .note(&format!("consumer {consumer}"), &info.cluster)?;
    let quiet = progress.since_answer();
    if quiet > STALL_AFTER && info.num_pending > 0 {
        return Err(format!(
            "{} messages pending on consumer {consumer}, no fetch answered for {:.0}s",
            info.num_pending,
            quiet.as_secs_f64()
        ));
    }
    Ok(())
}

/// Unix nanoseconds, clamped (an empty stream's last time is year 1).
pub fn unix_ns(t: nats::jetstream::DateTime) -> i64 {
    t.unix_timestamp_nanos()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[derive(Default)]
struct Leaders {
    stream: Leader,
    consumer: Leader,
}

/// The last leader seen of one RAFT group, to log its changes.
#[derive(Default)]
struct Leader(Option<String>);

impl Leader {
    /// Logs a new leader; Err when a cluster reports none.
    fn note(&mut self, what: &str, cluster: &ClusterInfo) -> Result<(), String> {
        match (&cluster.leader, &cluster.name) {
            (None, Some(name)) => Err(format!("{what} has no leader on cluster {name}")),
            (Some(now), _) if self.0.as_ref() != Some(now) => {
                match &self.0 {
                    Some(was) => log::info!("JetStream {what}: leader now {now} (was {was})"),
                    None => log::info!("JetStream {what}: leader {now}"),
                }
                self.0 = Some(now.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: Option<&str>, leader: Option<&str>) -> ClusterInfo {
        ClusterInfo {
            name: name.map(String::from),
            leader: leader.map(String::from),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn a_cluster_without_a_leader_is_a_stall_and_a_new_leader_is_remembered() {
        let mut leader = Leader::default();
        assert_eq!(leader.note("stream S", &cluster(None, Some("n1"))), Ok(()));
        assert_eq!(leader.0.as_deref(), Some("n1"));
        assert_eq!(
            leader.note("stream S", &cluster(Some("odin"), None)),
            Err("stream S has no leader on cluster odin".to_string())
        );
        assert_eq!(leader.0.as_deref(), Some("n1"), "kept to log the change");
        assert_eq!(
            leader.note("stream S", &cluster(Some("odin"), Some("n2"))),
            Ok(())
        );
        assert_eq!(leader.0.as_deref(), Some("n2"));
        // A single server reports neither a cluster nor, on old versions, a leader.
        assert_eq!(leader.note("stream S", &cluster(None, None)), Ok(()));
    }

    #[test]
    fn progress_counts_from_the_last_answer() {
        let progress = Progress::new(7);
        assert_eq!(progress.stream_last_ns(), 7);
        progress.answered();
        assert!(progress.since_answer() < STALL_AFTER);
    }
}
