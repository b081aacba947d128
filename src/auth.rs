//! JWT connection tokens (DESIGN "Authentication"): the keys a token may be signed
//! with (an HS256 secret, or PEM public keys for RS256/ES256, several during a key
//! rotation), where a request carries its token, verification with the reason a
//! token fails, and its claims turned into a connection's `Session`. Signatures are
//! checked by the `jsonwebtoken` crate (its RustCrypto backend); nothing here
//! does cryptography itself. A token or secret is never formatted into a message.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::channel::validate_pattern;
use crate::grant::Grant;
use crate::http::{Request, Response};

/// Shortest HS256 secret accepted: 32 bytes, the hash's own size (RFC 7518 3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// The cookie a browser may carry its token in.
pub const TOKEN_COOKIE: &str = "odin_ws_token";
/// The query parameter of the upgrade (or `/sse`) URL that may carry the token.
pub const TOKEN_PARAM: &str = "token";
/// How long before `exp` a connection is sent `token_expiring`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30);
/// An `exp` further away than this counts from here (so a huge one cannot
/// overflow the clock).
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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
    /// A valid refresh token whose `sub` is not the connection's.
    OtherSubject,
}

impl TokenError {
    pub const ALL: [TokenError; 6] = [
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::OtherSubject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::OtherSubject => "other_subject",
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

    /// Whether every pattern of the grants is one: a mistyped one (`a.>.b`)
    /// could otherwise grant more than meant, so it fails the whole token.
    fn patterns_are_valid(&self) -> bool {
        [&self.channels, &self.deny, &self.publish]
            .into_iter()
            .flatten()
            .all(|p| validate_pattern(p).is_ok())
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
    /// One per algorithm, so a token's header picks its keys at once.
    verifiers: Vec<Verifier>,
    /// What they were made from (the secret, the PEM blocks), only to tell
    /// whether a reload changed them; never shown.
    material: Vec<u8>,
}

/// The keys of one algorithm and the checks a token of it gets, built when
/// the keys are loaded (at start and on every reload), not per token.
#[derive(Clone)]
struct Verifier {
    /// No leeway (`exp` and `nbf` are exact), `nbf` checked, `exp` required.
    validation: Validation,
    keys: Vec<DecodingKey>,
}

impl Verifier {
    fn new(alg: Algorithm) -> Verifier {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Verifier {
            validation,
            keys: Vec::new(),
        }
    }

    /// `Validation::new` names exactly one.
    fn alg(&self) -> Algorithm {
        self.validation.algorithms[0]
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<_> = self
            .verifiers
            .iter()
            .flat_map(|v| v.keys.iter().map(|_| v.alg()))
            .collect();
        write!(f, "Keys({algs:?})")
    }
}

impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.material == other.material
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
        // The crate refuses only an empty secret, which the length check above
        // already did; its error names no secret either.
        let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
        let mut keys = Keys::none();
        keys.add(Algorithm::HS256, key);
        keys.material = secret.as_bytes().to_vec();
        Ok(keys)
    }

    fn none() -> Keys {
        Keys {
            verifiers: Vec::new(),
            material: Vec::new(),
        }
    }

    /// `key` joins the others of its algorithm.
    fn add(&mut self, alg: Algorithm, key: DecodingKey) {
        match self.verifiers.iter_mut().find(|v| v.alg() == alg) {
            Some(v) => v.keys.push(key),
            None => {
                let mut v = Verifier::new(alg);
                v.keys.push(key);
                self.verifiers.push(v);
            }
        }
    }

    /// Every public key in a PEM text: RSA (RS256) or EC P-256 (ES256). Two keys in
    /// one file are both accepted (rotation).
    pub fn from_pem(text: &str) -> Result<Keys, String> {
        let mut keys = Keys::none();
        for block in pem_blocks(text)? {
            if block.lines().next().is_some_and(|l| l.contains("PRIVATE")) {
                // A signing key has no business on the server; its public half
                // is what verifies.
                return Err(
                    "holds a private key: give the public key (openssl pkey -pubout)".into(),
                );
            }
            keys.material.extend_from_slice(block.as_bytes());
            let rsa = DecodingKey::from_rsa_pem(block.as_bytes());
            let (alg, key) = match rsa {
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
            keys.add(alg, key);
        }
        if keys.is_empty() {
            return Err("holds no PEM public key".to_string());
        }
        Ok(keys)
    }

    /// Both sets: a token signed by a key of either is accepted.
    pub fn merge(mut self, other: Keys) -> Keys {
        for v in other.verifiers {
            let alg = v.alg();
            for key in v.keys {
                self.add(alg, key);
            }
        }
        self.material.extend(other.material);
        self
    }

    fn verifier(&self, alg: Algorithm) -> Option<&Verifier> {
        self.verifiers.iter().find(|v| v.alg() == alg)
    }

    /// For the start-up log: "HS256, RS256 x2".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
            match self.verifier(alg).map_or(0, |v| v.keys.len()) {
                0 => {}
                1 => parts.push(format!("{alg:?}")),
                n => parts.push(format!("{alg:?} x{n}")),
            }
        }
        parts.join(", ")
    }

    pub fn len(&self) -> usize {
        self.verifiers.iter().map(|v| v.keys.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token's claims when one of the keys signed it and it is valid now
    /// (no leeway: `exp` and `nbf` are exact).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let Some(verifier) = self.verifier(header.alg) else {
            // No key of the token's algorithm counts as a bad signature too.
            return Err(match header.alg {
                Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 => TokenError::BadSignature,
                _ => TokenError::Malformed,
            });
        };
        for key in &verifier.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &verifier.validation) {
                Ok(data) if data.claims.patterns_are_valid() => return Ok(data.claims),
                Ok(_) => return Err(TokenError::Malformed),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => {}
                    // Past the signature: the same answer from every key.
                    ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                    ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                    _ => return Err(TokenError::Malformed),
                },
            }
        }
        Err(TokenError::BadSignature)
    }
}

/// Where a request carries its token, first found wins: `Authorization: Bearer`,
/// then `?token=` (browsers cannot set headers on a WebSocket), then the
/// `odin_ws_token` cookie. `None` when none is there.
pub fn request_token(req: &Request) -> Option<String> {
    bearer_or_query(req).or_else(|| cookie_token(req))
}

/// A token given by `Authorization: Bearer`, else by `?token=`; `None` when
/// neither holds one. Also how the status page's WS_STATUS_TOKEN is given (the
/// cookie is the JWT's, not for it).
pub fn bearer_or_query(req: &Request) -> Option<String> {
    match req.header("Authorization").and_then(bearer) {
        Some(token) => Some(token.to_string()),
        None => req.query_param(TOKEN_PARAM).filter(|t| !t.is_empty()),
    }
}

/// The `odin_ws_token` cookie's value, quotes taken off.
fn cookie_token(req: &Request) -> Option<String> {
    req.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Cookie"))
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == TOKEN_COOKIE && !value.is_empty())
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// The token of an `Authorization: Bearer` header (the scheme in any case,
/// RFC 7235); `None` for another scheme or an empty token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// The answer to a request without a valid token: which check failed is only
/// counted, never told.
pub fn unauthorized() -> Response {
    Response::text(401, "a valid token is required\n").header("WWW-Authenticate", "Bearer")
}

/// Verifies the token a request carries.
pub fn verify_request(keys: &Keys, req: &Request) -> Result<Claims, TokenError> {
    keys.verify(&request_token(req).unwrap_or_default())
}

/// What an open connection may do, from its token's claims, until `expires_at`.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    pub sub: Option<String>,
    pub grant: Grant,
    /// The smaller of the claim and WS_MAX_SUBSCRIPTIONS.
    pub max_subscriptions: usize,
    pub expires_at: Instant,
    /// When `token_expiring` is due; `None` once it was sent.
    pub warn_at: Option<Instant>,
}

impl Session {
    /// `now` is this turn's clock; `exp` is read against the wall clock.
    pub fn new(claims: &Claims, server_max: usize, now: Instant) -> Session {
        let expires_at = now + until_unix(claims.exp).min(MAX_LIFETIME);
        Session {
            sub: claims.sub.clone(),
            grant: claims.subscribe_grant(),
            max_subscriptions: claims.max_subscriptions(server_max),
            expires_at,
            warn_at: Some(
                expires_at
                    .checked_sub(EXPIRY_WARNING)
                    .unwrap_or(now)
                    .max(now),
            ),
        }
    }

    /// The next moment its timer must run: the warning, else the expiry.
    pub fn next_deadline(&self) -> Instant {
        self.warn_at.unwrap_or(self.expires_at)
    }
}

/// How long from now until `secs` since the Unix epoch (zero when past).
fn until_unix(secs: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(secs).saturating_sub(now)
}

/// Each `-----BEGIN ...-----` .. `-----END ...-----` block of a PEM text, found
/// wherever the markers are: `cat old.pem new.pem` of a file without a final
/// newline glues an END and the next BEGIN on one line, and that key must not be
/// lost. A block without its END is an error.
fn pem_blocks(text: &str) -> Result<Vec<&str>, String> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    const DASHES: &str = "-----";
    let unterminated = || "holds a PEM block without its END line".to_string();
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block.find(END).ok_or_else(unterminated)? + END.len();
        let close = block[end..].find(DASHES).ok_or_else(unterminated)? + end + DASHES.len();
        blocks.push(&block[..close]);
        rest = &block[close..];
    }
    Ok(blocks)
}

/// Public keys for tests (their private halves were thrown away).
#[cfg(test)]
pub(crate) const TEST_RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAw6sd57EpcgZBJaP3V2da\nkZPtzcM0KMH2vq/qlyekeLLcJHvFJiv6cqQhc+ZEtJbv79yA5afUJzP4JHcIIYjq\ns40q6rSTsQMlM/ouvlGSz8ZKPEDFQ8xAlUIUOwyaz1z87fGSG+8EIqcqjGqxb/Zm\nFMabFh7mpzU+cIhEiV+PXMz/R9K9Us+7uVCRLXeoyg+m3AWUftAfKKwz6c1Y+Klj\n8UZVbam9BBCTUzikM3PWqukOi2FTOMjMdeWHncFA8gAsAJ0UvKGnnVfEviHeiDhJ\nRN+NFlvifNT1qFGwGnWylL39KoiojNjSz1Gt061/VBC58mQXfp6fXaLwOTUS9jjU\naQIDAQAB\n-----END PUBLIC KEY-----\n";
#[cfg(test)]
pub(crate) const TEST_EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnHgVgIEYnoesavxCSQIpszEvH2oy\nRJDFGM1tOU/2oXRbG/ivj4UNRBkGneLSv4d8LMHtDqdbFXYqGnuzbIlnKQ==\n-----END PUBLIC KEY-----\n";

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
        let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
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

    /// GHSA-h395-gr6q-cpjc (CVE-2026-25537): jsonwebtoken before 10.3 skips the
    /// `nbf` (or an unrequired `exp`) check when the claim has the wrong JSON
    /// type. The crate now refuses such a token (next test), and `Claims` reads
    /// both as numbers, so it fails as malformed either way.
    #[test]
    fn a_claim_of_the_wrong_type_fails_the_token() {
        let keys = Keys::from_secret(SECRET).unwrap();
        let t = now();
        for claims in [
            serde_json::json!({"exp": t + 60, "nbf": "99999999999"}),
            serde_json::json!({"exp": t + 60, "nbf": [1]}),
            serde_json::json!({"exp": "never"}),
            serde_json::json!({"exp": t + 60, "channels": "a.>"}),
            serde_json::json!({"exp": t + 60, "max_subscriptions": -1}),
            // Not patterns: `a.>.b` would otherwise grant all of `a.>`.
            serde_json::json!({"exp": t + 60, "channels": ["a.>.b"]}),
            serde_json::json!({"exp": t + 60, "channels": ["a"], "deny": ["a..b"]}),
            serde_json::json!({"exp": t + 60, "publish": [""]}),
        ] {
            let token = hs(claims.clone(), SECRET);
            assert_eq!(keys.verify(&token), Err(TokenError::Malformed), "{claims}");
        }
    }

    /// The advisory's payload against the crate alone, claims left untyped: a
    /// string `nbf`, and a string `exp` that is not required, are refused.
    #[test]
    fn the_crate_refuses_a_time_claim_of_the_wrong_type() {
        let key = DecodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let t = now();
        let mut nbf_checked = Validation::new(Algorithm::HS256);
        nbf_checked.validate_nbf = true;
        let mut exp_not_required = Validation::new(Algorithm::HS256);
        exp_not_required.required_spec_claims.clear();
        for (claims, validation, claim) in [
            (
                serde_json::json!({"exp": t + 60, "nbf": "99999999999"}),
                &nbf_checked,
                "nbf",
            ),
            (
                serde_json::json!({"exp": "99999999999"}),
                &exp_not_required,
                "exp",
            ),
        ] {
            let token = hs(claims.clone(), SECRET);
            let err = jsonwebtoken::decode::<serde_json::Value>(&token, &key, validation)
                .unwrap_err()
                .into_kind();
            assert_eq!(err, ErrorKind::InvalidClaimFormat(claim.into()), "{claims}");
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
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = Keys::from_pem(private).unwrap_err();
        assert!(err.starts_with("holds a private key"), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
        assert_eq!(
            format!("{:?}", Keys::from_secret(SECRET).unwrap()),
            "Keys([HS256])"
        );
    }

    #[test]
    fn a_key_file_may_hold_rsa_and_ec_keys() {
        let both = format!("{TEST_RSA_PUBLIC_PEM}\n{TEST_EC_PUBLIC_PEM}");
        let keys = Keys::from_pem(&both).unwrap();
        assert_eq!(keys.describe(), "RS256, ES256");
        assert_eq!(
            Keys::from_pem(TEST_EC_PUBLIC_PEM).unwrap().describe(),
            "ES256"
        );
        assert_ne!(keys, Keys::from_pem(TEST_RSA_PUBLIC_PEM).unwrap());
        assert_eq!(keys, Keys::from_pem(&both).unwrap());
        let all = Keys::from_secret(SECRET).unwrap().merge(keys);
        assert_eq!(all.describe(), "HS256, RS256, ES256");
        // An HS256 token is checked against the secret only, never against a
        // public key used as an HMAC secret (algorithm confusion).
        let token = hs(serde_json::json!({"exp": now() + 60}), SECRET);
        assert!(all.verify(&token).is_ok());
        let rsa_only = Keys::from_pem(TEST_RSA_PUBLIC_PEM).unwrap();
        let forged = hs(serde_json::json!({"exp": now() + 60}), TEST_RSA_PUBLIC_PEM);
        assert_eq!(rsa_only.verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn keys_of_one_algorithm_are_tried_in_turn() {
        let second = "another-secret-another-secret-xx";
        let keys = Keys::from_secret(SECRET)
            .unwrap()
            .merge(Keys::from_secret(second).unwrap());
        assert_eq!(keys.describe(), "HS256 x2");
        assert_eq!(format!("{keys:?}"), "Keys([HS256, HS256])");
        assert_eq!(keys.len(), 2);
        let t = now();
        for secret in [SECRET, second] {
            let token = hs(serde_json::json!({"exp": t + 60, "sub": "u"}), secret);
            assert_eq!(keys.verify(&token).unwrap().sub.as_deref(), Some("u"));
        }
        let third = hs(
            serde_json::json!({"exp": t + 60}),
            "a-third-secret-a-third-secret-xx",
        );
        assert_eq!(keys.verify(&third), Err(TokenError::BadSignature));
        let expired = hs(serde_json::json!({"exp": t - 1}), second);
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));
    }

    fn request(head: &str) -> Request {
        crate::http::parse_head(format!("GET /ws{head}\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_token_comes_from_the_header_then_the_query_then_the_cookie() {
        let cases = [
            (" HTTP/1.1\r\nAuthorization: Bearer h", Some("h")),
            ("?token=q HTTP/1.1\r\nAuthorization: Bearer h", Some("h")),
            ("?token=q HTTP/1.1\r\nAuthorization: Basic h", Some("q")),
            ("?a=1&token=q%2Bx HTTP/1.1", Some("q+x")),
            ("?token=q HTTP/1.1\r\nCookie: odin_ws_token=c", Some("q")),
            (" HTTP/1.1\r\nCookie: a=b; odin_ws_token=c; d=e", Some("c")),
            (" HTTP/1.1\r\nCookie: odin_ws_token=\"c\"", Some("c")),
            (" HTTP/1.1\r\nCookie: other_token=c", None),
            ("?token= HTTP/1.1\r\nAuthorization: Bearer ", None),
        ];
        for (head, want) in cases {
            assert_eq!(request_token(&request(head)).as_deref(), want, "{head}");
        }
        let cookie = request(" HTTP/1.1\r\nCookie: odin_ws_token=c");
        assert_eq!(
            bearer_or_query(&cookie),
            None,
            "the cookie is the JWT's only"
        );
    }

    #[test]
    fn a_session_warns_30_seconds_before_exp_or_at_once() {
        let t = Instant::now();
        let claims = |exp| Claims {
            exp,
            nbf: None,
            sub: Some("u".into()),
            channels: vec!["a.>".into()],
            deny: vec![],
            max_subscriptions: Some(500),
            publish: vec![],
        };
        let long = Session::new(&claims(now() + 600), 100, t);
        let left = long.expires_at - t;
        assert!(left > Duration::from_secs(598) && left <= Duration::from_secs(600));
        assert_eq!(long.warn_at, Some(long.expires_at - EXPIRY_WARNING));
        assert_eq!(long.max_subscriptions, 100);
        let short = Session::new(&claims(now() + 5), 100, t);
        assert_eq!(short.warn_at, Some(t), "less than 30 s left: at once");
        let far = Session::new(&claims(u64::MAX), 100, t);
        assert_eq!(far.expires_at - t, MAX_LIFETIME);
    }

    #[test]
    fn pem_blocks_are_split() {
        let text =
            "x\n-----BEGIN A-----\n1\n-----END A-----\n-----BEGIN B-----\n2\n-----END B-----\n";
        let blocks = pem_blocks(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1], "-----BEGIN B-----\n2\n-----END B-----");
        let glued = "-----BEGIN A-----\n1\n-----END A----------BEGIN B-----\n2\n-----END B-----";
        assert_eq!(pem_blocks(glued).unwrap().len(), 2);
        assert!(pem_blocks("-----BEGIN A-----\n1\n").is_err());
        // Two keys glued as `cat` glues a file without its last newline.
        let both = format!("{}{}", TEST_RSA_PUBLIC_PEM.trim_end(), TEST_EC_PUBLIC_PEM);
        assert_eq!(Keys::from_pem(&both).unwrap().describe(), "RS256, ES256");
    }
}
