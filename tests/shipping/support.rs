//! Helpers shared by the shipping tests: paths, processes, HTTP, WebSocket.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The dynamically linked debug build cargo made for the tests.
pub const DEV_BIN: &str = env!("CARGO_BIN_EXE_odin-ws");
/// The build id of DEV_BIN: this file is compiled with the same environment.
pub const DEV_BUILD: &str = match option_env!("ODIN_WS_BUILD") {
    Some(b) => b,
    None => "dev",
};
/// The image's user (scripts/image-rootfs, USER in docker/Dockerfile).
pub const IMAGE_USER: &str = "10001:10001";
pub const TOKEN: &str = "ship-token";

pub use crate::common::{Client, DEADLINE, connect, free_port, read_json, subscribe, wait_for};

/// An empty directory for one shipping test.
pub fn scratch(name: &str) -> PathBuf {
    crate::common::scratch(&format!("shipping/{name}"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `program` inside `root` with an empty environment, as the image's user when
/// we are root, else as root of a user namespace.
pub fn chrooted(root: &Path, program: &str) -> Command {
    // SAFETY: geteuid only reads the process's credentials.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={IMAGE_USER}"));
        c
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user", "chroot"]);
        c
    };
    cmd.arg(root).arg(program).env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    cmd
}

/// A child whose stdout and stderr are collected; killed when dropped.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    /// The first line containing the ready pattern.
    pub ready: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, ready: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let (log, tx, ready) = (Arc::clone(&log), tx.clone(), ready.to_string());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains(&ready) {
                        let _ = tx.send(line.clone());
                    }
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let ready = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{cmd:?} did not log {ready:?}:\n{}", log.lock().unwrap()));
        Proc { child, log, ready }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        crate::common::signal(&self.child, sig);
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        let log = Arc::clone(&self.log);
        crate::common::wait_exit(&mut self.child, || log.lock().unwrap().clone())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in "... listening on 127.0.0.1:PORT (...".
pub fn listening_port(line: &str) -> u16 {
    let addr = line.split("listening on ").nth(1).unwrap();
    let addr = addr.split(' ').next().unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// nats-server on a random port of 127.0.0.1, with `args`.
pub fn nats_server(args: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new("nats-server");
    cmd.args(args).args(["-a", "127.0.0.1", "-p", "-1"]);
    let nats = Proc::spawn(&mut cmd, "Listening for client connections on ");
    let port = nats
        .ready
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (nats, port)
}

pub fn http(port: u16, request: &str) -> (u16, String) {
    let reply = crate::common::http(port, request.as_bytes());
    (reply.status, reply.body)
}

pub fn get(port: u16, path: &str) -> (u16, String) {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

pub fn publish(port: u16, channel: &str, data: &str) -> u16 {
    let body = format!("{{\"channel\":\"{channel}\",\"data\":{data}}}");
    http(
        port,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .0
}

/// A client that has read its welcome frame.
pub fn ws_client(port: u16) -> Client {
    let mut ws = connect(&format!("ws://127.0.0.1:{port}/ws"));
    assert_eq!(read_json(&mut ws)["type"], "welcome");
    ws
}
