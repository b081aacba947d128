//! /client.js in Chromium against JetStream mode: the server drains (SIGTERM) and
//! a new process takes its port while a publisher keeps publishing to the stream;
//! the page resumes from its last position and ends with every message, in
//! order, none twice.
#![allow(deprecated)] // the sync nats client, as in the server

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use crate::chromium::{Chromium, serve_page};
use crate::client::{page, received, until_subscribed};
use crate::support::{NatsServer, Server, wait_for};

/// Publishes `feed.n` with a rising `n` to the stream until stopped; each `n`
/// acknowledged by JetStream is stored, so the page must get it.
struct StreamPublisher {
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl StreamPublisher {
    fn start(nats: &NatsServer) -> StreamPublisher {
        let js = nats::jetstream::new(nats.client());
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (Arc::clone(&acked), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(SeqCst) {
                n += 1;
                js.publish("feed.n", format!("{{\"n\":{n}}}"))
                    .expect("stored in the stream");
                a.store(n, SeqCst);
                // Paces the feed (about 50 messages/s); nothing waits on it.
                std::thread::park_timeout(Duration::from_millis(20));
            }
            n
        });
        StreamPublisher {
            acked,
            stop,
            thread,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, SeqCst);
        self.thread.join().unwrap()
    }
}

/// The `n`s the page's `feed` subscription received.
fn numbers(chromium: &mut Chromium) -> Vec<u64> {
    received(chromium, "feed")
        .iter()
        .map(|(_, d)| d["n"].as_u64().unwrap())
        .collect()
}

#[test]
fn page_resumes_every_message_across_a_drained_restart_in_jetstream_mode() {
    let Some(mut chromium) = Chromium::start("js-restart") else {
        return;
    };
    let nats = NatsServer::start(true);
    let port = crate::common::free_port();
    let (addr, url) = (format!("127.0.0.1:{port}"), nats.url());
    let env = [
        ("WS_ADDR", addr.as_str()),
        ("WS_SHUTDOWN_GRACE", "500ms"),
        ("NATS_URL", url.as_str()),
        ("NATS_SUBJECTS", "feed.>"),
        ("NATS_JETSTREAM", "true"),
        ("JS_STREAM", "ODIN_BROWSER"),
        ("JS_CONSUMER", "browser"),
    ];
    let mut first = Server::start(&env);
    first.wait_nats("connected");
    let site = serve_page(page(port, &[("feed", &["feed.>"])]));
    chromium.open(&format!("http://127.0.0.1:{site}/"));
    until_subscribed(&first, &mut chromium, "feed.probe", "feed");

    let publisher = StreamPublisher::start(&nats);
    wait_for("messages before the restart", || {
        numbers(&mut chromium).len() >= 5
    });
    first.signal(libc::SIGTERM);
    first.wait_exit();
    // Published while no instance runs, and after: the resume brings them all.
    let at_restart = publisher.acked.load(SeqCst);
    let second = Server::start(&env);
    second.wait_nats("connected");
    chromium.wait_until(
        "the page to reconnect",
        "log.states.filter((s) => s === 'open').length === 2",
    );
    wait_for("messages after the restart", || {
        numbers(&mut chromium).last() >= Some(&(at_restart + 10))
    });
    let last = publisher.stop();
    wait_for("the last message", || {
        numbers(&mut chromium).last() == Some(&last)
    });
    drop(second);

    let got = numbers(&mut chromium);
    assert_eq!(
        got,
        (1..=last).collect::<Vec<_>>(),
        "every message once, in order, across the restart"
    );
    assert_eq!(
        chromium.eval("log.gaps"),
        serde_json::json!([]),
        "resumed: nothing was lost"
    );
}
