//! Integration tests: the real binary over real sockets. One test binary, one
//! module per area.

mod auth;
#[path = "../common/mod.rs"]
mod common;
mod compression;
mod config_cli;
mod dead_reader;
mod fanout;
mod hardening;
mod http_endpoints;
mod intake_bounds;
mod logs;
mod nats_intake;
mod nats_jetstream;
mod protocol;
mod raw;
mod reply_bounds;
mod resume;
mod shutdown;
mod slow_consumers;
mod sse;
mod stream_resume;
mod support;
mod write_delay;
