//! Keeps a repeated warning (a refused Origin, say) from flooding the log: at
//! most one line per interval, and that line counts the ones held back.

use std::time::{Duration, Instant};

pub struct LogThrottle {
    interval: Duration,
    /// When the next line may be written; `None` before the first.
    next_line: Option<Instant>,
    /// Events since the last line that got none.
    held_back: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            next_line: None,
            held_back: 0,
        }
    }

    /// Records one event. `Some(n)`: write a line for it now, saying that `n`
    /// more happened since the last line; `None`: stay quiet, it is counted.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        if self.next_line.is_some_and(|next| now < next) {
            self.held_back += 1;
            return None;
        }
        self.next_line = Some(now + self.interval);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.note(t0), Some(0));
        assert_eq!(throttle.note(t0 + Duration::from_millis(10)), None);
        assert_eq!(throttle.note(t0 + Duration::from_millis(999)), None);
        assert_eq!(throttle.note(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(throttle.note(t0 + Duration::from_secs(5)), Some(0));
    }
}
