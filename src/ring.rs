//! The bounded broadcast ring: producers (the NATS intake thread, HTTP publish)
//! append, every worker reads from its own cursor. A worker that falls more than
//! the capacity behind skips ahead and counts the overrun; producers never wait
//! for readers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::broadcast::Broadcast;

pub struct Ring {
    inner: RwLock<Slots>,
    /// Position of the next broadcast; lets workers check for news without the lock.
    head: AtomicU64,
    mask: u64,
}

struct Slots {
    slots: Vec<Option<Arc<Broadcast>>>,
    next: u64,
}

impl Ring {
    /// `capacity` is rounded up to a power of two so positions map to slots by mask.
    pub fn new(capacity: usize) -> Ring {
        let capacity = capacity.max(2).next_power_of_two();
        Ring {
            inner: RwLock::new(Slots {
                slots: vec![None; capacity],
                next: 0,
            }),
            head: AtomicU64::new(0),
            mask: capacity as u64 - 1,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Position the next broadcast will get.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Appends the broadcast `make` builds from its ring position. `make` runs under
    /// the write lock, and formats the frame there, because the frame carries `seq`
    /// and `seq` is the position + 1 outside JetStream: a position is handed out,
    /// filled and published (`head`) in one step, so `seq` follows ring order and
    /// no reader sees a position before its slot holds it. Formatting first would
    /// need positions reserved ahead and published in order once filled. The lock
    /// covers one format and copy of the message: `MessageBody::new` has checked and
    /// escaped the payload before it.
    pub fn push_with(&self, make: impl FnOnce(u64) -> Broadcast) -> u64 {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let pos = inner.next;
        let slot = (pos & self.mask) as usize;
        inner.slots[slot] = Some(Arc::new(make(pos)));
        inner.next = pos + 1;
        self.head.store(pos + 1, Ordering::Release);
        pos
    }

    /// Copies up to `max` broadcasts from `*cursor` into `out` and advances the
    /// cursor. Returns how many were skipped because the reader fell too far behind.
    pub fn read_from(&self, cursor: &mut u64, max: usize, out: &mut Vec<Arc<Broadcast>>) -> u64 {
        if *cursor >= self.head() {
            return 0;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut overrun = 0;
        let oldest = inner.next.saturating_sub(self.capacity());
        if *cursor < oldest {
            overrun = oldest - *cursor;
            *cursor = oldest;
        }
        let end = inner.next.min(*cursor + max as u64);
        for pos in *cursor..end {
            if let Some(b) = &inner.slots[(pos & self.mask) as usize] {
                out.push(Arc::clone(b));
            }
        }
        *cursor = end;
        overrun
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::MessageBody;
    use std::time::Instant;

    fn push(ring: &Ring, n: usize) {
        for _ in 0..n {
            ring.push_with(|pos| {
                Broadcast::new(
                    pos,
                    pos + 1,
                    "a",
                    MessageBody::new("a", b"1"),
                    Instant::now(),
                )
            });
        }
    }

    #[test]
    fn reader_sees_everything_in_order() {
        let ring = Ring::new(8);
        push(&ring, 5);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, 3, &mut out), 0);
        assert_eq!(ring.read_from(&mut cursor, 10, &mut out), 0);
        let seqs: Vec<u64> = out.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(cursor, 5);
    }

    /// Producers racing (the intake thread and HTTP publishes on the workers) still
    /// give every broadcast the seq of its position, and a frame that says so.
    #[test]
    fn concurrent_producers_get_seq_in_ring_order() {
        let (producers, each) = (4, 500);
        let ring = Ring::new(producers * each);
        std::thread::scope(|scope| {
            for _ in 0..producers {
                scope.spawn(|| push(&ring, each));
            }
        });
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, producers * each, &mut out), 0);
        assert_eq!(out.len(), producers * each);
        for (i, b) in out.iter().enumerate() {
            assert_eq!((b.pos, b.seq), (i as u64, i as u64 + 1));
            let text = String::from_utf8_lossy(&b.frame);
            assert!(text.contains(&format!("\"seq\":{},", b.seq)), "{text}");
        }
    }

    #[test]
    fn slow_reader_skips_ahead_and_counts() {
        let ring = Ring::new(4);
        push(&ring, 10);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, 100, &mut out), 6);
        let seqs: Vec<u64> = out.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
    }
}
