//! What fires: the rules turned into candidate alerts from one snapshot of
//! the store, and the candidates reconciled with the stored alerts into
//! state changes and notifications. Pure functions: no I/O here.

use super::config::AlertsConfig;
use plumb_model::Timestamp;
use plumb_model::alerts::{Alert, AlertState, Annotations, RuleInfo, Severity, fingerprint};
use plumb_model::health::NodeHealth;
use plumb_model::insights::{ErrorGroup, ErrorStatus, SlowRun};
use plumb_model::node::{NodeState, NodeStatus};
use plumb_store::alerts::{AlertRow, JobOutcomes};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Everything the rules read, taken in one store read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every node with its last report.
    pub nodes: Vec<NodeStatus>,
    /// Disk samples per (node, mount).
    pub disk_samples: HashMap<(String, String), Vec<(Timestamp, u64)>>,
    /// Outcomes of recent job names.
    pub jobs: Vec<JobOutcomes>,
    /// Runs running longer than usual.
    pub slow_runs: Vec<SlowRun>,
    /// Error groups seen recently.
    pub error_groups: Vec<ErrorGroup>,
    /// Every stored alert.
    pub alerts: Vec<AlertRow>,
    /// Groups of nodes (same labels) whose software differs.
    pub drift: Vec<crate::env::GroupDrift>,
    /// Software changes within the `env_change` rule's window, newest
    /// first.
    pub env_changes: Vec<crate::env::NodeEnvChange>,
    /// Health readings of every node that is not down and sent any.
    pub health: Vec<HealthSeries>,
    /// Every node's latest benchmark with its earlier ones.
    pub benches: Vec<BenchSeries>,
    /// Whether the collector snapshots the stacks of slow runs by itself
    /// (`[insights.slow] evidence`), so the slow-run alert can point at them.
    pub evidence: bool,
}

/// One node's health readings, as the health rules read them.
#[derive(Debug, Clone, Default)]
pub struct HealthSeries {
    /// The node.
    pub node: String,
    /// Its latest readings, newest first (as many as the pressure rule
    /// needs; at least the latest).
    pub recent: Vec<NodeHealth>,
    /// Its oldest reading within each rule's window, by rule key (`smart`,
    /// `memory_errors`, `thermal_throttle`, `oom_kill`, `io_errors`).
    pub baseline: HashMap<&'static str, NodeHealth>,
}

/// One node's benchmark results, as the `node_bench_drop` rule reads them.
#[derive(Debug, Clone)]
pub struct BenchSeries {
    /// The node.
    pub node: String,
    /// Its latest result.
    pub latest: plumb_model::bench::NodeBench,
    /// The ones before it, newest first.
    pub earlier: Vec<plumb_model::bench::NodeBench>,
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Labels, `alertname` and `severity` included.
    pub labels: BTreeMap<String, String>,
    /// Summary and description.
    pub annotations: Annotations,
    /// Severity.
    pub severity: Severity,
    /// The rule's `for`.
    pub for_: Duration,
}

fn candidate(
    alertname: &str,
    severity: Severity,
    for_: Duration,
    labels: &[(&str, &str)],
    summary: String,
    mut description: String,
    note: &Option<String>,
) -> Candidate {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("alertname".into(), alertname.into());
    l.insert("severity".into(), severity.as_str().into());
    if let Some(n) = note {
        description.push(' ');
        description.push_str(n);
    }
    Candidate {
        labels: l,
        annotations: Annotations {
            summary,
            description,
        },
        severity,
        for_,
    }
}

/// Alert names, one per rule.
pub const DISK_LOW: &str = "DiskSpaceLow";
/// See [`DISK_LOW`].
pub const DISK_FILL: &str = "DiskWillFill";
/// See [`DISK_LOW`].
pub const NODE_DOWN: &str = "NodeDown";
/// See [`DISK_LOW`].
pub const SLOW_RUN: &str = "RunLongerThanUsual";
/// See [`DISK_LOW`].
pub const FAILURE_RATE: &str = "JobFailureRate";
/// See [`DISK_LOW`].
pub const NEW_ERROR: &str = "NewErrorGroup";
/// See [`DISK_LOW`].
pub const CLOCK_OFFSET: &str = "ClockOffset";
/// See [`DISK_LOW`].
pub const ENV_DRIFT: &str = "EnvironmentDrift";
/// Alert name of the `env_change` rule.
pub const ENV_CHANGE: &str = "EnvironmentChanged";
/// See [`DISK_LOW`].
pub const SMART_FAILING: &str = "DiskSmartFailing";
/// See [`DISK_LOW`].
pub const SMART_RISING: &str = "DiskSmartAttributeRising";
/// See [`DISK_LOW`].
pub const MEMORY_UNCORRECTED: &str = "MemoryUncorrectedErrors";
/// See [`DISK_LOW`].
pub const MEMORY_CORRECTED: &str = "MemoryCorrectedErrors";
/// See [`DISK_LOW`].
pub const THERMAL_THROTTLE: &str = "CpuThermalThrottling";
/// See [`DISK_LOW`].
pub const OOM_KILL: &str = "NodeOomKills";
/// See [`DISK_LOW`].
pub const IO_ERRORS: &str = "IoErrors";
/// See [`DISK_LOW`].
pub const PRESSURE: &str = "NodePressure";
/// See [`DISK_LOW`].
pub const BENCH_DROP: &str = "NodeBenchmarkDrop";

/// The candidates of the `node_bench_drop` rule: one per node and figure
/// whose latest value is far worse than the median of its history.
fn bench_candidates(cfg: &AlertsConfig, snap: &Snapshot, out: &mut Vec<Candidate>) {
    let r = &cfg.rules.node_bench_drop;
    if !r.enabled {
        return;
    }
    for s in &snap.benches {
        let node = s.node.as_str();
        let n = s.earlier.len();
        for d in plumb_model::bench::drops(&s.latest, &s.earlier, r.drop.0) {
            let value = crate::alerts::figure(d.value);
            let median = crate::alerts::figure(d.median);
            out.push(candidate(
                BENCH_DROP,
                r.severity,
                r.for_.0,
                &[("node", node), ("figure", d.figure)],
                format!(
                    "{} on {node} dropped {:.0}%: {value} {} against a median of {median}",
                    d.label, d.worse_pct, d.unit
                ),
                format!(
                    "Node {node}'s latest benchmark measured {} at {value} {unit}, {:.0}% worse than the median of its {n} earlier results ({median} {unit}; threshold {}%): a failing disk, thermal throttling or a noisy neighbour makes jobs there slower. See `plumb nodes show {node}` and `plumb nodes health {node}`.",
                    d.label.to_lowercase(),
                    d.worse_pct,
                    r.drop.0,
                    unit = d.unit,
                ),
                &r.note,
            ));
        }
    }
}

/// How much a counter rose from `base` to `now`; a lower value now means
/// the node rebooted (counters start again from 0), so all of `now` is new.
fn rise(base: u64, now: u64) -> u64 {
    if now >= base { now - base } else { now }
}

/// A counter rule: its key, alert name, settings, how to read the counter
/// and what it counts, in words.
type CounterCheck<'a> = (
    &'static str,
    &'static str,
    &'a super::config::CounterRule,
    fn(&NodeHealth) -> Option<u64>,
    &'static str,
);

/// The candidates of the health rules.
fn health_candidates(cfg: &AlertsConfig, snap: &Snapshot, out: &mut Vec<Candidate>) {
    let r = &cfg.rules;
    for s in &snap.health {
        let Some(h) = s.recent.first() else {
            continue;
        };
        let node = s.node.as_str();
        if r.smart.enabled
            && let Some(disks) = h.smart.ok()
        {
            let base: Vec<_> = s
                .baseline
                .get("smart")
                .and_then(|b| b.smart.ok())
                .cloned()
                .unwrap_or_default();
            for d in disks {
                if d.passed == Some(false) {
                    out.push(candidate(
                        SMART_FAILING,
                        r.smart.severity,
                        r.smart.for_.0,
                        &[("node", node), ("device", &d.device)],
                        format!("disk {} on {node} fails its SMART self-assessment", d.device),
                        format!(
                            "smartctl says the overall health of {} ({} {}) on node {node} is FAILED: replace it before it fails its jobs. Attributes: {}.",
                            d.device,
                            d.model,
                            d.serial,
                            attrs(&d.predictive())
                        ),
                        &r.smart.note,
                    ));
                }
                let Some(b) = base
                    .iter()
                    .find(|b| b.device == d.device && b.serial == d.serial)
                else {
                    continue;
                };
                let before = b.predictive();
                let rose: Vec<String> = d
                    .predictive()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let was = before.iter().find(|(bk, _)| *bk == k)?.1;
                        (v > was).then(|| format!("{k} {was} -> {v}"))
                    })
                    .collect();
                if !rose.is_empty() {
                    out.push(candidate(
                        SMART_RISING,
                        r.smart.rising_severity,
                        r.smart.for_.0,
                        &[("node", node), ("device", &d.device)],
                        format!("SMART attributes of {} on {node} rose", d.device),
                        format!(
                            "Within the last {} the SMART attributes that predict a failure rose on {} ({} {}) of node {node}: {}.",
                            crate::alerts::human(r.smart.window.0),
                            d.device,
                            d.model,
                            d.serial,
                            rose.join(", ")
                        ),
                        &r.smart.note,
                    ));
                }
            }
        }
        if r.memory_errors.enabled && h.memory_errors.ok().is_some() {
            let ue = h.uncorrected_memory_errors();
            if ue > 0 {
                out.push(candidate(
                    MEMORY_UNCORRECTED,
                    r.memory_errors.severity,
                    r.memory_errors.for_.0,
                    &[("node", node)],
                    format!("{ue} uncorrected memory error(s) on {node}"),
                    format!(
                        "EDAC counts {ue} uncorrected memory error(s) on node {node} since boot ({}): data in memory was lost; move work off it and check the DIMMs.",
                        controllers(h)
                    ),
                    &r.memory_errors.note,
                ));
            }
            let ce = h.corrected_memory_errors();
            let base = s
                .baseline
                .get("memory_errors")
                .map(|b| b.corrected_memory_errors())
                .unwrap_or(ce);
            let rose = rise(base, ce);
            if rose > r.memory_errors.corrected_above {
                out.push(candidate(
                    MEMORY_CORRECTED,
                    r.memory_errors.corrected_severity,
                    r.memory_errors.for_.0,
                    &[("node", node)],
                    format!("{rose} corrected memory errors on {node} within {}", crate::alerts::human(r.memory_errors.window.0)),
                    format!(
                        "EDAC counted {rose} corrected memory errors on node {node} within the last {} (threshold {}; {ce} since boot: {}): a DIMM that corrects often tends to fail.",
                        crate::alerts::human(r.memory_errors.window.0),
                        r.memory_errors.corrected_above,
                        controllers(h)
                    ),
                    &r.memory_errors.note,
                ));
            }
        }
        let counters: [CounterCheck<'_>; 3] = [
            (
                "thermal_throttle",
                THERMAL_THROTTLE,
                &r.thermal_throttle,
                |h| h.throttling.ok().map(|t| t.total()),
                "thermal throttle events",
            ),
            (
                "oom_kill",
                OOM_KILL,
                &r.oom_kill,
                |h| h.oom_kills.ok().copied(),
                "OOM kills",
            ),
            (
                "io_errors",
                IO_ERRORS,
                &r.io_errors,
                |h| h.io_errors.ok().map(|_| h.io_error_total()),
                "I/O errors",
            ),
        ];
        for (key, name, rule, get, what) in counters {
            if !rule.enabled {
                continue;
            }
            let Some(now) = get(h) else {
                continue;
            };
            let Some(base) = s.baseline.get(key).and_then(get) else {
                continue;
            };
            let rose = rise(base, now);
            if rose >= rule.at_least {
                let hint = match key {
                    "thermal_throttle" => {
                        " The CPU slowed itself down to cool: check cooling, fans and airflow; jobs run slower on it meanwhile."
                    }
                    "oom_kill" => {
                        " The kernel killed processes to free memory: see `plumb show` of the runs that ended on it (a run the OOM killer stopped says so)."
                    }
                    _ => {
                        " A disk or file system is failing or was mishandled: see the kernel log (dmesg) and `plumb nodes health`."
                    }
                };
                out.push(candidate(
                    name,
                    rule.severity,
                    rule.for_.0,
                    &[("node", node)],
                    format!("{rose} {what} on {node} within {}", crate::alerts::human(rule.window.0)),
                    format!(
                        "Node {node} counted {rose} {what} within the last {} ({now} since boot; threshold {}).{hint}",
                        crate::alerts::human(rule.window.0),
                        rule.at_least
                    ),
                    &rule.note,
                ));
            }
        }
        if r.pressure.enabled && s.recent.len() >= r.pressure.intervals as usize {
            let n = r.pressure.intervals as usize;
            for (resource, limit) in [
                ("memory", r.pressure.memory_above),
                ("io", r.pressure.io_above),
            ] {
                let values: Option<Vec<f64>> = s.recent[..n]
                    .iter()
                    .map(|h| {
                        let p = h.psi.ok()?;
                        let r = if resource == "memory" {
                            &p.memory
                        } else {
                            &p.io
                        };
                        r.as_ref().map(|r| r.some.avg10)
                    })
                    .collect();
                let Some(values) = values else {
                    continue;
                };
                if values.iter().all(|v| *v >= limit) {
                    let shown: Vec<String> =
                        values.iter().rev().map(|v| format!("{v:.1}%")).collect();
                    out.push(candidate(
                        PRESSURE,
                        r.pressure.severity,
                        r.pressure.for_.0,
                        &[("node", node), ("resource", resource)],
                        format!("sustained {resource} pressure on {node}: {:.1}%", values[0]),
                        format!(
                            "Some tasks on node {node} stalled waiting for {resource} {} of the time (PSI some avg10 over its last {n} readings, oldest first), at or above the {limit}% threshold: work there runs slower than it should.",
                            shown.join(", ")
                        ),
                        &r.pressure.note,
                    ));
                }
            }
        }
    }
}

fn attrs(v: &[(&str, u64)]) -> String {
    if v.is_empty() {
        return "none reported".into();
    }
    v.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn controllers(h: &NodeHealth) -> String {
    h.memory_errors
        .ok()
        .map(|v| {
            v.iter()
                .map(|m| {
                    format!(
                        "{}: {} corrected, {} uncorrected",
                        m.name, m.corrected, m.uncorrected
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn human_secs(s: f64) -> String {
    crate::alerts::human(Duration::from_secs_f64(s.max(0.0)))
}

/// The candidates of every enabled rule. `started` is when evaluation
/// started on this collector (a "new" error group is one first seen since).
pub fn evaluate(cfg: &AlertsConfig, snap: &Snapshot, started: Timestamp) -> Vec<Candidate> {
    let r = &cfg.rules;
    let mut out = Vec::new();
    for n in &snap.nodes {
        // A node that is down reports nothing new: its last disks would
        // fire stale alerts. Node down says what matters.
        let down = n.state == NodeState::Down;
        for d in &n.report.disks {
            if down || d.total == 0 {
                continue;
            }
            let pct = d.available as f64 * 100.0 / d.total as f64;
            if r.disk_low.enabled
                && (r.disk_low.mounts.is_empty() || r.disk_low.mounts.contains(&d.mount))
            {
                let sev = if pct < r.disk_low.critical_below {
                    Some(Severity::Critical)
                } else if pct < r.disk_low.warning_below {
                    Some(Severity::Warning)
                } else {
                    None
                };
                if let Some(sev) = sev {
                    let threshold = if sev == Severity::Critical {
                        r.disk_low.critical_below
                    } else {
                        r.disk_low.warning_below
                    };
                    out.push(candidate(
                        DISK_LOW,
                        sev,
                        r.disk_low.for_.0,
                        &[("node", &n.node), ("mount", &d.mount)],
                        format!("{} on {} has {pct:.1}% space left", d.mount, n.node),
                        format!(
                            "{} of {} available on {} ({}, {}) on node {}: below the {threshold}% threshold.",
                            gib(d.available),
                            gib(d.total),
                            d.mount,
                            d.device,
                            d.fs_type,
                            n.node
                        ),
                        &r.disk_low.note,
                    ));
                }
            }
            if r.disk_fill.enabled
                && let Some(s) = snap.disk_samples.get(&(n.node.clone(), d.mount.clone()))
                && let Some(left) = plumb_model::alerts::predict_fill_seconds(
                    s,
                    r.disk_fill.min_span.0.as_secs_f64(),
                )
                && left <= r.disk_fill.within.0.as_secs_f64()
            {
                out.push(candidate(
                    DISK_FILL,
                    r.disk_fill.severity,
                    r.disk_fill.for_.0,
                    &[("node", &n.node), ("mount", &d.mount)],
                    format!(
                        "{} on {} is predicted to fill in {}",
                        d.mount,
                        n.node,
                        human_secs(left)
                    ),
                    format!(
                        "At the rate of the last {} samples ({} available now), {} on node {} has no space left in {}: within the {} threshold.",
                        s.len(),
                        gib(d.available),
                        d.mount,
                        n.node,
                        human_secs(left),
                        crate::alerts::human(r.disk_fill.within.0)
                    ),
                    &r.disk_fill.note,
                ));
            }
        }
        if r.clock_offset.enabled
            && !down
            && let Some(c) = &n.report.clock
            && c.offset_ns.unsigned_abs() > r.clock_offset.max_offset.0.as_nanos() as u64
        {
            out.push(candidate(
                CLOCK_OFFSET,
                r.clock_offset.severity,
                r.clock_offset.for_.0,
                &[("node", &n.node)],
                format!(
                    "the clock of {} is {} off the collector's",
                    n.node,
                    signed_secs(c.offset_ns)
                ),
                format!(
                    "Node {}'s clock is {} the collector's by {} (± {}, measured by its plumb agent at {} on its clock): beyond the {} threshold. plumb measures clocks and alerts; setting them is chrony's job: look at `chronyc tracking` and `chronyc sources` on {}.",
                    n.node,
                    if c.offset_ns > 0 { "ahead of" } else { "behind" },
                    signed_secs(c.offset_ns.abs()).trim_start_matches('+'),
                    signed_secs(c.error_ns).trim_start_matches('+'),
                    c.latest,
                    crate::alerts::human(r.clock_offset.max_offset.0),
                    n.node
                ),
                &r.clock_offset.note,
            ));
        }
        if r.node_down.enabled && down {
            out.push(candidate(
                NODE_DOWN,
                r.node_down.severity.unwrap_or(Severity::Critical),
                r.node_down.for_.map(|d| d.0).unwrap_or_default(),
                &[("node", &n.node)],
                format!("node {} is down", n.node),
                format!(
                    "No heartbeat from node {} since {} (down since {}).",
                    n.node, n.last_heartbeat, n.since
                ),
                &r.node_down.note,
            ));
        }
    }
    if r.env_drift.enabled {
        for g in &snap.drift {
            for node in g.drift.drifted_nodes() {
                let differs = g.drift.of_node(node);
                let shown: Vec<String> = differs
                    .iter()
                    .take(10)
                    .map(|(c, mine, most)| {
                        format!(
                            "{c} {} (most have {})",
                            mine.unwrap_or("absent"),
                            most.unwrap_or("it absent, or no majority")
                        )
                    })
                    .collect();
                let group = if g.group.is_empty() {
                    "(no labels)".to_string()
                } else {
                    g.group.clone()
                };
                out.push(candidate(
                    ENV_DRIFT,
                    r.env_drift.severity.unwrap_or(Severity::Warning),
                    r.env_drift.for_.map(|d| d.0).unwrap_or_default(),
                    &[("node", node), ("group", &group)],
                    format!(
                        "the software of {node} differs from its group {group} in {} component{}",
                        differs.len(),
                        if differs.len() == 1 { "" } else { "s" }
                    ),
                    format!(
                        "Node {node} (labels {group}) differs from most of the {} nodes with its labels: {}{}. See `plumb env drift` and `plumb env diff`.",
                        g.drift.nodes.len(),
                        shown.join("; "),
                        if differs.len() > 10 { "; ..." } else { "" }
                    ),
                    &r.env_drift.note,
                ));
            }
        }
    }
    if r.env_change.enabled {
        let mut seen = std::collections::HashSet::new();
        // The newest change of each node speaks for it; one that touched
        // no component (hardware, the agent's own libraries) is not news.
        for c in &snap.env_changes {
            if !seen.insert(c.node.as_str()) || (c.changes.is_empty() && !c.unknown) {
                continue;
            }
            let shown: Vec<String> = c.changes.iter().take(10).map(|x| x.to_string()).collect();
            let what = if c.unknown {
                "its previous fingerprint is no longer stored".to_string()
            } else {
                format!(
                    "{}{}",
                    shown.join("; "),
                    if c.changes.len() > 10 { "; ..." } else { "" }
                )
            };
            out.push(candidate(
                ENV_CHANGE,
                r.env_change.severity,
                std::time::Duration::ZERO,
                &[("node", &c.node)],
                format!(
                    "the software of {} changed in {} component{}",
                    c.node,
                    c.changes.len(),
                    if c.changes.len() == 1 { "" } else { "s" }
                ),
                format!(
                    "Node {} reported a new software fingerprint at {}: {what}. See `plumb env --node {}` and the node page.",
                    c.node, c.at, c.node
                ),
                &r.env_change.note,
            ));
        }
    }
    health_candidates(cfg, snap, &mut out);
    bench_candidates(cfg, snap, &mut out);
    if r.slow_run.enabled {
        for s in &snap.slow_runs {
            let id = s.run_id.to_string();
            out.push(candidate(
                SLOW_RUN,
                r.slow_run.severity,
                r.slow_run.for_.0,
                &[("job", &s.name), ("node", &s.host), ("run_id", &id)],
                format!("run {} of {} is taking longer than usual", id, s.name),
                format!(
                    "Run {id} of {} on {} has been running for {}; its name's p50 is {} and p95 {} ({:.1}x the p95).",
                    s.name,
                    s.host,
                    human_secs(s.elapsed_s),
                    human_secs(s.p50_s),
                    human_secs(s.p95_s),
                    s.factor
                ) + &if snap.evidence {
                    format!(
                        " A stack snapshot of its processes is taken automatically and attached to the run: plumb show {id}, or /runs/{id} on the dashboard."
                    )
                } else {
                    String::new()
                },
                &r.slow_run.note,
            ));
        }
    }
    if r.failure_rate.enabled {
        for j in &snap.jobs {
            if j.runs < r.failure_rate.min_runs {
                continue;
            }
            let share = j.failed as f64 / j.runs as f64;
            if share > r.failure_rate.above {
                out.push(candidate(
                    FAILURE_RATE,
                    r.failure_rate.severity,
                    r.failure_rate.for_.0,
                    &[("job", &j.name)],
                    format!(
                        "{} of the last {} runs of {} failed",
                        j.failed, j.runs, j.name
                    ),
                    format!(
                        "{:.0}% of the last {} finished runs of {} did not succeed (threshold {:.0}%); the latest ran on {}.",
                        share * 100.0,
                        j.runs,
                        j.name,
                        r.failure_rate.above * 100.0,
                        j.last_host
                    ),
                    &r.failure_rate.note,
                ));
            }
        }
    }
    if r.new_error.enabled {
        let already: HashSet<&str> = snap
            .alerts
            .iter()
            .filter(|a| a.alert.name == NEW_ERROR && a.alert.state != AlertState::Resolved)
            .filter_map(|a| a.alert.labels.get("error").map(String::as_str))
            .collect();
        for g in &snap.error_groups {
            // New since this collector watches, or already alerting before
            // a restart; either way only while the group counts as new.
            if g.status != ErrorStatus::New
                || !(g.first_seen >= started || already.contains(g.fingerprint.as_str()))
            {
                continue;
            }
            let hosts = g.hosts.join(", ");
            out.push(candidate(
                NEW_ERROR,
                r.new_error.severity.unwrap_or(Severity::Warning),
                r.new_error.for_.map(|d| d.0).unwrap_or_default(),
                &[("error", &g.fingerprint), ("kind", &g.kind)],
                format!("new error: {}: {}", g.kind, first_line(&g.message)),
                format!(
                    "A new {} error group {} ({}) first seen {}: {} occurrence(s) in {} run(s) on {}.",
                    g.language, g.fingerprint, g.kind, g.first_seen, g.count, g.runs, hosts
                ),
                &r.new_error.note,
            ));
        }
    }
    out
}

/// An offset in seconds with its sign, to the microsecond.
fn signed_secs(ns: i64) -> String {
    format!(
        "{}{:.6} s",
        if ns < 0 { '-' } else { '+' },
        ns.unsigned_abs() as f64 / 1e9
    )
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 200 {
        l.chars().take(200).collect::<String>() + "..."
    } else {
        l.to_string()
    }
}

/// What one evaluation changes.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows to insert or replace.
    pub put: Vec<AlertRow>,
    /// Fingerprints to delete (pending alerts whose condition cleared).
    pub delete: Vec<String>,
    /// Alerts to notify about, as they are after this evaluation.
    pub notify: Vec<Alert>,
}

/// Limits notifications to a number per minute.
#[derive(Debug, Default)]
pub struct RateLimit {
    sent: std::collections::VecDeque<Timestamp>,
}

impl RateLimit {
    /// Whether one more may go at `now` with at most `per_minute`; counts it
    /// if so.
    pub fn allow(&mut self, now: Timestamp, per_minute: u32) -> bool {
        let minute_ago = now.as_nanos() - 60_000_000_000;
        while self
            .sent
            .front()
            .is_some_and(|t| t.as_nanos() <= minute_ago)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= per_minute as usize {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// Reconciles the stored alerts with the candidates at `now`:
/// new conditions go pending (or straight to firing with no `for`), pending
/// ones fire once their `for` has passed, firing ones whose condition
/// cleared resolve, pending ones that cleared are forgotten. An alert is
/// notified when it fires, when it resolves after a firing notification,
/// and again every `repeat_interval` while firing; never twice for the same
/// state otherwise, so restarts and repeated evaluations do not re-notify.
pub fn reconcile(
    cfg: &AlertsConfig,
    stored: &[AlertRow],
    candidates: Vec<Candidate>,
    now: Timestamp,
    limit: &mut RateLimit,
) -> Outcome {
    let mut by_fp: HashMap<&str, &AlertRow> = stored
        .iter()
        .map(|r| (r.alert.fingerprint.as_str(), r))
        .collect();
    let mut out = Outcome::default();
    let mut seen = HashSet::new();
    for c in candidates {
        let fp = fingerprint(&c.labels);
        if !seen.insert(fp.clone()) {
            continue;
        }
        let prev = by_fp.remove(fp.as_str());
        let for_ns = c.for_.as_nanos().min(i64::MAX as u128) as i64;
        let (active_since, was, starts_at, notified, last_notified) = match prev {
            Some(p) if p.alert.state != AlertState::Resolved => (
                p.active_since,
                p.alert.state,
                p.alert.starts_at,
                p.notified,
                p.alert.last_notified,
            ),
            // A resolved alert that holds again is a new episode; what was
            // notified about the last one still counts, so its firing is
            // told.
            Some(p) => (
                now,
                AlertState::Resolved,
                now,
                p.notified,
                p.alert.last_notified,
            ),
            None => (now, AlertState::Resolved, now, None, None),
        };
        let state = if now.as_nanos() - active_since.as_nanos() >= for_ns {
            AlertState::Firing
        } else {
            AlertState::Pending
        };
        let starts_at = if state == AlertState::Firing && was != AlertState::Firing {
            now
        } else if was == AlertState::Firing {
            starts_at
        } else {
            active_since
        };
        let mut row = AlertRow {
            alert: Alert {
                fingerprint: fp,
                name: c.labels["alertname"].clone(),
                severity: c.severity,
                state,
                labels: c.labels,
                annotations: c.annotations,
                starts_at,
                ends_at: None,
                last_notified,
            },
            active_since,
            notified,
        };
        if state == AlertState::Firing {
            let due = notified != Some(AlertState::Firing)
                || last_notified.is_none_or(|t| {
                    now.as_nanos() - t.as_nanos() >= cfg.repeat_interval.as_nanos()
                });
            if due && limit.allow(now, cfg.max_per_minute) {
                row.alert.last_notified = Some(now);
                row.notified = Some(AlertState::Firing);
                out.notify.push(row.alert.clone());
            }
        }
        out.put.push(row);
    }
    for (fp, p) in by_fp {
        match p.alert.state {
            AlertState::Pending => out.delete.push(fp.to_string()),
            AlertState::Firing => {
                let mut row = p.clone();
                row.alert.state = AlertState::Resolved;
                row.alert.ends_at = Some(now);
                notify_resolved(cfg, &mut row, now, limit, &mut out.notify);
                out.put.push(row);
            }
            AlertState::Resolved => {
                // Resolved, but the resolution could not be told yet (rate
                // limit): try again.
                if p.notified == Some(AlertState::Firing) {
                    let mut row = p.clone();
                    notify_resolved(cfg, &mut row, now, limit, &mut out.notify);
                    if row.notified != p.notified {
                        out.put.push(row);
                    }
                }
            }
        }
    }
    out
}

fn notify_resolved(
    cfg: &AlertsConfig,
    row: &mut AlertRow,
    now: Timestamp,
    limit: &mut RateLimit,
    notify: &mut Vec<Alert>,
) {
    if row.notified == Some(AlertState::Firing) && limit.allow(now, cfg.max_per_minute) {
        row.notified = Some(AlertState::Resolved);
        row.alert.last_notified = Some(now);
        notify.push(row.alert.clone());
    }
}

/// The effective rules, for `plumb alerts rules` and the dashboard.
pub fn rule_infos(cfg: &AlertsConfig) -> Vec<RuleInfo> {
    let r = &cfg.rules;
    let secs = |d: Duration| d.as_secs_f64();
    vec![
        RuleInfo {
            rule: "disk_low".into(),
            alertname: DISK_LOW.into(),
            enabled: r.disk_low.enabled,
            severity: if r.disk_low.critical_below > 0.0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            for_s: secs(r.disk_low.for_.0),
            condition: format!(
                "disk available below {}% (warning) or {}% (critical), per node and mount{}",
                r.disk_low.warning_below,
                r.disk_low.critical_below,
                if r.disk_low.mounts.is_empty() {
                    String::new()
                } else {
                    format!(" (only {})", r.disk_low.mounts.join(", "))
                }
            ),
        },
        RuleInfo {
            rule: "disk_fill".into(),
            alertname: DISK_FILL.into(),
            enabled: r.disk_fill.enabled,
            severity: r.disk_fill.severity,
            for_s: secs(r.disk_fill.for_.0),
            condition: format!(
                "disk predicted to fill within {} at the rate of the last {} (least squares, at least {} of samples)",
                crate::alerts::human(r.disk_fill.within.0),
                crate::alerts::human(r.disk_fill.window.0),
                crate::alerts::human(r.disk_fill.min_span.0)
            ),
        },
        RuleInfo {
            rule: "node_down".into(),
            alertname: NODE_DOWN.into(),
            enabled: r.node_down.enabled,
            severity: r.node_down.severity.unwrap_or(Severity::Critical),
            for_s: r.node_down.for_.map(|d| secs(d.0)).unwrap_or(0.0),
            condition: "node declared down by the failure detector".into(),
        },
        RuleInfo {
            rule: "slow_run".into(),
            alertname: SLOW_RUN.into(),
            enabled: r.slow_run.enabled,
            severity: r.slow_run.severity,
            for_s: secs(r.slow_run.for_.0),
            condition: format!(
                "running longer than {}x the p95 of its name's past runs (at least {} of them)",
                r.slow_run.factor, r.slow_run.min_history
            ),
        },
        RuleInfo {
            rule: "failure_rate".into(),
            alertname: FAILURE_RATE.into(),
            enabled: r.failure_rate.enabled,
            severity: r.failure_rate.severity,
            for_s: secs(r.failure_rate.for_.0),
            condition: format!(
                "more than {:.0}% of a job name's last {} finished runs failed (at least {} runs)",
                r.failure_rate.above * 100.0,
                r.failure_rate.last,
                r.failure_rate.min_runs
            ),
        },
        RuleInfo {
            rule: "new_error".into(),
            alertname: NEW_ERROR.into(),
            enabled: r.new_error.enabled,
            severity: r.new_error.severity.unwrap_or(Severity::Warning),
            for_s: r.new_error.for_.map(|d| secs(d.0)).unwrap_or(0.0),
            condition: "an error group first seen since the collector started watching".into(),
        },
        RuleInfo {
            rule: "clock_offset".into(),
            alertname: CLOCK_OFFSET.into(),
            enabled: r.clock_offset.enabled,
            severity: r.clock_offset.severity,
            for_s: secs(r.clock_offset.for_.0),
            condition: format!(
                "a node's clock more than {} off the collector's, as its agent measured it",
                crate::alerts::human(r.clock_offset.max_offset.0)
            ),
        },
        RuleInfo {
            rule: "smart".into(),
            alertname: format!("{SMART_FAILING}, {SMART_RISING}"),
            enabled: r.smart.enabled,
            severity: r.smart.severity.max(r.smart.rising_severity),
            for_s: secs(r.smart.for_.0),
            condition: format!(
                "a disk failing its SMART self-assessment ({}), or a predictive attribute higher than within the last {} ({})",
                r.smart.severity,
                crate::alerts::human(r.smart.window.0),
                r.smart.rising_severity
            ),
        },
        RuleInfo {
            rule: "memory_errors".into(),
            alertname: format!("{MEMORY_UNCORRECTED}, {MEMORY_CORRECTED}"),
            enabled: r.memory_errors.enabled,
            severity: r
                .memory_errors
                .severity
                .max(r.memory_errors.corrected_severity),
            for_s: secs(r.memory_errors.for_.0),
            condition: format!(
                "any uncorrected memory error ({}), or more than {} corrected within {} ({})",
                r.memory_errors.severity,
                r.memory_errors.corrected_above,
                crate::alerts::human(r.memory_errors.window.0),
                r.memory_errors.corrected_severity
            ),
        },
        counter_info(
            "thermal_throttle",
            THERMAL_THROTTLE,
            &r.thermal_throttle,
            "CPU thermal-throttle events",
        ),
        counter_info("oom_kill", OOM_KILL, &r.oom_kill, "OOM kills"),
        counter_info(
            "io_errors",
            IO_ERRORS,
            &r.io_errors,
            "block device or ext4 I/O errors",
        ),
        RuleInfo {
            rule: "node_bench_drop".into(),
            alertname: BENCH_DROP.into(),
            enabled: r.node_bench_drop.enabled,
            severity: r.node_bench_drop.severity,
            for_s: secs(r.node_bench_drop.for_.0),
            condition: format!(
                "a figure of a node's latest benchmark {}% or more worse than the median of its last {} earlier results (at least {})",
                r.node_bench_drop.drop.0,
                r.node_bench_drop.history,
                plumb_model::bench::MIN_HISTORY
            ),
        },
        RuleInfo {
            rule: "pressure".into(),
            alertname: PRESSURE.into(),
            enabled: r.pressure.enabled,
            severity: r.pressure.severity,
            for_s: secs(r.pressure.for_.0),
            condition: format!(
                "memory PSI (some, avg10) at or above {}% or I/O at or above {}% in {} readings in a row",
                r.pressure.memory_above, r.pressure.io_above, r.pressure.intervals
            ),
        },
    ]
}

fn counter_info(
    rule: &str,
    alertname: &str,
    c: &super::config::CounterRule,
    what: &str,
) -> RuleInfo {
    RuleInfo {
        rule: rule.into(),
        alertname: alertname.into(),
        enabled: c.enabled,
        severity: c.severity,
        for_s: c.for_.0.as_secs_f64(),
        condition: format!(
            "{what} rose by {} or more within {}",
            c.at_least,
            crate::alerts::human(c.window.0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::node::{CpuLoad, DiskInfo, MemoryInfo, NodeReport};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_nanos(1_800_000_000_000_000_000 + s * 1_000_000_000)
    }

    fn node(name: &str, state: NodeState, avail: u64) -> NodeStatus {
        NodeStatus {
            node: name.into(),
            state,
            since: t(0),
            last_heartbeat: t(0),
            phi: 0.0,
            fingerprint: None,
            report: NodeReport {
                version: 1,
                node: name.into(),
                sent: t(0),
                seq: 0,
                interval_ms: 1000,
                labels: Default::default(),
                boot_id: String::new(),
                uptime_s: 0.0,
                cpu: CpuLoad::default(),
                memory: MemoryInfo::default(),
                disks: vec![DiskInfo {
                    mount: "/data".into(),
                    fs_type: "ext4".into(),
                    device: "/dev/sdb".into(),
                    total: 1000,
                    available: avail,
                    inodes_total: 0,
                    inodes_free: 0,
                }],
                network: vec![],
                runs_in_progress: 0,
                spool: Default::default(),
                fingerprint: None,
                clock: None,
                health: None,
            },
        }
    }

    fn run(
        cfg: &AlertsConfig,
        stored: &mut Vec<AlertRow>,
        snap: &Snapshot,
        now: Timestamp,
    ) -> Vec<Alert> {
        let c = evaluate(cfg, snap, t(0));
        let out = reconcile(cfg, stored, c, now, &mut RateLimit::default());
        stored.retain(|r| {
            !out.delete.contains(&r.alert.fingerprint)
                && !out
                    .put
                    .iter()
                    .any(|p| p.alert.fingerprint == r.alert.fingerprint)
        });
        stored.extend(out.put);
        out.notify
    }

    #[test]
    fn a_software_change_alerts_once_per_node_with_its_newest_components() {
        use crate::env::NodeEnvChange;
        use plumb_model::env::Change;
        let change =
            |node: &str, at: i64, c: &[(&str, Option<&str>, Option<&str>)]| NodeEnvChange {
                node: node.into(),
                at: t(at),
                changes: c
                    .iter()
                    .map(|(k, b, a)| Change {
                        component: k.to_string(),
                        before: b.map(str::to_string),
                        after: a.map(str::to_string),
                    })
                    .collect(),
                unknown: false,
            };
        let mut gone = change("c", 5, &[]);
        gone.unknown = true;
        let snap = Snapshot {
            env_changes: vec![
                change("a", 9, &[("python:numpy", Some("1.26"), Some("2.0"))]),
                change("b", 8, &[]),
                change("a", 3, &[("tool:app", None, Some("1.0"))]),
                gone,
            ],
            ..Default::default()
        };
        let c = evaluate(&AlertsConfig::default(), &snap, t(0));
        let got: Vec<(&str, &str)> = c
            .iter()
            .filter(|c| c.labels["alertname"] == ENV_CHANGE)
            .map(|c| {
                (
                    c.labels["node"].as_str(),
                    c.annotations.description.as_str(),
                )
            })
            .collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "a");
        assert!(
            got[0].1.contains("python:numpy 1.26 -> 2.0"),
            "{}",
            got[0].1
        );
        assert!(
            !got[0].1.contains("tool:app"),
            "only the newest change: {}",
            got[0].1
        );
        assert_eq!(got[1].0, "c");
        assert!(got[1].1.contains("no longer stored"), "{}", got[1].1);
        let mut off = AlertsConfig::default();
        off.rules.env_change.enabled = false;
        assert!(
            evaluate(&off, &snap, t(0))
                .iter()
                .all(|c| c.labels["alertname"] != ENV_CHANGE)
        );
    }

    #[test]
    fn disk_thresholds_pick_the_worst_severity() {
        let cfg = AlertsConfig::default();
        let snap = Snapshot {
            nodes: vec![
                node("ok", NodeState::Up, 500),
                node("low", NodeState::Up, 80),
                node("full", NodeState::Up, 30),
                node("gone", NodeState::Down, 0),
            ],
            ..Default::default()
        };
        let c = evaluate(&cfg, &snap, t(0));
        let got: Vec<_> = c
            .iter()
            .map(|c| {
                (
                    c.labels["alertname"].as_str(),
                    c.labels["node"].as_str(),
                    c.severity,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (DISK_LOW, "low", Severity::Warning),
                (DISK_LOW, "full", Severity::Critical),
                (NODE_DOWN, "gone", Severity::Critical),
            ]
        );
    }

    #[test]
    fn a_clock_beyond_the_threshold_either_way_fires_and_names_chrony() {
        let cfg = AlertsConfig::default();
        let with_clock = |name: &str, state, offset_ns: i64| {
            let mut n = node(name, state, 500);
            n.report.clock = Some(plumb_model::clock::Estimate {
                offset_ns,
                error_ns: 40_000,
                delay_ns: 80_000,
                at: t(0),
                latest: t(0),
                drift_ppm: None,
                samples: 8,
            });
            n
        };
        let snap = Snapshot {
            nodes: vec![
                with_clock("fine", NodeState::Up, 99_000_000),
                with_clock("fast", NodeState::Up, 5_000_000_000),
                with_clock("slow", NodeState::Busy, -150_000_000),
                // A down node's last measurement is stale: node down says
                // what matters.
                with_clock("gone", NodeState::Down, 9_000_000_000),
                node("unmeasured", NodeState::Up, 500),
            ],
            ..Default::default()
        };
        let c: Vec<_> = evaluate(&cfg, &snap, t(0))
            .into_iter()
            .filter(|c| c.labels["alertname"] == CLOCK_OFFSET)
            .collect();
        let nodes: Vec<_> = c.iter().map(|c| c.labels["node"].as_str()).collect();
        assert_eq!(nodes, vec!["fast", "slow"]);
        let d = &c[0].annotations.description;
        assert!(d.contains("ahead of the collector's by 5.000000 s"), "{d}");
        assert!(d.contains("chrony"), "{d}");
        assert!(
            c[1].annotations.description.contains("behind"),
            "{:?}",
            c[1]
        );
        let mut off = AlertsConfig::default();
        off.rules.clock_offset.max_offset = super::super::config::Dur(Duration::ZERO);
        assert!(
            off.validate()
                .unwrap_err()
                .contains("clock_offset.max_offset")
        );
    }

    #[test]
    fn fires_once_then_resolves_once_and_repeats_after_the_interval() {
        let mut cfg = AlertsConfig::default();
        cfg.rules.disk_low.for_ = super::super::config::Dur::secs(10);
        cfg.repeat_interval = super::super::config::Dur::secs(100);
        let mut stored = Vec::new();
        let full = Snapshot {
            nodes: vec![node("n", NodeState::Up, 10)],
            ..Default::default()
        };
        // Pending for 10 s: nothing told.
        assert!(run(&cfg, &mut stored, &full, t(0)).is_empty());
        assert_eq!(stored[0].alert.state, AlertState::Pending);
        assert!(run(&cfg, &mut stored, &full, t(5)).is_empty());
        let fired = run(&cfg, &mut stored, &full, t(10));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert_eq!(fired[0].starts_at, t(10));
        // Still firing: not told again until the repeat interval.
        assert!(run(&cfg, &mut stored, &full, t(20)).is_empty());
        assert!(run(&cfg, &mut stored, &full, t(60)).is_empty());
        assert_eq!(run(&cfg, &mut stored, &full, t(111)).len(), 1);
        // Cleared: resolved once.
        let ok = Snapshot {
            nodes: vec![node("n", NodeState::Up, 900)],
            ..Default::default()
        };
        let resolved = run(&cfg, &mut stored, &ok, t(120));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].ends_at, Some(t(120)));
        assert!(run(&cfg, &mut stored, &ok, t(130)).is_empty());
        // A pending alert that clears is forgotten without a word.
        run(&cfg, &mut stored, &full, t(140));
        assert_eq!(
            stored
                .iter()
                .filter(|r| r.alert.state == AlertState::Pending)
                .count(),
            1
        );
        assert!(run(&cfg, &mut stored, &ok, t(141)).is_empty());
        assert!(stored.iter().all(|r| r.alert.state == AlertState::Resolved));
    }

    #[test]
    fn the_rate_limit_defers_and_a_later_evaluation_tells() {
        let cfg = AlertsConfig {
            max_per_minute: 1,
            ..Default::default()
        };
        let snap = Snapshot {
            nodes: vec![node("a", NodeState::Up, 1), node("b", NodeState::Up, 1)],
            ..Default::default()
        };
        let mut limit = RateLimit::default();
        let c = evaluate(&cfg, &snap, t(0));
        let out = reconcile(&cfg, &[], c, t(0), &mut limit);
        assert_eq!(out.notify.len(), 1);
        let stored = out.put;
        let c = evaluate(&cfg, &snap, t(0));
        assert!(
            reconcile(&cfg, &stored, c.clone(), t(30), &mut limit)
                .notify
                .is_empty()
        );
        assert_eq!(
            reconcile(&cfg, &stored, c, t(61), &mut limit).notify.len(),
            1
        );
    }

    #[test]
    fn failure_rate_needs_enough_runs_and_more_than_the_share() {
        let cfg = AlertsConfig::default();
        let job = |name: &str, runs, failed| JobOutcomes {
            name: name.into(),
            runs,
            failed,
            last_host: "h".into(),
        };
        let snap = Snapshot {
            jobs: vec![job("few", 4, 4), job("half", 10, 5), job("bad", 10, 6)],
            ..Default::default()
        };
        let c = evaluate(&cfg, &snap, t(0));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].labels["job"], "bad");
        assert_eq!(c[0].labels["alertname"], FAILURE_RATE);
    }

    fn sick(oom: u64, throttle: u64, ue: u64, mem_psi: f64, pending: u64) -> NodeHealth {
        use plumb_model::health::*;
        NodeHealth {
            version: HEALTH_VERSION,
            read_at: t(0),
            psi: Reading::Ok {
                value: Psi {
                    cpu: None,
                    memory: Some(PsiResource {
                        some: PsiLine {
                            avg10: mem_psi,
                            ..Default::default()
                        },
                        full: None,
                    }),
                    io: None,
                },
            },
            oom_kills: Reading::Ok { value: oom },
            memory_errors: Reading::Ok {
                value: vec![MemoryController {
                    name: "mc0".into(),
                    corrected: 0,
                    uncorrected: ue,
                }],
            },
            temperatures: Reading::unavailable("a VM"),
            throttling: Reading::Ok {
                value: Throttling {
                    cpus: 2,
                    core_events: throttle,
                    package_events: 0,
                },
            },
            cpu_freq: Reading::unavailable("a VM"),
            network: Reading::Ok { value: vec![] },
            io_errors: Reading::unavailable("virtio"),
            smart: Reading::Ok {
                value: vec![SmartDisk {
                    device: "/dev/sda".into(),
                    serial: "S1".into(),
                    passed: Some(true),
                    pending: Some(pending),
                    ..Default::default()
                }],
            },
        }
    }

    fn series(recent: Vec<NodeHealth>, base: Option<NodeHealth>) -> Snapshot {
        let mut baseline = HashMap::new();
        if let Some(b) = base {
            for k in [
                "smart",
                "memory_errors",
                "thermal_throttle",
                "oom_kill",
                "io_errors",
            ] {
                baseline.insert(k, b.clone());
            }
        }
        Snapshot {
            health: vec![HealthSeries {
                node: "n1".into(),
                recent,
                baseline,
            }],
            ..Default::default()
        }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        let mut v: Vec<&str> = c.iter().map(|c| c.labels["alertname"].as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn health_counters_fire_on_a_rise_within_the_window_not_on_their_level() {
        let cfg = AlertsConfig::default();
        // Counters high since boot but unchanged: nothing.
        let calm = series(vec![sick(50, 9, 0, 0.0, 0)], Some(sick(50, 9, 0, 0.0, 0)));
        assert!(evaluate(&cfg, &calm, t(0)).is_empty());
        // No baseline (the first reading): nothing either.
        assert!(evaluate(&cfg, &series(vec![sick(50, 9, 0, 0.0, 0)], None), t(0)).is_empty());
        // Rises: OOM kill, throttle, a pending sector.
        let rose = series(vec![sick(51, 12, 0, 0.0, 8)], Some(sick(50, 9, 0, 0.0, 0)));
        let c = evaluate(&cfg, &rose, t(0));
        assert_eq!(
            names(&c),
            [THERMAL_THROTTLE, SMART_RISING, OOM_KILL],
            "{c:#?}"
        );
        let smart = c
            .iter()
            .find(|c| c.labels["alertname"] == SMART_RISING)
            .unwrap();
        assert_eq!(smart.labels["device"], "/dev/sda");
        assert!(smart.annotations.description.contains("pending 0 -> 8"));
        // A reboot resets counters: a lower value now is all new.
        let rebooted = series(vec![sick(2, 0, 0, 0.0, 0)], Some(sick(50, 9, 0, 0.0, 0)));
        assert_eq!(names(&evaluate(&cfg, &rebooted, t(0))), [OOM_KILL]);
        // A threshold of 3 needs 3.
        let mut cfg3 = AlertsConfig::default();
        cfg3.rules.oom_kill.at_least = 3;
        assert!(
            names(&evaluate(&cfg3, &rose, t(0)))
                .iter()
                .all(|n| *n != OOM_KILL)
        );
        // Any uncorrected memory error fires, critical, with or without a rise.
        let ue = series(vec![sick(0, 0, 1, 0.0, 0)], None);
        let c = evaluate(&cfg, &ue, t(0));
        assert_eq!(names(&c), [MEMORY_UNCORRECTED]);
        assert_eq!(c[0].severity, Severity::Critical);
    }

    #[test]
    fn pressure_fires_only_after_its_intervals_in_a_row() {
        let cfg = AlertsConfig::default();
        assert_eq!(cfg.rules.pressure.intervals, 3);
        let two = series(vec![sick(0, 0, 0, 50.0, 0), sick(0, 0, 0, 50.0, 0)], None);
        assert!(
            evaluate(&cfg, &two, t(0)).is_empty(),
            "two readings are not three"
        );
        let broken = series(
            vec![
                sick(0, 0, 0, 50.0, 0),
                sick(0, 0, 0, 5.0, 0),
                sick(0, 0, 0, 50.0, 0),
            ],
            None,
        );
        assert!(evaluate(&cfg, &broken, t(0)).is_empty(), "not in a row");
        let three = series(vec![sick(0, 0, 0, 25.0, 0); 3], None);
        let c = evaluate(&cfg, &three, t(0));
        assert_eq!(names(&c), [PRESSURE]);
        assert_eq!(c[0].labels["resource"], "memory");
        let mut off = AlertsConfig::default();
        off.rules.pressure.enabled = false;
        assert!(evaluate(&off, &three, t(0)).is_empty());
    }
}
