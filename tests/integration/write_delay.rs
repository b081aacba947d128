//! WS_WRITE_DELAY: a connection's broadcasts wait out the delay since its last
//! write, then go together and in order; a reply carries the held broadcasts
//! with it; SIGHUP changes the delay in place.

use std::time::{Duration, Instant};

use crate::support::*;

fn message_n(c: &mut Client) -> serde_json::Value {
    let m = read_json(c);
    assert_eq!(m["type"], "message", "{m}");
    m["data"]["n"].clone()
}

#[test]
fn broadcasts_wait_for_the_write_delay_and_keep_their_order() {
    let dir = scratch("write-delay");
    let file = dir.join("wd.env");
    std::fs::write(&file, "WS_WRITE_DELAY=1s\n").unwrap();
    let s = Server::start_with_file(&[], file.to_str().unwrap());
    let mut c = s.client();

    // The subscribe ack is this connection's last write before the messages,
    // so none of them may leave before a second after the request was sent.
    let asked = Instant::now();
    subscribe(&mut c, &["wd.a"]);
    for n in 0..3 {
        assert_eq!(s.publish("wd.a", &format!("{{\"n\":{n}}}")).status, 202);
    }
    for n in 0..3 {
        assert_eq!(message_n(&mut c), n);
    }
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "held broadcasts left after {:?}",
        asked.elapsed()
    );

    // Queued behind the delay again; a reply must not overtake it.
    assert_eq!(s.publish("wd.a", r#"{"n":3}"#).status, 202);
    wait_for("the delivery queued", || {
        s.metric("odin_ws_deliveries_total") >= 4.0
    });
    send(&mut c, r#"{"type":"ping","id":7}"#);
    assert_eq!(message_n(&mut c), 3);
    assert_eq!(read_json(&mut c)["type"], "pong");

    std::fs::write(&file, "WS_WRITE_DELAY=0s\n").unwrap();
    s.signal(libc::SIGHUP);
    wait_for("the reload logged", || {
        s.log.lock().unwrap().contains("WS_WRITE_DELAY: 1s -> 0s")
    });
    assert_eq!(s.publish("wd.a", r#"{"n":4}"#).status, 202);
    assert_eq!(message_n(&mut c), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
