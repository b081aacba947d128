//! One shared copy of each subscription pattern per worker: thousands of
//! connections on the same channels hold references to it, not copies.

use std::collections::HashSet;
use std::sync::Arc;

#[derive(Default)]
pub struct Patterns(HashSet<Arc<str>>);

impl Patterns {
    pub fn get(&mut self, pattern: &str) -> Arc<str> {
        if let Some(p) = self.0.get(pattern) {
            return Arc::clone(p);
        }
        let p: Arc<str> = pattern.into();
        self.0.insert(Arc::clone(&p));
        p
    }

    /// Gives back a connection's reference; the pattern is forgotten with the last one.
    pub fn release(&mut self, pattern: Arc<str>) {
        if Arc::strong_count(&pattern) == 2 {
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
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(p.len(), 1);
        p.release(a);
        assert_eq!(p.len(), 1);
        p.release(b);
        assert_eq!(p.len(), 0);
    }
}
