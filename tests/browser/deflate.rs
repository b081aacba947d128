//! Chromium's own permessage-deflate (it offers it on every WebSocket and keeps
//! its window between messages): a channel's consecutive messages go as copies
//! deflated after the one before, and the page reads every one of them intact,
//! on one connection.

use serde_json::{Value, json};

use crate::chromium::{Chromium, serve_page};
use crate::client::{page, received, until_subscribed};
use crate::support::Server;

/// An order-book update of `levels` levels, message `n`.
fn book(n: u64, levels: u64) -> Value {
    let bids: Vec<Value> = (0..levels)
        .map(|i| {
            json!([
                format!("97{:03}.50", (n * 3 + i) % 1000),
                format!("{}.{:04}", i, n * 37 % 9973)
            ])
        })
        .collect();
    json!({"symbol": "BTC-USD", "n": n, "bids": bids})
}

#[test]
fn chromium_reads_chained_deflated_messages_intact() {
    let Some(mut chromium) = Chromium::start("deflate") else {
        return;
    };
    let server = Server::start(&[]);
    let site = serve_page(page(server.port, &[("books", &["md.BTC.book"])]));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    until_subscribed(&server, &mut chromium, "md.BTC.book", "books");
    assert_eq!(server.metric("odin_ws_compressing_connections"), 1.0);
    let sent: Vec<Value> = (0..30).map(|n| book(n, 20)).collect();
    for b in &sent {
        assert_eq!(server.publish("md.BTC.book", &b.to_string()).status, 202);
    }
    chromium.wait_until("the last book", "log.books.some((m) => m[2].n === 29)");
    let got: Vec<Value> = received(&mut chromium, "books")
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert_eq!(got, sent);
    assert!(
        server.metric("odin_ws_compressed_chained_frames_total") >= 29.0,
        "every book after the first went chained"
    );
    assert_eq!(
        chromium.eval("log.states"),
        json!(["connecting", "open"]),
        "no reconnect: Chromium inflated every frame"
    );
}
