//! /client.js in Chromium: a page from another origin imports it from the server,
//! subscribes with wildcards and gets exactly the matching messages; across a
//! server restart (drain, new process on the same port) it resubscribes and keeps
//! receiving in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use serde_json::Value;

use crate::chromium::{Chromium, serve_page};
use crate::support::{Server, wait_for};

/// A page that imports /client.js from `server_port` and records, in `window.log`,
/// the states and what each subscription receives.
pub(crate) fn page(server_port: u16, subscriptions: &[(&str, &[&str])]) -> String {
    let subscribe: String = subscriptions
        .iter()
        .map(|(name, patterns)| {
            let patterns = serde_json::to_string(patterns).unwrap();
            format!(
                "log.{name} = []; c.subscribe({patterns}, (m) => log.{name}.push([m.channel, m.seq, m.data]));\n"
            )
        })
        .collect();
    format!(
        r#"<!doctype html><title>client test</title><script type="module">
import {{ OdinWS }} from "http://127.0.0.1:{server_port}/client.js";
const log = {{ states: [], gaps: [] }};
window.log = log;
const c = new OdinWS("ws://127.0.0.1:{server_port}/ws", {{
  onState: (s) => log.states.push(s),
  onGap: (g) => log.gaps.push(g.reason),
}});
{subscribe}window.client = c;
</script>"#
    )
}

/// Publishes `channel` until the page's `list` has something: the subscription is
/// then in place on the server.
pub(crate) fn until_subscribed(
    server: &Server,
    chromium: &mut Chromium,
    channel: &str,
    list: &str,
) {
    wait_for("the page's subscription", || {
        assert_eq!(server.publish(channel, "\"probe\"").status, 202);
        chromium.eval(&format!("(window.log?.{list}?.length ?? 0) > 0")) == Value::Bool(true)
    });
}

/// What a subscription received, without the probes.
pub(crate) fn received(chromium: &mut Chromium, list: &str) -> Vec<(String, Value)> {
    let all = chromium.eval(&format!("log.{list}"));
    all.as_array()
        .unwrap()
        .iter()
        .filter(|m| m[2] != "probe")
        .map(|m| (m[0].as_str().unwrap().to_string(), m[2].clone()))
        .collect()
}

#[test]
fn page_receives_exactly_the_matching_messages() {
    let Some(mut chromium) = Chromium::start("matching") else {
        return;
    };
    let server = Server::start(&[]);
    let subs: &[(&str, &[&str])] = &[
        ("prices", &["token.*.price"]),
        ("btc", &["token.BTC.>"]),
        ("both", &["token.*.price", "token.ETH.>"]),
    ];
    let site = serve_page(page(server.port, subs));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    until_subscribed(&server, &mut chromium, "token.PROBE.price", "prices");
    until_subscribed(&server, &mut chromium, "token.BTC.probe", "btc");
    let published = [
        "token.BTC.price",
        "token.BTC.trades",
        "token.ETH.price",
        "token.ETH.book.l2",
        "token.price",
        "token.BTC.price.usd",
        "other.BTC.price",
        "token.SOL.price",
    ];
    for (i, channel) in published.iter().enumerate() {
        assert_eq!(
            server.publish(channel, &format!("{{\"i\":{i}}}")).status,
            202
        );
    }
    assert_eq!(server.publish("token.END.price", "\"end\"").status, 202);
    chromium.wait_until(
        "the last message",
        "log.prices.some((m) => m[0] === 'token.END.price') && log.both.some((m) => m[0] === 'token.END.price')",
    );
    // BTC's last message comes before END on the same connection, in order.
    let channels = |list: &str, chromium: &mut Chromium| -> Vec<String> {
        received(chromium, list)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    assert_eq!(
        channels("prices", &mut chromium),
        [
            "token.BTC.price",
            "token.ETH.price",
            "token.SOL.price",
            "token.END.price"
        ]
    );
    assert_eq!(
        channels("btc", &mut chromium),
        ["token.BTC.price", "token.BTC.trades", "token.BTC.price.usd"]
    );
    // Two patterns matching one message: the subscription gets it once.
    assert_eq!(
        channels("both", &mut chromium),
        [
            "token.BTC.price",
            "token.ETH.price",
            "token.ETH.book.l2",
            "token.SOL.price",
            "token.END.price"
        ]
    );
    let data = received(&mut chromium, "btc");
    assert_eq!(data[1].1["i"], 1, "the handler gets the whole message");
    assert_eq!(
        chromium.eval("log.states"),
        serde_json::json!(["connecting", "open"])
    );
}

#[test]
fn page_resubscribes_after_a_drained_restart() {
    let Some(mut chromium) = Chromium::start("restart") else {
        return;
    };
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [("WS_ADDR", addr.as_str()), ("WS_SHUTDOWN_GRACE", "500ms")];
    let mut first = Server::start(&env);
    let site = serve_page(page(port, &[("feed", &["feed.>"])]));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    until_subscribed(&first, &mut chromium, "feed.probe", "feed");

    let publisher = Publisher::start(port);
    wait_for("messages before the restart", || {
        received(&mut chromium, "feed").len() >= 5
    });
    first.signal(libc::SIGTERM);
    first.wait_exit();
    publisher.phase.store(2, SeqCst);
    let second = Server::start(&env);
    chromium.wait_until(
        "the page to reconnect",
        "log.states.filter((s) => s === 'open').length === 2",
    );
    wait_for_phase(&mut chromium, 2, 10);
    let accepted = publisher.stop();
    drop(second);

    let got = feed_in_order(&mut chromium);
    assert!(got.iter().any(|d| d["phase"] == 1), "{got:?}");
    // After the resubscribe, every message the new server took arrived.
    let after: Vec<u64> = got
        .iter()
        .filter(|d| d["phase"] == 2)
        .map(|d| d["n"].as_u64().unwrap())
        .collect();
    let from = after[0];
    let sent: Vec<u64> = accepted
        .into_iter()
        .filter(|(n, phase)| *phase == 2 && *n >= from)
        .map(|(n, _)| n)
        .filter(|n| *n <= *after.last().unwrap())
        .collect();
    assert_eq!(after, sent, "every message after the resubscribe");
    let states = chromium.eval("log.states");
    assert_eq!(states[0], "connecting");
    assert!(
        states
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "reconnecting"),
        "{states}"
    );
    assert_eq!(
        chromium.eval("log.gaps"),
        serde_json::json!(["reconnected"])
    );
}

/// Waits until the page's `feed` holds `count` messages of the publisher's `phase`.
pub fn wait_for_phase(chromium: &mut Chromium, phase: u64, count: usize) {
    wait_for(&format!("{count} messages of phase {phase}"), || {
        let got = received(chromium, "feed");
        got.iter().filter(|(_, d)| d["phase"] == phase).count() >= count
    });
}

/// The publisher's payloads the page's `feed` received, checked to be in order
/// with no duplicate.
pub fn feed_in_order(chromium: &mut Chromium) -> Vec<Value> {
    let got: Vec<Value> = received(chromium, "feed")
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let numbers: Vec<u64> = got.iter().map(|d| d["n"].as_u64().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate: {numbers:?}"
    );
    got
}

/// Publishes `feed.n` with a rising `n` to whichever server answers on the port,
/// and remembers what was accepted in which phase (2: after the first server exited).
pub struct Publisher {
    pub phase: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u64, u64)>>,
}

impl Publisher {
    pub fn start(port: u16) -> Publisher {
        let phase = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&phase), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut accepted = Vec::new();
            let mut n = 0;
            while !s.load(SeqCst) {
                n += 1;
                let phase = p.load(SeqCst);
                let body =
                    format!("{{\"channel\":\"feed.n\",\"data\":{{\"n\":{n},\"phase\":{phase}}}}}");
                let raw = format!(
                    "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
                    crate::support::TOKEN,
                    body.len()
                );
                if try_post(port, &raw) == Some(202) {
                    accepted.push((n, phase));
                }
                // Paces the feed (about 50 messages/s); nothing waits on it.
                std::thread::park_timeout(Duration::from_millis(20));
            }
            accepted
        });
        Publisher {
            phase,
            stop,
            thread,
        }
    }

    pub fn stop(self) -> Vec<(u64, u64)> {
        self.stop.store(true, SeqCst);
        self.thread.join().unwrap()
    }
}

/// The status of one request, or `None` while no server answers (the restart).
fn try_post(port: u16, raw: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(crate::common::DEADLINE))
        .ok()?;
    stream.write_all(raw.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}

/// The README's example page, pointed at a test server, shows what is published.
#[test]
fn readme_example_page_works() {
    let Some(mut chromium) = Chromium::start("readme") else {
        return;
    };
    let server = Server::start(&[]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## In the browser\n")
        .nth(1)
        .expect("README section \"In the browser\"");
    let html = section
        .split("```html\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("an html block in \"In the browser\"");
    let html = html.replace("localhost:3002", &format!("127.0.0.1:{}", server.port));
    let site = serve_page(html);
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    chromium.wait_until(
        "the page to connect",
        "document.getElementById('state').textContent === 'open'",
    );
    wait_for("the price row", || {
        assert_eq!(
            server.publish("token.BTC.price", "{\"usd\":97000}").status,
            202
        );
        chromium.eval("document.getElementById('prices').rows.length === 1") == Value::Bool(true)
    });
    assert_eq!(
        chromium.eval("document.getElementById('prices').rows[0].textContent"),
        "token.BTC.price{\"usd\":97000}"
    );
    assert_eq!(
        server.publish("token.BTC.trades", "{\"qty\":2}").status,
        202
    );
    chromium.wait_until(
        "the trade",
        "document.getElementById('trades').textContent.endsWith('{\"qty\":2}')",
    );
}
