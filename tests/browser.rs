//! Browser tests: the real binary serving /client.js and /status to a real headless
//! Chromium (Debian's `chromium`; scripts/test installs it), driven over the DevTools
//! protocol. Without Chromium the Chromium cases say so loudly and pass.

#[path = "common/mod.rs"]
mod common;
// Each test binary uses its own subset of the integration helpers.
#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;

#[path = "browser/assets.rs"]
mod assets;
#[path = "browser/chromium.rs"]
mod chromium;
#[path = "browser/client.rs"]
mod client;
#[path = "browser/deflate.rs"]
mod deflate;
#[path = "browser/fallback.rs"]
mod fallback;
#[path = "browser/js_restart.rs"]
mod js_restart;
#[path = "browser/refresh.rs"]
mod refresh;
#[path = "browser/replay.rs"]
mod replay;
#[path = "browser/status.rs"]
mod status;
