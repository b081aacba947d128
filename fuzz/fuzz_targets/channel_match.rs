//! The sublist against the reference matcher. The input bytes are decoded into
//! a sequence of insert / remove / match operations over patterns and subjects
//! drawn from a tiny alphabet, so they collide and share trie nodes. Three
//! sublists take every operation: default cache, no cache, and a 2-entry cache
//! (constant eviction). After each operation their answers are checked against
//! a plain list of (pattern, key) and `channel::pattern_matches`.
//!
//! Free-form strings from the input also check the validators: a valid subject
//! is a valid pattern that matches itself, and valid patterns of any alphabet
//! go into the sublists too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_ws::channel::{pattern_matches, validate_pattern, validate_subject};
use odin_ws::sublist::Sublist;

const PATTERN_TOKENS: [&str; 5] = ["a", "b", "c", "*", ">"];
const SUBJECT_TOKENS: [&str; 3] = ["a", "b", "c"];
const MAX_TOKENS: usize = 5;
const KEYS: u8 = 4;

/// Reads the input a byte at a time; zero once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    /// 1..=MAX_TOKENS tokens from `alphabet`, joined with '.'.
    fn channel(&mut self, alphabet: &[&str]) -> String {
        let len = 1 + self.next() as usize % MAX_TOKENS;
        let tokens: Vec<&str> = (0..len)
            .map(|_| alphabet[self.next() as usize % alphabet.len()])
            .collect();
        tokens.join(".")
    }

    /// A length byte, then that many raw bytes (lossy UTF-8).
    fn free_form(&mut self) -> String {
        let len = (self.next() as usize % 16).min(self.0.len());
        let (raw, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(raw).into_owned()
    }
}

struct Check {
    lists: [Sublist<u8>; 3],
    model: Vec<(String, u8)>,
}

impl Check {
    fn insert(&mut self, pattern: &str, key: u8) {
        let fresh = !self.model.iter().any(|(p, k)| p == pattern && *k == key);
        for sl in &mut self.lists {
            assert_eq!(sl.insert(pattern, key), fresh, "insert {pattern:?} {key}");
        }
        if fresh {
            self.model.push((pattern.to_string(), key));
        }
    }

    fn remove(&mut self, pattern: &str, key: u8) {
        let at = self
            .model
            .iter()
            .position(|(p, k)| p == pattern && *k == key);
        for sl in &mut self.lists {
            assert_eq!(
                sl.remove(pattern, key),
                at.is_some(),
                "remove {pattern:?} {key}"
            );
        }
        if let Some(i) = at {
            self.model.swap_remove(i);
        }
    }

    fn matches(&mut self, subject: &str) {
        let mut want: Vec<u8> = (self.model.iter())
            .filter(|(p, _)| pattern_matches(p, subject))
            .map(|&(_, k)| k)
            .collect();
        want.sort_unstable();
        for (i, sl) in self.lists.iter_mut().enumerate() {
            let mut got = Vec::new();
            sl.for_each_match(subject, |k| got.push(k));
            got.sort_unstable();
            assert_eq!(
                got, want,
                "sublist {i}, subject {subject:?}, model {:?}",
                self.model
            );
            assert_eq!(sl.subscription_count(), self.model.len());
            assert_eq!(sl.is_empty(), self.model.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut check = Check {
        lists: [
            Sublist::new(),
            Sublist::with_cache_capacity(0),
            Sublist::with_cache_capacity(2),
        ],
        model: Vec::new(),
    };
    while !input.0.is_empty() {
        match input.next() % 6 {
            0 | 1 => {
                let pattern = input.channel(&PATTERN_TOKENS);
                let key = input.next() % KEYS;
                if validate_pattern(&pattern).is_ok() {
                    check.insert(&pattern, key);
                }
            }
            2 => {
                // Half the time a pattern that is present, so removes succeed.
                let pick = input.next() as usize;
                let present = match check.model.len() {
                    0 => None,
                    n if pick.is_multiple_of(2) => Some(check.model[pick / 2 % n].clone()),
                    _ => None,
                };
                let (pattern, key) = present
                    .unwrap_or_else(|| (input.channel(&PATTERN_TOKENS), input.next() % KEYS));
                if validate_pattern(&pattern).is_ok() {
                    check.remove(&pattern, key);
                }
            }
            3 | 4 => {
                let subject = input.channel(&SUBJECT_TOKENS);
                assert!(validate_subject(&subject).is_ok(), "{subject:?}");
                check.matches(&subject);
            }
            _ => {
                let s = input.free_form();
                if validate_subject(&s).is_ok() {
                    assert!(
                        validate_pattern(&s).is_ok(),
                        "subject {s:?} is not a pattern"
                    );
                    assert!(
                        pattern_matches(&s, &s),
                        "subject {s:?} does not match itself"
                    );
                    check.matches(&s);
                }
                if validate_pattern(&s).is_ok() {
                    let key = input.next() % KEYS;
                    check.insert(&s, key);
                }
            }
        }
    }
    // Empty everything: every sublist must agree it is empty again.
    while let Some((pattern, key)) = check.model.last().cloned() {
        check.remove(&pattern, key);
    }
    check.matches("a");
});
