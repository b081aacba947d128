//! Shipping: the static binary and the image's file system (run chrooted, with
//! no shared library), `--healthcheck`, scripts/deploy with plain processes, and
//! the compose file, systemd unit, nats.conf and env profiles.
//!
//! The static build (scripts/image-rootfs, which runs scripts/build-static, as
//! the Dockerfile does) runs once per test run; cargo rebuilds only what changed.
#![allow(deprecated)] // the sync nats client, as in the server

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

/// Flip to true once the NATS intake connects to `odin_ws::resolve::nats_urls`
/// (its `url_list()`) and logs the result with `{}` ("natshost -> 127.0.0.1").
/// The chrooted static server must then log that, reach "nats":"connected" by
/// host name and deliver a message published on NATS.
const INTAKE_RESOLVES_NATS_NAMES: bool = false;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The dynamically linked debug build cargo made for the tests.
const DEV_BIN: &str = env!("CARGO_BIN_EXE_odin-ws");
/// The build id of DEV_BIN: this file is compiled with the same environment.
const DEV_BUILD: &str = match option_env!("ODIN_WS_BUILD") {
    Some(b) => b,
    None => "dev",
};
/// The image's user (scripts/image-rootfs, USER in docker/Dockerfile).
const IMAGE_USER: &str = "10001:10001";
const DEADLINE: Duration = Duration::from_secs(20);
const TOKEN: &str = "ship-token";

// ------------------------------------------------------------------ the build

struct Image {
    rootfs: PathBuf,
    /// The build id scripts/build-static gave the static binaries.
    build: String,
}

impl Image {
    fn static_bin(&self) -> PathBuf {
        Path::new(ROOT).join("target/static/odin-ws")
    }
}

/// Runs scripts/image-rootfs (and so scripts/build-static) once.
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let rootfs = scratch("image-rootfs");
        let out = run(Command::new(format!("{ROOT}/scripts/image-rootfs"))
            .arg(&rootfs)
            // The default build id (<version>+g<commit>), not one from the caller.
            .env_remove("ODIN_WS_BUILD")
            .env_remove("RUSTFLAGS"));
        assert!(
            out.status.success(),
            "scripts/image-rootfs failed:\n{}",
            text(&out)
        );
        let all = text(&out);
        let build = all
            .lines()
            .find_map(|l| l.strip_prefix("build-static: target/static/odin-ws "))
            .and_then(|l| l.rsplit(" build ").next())
            .unwrap_or_else(|| panic!("no build id in:\n{all}"))
            .trim()
            .to_string();
        Image { rootfs, build }
    })
}

#[test]
fn static_binary_has_no_dynamic_dependencies() {
    let img = image();
    for bin in ["odin-ws", "odin-ws-resolve"] {
        let path = img.rootfs.join("usr/local/bin").join(bin);
        let ldd = run(Command::new("ldd").arg(&path));
        let said = text(&ldd);
        assert!(
            said.contains("not a dynamic executable") || said.contains("statically linked"),
            "ldd {}: {said}",
            path.display()
        );
        assert!(
            !has_interpreter(&std::fs::read(&path).unwrap()),
            "{bin} names a loader"
        );
    }
    assert_ne!(
        img.build, DEV_BUILD,
        "the static build must be told apart in /health"
    );
}

/// Whether an ELF64 file has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "an ELF64 file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

// --------------------------------------------------- the image, chrooted, NATS

#[test]
fn image_serves_a_subscribed_client_with_nats_by_host_name() {
    let img = image();
    // The image's tree plus what Docker adds: /etc/hosts (with no localhost line,
    // which static glibc alone cannot then resolve) and /etc/resolv.conf.
    let root = scratch("chroot");
    let copied = run(Command::new("cp").arg("-a").arg(&img.rootfs).arg(&root));
    assert!(copied.status.success(), "{}", text(&copied));
    let root = root.join(img.rootfs.file_name().unwrap());
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 natshost\n").unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    assert!(!root.join("lib").exists() && !root.join("usr/lib").exists());

    let (_nats, nats_port) = nats_server(&[]);
    let url = format!("nats://natshost:{nats_port}");

    // The resolver inside the static binaries, with no libc resolver behind it.
    let resolved = run(chrooted(&root, "/usr/local/bin/odin-ws-resolve")
        .arg(format!("{url},nats://localhost:{nats_port}")));
    let said = text(&resolved);
    assert!(resolved.status.success(), "{said}");
    assert!(said.contains("natshost\t127.0.0.1\n"), "{said}");
    assert!(said.contains("localhost\t127.0.0.1 ::1\n"), "{said}");
    let servers = format!("servers\tnats://127.0.0.1:{nats_port},nats://[::1]:{nats_port}\n");
    assert!(said.contains(&servers), "{said}");

    let mut server = Proc::spawn(
        chrooted(&root, "/usr/local/bin/odin-ws").envs([
            ("WS_ADDR", "127.0.0.1:0"),
            ("NATS_URL", url.as_str()),
            ("WS_PUBLISH_TOKEN", TOKEN),
            ("WS_CPU_LIMIT", "64"),
            ("WS_SHUTDOWN_GRACE", "2s"),
            ("LOG_FORMAT", "text"),
        ]),
        "listening on ",
    );
    let port = listening_port(&server.ready);

    let health = get(port, "/health");
    assert_eq!(health.0, 200, "{}", health.1);
    let health: serde_json::Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(health["build"], img.build.as_str(), "{health}");

    let mut client = ws_client(port);
    subscribe(&mut client, &["odin.ship.>"]);
    if INTAKE_RESOLVES_NATS_NAMES {
        wait_for("/health nats connected", || {
            serde_json::from_str::<serde_json::Value>(&get(port, "/health").1).unwrap()["nats"]
                == "connected"
        });
        let log = server.log();
        assert!(log.contains("natshost -> 127.0.0.1"), "{log}");
        let nc = nats::connect(format!("nats://127.0.0.1:{nats_port}")).unwrap();
        nc.publish("odin.ship.from_nats", "{\"px\":1}").unwrap();
        nc.flush().unwrap();
        let msg = read_json(&mut client);
        assert_eq!(msg["channel"], "odin.ship.from_nats", "{msg}");
        assert_eq!(msg["data"]["px"], 1);
    }
    // POST /publish: local before the intake, through NATS after it (503 until
    // NATS is connected, hence the wait).
    wait_for("POST /publish accepted", || {
        publish(port, "odin.ship.from_http", "{\"px\":2}") == 202
    });
    let msg = read_json(&mut client);
    assert_eq!(msg["type"], "message", "{msg}");
    assert_eq!(msg["channel"], "odin.ship.from_http");
    assert_eq!(msg["data"]["px"], 2);

    // The image's HEALTHCHECK: the binary itself, inside the container.
    let addr = format!("127.0.0.1:{port}");
    let check = || {
        run(chrooted(&root, "/usr/local/bin/odin-ws")
            .arg("--healthcheck")
            .env("WS_ADDR", &addr))
        .status
        .code()
    };
    assert_eq!(check(), Some(0));
    drop(client);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0), "{}", server.log());
    assert_eq!(check(), Some(1));
}

// ------------------------------------------------------------- --healthcheck

#[test]
fn healthcheck_exits_0_when_healthy_and_1_otherwise() {
    let server = Proc::spawn(
        Command::new(DEV_BIN)
            .args(["--env-file", "/dev/null"])
            .envs([
                ("WS_ADDR", "127.0.0.1:0"),
                ("WS_CPU_LIMIT", "64"),
                ("WS_SHUTDOWN_GRACE", "30s"),
            ]),
        "listening on ",
    );
    let port = listening_port(&server.ready);
    let healthcheck = |ws_addr: &str| {
        run(Command::new(DEV_BIN)
            .args(["--env-file", "/dev/null", "--healthcheck"])
            .env("WS_ADDR", ws_addr))
        .status
        .code()
    };
    assert_eq!(healthcheck(&format!("127.0.0.1:{port}")), Some(0));
    assert_eq!(
        healthcheck(&format!(":{port}")),
        Some(0),
        ":port means 127.0.0.1"
    );

    // Draining: /health 503, so unhealthy. The first client of each worker is
    // closed at once, the others spread over the 30 s grace: they keep it draining.
    let _clients: Vec<Client> = (0..6).map(|_| ws_client(port)).collect();
    server.signal(libc::SIGTERM);
    wait_for("/health 503 while draining", || {
        get(port, "/health").0 == 503
    });
    assert_eq!(healthcheck(&format!("127.0.0.1:{port}")), Some(1));

    // Nothing listening.
    let closed = free_port();
    assert_eq!(healthcheck(&format!("127.0.0.1:{closed}")), Some(1));
}

// -------------------------------------------------------------- scripts/deploy

/// A deploy target directory with plain processes; the last release's process
/// is killed when the test ends.
struct Target {
    dir: PathBuf,
    port: u16,
    envs: PathBuf,
}

impl Target {
    fn new(name: &str) -> Target {
        let base = scratch(name);
        let envs = base.join("envs");
        std::fs::create_dir_all(&envs).unwrap();
        Target {
            dir: base.join("odin-ws"),
            port: free_port(),
            envs,
        }
    }

    /// An env file serving on this target's port (or `port`), plus `extra` lines.
    fn env_file(&self, name: &str, port: u16, extra: &str) -> PathBuf {
        let path = self.envs.join(name);
        let body = format!(
            "WS_ADDR=127.0.0.1:{port}\nWS_CPU_LIMIT=64\nWS_SHUTDOWN_GRACE=2s\nLOG_FORMAT=text\n{extra}"
        );
        std::fs::write(&path, body).unwrap();
        path
    }

    fn good_env(&self) -> PathBuf {
        self.env_file("good.env", self.port, "")
    }

    fn deploy(&self, args: &[&str]) -> Output {
        self.deploy_with(Command::new(format!("{ROOT}/scripts/deploy")).args(args))
    }

    fn deploy_with(&self, cmd: &mut Command) -> Output {
        run(cmd
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--restart",
                "process",
                "--timeout",
                "15",
                "--stop-timeout",
                "15",
            ])
            .arg("--host-env")
            .arg(self.envs.join("absent")))
    }

    fn ship(&self, binary: &Path, env: &Path) -> Output {
        self.deploy_with(
            Command::new(format!("{ROOT}/scripts/deploy"))
                .arg(binary)
                .arg(env),
        )
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("odin-ws.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn link(&self, name: &str) -> PathBuf {
        std::fs::read_link(self.dir.join(name)).unwrap()
    }

    fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// /health, which must answer 200.
    fn health(&self) -> serde_json::Value {
        let (status, body) = get(self.port, "/health");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("odin-ws.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: the pid of the server this test deployed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "deploy:\n{}", text(out));
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn deploy_goes_live_and_rolls_back_by_hand() {
    let img = image();
    let t = Target::new("deploy-live");
    let env = t.good_env();

    assert_exit(&t.ship(Path::new(DEV_BIN), &env), 0);
    let first = t.link("current");
    let first_pid = t.pid();
    assert_eq!(t.health()["build"], DEV_BUILD);

    // The static build replaces the dev build: a new process, the new build.
    let out = t.ship(&img.static_bin(), &env);
    assert_exit(&out, 0);
    let second = t.link("current");
    assert_ne!(second, first);
    assert_eq!(t.link("previous"), first);
    assert_ne!(t.pid(), first_pid);
    assert!(!alive(first_pid), "the old process was stopped");
    let health = t.health();
    assert_eq!(health["build"], img.build.as_str(), "{health}");
    assert_eq!(health["status"], "ok");
    let release_txt = std::fs::read_to_string(t.dir.join(&second).join("release.txt")).unwrap();
    assert!(
        release_txt.contains("version odin-ws 0.1.0"),
        "{release_txt}"
    );

    // --rollback: back to the first release, and the links swap.
    assert_exit(&t.deploy(&["--rollback"]), 0);
    assert_eq!(t.link("current"), first);
    assert_eq!(t.link("previous"), second);
    assert_eq!(t.health()["build"], DEV_BUILD);
}

#[test]
fn deploy_refuses_a_bad_config_before_stopping_anything() {
    let t = Target::new("deploy-refused");
    assert_exit(&t.ship(Path::new(DEV_BIN), &t.good_env()), 0);
    let (current, pid, releases) = (t.link("current"), t.pid(), t.releases());

    let bad = t.env_file("bad.env", t.port, "WS_CPU_REJECT_THRESHOLD=150\n");
    let out = t.ship(Path::new(DEV_BIN), &bad);
    assert_exit(&out, 3);
    assert!(text(&out).contains("WS_CPU_REJECT_THRESHOLD must be 0-100, got 150"));
    assert_eq!(t.pid(), pid);
    assert!(alive(pid), "the running release was not stopped");
    assert_eq!(t.link("current"), current);
    assert_eq!(t.releases(), releases, "the refused release was not kept");
    assert_eq!(t.health()["status"], "ok");
}

#[test]
fn deploy_rolls_back_a_release_that_fails_its_health_check() {
    let img = image();
    let t = Target::new("deploy-rollback");
    assert_exit(&t.ship(&img.static_bin(), &t.good_env()), 0);
    let good = t.link("current");
    let good_pid = t.pid();

    // A valid configuration whose port is taken: the new process starts, cannot
    // listen, and never answers /health.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = t.env_file("busy.env", taken.local_addr().unwrap().port(), "");
    let out = t.ship(Path::new(DEV_BIN), &busy);
    assert_exit(&out, 4);
    assert!(text(&out).contains("rolled back"), "{}", text(&out));

    assert_eq!(t.link("current"), good);
    assert_ne!(t.pid(), good_pid, "the old release was restarted");
    let health = t.health();
    assert_eq!(
        health["build"],
        img.build.as_str(),
        "the old release serves: {health}"
    );
    assert!(
        t.releases().iter().any(|r| r.ends_with(".failed")),
        "{:?}",
        t.releases()
    );
}

#[test]
fn deploy_over_ssh_runs_the_same_steps() {
    // ssh stand-in: options, then HOST, then the command for the remote shell.
    let t = Target::new("deploy-ssh");
    let fake = t.envs.join("fake-ssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\nwhile [ \"$1\" = -o ]; do shift 2; done\necho \"$1\" >>\"$0.hosts\"\nshift\nexec sh -c \"$*\"\n",
    )
    .unwrap();
    let made = run(Command::new("chmod").arg("+x").arg(&fake));
    assert!(made.status.success());
    let out = t.deploy_with(
        Command::new(format!("{ROOT}/scripts/deploy"))
            .env("SSH", format!("{} -o BatchMode=yes", fake.display()))
            .args(["--host", "deploy@vm-1"])
            .arg(DEV_BIN)
            .arg(t.good_env()),
    );
    assert_exit(&out, 0);
    let hosts = std::fs::read_to_string(format!("{}.hosts", fake.display())).unwrap();
    assert!(
        hosts.lines().count() >= 3 && hosts.lines().all(|h| h == "deploy@vm-1"),
        "{hosts}"
    );
    assert_eq!(t.health()["status"], "ok");
}

// ------------------------------------------------- compose, systemd, configs

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

// ------------------------------------------------------------------- helpers

/// An empty directory under cargo's temporary directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("shipping")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `program` inside `root` with an empty environment, as the image's user when
/// we are root, else as root of a user namespace.
fn chrooted(root: &Path, program: &str) -> Command {
    // SAFETY: geteuid only reads the process's credentials.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={IMAGE_USER}"));
        c
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user", "chroot"]);
        c
    };
    cmd.arg(root).arg(program).env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child whose stdout and stderr are collected; killed when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    /// The first line containing the ready pattern.
    ready: String,
}

impl Proc {
    fn spawn(cmd: &mut Command, ready: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let (log, tx, ready) = (Arc::clone(&log), tx.clone(), ready.to_string());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains(&ready) {
                        let _ = tx.send(line.clone());
                    }
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let ready = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{cmd:?} did not log {ready:?}:\n{}", log.lock().unwrap()));
        Proc { child, log, ready }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.log());
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in "... listening on 127.0.0.1:PORT (...".
fn listening_port(line: &str) -> u16 {
    let addr = line.split("listening on ").nth(1).unwrap();
    let addr = addr.split(' ').next().unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// nats-server on a random port of 127.0.0.1, with `args`.
fn nats_server(args: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new("nats-server");
    cmd.args(args).args(["-a", "127.0.0.1", "-p", "-1"]);
    let nats = Proc::spawn(&mut cmd, "Listening for client connections on ");
    let port = nats
        .ready
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (nats, port)
}

fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

fn publish(port: u16, channel: &str, data: &str) -> u16 {
    let body = format!("{{\"channel\":\"{channel}\",\"data\":{data}}}");
    http(
        port,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .0
}

type Client = tungstenite::WebSocket<MaybeTlsStream<TcpStream>>;

/// A client that has read its welcome frame.
fn ws_client(port: u16) -> Client {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    assert_eq!(read_json(&mut ws)["type"], "welcome");
    ws
}

fn read_json(c: &mut Client) -> serde_json::Value {
    loop {
        match c.read().expect("a frame") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn subscribe(c: &mut Client, channels: &[&str]) {
    let req = serde_json::json!({"type": "subscribe", "channels": channels});
    c.send(Message::text(req.to_string())).unwrap();
    assert_eq!(read_json(c)["type"], "subscribed");
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
