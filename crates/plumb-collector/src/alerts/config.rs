//! The `[alerts]` section of plumb.toml, typed, with its defaults and its
//! checks. Unknown keys are refused by serde (the TOML reader names the key
//! and line); values out of range by [`AlertsConfig::validate`], naming the
//! key.

use plumb_model::alerts::Severity;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A duration written as `15s`, `200ms`, `4h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// From seconds.
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }

    /// Nanoseconds, saturated to i64.
    pub fn as_nanos(self) -> i64 {
        self.0.as_nanos().min(i64::MAX as u128) as i64
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        let ns = plumb_model::parse_duration_ns(&s).map_err(serde::de::Error::custom)?;
        if ns < 0 {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is negative: a duration must be 0 or more"
            )));
        }
        Ok(Dur(Duration::from_nanos(ns as u64)))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole milliseconds read best; anything finer is kept exactly, so
        // a printed configuration reads back the same.
        let ns = self.0.as_nanos();
        if ns.is_multiple_of(1_000_000) {
            s.serialize_str(&format!("{}ms", ns / 1_000_000))
        } else {
            s.serialize_str(&format!("{ns}ns"))
        }
    }
}

/// Alert rules, evaluation and delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules at all.
    pub enabled: bool,
    /// Time between evaluations.
    pub interval: Dur,
    /// A firing alert is notified again after this long.
    pub repeat_interval: Dur,
    /// At most this many alert notifications a minute (per alert; the rest
    /// wait for a later evaluation).
    pub max_per_minute: u32,
    /// The collector's URL as receivers should link to it (`externalURL`,
    /// `generatorURL`); default: the API listener.
    pub external_url: Option<String>,
    /// The rules.
    pub rules: Rules,
    /// Webhooks (`[[alerts.webhook]]`).
    pub webhook: Vec<WebhookConfig>,
    /// Commands (`[[alerts.exec]]`).
    pub exec: Vec<ExecConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            interval: Dur::secs(15),
            repeat_interval: Dur::secs(4 * 3600),
            max_per_minute: 30,
            external_url: None,
            rules: Rules::default(),
            webhook: Vec::new(),
            exec: Vec::new(),
        }
    }
}

/// Every rule, under `[alerts.rules.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Disk available below a share of its size, per node and mount.
    pub disk_low: DiskLowRule,
    /// Disk predicted to fill soon at its current rate.
    pub disk_fill: DiskFillRule,
    /// A node the failure detector declared down.
    pub node_down: BasicRule,
    /// A running run longer than usual for its name.
    pub slow_run: SlowRunRule,
    /// Too many failures among a job name's last runs.
    pub failure_rate: FailureRateRule,
    /// An error group first seen since the rule started.
    pub new_error: BasicRule,
    /// A node's clock further from the collector's than `max_offset`.
    pub clock_offset: ClockOffsetRule,
    /// A node whose software differs from most nodes with its labels.
    pub env_drift: BasicRule,
    /// A node whose software changed (an upgrade, a package gone).
    pub env_change: EnvChangeRule,
    /// A disk failing its SMART self-assessment, or a predictive SMART
    /// attribute that rose.
    pub smart: SmartRule,
    /// Uncorrected memory errors, or corrected ones above a rate.
    pub memory_errors: MemoryErrorsRule,
    /// CPU thermal-throttle events.
    pub thermal_throttle: CounterRule,
    /// OOM kills on a node.
    pub oom_kill: CounterRule,
    /// I/O errors of a block device or file system.
    pub io_errors: CounterRule,
    /// Sustained memory or I/O pressure (PSI).
    pub pressure: PressureRule,
    /// A node's new benchmark result far below its own history.
    pub node_bench_drop: BenchDropRule,
}

/// A percentage written as `"30%"` (or a bare number, `30`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Pct(pub f64);

impl<'de> Deserialize<'de> for Pct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pct, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(f64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Num(v) => Ok(Pct(v)),
            Either::Text(s) => {
                let t = s.trim();
                let t = t.strip_suffix('%').unwrap_or(t).trim();
                t.parse::<f64>().map(Pct).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a percentage: write it like \"30%\""
                    ))
                })
            }
        }
    }
}

impl Serialize for Pct {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

/// `[alerts.rules.node_bench_drop]`: a node's latest benchmark
/// (`plumb bench-node`, idle agents) has a figure at least `drop` worse
/// than the median of the same figure in its earlier results (at least
/// [`plumb_model::bench::MIN_HISTORY`] of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchDropRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// How much worse than the median a figure must be (`"30%"`).
    pub drop: Pct,
    /// The median is of at most this many earlier results.
    pub history: u32,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for BenchDropRule {
    fn default() -> Self {
        BenchDropRule {
            enabled: true,
            severity: Severity::Warning,
            drop: Pct(30.0),
            history: 10,
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.smart]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of a disk failing its self-assessment.
    pub severity: Severity,
    /// Severity of a predictive attribute that rose (reallocated, pending,
    /// uncorrectable sectors, CRC errors, NVMe media errors).
    pub rising_severity: Severity,
    /// A rise is a higher value than the node's oldest reading in this
    /// window.
    pub window: Dur,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for SmartRule {
    fn default() -> Self {
        SmartRule {
            enabled: true,
            severity: Severity::Critical,
            rising_severity: Severity::Warning,
            window: Dur::secs(24 * 3600),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.memory_errors]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryErrorsRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of any uncorrected error.
    pub severity: Severity,
    /// Severity of corrected errors above the rate.
    pub corrected_severity: Severity,
    /// Corrected errors fire when more than this many were counted within
    /// `window`.
    pub corrected_above: u64,
    /// The window of the corrected-error rate.
    pub window: Dur,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for MemoryErrorsRule {
    fn default() -> Self {
        MemoryErrorsRule {
            enabled: true,
            severity: Severity::Critical,
            corrected_severity: Severity::Warning,
            corrected_above: 10,
            window: Dur::secs(3600),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// A counter that rose within a window: `[alerts.rules.thermal_throttle]`,
/// `[alerts.rules.oom_kill]`, `[alerts.rules.io_errors]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CounterRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Fire when the counter rose by at least this much...
    pub at_least: u64,
    /// ...since the node's oldest reading within this window.
    pub window: Dur,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for CounterRule {
    fn default() -> Self {
        CounterRule {
            enabled: true,
            severity: Severity::Warning,
            at_least: 1,
            window: Dur::secs(3600),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.env_change]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvChangeRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// The alert fires for this long after a node's software changed,
    /// then resolves by itself (a change is an event, not a state).
    pub window: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for EnvChangeRule {
    fn default() -> Self {
        EnvChangeRule {
            enabled: true,
            severity: Severity::Warning,
            window: Dur::secs(3600),
            note: None,
        }
    }
}

/// `[alerts.rules.pressure]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Memory PSI (some, avg10) in percent at or above which a reading
    /// counts.
    pub memory_above: f64,
    /// The same for I/O.
    pub io_above: f64,
    /// Fire when this many latest readings in a row are at or above.
    pub intervals: u32,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for PressureRule {
    fn default() -> Self {
        PressureRule {
            enabled: true,
            severity: Severity::Warning,
            memory_above: 20.0,
            io_above: 40.0,
            intervals: 3,
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// Settings every rule has; `severity` and `for` default per rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Option<Severity>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    /// Text added to every alert's description (e.g. why a threshold is
    /// unusual).
    pub note: Option<String>,
}

impl Default for BasicRule {
    fn default() -> Self {
        BasicRule {
            enabled: true,
            severity: None,
            for_: None,
            note: None,
        }
    }
}

/// `[alerts.rules.disk_low]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskLowRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Warning when available space is below this percentage of the size.
    pub warning_below: f64,
    /// Critical when below this percentage (0: never critical).
    pub critical_below: f64,
    /// Only these mount points (default: every reported mount).
    pub mounts: Vec<String>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for DiskLowRule {
    fn default() -> Self {
        DiskLowRule {
            enabled: true,
            warning_below: 10.0,
            critical_below: 5.0,
            mounts: Vec::new(),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.disk_fill]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskFillRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Fire when the disk is predicted to be full within this.
    pub within: Dur,
    /// The recent samples the rate is fitted to (older ones are dropped).
    pub window: Dur,
    /// No prediction until the samples span at least this.
    pub min_span: Dur,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for DiskFillRule {
    fn default() -> Self {
        DiskFillRule {
            enabled: true,
            severity: Severity::Warning,
            within: Dur::secs(24 * 3600),
            window: Dur::secs(6 * 3600),
            min_span: Dur::secs(3600),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.slow_run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowRunRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Slow when elapsed exceeds `factor` x the p95 of the name's past runs.
    pub factor: f64,
    /// Past successful runs of the name needed before judging.
    pub min_history: usize,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for SlowRunRule {
    fn default() -> Self {
        let d = plumb_model::insights::SlowConfig::default();
        SlowRunRule {
            enabled: true,
            severity: Severity::Warning,
            factor: d.factor,
            min_history: d.min_history,
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.failure_rate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRateRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Fire when the share of failed runs is above this (0 to 1).
    pub above: f64,
    /// Over a job name's last this many finished runs.
    pub last: u32,
    /// Only judge names with at least this many finished runs.
    pub min_runs: u32,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for FailureRateRule {
    fn default() -> Self {
        FailureRateRule {
            enabled: true,
            severity: Severity::Warning,
            above: 0.5,
            last: 10,
            min_runs: 5,
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[alerts.rules.clock_offset]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockOffsetRule {
    /// Evaluate it.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Fire when a node's measured offset from the collector's clock is
    /// larger than this, either way. `plumb clock` marks such nodes too.
    pub max_offset: Dur,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// Text added to every alert's description.
    pub note: Option<String>,
}

impl Default for ClockOffsetRule {
    fn default() -> Self {
        ClockOffsetRule {
            enabled: true,
            severity: Severity::Warning,
            max_offset: Dur(Duration::from_millis(100)),
            for_: Dur::secs(0),
            note: None,
        }
    }
}

/// `[[alerts.webhook]]`: a JSON POST of Alertmanager's webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Per attempt.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Dur,
}

fn default_webhook_timeout() -> Dur {
    Dur::secs(10)
}

/// `[[alerts.exec]]`: a command (run with `sh -c`) given the same JSON on
/// stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The command line.
    pub command: String,
    /// It is killed after this long.
    #[serde(default = "default_exec_timeout")]
    pub timeout: Dur,
}

fn default_exec_timeout() -> Dur {
    Dur::secs(30)
}

impl AlertsConfig {
    /// Checks values serde cannot: ranges, URLs, empty commands. The error
    /// names the key.
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.rules;
        let pct = |key: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "alerts.rules.{key} = {v}: a percentage between 0 and 100"
                ))
            }
        };
        if self.interval.0 < Duration::from_millis(10) {
            return Err(format!(
                "alerts.interval = {:?}: use 10ms or more",
                self.interval.0
            ));
        }
        if self.max_per_minute == 0 {
            return Err("alerts.max_per_minute = 0: use 1 or more".into());
        }
        pct("disk_low.warning_below", r.disk_low.warning_below)?;
        pct("disk_low.critical_below", r.disk_low.critical_below)?;
        if r.disk_low.critical_below > r.disk_low.warning_below {
            return Err(format!(
                "alerts.rules.disk_low.critical_below = {} is above warning_below = {}: critical must be the lower threshold",
                r.disk_low.critical_below, r.disk_low.warning_below
            ));
        }
        if r.disk_fill.min_span.0 > r.disk_fill.window.0 {
            return Err(format!(
                "alerts.rules.disk_fill.min_span ({:?}) is longer than its window ({:?}): no prediction could ever be made",
                r.disk_fill.min_span.0, r.disk_fill.window.0
            ));
        }
        if !(r.slow_run.factor.is_finite() && r.slow_run.factor > 0.0) {
            return Err(format!(
                "alerts.rules.slow_run.factor = {}: a positive number",
                r.slow_run.factor
            ));
        }
        if !(0.0..1.0).contains(&r.failure_rate.above) {
            return Err(format!(
                "alerts.rules.failure_rate.above = {}: a share from 0 up to (not including) 1, e.g. 0.5",
                r.failure_rate.above
            ));
        }
        if r.failure_rate.last == 0 || r.failure_rate.min_runs > r.failure_rate.last {
            return Err(format!(
                "alerts.rules.failure_rate: last = {} must be at least 1 and at least min_runs = {}",
                r.failure_rate.last, r.failure_rate.min_runs
            ));
        }
        if r.clock_offset.max_offset.0.is_zero() {
            return Err(
                "alerts.rules.clock_offset.max_offset = 0: use a positive duration, e.g. 100ms (no two clocks agree to the nanosecond)"
                    .into(),
            );
        }
        for (key, v) in [
            ("pressure.memory_above", r.pressure.memory_above),
            ("pressure.io_above", r.pressure.io_above),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "alerts.rules.{key} = {v}: a percentage of time stalled above 0 and at most 100"
                ));
            }
        }
        if r.pressure.intervals == 0 {
            return Err(
                "alerts.rules.pressure.intervals = 0: use 1 or more (readings in a row at or above the threshold)"
                    .into(),
            );
        }
        for (key, w) in [
            ("smart.window", r.smart.window),
            ("memory_errors.window", r.memory_errors.window),
            ("thermal_throttle.window", r.thermal_throttle.window),
            ("oom_kill.window", r.oom_kill.window),
            ("io_errors.window", r.io_errors.window),
        ] {
            if w.0.is_zero() {
                return Err(format!(
                    "alerts.rules.{key} = 0: use a positive duration, e.g. 1h (a rise is measured over it)"
                ));
            }
        }
        for (key, n) in [
            ("thermal_throttle.at_least", r.thermal_throttle.at_least),
            ("oom_kill.at_least", r.oom_kill.at_least),
            ("io_errors.at_least", r.io_errors.at_least),
        ] {
            if n == 0 {
                return Err(format!(
                    "alerts.rules.{key} = 0: use 1 or more (a rise of 0 is no event)"
                ));
            }
        }
        let d = r.node_bench_drop.drop.0;
        if !(d > 0.0 && d < 100.0) {
            return Err(format!(
                "alerts.rules.node_bench_drop.drop = {d}%: a percentage above 0 and below 100, e.g. \"30%\""
            ));
        }
        if (r.node_bench_drop.history as usize) < plumb_model::bench::MIN_HISTORY {
            return Err(format!(
                "alerts.rules.node_bench_drop.history = {}: use {} or more (earlier results the median is taken of)",
                r.node_bench_drop.history,
                plumb_model::bench::MIN_HISTORY
            ));
        }
        for (i, w) in self.webhook.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!(
                    "alerts.webhook[{i}].url = {:?}: not an http:// or https:// URL",
                    w.url
                ));
            }
        }
        for (i, e) in self.exec.iter().enumerate() {
            if e.command.trim().is_empty() {
                return Err(format!("alerts.exec[{i}].command is empty"));
            }
        }
        if let Some(u) = &self.external_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "alerts.external_url = {u:?}: not an http:// or https:// URL"
            ));
        }
        Ok(())
    }
}
/// The body of the fuzz target `alerts_config` (in `fuzz/`), as a plain
/// function so the stable tests replay its checked-in corpus
/// (`fuzz/corpus/alerts_config`). Any text must parse to a configuration
/// or give an error, never panic; a configuration that parses must print
/// (as `plumb alerts` shows it) to text that parses to the same
/// configuration.
#[doc(hidden)]
pub fn fuzz_alerts_config(data: &[u8]) {
    let Ok(c) = serde_json::from_slice::<AlertsConfig>(data) else {
        return;
    };
    let _ = c.validate();
    let text = serde_json::to_vec(&c).expect("a configuration serializes");
    let again: AlertsConfig =
        serde_json::from_slice(&text).expect("a printed configuration parses");
    assert_eq!(again, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_corpus_replays_clean() {
        plumb_model::fuzzing::replay("alerts_config", 3, fuzz_alerts_config);
    }

    #[test]
    fn durations_finer_than_a_millisecond_print_exactly() {
        let c: AlertsConfig = serde_json::from_str(r#"{"interval":"1500us"}"#).unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains(r#""interval":"1500000ns""#), "{text}");
        let again: AlertsConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(again.interval, Dur(Duration::from_micros(1500)));
    }

    #[test]
    fn bad_health_thresholds_name_their_key() {
        for (json, key) in [
            (
                r#"{"rules":{"pressure":{"memory_above":0}}}"#,
                "alerts.rules.pressure.memory_above",
            ),
            (
                r#"{"rules":{"pressure":{"io_above":150}}}"#,
                "alerts.rules.pressure.io_above",
            ),
            (
                r#"{"rules":{"pressure":{"intervals":0}}}"#,
                "alerts.rules.pressure.intervals",
            ),
            (
                r#"{"rules":{"oom_kill":{"at_least":0}}}"#,
                "alerts.rules.oom_kill.at_least",
            ),
            (
                r#"{"rules":{"smart":{"window":"0s"}}}"#,
                "alerts.rules.smart.window",
            ),
            (
                r#"{"rules":{"node_bench_drop":{"drop":"120%"}}}"#,
                "alerts.rules.node_bench_drop.drop",
            ),
            (
                r#"{"rules":{"node_bench_drop":{"history":1}}}"#,
                "alerts.rules.node_bench_drop.history",
            ),
        ] {
            let c: AlertsConfig = serde_json::from_str(json).unwrap();
            let err = c.validate().unwrap_err();
            assert!(err.contains(key), "{json}: {err}");
        }
        let err = serde_json::from_str::<AlertsConfig>(r#"{"rules":{"smart":{"treshold":1}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("treshold"), "{err}");
        let err = serde_json::from_str::<AlertsConfig>(r#"{"rules":{"smarts":{}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("smarts"), "{err}");
        assert!(AlertsConfig::default().validate().is_ok());
        let c: AlertsConfig =
            serde_json::from_str(r#"{"rules":{"node_bench_drop":{"drop":"25%"}}}"#).unwrap();
        assert_eq!(c.rules.node_bench_drop.drop, Pct(25.0));
        let err = serde_json::from_str::<AlertsConfig>(
            r#"{"rules":{"node_bench_drop":{"drop":"lots"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lots"), "{err}");
    }
}
