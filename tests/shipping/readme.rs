//! The README's commands as a user types them, from a fresh copy of the repository
//! (the files a clone of this tree holds: no target/, no .env): `cargo run
//! --release` serves /health on :3002, and the blocks of "Try it" (server,
//! subscriber, publish) end with the subscriber printing what the README says.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{ROOT, get, run, scratch, text};

/// A cold release build of the copy on two cores, with the rest of the suite running.
const BUILD_DEADLINE: Duration = Duration::from_secs(1200);
/// The port the README's commands use.
const README_PORT: u16 = 3002;

/// The fenced blocks of the README section `heading`, as (language, text).
fn section_blocks(readme: &str, heading: &str) -> Vec<(String, String)> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in body[..end].lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some("")) => blocks.push(open.take().unwrap()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Copies the files `git ls-files` names (tracked, and new ones not ignored) into
/// `to`: what a clone would hold, with this tree's uncommitted edits.
fn fresh_copy(to: &Path) {
    let out = run(Command::new("git").current_dir(ROOT).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]));
    assert!(out.status.success(), "git ls-files: {}", text(&out));
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let from = Path::new(ROOT).join(name);
        if !from.is_file() {
            continue; // listed but deleted in the work tree
        }
        let dest = to.join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
}

/// One README block run by bash in its own process group, its output collected.
struct Shell {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Shell {
    fn start(dir: &Path, target: &Path, script: &str) -> Shell {
        let mut child = Command::new("bash")
            .args(["-c", script])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("bash -c {script}: {e}"));
        let collect = |pipe: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&buf);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push_str(&(line + "\n"));
                }
            });
            buf
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Shell {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}stderr:\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for `check` on (stdout, stderr); fails early when the shell exited.
    fn wait(&mut self, what: &str, deadline: Duration, check: impl Fn(&str, &str) -> bool) {
        let end = Instant::now() + deadline;
        loop {
            if check(&self.stdout.lock().unwrap(), &self.stderr.lock().unwrap()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes may still hold the last lines; give the check one more look.
                std::thread::park_timeout(Duration::from_millis(200));
                if check(&self.stdout.lock().unwrap(), &self.stderr.lock().unwrap()) {
                    return;
                }
                panic!("exited ({status}) before {what}:\n{}", self.output());
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}:\n{}",
                self.output()
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // SAFETY: a signal to the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn health_ok() -> bool {
    std::net::TcpStream::connect(("127.0.0.1", README_PORT)).is_ok()
        && get(README_PORT, "/health").0 == 200
}

#[test]
fn readme_commands_work_as_written_from_a_fresh_copy() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let two = section_blocks(&readme, "The two commands");
    let run_line = two[0].1.lines().next().unwrap();
    let run_command = run_line.split('#').next().unwrap().trim();
    assert_eq!(
        run_command, "cargo run --release",
        "the README's first command"
    );
    let try_it = section_blocks(&readme, "Try it");
    let sh: Vec<&str> = try_it
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, t)| t.as_str())
        .collect();
    let expected: Vec<&str> = try_it
        .iter()
        .filter(|(lang, _)| lang == "json")
        .map(|(_, t)| t.trim())
        .collect();
    assert_eq!(sh.len(), 3, "Try it: server, subscriber, publish");
    assert_eq!(expected.len(), 1, "Try it: what the subscriber prints");
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", README_PORT)).is_ok(),
        "port {README_PORT} is taken; the README's commands need it"
    );

    let copy = scratch("readme/copy");
    fresh_copy(&copy);
    // Kept between runs (cargo rebuilds what changed), apart from the suite's own.
    let target: PathBuf = Path::new(ROOT).join("target/readme");

    // The first command alone, then the first block of Try it with the token set.
    for (script, publishing) in [(run_command, false), (sh[0], true)] {
        let mut server = Shell::start(&copy, &target, script);
        server.wait("listening on :3002", BUILD_DEADLINE, |_, err| {
            err.contains("listening on 0.0.0.0:3002")
        });
        server.wait("/health 200", Duration::from_secs(20), |_, _| health_ok());
        let line = server.stderr.lock().unwrap().clone();
        let says = if publishing {
            "POST /publish on"
        } else {
            "POST /publish off (set WS_PUBLISH_TOKEN"
        };
        assert!(line.contains(says), "start line lacks {says:?}:\n{line}");
        if !publishing {
            drop(server);
            let end = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", README_PORT)).is_ok() {
                assert!(Instant::now() < end, "the first server still listens");
                std::thread::park_timeout(Duration::from_millis(50));
            }
            continue;
        }
        let mut subscriber = Shell::start(&copy, &target, sh[1]);
        subscriber.wait("the subscribed ack", BUILD_DEADLINE, |_, err| {
            err.contains("subscribed")
        });
        let mut publish = Shell::start(&copy, &target, sh[2]);
        let status = publish.child.wait().unwrap();
        assert!(status.success(), "publish: {}", publish.output());
        let want: serde_json::Value = serde_json::from_str(expected[0]).unwrap();
        subscriber.wait("the README's line", Duration::from_secs(20), |out, _| {
            out.lines()
                .any(|l| serde_json::from_str::<serde_json::Value>(l).ok() == Some(want.clone()))
        });
    }
}
