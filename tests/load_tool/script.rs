//! scripts/load-test as a user runs it: `--help` answers at once, and a short run
//! against the real server ends with a verdict line and the exit status to match.

use std::process::{Command, Stdio};

use super::common::scratch;
use super::{LOAD, Proc, TOKEN, exit_and_stdout, start_server, stderr_lines};

fn script() -> Command {
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/load-test"));
    cmd.env("LOAD_BIN", LOAD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn help_answers_at_once_and_unknown_flags_are_refused() {
    let mut child = script().arg("--help").spawn().unwrap();
    let (code, out) = exit_and_stdout(&mut child, || "scripts/load-test --help".into());
    assert_eq!(code, Some(0), "{out}");
    for needle in [
        "usage: scripts/load-test",
        "TARGET_CONNECTIONS",
        "7000",
        "examples:",
    ] {
        assert!(out.contains(needle), "{needle:?} in {out}");
    }

    let out = script().arg("--bogus").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--bogus") && err.contains("usage:"), "{err}");
}

/// A short load test with a publisher over HTTP using `token` (none: unset):
/// (exit code, stderr lines, stdout).
fn short_run(name: &str, token: Option<&str>) -> (Option<i32>, Vec<String>, String) {
    let (_server, port) = start_server();
    let mut cmd = script();
    cmd.env("WS_URL", format!("ws://127.0.0.1:{port}/ws"))
        .env("TARGET_CONNECTIONS", "20")
        .env("RAMP_RATE", "1000")
        .env("DURATION", "3s")
        .env("PROGRESS_INTERVAL", "1s")
        .env("PUBLISH_URL", format!("http://127.0.0.1:{port}"))
        .env("RATE", "20")
        .env("RESULTS_DIR", scratch(name));
    match token {
        Some(token) => cmd.env("PUBLISH_TOKEN", token),
        None => cmd.env_remove("PUBLISH_TOKEN"),
    };
    let mut child = cmd.spawn().unwrap();
    let stderr = stderr_lines(&mut child);
    let mut run = Proc(child);
    let (code, out) = exit_and_stdout(&mut run.0, || {
        stderr.try_iter().collect::<Vec<_>>().join("\n")
    });
    // The pipe closes once the script and its tools are gone.
    (code, stderr.iter().collect(), out)
}

#[test]
fn a_refused_publisher_fails_with_the_reason() {
    let (code, log, _) = short_run("load-test-refused", Some("wrong-token"));
    let text = log.join("\n");
    let verdict = log.last().expect("a verdict line");
    assert!(verdict.starts_with("FAIL: "), "{text}");
    assert!(
        verdict.contains("publish errors") && verdict.contains("http 401"),
        "{text}"
    );
    assert_eq!(code, Some(1), "{text}");
    // Shown as it happened, not only in publish.json.
    assert!(
        text.contains("odin-ws-load publish: error: http 401"),
        "{text}"
    );
    assert!(text.contains("publish-to-receive ms: n/a"), "{text}");
}

#[test]
fn a_healthy_run_passes() {
    let (code, log, out) = short_run("load-test-healthy", Some(TOKEN));
    let text = log.join("\n");
    assert_eq!(log.last().map(String::as_str), Some("PASS"), "{text}");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("progress ") && text.contains("open 20/20"),
        "{text}"
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("the JSON report");
    assert_eq!(report["succeeded"], 20, "{report}");
    assert!(report["messages_received"].as_u64() > Some(0), "{report}");
}

#[test]
fn a_publisher_that_cannot_start_ends_the_run_at_once() {
    // The run would end after DURATION (3 s) anyway: the script's stop line is
    // what shows it did not wait for it.
    let (code, log, _) = short_run("load-test-no-token", None);
    let text = log.join("\n");
    assert!(text.contains("PUBLISH_TOKEN is needed"), "{text}");
    assert!(
        text.contains("the publisher failed (above); stopping"),
        "{text}"
    );
    let verdict = log.last().expect("a verdict line");
    assert!(
        verdict.starts_with("FAIL: ") && verdict.contains("no report from the publisher"),
        "{text}"
    );
    assert_eq!(code, Some(1), "{text}");
}
