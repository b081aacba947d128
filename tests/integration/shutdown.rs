//! SIGTERM: every client gets close 1001 and the process exits 0.

use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut s = Server::start(&[("WS_SHUTDOWN_GRACE", "1s")]);
    let mut clients: Vec<Client> = (0..20).map(|_| s.client()).collect();
    s.signal(libc::SIGTERM);
    for c in &mut clients {
        let code = loop {
            match c.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| f.code),
                Ok(_) => {}
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        };
        assert_eq!(code, Some(CloseCode::Away));
    }
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn health_says_draining_while_clients_remain() {
    let mut s = Server::start(&[("WS_SHUTDOWN_GRACE", "3s")]);
    let _clients: Vec<Client> = (0..10).map(|_| s.client()).collect();
    s.signal(libc::SIGTERM);
    wait_for("/health to answer 503 draining", || {
        let reply = s.get("/health");
        reply.status == 503 && reply.body.contains("\"draining\"")
    });
    assert_eq!(s.wait_exit(), Some(0));
}
