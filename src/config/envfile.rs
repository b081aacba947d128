//! Reading the env file: dotenvy parses and expands `${VAR}` from the process
//! environment; nothing here sets the environment.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::path::Path;

use super::ConfigError;
use super::spec::{self, ENV_FILE_FLAG, MASK, SECRETS};

/// What the env file says: its pairs in order, its unparsable lines, and the
/// references that expanded to "" because nothing defines them.
#[derive(Default)]
pub(super) struct EnvFile {
    pub(super) pairs: Vec<(String, String)>,
    pub(super) errors: Vec<ConfigError>,
    /// (our variable, the name it references).
    unset: Vec<(&'static str, String)>,
    shown: String,
}

/// Reads `path`. When not `required`, a file that does not exist is an empty one;
/// any other failure to read is an error either way.
pub(super) fn read(
    path: &Path,
    required: bool,
    env: &HashMap<String, String>,
) -> Result<EnvFile, ConfigError> {
    let shown = path.display().to_string();
    let fail = |why: String| ConfigError {
        variable: ENV_FILE_FLAG,
        value: shown.clone(),
        message: format!("env file {shown:?} cannot be read: {why}"),
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if !required && e.kind() == ErrorKind::NotFound => return Ok(EnvFile::default()),
        Err(e) => return Err(fail(e.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".to_string()))?;
    Ok(parse(&text, shown, env))
}

/// Parses the file's text; `shown` names it in messages.
pub(super) fn parse(text: &str, shown: String, env: &HashMap<String, String>) -> EnvFile {
    // dotenvy's path reader keeps a byte-order mark as part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut next_line = 0;
    let mut file = EnvFile {
        shown,
        ..EnvFile::default()
    };
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => file.pairs.push(pair),
            Err(dotenvy::Error::LineParse(fragment, _)) => {
                let error = file.line_error(&lines, &mut next_line, &fragment);
                file.errors.push(error);
            }
            Err(e) => {
                // An I/O error on an in-memory buffer does not repeat usefully.
                file.errors.push(ConfigError {
                    variable: ENV_FILE_FLAG,
                    value: file.shown.clone(),
                    message: format!("env file {:?} cannot be read: {e}", file.shown),
                });
                break;
            }
        }
    }
    file.unset = unset_references(text, env);
    file
}

impl EnvFile {
    /// dotenvy reports the line, or only its value, without a line number: find it
    /// from `next_line` on, so repeated bad lines get their own numbers.
    fn line_error(&self, lines: &[&str], next_line: &mut usize, fragment: &str) -> ConfigError {
        let first = fragment.lines().next().unwrap_or_default().trim();
        let found = lines[(*next_line).min(lines.len())..]
            .iter()
            .position(|l| !first.is_empty() && l.contains(first))
            .map(|i| *next_line + i);
        let text = masked_line(found.map_or(first, |i| lines[i].trim()));
        let place = match found {
            Some(i) => {
                *next_line = i + 1;
                format!("line {}", i + 1)
            }
            None => "a line".to_string(),
        };
        ConfigError {
            variable: ENV_FILE_FLAG,
            value: text.clone(),
            message: format!(
                "env file {:?} {place} cannot be parsed: {text:?} (expected KEY=VALUE; quote values with spaces)",
                self.shown
            ),
        }
    }

    /// One warning per reference that expanded to "".
    pub(super) fn unset_warnings(&self) -> Vec<String> {
        self.unset
            .iter()
            .map(|(variable, name)| {
                format!(
                    "{variable} in {:?} uses ${{{name}}}, which is not set in the environment; it expanded to \"\"",
                    self.shown
                )
            })
            .collect()
    }

    /// Adds to each error the references of its variable that expanded to "": the
    /// likely cause of `nats://:4222`.
    pub(super) fn explain(&self, errors: &mut [ConfigError]) {
        for error in errors {
            for (_, name) in self.unset.iter().filter(|(v, _)| *v == error.variable) {
                error.message.push_str(&format!(
                    " (the env file's ${{{name}}} is not set in the environment)"
                ));
            }
        }
    }
}

/// A secret's bad line shown without its value.
fn masked_line(line: &str) -> String {
    let key = line.strip_prefix("export ").unwrap_or(line);
    match key.split_once('=') {
        Some((key, _)) if SECRETS.contains(&key.trim()) => format!("{}={MASK}", key.trim()),
        _ => line.to_string(),
    }
}

/// For each of our variables, the names its value references that neither the
/// environment nor an earlier line defines (dotenvy expands those to "").
fn unset_references(text: &str, env: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    let mut defined = HashSet::new();
    let mut unset = Vec::new();
    for line in text.lines().map(str::trim_start) {
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        let key = key.trim();
        if let Some(variable) = spec::known(key) {
            for name in references(value) {
                if !env.contains_key(&name) && !defined.contains(&name) {
                    unset.push((variable, name));
                }
            }
        }
        defined.insert(key.to_string());
    }
    unset
}

/// The names a value expands, following dotenvy's rules: `${NAME}`, or `$` followed
/// by letters and digits (an '_' ends the name); nothing inside '...' or after `\`.
fn references(value: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut strong, mut weak, mut after_space) = (false, false, false);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if strong {
            strong = c != '\'';
            continue;
        }
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if !weak => strong = true,
            '"' => weak = !weak,
            '#' if !weak && after_space => break,
            '$' => {
                let name: String = if chars.next_if_eq(&'{').is_some() {
                    chars.by_ref().take_while(|&c| c != '}').collect()
                } else {
                    std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric())).collect()
                };
                if !name.is_empty() {
                    names.push(name);
                }
            }
            _ => {}
        }
        after_space = c == ' ' || c == '\t';
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_dotenvy() {
        let cases: &[(&str, &[&str])] = &[
            (
                "nats://${BACKEND_INTERNAL_IP}:4222",
                &["BACKEND_INTERNAL_IP"],
            ),
            ("$HOST:4222", &["HOST"]),
            ("$BACKEND_IP", &["BACKEND"]),
            ("'${A}'", &[]),
            ("\"${A}\"", &["A"]),
            ("\\$A", &[]),
            ("x # ${A}", &[]),
            ("x#${A}", &["A"]),
            ("plain", &[]),
        ];
        for &(value, names) in cases {
            assert_eq!(references(value), names, "{value}");
        }
    }

    #[test]
    fn parses_pairs_and_reports_bad_lines_by_number() {
        let text = "\u{feff}# comment\nWS_PATH=/x\nBAD LINE\nOTHER=a b\nNATS_PASSWORD=p q\nLOG_LEVEL=\"warn\"\n";
        let file = parse(text, "t.env".to_string(), &HashMap::new());
        let pairs: Vec<(&str, &str)> = file
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, [("WS_PATH", "/x"), ("LOG_LEVEL", "warn")]);
        let messages: Vec<&str> = file.errors.iter().map(|e| e.message.as_str()).collect();
        let hint = "(expected KEY=VALUE; quote values with spaces)";
        assert_eq!(
            messages,
            [
                format!("env file \"t.env\" line 3 cannot be parsed: \"BAD LINE\" {hint}"),
                format!("env file \"t.env\" line 4 cannot be parsed: \"OTHER=a b\" {hint}"),
                format!("env file \"t.env\" line 5 cannot be parsed: \"NATS_PASSWORD=***\" {hint}"),
            ]
        );
        assert!(file.errors.iter().all(|e| e.variable == "--env-file"));
    }

    #[test]
    fn unset_references_warn_and_explain() {
        let env = HashMap::from([("SET".to_string(), "10.0.0.1".to_string())]);
        let text = "EARLIER=x\nNATS_URL=nats://${MISSING}:4222,nats://${SET}:1,nats://${EARLIER}:2\nOTHER=${MISSING}\n";
        let file = parse(text, "p.env".to_string(), &env);
        assert_eq!(
            file.unset_warnings(),
            [
                "NATS_URL in \"p.env\" uses ${MISSING}, which is not set in the environment; it expanded to \"\""
            ]
        );
        let mut errors = vec![ConfigError {
            variable: "NATS_URL",
            value: "nats://:4222".to_string(),
            message: "NATS_URL entry \"nats://:4222\" has no host".to_string(),
        }];
        file.explain(&mut errors);
        assert_eq!(
            errors[0].message,
            "NATS_URL entry \"nats://:4222\" has no host (the env file's ${MISSING} is not set in the environment)"
        );
    }

    #[test]
    fn missing_files() {
        let env = HashMap::new();
        let missing = Path::new("/nonexistent/odin-ws.env");
        assert!(read(missing, false, &env).unwrap().pairs.is_empty());
        let error = read(missing, true, &env).err().unwrap();
        assert_eq!(error.variable, "--env-file");
        assert_eq!(error.value, "/nonexistent/odin-ws.env");
        assert!(
            error
                .message
                .starts_with("env file \"/nonexistent/odin-ws.env\" cannot be read: No such file"),
            "{}",
            error.message
        );
    }
}
