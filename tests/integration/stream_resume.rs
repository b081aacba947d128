//! JetStream resumes and snapshots that memory cannot answer, read from the
//! stream against a real nats-server: a position older than history while
//! messages keep coming, the per-resume bound, snapshots of channels written
//! before the instance started (literal and wildcard), a resume on a second
//! instance whose memory began later, and the same over Server-Sent Events
//! (`Last-Event-ID`, `snapshot=1`); a `refresh` while a read is made.
#![allow(deprecated)] // the sync nats client, as in the server

use nats::jetstream::JetStream;

use crate::auth::{SECRET, client_with_token, token};
use crate::nats_jetstream::{
    epoch_of, js_env, next, publish, resume, start, stream_made_by_the_test,
};
use crate::sse::Stream;
use crate::support::*;

/// The `n`s and seqs of messages read until `n == last`, gaps and snapshots refused.
fn read_until(c: &mut Client, last: u64) -> (Vec<u64>, Vec<u64>) {
    let (mut ns, mut seqs) = (Vec::new(), Vec::new());
    while ns.last() != Some(&last) {
        let (_, seq, n) = next(c);
        ns.push(n);
        seqs.push(seq);
    }
    (ns, seqs)
}

fn since(epoch: &str, seq: u64) -> String {
    format!(r#"{{"epoch":"{epoch}","seq":{seq}}}"#)
}

/// A server whose memory keeps 2 messages per channel, 41 messages published on
/// `odin.PREFIX.a`/`.b` and `odin.other` (n 0-20 on the two channels in turn), and
/// a publisher going on with n 21-60 meanwhile: a resume from n 0 (`first`, its
/// seq) needs the stream while live messages race it.
fn older_than_memory(
    prefix: &'static str,
) -> (NatsServer, Server, String, u64, std::thread::JoinHandle<()>) {
    let nats = NatsServer::start(true);
    let s = start(&js_env(&nats, &[("WS_HISTORY_SIZE", "2")]));
    s.wait_nats("connected");
    let epoch = epoch_of(&s);
    let js = nats::jetstream::new(nats.client());
    let channel = move |n: u64| {
        let side = if n.is_multiple_of(2) { "b" } else { "a" };
        format!("odin.{prefix}.{side}")
    };
    let first = publish(&js, &channel(0), 0);
    for n in 1..=20 {
        publish(&js, &channel(n), n);
        publish(&js, "odin.other", 1000 + n);
    }
    wait_for("odin-ws to have them all", || {
        s.metric("odin_ws_broadcasts_total") >= 41.0
    });
    let publisher = std::thread::spawn({
        let js = nats::jetstream::new(nats.client());
        move || {
            (21..=60).for_each(|n| {
                publish(&js, &channel(n), n);
            })
        }
    });
    (nats, s, epoch, first, publisher)
}

/// What a resume set up by `older_than_memory` must have got: n 1-60 once each,
/// in order, with rising seqs, and at least the 18 memory lacked from the stream.
fn read_from_the_stream_in_order(s: &Server, ns: &[u64], seqs: &[u64]) {
    assert_eq!(
        ns,
        (1..=60).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(s.metric("odin_ws_stream_reads_total") >= 1.0);
    assert!(s.metric("odin_ws_stream_read_messages_total") >= 18.0);
}

#[test]
fn jetstream_a_resume_older_than_memory_is_read_from_the_stream_with_live_racing() {
    let (_nats, s, epoch, first, publisher) = older_than_memory("r");
    let mut c = s.client();
    let ack = resume(&mut c, &["odin.r.*"], &since(&epoch, first));
    assert_eq!(ack["recovered"], true, "{ack}");
    let (ns, seqs) = read_until(&mut c, 60);
    publisher.join().unwrap();
    read_from_the_stream_in_order(&s, &ns, &seqs);
}

#[test]
fn jetstream_a_resume_over_the_read_bound_is_too_old_with_a_snapshot() {
    let nats = NatsServer::start(true);
    let env = [("WS_HISTORY_SIZE", "2"), ("WS_RESUME_MAX_MESSAGES", "3")];
    let s = start(&js_env(&nats, &env));
    s.wait_nats("connected");
    let epoch = epoch_of(&s);
    let js = nats::jetstream::new(nats.client());
    let first = publish(&js, "odin.t", 0);
    let seqs: Vec<u64> = (1..=6).map(|n| publish(&js, "odin.t", n)).collect();
    let last = seqs[5];
    wait_for("odin-ws to have them", || {
        s.metric("odin_ws_broadcasts_total") >= 7.0
    });
    let mut c = s.client();
    let pos = since(&epoch, first);
    send(
        &mut c,
        &format!(r#"{{"type":"subscribe","channels":["odin.t"],"since":{pos},"snapshot":true}}"#),
    );
    let ack = read_json(&mut c);
    assert_eq!(
        (&ack["recovered"], &ack["reason"]),
        (&false.into(), &"too_old".into()),
        "{ack}"
    );
    let snap = read_json(&mut c);
    assert_eq!(snap["snapshot"], true, "{snap}");
    assert_eq!(
        (snap["seq"].as_u64(), snap["data"]["n"].as_u64()),
        (Some(last), Some(6))
    );
    let live = publish(&js, "odin.t", 7);
    assert_eq!(next(&mut c), ("odin.t".into(), live, 7));
    assert!(s.metric("odin_ws_stream_reads_over_bound_total") >= 1.0);
    // Within the bound the same instance recovers.
    let mut c = s.client();
    let ack = resume(&mut c, &["odin.t"], &since(&epoch, last - 2));
    assert_eq!(ack["recovered"], true, "{ack}");
    let got: Vec<u64> = (0..3).map(|_| next(&mut c).2).collect();
    assert_eq!(got, [5, 6, 7]);
}

/// `odin.q.a` then `odin.q.b` then `odin.q.a` again, before any odin-ws runs.
fn written_before_start(js: &JetStream) -> (u64, u64) {
    publish(js, "odin.q.a", 1);
    let b = publish(js, "odin.q.b", 2);
    let a = publish(js, "odin.q.a", 3);
    (a, b)
}

/// The snapshot messages after a subscribe with `snapshot:true` on `channels`, as
/// (channel, seq, n), until `count` came.
fn snapshot_of(c: &mut Client, channels: &str, count: usize) -> Vec<(String, u64, u64)> {
    send(
        c,
        &format!(r#"{{"type":"subscribe","channels":{channels},"snapshot":true}}"#),
    );
    let ack = read_json(c);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    (0..count)
        .map(|_| {
            let m = read_json(c);
            assert_eq!(m["snapshot"], true, "{m}");
            (
                m["channel"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
                m["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn jetstream_a_snapshot_of_channels_written_before_the_instance_started() {
    let nats = NatsServer::start(true);
    let js = stream_made_by_the_test(&nats);
    let (a, b) = written_before_start(&js);
    // No memory at all: whatever the snapshot has comes from the stream.
    let s = start(&js_env(&nats, &[("WS_HISTORY_SIZE", "0")]));
    s.wait_nats("connected");
    let mut c = s.client();
    let literal = snapshot_of(&mut c, r#"["odin.q.a","odin.none"]"#, 1);
    assert_eq!(literal, [("odin.q.a".into(), a, 3)]);
    let mut c = s.client();
    let wildcard = snapshot_of(&mut c, r#"["odin.q.*"]"#, 2);
    assert_eq!(
        wildcard,
        [("odin.q.b".into(), b, 2), ("odin.q.a".into(), a, 3)],
        "the newest of each subject, in stream order"
    );
    let live = publish(&js, "odin.q.b", 4);
    assert_eq!(next(&mut c), ("odin.q.b".into(), live, 4), "then live");
    assert!(s.metric("odin_ws_stream_read_messages_total") >= 3.0);
}

#[test]
fn jetstream_a_resume_on_a_second_instance_whose_memory_began_later() {
    let nats = NatsServer::start(true);
    let one = start(&js_env(&nats, &[("JS_CONSUMER", "one")]));
    one.wait_nats("connected");
    let epoch = epoch_of(&one);
    let js = nats::jetstream::new(nats.client());
    let mut c = one.client();
    subscribe(&mut c, &["odin.px.*"]);
    let first = publish(&js, "odin.px.a", 1);
    assert_eq!(next(&mut c).1, first);
    drop(c);
    let missed: Vec<u64> = (2..=6).map(|n| publish(&js, "odin.px.b", n)).collect();
    // Started after them, keeping one per channel: the older ones are the stream's.
    let two = start(&js_env(
        &nats,
        &[("JS_CONSUMER", "two"), ("WS_HISTORY_SIZE", "1")],
    ));
    two.wait_nats("connected");
    assert_eq!(epoch_of(&two), epoch);
    let mut c = two.client();
    let ack = resume(&mut c, &["odin.px.*"], &since(&epoch, first));
    assert_eq!(ack["recovered"], true, "{ack}");
    let replayed: Vec<u64> = missed.iter().map(|_| next(&mut c).1).collect();
    assert_eq!(replayed, missed);
    let live = publish(&js, "odin.px.a", 7);
    assert_eq!(next(&mut c).1, live);
    assert!(two.metric("odin_ws_stream_reads_total") >= 1.0);
}

#[test]
fn jetstream_resumes_after_a_restart_are_served_from_memory_not_the_stream() {
    let nats = NatsServer::start(true);
    let env = js_env(&nats, &[]);
    let s = start(&env);
    s.wait_nats("connected");
    let epoch = epoch_of(&s);
    let js = nats::jetstream::new(nats.client());
    let channel = |n: u64| format!("odin.s.{}", n % 5);
    let before: Vec<u64> = (1..=40).map(|n| publish(&js, &channel(n), n)).collect();
    wait_for("odin-ws to ack what it took", || {
        js.consumer_info(
            crate::nats_jetstream::STREAM,
            crate::nats_jetstream::CONSUMER,
        )
        .unwrap()
        .ack_floor
        .stream_seq
            >= before[39]
    });
    drop(s);
    // Published while it is down: they come through the consumer after the restart.
    for n in 41..=50 {
        publish(&js, &channel(n), n);
    }
    let s = start(&env);
    s.wait_nats("connected");
    wait_for("the backlog in memory", || {
        s.metric("odin_ws_broadcasts_total") >= 10.0
    });
    // A reconnect storm in miniature: every client from its own position.
    for (i, seq) in before.iter().enumerate() {
        let mut c = s.client();
        let ack = resume(&mut c, &["odin.s.*"], &since(&epoch, *seq));
        assert_eq!(ack["recovered"], true, "client {i}: {ack}");
        let (ns, _) = read_until(&mut c, 50);
        assert_eq!(ns, (i as u64 + 2..=50).collect::<Vec<_>>(), "client {i}");
    }
    assert_eq!(
        s.metric("odin_ws_stream_reads_total"),
        0.0,
        "memory served every resume: no NATS request for them"
    );
}

#[test]
fn jetstream_an_sse_last_event_id_older_than_memory_is_read_from_the_stream() {
    let (nats, s, epoch, first, publisher) = older_than_memory("e");
    // A browser's reconnect: its first URL and the last id it saw.
    let last_id = format!("Last-Event-ID: {epoch}:{first}\r\n");
    let mut st = Stream::open(&s, "channels=odin.e.*", &last_id);
    let (_, ack) = st.expect("subscribed");
    assert_eq!(ack["recovered"], true, "{ack}");
    let mut ns = Vec::new();
    let mut seqs: Vec<u64> = Vec::new();
    while ns.last() != Some(&60) {
        let (id, m) = st.expect("message");
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(id, Some(format!("{epoch}:{seq}")), "{m}");
        ns.push(m["data"]["n"].as_u64().unwrap());
        seqs.push(seq);
    }
    publisher.join().unwrap();
    read_from_the_stream_in_order(&s, &ns, &seqs);
    // Then live.
    let live = publish(&nats::jetstream::new(nats.client()), "odin.e.a", 61);
    let (_, m) = st.expect("message");
    assert_eq!(
        (m["seq"].as_u64(), m["data"]["n"].as_u64()),
        (Some(live), Some(61))
    );
}

#[test]
fn jetstream_an_sse_snapshot_of_channels_written_before_the_instance_started() {
    let nats = NatsServer::start(true);
    let js = stream_made_by_the_test(&nats);
    let (a, b) = written_before_start(&js);
    let s = start(&js_env(&nats, &[("WS_HISTORY_SIZE", "0")]));
    s.wait_nats("connected");
    let mut st = Stream::open(&s, "channels=odin.q.*&snapshot=1", "");
    let (_, ack) = st.expect("subscribed");
    assert!(ack.get("recovered").is_none(), "{ack}");
    let snapshot: Vec<(String, u64, bool)> = (0..2)
        .map(|_| {
            let (_, m) = st.expect("message");
            let channel = m["channel"].as_str().unwrap().to_string();
            (channel, m["seq"].as_u64().unwrap(), m["snapshot"] == true)
        })
        .collect();
    assert_eq!(
        snapshot,
        [("odin.q.b".into(), b, true), ("odin.q.a".into(), a, true)],
        "the newest of each subject, from the stream, in stream order"
    );
    let live = publish(&js, "odin.q.b", 4);
    let (_, m) = st.expect("message");
    assert_eq!(
        (m["seq"].as_u64(), m["snapshot"].as_bool()),
        (Some(live), None)
    );
    assert!(s.metric("odin_ws_stream_read_messages_total") >= 2.0);
}

#[test]
fn jetstream_a_refresh_while_a_resume_is_read_leaves_out_what_it_revoked() {
    let nats = NatsServer::start(true);
    let env = [("WS_HISTORY_SIZE", "1"), ("WS_AUTH_JWT_SECRET", SECRET)];
    let s = start(&js_env(&nats, &env));
    s.wait_nats("connected");
    let mut epoch = String::new();
    wait_for("the stream's epoch in welcome", || {
        let mut c = connect(&format!("{}?token={}", s.url(), token("u", &["odin.>"])));
        epoch = read_json(&mut c)["epoch"].as_str().unwrap().to_string();
        !epoch.is_empty()
    });
    let js = nats::jetstream::new(nats.client());
    let channel = |n: u64| {
        if n.is_multiple_of(2) {
            "odin.b.x"
        } else {
            "odin.a.x"
        }
    };
    let first = publish(&js, "odin.a.x", 0);
    let mut b_seqs = Vec::new();
    for n in 1..=6 {
        let seq = publish(&js, channel(n), n);
        if channel(n) == "odin.b.x" {
            b_seqs.push(seq);
        }
    }
    wait_for("odin-ws to have them", || {
        s.metric("odin_ws_broadcasts_total") >= 7.0
    });
    let mut c = client_with_token(&s, &token("u", &["odin.>"]));
    // In one write, so the refresh is read before the stream answers.
    let pos = since(&epoch, first);
    let subscribe = format!(
        r#"{{"type":"subscribe","channels":["odin.a.*","odin.b.*"],"since":{pos},"id":1}}"#
    );
    let narrow = token("u", &["odin.b.>"]);
    let refresh = format!(r#"{{"type":"refresh","token":"{narrow}","id":2}}"#);
    for text in [subscribe, refresh] {
        c.write(tungstenite::Message::text(text)).unwrap();
    }
    c.flush().unwrap();
    let revoked = read_json(&mut c);
    assert_eq!(
        (&revoked["type"], &revoked["channels"], &revoked["reason"]),
        (
            &"unsubscribed".into(),
            &serde_json::json!(["odin.a.*"]),
            &"forbidden".into()
        ),
        "{revoked}"
    );
    assert_eq!(read_json(&mut c)["type"], "refreshed");
    let ack = read_json(&mut c);
    assert_eq!(ack["channels"], serde_json::json!(["odin.b.*"]), "{ack}");
    assert_eq!((&ack["recovered"], &ack["id"]), (&true.into(), &1.into()));
    let replayed: Vec<u64> = b_seqs.iter().map(|_| next(&mut c).1).collect();
    assert_eq!(replayed, b_seqs, "only the channels still allowed");
    publish(&js, "odin.a.x", 7);
    let live = publish(&js, "odin.b.x", 8);
    assert_eq!(next(&mut c), ("odin.b.x".into(), live, 8), "then live");
    assert!(s.metric("odin_ws_stream_reads_total") >= 1.0);
}
