//! A slab whose keys carry a generation, so an event or timer for a connection
//! that is gone never reaches the connection that reused its slot.

/// `generation << 32 | index`; also used as the mio token.
pub type Key = u64;

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The key the next `insert` will return, so a value can be built knowing it.
    pub fn vacant_key(&self) -> Key {
        match self.free.last() {
            Some(&i) => key(self.entries[i as usize].generation, i),
            None => key(0, self.entries.len() as u32),
        }
    }

    pub fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.value = Some(value);
                key(e.generation, i)
            }
            None => {
                let i = self.entries.len() as u32;
                self.entries.push(Entry {
                    generation: 0,
                    value: Some(value),
                });
                key(0, i)
            }
        }
    }

    pub fn get(&self, k: Key) -> Option<&T> {
        let e = self.entries.get(index(k))?;
        if e.generation == generation(k) {
            e.value.as_ref()
        } else {
            None
        }
    }

    pub fn get_mut(&mut self, k: Key) -> Option<&mut T> {
        let e = self.entries.get_mut(index(k))?;
        if e.generation == generation(k) {
            e.value.as_mut()
        } else {
            None
        }
    }

    pub fn remove(&mut self, k: Key) -> Option<T> {
        let i = index(k);
        let e = self.entries.get_mut(i)?;
        if e.generation != generation(k) {
            return None;
        }
        let value = e.value.take()?;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(i as u32);
        self.len -= 1;
        Some(value)
    }

    /// Every live value.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    /// Keys of every live entry.
    pub fn keys(&self) -> Vec<Key> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| key(e.generation, i as u32))
            .collect()
    }
}

fn key(generation: u32, index: u32) -> Key {
    (generation as u64) << 32 | index as u64
}
fn index(k: Key) -> usize {
    (k & 0xffff_ffff) as usize
}
fn generation(k: Key) -> u32 {
    (k >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slot_rejects_stale_key() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let next = slab.vacant_key();
        let b = slab.insert("b");
        assert_eq!(b, next);
        assert_eq!(index(a), index(b));
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len, 1);
        assert_eq!(slab.keys(), vec![b]);
    }
}
