//! The load tool's reach modes against the real server: every client offering
//! permessage-deflate (and inflating), and every client reading GET /sse, both fed
//! by the publisher's market-data payloads.

use std::process::Command;

use super::*;

/// Runs `clients` clients with `extra` settings until they have every message of
/// a market-data feed of `per_channel` messages on each of two channels.
fn market_run(extra: &[(&str, &str)], clients: u64, per_channel: u64) -> Value {
    let (_server, port) = start_server();
    let expected = clients * per_channel;
    let mut args = vec![
        ("ws_url", format!("ws://127.0.0.1:{port}/ws")),
        ("target_connections", clients.to_string()),
        ("ramp_rate", "2000".into()),
        ("channels", "mkt.{i%2}".into()),
        ("duration", "60s".into()),
        ("stop_after_messages", expected.to_string()),
    ];
    args.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let (load, stderr) = start_subscribed(&mut load_tool(&args), clients);
    let publish = run_to_end(
        Command::new(LOAD)
            .arg("publish")
            .env("PUBLISH_URL", format!("http://127.0.0.1:{port}"))
            .env("PUBLISH_TOKEN", TOKEN)
            .env("CHANNELS", "mkt.{i%2}")
            .env("PAYLOAD", "market")
            .env("SIZE", "1000")
            .env("RATE", "400")
            .env("COUNT", (2 * per_channel).to_string()),
    );
    let published = json_line(&String::from_utf8_lossy(&publish.stdout));
    assert_eq!(published["payload"], "market", "{published}");
    assert_eq!(published["failed"], 0, "{published}");
    let report = finish(load, stderr);
    assert_eq!(report["subscribed"], clients, "{report}");
    assert_eq!(report["messages_received"], expected, "{report}");
    assert_eq!(report["latency_ms"]["count"], expected, "{report}");
    for zero in ["gaps", "out_of_order", "unparsed", "dropped"] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
    report
}

#[test]
fn compressing_clients_inflate_every_message_and_read_fewer_bytes() {
    let report = market_run(&[("compression", "on")], 100, 20);
    assert_eq!(report["compression"], true, "{report}");
    assert_eq!(report["compressing_clients"], 100, "{report}");
    assert_eq!(report["compressed_messages"], 2000, "{report}");
    // One deflated copy per broadcast serves every client (DESIGN "Compression"):
    // the tool inflates each of the 40 once and matches the other 99 copies to it.
    assert_eq!(report["inflated_messages"], 40, "{report}");
    // A ~1000-byte payload in its ~1060-byte frame; deflated, well under that.
    let per_message = report["bytes_per_message"].as_f64().unwrap();
    assert!(per_message < 700.0, "{per_message} bytes per message");
}

#[test]
fn sse_clients_parse_every_event() {
    let report = market_run(&[("transport", "sse")], 100, 20);
    assert_eq!(report["transport"], "sse", "{report}");
    assert_eq!(report["compressed_messages"], 0, "{report}");
    let per_message = report["bytes_per_message"].as_f64().unwrap();
    assert!(per_message > 1000.0, "{per_message}: SSE is not compressed");
}
