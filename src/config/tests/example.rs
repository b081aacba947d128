//! `.env.example` documents every variable, in table order, with the real defaults,
//! and changes nothing when copied to `.env`.

use std::collections::HashMap;
use std::path::Path;

use super::super::*;

pub(super) fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    std::fs::read_to_string(path).unwrap()
}

/// (name, commented default, documentation block) for each `# NAME=value` line.
pub(super) fn documented(text: &str) -> Vec<(&str, &str, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, value)) = line.strip_prefix("# ").and_then(|l| l.split_once('=')) else {
            continue;
        };
        if spec::known(name).is_none() || name.contains(' ') {
            continue;
        }
        let start = lines[..i]
            .iter()
            .rposition(|l| l.is_empty())
            .map_or(0, |b| b + 1);
        found.push((name, value, lines[start..i].join("\n")));
    }
    found
}

#[test]
fn every_variable_is_documented_in_order_with_its_default() {
    let text = example();
    let documented = documented(&text);
    let names: Vec<&str> = documented.iter().map(|d| d.0).collect();
    let expected: Vec<&str> = spec::VARIABLES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected);
    for (name, value, block) in &documented {
        assert_eq!(*value, spec::default_of(name), "{name}'s commented default");
        for part in [
            format!("# {name}:"),
            "type:".into(),
            "default:".into(),
            format!("example: {name}="),
        ] {
            assert!(
                block.contains(&part),
                "{name}'s block lacks {part:?}:\n{block}"
            );
        }
    }
}

#[test]
fn copying_it_to_env_changes_nothing() {
    let pairs: Vec<_> = dotenvy::from_read_iter(example().as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(pairs.is_empty(), "{pairs:?}");
}

#[test]
fn every_example_value_is_valid() {
    // These need a partner or a real file; their checks are covered elsewhere.
    let skip = [
        spec::NATS_USER,
        spec::NATS_PASSWORD,
        spec::NATS_CREDS_FILE,
        spec::WS_AUTH_JWT_KEY_FILE,
    ];
    let text = example();
    for (name, _, block) in documented(&text)
        .into_iter()
        .filter(|d| !skip.contains(&d.0))
    {
        let value = example_value(&block, name);
        let env = HashMap::from([
            (spec::NATS_URL.to_string(), "nats://h:4222".to_string()),
            (name.to_string(), value.to_string()),
        ]);
        if let Err(errors) = Config::from_sources(&[], &env) {
            panic!("example {name}={value}: {errors:?}");
        }
    }
}

/// The value after `example: NAME=` in a variable's documentation block.
pub(super) fn example_value<'a>(block: &'a str, name: &str) -> &'a str {
    let marker = format!("example: {name}=");
    let start = block
        .find(&marker)
        .unwrap_or_else(|| panic!("{name}'s block has no {marker:?}"))
        + marker.len();
    block[start..].split([' ', '\n']).next().unwrap_or_default()
}
