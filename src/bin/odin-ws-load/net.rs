//! Sockets the standard library cannot make: a non-blocking connect from a chosen
//! source address (127.0.0.x), so one process can open more connections to one
//! server than the ~28k ephemeral ports of a single source address allow.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::FromRawFd;

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Starts a non-blocking connect to `dest`, bound to `source` when given.
pub fn connect(dest: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<mio::net::TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns; on error it is
    // closed by the `TcpStream` built right after `socket` succeeds.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let stream = std::net::TcpStream::from_raw_fd(fd);
        if let Some(ip) = source {
            // Pick the port at connect time, per destination, not at bind time.
            let one: libc::c_int = 1;
            check(libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ))?;
            let src = sockaddr(SocketAddrV4::new(ip, 0));
            check(libc::bind(
                fd,
                (&src as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ))?;
        }
        let dst = sockaddr(dest);
        let ret = libc::connect(
            fd,
            (&dst as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err);
            }
        }
        Ok(mio::net::TcpStream::from_std(stream))
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connects_from_another_loopback_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dest) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let _stream = connect(dest, Some(Ipv4Addr::new(127, 0, 0, 3))).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    }
}
