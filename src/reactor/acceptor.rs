//! The acceptor thread: accepts until WouldBlock and hands each socket to the
//! least-loaded worker.

use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::accounting::SocketCount;
use crate::metrics::Reject;
use crate::shared::{HANDOFF_CAPACITY, Shared};

const LISTENER: Token = Token(0);
/// Kernel accept backlog asked for; the kernel caps it at net.core.somaxconn.
/// A connection storm waits here rather than being refused.
const BACKLOG: i32 = 65_535;
/// Sockets beyond max connections kept for plain HTTP (health checks, metrics).
const HTTP_HEADROOM: u64 = 256;
/// Kernel send buffer per client socket. Linux autotunes it up to tcp_wmem's max
/// (4 MiB) for a peer that stops reading, which is memory the send-queue bound
/// does not see; market data needs far less than this per RTT.
const SOCKET_SEND_BUFFER: libc::c_int = 64 * 1024;
/// After running out of file descriptors, pause before accepting again.
const EMFILE_BACKOFF: Duration = Duration::from_millis(100);

/// Binds with a deep backlog (mio and std ask for 1024 and 128).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own; errors are checked.
    unsafe {
        let fd = libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = std::net::TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let opt = &one as *const libc::c_int as *const libc::c_void;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, opt, len) < 0 {
            return Err(io::Error::last_os_error());
        }
        let (storage, slen) = sockaddr(addr);
        if libc::bind(fd, &storage as *const _ as *const libc::sockaddr, slen) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::listen(fd, BACKLOG) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpListener::from_std(listener))
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Small frames go out at once rather than waiting to fill a segment. Like the
/// send buffer below, a failure only costs latency: logged once, socket served.
fn set_nodelay(stream: &mio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| log::warn!("acceptor: cannot set TCP_NODELAY on client sockets: {e}"));
    }
}

/// Caps the kernel send buffer. A failure costs only memory (the kernel keeps
/// autotuning), so the socket is served anyway; the reason is logged once, as every
/// socket after it would fail the same way.
fn set_send_buffer(stream: &mio::net::TcpStream) {
    let set = set_int_option(
        stream,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        SOCKET_SEND_BUFFER,
    );
    if let Err(e) = set {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| log::warn!("acceptor: cannot set SO_SNDBUF on client sockets: {e}"));
    }
}

/// setsockopt of an `int` option on a client socket.
pub(super) fn set_int_option(
    stream: &mio::net::TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub struct Acceptor {
    pub poll: Poll,
    pub listener: TcpListener,
    pub shared: Arc<Shared>,
}

impl Acceptor {
    pub fn new(mut listener: TcpListener, shared: Arc<Shared>) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Acceptor {
            poll,
            listener,
            shared,
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut backoff = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, backoff) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("acceptor: poll failed: {e}");
                    std::thread::sleep(EMFILE_BACKOFF);
                }
                continue;
            }
            backoff = self.accept_all();
        }
    }

    /// Returns a retry delay when accepting had to stop early.
    fn accept_all(&mut self) -> Option<Duration> {
        let max_sockets = self.shared.config().max_connections as u64 + HTTP_HEADROOM;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.shared.metrics.sockets.load(Relaxed) >= max_sockets {
                        self.shared.metrics.reject(Reject::Overload);
                        drop(stream);
                        continue;
                    }
                    set_nodelay(&stream);
                    set_send_buffer(&stream);
                    self.hand_off(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: the pending connection stays in the backlog.
                    log::warn!("acceptor: accept failed: {e}; retrying in {EMFILE_BACKOFF:?}");
                    return Some(EMFILE_BACKOFF);
                }
            }
        }
    }

    fn hand_off(&self, stream: mio::net::TcpStream) {
        let workers = &self.shared.workers;
        let (i, w) = workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.load.load(Relaxed))
            .expect("at least one worker");
        {
            let mut inbox = w.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.len() >= HANDOFF_CAPACITY {
                self.shared.metrics.reject(Reject::Overload);
                return;
            }
            inbox.push(stream);
        }
        SocketCount::hand_off(&self.shared, i);
        if let Err(e) = w.waker.wake() {
            log::error!("acceptor: cannot wake worker {i}: {e}");
        }
    }
}
