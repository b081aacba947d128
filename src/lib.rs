//! odin-ws: a WebSocket fan-out server for real-time market data. The contract is in
//! docs/: docs/architecture.md for the threads, data flow and module map,
//! docs/protocol.md, docs/http.md and docs/configuration.md for what clients and
//! operators see, docs/DESIGN.md for the full contract as given; README.md for
//! operating it.

pub mod broadcast;
pub mod channel;
pub mod config;
pub mod endpoints;
pub mod http;
pub mod intake;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod protocol;
pub mod publish_queue;
pub mod rate;
pub mod reactor;
pub mod resolve;
pub mod ring;
pub mod server;
pub mod shared;
pub mod sublist;
pub mod sysinfo;
