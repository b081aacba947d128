//! `odin-ws-load subscribe` against the real server: messages published with
//! POST /publish arrive on stdout one JSON line each; failures exit non-zero
//! with one line that says what went wrong.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::common::{free_port, http, signal, wait_exit};
use super::{LOAD, Proc, TOKEN, exit_and_stdout, start_server, stderr_lines, wait_line};

fn publish(port: u16, channel: &str, data: &str) {
    let body = format!(r#"{{"channel":"{channel}","data":{data}}}"#);
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = http(port, request.as_bytes());
    assert_eq!(reply.status, 202, "{reply:?}");
}

fn subscriber(args: &[&str]) -> Command {
    let mut cmd = Command::new(LOAD);
    cmd.arg("subscribe").args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[test]
fn prints_each_message_as_one_json_line() {
    let (_server, port) = start_server();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut child = subscriber(&["--count", "3", &url, "demo.a", "bad channel", "other.*"])
        .spawn()
        .unwrap();
    let stderr = stderr_lines(&mut child);
    let mut sub = Proc(child);
    wait_line(
        &stderr,
        "error from the server: invalid_channel",
        "subscriber",
    );
    wait_line(&stderr, "subscribed: demo.a, other.*", "subscriber");

    publish(port, "demo.a", r#"{"k":1}"#);
    publish(port, "demo.b", r#"{"k":2}"#); // not subscribed: not printed
    publish(port, "other.x", r#""two""#);
    publish(port, "demo.a", "3");
    let (code, out) = exit_and_stdout(&mut sub.0, || "subscribe --count 3".into());
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let got: Vec<(&str, String)> = lines
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "message", "{m}");
            (m["channel"].as_str().unwrap(), m["data"].to_string())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("demo.a", r#"{"k":1}"#.to_string()),
            ("other.x", r#""two""#.to_string()),
            ("demo.a", "3".to_string()),
        ]
    );
}

#[test]
fn ctrl_c_ends_it_with_exit_0() {
    let (_server, port) = start_server();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut child = subscriber(&[&url, "demo.*"]).spawn().unwrap();
    let stderr = stderr_lines(&mut child);
    let mut sub = Proc(child);
    wait_line(&stderr, "subscribed: demo.*", "subscriber");
    signal(&sub.0, libc::SIGINT);
    let code = wait_exit(&mut sub.0, || "subscribe after SIGINT".into());
    assert_eq!(code, Some(0));
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = subscriber(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
}

#[test]
fn a_refused_connection_or_upgrade_exits_non_zero_with_the_reason() {
    let closed = format!("ws://127.0.0.1:{}/ws", free_port());
    fails_with(&[&closed, "a"], &["cannot connect", "refused"]);
    let (_server, port) = start_server();
    let wrong_path = format!("ws://127.0.0.1:{port}/nope");
    fails_with(&[&wrong_path, "a"], &["refused the upgrade", "HTTP 404"]);
}

#[test]
fn help_shows_the_usage() {
    let out = Command::new(LOAD)
        .args(["subscribe", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage: odin-ws-load subscribe"), "{text}");
    let out = Command::new(LOAD).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for mode in [
        "publish",
        "subscribe",
        "verdict",
        "PROGRESS_INTERVAL",
        "TARGET_CONNECTIONS",
    ] {
        assert!(text.contains(mode), "{mode} in {text}");
    }
}
