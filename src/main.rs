//! The odin-ws binary: serve (default), `--check-config` or `--healthcheck`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use odin_ws::config::{Config, ConfigError, LogFormat};
use odin_ws::logging::{self, plural};
use odin_ws::server;
use odin_ws::sysinfo::BUILD;

const USAGE: &str = "usage: odin-ws [--env-file PATH] [--check-config | --healthcheck | -V | -h]

  (no flag)       serve WebSocket clients on WS_ADDR (default :3002)
  --env-file PATH environment file (default ./.env, optional); the environment wins
  --check-config  validate the configuration, print it, exit 0 (valid) or 1
  --healthcheck   GET /health on WS_ADDR (\":port\" means 127.0.0.1), exit 0 on 200
  -V, --version   print the version and build id
  -h, --help      print this help

Every setting comes from the environment or the env file: .env.example lists them,
docs/configuration.md explains them.";

enum Mode {
    Serve,
    CheckConfig,
    Healthcheck,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("odin-ws: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut mode = Mode::Serve;
    let mut env_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check-config" => mode = Mode::CheckConfig,
            "--healthcheck" => mode = Mode::Healthcheck,
            "--env-file" => {
                env_file = Some(PathBuf::from(args.next().ok_or("--env-file needs a path")?))
            }
            "-V" | "--version" => {
                println!("odin-ws {} (build {})", env!("CARGO_PKG_VERSION"), BUILD);
                return Ok(ExitCode::SUCCESS);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let config = match Config::load(env_file.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            // The server's own log format where one can be read, so a log
            // collector sees JSON; --check-config and --healthcheck are for people.
            let format = match mode {
                Mode::Serve => Config::log_format_hint(env_file.as_deref()),
                _ => LogFormat::Text,
            };
            report_config_errors(&errors, format);
            return Ok(ExitCode::FAILURE);
        }
    };
    match mode {
        Mode::CheckConfig => {
            print!("{}", config.render_table());
            Ok(ExitCode::SUCCESS)
        }
        Mode::Healthcheck => Ok(healthcheck(config.ws_addr)),
        Mode::Serve => {
            logging::init(config.log_level, config.log_format);
            // Bind before the table: a taken port is the one line the operator
            // needs, not the last of forty.
            let listener = match server::listen(&config) {
                Ok(l) => l,
                Err(message) => {
                    log::error!("{message}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            announce(&config);
            if let Err(message) = server::run(config, listener, server::Options { env_file }) {
                log::error!("{message}");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every configuration error, each naming the variable and the value, then a count:
/// plain lines for people, one JSON object per line in json format.
fn report_config_errors(errors: &[ConfigError], format: LogFormat) {
    let summary = format!(
        "configuration invalid ({})",
        plural(errors.len() as u64, "error", "errors")
    );
    if format == LogFormat::Json {
        logging::init(log::LevelFilter::Error, format);
        for e in errors {
            log::error!("{e}");
        }
        log::error!("{summary}");
    } else {
        for e in errors {
            eprintln!("{e}");
        }
        eprintln!("odin-ws: {summary}");
    }
}

/// The configuration at start: a table for people, one JSON record for Loki.
fn announce(config: &Config) {
    if config.log_format == LogFormat::Json {
        let mut fields = serde_json::Map::new();
        for (name, value, source) in config.table_rows() {
            fields.insert(
                name.into(),
                serde_json::json!({ "value": value, "source": source }),
            );
        }
        let mut record = serde_json::Map::new();
        record.insert("config".into(), fields.into());
        logging::record(LogFormat::Json, "configuration", record);
        for w in &config.warnings {
            log::warn!("{w}");
        }
    } else {
        eprint!("{}", config.render_table());
    }
}

fn healthcheck(addr: SocketAddr) -> ExitCode {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let answer = || -> std::io::Result<String> {
        let timeout = Duration::from_secs(3);
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    };
    match answer() {
        Ok(status) if status.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("odin-ws: {target} /health answered {:?}", status.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("odin-ws: {target} /health: {e}");
            ExitCode::FAILURE
        }
    }
}
