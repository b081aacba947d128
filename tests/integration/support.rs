//! Starts the real binary on a free port and speaks to it over real sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub const BIN: &str = env!("CARGO_BIN_EXE_odin-ws");
pub const TOKEN: &str = "test-token";
pub use crate::common::*;

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

/// Settings every test server gets: an ephemeral port, no .env file, publish
/// enabled, and a CPU limit high enough that admission never trips on a busy CI box.
fn base_env() -> Vec<(&'static str, String)> {
    vec![
        ("WS_ADDR", "127.0.0.1:0".into()),
        ("WS_PUBLISH_TOKEN", TOKEN.into()),
        ("WS_CPU_LIMIT", "64".into()),
        // More workers than cores, so cross-worker paths run; not 64 of them.
        ("WS_WORKER_POOL_SIZE", "4".into()),
        ("LOG_LEVEL", "info".into()),
        ("LOG_FORMAT", "text".into()),
    ]
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_with_file(env, "/dev/null")
    }

    pub fn start_with_file(env: &[(&str, &str)], env_file: &str) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--env-file", env_file])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in base_env() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start odin-ws");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the port is sent, so a test that reads the log
                // right after start finds the start line in it.
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let port = addr.split(' ').next().unwrap().rsplit(':').next().unwrap();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink())
        });
        let port = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("server did not start:\n{}", log.lock().unwrap()));
        Server { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn connect(&self) -> Client {
        connect(&self.url())
    }

    /// A connected client that has read its welcome frame.
    pub fn client(&self) -> Client {
        let mut c = self.connect();
        let welcome = read_json(&mut c);
        assert_eq!(welcome["type"], "welcome");
        c
    }

    pub fn http(&self, raw: &str) -> HttpReply {
        http(self.port, raw.as_bytes())
    }

    pub fn get(&self, path: &str) -> HttpReply {
        self.http(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
    }

    /// The epoch a WebSocket client's welcome names.
    pub fn client_epoch(&self) -> String {
        let mut c = self.connect();
        let welcome = read_json(&mut c);
        welcome["epoch"].as_str().expect("an epoch").to_string()
    }

    pub fn health(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/health").body).expect("health is JSON")
    }

    /// The value of one metric line (`name` with its labels).
    pub fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").body;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in\n{body}"))
            .parse()
            .unwrap()
    }

    pub fn publish(&self, channel: &str, data: &str) -> HttpReply {
        let body = format!(
            "{{\"channel\":{},\"data\":{data}}}",
            serde_json::to_string(channel).unwrap()
        );
        self.http(&format!(
            "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    pub fn signal(&self, sig: i32) {
        crate::common::signal(&self.child, sig);
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let log = Arc::clone(&self.log);
        crate::common::wait_exit(&mut self.child, || log.lock().unwrap().clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends what one read of `stream` brings; false once it is closed (or fails).
pub fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match std::io::Read::read(stream, &mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads until `buf` holds a whole response head; its length, blank line included.
pub fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return i + 4;
        }
        assert!(read_more(stream, buf), "closed during the handshake");
    }
}

/// Reads an HTTP answer's head line by line: its status, the head, and the reader
/// positioned after it (for a body or an event stream).
pub fn response_head(sock: TcpStream) -> (u16, String, BufReader<TcpStream>) {
    let mut reader = BufReader::new(sock);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, reader)
}

/// `GET /sse?query` with extra header lines (each ending in \r\n): the status,
/// the head, and the reader positioned at the first event.
pub fn sse_request(port: u16, query: &str, headers: &str) -> (u16, String, BufReader<TcpStream>) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        sock,
        "GET /sse?{query} HTTP/1.1\r\nHost: t\r\n{headers}\r\n"
    )
    .unwrap();
    response_head(sock)
}

/// Tests with thousands of sockets or a sustained feed take this so they do not
/// run at the same time on a 2-core machine and starve each other's readers.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A real nats-server on a free port, optionally with JetStream in its own store.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: Option<std::path::PathBuf>,
}

impl NatsServer {
    pub fn start(jetstream: bool) -> NatsServer {
        let port = free_port();
        let store = jetstream.then(|| {
            let dir =
                std::env::temp_dir().join(format!("odin-ws-js-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
        let mut nats = NatsServer {
            child: None,
            port,
            store,
        };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(dir) = &self.store {
            cmd.args(["-js", "-sd", dir.to_str().unwrap()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_for("nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Sends `sig` to the nats-server (SIGSTOP / SIGCONT: a stalled server).
    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            crate::common::signal(child, sig);
        }
    }

    #[allow(deprecated)] // the sync nats client, as in the server
    pub fn client(&self) -> nats::Connection {
        nats::connect(self.url().as_str()).expect("connect to nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.store {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    pub fn wait_nats(&self, state: &str) {
        wait_for(&format!("/health nats {state}"), || {
            self.health()["nats"] == state
        });
    }
}
