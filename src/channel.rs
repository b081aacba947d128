//! Channel names: NATS subjects (publish side) and subscription patterns.
//!
//! A subject is tokens separated by `.`; a token is non-empty printable ASCII
//! (0x21..=0x7e) without `.`, `*` or `>`. A pattern may also use `*` as a whole
//! token (exactly one token) and `>` as the last whole token (one or more).

use std::fmt;

/// Longest channel accepted, in bytes. Bounds the per-subject cost of matching
/// and of the sublist cache keys.
pub const MAX_CHANNEL_LEN: usize = 256;

pub(crate) const SEPARATOR: char = '.';
pub(crate) const PARTIAL_WILDCARD: &str = "*";
pub(crate) const FULL_WILDCARD: &str = ">";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    Empty,
    /// Length in bytes of the rejected channel.
    TooLong(usize),
    EmptyToken,
    /// A space, control character or non-ASCII character.
    BadChar(char),
    /// A `*` or `>` in a channel that must be literal (publish side).
    WildcardInLiteral,
    FullWildcardNotLast,
    /// `*` or `>` inside a token, e.g. `a*` or `b>`.
    PartialWildcard,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty channel"),
            Self::TooLong(n) => write!(f, "channel is {n} bytes, max {MAX_CHANNEL_LEN}"),
            Self::EmptyToken => f.write_str("empty token"),
            Self::BadChar(c) => write!(f, "invalid character '{}'", c.escape_debug()),
            Self::WildcardInLiteral => f.write_str("wildcards are not allowed here"),
            Self::FullWildcardNotLast => f.write_str("'>' must be the last token"),
            Self::PartialWildcard => f.write_str("'*' and '>' must be whole tokens"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Checks a literal channel (publish side): no wildcards.
pub fn validate_subject(s: &str) -> Result<(), ChannelError> {
    validate(s, false)
}

/// Checks a subscription pattern: `*` and a trailing `>` allowed.
pub fn validate_pattern(s: &str) -> Result<(), ChannelError> {
    validate(s, true)
}

fn validate(s: &str, wildcards: bool) -> Result<(), ChannelError> {
    if s.is_empty() {
        return Err(ChannelError::Empty);
    }
    if s.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong(s.len()));
    }
    let mut tokens = s.split(SEPARATOR).peekable();
    while let Some(token) = tokens.next() {
        let last = tokens.peek().is_none();
        match token {
            "" => return Err(ChannelError::EmptyToken),
            PARTIAL_WILDCARD | FULL_WILDCARD if !wildcards => {
                return Err(ChannelError::WildcardInLiteral);
            }
            PARTIAL_WILDCARD => {}
            FULL_WILDCARD if !last => return Err(ChannelError::FullWildcardNotLast),
            FULL_WILDCARD => {}
            _ => validate_token(token, wildcards)?,
        }
    }
    Ok(())
}

fn validate_token(token: &str, wildcards: bool) -> Result<(), ChannelError> {
    for c in token.chars() {
        match c {
            '*' | '>' if wildcards => return Err(ChannelError::PartialWildcard),
            '*' | '>' => return Err(ChannelError::WildcardInLiteral),
            '\x21'..='\x7e' => {}
            _ => return Err(ChannelError::BadChar(c)),
        }
    }
    Ok(())
}

/// Reference matcher: does `pattern` match the literal `subject`?
///
/// Allocation-free; both arguments are assumed valid. A `>` that is not the
/// last token matches nothing, as in the sublist trie.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split(SEPARATOR);
    let mut s = subject.split(SEPARATOR);
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(FULL_WILDCARD), Some(_)) => return p.next().is_none(),
            (Some(PARTIAL_WILDCARD), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelError::*;

    #[test]
    fn subjects() {
        let long_ok = "a".repeat(MAX_CHANNEL_LEN);
        let long_bad = "a".repeat(MAX_CHANNEL_LEN + 1);
        let cases: &[(&str, Result<(), ChannelError>)] = &[
            ("a", Ok(())),
            ("a.b", Ok(())),
            ("token.BTC.price", Ok(())),
            ("A-Z_0~9!\"#$%&'()+,-/:;<=?@[\\]^`{|}", Ok(())),
            (&long_ok, Ok(())),
            ("", Err(Empty)),
            (&long_bad, Err(TooLong(257))),
            ("a..b", Err(EmptyToken)),
            (".a", Err(EmptyToken)),
            ("a.", Err(EmptyToken)),
            (".", Err(EmptyToken)),
            ("a b", Err(BadChar(' '))),
            ("a\tb", Err(BadChar('\t'))),
            ("a\u{7f}", Err(BadChar('\u{7f}'))),
            ("é", Err(BadChar('é'))),
            ("a.*", Err(WildcardInLiteral)),
            ("a.>", Err(WildcardInLiteral)),
            (">", Err(WildcardInLiteral)),
            ("a.*b", Err(WildcardInLiteral)),
            ("b>", Err(WildcardInLiteral)),
        ];
        for (s, want) in cases {
            assert_eq!(&validate_subject(s), want, "subject {s:?}");
        }
    }

    #[test]
    fn patterns() {
        let long_bad = format!("{}.>", "a".repeat(MAX_CHANNEL_LEN));
        let cases: &[(&str, Result<(), ChannelError>)] = &[
            ("a.b", Ok(())),
            ("*", Ok(())),
            (">", Ok(())),
            ("a.*", Ok(())),
            ("*.*", Ok(())),
            ("token.*.price", Ok(())),
            ("token.BTC.>", Ok(())),
            ("*.>", Ok(())),
            ("", Err(Empty)),
            (&long_bad, Err(TooLong(MAX_CHANNEL_LEN + 2))),
            ("a..b", Err(EmptyToken)),
            (".a", Err(EmptyToken)),
            ("a.", Err(EmptyToken)),
            ("a.>.", Err(FullWildcardNotLast)),
            ("a b", Err(BadChar(' '))),
            ("a\u{7f}", Err(BadChar('\u{7f}'))),
            ("é.*", Err(BadChar('é'))),
            ("a.*b", Err(PartialWildcard)),
            ("a*", Err(PartialWildcard)),
            ("b>", Err(PartialWildcard)),
            ("**", Err(PartialWildcard)),
            ("a.>.b", Err(FullWildcardNotLast)),
            (">.>", Err(FullWildcardNotLast)),
        ];
        for (s, want) in cases {
            assert_eq!(&validate_pattern(s), want, "pattern {s:?}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a", false),
            ("a.b", "a.b.c", false),
            ("a", "ab", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("*.b.*", "a.b.c", true),
            ("*.b.*", "a.c.c", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            ("a.>", "b.c", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("*.>", "a", false),
            ("*.>", "a.b", true),
            ("a.*.>", "a.b.c.d", true),
            ("a.>.b", "a.x.b", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(pattern_matches(p, s), want, "{p:?} vs {s:?}");
        }
    }

    #[test]
    fn display_is_short() {
        assert_eq!(EmptyToken.to_string(), "empty token");
        assert_eq!(
            FullWildcardNotLast.to_string(),
            "'>' must be the last token"
        );
        assert_eq!(BadChar('\u{7f}').to_string(), "invalid character '\\u{7f}'");
        assert_eq!(TooLong(300).to_string(), "channel is 300 bytes, max 256");
    }
}
