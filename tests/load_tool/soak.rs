//! scripts/soak as a user runs it: `--help` answers at once, bad settings are
//! refused before anything starts, and a short soak against the real server and
//! a real nats-server samples the server and ends with PASS and exit 0.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::common::{scratch, signal};
use super::{LOAD, Proc, SERVER, exit_and_stdout, stderr_lines};

/// The short soak publishes for 40 s; startup, ramp and reports come on top. The
/// script bounds its own waits (a publisher that falls behind: DURATION + 60 s, then
/// 60 + 30 s to report; the steady clients 30 + 30 s), so past this deadline it
/// is stuck, and its own verdict would have been the better answer: one CI run on a
/// loaded machine passed 150 s without one.
const RUN_DEADLINE: Duration = Duration::from_secs(330);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak");

fn script() -> Command {
    let mut cmd = Command::new(SCRIPT);
    cmd.env("ODIN_BIN", SERVER)
        .env("LOAD_BIN", LOAD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn soak_help_answers_at_once_and_bad_settings_are_refused() {
    let mut child = script().arg("--help").spawn().unwrap();
    let (code, out) = exit_and_stdout(&mut child, || "scripts/soak --help".into());
    assert_eq!(code, Some(0), "{out}");
    for needle in [
        "usage: scripts/soak",
        "SOAK_DURATION        30m",
        "SOAK_CONNECTIONS     7000",
        "SOAK_RATE            25",
        "SOAK_CHURN_PERCENT   1",
        "SOAK_SAMPLE_INTERVAL 10s",
        "FAIL when",
    ] {
        assert!(out.contains(needle), "{needle:?} in {out}");
    }

    let out = script().env("SOAK_DURATION", "soon").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SOAK_DURATION must be a duration") && err.contains("'soon'"),
        "{err}"
    );
}

/// Collects the script's output until it closes it (the script has ended); past
/// RUN_DEADLINE the script is stopped with SIGTERM, so its trap ends its servers.
fn run_to_end(
    run: &mut Proc,
    output: &mpsc::Receiver<String>,
    dir: &std::path::Path,
) -> (Vec<String>, Option<i32>) {
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut lines = Vec::new();
    loop {
        match output.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                signal(&run.0, libc::SIGTERM);
                panic!(
                    "scripts/soak did not end in time:\n{}\n{}",
                    lines.join("\n"),
                    run_files(dir)
                );
            }
        }
    }
    (lines, run.0.wait().unwrap().code())
}

/// The tails of the short run's own logs, to tell which part of it was stuck.
fn run_files(dir: &std::path::Path) -> String {
    ["steady.log", "publish.log", "server.log"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {name} (last lines)\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_short_soak_passes() {
    let dir = scratch("soak-short");
    // Its progress, summary and verdict (stdout) go to its stderr, so they read in
    // order with its log; 20 channels × 25 msg/s fill the server's broadcast ring
    // (its main store) within the first half, which the trend leaves out as warm-up.
    let mut child = Command::new("bash")
        .args(["-c", "exec \"$0\" 1>&2", SCRIPT])
        .env("ODIN_BIN", SERVER)
        .env("LOAD_BIN", LOAD)
        .env("SOAK_DURATION", "40s")
        .env("SOAK_CONNECTIONS", "200")
        .env("SOAK_CHANNELS", "20")
        .env("SOAK_SAMPLE_INTERVAL", "2s")
        .env("SOAK_CHURN_INTERVAL", "5s")
        .env("SOAK_CHURN_PERCENT", "5")
        .env("SOAK_WARMUP_PERCENT", "50")
        // History fills at each channel's rate until WS_HISTORY_SIZE; a small one
        // fills within the warm-up, as the default does within a 30-minute run's.
        .env("SOAK_SERVER_ENV", "WS_HISTORY_SIZE=20")
        .env("SOAK_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = stderr_lines(&mut child);
    let mut run = Proc(child);
    let (lines, code) = run_to_end(&mut run, &output, &dir);
    let text = lines.join("\n");
    assert_eq!(lines.last().map(String::as_str), Some("PASS"), "{text}");
    assert_eq!(code, Some(0), "{text}");
    // 190 steady clients, one per channel of 20, each channel 1,000 messages.
    assert!(
        text.contains("steady: 190 clients, 190000 of 190000 deliveries, 0 gaps"),
        "{text}"
    );
    // Batches of 10 at 0, 5, ... 35 s: the last one ends with the window.
    assert!(
        text.contains("churn: 8 batches of 10, 80 connected, 0 refused, 0 dropped"),
        "{text}"
    );
    assert!(
        text.contains("**Soak, 40 s**") && text.contains(", 0 lost. **PASS**"),
        "{text}"
    );

    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let rows: Vec<Vec<u64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|f| f.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() >= 18, "{csv}");
    let progress = lines.iter().filter(|l| l.starts_with("soak ")).count();
    assert_eq!(progress, rows.len(), "a progress line per sample:\n{text}");
    // The clients show in the server's open fds; its RSS and CPU were read.
    let last = rows.last().unwrap();
    assert!(last[1] > 0 && last[2] >= 190 && last[3] > 0, "{csv}");
}
