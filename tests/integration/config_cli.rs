//! `odin-ws --check-config`: the table on stdout, each error on stderr naming
//! the variable and the value, exit 0 or 1.

use std::process::Command;

use crate::support::{BIN, scratch};

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(env: &[(&str, &str)], env_file: &str) -> Checked {
    let out = Command::new(BIN)
        .args(["--check-config", "--env-file", env_file])
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run odin-ws");
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fails_with(env: &[(&str, &str)], needles: &[&str]) {
    let c = check(env, "/dev/null");
    assert_eq!(c.code, 1, "{env:?} should fail; stdout: {}", c.stdout);
    for n in needles {
        assert!(
            c.stderr.contains(n),
            "{env:?}: stderr lacks {n:?}:\n{}",
            c.stderr
        );
    }
}

#[test]
fn each_check_names_the_variable_and_the_value() {
    fails_with(&[("WS_ADDR", "")], &["WS_ADDR", "\"\""]);
    fails_with(
        &[("WS_CPU_REJECT_THRESHOLD", "150")],
        &["WS_CPU_REJECT_THRESHOLD must be 0-100, got 150"],
    );
    fails_with(
        &[("LOG_LEVEL", "trace")],
        &["LOG_LEVEL", "trace", "debug", "info", "warn", "error"],
    );
    fails_with(
        &[
            ("WS_CPU_REJECT_THRESHOLD", "75"),
            ("WS_CPU_PAUSE_THRESHOLD", "60"),
        ],
        &[
            "WS_CPU_PAUSE_THRESHOLD",
            "WS_CPU_REJECT_THRESHOLD",
            "60",
            "75",
        ],
    );
    fails_with(&[("WS_PING_INTERVAL", "30")], &["WS_PING_INTERVAL", "30"]);
    fails_with(
        &[("WS_SLOW_CLIENT_POLICY", "pray")],
        &["WS_SLOW_CLIENT_POLICY", "pray"],
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let c = check(
        &[("WS_MAX_CONNECTIONS", "abc"), ("LOG_FORMAT", "xml")],
        "/dev/null",
    );
    assert_eq!(c.code, 1);
    assert!(
        c.stderr.contains("WS_MAX_CONNECTIONS") && c.stderr.contains("LOG_FORMAT"),
        "{}",
        c.stderr
    );
}

#[test]
fn pool_is_derived_from_the_cpu_limit() {
    let c = check(&[("WS_CPU_LIMIT", "1.9")], "/dev/null");
    assert_eq!(c.code, 0, "{}", c.stderr);
    let line = c
        .stdout
        .lines()
        .find(|l| l.starts_with("WS_WORKER_POOL_SIZE"))
        .expect("pool row");
    assert!(line.split_whitespace().nth(1) == Some("2"), "{line}");
}

#[test]
fn the_go_servers_production_file_loads_unchanged() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/production.env");
    let c = check(&[("BACKEND_INTERNAL_IP", "10.1.2.3")], file);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(c.stdout.contains("nats://10.1.2.3:4222"), "{}", c.stdout);
    assert!(c.stdout.contains("production"));
}

#[test]
fn a_named_env_file_that_is_missing_is_an_error() {
    let c = check(&[], "/nonexistent/odin.env");
    assert_eq!(c.code, 1);
    assert!(c.stderr.contains("/nonexistent/odin.env"), "{}", c.stderr);
}

#[test]
fn environment_overrides_the_file() {
    let dir = scratch("cfg");
    let file = dir.join("test.env");
    std::fs::write(
        &file,
        "WS_MAX_CONNECTIONS=123\nWS_PATH=/stream\nOTHER_SERVICE_VAR=x\n",
    )
    .unwrap();
    let c = check(&[("WS_MAX_CONNECTIONS", "456")], file.to_str().unwrap());
    assert_eq!(c.code, 0, "{}", c.stderr);
    let row = |name: &str| {
        c.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(row("WS_MAX_CONNECTIONS").contains("456"), "{}", c.stdout);
    assert!(
        row("WS_PATH ").contains("/stream") || row("WS_PATH").contains("/stream"),
        "{}",
        c.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
