//! Samples the server's /health every HEALTH_INTERVAL on a thread of its own
//! (plain blocking HTTP: one request every few seconds).

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::head;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One sample: seconds since the tool started and the body (or the error).
pub struct Sample {
    pub t_s: f64,
    pub body: Value,
}

pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(addr: SocketAddrV4, path: String, every: Duration, start: Instant) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                let body = match get(addr, &path) {
                    Ok(b) => b,
                    Err(e) => serde_json::json!({ "error": e }),
                };
                samples.push(Sample {
                    t_s: start.elapsed().as_secs_f64(),
                    body,
                });
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return samples,
                }
            }
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

fn get(addr: SocketAddrV4, path: &str) -> Result<Value, String> {
    let mut s =
        TcpStream::connect_timeout(&addr.into(), REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let head = head::parse(&reply).ok_or("no HTTP head")??;
    let status = head.status.to_string();
    let mut value: Value = serde_json::from_slice(&reply[head.len..])
        .map_err(|_| format!("http {status}, body not JSON"))?;
    if let Value::Object(map) = &mut value {
        map.insert("http_status".into(), Value::from(status));
    }
    Ok(value)
}
