//! Three real nats-server processes clustered on 127.0.0.1 (free ports, their own
//! stores, JetStream on), each of which a test may kill and restart.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Leader elections on a busy 2-core machine take seconds; allow for them.
pub const ELECTION: Duration = Duration::from_secs(60);

pub struct Node {
    pub name: String,
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl NatsCluster {
    pub fn start(name: &str) -> NatsCluster {
        let dir = scratch(name);
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.join(&name);
            let conf = dir.join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: {:?} }}\n\
                 cluster {{ name: odin-test\n listen: 127.0.0.1:{route}\n routes: [{}] }}\n",
                store.display().to_string(),
                routes.join(", ")
            );
            std::fs::write(&conf, text).unwrap();
            nodes.push(Node {
                name,
                port: *port,
                conf,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, dir };
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster
    }

    /// "nats://127.0.0.1:A,nats://127.0.0.1:B,nats://127.0.0.1:C"
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }

    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let child = Command::new("nats-server")
            .args(["-c", node.conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it)");
        node.child = Some(child);
        let port = node.port;
        wait_for("nats-server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGKILL: the node dies as in a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn by_name(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    pub fn by_port(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it holds or `within` passes.
pub fn wait_until(what: &str, within: Duration, check: impl FnMut() -> bool) {
    wait_explained(what, within, check, String::new);
}

/// `wait_until`, with `explain()` (a log) in the failure message.
pub fn wait_explained(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            explain()
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// The port of the NATS server odin-ws's log says it is connected to now.
pub fn connected_port(log: &str) -> Option<u16> {
    log.lines()
        .rev()
        .find_map(|l| l.split("connected to 127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|port| port.parse().ok())
}
