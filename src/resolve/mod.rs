//! Host names to addresses without libc's resolver, for the NATS connection.
//!
//! The release binary is linked statically against glibc (scripts/build-static).
//! Such a binary's getaddrinfo still reads /etc/nsswitch.conf and dlopens every
//! NSS module named there that glibc does not carry inside (myhostname, resolve,
//! mdns, sss, ...) from the *target's* glibc, which is undefined behaviour when the
//! versions differ, and it waits as long as resolv.conf says. So odin-ws resolves
//! NATS host names itself, in the order a plain `hosts: files dns` gives:
//!
//! 1. an IP literal is used as is;
//! 2. /etc/hosts (names and aliases);
//! 3. `localhost` and `*.localhost` (RFC 6761) are the loopback addresses;
//! 4. DNS over UDP to the nameservers of /etc/resolv.conf with its search list and
//!    `ndots`, `timeout` (capped at 5 s) and `attempts`: A first, AAAA only when
//!    there is no A record. Truncated answers are used as far as they go (no TCP).
//!
//! [`nats_urls`] turns `nats://name:4222` into `nats://10.0.0.5:4222` (one entry
//! per address) for the nats crate, which then never calls getaddrinfo. `tls://`
//! and `wss://` entries keep their name: the certificate is checked against it.
//! Names are resolved once, before connecting; a NATS server that moves to a new
//! address is found again after a restart.

mod dns;
mod files;
mod nats_url;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

pub use dns::{DnsError, QType};
pub use files::{ResolvConf, hosts_lookup};
pub use nats_url::{HostOutcome, NatsServers, Outcome};

pub const HOSTS_PATH: &str = "/etc/hosts";
pub const RESOLV_CONF_PATH: &str = "/etc/resolv.conf";
/// Largest UDP answer we read; A/AAAA answers for one name are far smaller.
const MAX_ANSWER: usize = 4096;

/// The NATS server list with host names replaced by addresses, using this
/// machine's /etc/hosts and /etc/resolv.conf. Never fails: an entry whose name
/// cannot be resolved is kept as given (the nats crate then asks libc) and says
/// why in [`NatsServers::hosts`]; log the result with `{}`.
pub fn nats_urls<S: AsRef<str>>(urls: &[S]) -> NatsServers {
    Resolver::system().nats_urls(urls)
}

#[derive(Debug)]
pub enum LookupError {
    InvalidName(DnsError),
    /// Nameservers answered: the name has no address.
    NotFound(String),
    /// No nameserver gave a usable answer within its timeout and attempts.
    NoAnswer {
        name: String,
        detail: String,
    },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::InvalidName(e) => e.fmt(f),
            LookupError::NotFound(name) => {
                write!(
                    f,
                    "{name:?} is not in /etc/hosts and DNS has no address for it"
                )
            }
            LookupError::NoAnswer { name, detail } => {
                write!(f, "no nameserver answered for {name:?} ({detail})")
            }
        }
    }
}

impl std::error::Error for LookupError {}

/// A stub resolver over the contents of /etc/hosts and resolv.conf.
pub struct Resolver {
    hosts: String,
    conf: ResolvConf,
}

impl Resolver {
    /// This machine's files; a missing /etc/hosts is empty, a missing
    /// resolv.conf means a nameserver on 127.0.0.1 (as in glibc).
    pub fn system() -> Resolver {
        let hosts = std::fs::read_to_string(HOSTS_PATH).unwrap_or_default();
        let conf = std::fs::read_to_string(RESOLV_CONF_PATH)
            .map(|text| ResolvConf::parse(&text))
            .unwrap_or_default();
        Resolver { hosts, conf }
    }

    pub fn new(hosts: &str, conf: ResolvConf) -> Resolver {
        Resolver {
            hosts: hosts.to_string(),
            conf,
        }
    }

    pub fn nats_urls<S: AsRef<str>>(&self, urls: &[S]) -> NatsServers {
        nats_url::rewrite(urls, |host| self.lookup(host))
    }

    /// The addresses of `host`, IPv4 first. Takes at most the resolv.conf
    /// timeout x attempts x nameservers when no nameserver answers.
    pub fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = hosts_lookup(&self.hosts, host);
        if !found.is_empty() {
            return Ok(found);
        }
        if is_localhost(host) {
            return Ok(vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]);
        }
        dns::build_query(0, host, QType::A).map_err(LookupError::InvalidName)?;
        for name in self.conf.candidates(host) {
            // A failure to reach every nameserver would repeat for each candidate.
            let a = self
                .query(&name, QType::A)
                .map_err(|detail| LookupError::NoAnswer {
                    name: name.clone(),
                    detail,
                })?;
            if !a.is_empty() {
                return Ok(a);
            }
            let aaaa = self.query(&name, QType::Aaaa).unwrap_or_default();
            if !aaaa.is_empty() {
                return Ok(aaaa);
            }
        }
        Err(LookupError::NotFound(host.to_string()))
    }

    /// One question to the nameservers in turn, `attempts` rounds. Ok with the
    /// addresses (none for NXDOMAIN or no records) from the first nameserver
    /// that answers; Err with the last failure when none does.
    fn query(&self, name: &str, qtype: QType) -> Result<Vec<IpAddr>, String> {
        let id = RandomState::new().hash_one(Instant::now()) as u16;
        let packet = dns::build_query(id, name, qtype).map_err(|e| e.to_string())?;
        let mut last = "no nameservers".to_string();
        for _ in 0..self.conf.attempts {
            for &server in &self.conf.nameservers {
                match self.ask(server, &packet, id, name, qtype) {
                    Ok(answer) if answer.rcode == 0 || answer.rcode == dns::RCODE_NXDOMAIN => {
                        return Ok(answer.addrs);
                    }
                    Ok(answer) => last = format!("{server} answered with code {}", answer.rcode),
                    Err(e) => last = format!("{server}: {e}"),
                }
            }
        }
        Err(last)
    }

    fn ask(
        &self,
        server: SocketAddr,
        packet: &[u8],
        id: u16,
        name: &str,
        qtype: QType,
    ) -> io::Result<dns::Answer> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        // Connected: the kernel drops datagrams from anyone but the server.
        socket.connect(server)?;
        socket.send(packet)?;
        let deadline = Instant::now() + self.conf.timeout;
        let mut buf = [0u8; MAX_ANSWER];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            socket.set_read_timeout(Some(left))?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match dns::parse_answer(&buf[..n], id, name, qtype) {
                Ok(answer) => return Ok(answer),
                // A late answer to an earlier question, or a forgery: keep waiting.
                Err(DnsError::NotOurs) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A nameserver on 127.0.0.1 answering from `zone`, and the names it was asked.
    fn nameserver(
        zone: &'static [(&'static str, &'static str)],
    ) -> (SocketAddr, mpsc::Receiver<String>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let (_, name, _) = dns::fake::read_query(&buf[..n]);
                let addrs: Vec<IpAddr> = zone
                    .iter()
                    .filter(|(zone_name, _)| *zone_name == name)
                    .map(|(_, ip)| ip.parse().unwrap())
                    .collect();
                let known = zone.iter().any(|(zone_name, _)| *zone_name == name);
                let rcode = if known { 0 } else { dns::RCODE_NXDOMAIN };
                // Recorded before answering, so the asker sees it once answered.
                if tx.send(name).is_err() {
                    break;
                }
                let _ = socket.send_to(&dns::fake::answer(&buf[..n], rcode, &addrs), from);
            }
        });
        (addr, rx)
    }

    fn conf(nameservers: Vec<SocketAddr>, search: &[&str]) -> ResolvConf {
        ResolvConf {
            nameservers,
            search: search.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(300),
            attempts: 1,
            ..ResolvConf::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn literals_hosts_then_localhost() {
        // No nameserver is reachable: these must not need one.
        let r = Resolver::new("10.0.0.5 nats-1\n10.0.0.9 localhost\n", conf(vec![], &[]));
        assert_eq!(r.lookup("192.0.2.1").unwrap(), [ip("192.0.2.1")]);
        assert_eq!(r.lookup("::1").unwrap(), [ip("::1")]);
        assert_eq!(r.lookup("nats-1").unwrap(), [ip("10.0.0.5")]);
        // /etc/hosts wins over the built-in localhost.
        assert_eq!(r.lookup("localhost").unwrap(), [ip("10.0.0.9")]);
        let r = Resolver::new("", conf(vec![], &[]));
        assert_eq!(
            r.lookup("LocalHost.").unwrap(),
            [ip("127.0.0.1"), ip("::1")]
        );
        assert_eq!(
            r.lookup("nats.localhost").unwrap(),
            [ip("127.0.0.1"), ip("::1")]
        );
        assert!(matches!(r.lookup("a..b"), Err(LookupError::InvalidName(_))));
    }

    #[test]
    fn dns_with_search_list() {
        static ZONE: &[(&str, &str)] = &[
            ("nats.svc.local", "10.1.0.1"),
            ("nats.svc.local", "10.1.0.2"),
            ("v6only.example", "fd00::1"),
        ];
        let (server, asked) = nameserver(ZONE);
        let r = Resolver::new("", conf(vec![server], &["other.local", "svc.local"]));
        assert_eq!(r.lookup("nats").unwrap(), [ip("10.1.0.1"), ip("10.1.0.2")]);
        let names: Vec<String> = asked.try_iter().collect();
        // NXDOMAIN for nats.other.local (A, then AAAA), then found.
        assert_eq!(
            names,
            ["nats.other.local", "nats.other.local", "nats.svc.local"]
        );
        assert_eq!(r.lookup("v6only.example").unwrap(), [ip("fd00::1")]);
        assert!(matches!(
            r.lookup("absent.example"),
            Err(LookupError::NotFound(_))
        ));
    }

    #[test]
    fn a_silent_nameserver_is_given_up_in_time() {
        // Bound but never answering; then one that answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        static ZONE: &[(&str, &str)] = &[("nats.example", "10.2.0.1")];
        let (good, _asked) = nameserver(ZONE);
        let mut c = conf(vec![silent.local_addr().unwrap()], &[]);
        c.attempts = 2;
        let r = Resolver::new("", c.clone());
        let started = Instant::now();
        let err = r.lookup("nats.example").unwrap_err();
        assert!(matches!(err, LookupError::NoAnswer { .. }), "{err}");
        // Two rounds of 300 ms, with room for a slow machine, far below glibc's 5 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        c.nameservers.push(good);
        let r = Resolver::new("", c);
        assert_eq!(r.lookup("nats.example").unwrap(), [ip("10.2.0.1")]);
    }
}
