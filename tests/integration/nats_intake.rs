//! NATS intake against a real nats-server: wildcards, order, payload kinds,
//! outages, conflation, JetStream pauses and restarts, two instances.
#![allow(deprecated)] // the sync nats client, as in the server

use std::collections::HashMap;

use crate::support::*;

fn nats_env(nats: &NatsServer) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url()),
        ("NATS_SUBJECTS", "odin.>,other.*".into()),
    ]
}

fn start(env: &[(&str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&env)
}

/// The `n` field of the next message, with its channel.
fn next_n(c: &mut Client) -> (String, i64) {
    let msg = read_json(c);
    assert_eq!(msg["type"], "message", "{msg}");
    (
        msg["channel"].as_str().unwrap().to_string(),
        msg["data"]["n"].as_i64().unwrap_or(-1),
    )
}

#[test]
fn subjects_relay_with_wildcards_in_order_json_and_text() {
    let nats = NatsServer::start(false);
    let s = start(&nats_env(&nats));
    s.wait_nats("connected");
    let mut btc = s.client();
    subscribe(&mut btc, &["odin.BTC.*"]);
    let mut all = s.client();
    subscribe(&mut all, &["odin.>"]);
    let mut other = s.client();
    subscribe(&mut other, &["other.x"]);

    let publisher = nats.client();
    for n in 0..30 {
        publisher
            .publish("odin.BTC.trades", format!("{{\"n\":{n}}}"))
            .unwrap();
        publisher
            .publish("odin.ETH.trades", format!("{{\"n\":{}}}", 100 + n))
            .unwrap();
    }
    publisher
        .publish("unconsumed.subject", "{\"n\":-5}")
        .unwrap();
    publisher
        .publish("other.x", "plain text, not JSON")
        .unwrap();
    publisher.publish("odin.BTC.end", "{\"n\":999}").unwrap();
    publisher.flush().unwrap();

    let btc_got: Vec<(String, i64)> = (0..31).map(|_| next_n(&mut btc)).collect();
    let mut want: Vec<(String, i64)> = (0..30)
        .map(|n| ("odin.BTC.trades".to_string(), n))
        .collect();
    want.push(("odin.BTC.end".into(), 999));
    assert_eq!(btc_got, want);

    let all_got: Vec<(String, i64)> = (0..61).map(|_| next_n(&mut all)).collect();
    let per_channel = |ch: &str| {
        all_got
            .iter()
            .filter(|(c, _)| c == ch)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
    };
    assert_eq!(per_channel("odin.BTC.trades"), (0..30).collect::<Vec<_>>());
    assert_eq!(
        per_channel("odin.ETH.trades"),
        (100..130).collect::<Vec<_>>()
    );

    let text = read_json(&mut other);
    assert_eq!(text["data"], "plain text, not JSON");
    assert_eq!(text["channel"], "other.x");
    wait_for("the NATS intake count", || {
        s.metric("odin_ws_messages_in_total{source=\"nats\"}") == 62.0
    });
}

#[test]
fn nats_restart_mid_stream_keeps_clients_and_resumes() {
    let mut nats = NatsServer::start(false);
    let s = start(&nats_env(&nats));
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.tick"]);
    let publisher = nats.client();
    publisher.publish("odin.tick", "{\"n\":1}").unwrap();
    assert_eq!(next_n(&mut c).1, 1);

    nats.stop();
    s.wait_nats("reconnecting");
    assert_eq!(
        s.get("/health").status,
        200,
        "serving clients is not affected"
    );
    send(&mut c, r#"{"type":"ping","id":1}"#);
    assert_eq!(
        read_json(&mut c)["type"],
        "pong",
        "the client stays connected"
    );

    nats.restart();
    s.wait_nats("connected");
    let gaps = resumes_in_order(&nats, &mut c);
    assert!(
        gaps.contains(&"skipped".to_string()),
        "the client is told: {gaps:?}"
    );
    assert!(s.metric("odin_ws_nats_reconnects_total") >= 1.0);
    assert!(s.metric("odin_ws_nats_disconnects_total") >= 1.0);
    // Core NATS does not replay: the gap is counted.
    assert!(s.metric("odin_ws_nats_gap_events_total") >= 1.0);
    assert_eq!(s.health()["jetstream"], "disabled");
    let log = s.log.lock().unwrap().clone();
    let server = format!("127.0.0.1:{}", nats.port);
    assert!(
        log.contains(&format!("NATS connected to {server}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("NATS disconnected from {server}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("NATS reconnected to {server}")),
        "{log}"
    );
}

/// Publishes until delivery resumes (the resubscription races our publisher),
/// then 20 more that must follow in order. Returns the `gap` frames' reasons seen
/// meanwhile (core NATS does not replay: the reconnect is announced as `skipped`).
fn resumes_in_order(nats: &NatsServer, c: &mut Client) -> Vec<String> {
    let mut gaps = Vec::new();
    let publisher = nats.client();
    let mut n = 100;
    let first = loop {
        publisher
            .publish("odin.tick", format!("{{\"n\":{n}}}"))
            .unwrap();
        publisher.flush().unwrap();
        n += 1;
        // Bounded: the client's read timeout is the test deadline.
        if let Ok(tungstenite::Message::Text(t)) = c.read() {
            let msg: serde_json::Value = serde_json::from_str(&t).unwrap();
            if msg["type"] == "gap" {
                gaps.push(msg["reason"].as_str().unwrap().to_string());
                continue;
            }
            break msg["data"]["n"].as_i64().unwrap();
        }
    };
    for m in n..n + 20 {
        publisher
            .publish("odin.tick", format!("{{\"n\":{m}}}"))
            .unwrap();
    }
    publisher.flush().unwrap();
    let mut last = first;
    while last < n + 19 {
        let msg = read_json(c);
        if msg["type"] == "gap" {
            gaps.push(msg["reason"].as_str().unwrap().to_string());
            continue;
        }
        let got = msg["data"]["n"].as_i64().unwrap();
        assert!(got > last, "order: {got} after {last}");
        last = got;
    }
    gaps
}

#[test]
fn nats_away_for_thirty_seconds_costs_clients_nothing() {
    let mut nats = NatsServer::start(false);
    let s = start(&nats_env(&nats));
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.tick"]);
    nats.stop();
    s.wait_nats("reconnecting");
    let away = std::time::Instant::now();
    // Thirty seconds without NATS: the client is served all along (a ping round
    // trip every second) and /health keeps saying what is going on.
    while away.elapsed() < std::time::Duration::from_secs(30) {
        send(&mut c, r#"{"type":"ping"}"#);
        assert_eq!(read_json(&mut c)["type"], "pong");
        assert_eq!(s.health()["nats"], "reconnecting");
        std::thread::park_timeout(std::time::Duration::from_secs(1));
    }
    nats.restart();
    s.wait_nats("connected");
    resumes_in_order(&nats, &mut c);
    assert_eq!(s.health()["connections"], 1);
}

#[test]
fn over_the_broadcast_rate_every_channel_ends_at_its_last_value() {
    let nats = NatsServer::start(false);
    let mut env = nats_env(&nats);
    env.push(("WS_MAX_BROADCAST_RATE", "50".into()));
    let s = start(&env);
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.c.*"]);
    let publisher = nats.client();
    for v in 0..100 {
        for ch in 0..10 {
            publisher
                .publish(&format!("odin.c.{ch}"), format!("{{\"n\":{v}}}"))
                .unwrap();
        }
    }
    publisher.flush().unwrap();
    let mut latest: HashMap<String, i64> = HashMap::new();
    while latest.len() < 10 || latest.values().any(|v| *v != 99) {
        let (channel, v) = next_n(&mut c);
        let before = latest.insert(channel.clone(), v);
        assert!(
            before.is_none_or(|b| b < v),
            "{channel}: {v} after {before:?}"
        );
    }
    assert!(s.metric("odin_ws_intake_conflated_total") > 0.0);
    assert!(s.metric("odin_ws_broadcasts_total") < 1000.0);
}

#[test]
fn two_instances_on_one_nats_both_deliver_a_single_publish() {
    let nats = NatsServer::start(false);
    let a = start(&nats_env(&nats));
    let b = start(&nats_env(&nats));
    a.wait_nats("connected");
    b.wait_nats("connected");
    let mut ca = a.client();
    subscribe(&mut ca, &["odin.x"]);
    let mut cb = b.client();
    subscribe(&mut cb, &["odin.x"]);
    assert_eq!(a.publish("odin.x", "{\"n\":7}").status, 202);
    assert_eq!(next_n(&mut ca), ("odin.x".into(), 7));
    assert_eq!(next_n(&mut cb), ("odin.x".into(), 7));
    assert_eq!(
        a.publish("elsewhere.x", "1").status,
        400,
        "outside NATS_SUBJECTS"
    );
}

fn write_env(path: &std::path::Path, nats: &NatsServer, reject: u32, pause: u32) {
    let text = format!(
        "NATS_URL={}\nNATS_SUBJECTS=odin.>\nNATS_JETSTREAM=true\nJS_STREAM=ODIN_TEST\nJS_CONSUMER=test-consumer\n\
         WS_CPU_REJECT_THRESHOLD={reject}\nWS_CPU_PAUSE_THRESHOLD={pause}\n",
        nats.url()
    );
    std::fs::write(path, text).unwrap();
}

/// Reads messages until `to`; asserts every stream sequence from `from` arrives once, in order.
fn expect_seqs(c: &mut Client, from: u64, to: u64) {
    for want in from..=to {
        let msg = read_json(c);
        assert_eq!(msg["seq"].as_u64(), Some(want), "{msg}");
        assert_eq!(msg["data"]["n"].as_u64(), Some(want));
    }
}

#[test]
fn jetstream_loses_nothing_across_a_pause_and_restarts() {
    let mut nats = NatsServer::start(true);
    let dir = scratch("jsenv");
    let env_file = dir.join("js.env");
    write_env(&env_file, &nats, 75, 80);
    let file = env_file.to_str().unwrap();
    let base = [("WS_CPU_LIMIT", "64")];
    let mut s = Server::start_with_file(&base, file);
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    let js = nats::jetstream::new(nats.client());
    let publish = |from: u64, to: u64| {
        for n in from..=to {
            js.publish("odin.js", format!("{{\"n\":{n}}}")).unwrap();
        }
    };
    publish(1, 20);
    expect_seqs(&mut c, 1, 20);

    // Paused by SIGHUP (thresholds 0): nothing is fetched, the stream keeps it.
    write_env(&env_file, &nats, 0, 0);
    s.signal(libc::SIGHUP);
    wait_for("intake to pause", || {
        s.metric("odin_ws_intake_paused") == 1.0
    });
    publish(21, 40);
    wait_for("20 messages pending on the consumer", || {
        js.consumer_info("ODIN_TEST", "test-consumer")
            .unwrap()
            .num_pending
            == 20
    });
    write_env(&env_file, &nats, 75, 80);
    s.signal(libc::SIGHUP);
    expect_seqs(&mut c, 21, 40);
    assert!(s.metric("odin_ws_intake_pauses_total") >= 1.0);

    // odin-ws stopped, then NATS restarted while odin-ws starts without it.
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(), Some(0));
    publish(41, 60);
    drop(js);
    nats.stop();
    let s = Server::start_with_file(&base, file);
    assert_eq!(s.health()["nats"], "reconnecting");
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    nats.restart();
    expect_seqs(&mut c, 41, 60);
    std::fs::remove_dir_all(&dir).unwrap();
}
