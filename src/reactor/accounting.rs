//! Connection counts held by values: a socket or a WebSocket slot is counted in
//! when its guard is made and out when the guard is dropped, so no path that
//! closes, refuses or loses a connection can forget one.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::Reject;
use crate::shared::Shared;

/// A client socket a worker owns: `metrics.sockets` and the worker's `load`, and
/// `live_ws` once it is a WebSocket (closing ones too; the drain waits for zero).
pub struct SocketCount {
    shared: Arc<Shared>,
    worker: usize,
    websocket: bool,
}

impl SocketCount {
    /// Counts a socket in as the acceptor puts it in `worker`'s inbox. The inbox
    /// holds bare streams (`WorkerHandle::inbox`), so the guard for this count is
    /// made by `take_over` when the worker takes the socket out, before anything
    /// can fail.
    pub fn hand_off(shared: &Shared, worker: usize) {
        shared.workers[worker].load.fetch_add(1, Relaxed);
        shared.metrics.sockets.fetch_add(1, Relaxed);
    }

    /// The guard for a socket counted in by `hand_off`.
    pub fn take_over(shared: &Arc<Shared>, worker: usize) -> SocketCount {
        SocketCount {
            shared: Arc::clone(shared),
            worker,
            websocket: false,
        }
    }

    /// The socket has become a WebSocket: it counts in `live_ws` until it is closed.
    pub fn count_websocket(&mut self) {
        if !self.websocket {
            self.websocket = true;
            self.shared.live_ws.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for SocketCount {
    fn drop(&mut self) {
        if self.websocket {
            self.shared.live_ws.fetch_sub(1, Relaxed);
        }
        self.shared.metrics.sockets.fetch_sub(1, Relaxed);
        self.shared.workers[self.worker].load.fetch_sub(1, Relaxed);
    }
}

/// One of WS_MAX_CONNECTIONS (`metrics.connections`), held by an open WebSocket;
/// a closing one has given it back.
pub struct WsSlot {
    shared: Arc<Shared>,
}

impl WsSlot {
    /// Claims a slot, or counts the refusal. Two workers may race for the last
    /// one, so the slot is taken first and given back when it was over the limit.
    pub fn claim(shared: &Arc<Shared>, max_connections: usize) -> Option<WsSlot> {
        let metrics = &shared.metrics;
        let slot = WsSlot {
            shared: Arc::clone(shared),
        };
        if metrics.connections.fetch_add(1, Relaxed) >= max_connections as u64 {
            drop(slot);
            metrics.reject(Reject::MaxConnections);
            return None;
        }
        metrics.accepted.fetch_add(1, Relaxed);
        Some(slot)
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.shared.metrics.connections.fetch_sub(1, Relaxed);
    }
}

/// An open SSE stream in `metrics.sse_clients`; made once per stream, so it also
/// counts `metrics.sse_connections`.
pub struct SseClient {
    shared: Arc<Shared>,
}

impl SseClient {
    pub fn count(shared: &Arc<Shared>) -> SseClient {
        shared.metrics.sse_clients.fetch_add(1, Relaxed);
        shared.metrics.sse_connections.fetch_add(1, Relaxed);
        SseClient {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.shared.metrics.sse_clients.fetch_sub(1, Relaxed);
    }
}

/// Counts a connection that negotiated permessage-deflate in
/// `odin_ws_compressing_connections` while it lives.
pub struct CompressingCount {
    shared: Arc<Shared>,
}

impl CompressingCount {
    pub fn new(shared: &Arc<Shared>) -> CompressingCount {
        shared.metrics.compressing_connections.fetch_add(1, Relaxed);
        CompressingCount {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for CompressingCount {
    fn drop(&mut self) {
        let gauge = &self.shared.metrics.compressing_connections;
        gauge.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::testing::test_shared;

    #[test]
    fn a_socket_is_counted_out_however_it_goes() {
        let shared = test_shared(&[]);
        let load = || shared.workers[0].load.load(Relaxed);
        SocketCount::hand_off(&shared, 0);
        let mut count = SocketCount::take_over(&shared, 0);
        assert_eq!((shared.metrics.sockets.load(Relaxed), load()), (1, 1));
        count.count_websocket();
        count.count_websocket();
        assert_eq!(shared.live_ws.load(Relaxed), 1);
        drop(count);
        assert_eq!((shared.metrics.sockets.load(Relaxed), load()), (0, 0));
        assert_eq!(shared.live_ws.load(Relaxed), 0);
    }

    #[test]
    fn the_slot_over_the_limit_is_given_back_and_counted_as_refused() {
        let shared = test_shared(&[]);
        let first = WsSlot::claim(&shared, 1).expect("one slot free");
        assert!(WsSlot::claim(&shared, 1).is_none());
        let m = &shared.metrics;
        assert_eq!(m.connections.load(Relaxed), 1);
        assert_eq!(m.accepted.load(Relaxed), 1);
        assert_eq!(m.rejected(Reject::MaxConnections), 1);
        drop(first);
        assert_eq!(m.connections.load(Relaxed), 0);
    }
}
