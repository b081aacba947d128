//! `odin-ws-load verdict LOAD.json [PUBLISH.json...]`: judges a load run and the
//! publishers that fed it, and prints `PASS` or `FAIL: reason; reason; ...`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Reads the last line of a JSON report; the error says why there is none.
pub fn read_report(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{path} is empty"))?;
    serde_json::from_str(line).map_err(|e| format!("{path}: not JSON ({e})"))
}

/// `1 gap`, `2 gaps`.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// `reason: n, reason: n` of a `{reason: count}` object.
fn by_reason(v: &Value) -> String {
    let map: BTreeMap<String, u64> = serde_json::from_value(v.clone()).unwrap_or_default();
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What went wrong in the load run itself.
fn load_reasons(load: &Value, out: &mut Vec<String>) {
    let (attempted, failed) = (count(load, "attempted"), count(load, "failed"));
    if failed > 0 {
        out.push(format!(
            "{failed} of {attempted} connections failed ({})",
            by_reason(&load["failures"])
        ));
    }
    let dropped = count(load, "dropped");
    if dropped > 0 {
        out.push(format!(
            "{} dropped ({})",
            plural(dropped, "connection"),
            by_reason(&load["drop_reasons"])
        ));
    }
    let unacked = count(load, "succeeded").saturating_sub(count(load, "subscribed"));
    if unacked > 0 {
        let clients = plural(unacked, "client");
        out.push(format!("{clients} never got the subscribed ack"));
    }
    if load["server_errors"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        out.push(format!(
            "error frames from the server ({})",
            by_reason(&load["server_errors"])
        ));
    }
    let gaps = count(load, "gaps");
    if gaps > 0 {
        let missing = plural(count(load, "missing"), "message");
        out.push(format!("{} ({missing} missing)", plural(gaps, "gap")));
    }
    let out_of_order = count(load, "out_of_order");
    if out_of_order > 0 {
        let messages = plural(out_of_order, "message");
        out.push(format!("{messages} out of order or repeated"));
    }
}

/// Every reason to fail; empty means PASS.
pub fn reasons(load: &Result<Value, String>, publishers: &[Result<Value, String>]) -> Vec<String> {
    let mut out = Vec::new();
    match load {
        Ok(load) => load_reasons(load, &mut out),
        Err(e) => out.push(format!("no report from the load run ({e})")),
    }
    let mut published = 0;
    for publisher in publishers {
        match publisher {
            Ok(p) => {
                published += count(p, "published");
                let failed = count(p, "failed");
                if failed > 0 || p["failures"].as_object().is_some_and(|m| !m.is_empty()) {
                    out.push(format!(
                        "publish errors: {failed} of {} messages failed ({})",
                        failed + count(p, "published"),
                        by_reason(&p["failures"])
                    ));
                } else if count(p, "published") == 0 {
                    out.push("the publisher sent nothing".into());
                }
            }
            Err(e) => out.push(format!("no report from the publisher ({e})")),
        }
    }
    if let Ok(load) = load
        && published > 0
    {
        let received = count(load, "messages_received") + count(&load["slow_readers"], "messages");
        if received == 0 {
            out.push(format!(
                "nothing delivered: {published} messages published, none received"
            ));
        }
    }
    out
}

/// The verdict line.
pub fn line(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "PASS".into()
    } else {
        format!("FAIL: {}", reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn healthy() -> Value {
        json!({"attempted": 10, "succeeded": 10, "failed": 0, "failures": {},
               "dropped": 0, "drop_reasons": {}, "subscribed": 10, "server_errors": {},
               "messages_received": 50, "gaps": 0, "missing": 0, "out_of_order": 0,
               "slow_readers": {"messages": 0}})
    }

    fn publisher(published: u64, failures: Value) -> Value {
        let failed: u64 = failures
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_u64)
            .sum();
        json!({"published": published, "failed": failed, "failures": failures})
    }

    #[test]
    fn a_clean_run_passes() {
        let r = reasons(&Ok(healthy()), &[Ok(publisher(5, json!({})))]);
        assert_eq!(line(&r), "PASS");
        assert_eq!(line(&reasons(&Ok(healthy()), &[])), "PASS");
    }

    #[test]
    fn a_refused_publisher_fails_by_name() {
        let mut load = healthy();
        load["messages_received"] = json!(0);
        let r = reasons(&Ok(load), &[Ok(publisher(0, json!({"http 401": 7})))]);
        assert_eq!(
            line(&r),
            "FAIL: publish errors: 7 of 7 messages failed (http 401: 7)"
        );
    }

    #[test]
    fn every_problem_is_named() {
        let mut load = healthy();
        load["failed"] = json!(3);
        load["failures"] = json!({"connection refused": 2, "timeout": 1});
        load["dropped"] = json!(1);
        load["drop_reasons"] = json!({"closed by server (1013)": 1});
        load["gaps"] = json!(2);
        load["missing"] = json!(9);
        load["messages_received"] = json!(0);
        let r = reasons(
            &Ok(load),
            &[Ok(publisher(4, json!({}))), Err("pub.json is empty".into())],
        );
        let l = line(&r);
        assert!(
            l.starts_with("FAIL: 3 of 10 connections failed (connection refused: 2, timeout: 1); "),
            "{l}"
        );
        for part in [
            "1 connection dropped (closed by server (1013): 1)",
            "2 gaps (9 messages missing)",
            "no report from the publisher (pub.json is empty)",
            "nothing delivered: 4 messages published, none received",
        ] {
            assert!(l.contains(part), "{part} in {l}");
        }
    }

    #[test]
    fn a_missing_load_report_fails() {
        let r = reasons(&Err("load.json is empty".into()), &[]);
        assert_eq!(
            line(&r),
            "FAIL: no report from the load run (load.json is empty)"
        );
    }
}
