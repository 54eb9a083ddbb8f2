//! Hardware health of a node, as `plumb agent` reads it from the kernel and
//! from `smartctl`, and the pure parsing of what those sources print.
//!
//! Every source is a [`Reading`]: either its values, or `unavailable` with
//! the reason (not root, absent on a VM, the tool is missing). A source
//! that cannot be read is never reported as zero.
//!
//! [`findings`] turns one node's health into what is abnormal about it
//! right now (a failing disk, uncorrected memory errors, heavy pressure),
//! for the fleet view that lists abnormal nodes first.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The schema version of a [`NodeHealth`].
pub const HEALTH_VERSION: u32 = 1;

/// What one source gave: its values, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reading<T> {
    /// The source was read.
    Ok {
        /// Its values.
        value: T,
    },
    /// The source could not be read.
    Unavailable {
        /// Why, in words that say what to do about it.
        reason: String,
    },
}

impl<T> Reading<T> {
    /// The values, when the source was read.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Reading::Ok { value } => Some(value),
            Reading::Unavailable { .. } => None,
        }
    }

    /// The reason, when it was not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Reading::Ok { .. } => None,
            Reading::Unavailable { reason } => Some(reason),
        }
    }

    /// An unavailable reading.
    pub fn unavailable(reason: impl Into<String>) -> Reading<T> {
        Reading::Unavailable {
            reason: reason.into(),
        }
    }
}

/// One node's hardware health at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Schema version ([`HEALTH_VERSION`]).
    pub version: u32,
    /// When the agent read it (the node's clock).
    pub read_at: Timestamp,
    /// Pressure stall information (`/proc/pressure`).
    pub psi: Reading<Psi>,
    /// OOM kills since boot (`/proc/vmstat` `oom_kill`).
    pub oom_kills: Reading<u64>,
    /// EDAC memory controllers' error counts.
    pub memory_errors: Reading<Vec<MemoryController>>,
    /// hwmon temperature sensors.
    pub temperatures: Reading<Vec<Temperature>>,
    /// CPU thermal-throttle event counts.
    pub throttling: Reading<Throttling>,
    /// CPU frequency now against the maximum.
    pub cpu_freq: Reading<CpuFreq>,
    /// Network interface errors and drops (loopback excluded).
    pub network: Reading<Vec<NetErrors>>,
    /// I/O error counts of block devices and file systems.
    pub io_errors: Reading<Vec<IoErrors>>,
    /// SMART of every disk, read at its own slow interval.
    pub smart: Reading<Vec<SmartDisk>>,
}

/// PSI of the three resources; a resource the kernel does not report is
/// `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    /// `/proc/pressure/cpu`.
    pub cpu: Option<PsiResource>,
    /// `/proc/pressure/memory`.
    pub memory: Option<PsiResource>,
    /// `/proc/pressure/io`.
    pub io: Option<PsiResource>,
}

/// One resource's PSI lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiResource {
    /// Some task stalled.
    pub some: PsiLine,
    /// Every non-idle task stalled at once (absent for CPU on older kernels).
    pub full: Option<PsiLine>,
}

/// One PSI line: the share of time stalled, in percent, over 10 s, 60 s and
/// 300 s, and the total stall time in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Percent over the last 10 s.
    pub avg10: f64,
    /// Percent over the last 60 s.
    pub avg60: f64,
    /// Percent over the last 300 s.
    pub avg300: f64,
    /// Microseconds stalled since boot.
    pub total_us: u64,
}

/// One EDAC memory controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryController {
    /// `mc0`, `mc1`, ...
    pub name: String,
    /// Corrected errors since boot (or since the counters were reset).
    pub corrected: u64,
    /// Uncorrected errors.
    pub uncorrected: u64,
}

/// One temperature sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The hwmon chip's `name` (`coretemp`, `k10temp`, `nvme`, ...).
    pub chip: String,
    /// The sensor's label (`Package id 0`, `Core 3`), else `tempN`.
    pub label: String,
    /// Degrees Celsius.
    pub celsius: f64,
    /// The sensor's critical temperature, when the chip says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_celsius: Option<f64>,
}

/// Thermal-throttle event counts, over every CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// CPUs that report them.
    pub cpus: u32,
    /// Sum of `core_throttle_count`.
    pub core_events: u64,
    /// Highest `package_throttle_count` (every CPU of a package repeats it).
    pub package_events: u64,
}

impl Throttling {
    /// Every throttle event.
    pub fn total(&self) -> u64 {
        self.core_events.saturating_add(self.package_events)
    }
}

/// CPU frequencies from cpufreq, in MHz.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuFreq {
    /// CPUs that report them.
    pub cpus: u32,
    /// Mean current frequency.
    pub cur_mhz_mean: f64,
    /// Lowest current frequency.
    pub cur_mhz_min: f64,
    /// Highest maximum frequency (`cpuinfo_max_freq`).
    pub max_mhz: f64,
}

/// Errors and drops of one network interface, since boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetErrors {
    /// Interface name.
    pub interface: String,
    /// `rx_errors`.
    pub rx_errors: u64,
    /// `tx_errors`.
    pub tx_errors: u64,
    /// `rx_dropped`.
    pub rx_dropped: u64,
    /// `tx_dropped`.
    pub tx_dropped: u64,
}

/// I/O errors the kernel counted for one device or file system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoErrors {
    /// `block` (`/sys/block/DEV/device/ioerr_cnt`) or `ext4`
    /// (`/sys/fs/ext4/DEV/errors_count`).
    pub kind: String,
    /// The device (`sda`, `nvme0n1p2`).
    pub device: String,
    /// Errors since boot (block) or recorded in the superblock (ext4).
    pub count: u64,
}

/// SMART of one disk, from `smartctl --json -a`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmartDisk {
    /// `/dev/sda`, `/dev/nvme0n1`.
    pub device: String,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Serial number.
    #[serde(default)]
    pub serial: String,
    /// The overall health self-assessment; `None` when not given.
    #[serde(default)]
    pub passed: Option<bool>,
    /// Current temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    /// ATA 5, Reallocated_Sector_Ct (raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reallocated: Option<u64>,
    /// ATA 187, Reported_Uncorrect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_uncorrect: Option<u64>,
    /// ATA 188, Command_Timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<u64>,
    /// ATA 197, Current_Pending_Sector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// ATA 198, Offline_Uncorrectable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_uncorrectable: Option<u64>,
    /// ATA 199, UDMA_CRC_Error_Count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc_errors: Option<u64>,
    /// NVMe media and data integrity errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_errors: Option<u64>,
    /// NVMe percentage of the rated endurance used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_used: Option<u64>,
    /// Why this disk could not be read, when it could not (the others
    /// still are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SmartDisk {
    /// The attributes that predict a failure, by name, with their values
    /// (only those the disk reports).
    pub fn predictive(&self) -> Vec<(&'static str, u64)> {
        [
            ("reallocated", self.reallocated),
            ("reported_uncorrect", self.reported_uncorrect),
            ("command_timeout", self.command_timeout),
            ("pending", self.pending),
            ("offline_uncorrectable", self.offline_uncorrectable),
            ("crc_errors", self.crc_errors),
            ("media_errors", self.media_errors),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

impl NodeHealth {
    /// Every source with its name, for listing what is unavailable.
    pub fn unavailable(&self) -> Vec<(&'static str, &str)> {
        [
            ("psi", self.psi.reason()),
            ("oom_kills", self.oom_kills.reason()),
            ("memory_errors", self.memory_errors.reason()),
            ("temperatures", self.temperatures.reason()),
            ("throttling", self.throttling.reason()),
            ("cpu_freq", self.cpu_freq.reason()),
            ("network", self.network.reason()),
            ("io_errors", self.io_errors.reason()),
            ("smart", self.smart.reason()),
        ]
        .into_iter()
        .filter_map(|(k, r)| r.map(|r| (k, r)))
        .collect()
    }

    /// Uncorrected memory errors over every controller (0 when unavailable).
    pub fn uncorrected_memory_errors(&self) -> u64 {
        self.memory_errors
            .ok()
            .map(|v| v.iter().map(|m| m.uncorrected).sum())
            .unwrap_or(0)
    }

    /// Corrected memory errors over every controller (0 when unavailable).
    pub fn corrected_memory_errors(&self) -> u64 {
        self.memory_errors
            .ok()
            .map(|v| v.iter().map(|m| m.corrected).sum())
            .unwrap_or(0)
    }

    /// Every I/O error counted (0 when unavailable).
    pub fn io_error_total(&self) -> u64 {
        self.io_errors
            .ok()
            .map(|v| v.iter().map(|e| e.count).sum())
            .unwrap_or(0)
    }

    /// Whether memory or I/O is under pressure: PSI some avg10 at or above
    /// `floor` percent.
    pub fn under_pressure(&self, floor: f64) -> bool {
        self.psi.ok().is_some_and(|p| {
            [&p.memory, &p.io]
                .into_iter()
                .flatten()
                .any(|r| r.some.avg10 >= floor)
        })
    }

    /// A copy without the values that move at every read (PSI figures,
    /// temperatures, frequencies, the read time), so two readings can be
    /// compared for a change worth sending at once. Which PSI resources
    /// are reported stays.
    pub fn stable_part(&self) -> NodeHealth {
        let mut h = self.clone();
        h.read_at = Timestamp::from_nanos(0);
        if let Reading::Ok { value } = &mut h.psi {
            for r in [&mut value.cpu, &mut value.memory, &mut value.io] {
                if let Some(res) = r.as_mut() {
                    let full = res.full.is_some();
                    *res = PsiResource::default();
                    if full {
                        res.full = Some(PsiLine::default());
                    }
                }
            }
        }
        if let Reading::Ok { value } = &mut h.temperatures {
            for t in value.iter_mut() {
                t.celsius = 0.0;
            }
        }
        if let Reading::Ok { value } = &mut h.cpu_freq {
            value.cur_mhz_mean = 0.0;
            value.cur_mhz_min = 0.0;
        }
        if let Reading::Ok { value } = &mut h.smart {
            for d in value.iter_mut() {
                d.temperature_c = None;
            }
        }
        h
    }
}

/// How severe a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth a look.
    Warning,
    /// Failing now.
    Critical,
}

/// Something abnormal about a node's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// The source (`smart`, `memory_errors`, ...).
    pub source: String,
    /// What, in words.
    pub text: String,
}

/// Thresholds of [`findings`] that are not "any is too many".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindingLimits {
    /// PSI some avg10 of memory, percent, at or above which memory pressure
    /// is abnormal.
    pub memory_pressure: f64,
    /// The same for I/O.
    pub io_pressure: f64,
}

impl Default for FindingLimits {
    fn default() -> Self {
        FindingLimits {
            memory_pressure: 20.0,
            io_pressure: 40.0,
        }
    }
}

/// What is abnormal about `h` on its own (no history): a disk failing its
/// SMART self-assessment or with a predictive attribute above 0, any
/// uncorrected memory error, corrected ones, I/O errors, throttle events
/// since boot, and pressure over `limits`. Critical first.
pub fn findings(h: &NodeHealth, limits: &FindingLimits) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |level, source: &str, text: String| {
        out.push(Finding {
            level,
            source: source.into(),
            text,
        })
    };
    if let Some(disks) = h.smart.ok() {
        for d in disks {
            if d.passed == Some(false) {
                add(
                    Level::Critical,
                    "smart",
                    format!("{} fails its SMART self-assessment", d.device),
                );
            }
            let bad: Vec<String> = d
                .predictive()
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !bad.is_empty() {
                add(
                    Level::Warning,
                    "smart",
                    format!("{}: {}", d.device, bad.join(", ")),
                );
            }
        }
    }
    let ue = h.uncorrected_memory_errors();
    if ue > 0 {
        add(
            Level::Critical,
            "memory_errors",
            format!("{ue} uncorrected memory error(s)"),
        );
    }
    let ce = h.corrected_memory_errors();
    if ce > 0 {
        add(
            Level::Warning,
            "memory_errors",
            format!("{ce} corrected memory error(s)"),
        );
    }
    let io = h.io_error_total();
    if io > 0 {
        add(Level::Warning, "io_errors", format!("{io} I/O error(s)"));
    }
    if let Some(t) = h.throttling.ok()
        && t.total() > 0
    {
        add(
            Level::Warning,
            "throttling",
            format!("{} thermal throttle event(s) since boot", t.total()),
        );
    }
    if let Some(p) = h.psi.ok() {
        for (name, r, limit) in [
            ("memory", &p.memory, limits.memory_pressure),
            ("io", &p.io, limits.io_pressure),
        ] {
            if let Some(r) = r
                && r.some.avg10 >= limit
            {
                add(
                    Level::Warning,
                    "psi",
                    format!(
                        "{name} pressure {:.1}% (some, avg10) at or above {limit}%",
                        r.some.avg10
                    ),
                );
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.level));
    out
}

/// One reading's values for people, as `(name, value)` rows in a fixed
/// order: pressure, OOM kills, memory errors, temperatures, throttling,
/// CPU frequency, network errors, I/O errors, SMART. `plumb nodes health`
/// and the dashboard's node page both show these (each escaping the text
/// for its medium); sources not read are left out (they are listed as
/// unavailable with their reason).
pub fn value_rows(h: &NodeHealth) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Some(p) = h.psi.ok() {
        for (name, r) in [("cpu", &p.cpu), ("memory", &p.memory), ("io", &p.io)] {
            if let Some(r) = r {
                rows.push((
                    format!("{name} pressure"),
                    format!(
                        "some {:.1}% / {:.1}% / {:.1}% (10 s / 60 s / 300 s){}",
                        r.some.avg10,
                        r.some.avg60,
                        r.some.avg300,
                        r.full
                            .as_ref()
                            .map(|f| format!(", full {:.1}% (10 s)", f.avg10))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if let Some(n) = h.oom_kills.ok() {
        rows.push(("OOM kills since boot".into(), n.to_string()));
    }
    for m in h.memory_errors.ok().into_iter().flatten() {
        rows.push((
            format!("memory errors {}", m.name),
            format!("{} corrected, {} uncorrected", m.corrected, m.uncorrected),
        ));
    }
    for t in h.temperatures.ok().into_iter().flatten() {
        rows.push((
            format!("{} {}", t.chip, t.label),
            format!(
                "{:.1} °C{}",
                t.celsius,
                t.crit_celsius
                    .map(|c| format!(" (critical {c:.0} °C)"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(t) = h.throttling.ok() {
        rows.push((
            "thermal throttling".into(),
            format!(
                "{} core, {} package events over {} CPUs",
                t.core_events, t.package_events, t.cpus
            ),
        ));
    }
    if let Some(f) = h.cpu_freq.ok() {
        rows.push((
            "CPU frequency".into(),
            format!(
                "mean {:.0} MHz, lowest {:.0} MHz, max {:.0} MHz",
                f.cur_mhz_mean, f.cur_mhz_min, f.max_mhz
            ),
        ));
    }
    for i in h.network.ok().into_iter().flatten() {
        rows.push((
            format!("network {}", i.interface),
            format!(
                "errors rx {} tx {}, dropped rx {} tx {}",
                i.rx_errors, i.tx_errors, i.rx_dropped, i.tx_dropped
            ),
        ));
    }
    for e in h.io_errors.ok().into_iter().flatten() {
        rows.push((
            format!("I/O errors {} {}", e.kind, e.device),
            e.count.to_string(),
        ));
    }
    for d in h.smart.ok().into_iter().flatten() {
        let v = match &d.error {
            Some(e) => format!("not read: {e}"),
            None => {
                let attrs: Vec<String> = d
                    .predictive()
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .chain(d.percentage_used.map(|p| format!("percentage_used {p}")))
                    .collect();
                format!(
                    "{} {} {}{}{}",
                    match d.passed {
                        Some(true) => "PASSED",
                        Some(false) => "FAILED",
                        None => "no self-assessment",
                    },
                    d.model,
                    d.serial,
                    d.temperature_c
                        .map(|t| format!(", {t:.0} °C"))
                        .unwrap_or_default(),
                    if attrs.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", attrs.join(", "))
                    }
                )
            }
        };
        rows.push((format!("SMART {}", d.device), v));
    }
    rows
}

/// Parses one `/proc/pressure/*` file.
pub fn parse_psi(text: &str) -> Result<PsiResource, String> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next().unwrap_or("");
        let mut l = PsiLine::default();
        let mut seen = 0;
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("`{kv}` is not key=value"));
            };
            let bad = || format!("`{kv}` is not a number");
            match k {
                "avg10" => l.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => l.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => l.avg300 = v.parse().map_err(|_| bad())?,
                "total" => l.total_us = v.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen < 4 {
            return Err(format!("line `{line}` lacks avg10/avg60/avg300/total"));
        }
        match kind {
            "some" => some = Some(l),
            "full" => full = Some(l),
            other => return Err(format!("unknown PSI line kind `{other}`")),
        }
    }
    Ok(PsiResource {
        some: some.ok_or("no `some` line")?,
        full,
    })
}

/// `oom_kill` from `/proc/vmstat`; `None` when the kernel does not count
/// them (before 4.13).
pub fn parse_vmstat_oom(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// A disk's SMART from the JSON `smartctl --json -a DEV` prints
/// (smartmontools 7.0 and later). smartctl's exit status is a bit mask that
/// is non-zero for a failing disk too, so the JSON decides: a device that
/// could not be opened comes back as `error` with smartctl's own message.
pub fn parse_smartctl(device: &str, json: &[u8]) -> Result<SmartDisk, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("smartctl printed no JSON: {e}"))?;
    let mut d = SmartDisk {
        device: device.to_string(),
        ..Default::default()
    };
    let exit = v["smartctl"]["exit_status"].as_u64().unwrap_or(0);
    // Bits 0 and 1: the command line did not parse, or the device could
    // not be opened: nothing below is meaningful.
    if exit & 0b11 != 0 {
        let msg = v["smartctl"]["messages"]
            .as_array()
            .and_then(|m| m.iter().find_map(|m| m["string"].as_str()))
            .unwrap_or("smartctl could not read the device")
            .to_string();
        d.error = Some(msg);
        return Ok(d);
    }
    if let Some(name) = v["device"]["name"].as_str() {
        d.device = name.to_string();
    }
    d.model = v["model_name"].as_str().unwrap_or("").to_string();
    d.serial = v["serial_number"].as_str().unwrap_or("").to_string();
    d.passed = v["smart_status"]["passed"].as_bool();
    d.temperature_c = v["temperature"]["current"].as_f64();
    if let Some(table) = v["ata_smart_attributes"]["table"].as_array() {
        for a in table {
            let raw = a["raw"]["value"].as_u64();
            match a["id"].as_u64() {
                Some(5) => d.reallocated = raw,
                Some(187) => d.reported_uncorrect = raw,
                Some(188) => d.command_timeout = raw,
                Some(197) => d.pending = raw,
                Some(198) => d.offline_uncorrectable = raw,
                Some(199) => d.crc_errors = raw,
                _ => {}
            }
        }
    }
    let nvme = &v["nvme_smart_health_information_log"];
    if nvme.is_object() {
        d.media_errors = nvme["media_errors"].as_u64();
        d.percentage_used = nvme["percentage_used"].as_u64();
        if d.temperature_c.is_none() {
            d.temperature_c = nvme["temperature"].as_f64();
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_lines_parse_with_and_without_full() {
        let r = parse_psi(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\nfull avg10=0.50 avg60=0.10 avg300=0.00 total=99\n",
        )
        .unwrap();
        assert_eq!(r.some.avg10, 1.5);
        assert_eq!(r.some.total_us, 12345);
        assert_eq!(r.full.unwrap().total_us, 99);
        let cpu = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        assert!(cpu.full.is_none());
        let err = parse_psi("some avg10=x avg60=0 avg300=0 total=1").unwrap_err();
        assert!(err.contains("avg10=x"), "{err}");
        assert!(parse_psi("").is_err());
    }

    #[test]
    fn vmstat_oom_kill_is_found_or_absent() {
        assert_eq!(
            parse_vmstat_oom("nr_free_pages 5\noom_kill 3\npgfault 9\n"),
            Some(3)
        );
        assert_eq!(parse_vmstat_oom("nr_free_pages 5\n"), None);
    }

    #[test]
    fn a_device_smartctl_could_not_open_is_an_error_not_zeros() {
        let json = br#"{"smartctl":{"exit_status":2,"messages":[{"string":"Smartctl open device: /dev/sda failed: Permission denied","severity":"error"}]}}"#;
        let d = parse_smartctl("/dev/sda", json).unwrap();
        assert!(d.error.as_deref().unwrap().contains("Permission denied"));
        assert_eq!(d.passed, None);
        assert!(d.predictive().is_empty());
        assert!(parse_smartctl("/dev/sda", b"not json").is_err());
    }

    #[test]
    fn findings_put_critical_first() {
        let h = NodeHealth {
            version: HEALTH_VERSION,
            read_at: Timestamp::from_nanos(1),
            psi: Reading::unavailable("no"),
            oom_kills: Reading::Ok { value: 0 },
            memory_errors: Reading::Ok {
                value: vec![MemoryController {
                    name: "mc0".into(),
                    corrected: 4,
                    uncorrected: 1,
                }],
            },
            temperatures: Reading::unavailable("no"),
            throttling: Reading::unavailable("no"),
            cpu_freq: Reading::unavailable("no"),
            network: Reading::unavailable("no"),
            io_errors: Reading::Ok { value: vec![] },
            smart: Reading::Ok {
                value: vec![SmartDisk {
                    device: "/dev/sda".into(),
                    passed: Some(true),
                    pending: Some(8),
                    ..Default::default()
                }],
            },
        };
        let f = findings(&h, &FindingLimits::default());
        let texts: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(f[0].level, Level::Critical, "{texts:?}");
        assert!(texts[0].contains("1 uncorrected"), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("pending 8")), "{texts:?}");
        assert_eq!(h.unavailable().len(), 5);
    }

    #[test]
    fn the_stable_part_ignores_moving_figures_but_not_counters() {
        let mut a = NodeHealth {
            version: HEALTH_VERSION,
            read_at: Timestamp::from_nanos(1),
            psi: Reading::Ok {
                value: Psi {
                    memory: Some(parse_psi("some avg10=1.00 avg60=0 avg300=0 total=5\n").unwrap()),
                    ..Default::default()
                },
            },
            oom_kills: Reading::Ok { value: 3 },
            memory_errors: Reading::unavailable("no"),
            temperatures: Reading::Ok {
                value: vec![Temperature {
                    chip: "coretemp".into(),
                    label: "Core 0".into(),
                    celsius: 50.0,
                    crit_celsius: None,
                }],
            },
            throttling: Reading::unavailable("no"),
            cpu_freq: Reading::unavailable("no"),
            network: Reading::unavailable("no"),
            io_errors: Reading::unavailable("no"),
            smart: Reading::unavailable("no"),
        };
        let mut b = a.clone();
        b.read_at = Timestamp::from_nanos(2);
        b.psi = Reading::Ok {
            value: Psi {
                memory: Some(parse_psi("some avg10=3.00 avg60=1 avg300=0 total=9\n").unwrap()),
                ..Default::default()
            },
        };
        if let Reading::Ok { value } = &mut b.temperatures {
            value[0].celsius = 51.0;
        }
        assert_eq!(a.stable_part(), b.stable_part());
        assert!(!b.under_pressure(5.0));
        assert!(b.under_pressure(2.0));
        b.oom_kills = Reading::Ok { value: 4 };
        assert_ne!(a.stable_part(), b.stable_part(), "a counter moved");
        a.smart = Reading::unavailable("smartctl is not installed");
        b.oom_kills = Reading::Ok { value: 3 };
        assert_ne!(a.stable_part(), b.stable_part(), "availability changed");
    }
}
