//! The client protocol: JSON text frames in, replies out (DESIGN.md "Client protocol").

use serde::Deserialize;
use serde_json::value::RawValue;

/// A client request after parsing. `id` is echoed verbatim.
#[derive(Debug)]
pub enum ClientMessage {
    Subscribe {
        channels: Vec<String>,
        id: Option<Box<RawValue>>,
    },
    Unsubscribe {
        channels: Vec<String>,
        id: Option<Box<RawValue>>,
    },
    Ping {
        id: Option<Box<RawValue>>,
    },
}

/// A request that gets an error frame; the connection lives on.
#[derive(Debug)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidChannel,
    TooManySubscriptions,
    RateLimited,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    channels: Option<Vec<String>>,
    id: Option<Box<RawValue>>,
}

pub fn parse(text: &str) -> Result<ClientMessage, ClientError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| ClientError {
        code: ErrorCode::InvalidJson,
        message: format!("not a JSON request object: {e}"),
        id: None,
    })?;
    let id = env.id;
    let channels = |id| {
        env.channels.filter(|c| !c.is_empty()).ok_or(ClientError {
            code: ErrorCode::InvalidChannel,
            message: "\"channels\" must be a non-empty array of strings".into(),
            id,
        })
    };
    match env.kind.as_deref() {
        Some("subscribe") => Ok(ClientMessage::Subscribe {
            channels: channels(id.clone())?,
            id,
        }),
        Some("unsubscribe") => Ok(ClientMessage::Unsubscribe {
            channels: channels(id.clone())?,
            id,
        }),
        Some("ping") => Ok(ClientMessage::Ping { id }),
        Some(other) => Err(ClientError {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown type {:?}; expected subscribe, unsubscribe or ping",
                truncate(other)
            ),
            id,
        }),
        None => Err(ClientError {
            code: ErrorCode::UnknownType,
            message: "missing \"type\"".into(),
            id,
        }),
    }
}

/// Keeps echoed client strings short.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn with_id(mut json: String, id: Option<&RawValue>) -> String {
    if let Some(id) = id {
        json.pop();
        json.push_str(",\"id\":");
        json.push_str(id.get());
        json.push('}');
    }
    json
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

pub fn welcome(session: &str, server: &str, ping_interval_ms: u128) -> String {
    format!(
        "{{\"type\":\"welcome\",\"session\":{},\"server\":{},\"ping_interval_ms\":{ping_interval_ms}}}",
        quote(session),
        quote(server)
    )
}

/// `kind` is "subscribed" or "unsubscribed".
pub fn ack(kind: &str, channels: &[&str], id: Option<&RawValue>) -> String {
    let list = serde_json::to_string(channels).expect("strings always serialize");
    with_id(format!("{{\"type\":\"{kind}\",\"channels\":{list}}}"), id)
}

pub fn pong(id: Option<&RawValue>) -> String {
    with_id("{\"type\":\"pong\"}".to_string(), id)
}

pub fn error(code: ErrorCode, message: &str, id: Option<&RawValue>) -> String {
    with_id(
        format!(
            "{{\"type\":\"error\",\"code\":\"{}\",\"message\":{}}}",
            code.as_str(),
            quote(message)
        ),
        id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        match parse(r#"{"type":"subscribe","channels":["a.b","a.*"],"id":7}"#).unwrap() {
            ClientMessage::Subscribe { channels, id } => {
                assert_eq!(channels, ["a.b", "a.*"]);
                assert_eq!(id.unwrap().get(), "7");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping { id: None })
        ));
    }

    #[test]
    fn errors_by_code() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("nope"), ErrorCode::InvalidJson);
        assert_eq!(code("[1]"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance","id":"x"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"subscribe"}"#), ErrorCode::InvalidChannel);
        assert_eq!(
            code(r#"{"type":"subscribe","channels":[]}"#),
            ErrorCode::InvalidChannel
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":[1]}"#),
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse(r#"{"type":"dance","id":"x"}"#)
                .unwrap_err()
                .id
                .unwrap()
                .get(),
            "\"x\""
        );
    }

    #[test]
    fn replies_echo_id() {
        let id = RawValue::from_string("{\"k\":[1]}".into()).unwrap();
        assert_eq!(pong(Some(&id)), r#"{"type":"pong","id":{"k":[1]}}"#);
        assert_eq!(
            ack("subscribed", &["a.>"], None),
            r#"{"type":"subscribed","channels":["a.>"]}"#
        );
        let e = error(ErrorCode::InvalidChannel, "bad \"x\"", None);
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["code"], "invalid_channel");
    }
}
