//! Positions, resume and snapshots from this instance's history (standalone, so
//! core-mode rules: the epoch is new at each start): a client that reconnects
//! with `since` gets what it missed, in order, then live, even while messages keep
//! coming; a position history no longer covers is `too_old`, another epoch
//! `epoch_changed`; `snapshot` sends each covered channel's latest message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

fn welcome_epoch(c: &mut Client) -> String {
    let w = read_json(c);
    assert_eq!(w["type"], "welcome", "{w}");
    w["epoch"].as_str().expect("an epoch").to_string()
}

fn subscribe_with(c: &mut Client, channels: &[&str], extra: &str) -> serde_json::Value {
    let list = serde_json::to_string(channels).unwrap();
    send(
        c,
        &format!(r#"{{"type":"subscribe","channels":{list},"id":1{extra}}}"#),
    );
    let ack = read_json(c);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

/// The next message frame: (seq, data.n).
fn next_message(c: &mut Client) -> (u64, i64) {
    let m = read_json(c);
    assert_eq!(m["type"], "message", "{m}");
    (m["seq"].as_u64().unwrap(), m["data"]["n"].as_i64().unwrap())
}

fn publish_n(s: &Server, channel: &str, n: i64) {
    assert_eq!(s.publish(channel, &format!("{{\"n\":{n}}}")).status, 202);
}

#[test]
fn a_reconnecting_client_gets_what_it_missed_then_live() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let epoch = welcome_epoch(&mut c);
    assert!(!epoch.is_empty());
    subscribe(&mut c, &["px.>"]);
    for n in 0..5 {
        publish_n(&s, "px.a", n);
    }
    let last = (0..5).map(|_| next_message(&mut c)).last().unwrap().0;
    drop(c);
    // Published while the client is away, on two channels, one it does not cover.
    for n in 5..10 {
        publish_n(&s, if n % 2 == 0 { "px.a" } else { "px.b" }, n);
        publish_n(&s, "other", 100 + n);
    }
    let mut c = s.connect();
    assert_eq!(welcome_epoch(&mut c), epoch);
    let since = format!(r#","since":{{"epoch":"{epoch}","seq":{last}}}"#);
    let ack = subscribe_with(&mut c, &["px.>"], &since);
    assert_eq!(ack["recovered"], true, "{ack}");
    let replayed: Vec<i64> = (5..10).map(|_| next_message(&mut c).1).collect();
    assert_eq!(replayed, [5, 6, 7, 8, 9]);
    publish_n(&s, "px.a", 10);
    assert_eq!(next_message(&mut c).1, 10, "then live");
    assert!(s.metric("odin_ws_resumes_total{result=\"recovered\"}") >= 1.0);
}

#[test]
fn a_resume_racing_live_messages_has_no_gap_and_no_duplicate() {
    let s = Arc::new(Server::start(&[]));
    let mut c = s.connect();
    let epoch = welcome_epoch(&mut c);
    subscribe(&mut c, &["race"]);
    publish_n(&s, "race", 0);
    let (first_seq, _) = next_message(&mut c);
    drop(c);
    // A publisher keeps going while the client comes back and resumes.
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        std::thread::spawn(move || {
            for n in 1..=400 {
                publish_n(&s, "race", n);
            }
            done.store(true, Ordering::Release);
        })
    };
    wait_for("some messages published while away", || {
        s.metric("odin_ws_broadcasts_total") >= 50.0
    });
    let mut c = s.connect();
    welcome_epoch(&mut c);
    let since = format!(r#","since":{{"epoch":"{epoch}","seq":{first_seq}}}"#);
    let ack = subscribe_with(&mut c, &["race"], &since);
    assert_eq!(ack["recovered"], true, "{ack}");
    let got: Vec<i64> = (1..=400).map(|_| next_message(&mut c).1).collect();
    assert_eq!(
        got,
        (1..=400).collect::<Vec<_>>(),
        "every message once, in order"
    );
    publisher.join().unwrap();
    assert!(done.load(Ordering::Acquire));
}

#[test]
fn positions_history_cannot_cover_are_too_old_and_other_epochs_changed() {
    let s = Server::start(&[("WS_HISTORY_SIZE", "3")]);
    let mut c = s.connect();
    let epoch = welcome_epoch(&mut c);
    for n in 0..10 {
        publish_n(&s, "old.a", n);
    }
    wait_for("the ten in history", || {
        s.metric("odin_ws_broadcasts_total") >= 10.0
    });
    let since = format!(r#","since":{{"epoch":"{epoch}","seq":2}},"snapshot":true"#);
    let ack = subscribe_with(&mut c, &["old.a"], &since);
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "too_old");
    // Not recovered, so the snapshot asked for comes instead: the latest message.
    let snap = read_json(&mut c);
    assert_eq!(
        (snap["snapshot"].clone(), snap["data"]["n"].clone()),
        (true.into(), 9.into())
    );

    let mut c = s.client();
    let ack = subscribe_with(
        &mut c,
        &["old.a"],
        r#","since":{"epoch":"another","seq":9}"#,
    );
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "epoch_changed");
    publish_n(&s, "old.a", 10);
    assert_eq!(next_message(&mut c).1, 10, "live all the same");
    assert!(s.metric("odin_ws_resumes_total{result=\"too_old\"}") >= 1.0);
}

#[test]
fn a_snapshot_sends_the_latest_of_each_covered_channel_before_live() {
    let s = Server::start(&[]);
    for (channel, n) in [("snap.x", 1), ("snap.y", 2), ("snap.x", 3), ("other.z", 4)] {
        publish_n(&s, channel, n);
    }
    wait_for("four in history", || {
        s.metric("odin_ws_broadcasts_total") >= 4.0
    });
    let mut c = s.client();
    let ack = subscribe_with(&mut c, &["snap.*"], r#","snapshot":true"#);
    assert!(
        ack.get("recovered").is_none(),
        "no since, no recovered: {ack}"
    );
    let snaps: Vec<(String, i64, bool)> = (0..2)
        .map(|_| {
            let m = read_json(&mut c);
            let channel = m["channel"].as_str().unwrap().to_string();
            (
                channel,
                m["data"]["n"].as_i64().unwrap(),
                m["snapshot"] == true,
            )
        })
        .collect();
    assert_eq!(
        snaps,
        [("snap.y".into(), 2, true), ("snap.x".into(), 3, true)],
        "latest per channel, oldest first"
    );
    let mut literal = s.client();
    subscribe_with(&mut literal, &["snap.x"], r#","snapshot":true"#);
    assert_eq!(read_json(&mut literal)["data"]["n"], 3);
    publish_n(&s, "snap.x", 5);
    let live = read_json(&mut c);
    assert_eq!(
        (live["data"]["n"].clone(), live.get("snapshot")),
        (5.into(), None)
    );
    assert_eq!(s.metric("odin_ws_snapshots_total"), 3.0);
}
