//! Every check's exact message, alone and together.

use super::*;

/// Every check, one bad setting at a time, with its exact message.
#[test]
fn each_check_has_its_message() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("ENVIRONMENT", "prod")],
            r#"ENVIRONMENT must be one of development, staging, production, got "prod""#,
        ),
        (
            &[("WS_ADDR", "")],
            r#"WS_ADDR must be ":port" or "host:port", got """#,
        ),
        (
            &[("WS_ADDR", "3002")],
            r#"WS_ADDR must be ":port" or "host:port", got "3002""#,
        ),
        (
            &[("WS_PATH", "ws")],
            r#"WS_PATH must start with '/', got "ws""#,
        ),
        (
            &[("WS_PATH", "/health")],
            r#"WS_PATH "/health" collides with the built-in /health endpoint"#,
        ),
        (
            &[("WS_PATH", "/sse")],
            r#"WS_PATH "/sse" collides with the built-in /sse endpoint"#,
        ),
        (
            &[("NATS_URL", "nats://ok:4222,http://h:4222")],
            r#"NATS_URL entry "http://h:4222" must start with nats://, tls://, ws:// or wss:// (or be host:port)"#,
        ),
        (
            &[("NATS_URL", "nats://u:secret@h:x")],
            r#"NATS_URL entry "nats://u:***@h:x" has an invalid port "x""#,
        ),
        (
            &[("NATS_SUBJECTS", "odin.>,odin..x")],
            "NATS_SUBJECTS entry \"odin..x\" is not a valid subject pattern: tokens separated by '.', \
             '*' for one whole token, '>' only as the last token, no spaces, at most 256 bytes",
        ),
        (
            &[("WS_CPU_LIMIT", "-1")],
            "WS_CPU_LIMIT must be 0-1024 (0 = detect), got -1",
        ),
        (
            &[("WS_CPU_LIMIT", "NaN")],
            r#"WS_CPU_LIMIT must be a number 0-1024 (0 = detect), got "NaN""#,
        ),
        (
            &[("WS_MEMORY_LIMIT", "7GB")],
            r#"WS_MEMORY_LIMIT must be an integer 0-1125899906842624, got "7GB""#,
        ),
        (
            &[("WS_MAX_CONNECTIONS", "abc")],
            r#"WS_MAX_CONNECTIONS must be an integer 1-10000000, got "abc""#,
        ),
        (
            &[("WS_MAX_CONNECTIONS", "")],
            r#"WS_MAX_CONNECTIONS must be an integer 1-10000000, got """#,
        ),
        (
            &[("WS_MAX_CONNECTIONS", "0")],
            "WS_MAX_CONNECTIONS must be 1-10000000, got 0",
        ),
        (
            &[("WS_WORKER_POOL_SIZE", "2000")],
            "WS_WORKER_POOL_SIZE must be 0-1024, got 2000",
        ),
        (
            &[("WS_WORKER_QUEUE_SIZE", "8")],
            "WS_WORKER_QUEUE_SIZE must be 0 (derive from the pool) or 16-1048576, got 8",
        ),
        (
            &[("WS_MAX_NATS_RATE", "-1")],
            r#"WS_MAX_NATS_RATE must be an integer >= 0, got "-1""#,
        ),
        (
            &[("WS_MAX_BROADCAST_RATE", "1.5")],
            r#"WS_MAX_BROADCAST_RATE must be an integer >= 0, got "1.5""#,
        ),
        (
            &[("WS_MAX_GOROUTINES", "many")],
            r#"WS_MAX_GOROUTINES must be an integer >= 0, got "many""#,
        ),
        (
            &[("WS_CPU_REJECT_THRESHOLD", "150")],
            "WS_CPU_REJECT_THRESHOLD must be 0-100, got 150",
        ),
        (
            &[("WS_CPU_REJECT_THRESHOLD", "75%")],
            r#"WS_CPU_REJECT_THRESHOLD must be a number 0-100, got "75%""#,
        ),
        (
            &[("WS_CPU_PAUSE_THRESHOLD", "60")],
            "WS_CPU_PAUSE_THRESHOLD (60) must be >= WS_CPU_REJECT_THRESHOLD (75)",
        ),
        (
            &[("WS_SEND_QUEUE_BYTES", "100")],
            "WS_SEND_QUEUE_BYTES must be 4096-1073741824, got 100",
        ),
        (
            &[("WS_SLOW_CLIENT_POLICY", "drop")],
            r#"WS_SLOW_CLIENT_POLICY must be one of conflate, drop_oldest, disconnect, got "drop""#,
        ),
        (
            &[("WS_MAX_MESSAGE_SIZE", "64")],
            "WS_MAX_MESSAGE_SIZE must be 128-16777216, got 64",
        ),
        (
            &[("WS_MAX_SUBSCRIPTIONS", "0")],
            "WS_MAX_SUBSCRIPTIONS must be 1-10000, got 0",
        ),
        (
            &[("WS_CLIENT_MSG_RATE", "100001")],
            "WS_CLIENT_MSG_RATE must be 1-100000, got 100001",
        ),
        (
            &[("WS_PING_INTERVAL", "30")],
            r#"WS_PING_INTERVAL must be a duration like 30s, got "30""#,
        ),
        (
            &[("WS_PING_INTERVAL", "0s")],
            "WS_PING_INTERVAL must be > 0, got 0s",
        ),
        (
            &[("WS_WRITE_DELAY", "2s")],
            "WS_WRITE_DELAY must be at most 1s, got 2s",
        ),
        (
            &[("WS_WRITE_DELAY", "soon")],
            r#"WS_WRITE_DELAY must be a duration like 30s, got "soon""#,
        ),
        (
            &[("WS_IDLE_TIMEOUT", "30s")],
            "WS_IDLE_TIMEOUT (30s) must be > WS_PING_INTERVAL (30s)",
        ),
        (
            &[("WS_HANDSHAKE_TIMEOUT", "1d")],
            r#"WS_HANDSHAKE_TIMEOUT must be a duration like 30s, got "1d""#,
        ),
        (
            &[("WS_SHUTDOWN_GRACE", "-1s")],
            r#"WS_SHUTDOWN_GRACE must be a duration like 30s, got "-1s""#,
        ),
        (
            &[("WS_ALLOWED_ORIGINS", "https://a.example,example.com")],
            r#"WS_ALLOWED_ORIGINS entry "example.com" must be an origin like https://example.com (scheme, host, optional port; no path)"#,
        ),
        (
            &[("WS_ECHO_PATH", "echo")],
            r#"WS_ECHO_PATH must start with '/', got "echo""#,
        ),
        (
            &[("WS_ECHO_PATH", "/ws")],
            "WS_ECHO_PATH (/ws) must differ from WS_PATH (/ws)",
        ),
        (
            &[("WS_ECHO_PATH", "/metrics")],
            r#"WS_ECHO_PATH "/metrics" collides with the built-in /metrics endpoint"#,
        ),
        (
            &[("NATS_URL", "h:4222"), ("NATS_USER", "u")],
            "NATS_USER is set but NATS_PASSWORD is empty; set both or neither",
        ),
        (
            &[("NATS_URL", "h:4222"), ("NATS_PASSWORD", "p")],
            "NATS_PASSWORD is set but NATS_USER is empty; set both or neither",
        ),
        (
            &[
                ("NATS_URL", "h:4222"),
                ("NATS_USER", "u"),
                ("NATS_PASSWORD", "p"),
                ("NATS_TOKEN", "t"),
            ],
            "NATS_USER/NATS_PASSWORD and NATS_TOKEN are alternative ways to authenticate; set only one",
        ),
        (
            &[("NATS_JETSTREAM", "maybe")],
            r#"NATS_JETSTREAM must be true or false (or 1/0, yes/no), got "maybe""#,
        ),
        (
            &[("NATS_JETSTREAM", "true")],
            "NATS_JETSTREAM=true needs NATS_URL: JetStream has no standalone mode",
        ),
        (
            &[("NATS_URL", "h:4222"), ("NATS_SUBJECTS", " , ")],
            r#"NATS_SUBJECTS must name at least one subject when NATS_URL is set, got """#,
        ),
        (
            &[("JS_STREAM", "odin.ws")],
            r#"JS_STREAM must contain only A-Z, a-z, 0-9, '_' and '-', got "odin.ws""#,
        ),
        (
            &[("JS_CONSUMER", "a b")],
            r#"JS_CONSUMER must contain only A-Z, a-z, 0-9, '_' and '-', got "a b""#,
        ),
        (
            &[("JS_MAX_AGE", "forever")],
            r#"JS_MAX_AGE must be a duration like 30s, got "forever""#,
        ),
        (&[("JS_MAX_MSGS", "0")], "JS_MAX_MSGS must be > 0, got 0"),
        (&[("JS_ACK_WAIT", "0s")], "JS_ACK_WAIT must be > 0, got 0s"),
        (
            &[("JS_BATCH", "10001")],
            "JS_BATCH must be 1-10000, got 10001",
        ),
        (
            &[("METRICS_INTERVAL", "15")],
            r#"METRICS_INTERVAL must be a duration like 30s, got "15""#,
        ),
        (
            &[("LOG_LEVEL", "trace")],
            r#"LOG_LEVEL must be one of debug, info, warn, error, got "trace""#,
        ),
        (
            &[("LOG_FORMAT", "xml")],
            r#"LOG_FORMAT must be one of json, text, pretty, got "xml""#,
        ),
    ];
    for &(vars, message) in cases {
        assert_eq!(messages(vars), [message], "{vars:?}");
    }
}

/// Values whose later arithmetic would overflow (sockets = max connections + 256,
/// threads = ceil(CPU limit), byte sums) fail validation, naming variable and value.
#[test]
fn absurd_values_fail_naming_variable_and_value() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "WS_MAX_CONNECTIONS",
            "18446744073709551615",
            "WS_MAX_CONNECTIONS must be 1-10000000, got 18446744073709551615",
        ),
        (
            "WS_CPU_LIMIT",
            "1e20",
            "WS_CPU_LIMIT must be 0-1024 (0 = detect), got 100000000000000000000",
        ),
        (
            "WS_MEMORY_LIMIT",
            "18446744073709551615",
            "WS_MEMORY_LIMIT must be 0-1125899906842624, got 18446744073709551615",
        ),
        (
            "WS_RING_BYTES",
            "18446744073709551615",
            "WS_RING_BYTES must be 1048576-68719476736, got 18446744073709551615",
        ),
        (
            "WS_MAX_BROADCAST_SIZE",
            "18446744073709551615",
            "WS_MAX_BROADCAST_SIZE must be 0-536870912, got 18446744073709551615",
        ),
    ];
    for &(variable, value, message) in cases {
        let errors = from_env(&[(variable, value)]).unwrap_err();
        let fields: Vec<(&str, &str, &str)> = errors
            .iter()
            .map(|e| (e.variable, e.value.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(fields, [(variable, value, message)]);
    }
}

/// A broadcast must fit half a send queue, and the ring hold four of the largest.
#[test]
fn broadcast_size_is_checked_against_the_send_queue_and_the_ring() {
    assert_eq!(
        messages(&[
            ("WS_SEND_QUEUE_BYTES", "65536"),
            ("WS_MAX_BROADCAST_SIZE", "40000")
        ]),
        [
            "WS_MAX_BROADCAST_SIZE (40000) must be <= half of WS_SEND_QUEUE_BYTES (65536), so a broadcast fits a send queue"
        ]
    );
    assert_eq!(
        messages(&[
            ("WS_MAX_BROADCAST_SIZE", "524288"),
            ("WS_RING_BYTES", "1048576")
        ]),
        [
            "WS_RING_BYTES (1048576) must hold at least 4 broadcasts of WS_MAX_BROADCAST_SIZE (524288)"
        ]
    );
    let derived = from_env(&[("WS_SEND_QUEUE_BYTES", "16384")]).unwrap();
    assert_eq!(derived.max_broadcast_size, 8192);
    assert_eq!(from_env(&[]).unwrap().max_broadcast_size, 256 * 1024);
}

#[test]
fn errors_carry_variable_and_value() {
    let errors = from_env(&[
        ("WS_CPU_REJECT_THRESHOLD", "150"),
        ("NATS_URL", "nats://u:pw@:1"),
    ])
    .unwrap_err();
    let fields: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.variable, e.value.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("NATS_URL", "nats://u:***@:1"),
            ("WS_CPU_REJECT_THRESHOLD", "150")
        ]
    );
}

#[test]
fn creds_file_must_exist() {
    let errors = messages(&[
        ("NATS_URL", "h:4222"),
        ("NATS_CREDS_FILE", "/nonexistent/odin.creds"),
    ]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(r#"NATS_CREDS_FILE "/nonexistent/odin.creds" cannot be read: "#),
        "{errors:?}"
    );
}

#[test]
fn several_errors_are_reported_together_in_table_order() {
    let errors = messages(&[
        ("LOG_LEVEL", "trace"),
        ("WS_ADDR", ""),
        ("WS_PING_INTERVAL", "30"),
        ("WS_CPU_REJECT_THRESHOLD", "150"),
        ("WS_CPU_PAUSE_THRESHOLD", "60"),
    ]);
    assert_eq!(
        errors,
        [
            r#"WS_ADDR must be ":port" or "host:port", got """#,
            "WS_CPU_REJECT_THRESHOLD must be 0-100, got 150",
            r#"WS_PING_INTERVAL must be a duration like 30s, got "30""#,
            r#"LOG_LEVEL must be one of debug, info, warn, error, got "trace""#,
        ]
    );
}

#[test]
fn a_failed_variable_is_not_blamed_again_across_fields() {
    let errors = messages(&[
        ("WS_CPU_REJECT_THRESHOLD", "abc"),
        ("WS_CPU_PAUSE_THRESHOLD", "60"),
    ]);
    assert_eq!(
        errors,
        [r#"WS_CPU_REJECT_THRESHOLD must be a number 0-100, got "abc""#]
    );
}
