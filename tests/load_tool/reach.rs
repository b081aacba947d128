//! The load tool's reach modes against the real server: every client offering
//! permessage-deflate (and inflating), and every client reading GET /sse, both fed
//! by the publisher's market-data payloads.

use std::process::Command;

use super::common::scratch;
use super::*;

/// Runs `clients` clients with `extra` settings until they have every message of
/// a market-data feed of `per_channel` messages on each of two channels.
fn market_run(extra: &[(&str, &str)], clients: u64, per_channel: u64) -> Value {
    market_runs(extra, &[clients], per_channel).remove(0)
}

/// As `market_run`, with one load process per entry of `processes` (its clients)
/// on the same server and feed; their reports.
fn market_runs(extra: &[(&str, &str)], processes: &[u64], per_channel: u64) -> Vec<Value> {
    let (_server, port) = start_server();
    let loads: Vec<_> = processes
        .iter()
        .map(|&clients| {
            let mut args = vec![
                ("ws_url", format!("ws://127.0.0.1:{port}/ws")),
                ("target_connections", clients.to_string()),
                ("ramp_rate", "2000".into()),
                ("channels", "mkt.{i%2}".into()),
                ("duration", "60s".into()),
                ("stop_after_messages", (clients * per_channel).to_string()),
            ];
            args.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            start_subscribed(&mut load_tool(&args), clients)
        })
        .collect();
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
    let reports = loads
        .into_iter()
        .zip(processes)
        .map(|((load, stderr), &clients)| {
            let report = finish(load, stderr);
            let expected = clients * per_channel;
            assert_eq!(report["subscribed"], clients, "{report}");
            assert_eq!(report["messages_received"], expected, "{report}");
            assert_eq!(report["latency_ms"]["count"], expected, "{report}");
            for zero in ["gaps", "out_of_order", "unparsed", "dropped"] {
                assert_eq!(report[zero], 0, "{zero}: {report}");
            }
            report
        });
    reports.collect()
}

#[test]
fn compressing_clients_inflate_every_message_and_read_fewer_bytes() {
    let report = market_run(&[("compression", "on")], 100, 20);
    assert_eq!(report["compression"], true, "{report}");
    assert!(report["histograms_us"].is_null(), "only with HISTOGRAMS=on");
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

/// scripts/bench-report --merge LOAD.json...: one report for the load processes
/// scripts/bench R spreads its clients over.
fn merge(name: &str, reports: &[&Value]) -> Value {
    let out = bench_report_merge(name, reports);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    json_line(&stdout)
}

/// --merge's error when it refuses the reports.
fn merge_fails(name: &str, reports: &[&Value]) -> String {
    let out = bench_report_merge(name, reports);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "merged: {stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bench_report_merge(name: &str, reports: &[&Value]) -> std::process::Output {
    let dir = scratch(name);
    let files: Vec<_> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let file = dir.join(format!("load{i}.json"));
            std::fs::write(&file, r.to_string()).unwrap();
            file
        })
        .collect();
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-report"))
        .arg("--merge")
        .args(&files)
        .output()
        .expect("run scripts/bench-report")
}

#[test]
fn the_reports_of_several_processes_merge_into_one() {
    let runs = market_runs(
        &[("compression", "on"), ("histograms", "on")],
        &[30, 20],
        20,
    );
    let (a, b) = (&runs[0], &runs[1]);
    // One report merged alone is itself: the quantiles from its histograms are its own.
    let one = merge("merge-one", &[a]);
    for key in [
        "latency_ms",
        "connect_ms",
        "messages_received",
        "bytes_per_message",
        "succeeded",
        "failures",
        "tool_cpu_s",
    ] {
        assert_eq!(one[key], a[key], "{key}: {one}");
    }
    let both = merge("merge-two", &[a, b]);
    let without = serde_json::json!({"messages_received": 1});
    let err = merge_fails("merge-without", &[a, &without]);
    assert!(err.contains("HISTOGRAMS=on"), "{err}");
    assert_eq!(both["processes"], 2, "{both}");
    assert_eq!(both["succeeded"], 50, "{both}");
    assert_eq!(both["messages_received"], 1000, "{both}");
    assert_eq!(both["latency_ms"]["count"], 1000, "{both}");
    assert_eq!(both["compressed_messages"], 1000, "{both}");
    // Each process inflates each of the 40 broadcasts once.
    assert_eq!(both["inflated_messages"], 80, "{both}");
    let f = |v: &Value, k: &str| v["latency_ms"][k].as_f64().unwrap();
    for q in ["p50", "p99"] {
        let (lo, hi) = (f(a, q).min(f(b, q)), f(a, q).max(f(b, q)));
        assert!(lo <= f(&both, q) && f(&both, q) <= hi, "{q}: {both}");
    }
    assert_eq!(f(&both, "max"), f(a, "max").max(f(b, "max")), "{both}");
    let bytes = a["bytes_read"].as_u64().unwrap() + b["bytes_read"].as_u64().unwrap();
    let per_message = (bytes as f64 / 1000.0 * 100.0).round() / 100.0;
    assert_eq!(
        both["bytes_per_message"].as_f64(),
        Some(per_message),
        "{both}"
    );
}
