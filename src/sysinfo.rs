//! The build id, and what the machine grants this process (CPU and memory limits, from cgroups v2 or
//! v1, CPU affinity, physical memory), the host name, and the process's own CPU time
//! and resident memory for the monitor thread. Linux first; elsewhere the std
//! fallbacks answer.
//!
//! File parsing lives in pure functions over the files' text, tested below.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The build id /health and `--version` report: ODIN_WS_BUILD when the build set it
/// (scripts/build-static: `<version>+g<commit>`), else `dev`.
pub const BUILD: &str = match option_env!("ODIN_WS_BUILD") {
    Some(b) => b,
    None => "dev",
};

/// Where cgroup v2 (unified) is mounted, and the v1 controllers' mount points.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP_V1_CPU: &[&str] = &["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"];
const CGROUP_V1_MEMORY: &str = "/sys/fs/cgroup/memory";
/// Used when sysconf cannot say.
const FALLBACK_PAGE_SIZE: u64 = 4096;

/// Cores this process may use: the cgroup CPU quota (v2 `cpu.max`, else v1
/// `cpu.cfs_quota_us / cpu.cfs_period_us`, the tightest of the process's cgroup and
/// its ancestors), capped by the CPUs it may run on (affinity, else
/// `available_parallelism`).
pub fn detect_cpu_limit() -> f64 {
    let cpus = allowed_cpus() as f64;
    cgroup_cpu_quota().map_or(cpus, |quota| quota.min(cpus))
}

/// Bytes this process may use: the tightest cgroup limit (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`) below physical memory, else physical memory.
pub fn detect_memory_limit() -> u64 {
    let physical = physical_memory();
    let cgroup = cgroup_memory_limit();
    match (cgroup, physical) {
        (Some(limit), Some(physical)) => limit.min(physical),
        (limit, physical) => limit.or(physical).unwrap_or(u64::MAX),
    }
}

/// The host name (for the welcome frame and the JetStream consumer name).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for `buf.len()` bytes; we read only up to the first
    // NUL or the end, so a truncated, unterminated name is still safe.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]) {
        name if rc == 0 && !name.is_empty() => name.into_owned(),
        _ => "localhost".to_string(),
    }
}

/// User + system CPU time this process has used so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data, all-zero is a valid value, and getrusage only
    // writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// Resident set size in bytes (`/proc/self/statm`); 0 where it cannot be read.
pub fn process_rss_bytes() -> u64 {
    read("/proc/self/statm")
        .and_then(|s| parse_statm_resident(&s))
        .map_or(0, |pages| pages.saturating_mul(page_size()))
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn cgroup_cpu_quota() -> Option<f64> {
    let own = parse_proc_cgroup(&read("/proc/self/cgroup").unwrap_or_default());
    let v2 = tightest(own.unified.as_deref(), &[CGROUP_ROOT], |dir| {
        read(dir.join("cpu.max")).and_then(|s| parse_cpu_max(&s))
    });
    v2.or_else(|| {
        tightest(own.cpu.as_deref(), CGROUP_V1_CPU, |dir| {
            let quota = read(dir.join("cpu.cfs_quota_us"))?;
            parse_cfs_quota(&quota, &read(dir.join("cpu.cfs_period_us"))?)
        })
    })
}

fn cgroup_memory_limit() -> Option<u64> {
    let own = parse_proc_cgroup(&read("/proc/self/cgroup").unwrap_or_default());
    let v2 = tightest(own.unified.as_deref(), &[CGROUP_ROOT], |dir| {
        read(dir.join("memory.max")).and_then(|s| parse_memory_limit(&s))
    });
    v2.or_else(|| {
        tightest(own.memory.as_deref(), &[CGROUP_V1_MEMORY], |dir| {
            read(dir.join("memory.limit_in_bytes")).and_then(|s| parse_memory_limit(&s))
        })
    })
}

/// The smallest limit found in the process's cgroup or any ancestor (a parent's limit
/// binds its children), under each mount point. Inside a container the path from
/// /proc/self/cgroup may not exist under the mount; the walk then ends at the mount
/// itself, which is the container's own cgroup.
fn tightest<T: PartialOrd>(
    path: Option<&str>,
    mounts: &[&str],
    limit: impl Fn(&Path) -> Option<T>,
) -> Option<T> {
    let path = path?;
    mounts
        .iter()
        .flat_map(|mount| ancestors(Path::new(mount), path))
        .filter_map(|dir| limit(&dir))
        .reduce(|a, b| if b < a { b } else { a })
}

/// `mount/a/b`, `mount/a`, `mount` for the cgroup path `/a/b`.
fn ancestors(mount: &Path, cgroup: &str) -> Vec<PathBuf> {
    let mut dir = mount.join(cgroup.trim_start_matches('/'));
    let mut dirs = vec![dir.clone()];
    while dir != mount && dir.pop() {
        dirs.push(dir.clone());
    }
    dirs
}

/// The process's cgroup paths from `/proc/self/cgroup`.
#[derive(Debug, Default, PartialEq)]
struct CgroupPaths {
    /// v2: the `0::/path` line.
    unified: Option<String>,
    /// v1: the hierarchy with the `cpu` controller.
    cpu: Option<String>,
    /// v1: the hierarchy with the `memory` controller.
    memory: Option<String>,
}

fn parse_proc_cgroup(text: &str) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            paths.unified = Some(path.to_string());
        }
        for controller in controllers.split(',') {
            match controller {
                "cpu" => paths.cpu = Some(path.to_string()),
                "memory" => paths.memory = Some(path.to_string()),
                _ => {}
            }
        }
    }
    paths
}

/// cgroup v2 `cpu.max`: "quota period" in cores, or None for "max".
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of -1 means none.
fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// v2 `memory.max` or v1 `memory.limit_in_bytes`: bytes, or None for "max". v1's
/// "no limit" is a huge number, which the caller's cap at physical memory absorbs.
fn parse_memory_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&bytes| bytes > 0)
}

/// The second field of `/proc/self/statm`: resident pages.
fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

fn allowed_cpus() -> usize {
    affinity_cpus()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

#[cfg(target_os = "linux")]
fn affinity_cpus() -> Option<usize> {
    // SAFETY: `cpu_set_t` is a plain bit set and all-zero is the empty set; the kernel
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        libc::CPU_COUNT(&set)
    };
    usize::try_from(count).ok().filter(|&n| n > 0)
}

#[cfg(not(target_os = "linux"))]
fn affinity_cpus() -> Option<usize> {
    None
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    u64::try_from(pages)
        .ok()
        .filter(|&p| p > 0)
        .map(|p| p.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(FALLBACK_PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max() {
        let cases: &[(&str, Option<f64>)] = &[
            ("max 100000\n", None),
            ("max\n", None),
            ("190000 100000\n", Some(1.9)),
            ("200000 100000", Some(2.0)),
            ("50000 100000", Some(0.5)),
            ("150000", Some(1.5)),
            ("0 100000", None),
            ("", None),
            ("garbage", None),
        ];
        for &(text, cores) in cases {
            assert_eq!(parse_cpu_max(text), cores, "{text:?}");
        }
    }

    #[test]
    fn cfs_quota() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("190000\n", "100000\n"), Some(1.9));
        assert_eq!(parse_cfs_quota("100000", "0"), None);
        assert_eq!(parse_cfs_quota("x", "100000"), None);
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("7516192768\n"), Some(7_516_192_768));
        assert_eq!(
            parse_memory_limit("9223372036854771712\n"),
            Some(9_223_372_036_854_771_712)
        );
        assert_eq!(parse_memory_limit("0"), None);
    }

    #[test]
    fn proc_cgroup_v2_and_v1() {
        assert_eq!(
            parse_proc_cgroup("0::/system.slice/odin-ws.service\n"),
            CgroupPaths {
                unified: Some("/system.slice/odin-ws.service".to_string()),
                ..CgroupPaths::default()
            }
        );
        let v1 =
            "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(v1),
            CgroupPaths {
                unified: Some("/".to_string()),
                cpu: Some("/docker/abc".to_string()),
                memory: Some("/docker/abc".to_string()),
            }
        );
        assert_eq!(parse_proc_cgroup(""), CgroupPaths::default());
    }

    #[test]
    fn cgroup_ancestors() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            ancestors(root, "/system.slice/odin-ws.service"),
            [
                root.join("system.slice/odin-ws.service"),
                root.join("system.slice"),
                root.to_path_buf()
            ]
        );
        assert_eq!(ancestors(root, "/"), [root.to_path_buf()]);
    }

    #[test]
    fn tightest_limit_wins() {
        let path = Some("/a/b");
        let limit = |dir: &Path| match dir.to_str()? {
            "/m/a/b" => Some(4.0),
            "/m/a" => Some(1.5),
            _ => None,
        };
        assert_eq!(tightest(path, &["/m"], limit), Some(1.5));
        assert_eq!(tightest(None, &["/m"], limit), None);
    }

    #[test]
    fn statm() {
        assert_eq!(parse_statm_resident("12345 678 90 1 0 200 0\n"), Some(678));
        assert_eq!(parse_statm_resident("12345"), None);
    }

    #[test]
    fn live_values_are_plausible() {
        assert!(detect_cpu_limit() > 0.0);
        assert!(detect_memory_limit() > 0);
        assert!(!hostname().is_empty());
        let start = process_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() >= start);
        #[cfg(target_os = "linux")]
        assert!(process_rss_bytes() > 0);
    }
}
