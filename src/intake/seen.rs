//! The stream sequences already put into the ring, over a sliding window of the
//! last `WINDOW` sequences: a redelivery of one of them is acked and not re-sent,
//! while any other sequence (a first delivery that was lost and comes back after
//! JS_ACK_WAIT) goes through. One "highest sequence seen" would take the latter for
//! a duplicate and lose it.

/// Sequences remembered behind the highest one: a bitmap of 128 KiB. A redelivery
/// comes within JS_ACK_WAIT (30 s by default), so this covers ~35,000 msg/s.
pub const WINDOW: u64 = 1 << 20;

pub struct Seen {
    /// Bit `seq % WINDOW` set: `seq` is in the ring, for seq in (highest - WINDOW, highest].
    bits: Vec<u64>,
    /// The highest sequence put into the ring; 0 before the first.
    highest: u64,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            bits: vec![0; (WINDOW / 64) as usize],
            highest: 0,
        }
    }
}

impl Seen {
    /// Marks `seq` as put into the ring; false when it already was. A sequence
    /// older than the window cannot be told apart and counts as new: a rare
    /// duplicate beats a lost message.
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            self.clear_after_highest(seq);
            self.highest = seq;
        } else if self.highest - seq >= WINDOW {
            return true;
        }
        let (word, bit) = Seen::slot(seq);
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }

    /// The highest sequence put into the ring, once there is one.
    pub fn highest(&self) -> Option<u64> {
        (self.highest > 0).then_some(self.highest)
    }

    /// Whether `seq` is in the ring as far as the window remembers.
    pub fn contains(&self, seq: u64) -> bool {
        if seq > self.highest || self.highest - seq >= WINDOW {
            return false;
        }
        let (word, bit) = Seen::slot(seq);
        self.bits[word] & bit != 0
    }

    /// Forgets the bits of the sequences that were WINDOW behind, up to `seq`.
    fn clear_after_highest(&mut self, seq: u64) {
        if seq - self.highest >= WINDOW {
            self.bits.fill(0);
            return;
        }
        for s in self.highest + 1..=seq {
            let (word, bit) = Seen::slot(s);
            self.bits[word] &= !bit;
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_first_delivery_that_comes_back_goes_through() {
        let mut seen = Seen::default();
        // 1 was delivered but lost in flight; 2..5 arrived; then 1 is redelivered.
        for seq in 2..=5 {
            assert!(seen.insert(seq));
        }
        assert!(seen.insert(1), "a sequence never put into the ring is new");
        assert!(!seen.insert(1), "the second time it is a duplicate");
        assert!(!seen.insert(3));
        assert_eq!(seen.highest(), Some(5));
    }

    #[test]
    fn the_window_slides_and_forgets_what_falls_behind() {
        let mut seen = Seen::default();
        assert_eq!(seen.highest(), None);
        assert!(seen.insert(10));
        assert!(seen.insert(10 + WINDOW - 1));
        assert!(!seen.insert(10), "still inside the window");
        assert!(
            seen.insert(10 + WINDOW),
            "10's bit is reused by 10 + WINDOW"
        );
        assert!(!seen.contains(10));
        assert!(seen.insert(10), "older than the window: counted as new");
        // A jump of more than the window clears everything.
        assert!(seen.insert(5 * WINDOW));
        assert!(!seen.contains(10 + WINDOW));
        assert!(seen.contains(5 * WINDOW));
        assert!(seen.insert(5 * WINDOW - 1));
    }
}
