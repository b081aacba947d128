//! Overlap between NATS_SUBJECTS patterns (validation itself is crate::channel's).

/// Whether some subject matches both valid patterns. Overlapping subscriptions make
/// NATS deliver such a message once per subscription, so the clients would get it twice.
pub(super) fn overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(&">"), other) | (other, Some(&">")) => return other.is_some(),
            (Some(&"*"), Some(_)) | (Some(_), Some(&"*")) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("odin.>", "odin.btc", true),
            ("odin.>", "odin", false),
            ("odin.*", "odin.>", true),
            ("a.*", "*.b", true),
            ("a.*", "a.b.c", false),
            ("a.b", "a.c", false),
            ("a.b", "a.b", true),
            (">", "x.y.z", true),
        ];
        for &(a, b, expected) in cases {
            assert_eq!(overlap(a, b), expected, "{a} {b}");
            assert_eq!(overlap(b, a), expected, "{b} {a}");
        }
    }
}
