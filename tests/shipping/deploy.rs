//! scripts/deploy against local target directories with plain processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::image::image;
use crate::support::*;

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
