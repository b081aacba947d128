//! docs/configuration.md and .env.example held to the code: the same variables, the
//! same defaults and integer ranges, and the reloadable set that a SIGHUP applies.

use std::collections::BTreeSet;
use std::path::Path;

use super::super::*;
use super::example::{documented, example, example_value};
use super::{env, temp_file};

const CONFIGURATION_MD: &str = "docs/configuration.md";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn spec_names() -> Vec<String> {
    spec::VARIABLES.iter().map(|(n, _)| n.to_string()).collect()
}

/// One row of configuration.md's variable table.
struct Row {
    name: String,
    default: String,
    values: String,
    reload: String,
}

/// The table rows whose first cell is a backquoted upper-case name.
fn variable_rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let Some(cells) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
            continue;
        };
        let cells: Vec<&str> = cells.split('|').map(str::trim).collect();
        let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if !is_variable_name(name) {
            continue;
        }
        assert_eq!(cells.len(), 5, "{CONFIGURATION_MD}: row of {name}: {line}");
        let default = match cells[1] {
            "(empty)" => String::new(),
            cell => cell.trim_matches('`').to_string(),
        };
        rows.push(Row {
            name: name.to_string(),
            default,
            values: cells[2].to_string(),
            reload: cells[3].to_string(),
        });
    }
    rows
}

fn is_variable_name(s: &str) -> bool {
    s.len() > 1
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every NAME of a `# NAME=` or `# NAME:` line in .env.example.
fn named_in_example(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let (name, tail) = rest.split_at(end);
        if is_variable_name(name) && (tail.starts_with('=') || tail.starts_with(':')) {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn configuration_md_lists_every_variable_in_order_with_its_default() {
    let rows = variable_rows(&read(CONFIGURATION_MD));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, spec_names(), "{CONFIGURATION_MD}'s table");
    for row in &rows {
        assert_eq!(
            row.default,
            spec::default_of(&row.name),
            "{CONFIGURATION_MD}: default of {}",
            row.name
        );
    }
}

#[test]
fn env_example_names_only_and_every_variable() {
    let named = named_in_example(&example());
    let expected: BTreeSet<String> = spec_names().into_iter().collect();
    assert_eq!(
        named, expected,
        ".env.example's `# NAME=` and `# NAME:` lines"
    );
}

/// "integer A-B", "integer >= A" or "integer > 0" at the start of a values cell.
fn integer_range(values: &str) -> Option<(u64, Option<u64>)> {
    let rest = values.strip_prefix("integer ")?;
    let word = |s: &str| s.split([' ', ';']).next().unwrap_or_default().to_string();
    let number = |s: String| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("{CONFIGURATION_MD}: unreadable range {values:?}"))
    };
    if let Some(min) = rest.strip_prefix(">= ") {
        return Some((number(word(min)), None));
    }
    if let Some(bound) = rest.strip_prefix("> ") {
        return Some((number(word(bound)) + 1, None));
    }
    let range = word(rest);
    let (min, max) = range
        .split_once('-')
        .unwrap_or_else(|| panic!("{CONFIGURATION_MD}: unreadable range {values:?}"));
    Some((number(min.to_string()), Some(number(max.to_string()))))
}

/// Whether `name=value` alone loads; an error must name `name`.
fn loads(name: &str, value: &str) -> bool {
    match Config::from_sources(&[], &env(&[(name, value)])) {
        Ok(_) => true,
        Err(errors) => {
            assert!(
                errors.iter().all(|e| e.variable == name),
                "{name}={value}: {errors:?}"
            );
            false
        }
    }
}

#[test]
fn documented_integer_ranges_are_the_checked_ones() {
    let rows = variable_rows(&read(CONFIGURATION_MD));
    let mut checked = 0;
    for row in &rows {
        let Some((min, max)) = integer_range(&row.values) else {
            continue;
        };
        let name = row.name.as_str();
        let below = min
            .checked_sub(1)
            .map_or("-1".to_string(), |b| b.to_string());
        assert!(loads(name, &min.to_string()), "{name}={min} is refused");
        assert!(!loads(name, &below), "{name}={below} is accepted");
        if let Some(max) = max {
            assert!(loads(name, &max.to_string()), "{name}={max} is refused");
            assert!(
                !loads(name, &(max + 1).to_string()),
                "{name}={} is accepted",
                max + 1
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} integer ranges found");
}

/// A variable's row in the table a configuration shows (secrets masked).
fn shown(config: &Config, name: &str) -> String {
    config
        .table_rows()
        .into_iter()
        .find(|r| r.0 == name)
        .map(|r| r.1)
        .unwrap_or_else(|| panic!("{name} is not in the table"))
}

/// The variables whose new value `with_reloaded` (what SIGHUP applies) takes: each
/// variable in turn is set to its .env.example example on top of a running config.
fn applied_on_reload() -> BTreeSet<String> {
    // Fixed limits, so no derived value happens to equal an example.
    let base = [
        (spec::NATS_URL, "nats://h:4222"),
        (spec::WS_CPU_LIMIT, "1"),
        (spec::WS_MEMORY_LIMIT, "1073741824"),
    ];
    let old = Config::from_sources(&[], &env(&base)).unwrap();
    let creds = temp_file("docs.creds", "creds");
    let keys = temp_file("docs.pem", crate::auth::TEST_EC_PUBLIC_PEM);
    let text = example();
    let mut applied = BTreeSet::new();
    for (name, _, block) in documented(&text) {
        let value = match name {
            spec::NATS_CREDS_FILE => creds.to_str().unwrap(),
            spec::WS_AUTH_JWT_KEY_FILE => keys.to_str().unwrap(),
            _ => example_value(&block, name),
        };
        let mut newer = env(&base);
        newer.insert(name.to_string(), value.to_string());
        // A user name or a password alone is refused: give it its partner.
        match name {
            spec::NATS_USER => newer.insert(spec::NATS_PASSWORD.into(), "p".into()),
            spec::NATS_PASSWORD => newer.insert(spec::NATS_USER.into(), "u".into()),
            _ => None,
        };
        let new = Config::from_sources(&[], &newer)
            .unwrap_or_else(|e| panic!("example {name}={value}: {e:?}"));
        let next = old.with_reloaded(&new);
        let (was, offered, now) = (shown(&old, name), shown(&new, name), shown(&next, name));
        assert_ne!(was, offered, "{name}'s example equals the running value");
        if now == offered {
            applied.insert(name.to_string());
        } else {
            assert_eq!(now, was, "{name} half reloaded");
        }
    }
    std::fs::remove_file(creds).unwrap();
    std::fs::remove_file(keys).unwrap();
    applied
}

/// The names listed after "Reloaded on SIGHUP:" in .env.example's header.
fn example_reload_list(text: &str) -> BTreeSet<String> {
    const LIST: &str = "Reloaded on SIGHUP:";
    let start = text.find(LIST).expect("the reload list") + LIST.len();
    let end = start + text[start..].find("Everything else").expect("its end");
    text[start..end]
        .split([',', ' ', '\n', '#', '.'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn documented_reloadable_sets_are_what_sighup_applies() {
    let applied = applied_on_reload();
    let declared: BTreeSet<String> = spec::RELOADABLE.iter().map(|n| n.to_string()).collect();
    assert_eq!(declared, applied, "spec::RELOADABLE against with_reloaded");
    let rows = variable_rows(&read(CONFIGURATION_MD));
    for row in &rows {
        assert!(
            ["yes", "no"].contains(&row.reload.as_str()),
            "{CONFIGURATION_MD}: reload of {} is {:?}",
            row.name,
            row.reload
        );
    }
    let column: BTreeSet<String> = rows
        .into_iter()
        .filter(|r| r.reload == "yes")
        .map(|r| r.name)
        .collect();
    assert_eq!(column, applied, "{CONFIGURATION_MD}'s reload column");
    let text = example();
    assert_eq!(
        example_reload_list(&text),
        applied,
        ".env.example's \"Reloaded on SIGHUP\" list"
    );
    let marked: BTreeSet<String> = documented(&text)
        .into_iter()
        .filter(|(_, _, block)| block.contains("Reloadable on SIGHUP."))
        .map(|(name, _, _)| name.to_string())
        .collect();
    assert_eq!(
        marked, applied,
        ".env.example's \"Reloadable on SIGHUP.\" notes"
    );
}
