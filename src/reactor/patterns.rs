//! A worker's subscriptions: the trie that matches channels, and one shared
//! copy of each pattern, which thousands of connections on the same channels
//! hold by reference. Connections subscribe and leave through `Subscriptions`,
//! so the two always change together.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use super::slab::Key;
use crate::sublist::Sublist;

#[derive(Default)]
pub struct Subscriptions {
    trie: Sublist<Key>,
    patterns: Patterns,
}

impl Subscriptions {
    /// Subscribes `key`; the returned reference is the connection's to keep.
    pub fn add(&mut self, pattern: &str, key: Key) -> Pattern {
        self.trie.insert(pattern, key);
        self.patterns.get(pattern)
    }

    pub fn remove(&mut self, pattern: Pattern, key: Key) {
        self.trie.remove(&pattern, key);
        self.patterns.release(pattern);
    }

    /// A closing connection leaves every channel it was on.
    pub fn remove_all(&mut self, held: &mut Vec<Pattern>, key: Key) {
        for pattern in held.drain(..) {
            self.remove(pattern, key);
        }
    }

    pub fn for_each_match(&mut self, subject: &str, f: impl FnMut(Key)) {
        self.trie.for_each_match(subject, f);
    }
}

/// A reference to a worker's copy of one pattern. One pointer wide, not two
/// like `Arc<str>`: the length lives behind the pointer, because every
/// connection holds one of these per subscription (scenario E: 147,000) and
/// the pattern's bytes are read only on subscribe, unsubscribe and close.
#[derive(Clone)]
pub struct Pattern(Arc<Box<str>>);

impl Deref for Pattern {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

// Equality and hashing are the string's, so the set can be probed with a `&str`.
impl Borrow<str> for Pattern {
    fn borrow(&self) -> &str {
        self
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Pattern {}

impl Hash for Pattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

#[derive(Default)]
struct Patterns(HashSet<Pattern>);

impl Patterns {
    fn get(&mut self, pattern: &str) -> Pattern {
        if let Some(p) = self.0.get(pattern) {
            return p.clone();
        }
        let p = Pattern(Arc::new(pattern.into()));
        self.0.insert(p.clone());
        p
    }

    /// Gives back a connection's reference; the pattern is forgotten with the last one.
    fn release(&mut self, pattern: Pattern) {
        if Arc::strong_count(&pattern.0) == 2 {
            self.0.remove(&*pattern);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_while_used_forgotten_after() {
        let mut p = Patterns::default();
        let a = p.get("a.*");
        let b = p.get("a.*");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!((&*a, p.len()), ("a.*", 1));
        let c = p.get("b.>");
        assert_eq!((&*c, p.len()), ("b.>", 2));
        p.release(a);
        assert_eq!(p.len(), 2);
        p.release(b);
        assert_eq!(p.len(), 1);
        p.release(c);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn one_pointer_wide() {
        assert_eq!(size_of::<Pattern>(), size_of::<usize>());
    }
}
