//! The client protocol: JSON text frames in, replies out (docs/protocol.md).

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest `id` echoed, in bytes of its JSON text: a longer one is left out of
/// the reply, which says so with `"id_omitted":true`.
pub const MAX_ECHOED_ID: usize = 128;
/// Refused channels named in one error frame; the rest are only counted.
pub const MAX_LISTED_CHANNELS: usize = 16;
/// Characters of a refused channel name echoed in an error frame.
pub const MAX_ECHOED_CHANNEL: usize = 64;
/// Most bytes of a `RefusedChannels` error frame: each listed name may be
/// escaped to 6 bytes a character twice (list and message), plus its reason.
pub const MAX_CHANNELS_ERROR_BYTES: usize =
    MAX_LISTED_CHANNELS * (2 * (6 * MAX_ECHOED_CHANNEL + 4) + 80) + 512 + MAX_ECHOED_ID;
/// Characters of a JSON parser's complaint echoed (it may quote the input).
const MAX_PARSE_DETAIL: usize = 200;

/// A client request after parsing. `id` is echoed verbatim (up to `MAX_ECHOED_ID`).
#[derive(Debug)]
pub enum ClientMessage {
    Subscribe {
        channels: Vec<String>,
        id: Option<Box<RawValue>>,
        catch_up: CatchUp,
    },
    Unsubscribe {
        channels: Vec<String>,
        id: Option<Box<RawValue>>,
    },
    Ping {
        id: Option<Box<RawValue>>,
    },
    /// A new token for the connection (JWT authentication). Never echoed.
    Refresh {
        token: String,
        id: Option<Box<RawValue>>,
    },
}

/// What a subscriber asks for besides live messages (docs/protocol.md, "Positions,
/// resume and snapshots").
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct CatchUp {
    /// Resume: every message after this position, then live.
    pub since: Option<Position>,
    /// The latest message of each covered channel, flagged `"snapshot":true`.
    #[serde(default)]
    pub snapshot: bool,
}

/// A position in the sequence space `epoch` names.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}

/// How a subscribe with `since` was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    Recovered,
    /// Not recovered: `epoch_changed`, `too_old` or `unavailable`.
    NotRecovered(&'static str),
}

/// A request that gets an error frame; the connection lives on.
#[derive(Debug)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<Box<RawValue>>,
}

/// The `code` of an error frame. A new code goes into `ALL` too: the
/// `odin_ws_client_errors_total` metric has one sample per entry of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidChannel,
    TooManySubscriptions,
    RateLimited,
    /// Channels outside the connection's token grant.
    Forbidden,
    /// A refresh whose token is not valid for this connection.
    InvalidToken,
}

impl ErrorCode {
    /// Every code, in declaration order (so `code as usize` indexes it).
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidChannel,
        ErrorCode::TooManySubscriptions,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::InvalidToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    channels: Option<Vec<String>>,
    id: Option<Box<RawValue>>,
    token: Option<String>,
    #[serde(flatten)]
    catch_up: CatchUp,
}

pub fn parse(text: &str) -> Result<ClientMessage, ClientError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| ClientError {
        code: ErrorCode::InvalidJson,
        message: format!(
            "not a JSON request object: {}",
            cut(&e.to_string(), MAX_PARSE_DETAIL)
        ),
        id: None,
    })?;
    if let Some(Err(e)) = env.id.as_deref().map(check_id) {
        return Err(ClientError {
            code: ErrorCode::InvalidJson,
            message: format!(
                "\"id\" is not valid JSON: {}",
                cut(&e.to_string(), MAX_PARSE_DETAIL)
            ),
            id: None,
        });
    }
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
            catch_up: env.catch_up,
        }),
        Some("unsubscribe") => Ok(ClientMessage::Unsubscribe {
            channels: channels(id.clone())?,
            id,
        }),
        Some("ping") => Ok(ClientMessage::Ping { id }),
        Some("refresh") => match env.token.filter(|t| !t.is_empty()) {
            Some(token) => Ok(ClientMessage::Refresh { token, id }),
            None => Err(ClientError {
                code: ErrorCode::InvalidToken,
                message: "\"token\" must be a non-empty string".into(),
                id,
            }),
        },
        Some(other) => Err(ClientError {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown type {:?}; expected subscribe, unsubscribe, ping or refresh",
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

/// `RawValue` only skips over the id, so it lets through what a strict JSON
/// parser rejects: numbers out of `f64` range (`1e400`) and lone UTF-16
/// surrogate escapes (`"\ud800"`). Echoed verbatim, such an id would make the
/// reply unreadable, so the request is refused like any other invalid JSON.
/// (`IgnoredAny` would not do: it skips the same way `RawValue` does.)
fn check_id(id: &RawValue) -> Result<(), serde_json::Error> {
    serde_json::from_str::<serde_json::Value>(id.get()).map(drop)
}

/// Keeps echoed client strings short.
fn truncate(s: &str) -> &str {
    cut(s, MAX_ECHOED_CHANNEL)
}

/// The first `max` characters of `s`.
fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Adds the echoed `id` to a reply object, or notes that it was too long to echo.
fn with_id(mut json: String, id: Option<&RawValue>) -> String {
    if let Some(id) = id {
        json.pop();
        if id.get().len() <= MAX_ECHOED_ID {
            json.push_str(",\"id\":");
            json.push_str(id.get());
        } else {
            json.push_str(",\"id_omitted\":true");
        }
        json.push('}');
    }
    json
}

/// The channels of one request refused for one reason: the first
/// `MAX_LISTED_CHANNELS` with why, the rest only counted, so one error frame
/// of bounded size answers a request of any length.
#[derive(Default)]
pub struct RefusedChannels<'a> {
    listed: Vec<(&'a str, String)>,
    unlisted: usize,
}

impl<'a> RefusedChannels<'a> {
    /// Notes a refused channel; `why` is only formatted for a listed one.
    pub fn add(&mut self, channel: &'a str, why: impl FnOnce() -> String) {
        if self.listed.len() < MAX_LISTED_CHANNELS {
            self.listed.push((channel, why()));
        } else {
            self.unlisted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Channels refused but not named.
    pub fn unlisted(&self) -> usize {
        self.unlisted
    }

    /// The one error frame for these channels (`None` when there are none):
    /// `message` is `summary` followed by each listed channel and why, and
    /// `channels` names them, each cut to `MAX_ECHOED_CHANNEL` characters;
    /// `unlisted` counts the rest.
    pub fn error(&self, code: ErrorCode, summary: &str, id: Option<&RawValue>) -> Option<String> {
        if self.listed.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.listed.iter().map(|(ch, _)| truncate(ch)).collect();
        let mut message = summary.to_string();
        for (i, ((_, why), name)) in self.listed.iter().zip(&names).enumerate() {
            message.push_str(if i == 0 { ": " } else { "; " });
            message.push_str(&quote(name));
            if !why.is_empty() {
                message.push_str(" (");
                message.push_str(why);
                message.push(')');
            }
        }
        if self.unlisted > 0 {
            message.push_str(&format!("; and {} more", self.unlisted));
        }
        let mut json = error(code, &message, None);
        json.pop();
        let list = serde_json::to_string(&names).expect("strings always serialize");
        json.push_str(&format!(",\"channels\":{list}"));
        if self.unlisted > 0 {
            json.push_str(&format!(",\"unlisted\":{}", self.unlisted));
        }
        json.push('}');
        Some(with_id(json, id))
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

pub fn welcome(session: &str, server: &str, ping_interval_ms: u128, epoch: &str) -> String {
    format!(
        "{{\"type\":\"welcome\",\"session\":{},\"server\":{},\"ping_interval_ms\":{ping_interval_ms},\"epoch\":{}}}",
        quote(session),
        quote(server),
        quote(epoch)
    )
}

/// `kind` is "subscribed" or "unsubscribed"; `recovery` answers a `since`.
pub fn ack(
    kind: &str,
    channels: &[&str],
    id: Option<&RawValue>,
    recovery: Option<Recovery>,
) -> String {
    let list = serde_json::to_string(channels).expect("strings always serialize");
    let recovered = match recovery {
        None => String::new(),
        Some(Recovery::Recovered) => ",\"recovered\":true".into(),
        Some(Recovery::NotRecovered(reason)) => {
            format!(",\"recovered\":false,\"reason\":\"{reason}\"")
        }
    };
    with_id(
        format!("{{\"type\":\"{kind}\",\"channels\":{list}{recovered}}}"),
        id,
    )
}

/// Tells a client it missed messages on `channels` (its patterns): `reason` is
/// `overrun`, `dropped` or `skipped`; `count` when known. The list is capped like
/// an error frame's.
pub fn gap(channels: &[&str], reason: &str, count: Option<u64>) -> String {
    let listed: Vec<String> = channels
        .iter()
        .take(MAX_LISTED_CHANNELS)
        .map(|c| cut(c, MAX_ECHOED_CHANNEL).to_string())
        .collect();
    let list = serde_json::to_string(&listed).expect("strings always serialize");
    let count = count.map_or(String::new(), |n| format!(",\"count\":{n}"));
    format!("{{\"type\":\"gap\",\"channels\":{list},\"reason\":\"{reason}\"{count}}}")
}

/// Warns that the connection's token expires in `in_ms`; a `refresh` keeps it.
pub fn token_expiring(in_ms: u128) -> String {
    format!("{{\"type\":\"token_expiring\",\"in_ms\":{in_ms}}}")
}

/// The answer to a successful `refresh`.
pub fn refreshed(id: Option<&RawValue>) -> String {
    with_id("{\"type\":\"refreshed\"}".to_string(), id)
}

/// Subscriptions a refreshed token no longer allows, removed by the server.
pub fn revoked(channels: &[&str], id: Option<&RawValue>) -> String {
    let list = serde_json::to_string(channels).expect("strings always serialize");
    with_id(
        format!("{{\"type\":\"unsubscribed\",\"channels\":{list},\"reason\":\"forbidden\"}}"),
        id,
    )
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
            ClientMessage::Subscribe {
                channels,
                id,
                catch_up,
            } => {
                assert_eq!(channels, ["a.b", "a.*"]);
                assert_eq!(id.unwrap().get(), "7");
                assert_eq!(catch_up, CatchUp::default());
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
    fn refresh_carries_its_token_and_auth_replies_are_json() {
        match parse(r#"{"type":"refresh","token":"a.b.c","id":4}"#).unwrap() {
            ClientMessage::Refresh { token, id } => {
                assert_eq!((token.as_str(), id.unwrap().get()), ("a.b.c", "4"));
            }
            other => panic!("{other:?}"),
        }
        for text in [r#"{"type":"refresh"}"#, r#"{"type":"refresh","token":""}"#] {
            assert_eq!(parse(text).unwrap_err().code, ErrorCode::InvalidToken);
        }
        // A token of the wrong type is not quoted back.
        let e = parse(r#"{"type":"refresh","token":["secret-ish"]}"#).unwrap_err();
        assert!(!e.message.contains("secret-ish"), "{}", e.message);
        let id = RawValue::from_string("9".into()).unwrap();
        assert_eq!(
            token_expiring(1500),
            r#"{"type":"token_expiring","in_ms":1500}"#
        );
        assert_eq!(refreshed(Some(&id)), r#"{"type":"refreshed","id":9}"#);
        assert_eq!(
            revoked(&["a.x", "b.*"], Some(&id)),
            r#"{"type":"unsubscribed","channels":["a.x","b.*"],"reason":"forbidden","id":9}"#
        );
    }

    /// Found by `cargo fuzz run client_message`: an id holding a number out
    /// of `f64` range was echoed verbatim, and the reply was not valid JSON
    /// ("number out of range"). A lone surrogate escape is the same hole
    /// (`RawValue` does not check escapes) and is covered with it.
    #[test]
    fn fuzz_regression_id_that_is_not_strict_json() {
        let cases = [
            r#"{"yp,e":"ping","id":{"k":[1e+111111111111111111111,2.5e3,null,true]}}"#,
            r#"{"type":"ping","id":-1e400}"#,
            r#"{"type":"subscribe","channels":["a"],"id":"\ud800"}"#,
            r#"{"type":"dance","id":["\udc00x"]}"#,
        ];
        for text in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(
                (e.code, e.id.is_none()),
                (ErrorCode::InvalidJson, true),
                "{text}"
            );
            let reply = error(e.code, &e.message, e.id.as_deref());
            serde_json::from_str::<serde_json::Value>(&reply).unwrap();
        }
        // Escapes that are valid JSON still pass through verbatim.
        match parse(r#"{"type":"ping","id":"\ud83d\ude00\u00e9"}"#).unwrap() {
            ClientMessage::Ping { id } => {
                let reply = pong(id.as_deref());
                assert_eq!(reply, r#"{"type":"pong","id":"\ud83d\ude00\u00e9"}"#);
                serde_json::from_str::<serde_json::Value>(&reply).unwrap();
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn all_holds_each_code_once_in_declaration_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "{code:?}");
        }
        let mut names = ErrorCode::ALL.map(ErrorCode::as_str);
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
    }

    #[test]
    fn ids_past_the_cap_are_left_out_and_said_so() {
        let at_cap =
            RawValue::from_string(format!("\"{}\"", "x".repeat(MAX_ECHOED_ID - 2))).unwrap();
        let over = RawValue::from_string(format!("\"{}\"", "x".repeat(MAX_ECHOED_ID - 1))).unwrap();
        assert!(pong(Some(&at_cap)).contains(at_cap.get()));
        assert_eq!(pong(Some(&over)), r#"{"type":"pong","id_omitted":true}"#);
    }

    #[test]
    fn refused_channels_make_one_bounded_frame() {
        let names: Vec<String> = (0..100)
            .map(|i| format!("{i}{}", "\u{1}".repeat(500)))
            .collect();
        let mut refused = RefusedChannels::default();
        assert!(
            refused
                .error(ErrorCode::InvalidChannel, "x", None)
                .is_none()
        );
        for name in &names {
            refused.add(name, || "bad".into());
        }
        let frame = refused
            .error(ErrorCode::InvalidChannel, "invalid", None)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["channels"].as_array().unwrap().len(), MAX_LISTED_CHANNELS);
        assert_eq!(v["unlisted"], 100 - MAX_LISTED_CHANNELS);
        let first = v["channels"][0].as_str().unwrap();
        assert_eq!(first.chars().count(), MAX_ECHOED_CHANNEL);
        assert!(
            frame.len() <= MAX_CHANNELS_ERROR_BYTES,
            "{} bytes",
            frame.len()
        );
    }

    #[test]
    fn replies_echo_id() {
        let id = RawValue::from_string("{\"k\":[1]}".into()).unwrap();
        assert_eq!(pong(Some(&id)), r#"{"type":"pong","id":{"k":[1]}}"#);
        assert_eq!(
            ack("subscribed", &["a.>"], None, None),
            r#"{"type":"subscribed","channels":["a.>"]}"#
        );
        let e = error(ErrorCode::InvalidChannel, "bad \"x\"", None);
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["code"], "invalid_channel");
    }

    #[test]
    fn subscribe_takes_since_and_snapshot() {
        let text = r#"{"type":"subscribe","channels":["a"],"since":{"epoch":"e1","seq":12},"snapshot":true}"#;
        let ClientMessage::Subscribe { catch_up, .. } = parse(text).unwrap() else {
            panic!("not a subscribe");
        };
        let since = catch_up.since.unwrap();
        assert_eq!((since.epoch.as_str(), since.seq), ("e1", 12));
        assert!(catch_up.snapshot);
        // A position that is not {epoch, seq} is a bad request, not an ignored field.
        for bad in [
            r#""since":5"#,
            r#""since":{"seq":-1,"epoch":"e"}"#,
            r#""snapshot":"yes""#,
        ] {
            let text = format!(r#"{{"type":"subscribe","channels":["a"],{bad}}}"#);
            assert_eq!(
                parse(&text).unwrap_err().code,
                ErrorCode::InvalidJson,
                "{bad}"
            );
        }
    }

    #[test]
    fn acks_say_whether_they_recovered() {
        let ok = ack("subscribed", &["a"], None, Some(Recovery::Recovered));
        assert_eq!(
            ok,
            r#"{"type":"subscribed","channels":["a"],"recovered":true}"#
        );
        let old = ack(
            "subscribed",
            &["a"],
            None,
            Some(Recovery::NotRecovered("too_old")),
        );
        assert_eq!(
            old,
            r#"{"type":"subscribed","channels":["a"],"recovered":false,"reason":"too_old"}"#
        );
    }

    #[test]
    fn gap_frames_are_capped() {
        assert_eq!(
            gap(&["a.*"], "overrun", None),
            r#"{"type":"gap","channels":["a.*"],"reason":"overrun"}"#
        );
        let many: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let v: serde_json::Value = serde_json::from_str(&gap(&many, "dropped", Some(3))).unwrap();
        assert_eq!(v["channels"].as_array().unwrap().len(), MAX_LISTED_CHANNELS);
        assert_eq!(v["count"], 3);
    }
}
