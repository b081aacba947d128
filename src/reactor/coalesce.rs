//! How long a worker holds a connection's broadcasts to share one write: zero while
//! the worker has headroom, growing while it is busy, never above WS_WRITE_DELAY.
//!
//! A write costs the kernel about the same whatever its size, so a busy worker
//! saves most of its CPU by gathering several broadcasts per write; an idle one
//! should not make anyone wait. The signal is the worker's own busy fraction (time
//! between poll returns and the next poll, over a window): it is what runs out when
//! the server is saturated, it is measured without a syscall, and it does not
//! depend on the machine's size. The hold doubles while the fraction is above
//! BUSY and halves while it is below IDLE; between the two it stays, so the worker
//! settles where the gathering it needs keeps it out of the busy band instead of
//! switching on and off.

use std::time::{Duration, Instant};

/// Busy fraction above which the hold grows.
pub const BUSY: f64 = 0.40;
/// Busy fraction below which the hold shrinks.
pub const IDLE: f64 = 0.20;
/// How often the hold is reconsidered.
pub const WINDOW: Duration = Duration::from_millis(100);
/// The first step up from zero, and the hold below which halving gives zero.
const MIN_HOLD: Duration = Duration::from_millis(2);
/// Enough halvings to take any hold (at most 1 s) to zero.
const MAX_STEPS: u128 = 10;

pub struct Coalescer {
    hold: Duration,
    window_start: Instant,
    busy: Duration,
}

impl Coalescer {
    pub fn new(now: Instant) -> Coalescer {
        Coalescer {
            hold: Duration::ZERO,
            window_start: now,
            busy: Duration::ZERO,
        }
    }

    /// The hold now: how long after a connection's last write its next broadcasts
    /// may wait.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Counts one turn's work (poll return to the end of the turn). At the end of a
    /// window, adjusts the hold within `max` (WS_WRITE_DELAY, reloadable): once per
    /// window that passed, so an idle worker that slept through several windows
    /// comes back with the hold it would have had.
    pub fn turn(&mut self, work: Duration, now: Instant, max: Duration) {
        self.busy += work;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            self.hold = self.hold.min(max);
            return;
        }
        let busy = self.busy.as_secs_f64() / elapsed.as_secs_f64();
        let windows = (elapsed.as_millis() / WINDOW.as_millis()).min(MAX_STEPS);
        for _ in 0..windows {
            self.hold = next_hold(self.hold, busy, max);
        }
        self.window_start = now;
        self.busy = Duration::ZERO;
    }
}

/// The rule, apart from the clock: double above BUSY, halve below IDLE, keep between.
pub fn next_hold(hold: Duration, busy: f64, max: Duration) -> Duration {
    let next = if busy > BUSY {
        (hold * 2).max(MIN_HOLD)
    } else if busy < IDLE {
        let half = hold / 2;
        if half < MIN_HOLD {
            Duration::ZERO
        } else {
            half
        }
    } else {
        hold
    };
    next.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(150);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idle_worker_never_holds() {
        assert_eq!(next_hold(Duration::ZERO, 0.05, MAX), Duration::ZERO);
        assert_eq!(next_hold(Duration::ZERO, IDLE, MAX), Duration::ZERO);
    }

    #[test]
    fn busy_worker_doubles_up_to_the_limit() {
        let mut hold = Duration::ZERO;
        let mut steps = Vec::new();
        for _ in 0..10 {
            hold = next_hold(hold, 0.9, MAX);
            steps.push(hold.as_millis());
        }
        assert_eq!(steps, [2, 4, 8, 16, 32, 64, 128, 150, 150, 150]);
    }

    #[test]
    fn the_band_between_keeps_the_hold() {
        assert_eq!(next_hold(40 * MS, 0.3, MAX), 40 * MS);
    }

    #[test]
    fn headroom_halves_down_to_zero() {
        assert_eq!(next_hold(40 * MS, 0.1, MAX), 20 * MS);
        assert_eq!(next_hold(3 * MS, 0.1, MAX), Duration::ZERO);
    }

    #[test]
    fn zero_limit_never_holds() {
        assert_eq!(
            next_hold(Duration::ZERO, 1.0, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_lowered_limit_applies_at_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(t0);
        c.turn(WINDOW, t0 + WINDOW, MAX);
        assert_eq!(c.hold(), 2 * MS);
        c.turn(Duration::ZERO, t0 + WINDOW + MS, Duration::ZERO);
        assert_eq!(c.hold(), Duration::ZERO);
    }

    #[test]
    fn a_worker_idle_for_a_second_comes_back_without_a_hold() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(t0);
        for i in 1..=8u32 {
            c.turn(WINDOW, t0 + WINDOW * i, MAX);
        }
        assert_eq!(c.hold(), MAX);
        c.turn(MS, t0 + WINDOW * 8 + Duration::from_secs(1), MAX);
        assert_eq!(c.hold(), Duration::ZERO);
    }

    #[test]
    fn windows_measure_the_busy_fraction() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(t0);
        // Half of each window busy: above BUSY, so the hold grows once a window.
        for i in 1..=3u32 {
            c.turn(WINDOW / 2, t0 + WINDOW * i, MAX);
        }
        assert_eq!(c.hold(), 8 * MS);
        // A tenth busy: below IDLE, it shrinks.
        c.turn(WINDOW / 10, t0 + WINDOW * 4, MAX);
        assert_eq!(c.hold(), 4 * MS);
    }
}
