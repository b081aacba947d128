//! The reply path with its caps: `protocol::parse` on arbitrary text, then the
//! error frames the server builds for refused channels (`RefusedChannels`, as
//! `reactor/ws_conn.rs` fills it) and every other reply. Each must be valid
//! JSON, echo the `id` only up to `MAX_ECHOED_ID` bytes (else `id_omitted`),
//! name at most `MAX_LISTED_CHANNELS` channels, each a prefix of the refused
//! one of at most `MAX_ECHOED_CHANNEL` characters, count the rest, and stay
//! within `MAX_CHANNELS_ERROR_BYTES` however long the request.

#![no_main]

mod replies;

use libfuzzer_sys::fuzz_target;
use odin_ws::channel;
use odin_ws::protocol::{self, ClientMessage, ErrorCode, RefusedChannels};
use replies::reply;
use serde_json::value::RawValue;

/// The one `invalid_channel` frame of a request, and its caps.
fn refusals(channels: &[String], id: Option<&RawValue>) {
    let mut refused = RefusedChannels::default();
    let mut invalid = Vec::new();
    for ch in channels {
        if let Err(e) = channel::validate_pattern(ch) {
            refused.add(ch, || e.to_string());
            invalid.push(ch.as_str());
        }
    }
    let Some(json) = refused.error(ErrorCode::InvalidChannel, "invalid channels", id) else {
        assert!(invalid.is_empty());
        return;
    };
    assert!(
        json.len() <= protocol::MAX_CHANNELS_ERROR_BYTES,
        "{} bytes",
        json.len()
    );
    let v = reply(&json, "error", id);
    assert_eq!(v["code"], "invalid_channel");
    let named = v["channels"].as_array().expect("a channels list");
    assert_eq!(
        named.len(),
        invalid.len().min(protocol::MAX_LISTED_CHANNELS)
    );
    for (name, full) in named.iter().zip(&invalid) {
        let name = name.as_str().expect("a string");
        assert!(
            full.starts_with(name),
            "{name:?} is not a prefix of {full:?}"
        );
        assert!(name.chars().count() <= protocol::MAX_ECHOED_CHANNEL);
    }
    let unlisted = invalid.len() - named.len();
    assert_eq!(refused.unlisted(), unlisted);
    match unlisted {
        0 => assert!(v.get("unlisted").is_none()),
        n => assert_eq!(v["unlisted"], n),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // tungstenite rejects a text frame that is not UTF-8
    };
    match protocol::parse(text) {
        Ok(
            ClientMessage::Subscribe { channels, id, .. }
            | ClientMessage::Unsubscribe { channels, id },
        ) => {
            refusals(&channels, id.as_deref());
            let list: Vec<&str> = channels.iter().map(String::as_str).collect();
            reply(
                &protocol::ack("subscribed", &list, id.as_deref(), None),
                "subscribed",
                id.as_deref(),
            );
        }
        Ok(ClientMessage::Ping { id }) => {
            reply(&protocol::pong(id.as_deref()), "pong", id.as_deref());
        }
        Ok(ClientMessage::Refresh { id, .. }) => {
            reply(
                &protocol::refreshed(id.as_deref()),
                "refreshed",
                id.as_deref(),
            );
        }
        Err(e) => {
            let json = protocol::error(e.code, &e.message, e.id.as_deref());
            assert!(
                e.message.len() <= 1024,
                "a long complaint: {} bytes",
                e.message.len()
            );
            reply(&json, "error", e.id.as_deref());
        }
    }
});
