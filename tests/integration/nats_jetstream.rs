//! JetStream exactly once against a real nats-server: a delivery lost in flight
//! reaches clients once and in order, a lost first delivery comes with its
//! redelivery, a new consumer starts at new messages, an existing one keeps its
//! position and skips a backlog older than JS_MAX_BACKLOG; a stream with fewer
//! replicas than JS_REPLICAS is a warning.
#![allow(deprecated)] // the sync nats client, as in the server

use std::time::Duration;

use nats::jetstream::{AckPolicy, ConsumerConfig, JetStream, PullSubscribeOptions, StreamConfig};

use crate::support::*;

pub(crate) const STREAM: &str = "ODIN_TEST";
pub(crate) const CONSUMER: &str = "test-consumer";

pub(crate) fn js_env(
    nats: &NatsServer,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NATS_URL", nats.url()),
        ("NATS_SUBJECTS", "odin.>".into()),
        ("NATS_JETSTREAM", "true".into()),
        ("JS_STREAM", STREAM.into()),
        ("JS_CONSUMER", CONSUMER.into()),
        ("JS_ACK_WAIT", "2s".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

pub(crate) fn start(env: &[(&str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&env)
}

pub(crate) fn publish(js: &JetStream, subject: &str, n: u64) -> u64 {
    js.publish(subject, format!("{{\"n\":{n}}}"))
        .expect("stored")
        .sequence
}

/// The next message as (channel, seq, n).
pub(crate) fn next(c: &mut Client) -> (String, u64, u64) {
    let msg = read_json(c);
    assert_eq!(msg["type"], "message", "{msg}");
    (
        msg["channel"].as_str().unwrap().to_string(),
        msg["seq"].as_u64().unwrap(),
        msg["data"]["n"].as_u64().unwrap(),
    )
}

/// Pulls one message from the durable consumer and never acks it: to JetStream it
/// is delivered to odin-ws and lost on the way.
fn lose_one_delivery(js: &JetStream) -> u64 {
    let options = PullSubscribeOptions::new()
        .bind_stream(STREAM.into())
        .durable_name(CONSUMER.into());
    let thief = js.pull_subscribe_with_options("odin.>", &options).unwrap();
    thief.request_batch(1).unwrap();
    let msg = thief.next_timeout(DEADLINE).expect("the delivery to lose");
    msg.jetstream_message_info().unwrap().stream_seq
}

/// A JetStream context on `nats` with the stream made before odin-ws starts.
pub(crate) fn stream_made_by_the_test(nats: &NatsServer) -> JetStream {
    let js = nats::jetstream::new(nats.client());
    js.add_stream(StreamConfig {
        name: STREAM.into(),
        subjects: vec!["odin.>".into()],
        ..Default::default()
    })
    .unwrap();
    js
}

fn wait_no_waiting_pulls(js: &JetStream) {
    wait_for("odin-ws's pull requests to expire", || {
        js.consumer_info(STREAM, CONSUMER).unwrap().num_waiting == 0
    });
}

fn pause_env(path: &std::path::Path, threshold: u32) {
    std::fs::write(
        path,
        format!("WS_CPU_REJECT_THRESHOLD={threshold}\nWS_CPU_PAUSE_THRESHOLD={threshold}\n"),
    )
    .unwrap();
}

#[test]
fn jetstream_a_delivery_lost_in_flight_reaches_clients_once_and_in_order() {
    let nats = NatsServer::start(true);
    let dir = scratch("js-lost-in-flight");
    let env_file = dir.join("pause.env");
    pause_env(&env_file, 75);
    let env = js_env(&nats, &[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with_file(&env, env_file.to_str().unwrap());
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    let js = nats::jetstream::new(nats.client());
    let first = publish(&js, "odin.js", 1);
    assert_eq!(next(&mut c), ("odin.js".into(), first, 1));

    // odin-ws stops fetching; the next message is delivered and lost on the way.
    pause_env(&env_file, 0);
    s.signal(libc::SIGHUP);
    wait_for("intake to pause", || {
        s.metric("odin_ws_intake_paused") == 1.0
    });
    wait_no_waiting_pulls(&js);
    let lost = publish(&js, "odin.js", 2);
    assert_eq!(lose_one_delivery(&js), lost);
    for n in 3..=5 {
        publish(&js, "odin.js", n);
    }
    pause_env(&env_file, 75);
    s.signal(libc::SIGHUP);

    // Filled in by sequence before 3, not after it when JS_ACK_WAIT redelivers it.
    let got: Vec<u64> = (0..4).map(|_| next(&mut c).2).collect();
    assert_eq!(got, [2, 3, 4, 5]);
    assert_eq!(s.metric("odin_ws_jetstream_gap_fills_total"), 1.0);
    // Its redelivery is acked, not sent again.
    wait_for("the redelivery of the lost message", || {
        s.metric("odin_ws_jetstream_duplicates_total") >= 1.0
    });
    publish(&js, "odin.js", 6);
    assert_eq!(next(&mut c).2, 6);
    wait_for("the consumer to have everything acked", || {
        let info = js.consumer_info(STREAM, CONSUMER).unwrap();
        info.num_ack_pending == 0 && info.num_pending == 0
    });
    let log = s.log.lock().unwrap().clone();
    assert!(!log.contains("ERROR"), "no ERROR line:\n{log}");
    assert!(
        log.contains("created over odin.> with 1 replica(s)"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jetstream_a_lost_first_delivery_is_sent_when_redelivered() {
    let mut nats = NatsServer::start(true);
    let js = stream_made_by_the_test(&nats);
    js.add_consumer(
        STREAM,
        ConsumerConfig {
            durable_name: Some(CONSUMER.into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .unwrap();
    for n in 1..=5 {
        publish(&js, "odin.js", n);
    }
    assert_eq!(lose_one_delivery(&js), 1);

    // The client subscribes while odin-ws waits for NATS, so it sees everything.
    drop(js);
    nats.stop();
    let s = start(&js_env(&nats, &[]));
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    nats.restart();
    let got: Vec<u64> = (0..5).map(|_| next(&mut c).1).collect();
    assert_eq!(got, [2, 3, 4, 5, 1], "1 comes back after JS_ACK_WAIT");
    let js = nats::jetstream::new(nats.client());
    publish(&js, "odin.js", 6);
    assert_eq!(next(&mut c).1, 6, "and nothing twice");
}

#[test]
fn jetstream_new_consumer_starts_at_new_messages_and_old_backlog_is_skipped() {
    let mut nats = NatsServer::start(true);
    let js = stream_made_by_the_test(&nats);
    for n in 1..=10 {
        publish(&js, "odin.old", n);
    }
    let env = js_env(&nats, &[("JS_MAX_BACKLOG", "2s"), ("JS_REPLICAS", "3")]);
    let mut s = start(&env);
    s.wait_nats("connected");
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    let live = publish(&js, "odin.old", 11);
    assert_eq!(next(&mut c), ("odin.old".into(), live, 11), "no history");
    wait_for("/health jetstream ok", || s.health()["jetstream"] == "ok");
    assert_eq!(s.health()["jetstream_replicas"], 1);
    let warning = "exists with 1 replica(s), fewer than JS_REPLICAS=3";
    assert!(s.log.lock().unwrap().contains(warning));
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(), Some(0));

    // While odin-ws is away: a backlog, then JS_MAX_BACKLOG of newer messages.
    let old = publish(&js, "odin.old", 12);
    let mut ticks = 0;
    wait_for(
        "the backlog to be over 3s behind the newest message",
        || {
            ticks += 1;
            let seq = publish(&js, "odin.tick", ticks);
            let newest = js.get_message(STREAM, seq).unwrap().time;
            newest - js.get_message(STREAM, old).unwrap().time > Duration::from_secs(3)
        },
    );
    drop(js);
    nats.stop();
    let s = start(&env);
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    nats.restart();
    // The consumer kept its position: the recent ticks arrive, the old one does
    // not, and the client is told that something was skipped.
    let mut gaps = Vec::new();
    let mut last = next_tick(&mut c, &mut gaps);
    while last < ticks {
        let n = next_tick(&mut c, &mut gaps);
        assert_eq!(n, last + 1);
        last = n;
    }
    if gaps.is_empty() {
        // Told at the worker's next turn at the latest.
        gaps.push(read_json(&mut c)["reason"].as_str().unwrap().to_string());
    }
    assert_eq!(gaps, ["skipped"]);
    assert!(s.metric("odin_ws_jetstream_backlog_skipped_total") >= 1.0);
    wait_for("the skip to be logged", || {
        s.log.lock().unwrap().contains("backlog message(s)")
    });
}

/// The `n` of the next tick, keeping the reasons of `gap` frames met on the way.
fn next_tick(c: &mut Client, gaps: &mut Vec<String>) -> u64 {
    loop {
        let msg = read_json(c);
        if msg["type"] == "gap" {
            gaps.push(msg["reason"].as_str().unwrap().to_string());
            continue;
        }
        assert_eq!(msg["channel"], "odin.tick", "{msg}");
        return msg["data"]["n"].as_u64().unwrap();
    }
}

/// The welcome's epoch, once the instance knows its stream.
pub(crate) fn epoch_of(s: &Server) -> String {
    let mut epoch = String::new();
    wait_for("the stream's epoch in welcome", || {
        let mut c = s.connect();
        epoch = read_json(&mut c)["epoch"].as_str().unwrap().to_string();
        !epoch.is_empty()
    });
    epoch
}

#[test]
fn jetstream_a_client_resumes_on_another_instance() {
    let nats = NatsServer::start(true);
    let one = start(&js_env(&nats, &[("JS_CONSUMER", "one")]));
    let two = start(&js_env(&nats, &[("JS_CONSUMER", "two")]));
    one.wait_nats("connected");
    two.wait_nats("connected");
    let epoch = epoch_of(&one);
    assert!(epoch.starts_with(&format!("{STREAM}-")), "{epoch}");
    assert_eq!(
        epoch_of(&two),
        epoch,
        "the stream's, the same on every instance"
    );

    let js = nats::jetstream::new(nats.client());
    let mut c = one.client();
    subscribe(&mut c, &["odin.px.*"]);
    let first = publish(&js, "odin.px.a", 1);
    assert_eq!(next(&mut c), ("odin.px.a".into(), first, 1));
    drop(c);
    // Missed while away; instance two consumes them too, through its own consumer.
    let missed: Vec<u64> = (2..=5).map(|n| publish(&js, "odin.px.b", n)).collect();
    wait_for("instance two to have them", || {
        two.metric("odin_ws_broadcasts_total") >= 5.0
    });
    let mut c = two.client();
    let since = format!(r#"{{"epoch":"{epoch}","seq":{first}}}"#);
    send(
        &mut c,
        &format!(r#"{{"type":"subscribe","channels":["odin.px.*"],"since":{since}}}"#),
    );
    let ack = read_json(&mut c);
    assert_eq!(ack["recovered"], true, "{ack}");
    let replayed: Vec<u64> = (0..4).map(|_| next(&mut c).1).collect();
    assert_eq!(replayed, missed, "the same stream sequences, in order");
}

/// A subscribe with `since` (JSON text) on `channels`: the ack.
pub(crate) fn resume(c: &mut Client, channels: &[&str], since: &str) -> serde_json::Value {
    let list = serde_json::to_string(channels).unwrap();
    send(
        c,
        &format!(r#"{{"type":"subscribe","channels":{list},"id":1,"since":{since}}}"#),
    );
    let ack = read_json(c);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

#[test]
fn jetstream_resume_after_the_instance_restarts_is_recovered_in_order() {
    let nats = NatsServer::start(true);
    let env = js_env(&nats, &[]);
    let s = start(&env);
    s.wait_nats("connected");
    let mut c = s.connect();
    let welcome = read_json(&mut c);
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    assert!(!epoch.is_empty(), "{welcome}");
    subscribe(&mut c, &["odin.>"]);
    let js = nats::jetstream::new(nats.client());
    let before: Vec<u64> = (1..=3)
        .map(|n| publish(&js, if n % 2 == 0 { "odin.b" } else { "odin.a" }, n))
        .collect();
    for (i, seq) in before.iter().enumerate() {
        assert_eq!(next(&mut c).1, *seq, "message {i} live");
    }
    wait_for("odin-ws to ack what it sent", || {
        js.consumer_info(STREAM, CONSUMER)
            .unwrap()
            .ack_floor
            .stream_seq
            >= before[2]
    });
    drop(c);
    drop(s);

    // Published while no instance runs: the consumer delivers them after the restart.
    let down: Vec<u64> = (4..=5)
        .map(|n| publish(&js, if n % 2 == 0 { "odin.b" } else { "odin.a" }, n))
        .collect();
    let s = start(&env);
    s.wait_nats("connected");
    assert_eq!(s.health()["status"], "ok");
    let mut c = s.connect();
    assert_eq!(
        read_json(&mut c)["epoch"],
        epoch.as_str(),
        "the stream's epoch"
    );
    let since = format!(r#"{{"epoch":"{epoch}","seq":{}}}"#, before[0]);
    let ack = resume(&mut c, &["odin.>"], &since);
    assert_eq!(ack["recovered"], true, "{ack}");
    let live = publish(&js, "odin.a", 6);
    let mut want: Vec<u64> = before[1..].to_vec();
    want.extend(&down);
    want.push(live);
    let got: Vec<u64> = want.iter().map(|_| next(&mut c).1).collect();
    assert_eq!(
        got, want,
        "what came after the position, once, in order, then live"
    );
    assert!(
        s.metric("odin_ws_history_messages") >= 2.0,
        "history refilled"
    );
}
