//! odin-ws-load: opens many WebSocket (or SSE) clients against odin-ws (or a peer server),
//! holds them, and reports connects, deliveries and latency; `publish` is the
//! matching publisher, `subscribe` one client that prints what it receives, and
//! `verdict` judges a run. Settings: `odin-ws-load --help`.
//!
//! One reactor thread drives every client (plus one thread sampling /health), so
//! the server under test keeps the machine's other CPU.

mod client;
mod driver;
mod head;
mod health;
mod help;
mod inflate;
mod market;
mod net;
mod publish;
mod ratio;
mod report;
mod resume;
mod scan;
mod settings;
mod sse;
mod stats;
mod subscribe;
mod verdict;
mod wsframe;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use settings::{LoadSettings, PublishSettings, Source};

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

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some(m @ ("publish" | "subscribe" | "verdict" | "ratio")) => m.to_string(),
        _ => String::new(),
    };
    if !mode.is_empty() {
        args.remove(0);
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        match mode.as_str() {
            "subscribe" => println!("{}", help::SUBSCRIBE_USAGE),
            "ratio" => println!("{}", ratio::USAGE),
            _ => print!("{}", help::text()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    match mode.as_str() {
        "subscribe" => {
            let parsed = subscribe::Args::parse(&args)
                .map_err(|e| format!("{e}\n{}", help::SUBSCRIBE_USAGE))?;
            install_signal_handlers();
            subscribe::run(&parsed, &STOP)?;
            Ok(ExitCode::SUCCESS)
        }
        "verdict" => verdict(&args),
        "ratio" => {
            let parsed = ratio::Args::parse(&args).map_err(|e| format!("{e}\n{}", ratio::USAGE))?;
            println!("{}", ratio::run(&parsed));
            Ok(ExitCode::SUCCESS)
        }
        "publish" => {
            let settings = PublishSettings::read(&Source::from_process(&args)?)?;
            install_signal_handlers();
            let result = publish::run(&settings, &STOP)?;
            println!("{result}");
            let ok = result["failed"] == 0
                && result["failures"].as_object().is_some_and(|f| f.is_empty());
            Ok(exit_code(ok))
        }
        _ => load_run(&args),
    }
}

fn verdict(args: &[String]) -> Result<ExitCode, String> {
    let Some((load, publishers)) = args.split_first() else {
        return Err("usage: odin-ws-load verdict LOAD.json [PUBLISH.json...]".into());
    };
    let publishers: Vec<_> = publishers.iter().map(|p| verdict::read_report(p)).collect();
    let reasons = verdict::reasons(&verdict::read_report(load), &publishers);
    println!("{}", verdict::line(&reasons));
    Ok(exit_code(reasons.is_empty()))
}

fn load_run(args: &[String]) -> Result<ExitCode, String> {
    let settings = LoadSettings::read(&Source::from_process(args)?)?;
    install_signal_handlers();
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
    let mut progress = report::Progress::new(start);
    let on_ready = |stats: &stats::Stats| {
        // Scripts wait for this line before they start publishing.
        eprintln!(
            "ready: attempted {} succeeded {} failed {} subscribed {} after {:.1}s",
            stats.attempted,
            stats.succeeded,
            stats.failed,
            stats.subscribed,
            start.elapsed().as_secs_f64()
        );
    };
    let on_progress = |stats: &stats::Stats, now: Instant| {
        eprintln!("{}", progress.line(stats, settings.target, now));
    };
    let outcome = driver::run(&settings, &STOP, on_ready, on_progress)
        .map_err(|e| format!("reactor: {e}"))?;
    let samples = sampler.map(health::Sampler::finish).unwrap_or_default();
    eprint!("{}", report::human(&settings, &outcome, &samples));
    println!("{}", report::json_line(&settings, &outcome, &samples));
    Ok(ExitCode::SUCCESS)
}
