//! The one throttle both intake modes obey: nothing while CPU is over
//! WS_CPU_PAUSE_THRESHOLD (each pause logged and counted), then at most the
//! effective rate per second in batches of at most `max`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::rate::TokenBucket;
use crate::shared::Shared;

/// Messages per second the intake may hand to the ring: the tighter of the two
/// limits, 0 when neither is set.
pub fn effective_rate(cfg: &Config) -> u32 {
    match (cfg.max_nats_rate, cfg.max_broadcast_rate) {
        (0, b) => b,
        (n, 0) => n,
        (n, b) => n.min(b),
    }
}

/// What the intake may do on this turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// CPU is over the pause threshold: take nothing.
    Paused,
    /// Over the rate: take nothing for this long.
    Wait(Duration),
    /// Take up to this many messages, then report how many with `took`.
    Take(usize),
}

/// A pause starting or ending on this turn.
#[derive(Debug, PartialEq, Eq)]
enum PauseChange {
    Began,
    Ended(Duration),
}

pub struct Throttle {
    bucket: TokenBucket,
    /// The rate of the last `Take` (0: unlimited), so `took` knows whether to count.
    rate: u32,
    /// The most the last `Take` allowed.
    granted: usize,
    paused_since: Option<Instant>,
}

impl Throttle {
    /// Starts with a full second's worth of tokens at `rate`.
    pub fn new(rate: u32, now: Instant) -> Throttle {
        Throttle {
            bucket: TokenBucket::full(rate, now),
            rate,
            granted: 0,
            paused_since: None,
        }
    }

    /// This turn's step under the monitor's pause flag and the configured rates.
    pub fn step(&mut self, shared: &Shared, max: usize) -> Step {
        let cfg = shared.config();
        let (paused, now) = (shared.intake_paused.load(Relaxed), Instant::now());
        let m = &shared.metrics;
        match self.track_pause(paused, now, m) {
            Some(PauseChange::Began) => log::warn!(
                "NATS intake paused: CPU {:.1}% of the limit >= WS_CPU_PAUSE_THRESHOLD {}%",
                m.cpu_percent(),
                cfg.cpu_pause_threshold
            ),
            Some(PauseChange::Ended(length)) => log::info!(
                "NATS intake resumed after a pause of {:.1}s",
                length.as_secs_f64()
            ),
            None => {}
        }
        if paused {
            return Step::Paused;
        }
        self.allowance(effective_rate(&cfg), max, now)
    }

    /// Takes the tokens of the `n` messages moved after a `Take` (at most what it allowed).
    pub fn took(&mut self, n: usize) {
        if self.rate > 0 {
            self.bucket.take(n.min(self.granted));
        }
    }

    /// The rate rule: everything up to `max` when unlimited, else the whole tokens there.
    fn allowance(&mut self, rate: u32, max: usize, now: Instant) -> Step {
        self.rate = rate;
        self.granted = if rate == 0 {
            max
        } else {
            self.bucket.available(rate, max, now)
        };
        match self.granted {
            0 => Step::Wait(self.bucket.wait(rate)),
            n => Step::Take(n),
        }
    }

    /// Follows the pause flag and keeps the pause metrics.
    fn track_pause(&mut self, paused: bool, now: Instant, m: &Metrics) -> Option<PauseChange> {
        match (self.paused_since, paused) {
            (None, true) => {
                m.intake_pauses.fetch_add(1, Relaxed);
                m.intake_paused.store(1, Relaxed);
                self.paused_since = Some(now);
                Some(PauseChange::Began)
            }
            (Some(since), false) => {
                let length = now.saturating_duration_since(since);
                m.intake_paused_ms
                    .fetch_add(length.as_millis() as u64, Relaxed);
                m.intake_paused.store(0, Relaxed);
                self.paused_since = None;
                Some(PauseChange::Ended(length))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn shared_with(vars: &[(&str, &str)]) -> Shared {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::from_sources(&[], &env.collect()).expect("a valid config");
        Shared::new(config, Vec::new(), "test".into())
    }

    #[test]
    fn step_follows_the_pause_flag_and_the_tighter_rate() {
        let shared = shared_with(&[("WS_MAX_NATS_RATE", "1"), ("WS_MAX_BROADCAST_RATE", "5")]);
        let mut throttle = Throttle::new(effective_rate(&shared.config()), Instant::now());
        shared.intake_paused.store(true, Relaxed);
        assert_eq!(throttle.step(&shared, 100), Step::Paused);
        assert_eq!(shared.metrics.intake_paused.load(Relaxed), 1);
        shared.intake_paused.store(false, Relaxed);
        assert_eq!(throttle.step(&shared, 100), Step::Take(1));
        assert_eq!(shared.metrics.intake_paused.load(Relaxed), 0);
        throttle.took(1);
        // The next token is a second away at the tighter rate of 1/s.
        assert!(matches!(throttle.step(&shared, 100), Step::Wait(_)));
    }

    #[test]
    fn unlimited_takes_the_whole_batch_and_counts_no_tokens() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(0, t0);
        for _ in 0..3 {
            assert_eq!(throttle.allowance(0, 256, t0), Step::Take(256));
            throttle.took(256);
        }
        // Once a rate is set, the bucket holds its second's worth, owing nothing.
        let later = t0 + 1000 * MS;
        assert_eq!(throttle.allowance(10, 256, later), Step::Take(10));
    }

    #[test]
    fn rate_allows_a_second_of_burst_then_waits_for_tokens() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(10, t0);
        assert_eq!(throttle.allowance(10, 4, t0), Step::Take(4));
        throttle.took(4);
        assert_eq!(throttle.allowance(10, 256, t0), Step::Take(6));
        // Reporting more than was allowed takes only what was allowed.
        throttle.took(50);
        assert_eq!(throttle.allowance(10, 256, t0), Step::Wait(100 * MS));
        assert_eq!(throttle.allowance(10, 256, t0 + 100 * MS), Step::Take(1));
        throttle.took(1);
        assert_eq!(
            throttle.allowance(10, 256, t0 + 10_000 * MS),
            Step::Take(10),
            "tokens never pile up beyond one second's worth"
        );
    }

    #[test]
    fn a_pause_is_counted_once_and_its_length_kept_on_resume() {
        let (t0, m) = (Instant::now(), Metrics::default());
        let mut throttle = Throttle::new(0, t0);
        assert_eq!(throttle.track_pause(false, t0, &m), None);
        assert_eq!(throttle.track_pause(true, t0, &m), Some(PauseChange::Began));
        assert_eq!(throttle.track_pause(true, t0 + 700 * MS, &m), None);
        assert_eq!(m.intake_paused.load(Relaxed), 1);
        assert_eq!(m.intake_pauses.load(Relaxed), 1);
        assert_eq!(
            throttle.track_pause(false, t0 + 1500 * MS, &m),
            Some(PauseChange::Ended(1500 * MS))
        );
        assert_eq!(m.intake_paused.load(Relaxed), 0);
        assert_eq!(m.intake_paused_ms.load(Relaxed), 1500);
        // A second pause adds to the total.
        throttle.track_pause(true, t0 + 2000 * MS, &m);
        throttle.track_pause(false, t0 + 2250 * MS, &m);
        assert_eq!(m.intake_pauses.load(Relaxed), 2);
        assert_eq!(m.intake_paused_ms.load(Relaxed), 1750);
    }
}
