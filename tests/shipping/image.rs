//! The static build, the image's tree chrooted with NATS by host name, and
//! `--healthcheck`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::*;

pub struct Image {
    pub rootfs: PathBuf,
    /// The build id scripts/build-static gave the static binaries.
    pub build: String,
}

impl Image {
    pub fn static_bin(&self) -> PathBuf {
        Path::new(ROOT).join("target/static/odin-ws")
    }
}

/// Runs scripts/image-rootfs (and so scripts/build-static) once.
pub fn image() -> &'static Image {
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
    // NATS by host name, resolved without libc ("natshost -> 127.0.0.1").
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
    // POST /publish goes through NATS.
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
