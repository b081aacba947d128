//! The token parser on arbitrary input (`auth`): what a stranger's request or
//! `refresh` hands it. It must never panic, and
//! - an arbitrary string checked against an HS256 secret and RS256/ES256 public
//!   keys is refused, with the same reason every time (the fuzzer cannot forge
//!   a signature);
//! - the input split at its first `|` into a JOSE header and a claims text, both
//!   signed with the secret (so the claims' parser is reached, as from a trusted
//!   issuer): a token accepted has the claims it was given (`exp` in the future,
//!   `nbf` past), and its session and grants work on any pattern;
//! - the input as a request head: where the token is found (Bearer, `?token=`,
//!   the cookie) never panics, and what is found is checked like any token.

#![no_main]

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use odin_ws::auth::{self, Keys, Session};
use odin_ws::http::parse_head;

const SECRET: &str = "fuzzing-secret-fuzzing-secret-fuzzing";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAw6sd57EpcgZBJaP3V2da\nkZPtzcM0KMH2vq/qlyekeLLcJHvFJiv6cqQhc+ZEtJbv79yA5afUJzP4JHcIIYjq\ns40q6rSTsQMlM/ouvlGSz8ZKPEDFQ8xAlUIUOwyaz1z87fGSG+8EIqcqjGqxb/Zm\nFMabFh7mpzU+cIhEiV+PXMz/R9K9Us+7uVCRLXeoyg+m3AWUftAfKKwz6c1Y+Klj\n8UZVbam9BBCTUzikM3PWqukOi2FTOMjMdeWHncFA8gAsAJ0UvKGnnVfEviHeiDhJ\nRN+NFlvifNT1qFGwGnWylL39KoiojNjSz1Gt061/VBC58mQXfp6fXaLwOTUS9jjU\naQIDAQAB\n-----END PUBLIC KEY-----\n";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnHgVgIEYnoesavxCSQIpszEvH2oy\nRJDFGM1tOU/2oXRbG/ivj4UNRBkGneLSv4d8LMHtDqdbFXYqGnuzbIlnKQ==\n-----END PUBLIC KEY-----\n";

fn keys() -> Keys {
    let pem = format!("{RSA_PUBLIC}{EC_PUBLIC}");
    Keys::from_secret(SECRET)
        .unwrap()
        .merge(Keys::from_pem(&pem).unwrap())
}

/// `header.claims.signature` signed with the secret, whatever the texts hold.
fn signed(header: &str, claims: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let text = String::from_utf8_lossy(data);
    let first = keys.verify(&text);
    assert!(first.is_err(), "an unsigned input was accepted");
    assert_eq!(keys.verify(&text), first);

    if let Some((header, claims)) = text.split_once('|') {
        let token = signed(header, claims);
        if let Ok(c) = keys.verify(&token) {
            let value: serde_json::Value = serde_json::from_str(claims).expect("claims were JSON");
            assert_eq!(value["exp"].as_u64(), Some(c.exp));
            let session = Session::new(&c, 100, Instant::now());
            assert!(session.max_subscriptions <= 100);
            for pattern in ["a", "a.*", "a.>", ">", "*.b"] {
                let _ = session.grant.permits(pattern);
                let _ = c.publish_grant().permits(pattern);
            }
        }
    }

    if let Ok(Some(req)) = parse_head(data) {
        if let Some(token) = auth::request_token(&req) {
            assert!(!token.is_empty());
            assert!(keys.verify(&token).is_err());
        }
    }
});
