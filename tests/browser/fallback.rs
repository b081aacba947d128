//! The SSE fallback of /client.js in Chromium: a page whose WebSocket upgrade is
//! refused (the server's WS_PATH is elsewhere, so the page's /ws answers 404 while
//! /sse works) gets its messages over SSE; once a server with a working WebSocket
//! is back on the port, the page goes back to WebSocket and keeps receiving in order.

use serde_json::json;

use crate::chromium::{Chromium, serve_page};
use crate::client::{Publisher, feed_in_order, until_subscribed, wait_for_phase};
use crate::support::Server;

fn page(server_port: u16) -> String {
    format!(
        r#"<!doctype html><title>fallback test</title><script type="module">
import {{ OdinWS }} from "http://127.0.0.1:{server_port}/client.js";
const log = {{ states: [], gaps: [], feed: [] }};
window.log = log;
const c = new OdinWS("ws://127.0.0.1:{server_port}/ws", {{
  wsRetryMs: 300,
  onState: (s, d) => log.states.push([s, d.transport]),
  onGap: (g) => log.gaps.push(g.reason),
}});
c.subscribe("feed.>", (m) => log.feed.push([m.channel, m.seq, m.data]));
window.client = c;
</script>"#
    )
}

#[test]
fn a_page_whose_websocket_is_refused_receives_over_sse_then_goes_back_to_websocket() {
    let Some(mut chromium) = Chromium::start("fallback") else {
        return;
    };
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let grace = ("WS_SHUTDOWN_GRACE", "500ms");
    let mut first = Server::start(&[("WS_ADDR", addr.as_str()), ("WS_PATH", "/elsewhere"), grace]);
    let site = serve_page(page(port));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    until_subscribed(&first, &mut chromium, "feed.probe", "feed");
    assert_eq!(chromium.eval("client.transport"), "sse");
    assert_eq!(first.metric("odin_ws_sse_clients"), 1.0);
    let states = chromium.eval("log.states");
    assert_eq!(states[0], json!(["connecting", "websocket"]), "{states}");
    assert!(
        states.as_array().unwrap().contains(&json!(["open", "sse"])),
        "{states}"
    );

    let publisher = Publisher::start(port);
    wait_for_phase(&mut chromium, 1, 5);
    first.signal(libc::SIGTERM);
    first.wait_exit();
    publisher
        .phase
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let second = Server::start(&[("WS_ADDR", addr.as_str()), grace]);
    chromium.wait_until(
        "the page to go back to WebSocket",
        "client.transport === 'websocket' && client.state === 'open'",
    );
    assert_eq!(
        second.metric("odin_ws_sse_clients"),
        0.0,
        "the stream is closed"
    );
    wait_for_phase(&mut chromium, 2, 10);
    let accepted = publisher.stop();
    drop(second);

    let got = feed_in_order(&mut chromium);
    // Over SSE, every message the first server took from the first one seen.
    let before: Vec<u64> = got
        .iter()
        .filter(|d| d["phase"] == 1)
        .map(|d| d["n"].as_u64().unwrap())
        .collect();
    let sent: Vec<u64> = accepted
        .iter()
        .filter(|(n, phase)| *phase == 1 && *n >= before[0] && n <= before.last().unwrap())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(before, sent, "every message over SSE");
    assert!(
        chromium
            .eval("log.states")
            .as_array()
            .unwrap()
            .contains(&json!(["open", "websocket"])),
        "told of the switch"
    );
}
