//! The bounded broadcast ring: producers (the NATS intake thread, HTTP publish)
//! append, every worker reads from its own cursor. Bounded by slots and by bytes:
//! past either, the oldest broadcasts are released, and a worker that had not read
//! them skips ahead and counts the overrun; producers never wait for readers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::broadcast::Broadcast;

pub struct Ring {
    inner: RwLock<Slots>,
    /// Position of the next broadcast; lets workers check for news without the lock.
    head: AtomicU64,
    mask: u64,
    max_bytes: usize,
}

struct Slots {
    slots: Vec<Option<Arc<Broadcast>>>,
    next: u64,
    /// The oldest position still held: `next - capacity` or later, when the byte
    /// bound released slots early.
    oldest: u64,
    /// `held_bytes` of the broadcasts in `oldest..next`.
    bytes: usize,
}

/// What one push did to the ring's bounds, for the metrics.
#[derive(Debug, Clone)]
pub struct Appended {
    pub pos: u64,
    /// The broadcast as the ring holds it, for history to keep by reference.
    pub broadcast: Arc<Broadcast>,
    /// Broadcasts released before their slot came round, for the byte bound.
    pub released: u64,
    /// Bytes held after the push.
    pub bytes: usize,
}

impl Ring {
    /// `capacity` is rounded up to a power of two so positions map to slots by mask;
    /// `max_bytes` bounds the broadcasts held (the newest one is always kept).
    pub fn new(capacity: usize, max_bytes: usize) -> Ring {
        let capacity = capacity.max(2).next_power_of_two();
        Ring {
            inner: RwLock::new(Slots {
                slots: vec![None; capacity],
                next: 0,
                oldest: 0,
                bytes: 0,
            }),
            head: AtomicU64::new(0),
            mask: capacity as u64 - 1,
            max_bytes,
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
    /// Releasing memory for the byte bound happens here too, so readers only ever
    /// read `oldest` under the read lock they already take.
    pub fn push_with(&self, make: impl FnOnce(u64) -> Broadcast) -> Appended {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let pos = inner.next;
        if pos - inner.oldest == self.capacity() {
            inner.release_oldest(self.mask);
        }
        let broadcast = make(pos);
        inner.bytes += broadcast.held_bytes();
        let broadcast = Arc::new(broadcast);
        inner.slots[(pos & self.mask) as usize] = Some(Arc::clone(&broadcast));
        inner.next = pos + 1;
        let mut released = 0;
        while inner.bytes > self.max_bytes && inner.oldest < pos {
            inner.release_oldest(self.mask);
            released += 1;
        }
        self.head.store(pos + 1, Ordering::Release);
        Appended {
            pos,
            broadcast,
            released,
            bytes: inner.bytes,
        }
    }

    /// Copies up to `max` broadcasts from `*cursor` into `out` and advances the
    /// cursor. Returns how many were skipped because the reader fell too far behind.
    pub fn read_from(&self, cursor: &mut u64, max: usize, out: &mut Vec<Arc<Broadcast>>) -> u64 {
        if *cursor >= self.head() {
            return 0;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut overrun = 0;
        if *cursor < inner.oldest {
            overrun = inner.oldest - *cursor;
            *cursor = inner.oldest;
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

impl Slots {
    /// Drops the ring's reference to the oldest broadcast (readers holding it keep it).
    fn release_oldest(&mut self, mask: u64) {
        let slot = (self.oldest & mask) as usize;
        if let Some(old) = self.slots[slot].take() {
            self.bytes -= old.held_bytes();
        }
        self.oldest += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::MessageBody;
    use std::time::Instant;

    fn push(ring: &Ring, n: usize) {
        push_payload(ring, n, b"1");
    }

    fn push_payload(ring: &Ring, n: usize, payload: &[u8]) -> Vec<Appended> {
        (0..n)
            .map(|_| {
                ring.push_with(|pos| {
                    Broadcast::new(
                        pos,
                        pos + 1,
                        "a",
                        MessageBody::new("a", payload),
                        Instant::now(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn reader_sees_everything_in_order() {
        let ring = Ring::new(8, 1 << 20);
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
        let ring = Ring::new(producers * each, 1 << 30);
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
        let ring = Ring::new(4, 1 << 20);
        push(&ring, 10);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, 100, &mut out), 6);
        let seqs: Vec<u64> = out.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10]);
    }

    /// Large payloads: the bytes stay under the bound however many slots are free,
    /// the oldest go first, and a reader that had not read them counts an overrun.
    #[test]
    fn byte_bound_releases_the_oldest_early() {
        let payload = vec![b'x'; 10_000];
        let one = push_payload(&Ring::new(2, 1 << 20), 1, &payload)[0].bytes;
        // Room for five (a longer seq adds a byte or two to each), not six.
        let bound = 5 * one + 100;
        let ring = Ring::new(1024, bound);
        let pushed = push_payload(&ring, 100, &payload);
        assert!(pushed.iter().all(|p| p.bytes <= bound));
        assert_eq!(pushed.iter().map(|p| p.released).sum::<u64>(), 95);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, 1000, &mut out), 95);
        let seqs: Vec<u64> = out.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [96, 97, 98, 99, 100]);
    }

    /// One broadcast over the bound is still kept: the ring never empties itself.
    #[test]
    fn byte_bound_keeps_the_newest() {
        let ring = Ring::new(8, 100);
        let pushed = push_payload(&ring, 3, &[b'x'; 500]);
        assert_eq!(pushed[2].released, 1);
        let (mut cursor, mut out) = (2, Vec::new());
        assert_eq!(ring.read_from(&mut cursor, 10, &mut out), 0);
        assert_eq!(out.len(), 1);
    }

    /// Slots that come round free their bytes too.
    #[test]
    fn wrapping_slots_release_their_bytes() {
        let ring = Ring::new(4, 1 << 30);
        let pushed = push_payload(&ring, 12, &[b'x'; 1000]);
        // The same four broadcasts' worth, give or take a digit of seq each.
        assert!(pushed[11].bytes - pushed[3].bytes <= 4, "{pushed:?}");
        assert!(pushed.iter().all(|p| p.released == 0));
    }
}
