//! `odin-ws-load subscribe URL CHANNEL...`: one blocking client, like `nats sub`.
//! Each `message` frame goes to stdout as received, one line each, flushed; the
//! server's other frames go to stderr as readable lines.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::settings::parse_ws_url;

/// How often a blocked read wakes to look at the stop flag (Ctrl-C).
const STOP_CHECK: Duration = Duration::from_millis(200);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Args {
    pub url: String,
    pub channels: Vec<String>,
    /// Exit after this many messages; 0: never.
    pub count: u64,
    pub timeout: Duration,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut positional = Vec::new();
        let (mut count, mut timeout) = (0, DEFAULT_TIMEOUT);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| it.next().cloned());
            match flag {
                "--count" => {
                    let v = value().ok_or("--count needs a number")?;
                    count = v
                        .parse()
                        .map_err(|_| format!("--count {v:?}: expected a number"))?;
                }
                "--timeout" => {
                    let v = value().ok_or("--timeout needs a duration")?;
                    timeout = odin_ws::config::parse_duration(&v)
                        .map_err(|e| format!("--timeout: {e}"))?;
                }
                f if f.starts_with('-') => return Err(format!("unknown flag {f}")),
                _ => positional.push(arg.clone()),
            }
        }
        let Some((url, channels)) = positional.split_first() else {
            return Err("subscribe needs a URL and at least one channel".into());
        };
        if channels.is_empty() {
            return Err("subscribe needs at least one channel after the URL".into());
        }
        Ok(Args {
            url: url.clone(),
            channels: channels.to_vec(),
            count,
            timeout,
        })
    }
}

type Socket = WebSocket<TcpStream>;

/// Connects and upgrades; every failure is one line that says what was refused.
fn connect(args: &Args) -> Result<Socket, String> {
    let url = parse_ws_url(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let stream = TcpStream::connect_timeout(&url.addr.into(), args.timeout)
        .map_err(|e| format!("cannot connect to {}: {e}", url.host))?;
    let set = |s: &TcpStream, t| {
        s.set_read_timeout(Some(t))
            .and_then(|_| s.set_write_timeout(Some(t)))
            .map_err(|e| e.to_string())
    };
    set(&stream, args.timeout)?;
    let (ws, _) = tungstenite::client(args.url.as_str(), stream).map_err(|e| match e {
        HandshakeError::Interrupted(_) => {
            format!("{}: no upgrade answer within {:?}", args.url, args.timeout)
        }
        HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            // The body on the same line, short: the error stays one line.
            let body = response.body().as_deref().unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let body: String = body.chars().take(200).collect();
            let status = response.status();
            format!(
                "{}: the server refused the upgrade: HTTP {status} {body}",
                args.url
            )
            .trim_end()
            .to_string()
        }
        HandshakeError::Failure(e) => format!("{}: upgrade failed: {e}", args.url),
    })?;
    set(ws.get_ref(), STOP_CHECK)?;
    eprintln!("connected to {}", args.url);
    Ok(ws)
}

/// One readable stderr line for a frame that is not a message.
fn describe(frame: &Value, raw: &str) -> String {
    let list = |key: &str| {
        frame[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let text = |key: &str| frame[key].as_str().unwrap_or("?").to_string();
    match frame["type"].as_str() {
        Some("welcome") => format!(
            "welcome: server {}, session {}",
            text("server"),
            text("session")
        ),
        Some("subscribed") => format!("subscribed: {}", list("channels")),
        Some("unsubscribed") => format!("unsubscribed: {} {}", list("channels"), text("reason")),
        Some("error") => format!(
            "error from the server: {}: {}",
            text("code"),
            text("message")
        ),
        Some("gap") => format!(
            "gap on {}: {} ({} missed)",
            list("channels"),
            text("reason"),
            frame["count"]
        ),
        _ => format!("from the server: {raw}"),
    }
}

/// What ended the subscription: `Ok` for a normal end.
fn on_close(frame: Option<CloseFrame>) -> Result<(), String> {
    let Some(frame) = frame else {
        return Err("the server closed the connection without a close code".into());
    };
    let text = format!(
        "the server closed the connection: {} {}",
        frame.code, frame.reason
    );
    match frame.code {
        CloseCode::Normal | CloseCode::Away => {
            eprintln!("{}", text.trim_end());
            Ok(())
        }
        _ => Err(text.trim_end().to_string()),
    }
}

/// Writes one line and flushes it; `false` when nobody reads stdout any more.
fn print_line(out: &mut io::StdoutLock, line: &str) -> Result<bool, String> {
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("stdout: {e}")),
    }
}

pub fn run(args: &Args, stop: &AtomicBool) -> Result<(), String> {
    let mut ws = connect(args)?;
    let request = serde_json::json!({"type": "subscribe", "channels": args.channels});
    ws.send(Message::text(request.to_string()))
        .map_err(|e| format!("sending the subscribe request: {e}"))?;
    let mut out = io::stdout().lock();
    let mut printed = 0u64;
    while !stop.load(Ordering::Relaxed) && (args.count == 0 || printed < args.count) {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(frame)) => return on_close(frame),
            Ok(Message::Binary(b)) => {
                eprintln!("from the server: a binary frame of {} bytes", b.len());
                continue;
            }
            Ok(_) => continue,
            // The periodic wake-up, or Ctrl-C (a socket with a timeout is not restarted).
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("connection lost: {e}")),
        };
        let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if frame["type"] == "message" {
            if !print_line(&mut out, &text)? {
                break;
            }
            printed += 1;
        } else {
            eprintln!("{}", describe(&frame, &text));
        }
    }
    // Ctrl-C, --count reached, or stdout closed: a polite goodbye, not waited for.
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn takes_a_url_channels_and_flags_anywhere() {
        let a = args(&["--count", "2", "ws://h:1/ws", "a", "b.*", "--timeout=3s"]).unwrap();
        assert_eq!(a.url, "ws://h:1/ws");
        assert_eq!(a.channels, ["a", "b.*"]);
        assert_eq!((a.count, a.timeout), (2, Duration::from_secs(3)));
        assert!(args(&["ws://h:1/ws"]).unwrap_err().contains("channel"));
        assert!(args(&[]).is_err());
        assert!(
            args(&["--bogus", "ws://h:1/ws", "a"])
                .unwrap_err()
                .contains("--bogus")
        );
    }

    #[test]
    fn describes_server_frames_in_words() {
        let ack: Value = serde_json::json!({"type":"subscribed","channels":["a","b.*"]});
        assert_eq!(describe(&ack, ""), "subscribed: a, b.*");
        let err = serde_json::json!({"type":"error","code":"invalid_channel","message":"bad"});
        assert_eq!(
            describe(&err, ""),
            "error from the server: invalid_channel: bad"
        );
    }
}
