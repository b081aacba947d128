//! `protocol::parse` on arbitrary text, then every reply the server would build
//! from what it returned (as `reactor/ws_conn.rs` builds them): each must be
//! valid JSON, with `type` set and the client's `id` echoed as the same value
//! (or, past `MAX_ECHOED_ID` bytes, `id_omitted`). The refused-channel error
//! frames and their caps are `reply_caps`'s.

#![no_main]

mod replies;

use libfuzzer_sys::fuzz_target;
use odin_ws::protocol::{self, ClientMessage};
use replies::reply;
use serde_json::value::RawValue;

fn acks(kind: &str, channels: &[String], id: Option<&RawValue>) {
    let list: Vec<&str> = channels.iter().map(String::as_str).collect();
    let v = reply(&protocol::ack(kind, &list, id, None), kind, id);
    assert_eq!(v["channels"], serde_json::json!(list));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // tungstenite rejects a text frame that is not UTF-8
    };
    match protocol::parse(text) {
        Ok(ClientMessage::Subscribe { channels, id, .. }) => {
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
        Ok(ClientMessage::Refresh { token, id }) => {
            assert!(!token.is_empty());
            reply(
                &protocol::refreshed(id.as_deref()),
                "refreshed",
                id.as_deref(),
            );
        }
        Err(e) => {
            let json = protocol::error(e.code, &e.message, e.id.as_deref());
            let v = reply(&json, "error", e.id.as_deref());
            assert_eq!(v["code"], e.code.as_str());
            assert_eq!(v["message"], e.message.as_str());
        }
    }
});
