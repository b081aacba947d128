//! `protocol::parse` on arbitrary text, then every reply the server would build
//! from what it returned (as `reactor/ws_conn.rs` builds them): each must be
//! valid JSON, with `type` set and the client's `id` echoed as the same value
//! (or, past `MAX_ECHOED_ID` bytes, `id_omitted`). The refused-channel error
//! frames and their caps are `reply_caps`'s.

#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_ws::protocol::{self, ClientMessage};
use serde_json::Value;
use serde_json::value::RawValue;

/// Parses a reply the way a client would; panics (a finding) if it is not JSON.
fn reply(json: &str, kind: &str, id: Option<&RawValue>) -> Value {
    let v: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("reply is not valid JSON ({e}): {json:?}"));
    assert_eq!(v["type"], kind, "{json:?}");
    match id {
        // Too long to echo: `reply_caps` checks that case.
        Some(id) if id.get().len() > protocol::MAX_ECHOED_ID => {
            assert_eq!(v["id_omitted"], true, "{json:?}");
        }
        Some(id) => {
            let want: Value = serde_json::from_str(id.get())
                .unwrap_or_else(|e| panic!("parsed id is not valid JSON ({e}): {:?}", id.get()));
            assert_eq!(v["id"], want, "id not echoed: {json:?}");
        }
        None => assert!(v.get("id").is_none(), "{json:?}"),
    }
    v
}

fn acks(kind: &str, channels: &[String], id: Option<&RawValue>) {
    let list: Vec<&str> = channels.iter().map(String::as_str).collect();
    let v = reply(&protocol::ack(kind, &list, id), kind, id);
    assert_eq!(v["channels"], serde_json::json!(list));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // tungstenite rejects a text frame that is not UTF-8
    };
    match protocol::parse(text) {
        Ok(ClientMessage::Subscribe { channels, id }) => {
            assert!(!channels.is_empty());
            acks("subscribed", &channels, id.as_deref());
        }
        Ok(ClientMessage::Unsubscribe { channels, id }) => {
            assert!(!channels.is_empty());
            acks("unsubscribed", &channels, id.as_deref());
        }
        Ok(ClientMessage::Ping { id }) => {
            reply(&protocol::pong(id.as_deref()), "pong", id.as_deref());
        }
        Err(e) => {
            let json = protocol::error(e.code, &e.message, e.id.as_deref());
            let v = reply(&json, "error", e.id.as_deref());
            assert_eq!(v["code"], e.code.as_str());
            assert_eq!(v["message"], e.message.as_str());
        }
    }
});
