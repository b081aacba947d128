//! The compose file, the Dockerfile, the systemd unit, the env profiles,
//! nats.conf, and the resolver with the nats crate.

use std::path::Path;
use std::process::Command;

use crate::image::image;
use crate::support::*;

#[test]
fn compose_file_is_valid() {
    let compose = |args: &[&str], env: &[(&str, &Path)]| {
        let out = Command::new("docker-compose")
            .current_dir(ROOT)
            .args(["-f", "docker/docker-compose.yml"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| {
                panic!("docker-compose: {e} (Debian's docker-compose package; scripts/test installs it)")
            });
        assert!(
            out.status.success(),
            "docker-compose {args:?}:\n{}",
            text(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = compose(&["config"], &[]);
    for want in [
        "  nats:",
        "  odin-ws:",
        "target: 3002",
        "stop_grace_period: 45s",
    ] {
        assert!(plain.contains(want), "no {want:?} in\n{plain}");
    }
    let demo = compose(&["--profile", "demo", "config"], &[]);
    let publisher = demo
        .split("  demo-publisher:")
        .nth(1)
        .expect("a demo publisher");
    assert!(publisher.contains("profiles:\n    - demo"), "{demo}");

    // The container's environment (production.env, then `environment:`) is a
    // configuration odin-ws accepts.
    let odin = plain.split("\n  odin-ws:\n").nth(1).unwrap();
    let env_block = odin.split("    environment:\n").nth(1).unwrap();
    let vars: Vec<(String, String)> = env_block
        .lines()
        .map_while(|l| l.strip_prefix("      "))
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.trim_matches('\'').to_string())
        })
        .collect();
    assert!(
        vars.contains(&("ENVIRONMENT".into(), "production".into())),
        "{vars:?}"
    );
    assert!(
        vars.contains(&("NATS_URL".into(), "nats://nats:4222".into())),
        "{vars:?}"
    );
    let checked = run(Command::new(DEV_BIN).env_clear().envs(vars).args([
        "--check-config",
        "--env-file",
        "/dev/null",
    ]));
    assert!(checked.status.success(), "{}", text(&checked));

    // The override scripts/deploy adds in compose mode.
    let dir = scratch("compose-release");
    std::fs::create_dir_all(dir.join("current")).unwrap();
    std::fs::write(dir.join("current/odin-ws.env"), "LOG_LEVEL=info\n").unwrap();
    let release = compose(
        &["-f", "docker/docker-compose.release.yml", "config"],
        &[("ODIN_WS_DIR", &dir)],
    );
    let mount = format!("{}/current/odin-ws", dir.display());
    assert!(release.contains(&mount), "no {mount} in\n{release}");
}

#[test]
fn dockerfile_runs_the_tested_script_and_ships_its_tree() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/docker/Dockerfile")).unwrap();
    // Instructions with continuation lines joined.
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let runs: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("RUN "))
        .copied()
        .collect();
    assert_eq!(
        runs,
        ["RUN scripts/image-rootfs /rootfs"],
        "the build stage is the tested script"
    );
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let runtime = &lines[last_from..];
    assert_eq!(runtime[0], "FROM scratch");
    assert!(runtime.contains(&"COPY --from=build /rootfs/ /"));
    assert!(
        runtime.contains(&format!("USER {IMAGE_USER}").as_str()),
        "non-root"
    );
    assert!(runtime.contains(&"EXPOSE 3002"));
    let health = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .unwrap();
    assert!(
        health.ends_with("CMD [\"/usr/local/bin/odin-ws\", \"--healthcheck\"]"),
        "exec form, no shell: {health}"
    );
    assert!(runtime.contains(&"ENTRYPOINT [\"/usr/local/bin/odin-ws\"]"));

    // The paths it names exist in the tree scripts/image-rootfs made.
    let img = image();
    assert!(img.rootfs.join("usr/local/bin/odin-ws").is_file());
    let passwd = std::fs::read_to_string(img.rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains(&format!("odin-ws:x:{IMAGE_USER}:")),
        "{passwd}"
    );
}

/// WS_SHUTDOWN_GRACE of an env profile (default 30s), in seconds.
fn shutdown_grace(profile: &str) -> u64 {
    let text = std::fs::read_to_string(format!("{ROOT}/config/{profile}")).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("WS_SHUTDOWN_GRACE="))
        .unwrap_or("30s");
    odin_ws::config::parse_duration(value).unwrap().as_secs()
}

#[test]
fn systemd_unit_outlasts_the_drain_and_holds_100k_sockets() {
    let unit = std::fs::read_to_string(format!("{ROOT}/config/odin-ws.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
    };
    // The server exits by grace + 3 s; systemd must not kill the drain.
    let grace = shutdown_grace("production.env").max(shutdown_grace("staging.env"));
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > grace + 3,
        "TimeoutStopSec={stop} <= WS_SHUTDOWN_GRACE {grace}s + 3 s"
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert_eq!(value("Restart"), "always");
    let nofile: u64 = value("LimitNOFILE").parse().unwrap();
    assert!(
        nofile >= 110_000,
        "LimitNOFILE={nofile} for 100k sockets plus headroom"
    );
    assert!(value("ExecStartPre").contains("--check-config"));

    // The compose file gives the container the same stop window.
    let compose = std::fs::read_to_string(format!("{ROOT}/docker/docker-compose.yml")).unwrap();
    let window = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period: "))
        .unwrap();
    assert!(odin_ws::config::parse_duration(window).unwrap().as_secs() > grace + 3);

    // systemd's own check, where systemd is installed, on a copy pointing at a
    // real release directory.
    let Ok(analyze) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: structural checks only");
        return;
    };
    assert!(analyze.status.success());
    let dir = scratch("systemd");
    std::fs::create_dir_all(dir.join("current")).unwrap();
    std::fs::copy(DEV_BIN, dir.join("current/odin-ws")).unwrap();
    let copy = dir.join("odin-ws.service");
    std::fs::write(
        &copy,
        unit.replace("/opt/odin-ws", &dir.display().to_string()),
    )
    .unwrap();
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        verify.status.success(),
        "systemd-analyze verify:\n{}",
        text(&verify)
    );
}

#[test]
fn env_profiles_pass_check_config() {
    let check = |profile: &str, backend: Option<&str>| {
        let mut cmd = Command::new(DEV_BIN);
        cmd.env_clear()
            .args(["--check-config", "--env-file"])
            .arg(format!("{ROOT}/config/{profile}"));
        if let Some(ip) = backend {
            cmd.env("BACKEND_INTERNAL_IP", ip);
        }
        run(&mut cmd)
    };
    for profile in ["production.env", "staging.env"] {
        let out = check(profile, Some("10.0.0.12"));
        let table = text(&out);
        assert!(out.status.success(), "{profile}:\n{table}");
        assert!(table.contains("nats://10.0.0.12:4222"), "{table}");
        let env = profile.trim_end_matches(".env");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("ENVIRONMENT") && l.contains(env))
        );
        // BACKEND_INTERNAL_IP comes from the host (host.env): without it, refused.
        assert_eq!(check(profile, None).status.code(), Some(1), "{profile}");
    }
    let staging = text(&check("staging.env", Some("10.0.0.12")));
    assert!(
        staging
            .lines()
            .any(|l| l.starts_with("LOG_FORMAT") && l.contains("json"))
    );
}

#[test]
fn nats_conf_enables_jetstream() {
    let conf = std::fs::read_to_string(format!("{ROOT}/config/nats.conf")).unwrap();
    let tested = run(Command::new("nats-server")
        .args(["-t", "-c"])
        .arg(format!("{ROOT}/config/nats.conf")));
    assert!(tested.status.success(), "{}", text(&tested));
    // The same file with its store and monitor port moved for this machine.
    let dir = scratch("nats-conf");
    assert!(conf.contains("store_dir: \"/data\"") && conf.contains("http_port: 8222"));
    let local = conf
        .replace(
            "store_dir: \"/data\"",
            &format!("store_dir: \"{}\"", dir.display()),
        )
        .replace("http_port: 8222", "http_port: -1");
    std::fs::write(dir.join("nats.conf"), local).unwrap();
    let (_nats, port) = nats_server(&["-c", &dir.join("nats.conf").display().to_string()]);
    let nc = nats::connect(format!("nats://127.0.0.1:{port}")).unwrap();
    let js = nats::jetstream::new(nc);
    let info = js.account_info().expect("JetStream is enabled");
    assert!(info.limits.max_memory != 0, "{info:?}");
    assert!(dir.join("jetstream").is_dir());
}

#[test]
fn resolved_nats_url_connects_the_nats_crate() {
    let (_nats, port) = nats_server(&[]);
    let resolver = odin_ws::resolve::Resolver::new(
        "127.0.0.1 nats-1.internal nats-1\n",
        odin_ws::resolve::ResolvConf {
            nameservers: Vec::new(),
            ..Default::default()
        },
    );
    let servers = resolver.nats_urls(&[format!("nats://nats-1:{port}")]);
    assert_eq!(servers.url_list(), format!("nats://127.0.0.1:{port}"));
    assert_eq!(servers.to_string(), "nats-1 -> 127.0.0.1");
    let nc = nats::Options::new()
        .connect(servers.url_list().as_str())
        .expect("the nats crate connects to the resolved list");
    let sub = nc.subscribe("odin.resolve.check").unwrap();
    nc.publish("odin.resolve.check", "ok").unwrap();
    let msg = sub.next_timeout(DEADLINE).unwrap();
    assert_eq!(msg.data, b"ok");
}
