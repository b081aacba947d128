//! What the operator sees: the table, masking, reload diffs.

use super::super::*;
use super::*;

#[test]
fn table_lists_every_variable_in_order_with_secrets_masked() {
    let c = from_env(&[
        ("NATS_URL", "nats://u:hunter2@h:4222"),
        ("NATS_USER", "u"),
        ("NATS_PASSWORD", "hunter2"),
        ("WS_PUBLISH_TOKEN", "tok"),
        ("JS_CONSUMER", "mine"),
    ])
    .unwrap();
    let rows = c.table_rows();
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let expected: Vec<&str> = spec::VARIABLES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected);
    assert!(rows.contains(&("NATS_URL", "nats://u:***@h:4222".to_string(), "env")));
    assert!(rows.contains(&("NATS_PASSWORD", "***".to_string(), "env")));
    assert!(rows.contains(&("WS_PUBLISH_TOKEN", "***".to_string(), "env")));
    assert!(rows.contains(&("NATS_TOKEN", String::new(), "default")));
    assert!(rows.contains(&("JS_CONSUMER", "mine".to_string(), "env")));
    assert!(rows.contains(&("JS_MAX_AGE", "24h0m0s".to_string(), "default")));
    let rendered = c.render_table();
    let debug = format!("{c:?}");
    assert!(
        !rendered.contains("hunter2") && !debug.contains("hunter2") && !debug.contains("tok\"")
    );
}

#[test]
fn rendered_table_is_aligned_with_warnings_last() {
    let c = from_env(&[("WS_CPU_LIMIT", "1"), ("WS_WORKER_POOL_SIZE", "8")]).unwrap();
    let text = c.render_table();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + spec::VARIABLES.len() + 1);
    assert!(lines[0].starts_with("VARIABLE") && lines[0].ends_with("SOURCE"));
    let (value_column, source_column) = (
        lines[0].find("VALUE").unwrap(),
        lines[0].find("SOURCE").unwrap(),
    );
    for line in &lines[1..=spec::VARIABLES.len()] {
        assert_eq!(
            line.find(' '),
            Some(line[..value_column].trim_end().len()),
            "{line}"
        );
        assert!(!line[value_column..].starts_with(' '), "{line}");
        assert!(
            ["env", "file", "default", "derived"].contains(&&line[source_column..]),
            "{line}"
        );
    }
    assert!(lines[1].starts_with("ENVIRONMENT "));
    assert!(text.contains("WS_ALLOWED_ORIGINS        (empty)"));
    assert!(lines[lines.len() - 1].starts_with("warning: WS_WORKER_POOL_SIZE=8 is more than 4x"));
}

#[test]
fn reload_diff_separates_reloadable_settings() {
    let old = from_env(&[
        ("WS_MAX_CONNECTIONS", "7000"),
        ("NATS_TOKEN", "a"),
        ("NATS_URL", "h:1"),
    ])
    .unwrap();
    let new = from_env(&[
        ("WS_MAX_CONNECTIONS", "8000"),
        ("LOG_LEVEL", "debug"),
        ("WS_ALLOWED_ORIGINS", "https://a.example"),
        ("WS_ADDR", ":3003"),
        ("NATS_TOKEN", "b"),
        ("NATS_URL", "h:1"),
    ])
    .unwrap();
    assert_eq!(
        old.reloadable_diff(&new),
        [
            "WS_MAX_CONNECTIONS: 7000 -> 8000",
            "WS_ALLOWED_ORIGINS:  -> https://a.example",
            "LOG_LEVEL: info -> debug",
        ]
    );
    assert_eq!(
        old.restart_diff(&new),
        [
            "WS_ADDR: 0.0.0.0:3002 -> 0.0.0.0:3003",
            "NATS_TOKEN: *** -> ***"
        ]
    );
    assert!(old.reloadable_diff(&old.clone()).is_empty());
}

#[test]
fn with_reloaded_applies_every_reloadable_setting_and_nothing_else() {
    let keys = temp_file("reload.pem", crate::auth::TEST_RSA_PUBLIC_PEM);
    let old = from_env(&[("WS_ADDR", ":3002")]).unwrap();
    let new = from_env(&[
        ("WS_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("WS_AUTH_JWT_KEY_FILE", keys.to_str().unwrap()),
        ("LOG_LEVEL", "debug"),
        ("WS_MAX_NATS_RATE", "10"),
        ("WS_MAX_BROADCAST_RATE", "20"),
        ("WS_WRITE_DELAY", "0s"),
        ("WS_WRITE_COALESCE", "always"),
        ("WS_CPU_REJECT_THRESHOLD", "50"),
        ("WS_CPU_PAUSE_THRESHOLD", "60"),
        ("WS_MAX_CONNECTIONS", "5"),
        ("WS_ALLOWED_ORIGINS", "https://a.example"),
        ("WS_ADDR", ":3003"),
    ])
    .unwrap();
    // Every variable in spec::RELOADABLE differs above, so none may be left over.
    assert_eq!(old.reloadable_diff(&new).len(), spec::RELOADABLE.len());
    let next = old.with_reloaded(&new);
    assert!(next.reloadable_diff(&new).is_empty());
    assert_eq!(next.restart_diff(&old), Vec::<String>::new());
    assert!(next.auth.is_some() && old.auth.is_none());
    std::fs::remove_file(keys).unwrap();
}

#[test]
fn a_key_file_rewritten_in_place_is_a_reloadable_change() {
    let path = temp_file("rotate.pem", crate::auth::TEST_RSA_PUBLIC_PEM);
    let name = path.to_str().unwrap();
    let old = from_env(&[("WS_AUTH_JWT_KEY_FILE", name)]).unwrap();
    let both = format!(
        "{}{}",
        crate::auth::TEST_RSA_PUBLIC_PEM,
        crate::auth::TEST_EC_PUBLIC_PEM
    );
    std::fs::write(&path, both).unwrap();
    let new = from_env(&[("WS_AUTH_JWT_KEY_FILE", name)]).unwrap();
    assert_eq!(
        old.reloadable_diff(&new),
        [format!(
            "WS_AUTH_JWT_KEY_FILE: {name} read again: RS256 -> RS256, ES256"
        )]
    );
    assert!(old.restart_diff(&new).is_empty());
    let next = old.with_reloaded(&new);
    assert_eq!(next.auth, new.auth);
    assert!(next.reloadable_diff(&new).is_empty());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn the_jwt_secret_is_masked_and_never_in_an_error() {
    let secret = "0123456789abcdef0123456789abcdef";
    let c = from_env(&[("WS_AUTH_JWT_SECRET", secret)]).unwrap();
    let row = c
        .table_rows()
        .into_iter()
        .find(|r| r.0 == "WS_AUTH_JWT_SECRET");
    assert_eq!(row.unwrap().1, "***");
    assert!(!format!("{c:?}").contains(secret));
    let short = "too-short-secret";
    let errors = from_env(&[("WS_AUTH_JWT_SECRET", short)]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, "WS_AUTH_JWT_SECRET");
    assert_eq!(errors[0].value, "***");
    assert!(!errors[0].message.contains(short), "{}", errors[0].message);
    assert!(
        errors[0]
            .message
            .starts_with("WS_AUTH_JWT_SECRET must be at least 32 bytes")
    );
}

#[test]
fn a_bad_key_file_is_an_error_naming_the_variable_and_the_path() {
    let empty = temp_file("empty.pem", "not a key\n");
    let name = empty.to_str().unwrap();
    let empty_file = messages(&[("WS_AUTH_JWT_KEY_FILE", name)]);
    assert_eq!(
        empty_file,
        [format!(
            "WS_AUTH_JWT_KEY_FILE {name:?} holds no PEM public key"
        )]
    );
    let missing = messages(&[("WS_AUTH_JWT_KEY_FILE", "/nonexistent/keys.pem")]);
    assert!(
        missing[0].starts_with("WS_AUTH_JWT_KEY_FILE \"/nonexistent/keys.pem\" cannot be read: "),
        "{missing:?}"
    );
    std::fs::remove_file(empty).unwrap();
}
