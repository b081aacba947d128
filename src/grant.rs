//! Who may subscribe to (or publish on) what: a token's grant of allow and deny
//! patterns (DESIGN "Authentication"), checked once at subscribe time, never on the
//! delivery path.
//!
//! A requested pattern is allowed when every subject it could match is matched by
//! one allow pattern (`within`) and by no deny pattern (`intersects`): a wildcard
//! that could reach a forbidden subject is forbidden. The check against the allow
//! list is per pattern, so it is conservative: `a.>` is refused under the pair
//! `a.*` + `a.*.>` although the two together cover it (grant `a.>` for that).
//! Both arguments of every function here are valid patterns
//! (`channel::validate_pattern`).

use crate::channel::{FULL_WILDCARD, PARTIAL_WILDCARD, SEPARATOR};

/// Whether every subject `pattern` matches is also matched by `grant`.
pub fn within(pattern: &str, grant: &str) -> bool {
    let mut p = pattern.split(SEPARATOR);
    let mut g = grant.split(SEPARATOR);
    loop {
        match (p.next(), g.next()) {
            (None, None) => return true,
            // `>` takes one or more tokens: the pattern must have at least one left,
            // whatever they are.
            (Some(_), Some(FULL_WILDCARD)) => return true,
            // The pattern's `>` reaches any length; only a `>` in the grant does.
            (Some(FULL_WILDCARD), _) => return false,
            (Some(_), Some(PARTIAL_WILDCARD)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether some subject is matched by both patterns (also NATS_SUBJECTS' overlap
/// check: NATS would deliver such a message once per subscription).
pub fn intersects(a: &str, b: &str) -> bool {
    let mut a = a.split(SEPARATOR);
    let mut b = b.split(SEPARATOR);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            // `>` takes the other side's remaining tokens, one or more.
            (Some(FULL_WILDCARD), Some(_)) | (Some(_), Some(FULL_WILDCARD)) => return true,
            (Some(PARTIAL_WILDCARD), Some(_)) | (Some(_), Some(PARTIAL_WILDCARD)) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// A token's permissions: `allow` patterns (none = nothing allowed) and `deny`
/// patterns, which win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Grant {
    /// Whether a subscription to `pattern` is entirely within this grant.
    pub fn permits(&self, pattern: &str) -> bool {
        self.allow.iter().any(|g| within(pattern, g))
            && !self.deny.iter().any(|d| intersects(pattern, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{pattern_matches, validate_pattern};

    #[test]
    fn within_table() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a.*", true),
            ("a.*", "a.b", false),
            ("a.*", "a.*", true),
            ("a.*", "a.>", true),
            ("a.>", "a.*", false),
            ("a.>", "a.>", true),
            ("a.b.c", "a.>", true),
            ("a", "a.>", false),
            ("a.*.c", "a.>", true),
            ("a.*.c", "*.*.c", true),
            ("*.*.c", "a.*.c", false),
            ("a.>", ">", true),
            (">", "a.>", false),
            (">", ">", true),
            ("*", ">", true),
            ("*", "*", true),
            ("*.b", "*", false),
            ("a.*.>", "a.>", true),
            ("a.>", "a.*.>", false),
            ("token.BTC.price", "token.*.price", true),
            ("token.*.price", "token.BTC.>", false),
        ];
        for (p, g, want) in cases {
            assert_eq!(within(p, g), want, "{p:?} within {g:?}");
        }
    }

    #[test]
    fn intersects_table() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.*", "a.b", true),
            ("a.*", "*.b", true),
            ("a.*", "b.*", false),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            (">", "a", true),
            ("*", "a.b", false),
            ("*.>", "a", false),
            ("a.*.c", "a.b.>", true),
            ("a.*", "a.*.c", false),
            ("token.*.price", "token.BTC.>", true),
            // NATS_SUBJECTS' overlap cases.
            ("odin.>", "odin.btc", true),
            ("odin.>", "odin", false),
            ("odin.*", "odin.>", true),
            ("a.*", "a.b.c", false),
            (">", "x.y.z", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(intersects(a, b), want, "{a:?} intersects {b:?}");
            assert_eq!(intersects(b, a), want, "{b:?} intersects {a:?}");
        }
    }

    #[test]
    fn grant_table_deny_wins() {
        let grant = Grant {
            allow: vec!["token.>".into(), "user.42.*".into()],
            deny: vec!["token.*.secret".into()],
        };
        let cases = [
            ("token.BTC.price", true),
            ("token.BTC.>", false), // could reach token.BTC.secret
            ("token.*.price", true),
            ("token.*.secret", false),
            ("token.ETH.secret", false),
            ("token.>", false),
            ("user.42.orders", true),
            ("user.42.*", true),
            ("user.*.orders", false),
            ("user.42.orders.x", false),
            (">", false),
        ];
        for (p, want) in cases {
            assert_eq!(grant.permits(p), want, "{p:?}");
        }
        assert!(!Grant::default().permits("a"), "no allow list: nothing");
    }

    /// xorshift64: the same cases on every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A valid pattern of 1..=3 tokens over {a, b, *}, maybe ending in `>`.
    fn random_pattern(rng: &mut Rng) -> String {
        let len = 1 + rng.below(3);
        let mut tokens: Vec<&str> = (0..len).map(|_| ["a", "b", "*"][rng.below(3)]).collect();
        if rng.below(3) == 0 {
            *tokens.last_mut().unwrap() = ">";
        }
        let p = tokens.join(".");
        assert_eq!(validate_pattern(&p), Ok(()), "{p}");
        p
    }

    /// Every subject of 1..=5 tokens over {a, b, z}: `z` stands for any token no
    /// pattern names, and five tokens are more than any pattern here spans plus one,
    /// so what holds for these holds for every subject.
    fn subjects() -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let mut level = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for prefix in &level {
                for t in ["a", "b", "z"] {
                    let s = if prefix.is_empty() {
                        t.to_string()
                    } else {
                        format!("{prefix}.{t}")
                    };
                    next.push(s);
                }
            }
            all.extend(next.iter().cloned());
            level = next;
        }
        all
    }

    #[test]
    fn within_and_intersects_agree_with_brute_force() {
        let subjects = subjects();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..4000 {
            let (p, g) = (random_pattern(&mut rng), random_pattern(&mut rng));
            let matched = |pat: &str| -> Vec<bool> {
                subjects.iter().map(|s| pattern_matches(pat, s)).collect()
            };
            let (mp, mg) = (matched(&p), matched(&g));
            let want_within = mp.iter().zip(&mg).all(|(a, b)| !a || *b);
            let want_meet = mp.iter().zip(&mg).any(|(a, b)| *a && *b);
            assert_eq!(within(&p, &g), want_within, "{p:?} within {g:?}");
            assert_eq!(intersects(&p, &g), want_meet, "{p:?} intersects {g:?}");
        }
    }

    /// A permitted pattern never reaches a subject the grant does not allow, or one
    /// it denies (soundness; the per-pattern allow check may refuse more, see the
    /// module's note).
    #[test]
    fn permitted_patterns_reach_only_allowed_subjects() {
        let subjects = subjects();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut permitted = 0;
        for _ in 0..2000 {
            let grant = Grant {
                allow: (0..1 + rng.below(2))
                    .map(|_| random_pattern(&mut rng))
                    .collect(),
                deny: (0..rng.below(2))
                    .map(|_| random_pattern(&mut rng))
                    .collect(),
            };
            let p = random_pattern(&mut rng);
            if !grant.permits(&p) {
                continue;
            }
            permitted += 1;
            for s in subjects.iter().filter(|s| pattern_matches(&p, s)) {
                assert!(
                    grant.allow.iter().any(|g| pattern_matches(g, s)),
                    "{p} {s} {grant:?}"
                );
                assert!(
                    !grant.deny.iter().any(|d| pattern_matches(d, s)),
                    "{p} {s} {grant:?}"
                );
            }
        }
        assert!(permitted > 100, "only {permitted} cases were permitted");
    }
}
