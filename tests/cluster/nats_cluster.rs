//! odin-ws on a real three-node NATS cluster: in JetStream mode, the node it is on,
//! the stream leader and the consumer leader are killed (and restarted) in turn
//! while a publisher sends with acks; every acked message reaches a client once and
//! in order, /health says `stalled` and recovers, no status message reaches a
//! client. In core mode it reconnects within seconds and counts the gap.
#![allow(deprecated)] // the sync nats client, as in the server

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats::jetstream::{JetStream, PublishOptions};

use crate::cluster::*;
use crate::support::*;

const STREAM: &str = "ODIN_CLUSTER";
const CONSUMER: &str = "cluster-consumer";

type Received = Arc<Mutex<Vec<(String, u64, u64)>>>;

fn start(cluster: &NatsCluster, jetstream: bool) -> Server {
    let urls = cluster.urls();
    let js = if jetstream { "true" } else { "false" };
    Server::start(&[
        ("NATS_URL", urls.as_str()),
        ("NATS_SUBJECTS", "odin.>"),
        ("NATS_JETSTREAM", js),
        ("JS_STREAM", STREAM),
        ("JS_CONSUMER", CONSUMER),
        ("JS_ACK_WAIT", "5s"),
    ])
}

/// Reads every message frame of `c` into the list until `stop` (and a read fails).
fn reader(mut c: Client, stop: Arc<AtomicBool>) -> Received {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = c.get_mut() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let received = Received::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(tungstenite::Message::Text(t)) = c.read() else {
                continue;
            };
            let msg: serde_json::Value = serde_json::from_str(&t).unwrap();
            if msg["type"] != "message" {
                continue; // a core-mode reconnect's `gap` frame
            }
            let entry = (
                msg["channel"].as_str().unwrap_or("").to_string(),
                msg["seq"].as_u64().unwrap_or(0),
                msg["data"]["n"].as_u64().unwrap_or(0),
            );
            sink.lock().unwrap().push(entry);
        }
    });
    received
}

/// Publishes n = 1, 2, ... at ~50/s until `stop`; returns the stream sequences acked.
fn publisher(
    cluster: &NatsCluster,
    stop: Arc<AtomicBool>,
    jetstream: bool,
) -> Arc<Mutex<Vec<u64>>> {
    let conn = nats::Options::new()
        .max_reconnects(None)
        .connect(cluster.urls().as_str())
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&acked);
    std::thread::spawn(move || {
        let js = nats::jetstream::new(conn.clone());
        let timeout = PublishOptions {
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let payload = format!("{{\"n\":{n}}}");
            if jetstream {
                // A request lost with its node would otherwise wait forever.
                if let Ok(ack) = js.publish_with_options("odin.c", &payload, &timeout) {
                    sink.lock().unwrap().push(ack.sequence);
                }
            } else {
                let _ = conn.publish("odin.c", &payload);
                sink.lock().unwrap().push(n);
            }
            // Pacing a steady feed, not waiting for a condition.
            std::thread::park_timeout(Duration::from_millis(20));
        }
    });
    acked
}

fn stream_leader(js: &JetStream) -> Option<String> {
    js.stream_info(STREAM).ok()?.cluster.leader
}

fn consumer_leader(js: &JetStream) -> Option<String> {
    js.consumer_info(STREAM, CONSUMER).ok()?.cluster.leader
}

/// Every replica of the stream and of the consumer is current and a leader exists.
fn settled(js: &JetStream) -> bool {
    let current = |c: &nats::jetstream::ClusterInfo| {
        c.leader.is_some()
            && c.replicas.len() == 2
            && c.replicas.iter().all(|r| r.current && !r.offline)
    };
    js.stream_info(STREAM).is_ok_and(|i| current(&i.cluster))
        && js
            .consumer_info(STREAM, CONSUMER)
            .is_ok_and(|i| current(&i.cluster))
}

/// Kills node `i`, waits for messages to flow again (and, with `stall`, for
/// /health to say stalled and then ok), restarts it and waits until the cluster
/// has all its replicas back.
fn kill_and_recover(
    cluster: &mut NatsCluster,
    i: usize,
    s: &Server,
    received: &Received,
    stall: bool,
) {
    let log = || s.log.lock().unwrap().clone();
    let before = received.lock().unwrap().len();
    let killed = Instant::now();
    cluster.kill(i);
    if stall {
        let stalled = || s.get("/health?strict=1").status == 503;
        wait_explained(
            "/health?strict=1 to answer 503 (stalled)",
            ELECTION,
            stalled,
            log,
        );
        let health = s.health();
        assert_eq!(health["jetstream"], "stalled", "{health}");
        assert_eq!(health["status"], "ok", "admission stays open: {health}");
        let ok = || s.health()["jetstream"] == "ok";
        wait_explained("/health jetstream ok again", ELECTION, ok, log);
    }
    let flowing = || received.lock().unwrap().len() > before + 20;
    wait_explained("messages to flow again", ELECTION, flowing, log);
    eprintln!(
        "node {} killed: flowing again after {:?}",
        cluster.nodes[i].name,
        killed.elapsed()
    );
    cluster.restart(i);
    let js = nats::jetstream::new(nats::connect(cluster.urls().as_str()).unwrap());
    wait_explained(
        "the restarted node to catch up",
        ELECTION,
        || settled(&js),
        log,
    );
}

#[test]
fn jetstream_on_a_cluster_survives_killing_its_node_the_stream_and_the_consumer_leader() {
    let _heavy = heavy();
    let (mut cluster, js, s) = jetstream_cluster_with_odin_ws();
    let mut c = s.client();
    subscribe(&mut c, &[">"]);
    let (stop_reading, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let received = reader(c, Arc::clone(&stop_reading));
    let acked = publisher(&cluster, Arc::clone(&stop), true);
    wait_until("the first messages", ELECTION, || {
        received.lock().unwrap().len() > 20
    });

    let log = || s.log.lock().unwrap().clone();
    let first_port = connected_port(&log()).expect("the connect line names the server");
    let node = cluster.by_port(first_port);
    kill_and_recover(&mut cluster, node, &s, &received, false);
    assert!(
        log().contains(&format!("NATS disconnected from 127.0.0.1:{first_port}")),
        "{}",
        log()
    );
    let leader = stream_leader(&js).expect("a stream leader");
    let node = cluster.by_name(&leader);
    kill_and_recover(&mut cluster, node, &s, &received, true);
    let leader = consumer_leader(&js).expect("a consumer leader");
    let node = cluster.by_name(&leader);
    kill_and_recover(&mut cluster, node, &s, &received, true);

    stop.store(true, Ordering::Relaxed);
    let acked = acked.lock().unwrap().clone();
    let seqs = delivered_once_in_order(&received, &acked);
    stop_reading.store(true, Ordering::Relaxed);
    assert_eq!(
        s.metric("odin_ws_messages_in_total{source=\"nats\"}") as usize,
        seqs.len()
    );
    logged_and_counted(&s, acked.len(), seqs.len());
}

/// The logs tell the stalls and the leader changes, with no ERROR.
fn logged_and_counted(s: &Server, acked: usize, delivered: usize) {
    let counts: Vec<String> = ["duplicates", "gap_fills", "status_messages", "stalls"]
        .iter()
        .map(|m| format!("{m} {}", s.metric(&format!("odin_ws_jetstream_{m}_total"))))
        .collect();
    eprintln!(
        "{} acked, {} delivered; {}",
        acked,
        delivered,
        counts.join(", ")
    );
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("JetStream stalled"), "{log}");
    assert!(log.contains("delivering again"), "{log}");
    assert!(log.contains("leader now"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// A cluster, a JetStream context on it, and odin-ws with its R3 stream and
/// consumer replicated on all three nodes.
fn jetstream_cluster_with_odin_ws() -> (NatsCluster, JetStream, Server) {
    let cluster = NatsCluster::start("nats-cluster-js");
    let js = nats::jetstream::new(
        nats::Options::new()
            .max_reconnects(None)
            .connect(cluster.urls().as_str())
            .unwrap(),
    );
    wait_until("JetStream on the cluster", ELECTION, || {
        js.account_info().is_ok()
    });
    let s = start(&cluster, true);
    wait_until("/health jetstream ok", ELECTION, || {
        s.health()["jetstream"] == "ok"
    });
    assert_eq!(
        s.health()["jetstream_replicas"],
        3,
        "auto: R3 on three servers"
    );
    wait_until("stream and consumer replicated", ELECTION, || settled(&js));
    (cluster, js, s)
}

/// Waits for the last acked message, then checks that every acked one arrived,
/// each once and in stream order, and that nothing but stream messages did.
/// Returns the stream sequences received.
fn delivered_once_in_order(received: &Received, acked: &[u64]) -> Vec<u64> {
    let last = *acked.last().unwrap();
    wait_until("every acked message", ELECTION, || {
        let received = received.lock().unwrap();
        received.iter().any(|(_, seq, _)| *seq >= last)
    });
    let received = received.lock().unwrap().clone();
    for (channel, _, _) in &received {
        assert_eq!(channel, "odin.c", "only stream messages reach clients");
    }
    let seqs: Vec<u64> = received.iter().map(|(_, seq, _)| *seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {seqs:?}"
    );
    let missing: Vec<&u64> = acked.iter().filter(|a| !seqs.contains(a)).collect();
    assert!(missing.is_empty(), "acked but never delivered: {missing:?}");
    seqs
}

#[test]
fn core_nats_on_a_cluster_reconnects_within_seconds_and_counts_the_gap() {
    let _heavy = heavy();
    let mut cluster = NatsCluster::start("nats-cluster-core");
    let s = start(&cluster, false);
    s.wait_nats("connected");
    assert_eq!(s.health()["jetstream"], "disabled");
    let mut c = s.client();
    subscribe(&mut c, &["odin.>"]);
    let stop = Arc::new(AtomicBool::new(false));
    let received = reader(c, Arc::clone(&stop));
    let _sent = publisher(&cluster, Arc::clone(&stop), false);
    wait_until("the first messages", ELECTION, || {
        received.lock().unwrap().len() > 20
    });
    let log = || s.log.lock().unwrap().clone();
    for round in 1..=2 {
        let port = connected_port(&log()).expect("the log names the server");
        let i = cluster.by_port(port);
        let before = received.lock().unwrap().len();
        let killed = Instant::now();
        cluster.kill(i);
        wait_for("odin-ws to reconnect", || {
            s.metric("odin_ws_nats_reconnects_total") >= round as f64
        });
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(10), "reconnected after {took:?}");
        assert_eq!(s.metric("odin_ws_nats_gap_events_total"), round as f64);
        wait_for("messages to flow again", || {
            received.lock().unwrap().len() > before + 20
        });
        assert!(
            log().contains(&format!("disconnected from 127.0.0.1:{port}")),
            "{}",
            log()
        );
        cluster.restart(i);
    }
    stop.store(true, Ordering::Relaxed);
    let got: Vec<u64> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, n)| *n)
        .collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
}
