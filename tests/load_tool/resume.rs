//! scripts/bench-resume at a small size, with the real binaries: every client the
//! drain closed comes back with `since`, is recovered, and misses nothing.

use std::process::Command;

use serde_json::Value;

use super::{LOAD, SERVER};

#[test]
fn a_drained_restart_in_jetstream_mode_loses_no_message_of_a_resuming_client() {
    let dir = std::env::temp_dir().join(format!("odin-bench-resume-{}", std::process::id()));
    let out = Command::new("scripts/bench-resume")
        .env("ODIN_BIN", SERVER)
        .env("LOAD_BIN", LOAD)
        .env("DIR", &dir)
        .env("CONNECTIONS", "100")
        .env("RAMP_RATE", "200")
        .env("BEFORE", "2")
        .env("AFTER", "4")
        .env("GRACE", "500ms")
        .output()
        .expect("run scripts/bench-resume");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let result: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}"));
    let resume = &result["resume"];
    assert_eq!(result["clients_open_at_end"], 100, "{result}");
    assert_eq!(resume["closed"], 100, "every client was drained: {result}");
    assert_eq!(resume["reopened"], 100, "{result}");
    assert_eq!(resume["recovered"], 100, "{result}");
    assert_eq!(result["gaps"], 0, "{result}");
    assert_eq!(result["missing"], 0, "{result}");
    assert_eq!(result["out_of_order"], 0, "{result}");
    let _ = std::fs::remove_dir_all(&dir);
}
