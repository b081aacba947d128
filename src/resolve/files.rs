//! /etc/hosts and /etc/resolv.conf, read the way glibc reads them (hosts(5),
//! resolv.conf(5)) for the parts a stub resolver uses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// resolv.conf's own limits and defaults (resolv.conf(5)).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH: usize = 6;
const DEFAULT_NDOTS: usize = 1;
/// We wait less than glibc's 5 s per try: NATS connects are retried anyway, and a
/// start that hangs half a minute on a dead nameserver helps no one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ATTEMPTS: u32 = 2;
const MAX_ATTEMPTS: u32 = 3;
const DNS_PORT: u16 = 53;

/// Every address /etc/hosts gives `name` (canonical name or alias; case does
/// not matter), in file order.
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(addr)) = fields.next().map(parse_ip) else {
            continue;
        };
        if fields.any(|n| n.strip_suffix('.').unwrap_or(n).eq_ignore_ascii_case(name))
            && !found.contains(&addr)
        {
            found.push(addr);
        }
    }
    found
}

/// An address with an IPv6 zone (`fe80::1%eth0`) loses the zone: std cannot carry
/// it in an IpAddr, and NATS servers are not reached over link-local addresses.
fn parse_ip(s: &str) -> Result<IpAddr, std::net::AddrParseError> {
    s.split('%').next().unwrap_or(s).parse()
}

/// The parts of resolv.conf a stub resolver for A/AAAA queries needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    /// Wait for one nameserver's answer to one query.
    pub timeout: Duration,
    /// Rounds over all nameservers.
    pub attempts: u32,
}

impl Default for ResolvConf {
    /// What an absent resolv.conf means: a nameserver on this machine.
    fn default() -> ResolvConf {
        ResolvConf {
            nameservers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, DNS_PORT))],
            search: Vec::new(),
            ndots: DEFAULT_NDOTS,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            ..ResolvConf::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    let ip = fields.next().map(parse_ip);
                    if let Some(Ok(ip)) = ip
                        && conf.nameservers.len() < MAX_NAMESERVERS
                    {
                        conf.nameservers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                // The last `domain` or `search` line wins (resolv.conf(5)).
                Some("domain") => conf.search = fields.take(1).map(str::to_string).collect(),
                Some("search") => {
                    conf.search = fields.take(MAX_SEARCH).map(str::to_string).collect()
                }
                Some("options") => fields.for_each(|opt| conf.option(opt)),
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers = ResolvConf::default().nameservers;
        }
        conf.search.retain(|d| d != ".");
        conf
    }

    fn option(&mut self, opt: &str) {
        let Some((name, value)) = opt.split_once(':') else {
            return;
        };
        let Ok(n) = value.parse::<u32>() else {
            return;
        };
        match name {
            "ndots" => self.ndots = n.min(15) as usize,
            "timeout" => self.timeout = Duration::from_secs(n.max(1).into()).min(MAX_TIMEOUT),
            "attempts" => self.attempts = n.clamp(1, MAX_ATTEMPTS),
            _ => {}
        }
    }

    /// The names to ask for, in order: as given first when it has at least
    /// `ndots` dots, else each search domain appended first.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
127.0.0.1\tlocalhost
::1     localhost ip6-localhost ip6-loopback
# 10.9.9.9 commented.out
10.0.0.5   nats-1.internal nats-1   # the first NATS node
10.0.0.6   NATS-2.internal nats-2
fe80::5%eth0 linklocal
not-an-ip  broken
10.0.0.7   nats-1
10.0.0.5   nats-1
";

    #[test]
    fn hosts_names_and_aliases() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(hosts_lookup(HOSTS, "nats-1.internal"), vec![ip("10.0.0.5")]);
        // An alias on two lines: both addresses, once each, in file order.
        assert_eq!(
            hosts_lookup(HOSTS, "nats-1"),
            vec![ip("10.0.0.5"), ip("10.0.0.7")]
        );
        assert_eq!(
            hosts_lookup(HOSTS, "nats-2.INTERNAL."),
            vec![ip("10.0.0.6")]
        );
        assert_eq!(
            hosts_lookup(HOSTS, "localhost"),
            vec![ip("127.0.0.1"), ip("::1")]
        );
        assert_eq!(hosts_lookup(HOSTS, "linklocal"), vec![ip("fe80::5")]);
        for absent in ["commented.out", "broken", "the", "nats", ""] {
            assert!(hosts_lookup(HOSTS, absent).is_empty(), "{absent}");
        }
    }

    #[test]
    fn resolv_conf_fields() {
        let conf = ResolvConf::parse(
            "# generated\n\
             domain old.example\n\
             search svc.cluster.local cluster.local ; comment\n\
             nameserver 10.96.0.10\n\
             nameserver fd00::53\n\
             nameserver bogus\n\
             nameserver 10.0.0.2\n\
             nameserver 10.0.0.3\n\
             options ndots:5 timeout:1 attempts:9 rotate edns0\n",
        );
        assert_eq!(
            conf,
            ResolvConf {
                nameservers: vec![
                    "10.96.0.10:53".parse().unwrap(),
                    "[fd00::53]:53".parse().unwrap(),
                    "10.0.0.2:53".parse().unwrap(),
                ],
                search: vec!["svc.cluster.local".into(), "cluster.local".into()],
                ndots: 5,
                timeout: Duration::from_secs(1),
                attempts: MAX_ATTEMPTS,
            }
        );
    }

    #[test]
    fn resolv_conf_defaults_and_limits() {
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
        let conf =
            ResolvConf::parse("search a.example\ndomain b.example\noptions timeout:60 attempts:0");
        assert_eq!(conf.search, vec!["b.example".to_string()]);
        assert_eq!(conf.timeout, MAX_TIMEOUT);
        assert_eq!(conf.attempts, 1);
        assert_eq!(ResolvConf::parse("search .").search, Vec::<String>::new());
    }

    #[test]
    fn search_order_follows_ndots() {
        let conf = ResolvConf::parse("search svc.local corp.example\noptions ndots:1");
        assert_eq!(
            conf.candidates("nats"),
            ["nats.svc.local", "nats.corp.example", "nats"]
        );
        assert_eq!(
            conf.candidates("nats.internal"),
            [
                "nats.internal",
                "nats.internal.svc.local",
                "nats.internal.corp.example"
            ]
        );
        assert_eq!(conf.candidates("nats.internal."), ["nats.internal"]);
        let k8s = ResolvConf::parse("search svc.local\noptions ndots:5");
        assert_eq!(k8s.candidates("a.b.c"), ["a.b.c.svc.local", "a.b.c"]);
    }
}
