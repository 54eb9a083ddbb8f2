//! Host metrics read from `/proc` and `statvfs`: cheap enough to read every
//! few seconds (a handful of small files, no processes started).

use plumb_model::node::{CpuLoad, DiskInfo, MemoryInfo, NetInfo};
use std::collections::HashSet;
use std::ffi::CString;

/// File system types that hold no user data: kernel interfaces, RAM-backed
/// scratch, and read-only images. Their "disk free" means nothing.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "bpf",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "squashfs",
    "efivarfs",
    "selinuxfs",
    "overlay_ro",
    "fuse.lxcfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
];

/// Load averages and online CPUs.
pub fn cpu_load() -> CpuLoad {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|s| s.parse::<f64>().unwrap_or(0.0));
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    CpuLoad {
        load1: it.next().unwrap_or(0.0),
        load5: it.next().unwrap_or(0.0),
        load15: it.next().unwrap_or(0.0),
        cpus: cpus.max(1) as u32,
    }
}

/// Memory from `/proc/meminfo`.
pub fn memory() -> MemoryInfo {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

fn parse_meminfo(text: &str) -> MemoryInfo {
    let mut m = MemoryInfo::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let kib: u64 = val.parse().unwrap_or(0);
        let bytes = kib * 1024;
        match key {
            "MemTotal:" => m.total = bytes,
            "MemAvailable:" => m.available = bytes,
            "SwapTotal:" => m.swap_total = bytes,
            "SwapFree:" => m.swap_free = bytes,
            _ => {}
        }
    }
    m
}

/// Real mounted file systems with their space and inodes, one per device.
pub fn disks() -> Vec<DiskInfo> {
    disks_with(&[])
}

/// [`disks`], plus each of `always` whatever its file system type (a
/// tmpfs a job writes to can fill up as surely as a disk). A path that is
/// not itself a mount point is reported under its own name, with the type
/// and device of the mount that holds it.
pub fn disks_with(always: &[std::path::PathBuf]) -> Vec<DiskInfo> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounts = parse_mounts(&text);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (device, mount, fs_type) in &mounts {
        if PSEUDO_FS.contains(&fs_type.as_str()) || !seen.insert(device.clone()) {
            continue;
        }
        if let Some(d) = statvfs(mount, fs_type, device) {
            out.push(d);
        }
    }
    for path in always {
        let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let Some(p) = p.to_str() else {
            continue;
        };
        if out.iter().any(|d| d.mount == p) {
            continue;
        }
        // The mount holding it: the longest mount point that prefixes it
        // (the last such line wins, as the kernel stacks mounts).
        let holder = mounts
            .iter()
            .filter(|(_, m, _)| {
                m == "/"
                    || p == m
                    || p.strip_prefix(m.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(_, m, _)| m.len());
        let (device, fs_type) = holder
            .map(|(d, _, t)| (d.clone(), t.clone()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        match statvfs(p, &fs_type, &device) {
            Some(d) => out.push(d),
            None => {
                tracing::warn!(mount = %p, "cannot read the space of a mount given with --mount")
            }
        }
    }
    out
}

fn statvfs(mount: &str, fs_type: &str, device: &str) -> Option<DiskInfo> {
    let c = CString::new(mount.as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is
    // NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some(DiskInfo {
        mount: mount.to_string(),
        fs_type: fs_type.to_string(),
        device: device.to_string(),
        total: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
        inodes_total: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// `(device, mount point, type)` of each line, with the octal escapes of
/// `/proc/mounts` (`\040` for a space) undone.
fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                plumb_model::text::unescape_octal(it.next()?),
                plumb_model::text::unescape_octal(it.next()?),
                it.next()?.to_string(),
            ))
        })
        .collect()
}

/// Byte counters of every interface but loopback.
pub fn network() -> Vec<NetInfo> {
    parse_net_dev(&std::fs::read_to_string("/proc/net/dev").unwrap_or_default())
}

fn parse_net_dev(text: &str) -> Vec<NetInfo> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some(NetInfo {
                interface: name.to_string(),
                rx_bytes: *f.first()?,
                tx_bytes: *f.get(8)?,
            })
        })
        .collect()
}

/// Seconds since boot.
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The kernel's boot id.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_path_is_reported_whatever_its_type() {
        let dir = std::env::temp_dir();
        let d = disks_with(std::slice::from_ref(&dir));
        let want = std::fs::canonicalize(&dir).unwrap();
        let got = d
            .iter()
            .find(|x| std::path::Path::new(&x.mount) == want || want.starts_with(&x.mount))
            .expect("the chosen path or its mount is reported");
        assert!(got.total > 0);
    }

    #[test]
    fn meminfo_parses_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    8000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        );
        assert_eq!(m.total, 16000 * 1024);
        assert_eq!(m.available, 8000 * 1024);
    }

    #[test]
    fn mounts_unescape_spaces() {
        let v = parse_mounts("/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n");
        assert_eq!(v[0].1, "/mnt/my disk");
        assert_eq!(v[0].2, "ext4");
    }

    #[test]
    fn net_dev_skips_loopback() {
        let t = "Inter-|   Receive\n face |bytes\n    lo: 5 0 0 0 0 0 0 0 6 0 0 0 0 0 0 0\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n";
        let v = parse_net_dev(t);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].rx_bytes, v[0].tx_bytes), (100, 200));
    }

    #[test]
    fn this_host_reports_sane_values() {
        let c = cpu_load();
        assert!(c.cpus >= 1);
        assert!(memory().total > 0);
        assert!(uptime() > 0.0);
        assert!(!boot_id().is_empty());
        // Pseudo file systems never appear.
        assert!(
            disks()
                .iter()
                .all(|d| d.fs_type != "proc" && d.fs_type != "sysfs")
        );
    }
}
