//! Shipping: the README's commands from a fresh copy, the static binary and the image's file system (run chrooted, with
//! no shared library), `--healthcheck`, scripts/deploy with plain processes, and
//! the compose file, systemd unit, nats.conf and env profiles. One test binary,
//! one module per area.
//!
//! The static build (scripts/image-rootfs, which runs scripts/build-static, as
//! the Dockerfile does) runs once per test run; cargo rebuilds only what changed.
#![allow(deprecated)] // the sync nats client, as in the server

#[path = "common/mod.rs"]
mod common;
#[path = "shipping/configs.rs"]
mod configs;
#[path = "shipping/deploy.rs"]
mod deploy;
#[path = "shipping/image.rs"]
mod image;
#[path = "shipping/readme.rs"]
mod readme;
#[path = "shipping/support.rs"]
mod support;
