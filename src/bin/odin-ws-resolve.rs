//! odin-ws-resolve: the NATS servers odin-ws connects to, resolved the way
//! odin-ws resolves them (src/resolve), for images and VMs without nslookup.

use std::process::ExitCode;

const USAGE: &str = "usage: odin-ws-resolve [URL[,URL...] | HOST]...

Resolves NATS server host names like odin-ws does (/etc/hosts, localhost, then
DNS from /etc/resolv.conf; no libc resolver) and prints each host's addresses and
the server list given to the nats crate. Without arguments it reads NATS_URL.
Exit 0 when every name resolved, 1 otherwise.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.is_empty() {
        match std::env::var("NATS_URL") {
            Ok(url) if !url.trim().is_empty() => args.push(url),
            _ => {
                eprintln!("odin-ws-resolve: no argument and NATS_URL is empty\n{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    let entries: Vec<&str> = args.iter().flat_map(|a| a.split(',')).collect();
    let servers = odin_ws::resolve::nats_urls(&entries);
    for host in &servers.hosts {
        use odin_ws::resolve::Outcome;
        let what = match &host.outcome {
            Outcome::Address => "address".to_string(),
            Outcome::Resolved(addrs) => {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                list.join(" ")
            }
            Outcome::KeptForTls => "kept: tls:// checks the certificate against the name".into(),
            Outcome::Failed(e) => format!("UNRESOLVED: {e}"),
        };
        println!("{}\t{what}", host.host);
    }
    let masked: Vec<String> = servers.urls.iter().map(|u| mask(u)).collect();
    println!("servers\t{}", masked.join(","));
    if servers.all_resolved() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `nats://user:secret@h` as `nats://user:***@h`, `nats://token@h` as `nats://***@h`.
fn mask(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => {
            let user = match url[start..start + at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{}{user}{}", &url[..start], &url[start + at..])
        }
        None => url.to_string(),
    }
}
