//! JWT connection tokens (DESIGN "Authentication"): the keys a token may be signed
//! with (an HS256 secret, or PEM public keys for RS256/ES256, several during a key
//! rotation), verification with the reason a token fails, and its claims turned into
//! a `Grant`. Signatures are checked by the `jsonwebtoken` crate (ring underneath);
//! nothing here does cryptography itself.
//!
//! Not wired into the server yet: see the branch's report (issue 15).

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::grant::Grant;

/// Shortest HS256 secret accepted: 32 bytes, the hash's own size (RFC 7518 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a token was refused; each is one `reason` label of the rejection metric.
/// The client only ever sees 401 / `invalid_token`, never which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    /// Not a JWT, a claim of the wrong type, no `exp`, or an algorithm we do not take.
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
}

impl TokenError {
    pub const ALL: [TokenError; 5] = [
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims odin-ws reads; others are ignored.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Seconds since the Unix epoch; required.
    pub exp: u64,
    pub nbf: Option<u64>,
    pub sub: Option<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    pub max_subscriptions: Option<usize>,
    #[serde(default)]
    pub publish: Vec<String>,
}

impl Claims {
    /// What this token may subscribe to.
    pub fn subscribe_grant(&self) -> Grant {
        Grant {
            allow: self.channels.clone(),
            deny: self.deny.clone(),
        }
    }

    /// What this token may publish to (deny is for subscriptions only).
    pub fn publish_grant(&self) -> Grant {
        Grant {
            allow: self.publish.clone(),
            deny: Vec::new(),
        }
    }

    /// The subscription limit: the smaller of the claim and the server's.
    pub fn max_subscriptions(&self, server_max: usize) -> usize {
        self.max_subscriptions
            .map_or(server_max, |n| n.min(server_max))
    }
}

/// The keys tokens are checked against. Debug shows no key material.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<(Algorithm, DecodingKey)>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|(a, _)| a).collect();
        write!(f, "Keys({algs:?})")
    }
}

impl Keys {
    /// An HS256 secret; the error is the message after the variable's name and
    /// never holds the secret.
    pub fn from_secret(secret: &str) -> Result<Keys, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "must be at least {MIN_SECRET_BYTES} bytes, got {} (value not shown)",
                secret.len()
            ));
        }
        Ok(Keys {
            keys: vec![(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            )],
        })
    }

    /// Every public key in a PEM text: RSA (RS256) or EC P-256 (ES256). Two keys in
    /// one file are both accepted (rotation).
    pub fn from_pem(text: &str) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for block in pem_blocks(text) {
            let rsa = DecodingKey::from_rsa_pem(block.as_bytes());
            let key = match rsa {
                Ok(k) => (Algorithm::RS256, k),
                Err(_) => match DecodingKey::from_ec_pem(block.as_bytes()) {
                    Ok(k) => (Algorithm::ES256, k),
                    Err(e) => {
                        return Err(format!(
                            "holds a PEM block that is not an RSA or EC public key ({e})"
                        ));
                    }
                },
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("holds no PEM public key".to_string());
        }
        Ok(Keys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The token's claims when one of the keys signed it and it is valid now
    /// (no leeway: `exp` and `nbf` are exact).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let mut worst = TokenError::Malformed;
        for (alg, key) in self.keys.iter().filter(|(a, _)| *a == header.alg) {
            let mut validation = Validation::new(*alg);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp"]);
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => worst = TokenError::BadSignature,
                    // Past the signature: the same answer from every key.
                    ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                    ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                    _ => return Err(TokenError::Malformed),
                },
            }
        }
        // No key of the token's algorithm counts as a bad signature too.
        if worst == TokenError::Malformed && !self.keys.iter().any(|(a, _)| *a == header.alg) {
            worst = match header.alg {
                Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 => TokenError::BadSignature,
                _ => TokenError::Malformed,
            };
        }
        Err(worst)
    }
}

/// Each `-----BEGIN ...-----` .. `-----END ...-----` block of a PEM text.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ")
            && let Some(block) = current.take()
        {
            blocks.push(block);
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: serde_json::Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_good_token_gives_its_grant() {
        let keys = Keys::from_secret(SECRET).unwrap();
        let token = hs(
            serde_json::json!({"exp": now() + 60, "sub": "u1", "channels": ["token.>"],
                "deny": ["token.*.secret"], "max_subscriptions": 5, "publish": ["user.u1.*"]}),
            SECRET,
        );
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("u1"));
        assert!(claims.subscribe_grant().permits("token.BTC.price"));
        assert!(!claims.subscribe_grant().permits("token.BTC.secret"));
        assert!(claims.publish_grant().permits("user.u1.orders"));
        assert_eq!(claims.max_subscriptions(100), 5);
        assert_eq!(claims.max_subscriptions(3), 3);
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let keys = Keys::from_secret(SECRET).unwrap();
        let t = now();
        let other = "another-secret-another-secret-xx";
        let cases = [
            (String::new(), TokenError::Missing),
            ("not.a.jwt".to_string(), TokenError::Malformed),
            ("garbage".to_string(), TokenError::Malformed),
            (
                hs(serde_json::json!({"sub": "u"}), SECRET),
                TokenError::Malformed,
            ),
            (
                hs(serde_json::json!({"exp": "soon"}), SECRET),
                TokenError::Malformed,
            ),
            (
                hs(serde_json::json!({"exp": t + 60}), other),
                TokenError::BadSignature,
            ),
            (
                hs(serde_json::json!({"exp": t - 1}), SECRET),
                TokenError::Expired,
            ),
            (
                hs(serde_json::json!({"exp": t + 60, "nbf": t + 30}), SECRET),
                TokenError::NotYetValid,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(keys.verify(&token), Err(want), "{token}");
        }
    }

    #[test]
    fn short_secrets_and_empty_key_files_are_refused_without_echoing_them() {
        let err = Keys::from_secret("short-secret").unwrap_err();
        assert!(!err.contains("short-secret"), "{err}");
        assert!(err.contains("at least 32 bytes"), "{err}");
        assert_eq!(
            Keys::from_pem("no pem here").unwrap_err(),
            "holds no PEM public key"
        );
        let bad = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(Keys::from_pem(bad).is_err());
        assert_eq!(
            format!("{:?}", Keys::from_secret(SECRET).unwrap()),
            "Keys([HS256])"
        );
    }

    #[test]
    fn pem_blocks_are_split() {
        let text =
            "x\n-----BEGIN A-----\n1\n-----END A-----\n-----BEGIN B-----\n2\n-----END B-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("\n2\n"));
    }
}
