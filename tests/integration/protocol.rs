//! The client protocol: replies, error frames, and a connection that survives them.

use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

fn pong_follows(c: &mut Client) {
    send(c, r#"{"type":"ping","id":42}"#);
    let pong = read_json(c);
    assert_eq!(pong, serde_json::json!({"type": "pong", "id": 42}));
}

#[test]
fn welcome_then_replies_with_echoed_ids() {
    let s = Server::start(&[("WS_PING_INTERVAL", "7s")]);
    let mut c = s.connect();
    let welcome = read_json(&mut c);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["ping_interval_ms"], 7000);
    assert!(welcome["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(welcome["server"].is_string());
    send(
        &mut c,
        r#"{"type":"subscribe","channels":["a.b","a.*"],"id":{"k":"v"}}"#,
    );
    assert_eq!(
        read_json(&mut c),
        serde_json::json!({"type":"subscribed","channels":["a.b","a.*"],"id":{"k":"v"}})
    );
    send(
        &mut c,
        r#"{"type":"unsubscribe","channels":["a.*"],"id":8}"#,
    );
    assert_eq!(
        read_json(&mut c),
        serde_json::json!({"type":"unsubscribed","channels":["a.*"],"id":8})
    );
    pong_follows(&mut c);
}

#[test]
fn bad_messages_get_error_frames_and_the_connection_lives() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let cases = [
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_json"),
        (r#"{"type":"dance","id":3}"#, "unknown_type"),
        (r#"{"channels":["a"]}"#, "unknown_type"),
        (
            r#"{"type":"subscribe","channels":["a..b"],"id":4}"#,
            "invalid_channel",
        ),
        (r#"{"type":"subscribe","channels":[]}"#, "invalid_channel"),
        (
            r#"{"type":"unsubscribe","channels":["a.>.b"]}"#,
            "invalid_channel",
        ),
    ];
    for (input, code) in cases {
        send(&mut c, input);
        let reply = read_json(&mut c);
        assert_eq!(reply["type"], "error", "{input}");
        assert_eq!(reply["code"], code, "{input}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
        pong_follows(&mut c);
    }
    assert_eq!(
        s.metric("odin_ws_client_errors_total{code=\"invalid_json\"}"),
        2.0
    );
}

#[test]
fn invalid_channel_is_named_and_valid_ones_still_subscribe() {
    let s = Server::start(&[]);
    let mut c = s.client();
    send(
        &mut c,
        r#"{"type":"subscribe","channels":["ok.one","bad channel","ok.*"],"id":1}"#,
    );
    let error = read_json(&mut c);
    assert_eq!(error["code"], "invalid_channel");
    assert!(error["message"].as_str().unwrap().contains("bad channel"));
    assert_eq!(error["id"], 1);
    let ack = read_json(&mut c);
    assert_eq!(ack["channels"], serde_json::json!(["ok.one", "ok.*"]));
    assert_eq!(s.publish("ok.two", "2").status, 202);
    let msg = read_json(&mut c);
    assert_eq!(
        (msg["channel"].as_str(), msg["data"].as_i64()),
        (Some("ok.two"), Some(2))
    );
}

#[test]
fn subscription_limit_is_enforced() {
    let s = Server::start(&[("WS_MAX_SUBSCRIPTIONS", "2")]);
    let mut c = s.client();
    send(&mut c, r#"{"type":"subscribe","channels":["a","b","c"]}"#);
    let error = read_json(&mut c);
    assert_eq!(error["code"], "too_many_subscriptions");
    assert_eq!(read_json(&mut c)["channels"], serde_json::json!(["a", "b"]));
}

#[test]
fn binary_frames_close_with_1003() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.send(Message::binary(vec![1, 2, 3])).unwrap();
    loop {
        match c.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Unsupported);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}
