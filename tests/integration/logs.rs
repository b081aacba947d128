//! What an operator reads: every line JSON in json mode (config errors and a taken
//! port included), the listen error before (instead of) the settings table, the
//! start line saying whether POST /publish is on, the drain line saying how to
//! exit at once, and `-V`.

use std::process::{Command, Stdio};

use crate::support::{BIN, Server, wait_exit};

/// Runs the server with `env` (no env file) until it exits; its stderr.
fn run_until_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["--env-file", "/dev/null"])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start odin-ws");
    let code = wait_exit(&mut child, || "odin-ws did not exit".into());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

/// Each line parsed as a JSON object, with a message that shows the bad line.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    assert!(!stderr.trim().is_empty(), "no output at all");
    stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object() && v["level"].is_string(), "{l}");
            v
        })
        .collect()
}

#[test]
fn json_mode_config_errors_are_json_lines_naming_variable_and_value() {
    let (code, stderr) = run_until_exit(&[
        ("LOG_FORMAT", "json"),
        ("WS_CPU_REJECT_THRESHOLD", "150"),
        ("WS_MAX_CONNECTIONS", "none"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let lines = json_lines(&stderr);
    let msgs: Vec<&str> = lines.iter().map(|v| v["msg"].as_str().unwrap()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("WS_CPU_REJECT_THRESHOLD") && m.contains("150"))
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("WS_MAX_CONNECTIONS") && m.contains("none"))
    );
    assert!(
        msgs.contains(&"configuration invalid (2 errors)"),
        "{msgs:?}"
    );
    assert!(lines.iter().all(|v| v["level"] == "error"), "{stderr}");
}

#[test]
fn text_mode_config_error_count_is_singular_for_one() {
    let (code, stderr) = run_until_exit(&[("WS_CPU_REJECT_THRESHOLD", "150")]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("WS_CPU_REJECT_THRESHOLD must be 0-100, got 150"),
        "{stderr}"
    );
    assert!(
        stderr.contains("configuration invalid (1 error)"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_is_one_error_line_before_any_table() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_until_exit(&[("WS_ADDR", &addr), ("LOG_FORMAT", "json")]);
    assert_eq!(code, Some(1), "{stderr}");
    let lines = json_lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "the error alone, no configuration record: {stderr}"
    );
    let msg = lines[0]["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("cannot listen on {addr}")), "{msg}");
    assert_eq!(lines[0]["level"], "error");

    let (code, stderr) = run_until_exit(&[("WS_ADDR", &addr), ("LOG_FORMAT", "text")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("WS_MAX_CONNECTIONS"), "no table: {stderr}");
}

#[test]
fn json_mode_serving_and_draining_logs_only_json() {
    let mut server = Server::start(&[("LOG_FORMAT", "json"), ("WS_SHUTDOWN_GRACE", "0s")]);
    let _client = server.client();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
    let log = server.log.lock().unwrap().clone();
    let lines = json_lines(&log);
    let msgs: Vec<&str> = lines.iter().filter_map(|v| v["msg"].as_str()).collect();
    assert!(
        msgs.contains(&"configuration"),
        "the settings as one record: {log}"
    );
    let start = msgs.iter().find(|m| m.contains("listening on")).unwrap();
    assert!(start.contains("POST /publish on"), "{start}");
    let drain = msgs.iter().find(|m| m.contains("draining")).unwrap();
    assert!(drain.contains("1 connection over"), "{drain}");
    assert!(drain.contains("exits at once"), "{drain}");
}

#[test]
fn start_line_says_publishing_is_off_and_how_to_turn_it_on() {
    let server = Server::start(&[("WS_PUBLISH_TOKEN", "")]);
    let log = server.log.lock().unwrap().clone();
    let start = log.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(
        start.contains("POST /publish off (set WS_PUBLISH_TOKEN"),
        "{start}"
    );
}

#[test]
fn dash_v_prints_the_version() {
    for flag in ["-V", "--version"] {
        let out = Command::new(BIN).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("odin-ws {} (build ", env!("CARGO_PKG_VERSION"))),
            "{flag}: {text}"
        );
    }
}
