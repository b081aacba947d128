//! Sources, precedence, derived values, the env file, warnings.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::super::*;
use super::*;

#[test]
fn defaults_load() {
    let c = from_env(&[]).unwrap();
    assert_eq!(c.environment, Environment::Development);
    assert_eq!(c.ws_addr, "0.0.0.0:3002".parse().unwrap());
    assert_eq!(c.ws_path, "/ws");
    assert!(c.nats_urls.is_empty());
    assert_eq!(c.nats_subjects, ["odin.>"]);
    assert!(c.cpu_limit > 0.0 && c.memory_limit > 0);
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.worker_pool_size, (c.cpu_limit.ceil() as usize).max(1));
    assert!(c.worker_queue_size >= 4096 && c.worker_queue_size.is_power_of_two());
    assert_eq!((c.max_nats_rate, c.max_broadcast_rate), (0, 0));
    assert_eq!(
        (c.cpu_reject_threshold, c.cpu_pause_threshold),
        (75.0, 80.0)
    );
    assert_eq!(c.send_queue_bytes, 1_048_576);
    assert_eq!(c.slow_client_policy, SlowClientPolicy::Conflate);
    assert_eq!(
        (c.max_message_size, c.max_subscriptions, c.client_msg_rate),
        (65_536, 100, 50)
    );
    let secs = Duration::from_secs;
    assert_eq!(
        (
            c.ping_interval,
            c.idle_timeout,
            c.handshake_timeout,
            c.shutdown_grace
        ),
        (secs(30), secs(90), secs(10), secs(30))
    );
    assert!(c.allowed_origins.is_empty());
    assert_eq!(
        (c.publish_token.as_deref(), c.echo_path.as_deref()),
        (None, None)
    );
    assert_eq!(
        (
            c.nats_user.as_deref(),
            c.nats_password.as_deref(),
            c.nats_token.as_deref()
        ),
        (None, None, None)
    );
    assert_eq!(c.nats_creds_file, None);
    assert!(!c.nats_jetstream);
    assert_eq!(c.js_stream, "ODIN_WS");
    assert!(c.js_consumer.starts_with("odin-ws-"));
    assert!(
        c.js_consumer
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    );
    assert_eq!(
        (c.js_max_age, c.js_max_msgs, c.js_ack_wait, c.js_batch),
        (secs(86_400), 1_000_000, secs(30), 256)
    );
    assert_eq!(c.metrics_interval, secs(15));
    assert_eq!(
        (c.log_level, c.log_format),
        (log::LevelFilter::Info, LogFormat::Text)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn cpu_limit_derives_pool_and_queue() {
    let c = from_env(&[("WS_CPU_LIMIT", "1.9")]).unwrap();
    assert_eq!(c.cpu_limit, 1.9);
    assert_eq!(c.worker_pool_size, 2);
    assert_eq!(c.worker_queue_size, 4096);
    let rows = c.table_rows();
    let source = |name: &str| rows.iter().find(|r| r.0 == name).unwrap().2;
    assert_eq!(source("WS_CPU_LIMIT"), "env");
    assert_eq!(source("WS_WORKER_POOL_SIZE"), "derived");
    assert_eq!(source("WS_WORKER_QUEUE_SIZE"), "derived");

    let c = from_env(&[("WS_CPU_LIMIT", "8"), ("WS_WORKER_QUEUE_SIZE", "0")]).unwrap();
    assert_eq!((c.worker_pool_size, c.worker_queue_size), (8, 8192));
    let c = from_env(&[("WS_CPU_LIMIT", "0.5")]).unwrap();
    assert_eq!(c.worker_pool_size, 1);
}

/// Marks the child process of `production_file_loads_with_warnings`.
const PRODUCTION_CHILD: &str = "ODIN_WS_TEST_PRODUCTION_CHILD";

/// dotenvy expands `${BACKEND_INTERNAL_IP}` from the real process environment, and
/// setting a variable while other test threads run (and read the environment through
/// libc, e.g. in getaddrinfo) is a data race. So the check runs in a child copy of this
/// test binary whose whole environment is BACKEND_INTERNAL_IP, through `Config::load`
/// exactly as the server calls it.
#[test]
fn production_file_loads_with_warnings() {
    let child = "config::tests::loading::production_file_child";
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--test-threads=1", "--nocapture"])
        .env_clear()
        .env("BACKEND_INTERNAL_IP", "10.0.0.5")
        .env(PRODUCTION_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

/// Runs only inside `production_file_loads_with_warnings`'s child process.
#[test]
fn production_file_child() {
    if std::env::var_os(PRODUCTION_CHILD).is_none() {
        return;
    }
    let c = Config::load(Some(&production_path())).unwrap();
    assert_eq!(c.environment, Environment::Production);
    assert_eq!(c.nats_urls, ["nats://10.0.0.5:4222"]);
    assert_eq!((c.cpu_limit, c.memory_limit), (1.9, 7_516_192_768));
    assert_eq!(
        (c.max_connections, c.worker_pool_size, c.worker_queue_size),
        (7000, 192, 32_768)
    );
    assert_eq!((c.max_nats_rate, c.max_broadcast_rate), (25, 25));
    assert_eq!(
        (c.log_level, c.log_format),
        (log::LevelFilter::Info, LogFormat::Json)
    );
    assert_eq!(
        c.warnings,
        [
            "WS_WORKER_POOL_SIZE=192 is more than 4x the CPU limit (1.9): reactor threads beyond the cores \
             only add context switches (0 derives 2)",
            "WS_WORKER_QUEUE_SIZE=19200 rounded up to 32768 (the broadcast ring's capacity is a power of two)",
            "WS_MAX_GOROUTINES=17500 has no effect (accepted for compatibility with the Go server; odin-ws \
             runs 192 reactor threads and WS_MAX_CONNECTIONS bounds the connections)",
        ]
    );
    let rows = c.table_rows();
    assert!(rows.contains(&("NATS_URL", "nats://10.0.0.5:4222".to_string(), "file")));
    assert!(rows.contains(&("WS_MAX_GOROUTINES", "17500".to_string(), "file")));
}

#[test]
fn an_unset_reference_in_the_file_is_explained() {
    let path = temp_file(
        "unset.env",
        "NATS_URL=nats://${ODIN_WS_TEST_NEVER_SET}:4222\n",
    );
    let errors = load_from(&path, true, &HashMap::new()).unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            r#"NATS_URL entry "nats://:4222" has no host (the env file's ${ODIN_WS_TEST_NEVER_SET} is not set in the environment)"#
        ]
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn environment_overrides_file() {
    let file = vec![
        ("LOG_LEVEL".to_string(), "warn".to_string()),
        ("WS_MAX_CONNECTIONS".to_string(), "5000".to_string()),
        ("SOMEONE_ELSES".to_string(), "ignored".to_string()),
    ];
    let c = Config::from_sources(&file, &env(&[("LOG_LEVEL", "error"), ("UNKNOWN", "x")])).unwrap();
    assert_eq!(c.log_level, log::LevelFilter::Error);
    assert_eq!(c.max_connections, 5000);
    let rows = c.table_rows();
    assert!(rows.contains(&("LOG_LEVEL", "error".to_string(), "env")));
    assert!(rows.contains(&("WS_MAX_CONNECTIONS", "5000".to_string(), "file")));
    assert!(rows.contains(&("WS_PATH", "/ws".to_string(), "default")));
}

#[test]
fn explicit_missing_env_file_is_an_error() {
    let errors = Config::load(Some(Path::new("/nonexistent/odin-ws.env"))).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, "--env-file");
    assert!(
        errors[0]
            .to_string()
            .starts_with(r#"env file "/nonexistent/odin-ws.env" cannot be read: "#),
        "{}",
        errors[0]
    );
}

#[test]
fn file_errors_and_value_errors_come_together() {
    let path = temp_file("bad.env", "WS_MAX_SUBSCRIPTIONS=abc\nNOT A LINE\n");
    let errors = load_from(&path, true, &HashMap::new()).unwrap_err();
    let shown = path.display().to_string();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            format!(
                "env file {shown:?} line 2 cannot be parsed: \"NOT A LINE\" (expected KEY=VALUE; quote values with spaces)"
            ),
            r#"WS_MAX_SUBSCRIPTIONS must be an integer 1-10000, got "abc""#.to_string(),
        ]
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn lenient_spellings() {
    let c = from_env(&[
        ("LOG_LEVEL", "WARN"),
        ("NATS_URL", "nats://a:4222, b:4222 ,"),
        ("NATS_JETSTREAM", "yes"),
        ("WS_SHUTDOWN_GRACE", "0"),
        ("ENVIRONMENT", " staging "),
    ])
    .unwrap();
    assert_eq!(c.log_level, log::LevelFilter::Warn);
    assert_eq!(c.nats_urls, ["nats://a:4222", "nats://b:4222"]);
    assert!(c.nats_jetstream);
    assert_eq!(c.shutdown_grace, Duration::ZERO);
    assert_eq!(c.environment, Environment::Staging);
}

#[test]
fn warnings_for_settings_that_do_nothing() {
    let c = from_env(&[("NATS_SUBJECTS", "odin.>,odin.btc"), ("NATS_TOKEN", "t")]).unwrap();
    assert_eq!(
        c.warnings,
        [
            "NATS credentials are set but NATS_URL is empty (standalone): they are unused",
            "NATS_SUBJECTS \"odin.>\" and \"odin.btc\" overlap: NATS delivers a message matching both \
             once per subscription, so clients would receive it twice",
        ]
    );
    let c = from_env(&[("WS_WORKER_QUEUE_SIZE", "16384")]).unwrap();
    assert_eq!(c.worker_queue_size, 16_384);
    assert!(c.warnings.is_empty());
}
