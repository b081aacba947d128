//! odin-ws-load against the real odin-ws binary (and against nats-server's own
//! WebSocket listener in NATS mode): the counts it reports must match what its
//! publisher sent, and failures must be counted with their reason. Its subscribe
//! mode, scripts/load-test and scripts/soak are tested in the modules below.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/mod.rs"]
mod common;
use common::{free_port, wait_exit};

#[path = "load_tool/reach.rs"]
mod reach;
#[path = "load_tool/resume.rs"]
mod resume;
#[path = "load_tool/script.rs"]
mod script;
#[path = "load_tool/soak.rs"]
mod soak;
#[path = "load_tool/subscribe.rs"]
mod subscribe;

const SERVER: &str = env!("CARGO_BIN_EXE_odin-ws");
const LOAD: &str = env!("CARGO_BIN_EXE_odin-ws-load");
const TOKEN: &str = "load-test-token";
/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Kills the child when the test ends, pass or fail.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends each stderr line of `child` to the returned receiver.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, what: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push_str(&(line + "\n")),
            Err(_) => panic!("{what}: no line with {needle:?} in time; saw:\n{seen}"),
        }
    }
}

fn start_server() -> (Proc, u16) {
    let mut child = Command::new(SERVER)
        .args(["--env-file", "/dev/null"])
        .env("WS_ADDR", "127.0.0.1:0")
        .env("WS_PUBLISH_TOKEN", TOKEN)
        .env("WS_CPU_LIMIT", "64")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start odin-ws");
    let rx = stderr_lines(&mut child);
    let line = wait_line(&rx, "listening on ", "odin-ws");
    let addr = line.split("listening on ").nth(1).unwrap();
    let port = addr.split(' ').next().unwrap().rsplit(':').next().unwrap();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in rx {});
    (Proc(child), port.parse().unwrap())
}

fn load_tool(args: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(LOAD);
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Starts the load tool and waits until it reports all `clients` subscribed.
fn start_subscribed(cmd: &mut Command, clients: u64) -> (Proc, mpsc::Receiver<String>) {
    let mut child = cmd.spawn().expect("start odin-ws-load");
    let stderr = stderr_lines(&mut child);
    let load = Proc(child);
    let ready = wait_line(&stderr, "ready:", "odin-ws-load");
    assert!(ready.contains(&format!("subscribed {clients}")), "{ready}");
    (load, stderr)
}

/// Waits for the child to exit; returns its exit code and all it wrote on stdout.
fn exit_and_stdout(child: &mut Child, log: impl Fn() -> String) -> (Option<i32>, String) {
    let code = wait_exit(child, log);
    let mut out = String::new();
    let stdout = child.stdout.as_mut().expect("stdout piped");
    stdout.read_to_string(&mut out).unwrap();
    (code, out)
}

/// Waits for the process to exit and parses the last stdout line as JSON.
fn finish(mut p: Proc, stderr: mpsc::Receiver<String>) -> Value {
    let (code, out) = exit_and_stdout(&mut p.0, || "odin-ws-load".into());
    let log: Vec<String> = stderr.try_iter().collect();
    assert!(
        code == Some(0),
        "odin-ws-load failed: exit code {code:?}\n{}",
        log.join("\n")
    );
    json_line(&out)
}

fn json_line(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn run_to_end(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("run odin-ws-load");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn counts_every_published_message_on_every_matching_client() {
    let (_server, port) = start_server();
    let clients = 300u64;
    // Four channels: each client is on one of load.0..2 and on wild.a by wildcard.
    let per_channel = 30u64;
    let expected = clients * 2 * per_channel;
    let mut load = load_tool(&[
        ("ws_url", format!("ws://127.0.0.1:{port}/ws")),
        ("target_connections", clients.to_string()),
        ("ramp_rate", "2000".into()),
        ("connection_timeout", "10000".into()),
        ("channels", "load.{i%3}".into()),
        ("wildcards", "wild.*".into()),
        ("duration", "60s".into()),
        ("stop_after_messages", expected.to_string()),
    ]);
    let (load, stderr) = start_subscribed(&mut load, clients);

    let publish = run_to_end(
        Command::new(LOAD)
            .arg("publish")
            .env("PUBLISH_URL", format!("http://127.0.0.1:{port}"))
            .env("PUBLISH_TOKEN", TOKEN)
            .env("CHANNELS", "load.{i%3},wild.a")
            .env("RATE", "400")
            .env("COUNT", (4 * per_channel).to_string())
            .env("SIZE", "120"),
    );
    let published = json_line(&String::from_utf8_lossy(&publish.stdout));
    assert_eq!(published["published"], 4 * per_channel, "{published}");
    assert_eq!(published["failed"], 0, "{published}");

    let report = finish(load, stderr);
    assert_eq!(report["attempted"], clients, "{report}");
    assert_eq!(report["succeeded"], clients, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["subscribed"], clients, "{report}");
    assert_eq!(report["messages_received"], expected, "{report}");
    assert_eq!(report["latency_ms"]["count"], expected, "{report}");
    assert_eq!(report["gaps"], 0, "{report}");
    assert_eq!(report["out_of_order"], 0, "{report}");
    assert_eq!(report["unparsed"], 0, "{report}");
    assert_eq!(report["stopped_by"], "stop_after_messages", "{report}");
    assert_eq!(report["health"][0]["health"]["status"], "ok", "{report}");
}

#[test]
fn counts_refused_connections_with_their_reason() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run_to_end(&mut load_tool(&[
        ("ws_url", format!("ws://127.0.0.1:{port}/ws")),
        ("target_connections", "20".into()),
        ("ramp_rate", "1000".into()),
        ("duration", "0s".into()),
        ("health_url", "off".into()),
    ]));
    let report = json_line(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["attempted"], 20, "{report}");
    assert_eq!(report["failed"], 20, "{report}");
    assert_eq!(report["failures"]["connection refused"], 20, "{report}");
}

#[test]
fn times_out_a_server_that_never_answers_the_upgrade() {
    // The kernel completes the TCP handshake; nobody ever reads the request.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = run_to_end(&mut load_tool(&[
        ("ws_url", format!("ws://127.0.0.1:{port}/ws")),
        ("target_connections", "10".into()),
        ("ramp_rate", "1000".into()),
        ("connection_timeout", "300".into()),
        ("duration", "0s".into()),
        ("health_url", "off".into()),
    ]));
    let report = json_line(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["failed"], 10, "{report}");
    assert_eq!(report["failures"]["timeout"], 10, "{report}");
    assert_eq!(report["timeline"][0]["failed"], 10, "{report}");
    drop(listener);
}

#[test]
fn speaks_nats_over_websocket_to_nats_server() {
    let (nats_port, ws_port) = (free_port(), free_port());
    let conf = std::env::temp_dir().join(format!("odin-ws-load-test-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{nats_port}\"\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats-server must be installed (scripts/test installs it)");
    let nats_log = stderr_lines(&mut child);
    let _nats = Proc(child);
    wait_line(&nats_log, "Server is ready", "nats-server");
    std::thread::spawn(move || for _ in nats_log {});

    let clients = 50u64;
    let per_channel = 20u64;
    let expected = clients * 2 * per_channel;
    let mut load = load_tool(&[
        ("ws_url", format!("ws://127.0.0.1:{ws_port}/")),
        ("protocol", "nats".into()),
        ("target_connections", clients.to_string()),
        ("ramp_rate", "1000".into()),
        ("channels", "odin.t.{i%2}".into()),
        ("wildcards", "odin.w.*".into()),
        ("duration", "60s".into()),
        ("stop_after_messages", expected.to_string()),
    ]);
    let (load, stderr) = start_subscribed(&mut load, clients);

    let publish = run_to_end(
        Command::new(LOAD)
            .arg("publish")
            .env("PUBLISH_URL", format!("nats://127.0.0.1:{nats_port}"))
            .env("CHANNELS", "odin.t.{i%2},odin.w.x")
            .env("RATE", "300")
            .env("COUNT", (3 * per_channel).to_string()),
    );
    let published = json_line(&String::from_utf8_lossy(&publish.stdout));
    assert_eq!(published["published"], 3 * per_channel, "{published}");

    let report = finish(load, stderr);
    let _ = std::fs::remove_file(&conf);
    assert_eq!(report["succeeded"], clients, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["messages_received"], expected, "{report}");
    assert_eq!(report["gaps"], 0, "{report}");
    assert_eq!(report["out_of_order"], 0, "{report}");
    assert_eq!(report["protocol"], "nats", "{report}");
}
