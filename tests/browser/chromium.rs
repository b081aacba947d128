//! A headless Chromium driven over the DevTools protocol: open a page, evaluate
//! JavaScript in it, wait for a condition, take a screenshot.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::Message;

use crate::common::{Client, DEADLINE, http, scratch, wait_for};

pub struct Chromium {
    child: Child,
    page: Client,
    next_id: u64,
    profile: PathBuf,
    /// One browser at a time: several on two cores starve each other's pages.
    _turn: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Chromium {
    /// A headless Chromium on about:blank, or `None` (said loudly) when the
    /// `chromium` binary is missing: scripts/test installs it.
    pub fn start(test: &str) -> Option<Chromium> {
        if Command::new("chromium").arg("--version").output().is_err() {
            eprintln!(
                "SKIPPED {test}: no `chromium` on PATH (scripts/test installs Debian's chromium)"
            );
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let profile = scratch(&format!("chromium-{test}"));
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,600",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let port = devtools_port(&mut child);
        let page = connect_page(port);
        let mut chromium = Chromium {
            child,
            page,
            next_id: 1,
            profile,
            _turn: turn,
        };
        chromium.call("Page.enable", json!({}));
        chromium.call("Runtime.enable", json!({}));
        Some(chromium)
    }

    /// Sends one command and returns its result, skipping events on the way.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.page.send(Message::text(request.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.page.read().expect("DevTools reply") else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` and waits until its document has loaded.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_until("the page to load", "document.readyState === 'complete'");
    }

    /// The value of a JavaScript expression (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub fn wait_until(&mut self, what: &str, expression: &str) {
        wait_for(what, || self.eval(expression) == Value::Bool(true));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/..." once it listens.
fn devtools_port(child: &mut Child) -> u16 {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                let _ = tx.send(rest.split('/').next().unwrap().parse::<u16>().unwrap());
            }
        }
    });
    rx.recv_timeout(DEADLINE).expect("chromium's DevTools port")
}

/// The DevTools WebSocket of the browser's one page.
fn connect_page(port: u16) -> Client {
    let raw =
        format!("GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut url = None;
    wait_for("chromium's page target", || {
        let reply = http(port, raw.as_bytes());
        let targets: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        url = targets.as_array().and_then(|list| {
            list.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string)
        });
        url.is_some()
    });
    let url = url.unwrap();
    let (page, _) = tungstenite::connect(&url).expect("DevTools WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = page.get_ref() {
        s.set_read_timeout(Some(DEADLINE + Duration::from_secs(10)))
            .unwrap();
    }
    page
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut bits, mut held) = (Vec::new(), 0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

/// Serves one HTML page on a free port, to every request, from its own thread.
pub fn serve_page(html: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            answer_page(stream, &html);
        }
    });
    port
}

fn answer_page(mut stream: TcpStream, html: &str) {
    use std::io::{Read, Write};
    let mut head = [0u8; 4096];
    let _ = stream.read(&mut head);
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}
