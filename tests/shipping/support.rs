//! Helpers shared by the shipping tests: paths, processes, HTTP, WebSocket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

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
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const TOKEN: &str = "ship-token";

/// An empty directory under cargo's temporary directory for integration tests.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("shipping")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.log());
            std::thread::park_timeout(Duration::from_millis(20));
        }
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
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

pub type Client = tungstenite::WebSocket<MaybeTlsStream<TcpStream>>;

/// A client that has read its welcome frame.
pub fn ws_client(port: u16) -> Client {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    assert_eq!(read_json(&mut ws)["type"], "welcome");
    ws
}

pub fn read_json(c: &mut Client) -> serde_json::Value {
    loop {
        match c.read().expect("a frame") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub fn subscribe(c: &mut Client, channels: &[&str]) {
    let req = serde_json::json!({"type": "subscribe", "channels": channels});
    c.send(Message::text(req.to_string())).unwrap();
    assert_eq!(read_json(c)["type"], "subscribed");
}

pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
