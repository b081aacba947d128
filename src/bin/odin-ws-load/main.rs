//! odin-ws-load: opens many WebSocket clients against odin-ws (or a peer server),
//! holds them, and reports connects, deliveries and latency; `odin-ws-load publish`
//! is the matching publisher. Settings: README "Load testing and benchmarks".
//!
//! One reactor thread drives every client (plus one thread sampling /health), so
//! the server under test keeps the machine's other CPU.

mod client;
mod driver;
mod health;
mod net;
mod publish;
mod report;
mod scan;
mod settings;
mod stats;
mod wsframe;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use settings::{LoadSettings, PublishSettings, Source};

const USAGE: &str = "usage: odin-ws-load [--name value ...]          run clients (settings: README)
       odin-ws-load publish [--name value ...]  publish timestamped messages
Every setting also reads from the environment variable of the same name in upper case.";

/// Set by SIGINT/SIGTERM: stop early and still report.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("odin-ws-load: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let publish_mode = args.first().is_some_and(|a| a == "publish");
    if publish_mode {
        args.remove(0);
    }
    let source = Source::from_process(&args)?;
    install_signal_handlers();
    if publish_mode {
        let settings = PublishSettings::read(&source)?;
        let result = publish::run(&settings, &STOP)?;
        println!("{result}");
        let ok =
            result["failed"] == 0 && result["failures"].as_object().is_some_and(|f| f.is_empty());
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let settings = LoadSettings::read(&source)?;
    let nofile = net::raise_nofile_limit();
    if u64::from(settings.target) + 64 > nofile {
        eprintln!(
            "odin-ws-load: warning: {} connections but only {nofile} open files allowed; run more processes",
            settings.target
        );
    }
    let start = Instant::now();
    let sampler = settings
        .health
        .clone()
        .map(|(addr, path)| health::Sampler::start(addr, path, settings.health_interval, start));
    let outcome = driver::run(&settings, &STOP, |stats| {
        // Scripts wait for this line before they start publishing.
        eprintln!(
            "ready: attempted {} succeeded {} failed {} subscribed {} after {:.1}s",
            stats.attempted,
            stats.succeeded,
            stats.failed,
            stats.subscribed,
            start.elapsed().as_secs_f64()
        );
    })
    .map_err(|e| format!("reactor: {e}"))?;
    let samples = sampler.map(health::Sampler::finish).unwrap_or_default();
    eprint!("{}", report::human(&settings, &outcome, &samples));
    println!("{}", report::json_line(&settings, &outcome, &samples));
    Ok(ExitCode::SUCCESS)
}
