//! An SSE reader that vanished (network gone, no FIN or RST). A WebSocket has
//! ping/pong to hear that; an SSE client never answers, and on a quiet channel
//! the keep-alive comments fit in the kernel's send buffer, so nothing waits in
//! the stream's own queue for its write-idle check, while Linux retransmits for
//! about 15 minutes before it gives up. TCP_USER_TIMEOUT (tcp(7)) makes the
//! kernel give up on bytes left unacknowledged for WS_IDLE_TIMEOUT instead: the
//! socket then fails with ETIMEDOUT, and the stream is dropped as a slow
//! consumer, the same promise as a reader that takes nothing for that long.

use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[cfg(target_os = "linux")]
use super::acceptor::set_int_option;
use super::conn::Conn;
use super::effect::{Context, Effect, Effects};
use super::sse_conn;

/// What a stream's socket is asked, so the handlers also run over the unit
/// tests' in-memory wire.
pub trait StreamSocket {
    /// Written bytes unacknowledged this long close the connection (ETIMEDOUT).
    fn set_user_timeout(&self, timeout: Duration) -> io::Result<()>;
    /// The socket's pending error, cleared by the asking.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
}

impl StreamSocket for mio::net::TcpStream {
    #[cfg(target_os = "linux")]
    fn set_user_timeout(&self, timeout: Duration) -> io::Result<()> {
        // Milliseconds as a non-negative int (the kernel refuses others); 0
        // would mean the system default, so at least 1.
        let ms = libc::c_int::try_from(timeout.as_millis())
            .unwrap_or(libc::c_int::MAX)
            .max(1);
        set_int_option(self, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
    }

    /// Elsewhere there is no such option: a vanished reader is dropped when
    /// the kernel gives up on it.
    #[cfg(not(target_os = "linux"))]
    fn set_user_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }
}

/// When a stream starts: its socket gives up on an unacknowledged write after
/// WS_IDLE_TIMEOUT. A failure only leaves the kernel's own (longer) timeout, so
/// the stream is served anyway; logged once, as every stream would fail alike.
pub fn watch<S: StreamSocket>(stream: &S, ctx: &Context) {
    if let Err(e) = stream.set_user_timeout(ctx.cfg.idle_timeout) {
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| log::warn!("sse: cannot set TCP_USER_TIMEOUT on streams: {e}"));
    }
}

/// A stream's socket readable or failed: a write the kernel gave up on
/// (ETIMEDOUT) is counted as a slow consumer and the stream dropped; any other
/// error drops it too; otherwise sse_conn reads it.
pub fn on_readable<S: Read + StreamSocket>(conn: &mut Conn<S>, ctx: &Context, out: &mut Effects) {
    match conn.stream.take_error() {
        Ok(None) => sse_conn::on_readable(conn, out),
        Ok(Some(e)) => {
            if e.raw_os_error() == Some(libc::ETIMEDOUT) {
                ctx.shared
                    .metrics
                    .slow_consumer_closes
                    .fetch_add(1, Relaxed);
            }
            out.push(Effect::Remove);
        }
        Err(_) => out.push(Effect::Remove),
    }
}

#[cfg(test)]
impl StreamSocket for super::testing::Wire {
    fn set_user_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::accounting::SocketCount;
    use crate::reactor::conn::State;
    use crate::reactor::http_conn;
    use crate::reactor::testing::test_context;

    /// A connected loopback pair: the server's side (as the acceptor has it)
    /// and the client's.
    fn loopback() -> (mio::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Non-blocking, as the acceptor's sockets are.
        server.set_nonblocking(true).unwrap();
        (mio::net::TcpStream::from_std(server), client)
    }

    #[cfg(target_os = "linux")]
    fn user_timeout_ms(stream: &mio::net::TcpStream) -> libc::c_int {
        let mut ms: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a correctly sized value on a socket we own.
        let rc = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(stream),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                &mut ms as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        ms
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_watched_socket_gives_up_after_the_idle_timeout() {
        let ctx = test_context(&[("WS_PING_INTERVAL", "2s"), ("WS_IDLE_TIMEOUT", "7s")]);
        let (server, _client) = loopback();
        assert_eq!(user_timeout_ms(&server), 0, "the kernel's default");
        watch(&server, &ctx);
        assert_eq!(user_timeout_ms(&server), 7_000);
        // Longer than the option holds: the longest it can be.
        server
            .set_user_timeout(Duration::from_secs(u64::MAX / 2))
            .unwrap();
        assert_eq!(user_timeout_ms(&server), libc::c_int::MAX);
    }

    /// A fresh connection over a real socket, counted in as the worker would.
    fn socket_conn(ctx: &Context, server: mio::net::TcpStream) -> Conn<mio::net::TcpStream> {
        SocketCount::hand_off(&ctx.shared, 0);
        let count = SocketCount::take_over(&ctx.shared, 0);
        Conn::new(server, count, ctx.now, ctx.cfg.handshake_timeout)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_stream_is_watched_when_it_starts_and_a_websocket_is_not() {
        use std::io::Write;
        let ctx = test_context(&[("WS_PING_INTERVAL", "2s"), ("WS_IDLE_TIMEOUT", "7s")]);
        let requests = [
            (
                "GET /sse?channels=a HTTP/1.1\r\nHost: t\r\n\r\n".as_bytes(),
                7_000,
            ),
            (&crate::reactor::testing::upgrade_request("/ws", ""), 0),
        ];
        for (request, want) in requests {
            let (server, mut client) = loopback();
            client.write_all(request).unwrap();
            let mut conn = socket_conn(&ctx, server);
            let mut out = Effects::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(conn.state, State::Http(_)) && std::time::Instant::now() < deadline {
                http_conn::on_readable(&mut conn, &ctx, &mut out);
                std::thread::yield_now();
            }
            assert!(matches!(conn.state, State::Sse(_) | State::Ws(_)), "opened");
            assert_eq!(user_timeout_ms(&conn.stream), want);
        }
    }

    #[test]
    fn a_reset_stream_is_dropped_and_a_quiet_one_kept() {
        let ctx = test_context(&[]);
        let (server, client) = loopback();
        let mut conn = socket_conn(&ctx, server);
        let mut out = Effects::new();
        on_readable(&mut conn, &ctx, &mut out);
        assert!(out.is_empty(), "nothing to read, no error: kept");
        // SO_LINGER 0: the close is a RST, so the socket holds ECONNRESET.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on the test's own socket, with a correctly sized value.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&client),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        drop(client);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.is_empty() && std::time::Instant::now() < deadline {
            on_readable(&mut conn, &ctx, &mut out);
            std::thread::yield_now();
        }
        assert_eq!(out, [Effect::Remove]);
        let metrics = &ctx.shared.metrics;
        assert_eq!(
            metrics.slow_consumer_closes.load(Relaxed),
            0,
            "a reset is no timeout"
        );
    }
}
