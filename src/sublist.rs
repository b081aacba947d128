//! Per-worker subscription index: a trie over subject tokens in the manner of
//! nats-server `server/sublist.go`. Each reactor worker owns one, so there are
//! no locks.
//!
//! Nodes live in an arena (`Vec<Node>` plus a free list) so the match cache
//! can name them by index. Each node keeps its subscribers in a `Vec<K>` (the
//! hot path walks it as a slice); a crowded node adds a `HashMap<K, usize>`
//! position index for O(1) insert and `swap_remove` (see `INDEX_FROM`).
//!
//! Why a match cache: without it a publish costs one hash probe per token plus
//! a look at the `*` and `>` slots, and every `*` slot forks the walk. With it
//! a publish costs one hash of the whole subject, then slice walks. The cache
//! stores node ids rather than keys, so it survives the common case, a key
//! joining or leaving a channel that keeps other subscribers; only a node
//! turning empty <-> non-empty invalidates it, and then only the entries that
//! node's pattern matches (as nats-server does on insert/remove). Measured on
//! 500 three-token channels, one key each (release build): ~165 ns per
//! match uncached, ~30 ns cached.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::Split;

use crate::channel;

/// Match-cache entries per worker (same bound as nats-server's `slCacheMax`).
/// Holds the live channels of a worker (hundreds) with room to spare, and caps
/// memory at about 1024 * (subject + a few node ids).
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

type NodeId = usize;
const ROOT: NodeId = 0;

/// A node keeps a position index only from this many subscribers on. Below
/// it a removal (or a duplicate check on insert) scans the keys: a few hundred
/// `u64` compares cost well under a microsecond, and most nodes are that small
/// (scenario E: ~140 keys per node per worker), so they skip the index's
/// 2-3x memory. A crowd on one channel (7,000 clients on `>`, all leaving at
/// once) keeps O(1) removal.
const INDEX_FROM: usize = 512;

/// Subscribers of one node: dense `keys` for iteration; `pos`, once the node
/// is crowded, for O(1) removal.
struct Subs<K> {
    keys: Vec<K>,
    /// key -> its index in `keys`; `Some` iff the node has held `INDEX_FROM`
    /// keys and has not since fallen under half that (hysteresis, so a node
    /// hovering at the threshold does not rebuild it over and over).
    pos: Option<HashMap<K, usize>>,
}

impl<K: Copy + Eq + Hash> Subs<K> {
    fn new() -> Self {
        Self {
            keys: Vec::new(),
            pos: None,
        }
    }

    fn insert(&mut self, key: K) -> bool {
        match &mut self.pos {
            Some(pos) => {
                if pos.contains_key(&key) {
                    return false;
                }
                pos.insert(key, self.keys.len());
            }
            None if self.keys.contains(&key) => return false,
            None => {}
        }
        if self.keys.len() == self.keys.capacity() {
            // Grow by a quarter, not double: keys stay as long as their
            // subscribers, so doubling leaves a quarter of every node's buffer
            // idle on average (E: 140 keys in 256 slots). Still geometric, so
            // insertion stays amortised O(1); the extra copies are of `K`s.
            self.keys.reserve_exact(self.keys.len() / 4 + 4);
        }
        self.keys.push(key);
        if self.pos.is_none() && self.keys.len() >= INDEX_FROM {
            let pos = self.keys.iter().enumerate().map(|(i, &k)| (k, i));
            self.pos = Some(pos.collect());
        }
        true
    }

    fn remove(&mut self, key: K) -> bool {
        let found = match &mut self.pos {
            Some(pos) => pos.remove(&key),
            None => self.keys.iter().position(|&k| k == key),
        };
        let Some(i) = found else {
            return false;
        };
        self.keys.swap_remove(i);
        if let Some(pos) = &mut self.pos {
            if let Some(&moved) = self.keys.get(i) {
                pos.insert(moved, i);
            }
            if self.keys.len() < INDEX_FROM / 2 {
                self.pos = None;
            }
        }
        // Give memory back after a crowd leaves a channel that stays alive.
        if self.keys.len() < self.keys.capacity() / 4 {
            self.keys.shrink_to_fit();
            if let Some(pos) = &mut self.pos {
                pos.shrink_to_fit();
            }
        }
        true
    }

    #[cfg(test)]
    fn is_indexed(&self) -> bool {
        self.pos.is_some()
    }
}

struct Node<K> {
    literal: HashMap<Box<str>, NodeId>,
    /// The `*` child.
    pwc: Option<NodeId>,
    /// The `>` child; only its own subscribers count, it has no children.
    fwc: Option<NodeId>,
    subs: Subs<K>,
}

impl<K: Copy + Eq + Hash> Node<K> {
    fn new() -> Self {
        Self {
            literal: HashMap::new(),
            pwc: None,
            fwc: None,
            subs: Subs::new(),
        }
    }

    fn is_unused(&self) -> bool {
        self.subs.keys.is_empty()
            && self.literal.is_empty()
            && self.pwc.is_none()
            && self.fwc.is_none()
    }
}

pub struct Sublist<K: Copy + Eq + Hash> {
    /// `nodes[ROOT]` always exists; freed slots are listed in `free`.
    nodes: Vec<Node<K>>,
    free: Vec<NodeId>,
    count: usize,
    /// Subject -> ids of the non-empty nodes that match it, in walk order.
    cache: HashMap<Box<str>, Vec<NodeId>>,
    cache_capacity: usize,
}

impl<K: Copy + Eq + Hash> Default for Sublist<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> Sublist<K> {
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// `capacity` bounds the match cache; 0 disables it.
    pub fn with_cache_capacity(capacity: usize) -> Self {
        Self {
            nodes: vec![Node::new()],
            free: Vec::new(),
            count: 0,
            cache: HashMap::new(),
            cache_capacity: capacity,
        }
    }

    /// Adds `key` under `pattern` (already checked with
    /// `channel::validate_pattern`). Returns false if that exact
    /// (pattern, key) was already present.
    pub fn insert(&mut self, pattern: &str, key: K) -> bool {
        debug_assert!(channel::validate_pattern(pattern).is_ok(), "{pattern:?}");
        let mut node = ROOT;
        for token in pattern.split('.') {
            node = match self.child(node, token) {
                Some(child) => child,
                None => {
                    let child = self.alloc();
                    self.set_child(node, token, Some(child));
                    child
                }
            };
        }
        let subs = &mut self.nodes[node].subs;
        let was_empty = subs.keys.is_empty();
        if !subs.insert(key) {
            return false;
        }
        self.count += 1;
        if was_empty {
            self.invalidate(pattern);
        }
        true
    }

    /// Removes (pattern, key); returns false if absent. Prunes nodes left
    /// with no subscribers and no children.
    pub fn remove(&mut self, pattern: &str, key: K) -> bool {
        let removed = self.remove_at(ROOT, pattern, pattern.split('.'), key);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Calls `f` once per (matching pattern, key) pair for the literal
    /// `subject`. A key on two matching patterns is visited twice; the caller
    /// dedupes. Allocates only on a cache miss, to fill the cache.
    pub fn for_each_match(&mut self, subject: &str, mut f: impl FnMut(K)) {
        let nodes = &self.nodes;
        let mut visit = |id: NodeId| nodes[id].subs.keys.iter().for_each(|&k| f(k));
        if let Some(ids) = self.cache.get(subject) {
            ids.iter().for_each(|&id| visit(id));
        } else if self.cache_capacity == 0 {
            self.walk(ROOT, subject.split('.'), &mut visit);
        } else {
            let mut ids = Vec::new();
            self.walk(ROOT, subject.split('.'), &mut |id| ids.push(id));
            ids.iter().for_each(|&id| visit(id));
            self.cache_store(subject, ids);
        }
    }

    /// Number of (pattern, key) pairs.
    pub fn subscription_count(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reports every non-empty node matching the remaining tokens `rest`.
    /// Recursion depth is the token count (at most 128 for a valid subject).
    fn walk(&self, node: NodeId, mut rest: Split<'_, char>, hit: &mut impl FnMut(NodeId)) {
        let n = &self.nodes[node];
        let Some(token) = rest.next() else {
            if !n.subs.keys.is_empty() {
                hit(node);
            }
            return;
        };
        // '>' needs at least one token, which `token` is.
        if let Some(fwc) = n.fwc
            && !self.nodes[fwc].subs.keys.is_empty()
        {
            hit(fwc);
        }
        if let Some(pwc) = n.pwc {
            self.walk(pwc, rest.clone(), hit);
        }
        if let Some(&lit) = n.literal.get(token) {
            self.walk(lit, rest, hit);
        }
    }

    fn remove_at(
        &mut self,
        node: NodeId,
        pattern: &str,
        mut rest: Split<'_, char>,
        key: K,
    ) -> bool {
        let Some(token) = rest.next() else {
            let subs = &mut self.nodes[node].subs;
            if !subs.remove(key) {
                return false;
            }
            if subs.keys.is_empty() {
                self.invalidate(pattern);
            }
            return true;
        };
        let Some(child) = self.child(node, token) else {
            return false;
        };
        if !self.remove_at(child, pattern, rest, key) {
            return false;
        }
        if self.nodes[child].is_unused() {
            self.set_child(node, token, None);
            self.release(child);
        }
        true
    }

    fn child(&self, node: NodeId, token: &str) -> Option<NodeId> {
        let n = &self.nodes[node];
        match token {
            "*" => n.pwc,
            ">" => n.fwc,
            _ => n.literal.get(token).copied(),
        }
    }

    fn set_child(&mut self, node: NodeId, token: &str, child: Option<NodeId>) {
        let n = &mut self.nodes[node];
        match (token, child) {
            ("*", c) => n.pwc = c,
            (">", c) => n.fwc = c,
            (_, Some(c)) => {
                n.literal.insert(token.into(), c);
            }
            (_, None) => {
                n.literal.remove(token);
                if n.literal.len() < n.literal.capacity() / 4 {
                    n.literal.shrink_to_fit();
                }
            }
        }
    }

    fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free.pop() {
            return id;
        }
        self.nodes.push(Node::new());
        self.nodes.len() - 1
    }

    /// Frees a detached node. Its id may be reused; that is safe for the cache
    /// because the node went empty first, which dropped every entry naming it.
    fn release(&mut self, id: NodeId) {
        self.nodes[id] = Node::new();
        self.free.push(id);
        if self.free.len() == self.nodes.len() - 1 {
            // Only the root is left: hand the arena back too.
            self.nodes.truncate(1);
            self.nodes.shrink_to_fit();
            self.free = Vec::new();
        }
    }

    /// Drops cached subjects that `pattern` matches: their node lists changed.
    fn invalidate(&mut self, pattern: &str) {
        if !self.cache.is_empty() {
            self.cache
                .retain(|subject, _| !channel::pattern_matches(pattern, subject));
        }
    }

    fn cache_store(&mut self, subject: &str, ids: Vec<NodeId>) {
        if self.cache.len() >= self.cache_capacity {
            // Evict a quarter in hash order (effectively random, like
            // nats-server's sweep) so eviction is amortised O(1) per miss.
            let mut evict = self.cache_capacity / 4 + 1;
            self.cache.retain(|_, _| {
                if evict == 0 {
                    return true;
                }
                evict -= 1;
                false
            });
        }
        self.cache.insert(subject.into(), ids);
    }

    /// Live nodes other than the root.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len() - 1 - self.free.len()
    }

    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::pattern_matches;

    /// Every case runs without and with the cache, as sublist_test.go does.
    fn both(test: impl Fn(&mut Sublist<u64>)) {
        for capacity in [0, DEFAULT_CACHE_CAPACITY] {
            test(&mut Sublist::with_cache_capacity(capacity));
        }
    }

    fn matches(sl: &mut Sublist<u64>, subject: &str) -> Vec<u64> {
        let mut out = Vec::new();
        sl.for_each_match(subject, |k| out.push(k));
        out.sort_unstable();
        out
    }

    /// Patterns are subscribed with key = their index; then each subject
    /// must visit exactly the listed keys.
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static [u64])],
    );
    const CASES: &[Case] = &[
        (
            &["a.b", "a.b", "a"],
            &[("a.b", &[0, 1]), ("a", &[2]), ("a.b.c", &[]), ("b", &[])],
        ),
        (
            &["a.*", "*.b", "*"],
            &[("a.b", &[0, 1]), ("a.c", &[0]), ("a", &[2]), ("a.b.c", &[])],
        ),
        (
            &["a.>", ">", "*.>"],
            &[
                ("a", &[1]),
                ("a.b", &[0, 1, 2]),
                ("a.b.c", &[0, 1, 2]),
                ("b.c", &[1, 2]),
            ],
        ),
        (
            &["token.*.price", "token.BTC.>", "token.BTC.price", "*.*.*"],
            &[
                ("token.BTC.price", &[0, 1, 2, 3]),
                ("token.ETH.price", &[0, 3]),
                ("token.BTC.depth.5", &[1]),
                ("token.BTC", &[]),
            ],
        ),
    ];

    #[test]
    fn literal_and_wildcard_cases() {
        for (patterns, subjects) in CASES {
            both(|sl| {
                for (k, p) in patterns.iter().enumerate() {
                    assert!(sl.insert(p, k as u64));
                }
                assert_eq!(sl.subscription_count(), patterns.len());
                for (subject, want) in *subjects {
                    assert_eq!(matches(sl, subject), *want, "{patterns:?} vs {subject:?}");
                }
            });
        }
    }

    #[test]
    fn duplicates_absent_and_overlap() {
        both(|sl| {
            for p in ["a.b", "a.*", "a.>", ">"] {
                assert!(sl.insert(p, 7));
            }
            assert!(!sl.insert("a.*", 7));
            assert!(!sl.remove("a.*", 8));
            assert!(!sl.remove("a.*.c", 7));
            assert_eq!(matches(sl, "a.b"), [7, 7, 7, 7], "once per pattern");
            assert!(sl.remove("a.>", 7));
            assert!(!sl.remove("a.>", 7));
            assert_eq!(matches(sl, "a.b"), [7, 7, 7]);
        });
    }

    #[test]
    fn many_keys_on_one_node_survive_removal_from_the_middle() {
        both(|sl| {
            (0..7_000).for_each(|k| assert!(sl.insert("token.BTC.price", k)));
            (0..7_000)
                .step_by(3)
                .for_each(|k| assert!(sl.remove("token.BTC.price", k)));
            let want: Vec<u64> = (0..7_000).filter(|k| k % 3 != 0).collect();
            assert_eq!(matches(sl, "token.BTC.price"), want);
        });
    }

    /// A node crosses `INDEX_FROM` both ways; membership, duplicates and
    /// removal stay right with and without the index.
    #[test]
    fn position_index_comes_and_goes_with_the_crowd() {
        let mut subs = Subs::new();
        let mut model: Vec<u64> = Vec::new();
        let check = |subs: &Subs<u64>, model: &[u64]| {
            let mut keys = subs.keys.clone();
            keys.sort_unstable();
            assert_eq!(keys, model);
            if let Some(pos) = &subs.pos {
                assert_eq!(pos.len(), keys.len());
                assert!(pos.iter().all(|(&k, &i)| subs.keys[i] == k));
            }
        };
        for k in 0..INDEX_FROM as u64 - 1 {
            assert!(subs.insert(k * 3));
            model.push(k * 3);
        }
        assert!(!subs.is_indexed());
        assert!(!subs.insert(0), "duplicate found by scanning");
        assert!(subs.insert(1));
        model.push(1);
        model.sort_unstable();
        assert!(subs.is_indexed());
        assert!(!subs.insert(1), "duplicate found through the index");
        check(&subs, &model);
        // Leave from the middle until under half: the index is dropped once.
        while model.len() >= INDEX_FROM / 2 {
            let k = model.remove(model.len() / 2);
            assert!(subs.remove(k));
            assert!(!subs.remove(k));
            assert_eq!(subs.is_indexed(), model.len() >= INDEX_FROM / 2);
            check(&subs, &model);
        }
        // Hysteresis: back up to just under the threshold without an index.
        for k in 10_000..10_000 + (INDEX_FROM - model.len() - 1) as u64 {
            assert!(subs.insert(k));
            model.push(k);
        }
        assert!(!subs.is_indexed());
        check(&subs, &model);
        model.drain(..).for_each(|k| assert!(subs.remove(k)));
        assert!(subs.keys.is_empty() && !subs.is_indexed());
    }

    #[test]
    fn keys_grow_by_a_quarter() {
        let mut subs = Subs::new();
        for k in 0..2 * INDEX_FROM as u64 {
            subs.insert(k);
            let (len, cap) = (subs.keys.len(), subs.keys.capacity());
            assert!(cap <= len + len / 4 + 4, "{len} keys in {cap} slots");
        }
    }

    #[test]
    fn remove_prunes_every_node() {
        both(|sl| {
            let pattern = |i: u64| match i % 4 {
                0 => format!("a{i}.b"),
                1 => format!("x.*.{i}"),
                2 => format!("{i}.>"),
                _ => format!("deep.{}.{i}.*.>", i % 7),
            };
            for i in 0..10_000 {
                assert!(sl.insert(&pattern(i), i));
                matches(sl, &pattern(i).replace(['*', '>'], "z")); // fill the cache
            }
            assert!(sl.node_count() >= 10_000);
            (0..10_000).for_each(|i| assert!(sl.remove(&pattern(i), i)));
            assert!(sl.is_empty());
            assert_eq!(
                (sl.node_count(), sl.nodes.len()),
                (0, 1),
                "arena handed back"
            );
        });
    }

    #[test]
    fn cache_follows_insert_and_remove() {
        let mut sl = Sublist::new();
        sl.insert("a.b", 1);
        assert_eq!((matches(&mut sl, "a.b"), sl.cache_len()), (vec![1], 1));
        sl.insert("a.b", 2); // same node: the entry stays and sees the key
        assert_eq!((matches(&mut sl, "a.b"), sl.cache_len()), (vec![1, 2], 1));
        sl.insert("a.*", 3); // new matching node: the entry goes
        assert_eq!(sl.cache_len(), 0);
        assert_eq!(matches(&mut sl, "a.b"), [1, 2, 3]);
        sl.insert("b.*", 4); // new node elsewhere: the entry stays
        assert_eq!(sl.cache_len(), 1);
        sl.remove("a.*", 3);
        assert_eq!(matches(&mut sl, "a.b"), [1, 2]);
        sl.remove("a.b", 1);
        sl.remove("a.b", 2);
        assert_eq!(matches(&mut sl, "a.b"), [0; 0]);
        sl.insert("c.d", 5); // may reuse a freed node id
        assert_eq!(
            (matches(&mut sl, "a.b"), matches(&mut sl, "c.d")),
            (vec![], vec![5])
        );
    }

    #[test]
    fn cache_is_bounded() {
        for capacity in [0, 1, 4, DEFAULT_CACHE_CAPACITY] {
            let mut sl = Sublist::with_cache_capacity(capacity);
            sl.insert("s.>", 1);
            for i in 0..5_000 {
                assert_eq!(matches(&mut sl, &format!("s.{i}")), [1]);
                assert!(sl.cache_len() <= capacity);
            }
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const ALPHABET: [&str; 3] = ["a", "b", "c"];

    fn random_pattern(rng: &mut XorShift) -> String {
        let len = 1 + rng.below(4);
        let token = |i, rng: &mut XorShift| match rng.below(20) {
            0..=11 => ALPHABET[rng.below(3)],
            12..=16 => "*",
            _ if i + 1 == len => ">",
            _ => "a",
        };
        (0..len)
            .map(|i| token(i, rng))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Randomised subscribe/unsubscribe rounds; after each, every subject of
    /// 1..=5 tokens over the alphabet (363) is checked against the reference
    /// matcher, so cached entries from earlier rounds are checked too.
    #[test]
    fn random_cross_check_against_pattern_matches() {
        let mut subjects: Vec<String> = Vec::new();
        let mut level: Vec<String> = vec![String::new()];
        for _ in 0..5 {
            level = level
                .iter()
                .flat_map(|p| ALPHABET.map(|t| format!("{p}.{t}")))
                .collect();
            subjects.extend(level.iter().map(|s| s[1..].to_string()));
        }
        for capacity in [0, 16, DEFAULT_CACHE_CAPACITY] {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ capacity as u64);
            let mut sl = Sublist::with_cache_capacity(capacity);
            let mut model: Vec<(String, u64)> = Vec::new();
            for _round in 0..6 {
                for _ in 0..150 {
                    let (p, k) = (random_pattern(&mut rng), rng.below(16) as u64);
                    let fresh = !model.iter().any(|(mp, mk)| *mp == p && *mk == k);
                    assert_eq!(sl.insert(&p, k), fresh, "insert {p:?} {k}");
                    if fresh {
                        model.push((p, k));
                    }
                }
                for _ in 0..model.len() / 2 {
                    let (p, k) = model.swap_remove(rng.below(model.len()));
                    assert!(sl.remove(&p, k), "remove {p:?} {k}");
                }
                assert_eq!(sl.subscription_count(), model.len());
                for s in &subjects {
                    let hits = model.iter().filter(|(p, _)| pattern_matches(p, s));
                    let mut want: Vec<u64> = hits.map(|&(_, k)| k).collect();
                    want.sort_unstable();
                    assert_eq!(matches(&mut sl, s), want, "subject {s:?}");
                }
            }
            model.drain(..).for_each(|(p, k)| assert!(sl.remove(&p, k)));
            assert_eq!((sl.is_empty(), sl.node_count()), (true, 0));
        }
    }
}
