//! Plain HTTP on the WebSocket port: a strict request-head parser, the upgrade
//! checks and response building. Requests are answered with `Connection: close`.

mod head;
mod response;
pub mod upgrade;

#[cfg(test)]
pub use head::test_request;
pub use head::{MAX_HEAD_BYTES, ParseError, Request, parse_head};
pub use response::{RETRY_AFTER_SECS, Response};
