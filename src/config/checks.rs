//! Stage three: settings checked against each other. A check is skipped when one of
//! its variables already failed to parse, so each mistake is reported once.

use super::Config;
use super::derive::{self, RING_BROADCASTS};
use super::duration::format_duration;
use super::parse::Reader;
use super::spec::*;

pub(super) fn cross_fields(c: &Config, r: &mut Reader) {
    thresholds(c, r);
    sizes(c, r);
    timeouts(c, r);
    paths(c, r);
    nats(c, r);
}

fn thresholds(c: &Config, r: &mut Reader) {
    // NATS intake pauses above the pause threshold; refusing new clients first sheds
    // load before the data itself stalls.
    if r.all_ok(&[WS_CPU_PAUSE_THRESHOLD, WS_CPU_REJECT_THRESHOLD])
        && c.cpu_pause_threshold < c.cpu_reject_threshold
    {
        r.error(
            WS_CPU_PAUSE_THRESHOLD,
            c.cpu_pause_threshold.to_string(),
            format!(
                "{WS_CPU_PAUSE_THRESHOLD} ({}) must be >= {WS_CPU_REJECT_THRESHOLD} ({})",
                c.cpu_pause_threshold, c.cpu_reject_threshold
            ),
        );
    }
}

/// A broadcast frame must fit a send queue with room for the frames queued before
/// it, or every subscriber would be closed for it; the ring must hold several.
fn sizes(c: &Config, r: &mut Reader) {
    if !r.all_ok(&[WS_MAX_BROADCAST_SIZE, WS_SEND_QUEUE_BYTES, WS_RING_BYTES]) {
        return;
    }
    let half_queue = c.send_queue_bytes / 2;
    if c.max_broadcast_size > half_queue {
        r.error(
            WS_MAX_BROADCAST_SIZE,
            c.max_broadcast_size.to_string(),
            format!(
                "{WS_MAX_BROADCAST_SIZE} ({}) must be <= half of {WS_SEND_QUEUE_BYTES} ({}), so a broadcast fits a send queue",
                c.max_broadcast_size, c.send_queue_bytes
            ),
        );
        return;
    }
    let largest = derive::broadcast_size(c.max_broadcast_size, c.send_queue_bytes);
    if c.ring_bytes < RING_BROADCASTS * largest {
        r.error(
            WS_RING_BYTES,
            c.ring_bytes.to_string(),
            format!(
                "{WS_RING_BYTES} ({}) must hold at least {RING_BROADCASTS} broadcasts of {WS_MAX_BROADCAST_SIZE} ({largest})",
                c.ring_bytes
            ),
        );
    }
}

fn timeouts(c: &Config, r: &mut Reader) {
    // A client answering every ping must never be timed out as idle.
    if r.all_ok(&[WS_IDLE_TIMEOUT, WS_PING_INTERVAL]) && c.idle_timeout <= c.ping_interval {
        let idle = format_duration(c.idle_timeout);
        r.error(
            WS_IDLE_TIMEOUT,
            idle.clone(),
            format!(
                "{WS_IDLE_TIMEOUT} ({idle}) must be > {WS_PING_INTERVAL} ({})",
                format_duration(c.ping_interval)
            ),
        );
    }
}

fn paths(c: &Config, r: &mut Reader) {
    if r.all_ok(&[WS_PATH]) && RESERVED_PATHS.contains(&c.ws_path.as_str()) {
        r.error(
            WS_PATH,
            c.ws_path.clone(),
            format!(
                "{WS_PATH} {:?} collides with the built-in {} endpoint",
                c.ws_path, c.ws_path
            ),
        );
    }
    let Some(echo) = &c.echo_path else { return };
    if !r.all_ok(&[WS_ECHO_PATH, WS_PATH]) {
        return;
    }
    if *echo == c.ws_path {
        r.error(
            WS_ECHO_PATH,
            echo.clone(),
            format!(
                "{WS_ECHO_PATH} ({echo}) must differ from {WS_PATH} ({})",
                c.ws_path
            ),
        );
    } else if RESERVED_PATHS.contains(&echo.as_str()) {
        r.error(
            WS_ECHO_PATH,
            echo.clone(),
            format!("{WS_ECHO_PATH} {echo:?} collides with the built-in {echo} endpoint"),
        );
    }
}

fn nats(c: &Config, r: &mut Reader) {
    if c.nats_jetstream && c.nats_urls.is_empty() && r.all_ok(&[NATS_URL]) {
        r.error(
            NATS_JETSTREAM,
            "true",
            format!("{NATS_JETSTREAM}=true needs {NATS_URL}: JetStream has no standalone mode"),
        );
    }
    if !c.nats_urls.is_empty() && c.nats_subjects.is_empty() && r.all_ok(&[NATS_SUBJECTS]) {
        r.error(
            NATS_SUBJECTS,
            "",
            format!(
                "{NATS_SUBJECTS} must name at least one subject when {NATS_URL} is set, got \"\""
            ),
        );
    }
    if c.nats_user.is_some() != c.nats_password.is_some() {
        let (set, value, missing) = match &c.nats_user {
            Some(user) => (NATS_USER, user.as_str(), NATS_PASSWORD),
            None => (NATS_PASSWORD, MASK, NATS_USER),
        };
        r.error(
            set,
            value,
            format!("{set} is set but {missing} is empty; set both or neither"),
        );
    }
    // The NATS client takes one way to authenticate.
    let methods: Vec<&str> = [
        (
            c.nats_user.is_some() || c.nats_password.is_some(),
            "NATS_USER/NATS_PASSWORD",
        ),
        (c.nats_token.is_some(), NATS_TOKEN),
        (c.nats_creds_file.is_some(), NATS_CREDS_FILE),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if methods.len() > 1 {
        let (variable, value) = match &c.nats_creds_file {
            Some(path) if c.nats_token.is_none() => (NATS_CREDS_FILE, path.display().to_string()),
            _ => (NATS_TOKEN, MASK.to_string()),
        };
        r.error(
            variable,
            value,
            format!(
                "{} are alternative ways to authenticate; set only one",
                methods.join(" and ")
            ),
        );
    }
}
