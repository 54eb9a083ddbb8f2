//! Node reports (what `plumb agent` sends), node states, and the phi-accrual
//! failure detector that turns heartbeat arrival times into a state.
//!
//! The detector follows Hayashibara et al., "The φ accrual failure detector"
//! (2004): instead of a yes/no timeout, it says how unlikely it is that a
//! heartbeat is merely late, given the inter-arrival times seen so far. A
//! slow node's φ climbs gradually, so it is `suspect` before it is `down`.

use crate::{Fingerprint, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema version of a [`NodeReport`].
pub const NODE_REPORT_VERSION: u32 = 1;

/// One heartbeat of `plumb agent`: the node's health and load right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// Schema version ([`NODE_REPORT_VERSION`]).
    pub version: u32,
    /// The node's name (default: its host name).
    pub node: String,
    /// When the agent took the report (the node's clock).
    pub sent: Timestamp,
    /// Heartbeat sequence number since the agent started.
    pub seq: u64,
    /// The agent's heartbeat interval in milliseconds; seeds the failure
    /// detector before it has seen enough heartbeats.
    pub interval_ms: u64,
    /// Labels given with `--label k=v`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `/proc/sys/kernel/random/boot_id`: changes at every reboot.
    #[serde(default)]
    pub boot_id: String,
    /// Seconds since boot.
    #[serde(default)]
    pub uptime_s: f64,
    /// Load averages and CPU count.
    pub cpu: CpuLoad,
    /// Memory.
    pub memory: MemoryInfo,
    /// Real (non-pseudo) mounted file systems.
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
    /// Network interfaces (loopback excluded) with byte counters.
    #[serde(default)]
    pub network: Vec<NetInfo>,
    /// plumb runs going on on this node.
    #[serde(default)]
    pub runs_in_progress: u32,
    /// The node's shipping spool.
    #[serde(default)]
    pub spool: SpoolStats,
    /// The node's software fingerprint, sent when it changed (and until the
    /// collector acknowledged it), otherwise absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<NodeFingerprint>,
    /// The agent's latest measurement of the node's clock against the
    /// collector's, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<crate::clock::Estimate>,
    /// The node's hardware health, sent when something in it changed and
    /// otherwise at the agent's slow health pace; absent in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Box<crate::health::NodeHealth>>,
}

/// Load averages and CPU count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuLoad {
    /// 1-minute load average.
    pub load1: f64,
    /// 5-minute load average.
    pub load5: f64,
    /// 15-minute load average.
    pub load15: f64,
    /// Logical CPUs online.
    pub cpus: u32,
}

/// Memory, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryInfo {
    /// Total RAM.
    pub total: u64,
    /// Available for new work without swapping (`MemAvailable`).
    pub available: u64,
    /// Total swap.
    pub swap_total: u64,
    /// Free swap.
    pub swap_free: u64,
}

/// One mounted file system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskInfo {
    /// Mount point.
    pub mount: String,
    /// File system type (`ext4`, `xfs`, ...).
    pub fs_type: String,
    /// Device.
    pub device: String,
    /// Size in bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Inodes in total.
    pub inodes_total: u64,
    /// Inodes free.
    pub inodes_free: u64,
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInfo {
    /// Interface name.
    pub interface: String,
    /// Bytes received since boot.
    pub rx_bytes: u64,
    /// Bytes sent since boot.
    pub tx_bytes: u64,
}

/// The state of a node's shipping spool, and what it had to drop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolStats {
    /// Spool files waiting to be shipped.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Runs dropped (whole spool files deleted) because the spool was full,
    /// since the spool was created.
    pub dropped_runs: u64,
    /// Bytes dropped because the spool was full.
    pub dropped_bytes: u64,
}

/// A node's use over one interval of its history (a minute, ten minutes):
/// the highest load, memory and disk use of the heartbeats that arrived in
/// it, so a spike between two samples still shows. What the node charts
/// draw; `at` is the interval's start (collector clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    /// Start of the interval.
    pub at: Timestamp,
    /// Highest 1-minute load average.
    pub load1: f64,
    /// Highest memory in use (total - available), bytes.
    pub mem_used: u64,
    /// Memory in total, bytes (the latest).
    pub mem_total: u64,
    /// Each disk's highest use, by mount.
    #[serde(default)]
    pub disks: Vec<DiskUse>,
}

/// One disk's use in a [`NodeSample`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    /// Mount point.
    pub mount: String,
    /// Bytes in use (total - available).
    pub used: u64,
    /// Size in bytes.
    pub total: u64,
}

impl DiskUse {
    /// The used share in percent (0 for a disk of no size).
    pub fn pct(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 / self.total as f64 * 100.0
        }
    }
}

impl NodeSample {
    /// What one heartbeat says, for the interval starting at `at`.
    pub fn from_report(report: &NodeReport, at: Timestamp) -> NodeSample {
        let mut s = NodeSample {
            at,
            load1: if report.cpu.load1.is_finite() {
                report.cpu.load1.max(0.0)
            } else {
                0.0
            },
            mem_used: report.memory.total.saturating_sub(report.memory.available),
            mem_total: report.memory.total,
            disks: report
                .disks
                .iter()
                .map(|d| DiskUse {
                    mount: d.mount.clone(),
                    used: d.total.saturating_sub(d.available),
                    total: d.total,
                })
                .collect(),
        };
        s.disks.sort_by(|a, b| a.mount.cmp(&b.mount));
        s.disks.dedup_by(|a, b| a.mount == b.mount);
        s
    }

    /// Folds a later heartbeat of the same interval in: the highest load,
    /// memory and disk use, the latest sizes, every mount either reported
    /// (by mount).
    pub fn merge(&mut self, later: &NodeSample) {
        self.load1 = self.load1.max(later.load1);
        self.mem_used = self.mem_used.max(later.mem_used);
        self.mem_total = later.mem_total;
        for d in &later.disks {
            match self.disks.iter_mut().find(|o| o.mount == d.mount) {
                Some(o) => {
                    o.used = o.used.max(d.used);
                    o.total = d.total;
                }
                None => self.disks.push(d.clone()),
            }
        }
        self.disks.sort_by(|a, b| a.mount.cmp(&b.mount));
    }

    /// The fullest disk's used share in percent (0 without disks).
    pub fn disk_max_pct(&self) -> f64 {
        self.disks.iter().map(DiskUse::pct).fold(0.0, f64::max)
    }

    /// Memory in use in percent of the total (0 when unknown).
    pub fn mem_pct(&self) -> f64 {
        if self.mem_total == 0 {
            0.0
        } else {
            self.mem_used as f64 / self.mem_total as f64 * 100.0
        }
    }
}

/// A node's software fingerprint with its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFingerprint {
    /// [`Fingerprint::content_hash`].
    pub hash: String,
    /// The fingerprint.
    pub fingerprint: Fingerprint,
}

/// What the collector thinks of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeats arrive on time.
    Up,
    /// Heartbeats arrive on time, and load or runs are above the threshold.
    Busy,
    /// Heartbeats are late enough that the node may have failed.
    Suspect,
    /// Heartbeats are so late the node is considered failed.
    Down,
}

impl NodeState {
    /// Every state, in display order.
    pub const ALL: [NodeState; 4] = [
        NodeState::Up,
        NodeState::Busy,
        NodeState::Suspect,
        NodeState::Down,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Busy => "busy",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node as the collector lists it (`GET /api/v1/nodes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Current state.
    pub state: NodeState,
    /// Since when it is in that state.
    pub since: Timestamp,
    /// When the last heartbeat arrived (the collector's clock).
    pub last_heartbeat: Timestamp,
    /// φ at the time of the listing.
    pub phi: f64,
    /// The last report.
    pub report: NodeReport,
    /// Content hash of the node's last known fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A recorded change of a node's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTransition {
    /// Node name.
    pub node: String,
    /// The state before (`None` for the first heartbeat ever).
    pub from: Option<NodeState>,
    /// The new state.
    pub to: NodeState,
    /// When it changed (the collector's clock).
    pub at: Timestamp,
    /// φ when it changed.
    pub phi: f64,
}

/// Thresholds that turn φ and load into a [`NodeState`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatePolicy {
    /// φ at or above which a node is suspect.
    pub suspect_phi: f64,
    /// φ at or above which a node is down.
    pub down_phi: f64,
    /// 1-minute load per CPU at or above which a node is busy.
    pub busy_load_per_cpu: f64,
    /// Runs in progress per CPU at or above which a node is busy.
    pub busy_runs_per_cpu: f64,
}

impl Default for StatePolicy {
    fn default() -> Self {
        // φ = 3 means a 1-in-1000 chance that the heartbeat is just late; 8
        // is the threshold Akka and Cassandra use to declare a failure.
        StatePolicy {
            suspect_phi: 3.0,
            down_phi: 8.0,
            busy_load_per_cpu: 1.5,
            busy_runs_per_cpu: 2.0,
        }
    }
}

impl StatePolicy {
    /// The state for φ and the last report.
    pub fn state(&self, phi: f64, report: &NodeReport) -> NodeState {
        if phi >= self.down_phi {
            return NodeState::Down;
        }
        if phi >= self.suspect_phi {
            return NodeState::Suspect;
        }
        let cpus = f64::from(report.cpu.cpus.max(1));
        if report.cpu.load1 / cpus >= self.busy_load_per_cpu
            || f64::from(report.runs_in_progress) / cpus >= self.busy_runs_per_cpu
        {
            NodeState::Busy
        } else {
            NodeState::Up
        }
    }
}

/// How many inter-arrival times the detector remembers.
pub const PHI_WINDOW: usize = 100;

/// φ for a heartbeat `elapsed_ms` after the last one, given recent
/// inter-arrival times `intervals_ms` (falling back to `declared_ms`, the
/// agent's configured interval, while there are fewer than 3).
///
/// The inter-arrival times are modelled as normal with the window's mean and
/// standard deviation. Two guards keep a loaded machine from flapping: the
/// standard deviation is at least half the mean (a perfectly regular
/// node would otherwise be suspect after a few milliseconds of delay), and
/// one whole declared interval of lateness is accepted before φ starts to
/// climb. φ = -log10(P(a heartbeat arrives later than `elapsed`)), computed
/// with the logistic approximation of the normal CDF, which stays finite far
/// into the tail.
pub fn phi(elapsed_ms: f64, intervals_ms: &[f64], declared_ms: f64) -> f64 {
    let declared = declared_ms.max(1.0);
    let (mean, std) = if intervals_ms.len() < 3 {
        (declared, declared / 2.0)
    } else {
        let n = intervals_ms.len() as f64;
        let mean = intervals_ms.iter().sum::<f64>() / n;
        let var = intervals_ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    };
    let std = std.max(mean / 2.0).max(1.0);
    let elapsed = elapsed_ms.max(0.0);
    let y = (elapsed - mean - declared) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    // P(later) = e / (1 + e); for large y it underflows towards 0, so φ is
    // capped rather than infinite.
    let p_later = if e.is_infinite() { 1.0 } else { e / (1.0 + e) };
    let phi = -p_later.max(1e-300).log10();
    phi.clamp(0.0, 300.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sample_keeps_the_highest_use_of_its_interval_and_the_latest_sizes() {
        let t = Timestamp::from_nanos(60_000_000_000);
        let disk = |m: &str, used: u64, total: u64| DiskUse {
            mount: m.into(),
            used,
            total,
        };
        let mut a = NodeSample {
            at: t,
            load1: 2.0,
            mem_used: 10,
            mem_total: 100,
            disks: vec![disk("/", 50, 100)],
        };
        let b = NodeSample {
            at: t,
            load1: 1.0,
            mem_used: 30,
            mem_total: 120,
            disks: vec![disk("/", 40, 200), disk("/data", 5, 10)],
        };
        a.merge(&b);
        assert_eq!(a.load1, 2.0);
        assert_eq!((a.mem_used, a.mem_total), (30, 120));
        assert_eq!(a.disks, vec![disk("/", 50, 200), disk("/data", 5, 10)]);
        assert_eq!(a.disk_max_pct(), 50.0);
        assert_eq!(a.mem_pct(), 25.0);
        a.disks.clear();
        assert_eq!(a.disk_max_pct(), 0.0);
        assert_eq!(disk("/", 1, 0).pct(), 0.0);
    }

    #[test]
    fn phi_is_low_on_time_and_high_when_late() {
        let iv = vec![1000.0; 20];
        assert!(phi(1000.0, &iv, 1000.0) < 0.5);
        let late = phi(4000.0, &iv, 1000.0);
        assert!(late >= 3.0, "{late}");
        assert!(phi(10_000.0, &iv, 1000.0) >= 8.0);
    }

    #[test]
    fn state_policy_orders_down_over_busy() {
        let mut report: NodeReport = serde_json::from_str(
            r#"{"version":1,"node":"n","sent":0,"seq":0,"interval_ms":1000,
                "cpu":{"load1":9.0,"load5":0,"load15":0,"cpus":2},
                "memory":{"total":1,"available":1,"swap_total":0,"swap_free":0}}"#,
        )
        .unwrap();
        let p = StatePolicy::default();
        assert_eq!(p.state(0.1, &report), NodeState::Busy);
        assert_eq!(p.state(9.0, &report), NodeState::Down);
        report.cpu.load1 = 0.1;
        assert_eq!(p.state(0.1, &report), NodeState::Up);
        assert_eq!(p.state(4.0, &report), NodeState::Suspect);
    }

    #[test]
    fn unknown_report_fields_are_rejected() {
        let err = serde_json::from_str::<NodeReport>(
            r#"{"version":1,"node":"n","sent":0,"seq":0,"interval_ms":1,"cpu":{"load1":0,"load5":0,"load15":0,"cpus":1},
               "memory":{"total":1,"available":1,"swap_total":0,"swap_free":0},"colour":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    proptest! {
        #[test]
        fn phi_is_finite_nonnegative_and_monotone(
            intervals in proptest::collection::vec(1.0f64..60_000.0, 0..50),
            declared in 1.0f64..60_000.0,
            a in 0.0f64..1e7,
            b in 0.0f64..1e7,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let p_lo = phi(lo, &intervals, declared);
            let p_hi = phi(hi, &intervals, declared);
            prop_assert!(p_lo.is_finite() && p_lo >= 0.0);
            prop_assert!(p_hi.is_finite() && p_hi >= 0.0);
            prop_assert!(p_hi + 1e-9 >= p_lo, "phi({lo})={p_lo} > phi({hi})={p_hi}");
        }

        #[test]
        fn phi_stays_low_within_one_mean_interval(
            mean in 10.0f64..60_000.0,
            jitter in 0.0f64..0.2,
        ) {
            let intervals: Vec<f64> = (0..20)
                .map(|i| mean * (1.0 + if i % 2 == 0 { jitter } else { -jitter }))
                .collect();
            // A heartbeat that arrives one mean interval after the last one
            // is on time: never suspect.
            prop_assert!(phi(mean, &intervals, mean) < StatePolicy::default().suspect_phi);
        }
    }
}
