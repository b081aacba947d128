//! odin-ws: a WebSocket fan-out server for real-time market data. The contract is in
//! docs/: docs/architecture.md for the threads, data flow and module map,
//! docs/protocol.md, docs/http.md and docs/configuration.md for what clients and
//! operators see, docs/DESIGN.md for the full contract as given; README.md for
//! operating it.

pub mod auth;
pub mod broadcast;
pub mod browser;
pub mod channel;
pub mod config;
pub mod deflate;
pub mod endpoints;
pub mod grant;
pub mod history;
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
pub mod sse;
pub mod sublist;
pub mod sysinfo;

/// docs/architecture.md's module map held to the tree: every source file has a row
/// (a folder row such as `bin/odin-ws-load/` covers the files under it) and every
/// row names something that exists.
#[cfg(test)]
mod module_map {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn architecture_lists_every_module_and_only_those() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
        let rows: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|name| name.ends_with(".rs") || name.ends_with('/'))
            .collect();
        let src = root.join("src");
        for row in &rows {
            assert!(
                src.join(row).exists(),
                "docs/architecture.md names src/{row}, which is gone"
            );
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let name = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let covered = rows
                .iter()
                .any(|row| *row == name || (row.ends_with('/') && name.starts_with(row)));
            assert!(
                covered,
                "docs/architecture.md's module map lacks src/{name}"
            );
        }
    }
}
