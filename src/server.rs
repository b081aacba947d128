//! Starts the threads (workers, acceptor, monitor) and runs the main thread's
//! signal loop: drain on SIGTERM/SIGINT, reload on SIGHUP.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::config::Config;
use crate::logging::plural;
use crate::reactor::{Acceptor, WAKE_TOKEN, Worker, bind};
use crate::shared::{Shared, WorkerHandle};
use crate::{intake, logging, monitor, publish_queue, sysinfo};

/// Time past the grace period for the last close frames to be written.
const DRAIN_SLACK: Duration = Duration::from_secs(3);

pub struct Options {
    /// The env file named on the command line, re-read on SIGHUP.
    pub env_file: Option<PathBuf>,
}

/// Binds WS_ADDR; the error names the address and the reason (e.g. in use).
pub fn listen(config: &Config) -> Result<TcpListener, String> {
    bind(config.ws_addr).map_err(|e| format!("cannot listen on {}: {e}", config.ws_addr))
}

pub fn run(config: Config, listener: TcpListener, options: Options) -> Result<(), String> {
    let signals = block_signals();
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    let mut polls = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..config.worker_pool_size {
        let poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN).map_err(|e| e.to_string())?;
        polls.push(poll);
        handles.push(WorkerHandle {
            waker,
            inbox: Mutex::new(Vec::new()),
            load: Default::default(),
            queued_bytes: Default::default(),
            ring_lag: Default::default(),
            write_hold_us: Default::default(),
        });
    }
    let shared = Arc::new(Shared::new(config, handles, sysinfo::hostname()));
    for (id, poll) in polls.into_iter().enumerate() {
        let worker = Worker::new(id, poll, Arc::clone(&shared));
        spawn(&format!("worker-{id}"), move || worker.run())?;
    }
    let acceptor = Acceptor::new(listener, Arc::clone(&shared)).map_err(|e| e.to_string())?;
    spawn("acceptor", move || acceptor.run())?;
    let monitor_shared = Arc::clone(&shared);
    spawn("monitor", move || monitor::run(&monitor_shared))?;
    intake::start(Arc::clone(&shared))?;
    publish_queue::start(Arc::clone(&shared))?;

    let cfg = shared.config();
    log::info!(
        "odin-ws {} listening on {local} (path {}, {}, nats {}); {}; {}",
        env!("CARGO_PKG_VERSION"),
        cfg.ws_path,
        plural(cfg.worker_pool_size as u64, "worker", "workers"),
        shared.nats_state().as_str(),
        publish_state(&cfg),
        auth_state(&cfg)
    );
    signal_loop(&shared, &signals, &options);
    // JetStream acks wait in the client's buffer: send them before exiting, or the
    // next start is redelivered what clients already got.
    if let Some(conn) = shared.nats_conn.get() {
        flush_at_exit(conn.clone());
    }
    Ok(())
}

/// Flushes NATS for at most 2 s. The nats crate's flush_timeout waits without a
/// deadline while the server is gone (seen when nats-server stopped with us), so
/// the flush runs on a thread of its own and the exit does not wait past the bound.
#[allow(deprecated)] // the sync client, by design
fn flush_at_exit(conn: nats::Connection) {
    const BOUND: Duration = Duration::from_secs(2);
    let (done, finished) = std::sync::mpsc::channel();
    let flusher = spawn("nats-flush", move || {
        let _ = done.send(conn.flush_timeout(BOUND));
    });
    match flusher.map(|()| finished.recv_timeout(BOUND + Duration::from_millis(200))) {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => log::warn!("NATS flush at exit: {e}"),
        Ok(Err(_)) => log::warn!("NATS flush at exit: no answer within {BOUND:?}, exiting"),
        Err(e) => log::warn!("NATS flush at exit: {e}"),
    }
}

/// Whether POST /publish is on, who may use it, where it sends, and how to turn
/// it on.
fn publish_state(cfg: &Config) -> String {
    let who = match (&cfg.publish_token, &cfg.auth) {
        (None, None) => {
            return "POST /publish off (set WS_PUBLISH_TOKEN to turn it on)".into();
        }
        (Some(_), None) => "Bearer WS_PUBLISH_TOKEN",
        (None, Some(_)) => "Bearer JWT with a publish claim",
        (Some(_), Some(_)) => "Bearer WS_PUBLISH_TOKEN or a JWT with a publish claim",
    };
    let into = if cfg.nats_urls.is_empty() {
        "into this instance"
    } else {
        "through NATS"
    };
    format!("POST /publish on ({who}), {into}")
}

/// Whether connections need a token, and the kinds of key (never the keys).
fn auth_state(cfg: &Config) -> String {
    match &cfg.auth {
        None => "JWT authentication off".into(),
        Some(keys) => format!("JWT authentication on ({})", keys.describe()),
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

/// Blocks the signals we handle in every thread (threads inherit the mask), so
/// the main thread takes them synchronously with sigtimedwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

fn signal_loop(shared: &Shared, signals: &libc::sigset_t, options: &Options) {
    let mut drain_deadline: Option<Instant> = None;
    let mut next_stats = Instant::now() + shared.config().metrics_interval;
    loop {
        let tick = if drain_deadline.is_some() {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(500)
        };
        match wait_signal(signals, tick) {
            Some(libc::SIGHUP) => reload(shared, options),
            Some(sig) => {
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                if drain_deadline.is_some() {
                    log::warn!("second {name}: exiting now");
                    std::process::exit(1);
                }
                let grace = shared.config().shutdown_grace;
                log::info!(
                    "{name}: draining {} over {grace:?}; a second SIGINT/SIGTERM (Ctrl-C) exits at once",
                    plural(
                        shared.metrics.connections.load(Relaxed),
                        "connection",
                        "connections"
                    )
                );
                shared.start_drain();
                drain_deadline = Some(Instant::now() + grace + DRAIN_SLACK);
            }
            None => {}
        }
        if let Some(deadline) = drain_deadline {
            let left = shared.live_ws.load(Relaxed);
            if left == 0 || Instant::now() >= deadline {
                log::info!(
                    "drain finished ({} left), exiting",
                    plural(left as u64, "connection", "connections")
                );
                return;
            }
        }
        if Instant::now() >= next_stats {
            let cfg = shared.config();
            next_stats = Instant::now() + cfg.metrics_interval;
            log_stats(shared, &cfg);
        }
    }
}

fn log_stats(shared: &Shared, cfg: &Config) {
    let m = &shared.metrics;
    let mut fields = serde_json::Map::new();
    fields.insert("connections".into(), m.connections.load(Relaxed).into());
    fields.insert("broadcasts".into(), m.broadcasts.load(Relaxed).into());
    fields.insert("deliveries".into(), m.deliveries.load(Relaxed).into());
    fields.insert("cpu_percent".into(), m.cpu_percent().into());
    fields.insert("memory_bytes".into(), m.rss_bytes.load(Relaxed).into());
    fields.insert("nats".into(), shared.nats_state().as_str().into());
    logging::record(cfg.log_format, "stats", fields);
}

/// SIGHUP: re-read the env file; apply the reloadable settings, keep the rest.
fn reload(shared: &Shared, options: &Options) {
    let old = shared.config();
    let newer = match Config::load(options.env_file.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                log::error!("SIGHUP: {e}");
            }
            log::error!(
                "SIGHUP: configuration rejected ({}); keeping the running one",
                plural(errors.len() as u64, "error", "errors")
            );
            return;
        }
    };
    for setting in old.restart_diff(&newer) {
        log::warn!("SIGHUP: {setting} needs a restart; keeping the running value");
    }
    let changes = old.reloadable_diff(&newer);
    if changes.is_empty() {
        log::info!("SIGHUP: no reloadable setting changed");
        return;
    }
    let next = old.with_reloaded(&newer);
    logging::set_level(next.log_level);
    shared.set_config(next);
    for change in changes {
        log::info!("SIGHUP: {change}");
    }
}
