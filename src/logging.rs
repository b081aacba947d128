//! Logging: simplelog for text and pretty; one JSON object per line (ts, level,
//! target, msg) for Loki.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode, WriteLogger};

use crate::config::LogFormat;

pub fn init(level: LevelFilter, format: LogFormat) {
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Error)
        .set_time_format_rfc3339()
        .build();
    let result = match format {
        LogFormat::Json => {
            log::set_boxed_logger(Box::new(JsonLogger)).map(|()| log::set_max_level(level))
        }
        LogFormat::Pretty => {
            TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Auto)
        }
        LogFormat::Text => WriteLogger::init(level, config, std::io::stderr()),
    };
    // Only fails when a logger is already set (tests); the first one stays.
    let _ = result;
}

/// Changes the level on SIGHUP.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

struct JsonLogger;

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = json_line(record.level(), record.target(), &record.args().to_string());
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

fn json_line(level: log::Level, target: &str, msg: &str) -> String {
    serde_json::json!({
        "ts": rfc3339_now(),
        "level": level.as_str().to_ascii_lowercase(),
        "target": target,
        "msg": msg,
    })
    .to_string()
}

/// Logs one structured record (the config table at start, the stats line) as a
/// JSON object of its own in json format, or as `msg key=value ...` otherwise.
pub fn record(format: LogFormat, msg: &str, fields: serde_json::Map<String, serde_json::Value>) {
    if format == LogFormat::Json {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), rfc3339_now().into());
        obj.insert("level".into(), "info".into());
        obj.insert("target".into(), "odin_ws".into());
        obj.insert("msg".into(), msg.into());
        obj.extend(fields);
        if log::max_level() >= LevelFilter::Info {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                serde_json::Value::Object(obj)
            );
        }
    } else {
        let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        log::info!("{msg} {}", pairs.join(" "));
    }
}

/// `1 connection`, `2 connections`: counts in log lines read as English.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// UTC time as `2026-11-26T21:05:03.123Z`, without a date crate.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_millis())
}

fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_727_103, 5), "2026-11-26T21:05:03.005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn plural_agrees_with_the_count() {
        assert_eq!(plural(1, "error", "errors"), "1 error");
        assert_eq!(plural(0, "error", "errors"), "0 errors");
        assert_eq!(plural(2, "connection", "connections"), "2 connections");
    }

    #[test]
    fn json_line_has_the_four_keys() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line(log::Level::Warn, "t", "a \"b\"")).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["target"], "t");
        assert_eq!(v["msg"], "a \"b\"");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
