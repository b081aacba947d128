//! A token bucket holding one second's worth of tokens: the client message
//! limit and the NATS intake rates both use it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(per_second: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: per_second as f64,
            last: now,
        }
    }

    fn refill(&mut self, per_second: u32, now: Instant) {
        let rate = per_second as f64;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
        self.last = now;
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, per_second: u32, now: Instant) -> bool {
        self.refill(per_second, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whole tokens available now (at most `max`), without taking them.
    pub fn available(&mut self, per_second: u32, max: usize, now: Instant) -> usize {
        self.refill(per_second, now);
        (self.tokens as usize).min(max)
    }

    /// Takes `n` tokens that `available` reported.
    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// How long until the next token.
    pub fn wait(&self, per_second: u32) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / (per_second.max(1) as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_of_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(5, t0);
        assert!((0..5).all(|_| b.try_take(5, t0)));
        assert!(!b.try_take(5, t0));
        assert_eq!(b.wait(5), Duration::from_millis(200));
        assert!(b.try_take(5, t0 + Duration::from_millis(200)));
        assert_eq!(b.available(5, 100, t0 + Duration::from_secs(10)), 5);
    }
}
