//! An SSE reader that vanishes (no FIN, no RST, no more ACKs) on a quiet channel
//! is dropped after WS_IDLE_TIMEOUT, by TCP_USER_TIMEOUT. Loopback never loses a
//! packet, so the test runs again in a user and network namespace of its own
//! (`unshare`, no root needed), where iptables may drop what the reader sends.

use std::process::Command;

use crate::support::*;

/// Set in the namespace's run of the test.
const IN_NAMESPACE: &str = "ODIN_WS_TEST_IN_NETNS";

/// Runs `program args`, failing the test with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_vanished_reader_on_a_quiet_channel_is_dropped_after_the_idle_timeout() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let name =
            "dead_reader::a_vanished_reader_on_a_quiet_channel_is_dropped_after_the_idle_timeout";
        let exe = exe.to_str().unwrap();
        let args = ["--user", "--map-root-user", "--net", exe, "--exact", name];
        let out = Command::new("unshare")
            .args(args)
            .arg("--nocapture")
            .env(IN_NAMESPACE, "1")
            .output()
            .expect("unshare (util-linux) runs the test in its own namespaces");
        assert!(
            out.status.success(),
            "in the namespace:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The inner run must have run the test, not filtered it out.
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    run("ip", &["link", "set", "lo", "up"]);
    let s = Server::start(&[("WS_PING_INTERVAL", "1s"), ("WS_IDLE_TIMEOUT", "3s")]);
    let (status, _, reader) = sse_request(s.port, "channels=quiet", "");
    assert_eq!(status, 200);
    wait_for("the stream", || s.metric("odin_ws_sse_clients") == 1.0);
    // The reader's host goes away: nothing it sends, ACKs included, arrives.
    let port = reader.get_ref().local_addr().unwrap().port().to_string();
    let drop_rule = ["-A", "OUTPUT", "-p", "tcp", "--sport", &port, "-j", "DROP"];
    run("iptables", &drop_rule);
    // Its keep-alives go unacknowledged; without TCP_USER_TIMEOUT the kernel
    // would retransmit them for about 15 minutes.
    wait_for("the stream dropped", || {
        s.metric("odin_ws_sse_clients") == 0.0
    });
    assert_eq!(s.metric("odin_ws_slow_consumer_closes_total"), 1.0);
    assert_eq!(s.metric("odin_ws_connections"), 0.0, "its slot is free");
    drop(reader);
}
