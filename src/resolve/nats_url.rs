//! NATS server URLs with their host names replaced by addresses.

use std::fmt;
use std::net::IpAddr;

use super::LookupError;

/// The server list for the nats crate, and what happened to each host name.
#[derive(Debug)]
pub struct NatsServers {
    /// One URL per address, credentials and ports as given.
    pub urls: Vec<String>,
    pub hosts: Vec<HostOutcome>,
}

#[derive(Debug)]
pub struct HostOutcome {
    /// The host as written in NATS_URL: the name to log.
    pub host: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// Already an address.
    Address,
    /// The URL became one URL per address.
    Resolved(Vec<IpAddr>),
    /// `tls://` or `wss://`: the name stays, the server's certificate is
    /// checked against it.
    KeptForTls,
    /// Kept as given; the nats crate will ask libc.
    Failed(LookupError),
}

impl NatsServers {
    /// The comma-separated list that `nats::connect` and `nats::Options::connect` take.
    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// Every host name is now an address (or was one).
    pub fn all_resolved(&self) -> bool {
        self.hosts
            .iter()
            .all(|h| matches!(h.outcome, Outcome::Address | Outcome::Resolved(_)))
    }
}

impl fmt::Display for NatsServers {
    /// Host names and addresses only: credentials in the URLs are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hosts.is_empty() {
            return f.write_str("no NATS servers");
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &h.outcome {
                Outcome::Address => write!(f, "{}", h.host)?,
                Outcome::Resolved(addrs) => {
                    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
                    write!(f, "{} -> {}", h.host, list.join(", "))?
                }
                Outcome::KeptForTls => write!(f, "{} kept (TLS checks the name)", h.host)?,
                Outcome::Failed(e) => write!(f, "{} unresolved: {e}", h.host)?,
            }
        }
        Ok(())
    }
}

/// One entry: `[scheme://][userinfo@]host[:port][/rest]`.
struct Parts<'a> {
    /// With `://`, or empty.
    scheme: &'a str,
    /// With `@`, or empty.
    userinfo: &'a str,
    host: &'a str,
    /// With `:`, or empty.
    port: &'a str,
    rest: &'a str,
}

fn split(entry: &str) -> Parts<'_> {
    let (scheme, after) = match entry.find("://") {
        Some(i) => entry.split_at(i + 3),
        None => ("", entry),
    };
    let (authority, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let port_at = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port.len(), |i| i + 1)
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let (host, port) = host_port.split_at(port_at);
    Parts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    }
}

pub(super) fn rewrite<S: AsRef<str>>(
    urls: &[S],
    lookup: impl Fn(&str) -> Result<Vec<IpAddr>, LookupError>,
) -> NatsServers {
    let mut out = NatsServers {
        urls: Vec::new(),
        hosts: Vec::new(),
    };
    let mut push = |url: String| {
        if !out.urls.contains(&url) {
            out.urls.push(url);
        }
    };
    for entry in urls
        .iter()
        .map(|u| u.as_ref().trim())
        .filter(|u| !u.is_empty())
    {
        let p = split(entry);
        let bare_host = p.host.trim_start_matches('[').trim_end_matches(']');
        let tls = matches!(p.scheme.to_ascii_lowercase().as_str(), "tls://" | "wss://");
        let outcome = if p.host.is_empty() || bare_host.parse::<IpAddr>().is_ok() {
            Outcome::Address
        } else if tls {
            Outcome::KeptForTls
        } else {
            match lookup(p.host) {
                Ok(addrs) => Outcome::Resolved(addrs),
                Err(e) => Outcome::Failed(e),
            }
        };
        match &outcome {
            Outcome::Resolved(addrs) => {
                for addr in addrs {
                    let host = match addr {
                        IpAddr::V4(a) => a.to_string(),
                        IpAddr::V6(a) => format!("[{a}]"),
                    };
                    push(format!(
                        "{}{}{host}{}{}",
                        p.scheme, p.userinfo, p.port, p.rest
                    ));
                }
            }
            _ => push(entry.to_string()),
        }
        out.hosts.push(HostOutcome {
            host: p.host.to_string(),
            outcome,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(host: &str) -> Result<Vec<IpAddr>, LookupError> {
        match host {
            "nats-1" => Ok(vec!["10.0.0.5".parse().unwrap()]),
            "pair" => Ok(vec![
                "10.0.0.6".parse().unwrap(),
                "fd00::6".parse().unwrap(),
            ]),
            _ => Err(LookupError::NotFound(host.to_string())),
        }
    }

    #[test]
    fn names_become_addresses() {
        let cases: &[(&str, &str)] = &[
            ("nats://nats-1:4222", "nats://10.0.0.5:4222"),
            ("nats://nats-1", "nats://10.0.0.5"),
            ("nats-1:4222", "10.0.0.5:4222"),
            (
                "nats://user:p%40ss@nats-1:4222",
                "nats://user:p%40ss@10.0.0.5:4222",
            ),
            ("nats://token@nats-1:4222/", "nats://token@10.0.0.5:4222/"),
            (
                "nats://pair:4222",
                "nats://10.0.0.6:4222,nats://[fd00::6]:4222",
            ),
            ("nats://10.0.0.9:4222", "nats://10.0.0.9:4222"),
            ("nats://[::1]:4222", "nats://[::1]:4222"),
            ("tls://nats-1:4222", "tls://nats-1:4222"),
            ("nats://unknown:4222", "nats://unknown:4222"),
            (
                " nats://nats-1:4222 , nats://nats-1:4222,nats://pair:1",
                "nats://10.0.0.5:4222,nats://10.0.0.6:1,nats://[fd00::6]:1",
            ),
        ];
        for &(given, expected) in cases {
            let list: Vec<&str> = given.split(',').collect();
            assert_eq!(rewrite(&list, lookup).url_list(), expected, "{given}");
        }
    }

    #[test]
    fn outcomes_are_logged_without_credentials() {
        let servers = rewrite(
            &[
                "nats://user:secret@nats-1:4222",
                "nats://10.0.0.9:4222",
                "tls://nats.example.com",
                "nats://unknown:4222",
            ],
            lookup,
        );
        assert!(!servers.all_resolved());
        let line = servers.to_string();
        assert_eq!(
            line,
            "nats-1 -> 10.0.0.5; 10.0.0.9; nats.example.com kept (TLS checks the name); \
             unknown unresolved: \"unknown\" is not in /etc/hosts and DNS has no address for it"
        );
        assert!(!line.contains("secret"));
        assert!(rewrite(&["nats://nats-1"], lookup).all_resolved());
        assert_eq!(rewrite::<&str>(&[], lookup).to_string(), "no NATS servers");
    }
}
