//! Stage one: find each variable's text (environment > env file > default) and parse
//! it into its type, range included, recording every error instead of stopping.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;
use super::duration::{format_duration, parse_duration};
use super::spec::{self, Source};

/// Reads variables and collects what went wrong; the caller decides when to stop.
pub(super) struct Reader<'a> {
    file: HashMap<&'a str, &'a str>,
    env: &'a HashMap<String, String>,
    pub(super) sources: HashMap<&'static str, Source>,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
    failed: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(file: &'a [(String, String)], env: &'a HashMap<String, String>) -> Self {
        let mut map = HashMap::new();
        let mut warnings = Vec::new();
        // The last assignment wins, as in a shell or the Go server's godotenv.
        for (key, value) in file {
            if map.insert(key.as_str(), value.as_str()).is_some() && spec::known(key).is_some() {
                let note =
                    format!("{key} is set more than once in the env file; the last value is used");
                if !warnings.contains(&note) {
                    warnings.push(note);
                }
            }
        }
        Reader {
            file: map,
            env,
            sources: HashMap::new(),
            errors: Vec::new(),
            warnings,
            failed: Vec::new(),
        }
    }

    /// The text of `name` and where it came from. A variable set to "" is set: "" is
    /// then checked like any other value.
    fn raw(&mut self, name: &'static str) -> &'a str {
        let (value, source) = if let Some(value) = self.env.get(name) {
            (value.as_str(), Source::Env)
        } else if let Some(value) = self.file.get(name) {
            (*value, Source::File)
        } else {
            (spec::default_of(name), Source::Default)
        };
        self.sources.insert(name, source);
        value
    }

    /// Whether `name` came from the environment or the file rather than its default.
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.sources
            .get(name)
            .is_some_and(|s| matches!(s, Source::Env | Source::File))
    }

    pub(super) fn set_source(&mut self, name: &'static str, source: Source) {
        self.sources.insert(name, source);
    }

    /// Records an error; `message` is the whole sentence, starting with the variable.
    pub(super) fn error(
        &mut self,
        variable: &'static str,
        value: impl Into<String>,
        message: String,
    ) {
        self.errors.push(ConfigError {
            variable,
            value: value.into(),
            message,
        });
        self.failed.push(variable);
    }

    /// Whether every one of `names` parsed; cross-field checks skip the others so that
    /// one typo does not produce a second, misleading error.
    pub(super) fn all_ok(&self, names: &[&str]) -> bool {
        names.iter().all(|n| !self.failed.contains(n))
    }

    /// Parses `name` with `parse`, whose error is the message after the variable name.
    /// On error the default stands in, so later stages still have a value to look at.
    pub(super) fn parse<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let raw = self.raw(name);
        match parse(raw) {
            Ok(value) => value,
            Err(message) => {
                self.error(name, raw, format!("{name} {message}"));
                let default = spec::default_of(name);
                // Every default parses: see the `defaults_load` test.
                parse(default)
                    .unwrap_or_else(|e| panic!("default {name}={default:?} is invalid: {e}"))
            }
        }
    }

    /// An integer within `min..=max`, where `max == T::MAX` means "no upper bound".
    pub(super) fn int<T: Int>(&mut self, name: &'static str, min: T, max: T) -> T {
        let range = range_phrase(min, max);
        self.parse(name, |s| {
            let value: T = s
                .trim()
                .parse()
                .map_err(|_| format!("must be an integer {range}, got {s:?}"))?;
            if value < min || value > max {
                return Err(format!("must be {range}, got {value}"));
            }
            Ok(value)
        })
    }

    /// A finite number within `min..=max`; `range` says so in words.
    pub(super) fn float(&mut self, name: &'static str, min: f64, max: f64, range: &str) -> f64 {
        self.parse(name, |s| {
            let value: f64 = s
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("must be a number {range}, got {s:?}"))?;
            if value < min || value > max {
                return Err(format!("must be {range}, got {value}"));
            }
            Ok(value)
        })
    }

    /// A Go-style duration; zero only when `zero_ok`.
    pub(super) fn duration(&mut self, name: &'static str, zero_ok: bool) -> Duration {
        self.parse(name, |s| {
            let value = duration_value(s)?;
            if value.is_zero() && !zero_ok {
                return Err("must be > 0, got 0s".to_string());
            }
            Ok(value)
        })
    }

    /// A duration from zero to `max`.
    pub(super) fn duration_up_to(&mut self, name: &'static str, max: Duration) -> Duration {
        self.parse(name, |s| {
            let value = duration_value(s)?;
            if value > max {
                return Err(format!("must be at most {}, got {s}", format_duration(max)));
            }
            Ok(value)
        })
    }

    /// One of `all`, matched case-insensitively against `as_str`.
    pub(super) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        all: &[T],
        as_str: fn(&T) -> &'static str,
    ) -> T {
        self.parse(name, |s| {
            let wanted = s.trim();
            all.iter()
                .copied()
                .find(|v| as_str(v).eq_ignore_ascii_case(wanted))
                .ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(as_str).collect();
                    format!("must be one of {}, got {s:?}", names.join(", "))
                })
        })
    }

    pub(super) fn boolean(&mut self, name: &'static str) -> bool {
        self.parse(name, |s| match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("must be true or false (or 1/0, yes/no), got {s:?}")),
        })
    }

    /// Text where empty means "not set".
    pub(super) fn optional(&mut self, name: &'static str) -> Option<String> {
        Some(self.raw(name))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// A secret where empty means "not set". `parse`'s error must not quote it, and
    /// the error's value is the mask, so the secret reaches no log.
    pub(super) fn secret<T>(
        &mut self,
        name: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(name);
        if raw.is_empty() {
            return None;
        }
        match parse(raw) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(name, spec::MASK, format!("{name} {message}"));
                None
            }
        }
    }

    /// A comma-separated list, entries trimmed, empty ones dropped (a trailing comma is
    /// harmless). `entry` checks and normalizes one entry; its error follows
    /// `NAME entry "<entry>"`, with any password in the entry masked.
    pub(super) fn list(
        &mut self,
        name: &'static str,
        entry: fn(&str) -> Result<String, String>,
    ) -> Vec<String> {
        let raw = self.raw(name);
        let mut values = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match entry(item) {
                Ok(value) => values.push(value),
                Err(message) => {
                    let shown = super::values::mask_url_password(item);
                    self.error(
                        name,
                        shown.clone(),
                        format!("{name} entry {shown:?} {message}"),
                    );
                }
            }
        }
        values
    }
}

/// The integer types variables use; `MAX` marks "no upper bound".
pub(super) trait Int: FromStr + PartialOrd + Display + Copy {
    const MAX: Self;
    const ONE: Self;
}

macro_rules! int {
    ($($t:ty),*) => {$(impl Int for $t { const MAX: Self = <$t>::MAX; const ONE: Self = 1; })*};
}
int!(u32, u64, usize, i64);

/// "> 0", ">= 0", ">= 16" or "16-1048576".
fn range_phrase<T: Int>(min: T, max: T) -> String {
    match (max == T::MAX, min == T::ONE) {
        (true, true) => "> 0".to_string(),
        (true, false) => format!(">= {min}"),
        (false, _) => format!("{min}-{max}"),
    }
}

/// The one message every duration variable gives for text that is not one.
fn duration_value(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|_| format!("must be a duration like 30s, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &mut Reader, name: &'static str) -> String {
        r.parse(name, |s| Ok::<_, String>(s.to_string()))
    }

    #[test]
    fn range_phrases() {
        assert_eq!(range_phrase(1usize, usize::MAX), "> 0");
        assert_eq!(range_phrase(0u32, u32::MAX), ">= 0");
        assert_eq!(range_phrase(1i64, i64::MAX), "> 0");
        assert_eq!(range_phrase(0usize, 1024), "0-1024");
    }

    #[test]
    fn environment_beats_file_beats_default() {
        let file = vec![
            ("LOG_LEVEL".to_string(), "warn".to_string()),
            ("WS_PATH".to_string(), "/file".to_string()),
        ];
        let env = HashMap::from([("LOG_LEVEL".to_string(), "error".to_string())]);
        let mut r = Reader::new(&file, &env);
        assert_eq!(text(&mut r, spec::LOG_LEVEL), "error");
        assert_eq!(text(&mut r, spec::WS_PATH), "/file");
        assert_eq!(text(&mut r, spec::LOG_FORMAT), "text");
        assert_eq!(r.sources[spec::LOG_LEVEL], Source::Env);
        assert_eq!(r.sources[spec::WS_PATH], Source::File);
        assert_eq!(r.sources[spec::LOG_FORMAT], Source::Default);
    }

    #[test]
    fn last_assignment_in_the_file_wins_with_a_warning() {
        let file = vec![
            ("WS_PATH".to_string(), "/a".to_string()),
            ("OTHER".to_string(), "1".to_string()),
            ("OTHER".to_string(), "2".to_string()),
            ("WS_PATH".to_string(), "/b".to_string()),
        ];
        let env = HashMap::new();
        let mut r = Reader::new(&file, &env);
        assert_eq!(text(&mut r, spec::WS_PATH), "/b");
        assert_eq!(
            r.warnings,
            ["WS_PATH is set more than once in the env file; the last value is used"]
        );
    }
}
