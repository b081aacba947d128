//! End to end: 1,000 clients on literal and wildcard subscriptions receive
//! exactly the messages that match, in order.

use odin_ws::channel::pattern_matches;

use crate::support::*;

const CLIENTS: usize = 1000;
/// Each client takes one of these subscription sets (index = client % len).
const GROUPS: [&[&str]; 4] = [
    &["mkt.BTC.trades"],
    &["mkt.*.trades"],
    &["mkt.ETH.>"],
    // Overlapping patterns: each message still arrives once.
    &["mkt.BTC.trades", "mkt.*.trades", "mkt.>"],
];
const CHANNELS: [&str; 5] = [
    "mkt.BTC.trades",
    "mkt.ETH.trades",
    "mkt.ETH.book.l2",
    "mkt.SOL.trades",
    "other.BTC",
];
/// Published after each round; every group matches at least one of them.
const MARKERS: [&str; 2] = ["mkt.ETH.end", "mkt.BTC.trades"];

fn matches(group: &[&str], channel: &str) -> bool {
    group.iter().any(|p| pattern_matches(p, channel))
}

fn expected(group: &[&str], published: &[(&str, i64)]) -> Vec<i64> {
    published
        .iter()
        .filter(|(ch, _)| matches(group, ch))
        .map(|(_, n)| *n)
        .collect()
}

/// Reads until every end marker the group matches has come; returns the `n` of each message.
fn read_round(c: &mut Client, group: &[&str], round: i64) -> Vec<i64> {
    let mut markers_left = MARKERS.iter().filter(|m| matches(group, m)).count();
    assert!(markers_left > 0);
    let mut got = Vec::new();
    while markers_left > 0 {
        let msg = read_json(c);
        assert_eq!(msg["type"], "message", "{msg}");
        assert!(msg["seq"].as_u64().is_some());
        if msg["data"]["end"] == round {
            markers_left -= 1;
        } else {
            assert_eq!(
                markers_left,
                MARKERS.iter().filter(|m| matches(group, m)).count(),
                "message after a marker"
            );
            got.push(msg["data"]["n"].as_i64().expect("n"));
        }
    }
    got
}

fn publish_round(s: &Server, round: i64, published: &[(&str, i64)]) {
    for (ch, n) in published {
        assert_eq!(
            s.publish(
                ch,
                &format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(150))
            )
            .status,
            202
        );
    }
    for marker in MARKERS {
        assert_eq!(
            s.publish(marker, &format!("{{\"end\":{round}}}")).status,
            202
        );
    }
}

#[test]
fn a_thousand_clients_get_exactly_their_messages_in_order() {
    let _heavy = heavy();
    // 500 clients per worker: more than a turn's broadcast flush budget, so each
    // broadcast goes out over several turns; order and completeness must hold.
    let s = Server::start(&[("WS_WORKER_POOL_SIZE", "2")]);
    let mut clients: Vec<(usize, Client)> = (0..CLIENTS)
        .map(|i| {
            let mut c = s.client();
            subscribe(&mut c, GROUPS[i % GROUPS.len()]);
            (i % GROUPS.len(), c)
        })
        .collect();
    assert_eq!(s.health()["connections"], CLIENTS);

    let published: Vec<(&str, i64)> = (0..40)
        .map(|n| (CHANNELS[n % CHANNELS.len()], n as i64))
        .collect();
    publish_round(&s, 1, &published);
    let mut deliveries = 0;
    for (group, c) in &mut clients {
        let group = GROUPS[*group];
        assert_eq!(
            read_round(c, group, 1),
            expected(group, &published),
            "{group:?}"
        );
        deliveries += expected(group, &published).len()
            + MARKERS.iter().filter(|m| matches(group, m)).count();
    }
    wait_for("/metrics to count every delivery", || {
        s.metric("odin_ws_deliveries_total") == deliveries as f64
    });

    // Unsubscribe stops delivery: group 3 drops its wildcards and keeps BTC only.
    for (group, c) in clients.iter_mut().filter(|(g, _)| *g == 3) {
        send(
            c,
            r#"{"type":"unsubscribe","channels":["mkt.*.trades","mkt.>"]}"#,
        );
        assert_eq!(read_json(c)["type"], "unsubscribed", "group {group}");
    }
    let published: Vec<(&str, i64)> = (100..110)
        .map(|n| (CHANNELS[n % CHANNELS.len()], n as i64))
        .collect();
    publish_round(&s, 2, &published);
    for (group, c) in clients.iter_mut().filter(|(g, _)| *g == 3) {
        let got = read_round(c, &["mkt.BTC.trades"], 2);
        assert_eq!(
            got,
            expected(&["mkt.BTC.trades"], &published),
            "group {group} after unsubscribe"
        );
    }

    clients.truncate(CLIENTS / 2);
    wait_for("/health to count the clients left", || {
        s.health()["connections"] == CLIENTS / 2
    });
}

#[test]
fn non_json_payloads_are_strings_and_seq_increases() {
    let s = Server::start(&[]);
    let mut c = s.client();
    subscribe(&mut c, &["t.>"]);
    assert_eq!(s.publish("t.a", "\"plain text\"").status, 202);
    assert_eq!(s.publish("t.b", "[1,2]").status, 202);
    let first = read_json(&mut c);
    let second = read_json(&mut c);
    assert_eq!(first["data"], "plain text");
    assert_eq!(second["data"], serde_json::json!([1, 2]));
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
}
