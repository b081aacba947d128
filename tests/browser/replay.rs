//! /client.js against a scripted WebSocket peer that sends what odin-ws sends only
//! in rare cases, on cue: duplicate and replayed `seq`s and welcomes whose `epoch`
//! changes. The client must drop what it already has, resume with the highest
//! `seq` of the epoch, and start over when the epoch is gone.

use std::net::TcpListener;
use std::sync::mpsc::{Receiver, channel};

use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::chromium::{Chromium, serve_page};
use crate::common::DEADLINE;
use crate::support::Server;

/// One connection's script: its welcome, then messages as (channel, seq).
struct Visit {
    welcome: Value,
    messages: &'static [(&'static str, u64)],
}

/// Plays one visit per connection, in order, each ended by a close 1001 but the
/// last; sends the test every subscribe frame the client sent.
fn scripted_peer(visits: Vec<Visit>) -> (u16, Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let last = visits.len() - 1;
        for (i, visit) in visits.into_iter().enumerate() {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut ws = tungstenite::accept(stream).unwrap();
            ws.send(Message::text(visit.welcome.to_string())).unwrap();
            let subscribe = loop {
                if let Message::Text(t) = ws.read().unwrap() {
                    break serde_json::from_str::<Value>(&t).unwrap();
                }
            };
            let _ = tx.send(subscribe);
            for (channel, seq) in visit.messages {
                let frame = json!({"type": "message", "channel": channel, "seq": seq, "data": seq});
                ws.send(Message::text(frame.to_string())).unwrap();
            }
            if i < last {
                let away = CloseFrame {
                    code: CloseCode::Away,
                    reason: "draining".into(),
                };
                let _ = ws.close(Some(away));
            }
            // Until the client's close (or its reconnect after ours).
            while ws.read().is_ok() {}
        }
    });
    (port, rx)
}

#[test]
fn client_drops_duplicates_and_resumes_within_an_epoch() {
    let Some(mut chromium) = Chromium::start("replay") else {
        return;
    };
    let server = Server::start(&[]);
    let (peer, subscribes) = scripted_peer(vec![
        Visit {
            welcome: json!({"type": "welcome", "session": "s1", "epoch": "E1", "ping_interval_ms": 30000}),
            messages: &[
                ("a.x", 1),
                ("a.x", 2),
                ("a.x", 2),
                ("a.x", 3),
                ("a.x", 1),
                ("a.y", 2),
                ("a.x", 4),
            ],
        },
        Visit {
            welcome: json!({"type": "welcome", "session": "s2", "epoch": "E1", "ping_interval_ms": 30000}),
            messages: &[("a.x", 3), ("a.x", 4), ("a.x", 5)],
        },
        Visit {
            welcome: json!({"type": "welcome", "session": "s3", "ping_interval_ms": 30000}),
            messages: &[("a.x", 1)],
        },
    ]);
    let html = format!(
        r#"<!doctype html><script type="module">
import {{ OdinWS }} from "http://127.0.0.1:{}/client.js";
window.log = {{ got: [], gaps: [] }};
const c = new OdinWS("ws://127.0.0.1:{peer}/ws", {{ onGap: (g) => log.gaps.push(g.reason) }});
c.subscribe("a.>", (m) => log.got.push(m.channel + ":" + m.seq));
</script>"#,
        server.port
    );
    let site = serve_page(html);
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    let next = || subscribes.recv_timeout(DEADLINE).expect("a subscribe");
    let first = next();
    assert_eq!(first["channels"], json!(["a.>"]));
    assert!(first.get("since").is_none(), "{first}");
    let resumed = next();
    assert_eq!(
        resumed["since"],
        json!({"epoch": "E1", "seq": 4}),
        "{resumed}"
    );
    let fresh = next();
    assert!(fresh.get("since").is_none(), "{fresh}");
    chromium.wait_until("the last visit's message", "log.got.length >= 7");
    assert_eq!(
        chromium.eval("log.got"),
        json!([
            "a.x:1", "a.x:2", "a.x:3", "a.y:2", "a.x:4", "a.x:5", "a.x:1"
        ])
    );
    // Resumed in the same epoch: no gap; the epoch gone: one.
    assert_eq!(chromium.eval("log.gaps"), json!(["reconnected"]));
}
