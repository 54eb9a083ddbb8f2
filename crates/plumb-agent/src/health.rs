//! The node's hardware health, read from what the kernel already exposes
//! under a root directory ("/" on a real node; a laid-out fake root in
//! tests), plus SMART through `smartctl --json` at its own slow pace.
//!
//! Every read is a few small sysfs/procfs files, no process started, so it
//! can run at every heartbeat. A source that cannot be read becomes
//! [`Reading::Unavailable`] with the reason; [`HealthReader`] logs each
//! reason once, and never fails.

use plumb_model::Timestamp;
use plumb_model::health::{
    CpuFreq, HEALTH_VERSION, IoErrors, MemoryController, NetErrors, NodeHealth, Psi, Reading,
    SmartDisk, Temperature, Throttling, parse_psi, parse_smartctl, parse_vmstat_oom,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often SMART is read by default.
pub const SMART_EVERY: Duration = Duration::from_secs(3600);

/// How long one `smartctl` may take before it is abandoned.
const SMARTCTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads health under `root` (without SMART, which [`read_smart`] reads).
pub fn read_fast(root: &Path) -> NodeHealth {
    NodeHealth {
        version: HEALTH_VERSION,
        read_at: Timestamp::now(),
        psi: psi(root),
        oom_kills: oom_kills(root),
        memory_errors: edac(root),
        temperatures: hwmon(root),
        throttling: throttling(root),
        cpu_freq: cpu_freq(root),
        network: net_errors(root),
        io_errors: io_errors(root),
        smart: Reading::unavailable("not read yet (SMART is read at its own slow interval)"),
    }
}

/// Reads only the counters `plumb run` compares between the start and the
/// end of a run (PSI, OOM kills, thermal throttling, CPU frequency, I/O
/// errors): a handful of small files, well under a millisecond. The other
/// sources are left unavailable, saying they are not read for runs.
pub fn read_for_run(root: &Path) -> NodeHealth {
    let skipped = || "not read for runs".to_string();
    NodeHealth {
        version: HEALTH_VERSION,
        read_at: Timestamp::now(),
        psi: psi(root),
        oom_kills: oom_kills(root),
        memory_errors: Reading::unavailable(skipped()),
        temperatures: Reading::unavailable(skipped()),
        throttling: throttling(root),
        cpu_freq: cpu_freq(root),
        network: Reading::unavailable(skipped()),
        io_errors: io_errors(root),
        smart: Reading::unavailable(skipped()),
    }
}

fn why(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} is absent", path.display()),
        std::io::ErrorKind::PermissionDenied => format!(
            "{} is not readable by this user (run the agent as root to read it)",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| why(path, &e))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Directory entries whose names start with `prefix`, sorted by name with
/// numbers in order (`cpu2` before `cpu10`).
fn entries(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>, std::io::Error> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(prefix).then(|| (name, e.path()))
        })
        .collect();
    v.sort_by_key(|e| natural(&e.0));
    Ok(v)
}

fn natural(s: &str) -> (String, u64) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = s.split_at(s.len() - digits);
    (head.to_string(), tail.parse().unwrap_or(0))
}

fn psi(root: &Path) -> Reading<Psi> {
    let dir = root.join("proc/pressure");
    if !dir.is_dir() {
        return Reading::unavailable(format!(
            "{} is absent: the kernel has no pressure stall information (CONFIG_PSI off, or booted with psi=0)",
            dir.display()
        ));
    }
    let mut p = Psi::default();
    let mut errors = Vec::new();
    for (name, slot) in [
        ("cpu", &mut p.cpu),
        ("memory", &mut p.memory),
        ("io", &mut p.io),
    ] {
        let path = dir.join(name);
        match read(&path)
            .and_then(|t| parse_psi(&t).map_err(|e| format!("{}: {e}", path.display())))
        {
            Ok(r) => *slot = Some(r),
            Err(e) => errors.push(e),
        }
    }
    if p.cpu.is_none() && p.memory.is_none() && p.io.is_none() {
        return Reading::unavailable(errors.join("; "));
    }
    Reading::Ok { value: p }
}

fn oom_kills(root: &Path) -> Reading<u64> {
    let path = root.join("proc/vmstat");
    match read(&path) {
        Ok(t) => match parse_vmstat_oom(&t) {
            Some(n) => Reading::Ok { value: n },
            None => Reading::unavailable(format!(
                "{} has no oom_kill line (a kernel before 4.13)",
                path.display()
            )),
        },
        Err(e) => Reading::unavailable(e),
    }
}

fn edac(root: &Path) -> Reading<Vec<MemoryController>> {
    let dir = root.join("sys/devices/system/edac/mc");
    let mcs = match entries(&dir, "mc") {
        Ok(v) => v,
        Err(e) => {
            return Reading::unavailable(format!(
                "{}: no EDAC memory controller (no ECC memory, no EDAC driver loaded, or a VM)",
                why(&dir, &e)
            ));
        }
    };
    let mut out = Vec::new();
    for (name, path) in mcs {
        let (Some(ce), Some(ue)) = (
            read_u64(&path.join("ce_count")),
            read_u64(&path.join("ue_count")),
        ) else {
            continue;
        };
        out.push(MemoryController {
            name,
            corrected: ce,
            uncorrected: ue,
        });
    }
    if out.is_empty() {
        return Reading::unavailable(format!(
            "{} lists no memory controller with ce_count and ue_count (no ECC memory, or no EDAC driver for it)",
            dir.display()
        ));
    }
    Reading::Ok { value: out }
}

fn hwmon(root: &Path) -> Reading<Vec<Temperature>> {
    let dir = root.join("sys/class/hwmon");
    let chips = match entries(&dir, "hwmon") {
        Ok(v) => v,
        Err(e) => {
            return Reading::unavailable(format!(
                "{}: no hardware monitoring sensors (usual on a VM)",
                why(&dir, &e)
            ));
        }
    };
    let mut out = Vec::new();
    for (chip_dir, path) in chips {
        let chip = read(&path.join("name"))
            .map(|s| s.trim().to_string())
            .unwrap_or(chip_dir);
        let Ok(files) = entries(&path, "temp") else {
            continue;
        };
        for (file, fpath) in files {
            let Some(n) = file.strip_suffix("_input") else {
                continue;
            };
            let Some(milli) = std::fs::read_to_string(&fpath)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
            else {
                continue;
            };
            let label = read(&path.join(format!("{n}_label")))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| n.to_string());
            let crit = std::fs::read_to_string(path.join(format!("{n}_crit")))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map(|m| m as f64 / 1000.0);
            out.push(Temperature {
                chip: chip.clone(),
                label,
                celsius: milli as f64 / 1000.0,
                crit_celsius: crit,
            });
        }
    }
    if out.is_empty() {
        return Reading::unavailable(format!(
            "{} has no temperature sensor (tempN_input)",
            dir.display()
        ));
    }
    Reading::Ok { value: out }
}

fn cpus(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let dir = root.join("sys/devices/system/cpu");
    let v = entries(&dir, "cpu").map_err(|e| why(&dir, &e))?;
    Ok(v.into_iter()
        .filter(|(n, _)| n.len() > 3 && n[3..].bytes().all(|b| b.is_ascii_digit()))
        .collect())
}

fn throttling(root: &Path) -> Reading<Throttling> {
    let list = match cpus(root) {
        Ok(v) => v,
        Err(e) => return Reading::unavailable(e),
    };
    let mut t = Throttling::default();
    for (_, path) in list {
        let d = path.join("thermal_throttle");
        let core = read_u64(&d.join("core_throttle_count"));
        let pkg = read_u64(&d.join("package_throttle_count"));
        if core.is_none() && pkg.is_none() {
            continue;
        }
        t.cpus += 1;
        t.core_events += core.unwrap_or(0);
        t.package_events = t.package_events.max(pkg.unwrap_or(0));
    }
    if t.cpus == 0 {
        return Reading::unavailable(format!(
            "no CPU under {} has thermal_throttle counts (an Intel CPU's therm_throt feature; absent on VMs and other CPUs)",
            root.join("sys/devices/system/cpu").display()
        ));
    }
    Reading::Ok { value: t }
}

fn cpu_freq(root: &Path) -> Reading<CpuFreq> {
    let list = match cpus(root) {
        Ok(v) => v,
        Err(e) => return Reading::unavailable(e),
    };
    let mut f = CpuFreq {
        cur_mhz_min: f64::MAX,
        ..Default::default()
    };
    let mut sum = 0.0;
    for (_, path) in list {
        let d = path.join("cpufreq");
        let (Some(cur), Some(max)) = (
            read_u64(&d.join("scaling_cur_freq")),
            read_u64(&d.join("cpuinfo_max_freq")),
        ) else {
            continue;
        };
        let cur = cur as f64 / 1000.0;
        f.cpus += 1;
        sum += cur;
        f.cur_mhz_min = f.cur_mhz_min.min(cur);
        f.max_mhz = f.max_mhz.max(max as f64 / 1000.0);
    }
    if f.cpus == 0 {
        return Reading::unavailable(format!(
            "no CPU under {} has cpufreq (no frequency scaling driver; usual on VMs)",
            root.join("sys/devices/system/cpu").display()
        ));
    }
    f.cur_mhz_mean = sum / f64::from(f.cpus);
    Reading::Ok { value: f }
}

fn net_errors(root: &Path) -> Reading<Vec<NetErrors>> {
    let dir = root.join("sys/class/net");
    let list = match entries(&dir, "") {
        Ok(v) => v,
        Err(e) => return Reading::unavailable(why(&dir, &e)),
    };
    let mut out = Vec::new();
    for (name, path) in list {
        if name == "lo" {
            continue;
        }
        let s = path.join("statistics");
        let (Some(rx_errors), Some(tx_errors), Some(rx_dropped), Some(tx_dropped)) = (
            read_u64(&s.join("rx_errors")),
            read_u64(&s.join("tx_errors")),
            read_u64(&s.join("rx_dropped")),
            read_u64(&s.join("tx_dropped")),
        ) else {
            continue;
        };
        out.push(NetErrors {
            interface: name,
            rx_errors,
            tx_errors,
            rx_dropped,
            tx_dropped,
        });
    }
    Reading::Ok { value: out }
}

/// Block devices worth asking about: whole disks, not loop, RAM, zram,
/// device-mapper, md, optical or network block devices.
fn is_disk(name: &str) -> bool {
    !["loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn io_errors(root: &Path) -> Reading<Vec<IoErrors>> {
    let mut out = Vec::new();
    let block = root.join("sys/block");
    if let Ok(list) = entries(&block, "") {
        for (name, path) in list {
            // SCSI (and SATA through libata) devices count failed commands
            // in hex; other kinds do not expose a count.
            let Ok(text) = std::fs::read_to_string(path.join("device/ioerr_cnt")) else {
                continue;
            };
            let t = text.trim();
            let n = t
                .strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| t.parse());
            if let Ok(count) = n {
                out.push(IoErrors {
                    kind: "block".into(),
                    device: name,
                    count,
                });
            }
        }
    }
    let ext4 = root.join("sys/fs/ext4");
    let mut has_ext4 = false;
    if let Ok(list) = entries(&ext4, "") {
        for (name, path) in list {
            if let Some(count) = read_u64(&path.join("errors_count")) {
                has_ext4 = true;
                out.push(IoErrors {
                    kind: "ext4".into(),
                    device: name,
                    count,
                });
            }
        }
    }
    if out.is_empty() && !has_ext4 {
        return Reading::unavailable(format!(
            "no device exposes an error count (SCSI/SATA disks have {}/DEV/device/ioerr_cnt, mounted ext4 has {}/DEV/errors_count; virtio and NVMe disks have none)",
            block.display(),
            ext4.display()
        ));
    }
    Reading::Ok { value: out }
}

/// The disks `smartctl` is asked about: `/dev/NAME` for every whole disk
/// under `root`'s `/sys/block`.
pub fn smart_devices(root: &Path) -> Vec<String> {
    entries(&root.join("sys/block"), "")
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| is_disk(n))
        .map(|(n, _)| format!("/dev/{n}"))
        .collect()
}

/// SMART of every disk under `root`, through `smartctl` (a path or a name
/// looked up in `PATH`).
pub fn read_smart(root: &Path, smartctl: &Path) -> Reading<Vec<SmartDisk>> {
    let devices = smart_devices(root);
    if devices.is_empty() {
        return Reading::unavailable(format!(
            "no disk under {} to ask smartctl about",
            root.join("sys/block").display()
        ));
    }
    let mut out = Vec::new();
    for dev in devices {
        match run_smartctl(smartctl, &dev) {
            Ok(d) => out.push(d),
            Err(SmartError::Missing(reason)) => return Reading::unavailable(reason),
            Err(SmartError::Disk(reason)) => out.push(SmartDisk {
                device: dev,
                error: Some(reason),
                ..Default::default()
            }),
        }
    }
    if out.iter().all(|d| d.error.is_some()) {
        let first = out[0].error.clone().unwrap_or_default();
        return Reading::unavailable(format!("smartctl could read no disk: {first}"));
    }
    Reading::Ok { value: out }
}

enum SmartError {
    /// The tool cannot run at all.
    Missing(String),
    /// This disk could not be read.
    Disk(String),
}

fn run_smartctl(smartctl: &Path, dev: &str) -> Result<SmartDisk, SmartError> {
    let mut child = Command::new(smartctl)
        .args(["--json", "-a", dev])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            SmartError::Missing(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not installed (install smartmontools to read disks' SMART)",
                    smartctl.display()
                )
            } else {
                format!("{} cannot run: {e}", smartctl.display())
            })
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut stdout, 4 << 20), &mut buf);
        buf
    });
    let deadline = Instant::now() + SMARTCTL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SmartError::Disk(format!(
                    "smartctl did not finish within {} s",
                    SMARTCTL_TIMEOUT.as_secs()
                )));
            }
        }
    }
    let out = reader.join().unwrap_or_default();
    parse_smartctl(dev, &out).map_err(SmartError::Disk)
}

/// Reads health at every heartbeat and SMART on a thread of its own at a
/// slow interval, and logs each unavailable source once.
#[derive(Debug)]
pub struct HealthReader {
    root: PathBuf,
    smart: Arc<Mutex<Reading<Vec<SmartDisk>>>>,
    said: BTreeMap<&'static str, String>,
}

impl HealthReader {
    /// A reader of `root`; with `smart_every`, a thread that runs
    /// `smartctl` that often (the first time at once) until the process
    /// ends.
    pub fn new(root: PathBuf, smartctl: PathBuf, smart_every: Option<Duration>) -> HealthReader {
        let smart = Arc::new(Mutex::new(match smart_every {
            Some(_) => Reading::unavailable("not read yet (the first SMART read is under way)"),
            None => {
                Reading::unavailable("SMART reading is turned off (plumb agent --smart-every off)")
            }
        }));
        if let Some(every) = smart_every {
            let slot = smart.clone();
            let root = root.clone();
            let _ = std::thread::Builder::new()
                .name("plumb-smart".into())
                .spawn(move || {
                    loop {
                        let r = read_smart(&root, &smartctl);
                        *slot.lock().expect("smart lock") = r;
                        std::thread::sleep(every);
                    }
                });
        }
        HealthReader {
            root,
            smart,
            said: BTreeMap::new(),
        }
    }

    /// One reading of everything, with the latest SMART.
    pub fn read(&mut self) -> NodeHealth {
        let mut h = read_fast(&self.root);
        h.smart = self.smart.lock().expect("smart lock").clone();
        for (source, reason) in h.unavailable() {
            if self.said.get(source).map(String::as_str) != Some(reason)
                && !reason.starts_with("not read yet")
            {
                tracing::info!(source, reason, "health source unavailable");
                self.said.insert(source, reason.to_string());
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/health")
    }

    #[test]
    fn a_failing_node_reads_as_the_kernel_lays_it_out() {
        let root = testdata().join("failing");
        let h = read_fast(&root);
        let psi = h.psi.ok().expect("psi");
        assert_eq!(psi.memory.as_ref().unwrap().some.avg10, 35.5);
        assert_eq!(
            psi.io.as_ref().unwrap().full.as_ref().unwrap().total_us,
            7_000_000
        );
        assert!(psi.cpu.as_ref().unwrap().full.is_none());
        assert_eq!(h.oom_kills, Reading::Ok { value: 2 });
        let mcs = h.memory_errors.ok().unwrap();
        assert_eq!(mcs.len(), 2);
        assert_eq!((mcs[0].corrected, mcs[0].uncorrected), (12, 3));
        assert_eq!(h.uncorrected_memory_errors(), 3);
        let temps = h.temperatures.ok().unwrap();
        assert!(
            temps.iter().any(|t| t.chip == "coretemp"
                && t.label == "Package id 0"
                && t.celsius == 97.0
                && t.crit_celsius == Some(100.0)),
            "{temps:?}"
        );
        assert!(temps.iter().any(|t| t.chip == "nvme" && t.label == "temp1"));
        let t = h.throttling.ok().unwrap();
        assert_eq!((t.cpus, t.core_events, t.package_events), (2, 15, 40));
        let f = h.cpu_freq.ok().unwrap();
        assert_eq!((f.cpus, f.cur_mhz_min, f.max_mhz), (2, 800.0, 3600.0));
        let net = h.network.ok().unwrap();
        assert_eq!(net.len(), 1, "loopback is left out: {net:?}");
        assert_eq!(net[0].rx_errors, 5);
        let io = h.io_errors.ok().unwrap();
        assert!(
            io.iter()
                .any(|e| e.kind == "block" && e.device == "sda" && e.count == 0x1a)
        );
        assert!(
            io.iter()
                .any(|e| e.kind == "ext4" && e.device == "sda1" && e.count == 4)
        );
    }

    #[test]
    fn an_empty_root_is_unavailable_everywhere_with_reasons_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let h = read_fast(dir.path());
        let un = h.unavailable();
        let names: Vec<&str> = un.iter().map(|(k, _)| *k).collect();
        for k in [
            "psi",
            "oom_kills",
            "memory_errors",
            "temperatures",
            "throttling",
            "cpu_freq",
            "network",
            "io_errors",
            "smart",
        ] {
            assert!(names.contains(&k), "{k} missing from {un:?}");
        }
        let psi = h.psi.reason().unwrap();
        assert!(psi.contains("CONFIG_PSI"), "{psi}");
        assert!(h.memory_errors.reason().unwrap().contains("EDAC"));
    }

    #[test]
    fn numbered_entries_sort_naturally() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["cpu10", "cpu2", "cpufreq", "cpu1"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let names: Vec<String> = entries(dir.path(), "cpu")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["cpu1", "cpu2", "cpu10", "cpufreq"]);
    }

    #[test]
    fn recorded_smartctl_of_a_healthy_and_a_failing_disk() {
        let healthy = parse_smartctl(
            "/dev/sda",
            &std::fs::read(testdata().join("smartctl/healthy-ata.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(healthy.passed, Some(true));
        assert!(
            healthy.predictive().iter().all(|(_, v)| *v == 0),
            "{healthy:?}"
        );
        assert_eq!(healthy.temperature_c, Some(31.0));
        let failing = parse_smartctl(
            "/dev/sda",
            &std::fs::read(testdata().join("smartctl/failing-ata.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(failing.passed, Some(false));
        assert_eq!(failing.reallocated, Some(1184));
        assert_eq!(failing.pending, Some(56));
        assert_eq!(failing.offline_uncorrectable, Some(56));
        assert_eq!(failing.crc_errors, Some(0));
        let nvme = parse_smartctl(
            "/dev/nvme0n1",
            &std::fs::read(testdata().join("smartctl/healthy-nvme.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(nvme.passed, Some(true));
        assert_eq!(nvme.media_errors, Some(0));
        assert_eq!(nvme.percentage_used, Some(3));
        assert_eq!(nvme.temperature_c, Some(38.0));
    }

    #[test]
    fn a_missing_smartctl_is_unavailable_with_what_to_install() {
        let root = testdata().join("failing");
        let r = read_smart(&root, Path::new("/nonexistent/smartctl"));
        let reason = r.reason().expect("unavailable");
        assert!(reason.contains("smartmontools"), "{reason}");
    }
}
