//! Which NATS server this process is connected to, as host:port, for the logs: the
//! nats crate does not say, so this looks for the process's TCP socket whose peer
//! port is one of NATS_URL's ports (through /proc/self/fd and getpeername).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The port of each NATS URL (4222 when none is written).
pub fn ports(urls: &[String]) -> Vec<u16> {
    urls.iter().filter_map(|url| url_port(url)).collect()
}

fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // "[::1]:4222", "host:4222", "host", "[::1]"
    let after_host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1,
        None => host_port.split_once(':').map_or("", |(_, p)| p),
    };
    match after_host.trim_start_matches(':') {
        "" => Some(4222),
        port => port.parse().ok(),
    }
}

/// The server at the other end of the connection, when one socket has a NATS port as its peer's.
pub fn connected_server(ports: &[u16]) -> Option<SocketAddr> {
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    fds.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(peer_of)
        .find(|peer| ports.contains(&peer.port()))
}

fn peer_of(fd: i32) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len`
    // bytes into it, and fails harmlessly on an fd that is not a socket (or was closed).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    if unsafe { libc::getpeername(fd, ptr, &mut len) } != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(ptr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(ptr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_urls_default_to_4222() {
        let urls: Vec<String> = [
            "nats://10.0.0.1:4223",
            "nats://user:p@ss@host",
            "tls://[::1]:5222",
            "[::1]",
            "127.0.0.1:6222",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(ports(&urls), [4223, 4222, 5222, 4222, 6222]);
    }

    #[test]
    fn finds_the_peer_of_a_connected_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(
            connected_server(&[port]),
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        );
    }
}
