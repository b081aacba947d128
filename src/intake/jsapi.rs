//! The JetStream API requests odin-ws makes itself (stream and consumer info and
//! creation, stored messages by sequence or subject, ephemeral consumers), each with its own timeout and its own reading of
//! the answer: "not found" is an answer, not an error (the nats crate logs every
//! API error answer at ERROR, the expected "not found, then create" included).

use std::fmt;
use std::io;
use std::time::Duration;

use nats::jetstream::{ConsumerInfo, RawStreamMessage, StreamInfo, StreamMessage};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How long one API request may wait for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum ApiError {
    /// The server answered 404: no such stream, consumer or message.
    NotFound,
    /// The server answered with an error: its status code, JetStream's own
    /// `err_code` (0 when absent) and description.
    Refused {
        code: u16,
        err_code: u16,
        description: String,
    },
    /// No answer in time, no responders, or the connection is down.
    Unanswered(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::NotFound => f.write_str("not found"),
            ApiError::Refused {
                code, description, ..
            } => write!(f, "{description} ({code})"),
            ApiError::Unanswered(e) => write!(f, "no answer: {e}"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    code: u16,
    #[serde(default)]
    err_code: u16,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct MessageAnswer {
    message: RawStreamMessage,
}

fn request<T: DeserializeOwned>(
    conn: &nats::Connection,
    subject: &str,
    body: &[u8],
) -> Result<T, ApiError> {
    let answer = conn
        .request_timeout(subject, body, TIMEOUT)
        .map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => ApiError::Unanswered(format!("none within {TIMEOUT:?}")),
            _ => ApiError::Unanswered(e.to_string()),
        })?;
    let value: serde_json::Value = serde_json::from_slice(&answer.data)
        .map_err(|e| ApiError::Unanswered(format!("unreadable answer: {e}")))?;
    if let Some(error) = value.get("error") {
        let error = ErrorBody::deserialize(error).map_err(|e| ApiError::Refused {
            code: 0,
            err_code: 0,
            description: format!("unreadable error: {e}"),
        })?;
        return Err(match error.code {
            404 => ApiError::NotFound,
            code => ApiError::Refused {
                code,
                err_code: error.err_code,
                description: error.description,
            },
        });
    }
    T::deserialize(value).map_err(|e| ApiError::Unanswered(format!("unexpected answer: {e}")))
}

pub fn stream_info(conn: &nats::Connection, stream: &str) -> Result<StreamInfo, ApiError> {
    request(conn, &format!("$JS.API.STREAM.INFO.{stream}"), b"")
}

pub fn consumer_info(
    conn: &nats::Connection,
    stream: &str,
    consumer: &str,
) -> Result<ConsumerInfo, ApiError> {
    request(
        conn,
        &format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
        b"",
    )
}

/// `config`: the stream's configuration as JetStream's JSON.
pub fn create_stream(
    conn: &nats::Connection,
    stream: &str,
    config: &serde_json::Value,
) -> Result<StreamInfo, ApiError> {
    let body = config.to_string();
    request(
        conn,
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        body.as_bytes(),
    )
}

/// `config`: the durable consumer's configuration as JetStream's JSON.
pub fn create_consumer(
    conn: &nats::Connection,
    stream: &str,
    consumer: &str,
    config: &serde_json::Value,
) -> Result<ConsumerInfo, ApiError> {
    let subject = format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}");
    consumer_request(conn, &subject, stream, config)
}

/// A consumer-create request on `subject` for `stream` with `config`.
fn consumer_request(
    conn: &nats::Connection,
    subject: &str,
    stream: &str,
    config: &serde_json::Value,
) -> Result<ConsumerInfo, ApiError> {
    let body = serde_json::json!({ "stream_name": stream, "config": config }).to_string();
    request(conn, subject, body.as_bytes())
}

/// One stored message by its sequence.
pub fn get_message(
    conn: &nats::Connection,
    stream: &str,
    seq: u64,
) -> Result<StreamMessage, ApiError> {
    let body = serde_json::json!({ "seq": seq }).to_string();
    stored_message(conn, stream, &body)
}

/// The first stored message at or after `seq` on `subject` (a pattern: wildcards
/// match as in NATS).
pub fn next_message(
    conn: &nats::Connection,
    stream: &str,
    seq: u64,
    subject: &str,
) -> Result<StreamMessage, ApiError> {
    let body = serde_json::json!({ "seq": seq, "next_by_subj": subject }).to_string();
    stored_message(conn, stream, &body)
}

/// The newest stored message on the literal `subject`.
pub fn last_message(
    conn: &nats::Connection,
    stream: &str,
    subject: &str,
) -> Result<StreamMessage, ApiError> {
    let body = serde_json::json!({ "last_by_subj": subject }).to_string();
    stored_message(conn, stream, &body)
}

fn stored_message(
    conn: &nats::Connection,
    stream: &str,
    body: &str,
) -> Result<StreamMessage, ApiError> {
    let answer: MessageAnswer = request(
        conn,
        &format!("$JS.API.STREAM.MSG.GET.{stream}"),
        body.as_bytes(),
    )?;
    StreamMessage::try_from(answer.message).map_err(|e| ApiError::Refused {
        code: 0,
        err_code: 0,
        description: format!("undecodable message ({body}): {e}"),
    })
}

/// An ephemeral consumer (the server names it); `config` as JetStream's JSON.
pub fn create_ephemeral(
    conn: &nats::Connection,
    stream: &str,
    config: &serde_json::Value,
) -> Result<ConsumerInfo, ApiError> {
    consumer_request(
        conn,
        &format!("$JS.API.CONSUMER.CREATE.{stream}"),
        stream,
        config,
    )
}

pub fn delete_consumer(
    conn: &nats::Connection,
    stream: &str,
    consumer: &str,
) -> Result<(), ApiError> {
    let _: serde_json::Value = request(
        conn,
        &format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
        b"",
    )?;
    Ok(())
}

/// One pull request (`no_wait`) to consumer `consumer`: up to `batch` messages,
/// fewer when the server has no more (its 404 or 408 status ends the answer).
pub fn pull(
    conn: &nats::Connection,
    stream: &str,
    consumer: &str,
    batch: usize,
) -> Result<Vec<StreamMessage>, ApiError> {
    if batch == 0 {
        return Ok(Vec::new());
    }
    let unanswered = |e: io::Error| ApiError::Unanswered(e.to_string());
    let inbox = conn.new_inbox();
    let sub = conn.subscribe(&inbox).map_err(unanswered)?;
    let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}");
    let body = serde_json::json!({ "batch": batch, "no_wait": true }).to_string();
    conn.publish_request(&subject, &inbox, body)
        .map_err(unanswered)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut out = Vec::with_capacity(batch);
    while out.len() < batch {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = sub.next_timeout(left).map_err(unanswered)?;
        // A status message (no JetStream reply subject): no more for now.
        let Some(info) = msg.jetstream_message_info() else {
            break;
        };
        let (sequence, time) = (info.stream_seq, info.published);
        out.push(StreamMessage {
            subject: msg.subject,
            sequence,
            headers: msg.headers,
            data: msg.data,
            time,
        });
    }
    Ok(out)
}
