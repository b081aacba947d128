//! The whole pipeline: sources in, Config or every error out.

mod docs;
mod errors;
mod example;
mod loading;
mod table;

use std::collections::HashMap;
use std::path::Path;

use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn from_env(pairs: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
    Config::from_sources(&[], &env(pairs))
}

pub(super) fn messages(pairs: &[(&str, &str)]) -> Vec<String> {
    match from_env(pairs) {
        Ok(_) => panic!("{pairs:?} loaded"),
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

pub(super) fn production_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/production.env")
}

pub(super) fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("odin-ws-config-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}
