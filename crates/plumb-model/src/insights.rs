//! Insights: error groups (failures grouped by exception fingerprint, as
//! Sentry does) and runs that take longer than usual, as the collector's
//! JSON API returns them (`/api/v1/errors`, `/api/v1/runs/slow`,
//! `/api/v1/durations/{name}`) and the local store computes them.
//!
//! Times are [`Timestamp`]s (integer nanoseconds in JSON), like the rest of
//! the API.

use crate::{Exception, Timestamp, Uuid};
use serde::{Deserialize, Serialize};

/// Where a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    /// First seen within the "new" window (default 24 h).
    New,
    /// An occurrence arrived after the group was resolved.
    Regressed,
    /// Seen before and still occurring (or not yet quiet for long enough).
    Ongoing,
    /// Resolved by hand, or quiet for the configured period.
    Resolved,
}

impl ErrorStatus {
    /// Lowercase name as shown and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorStatus::New => "new",
            ErrorStatus::Regressed => "regressed",
            ErrorStatus::Ongoing => "ongoing",
            ErrorStatus::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "new" => ErrorStatus::New,
            "regressed" => ErrorStatus::Regressed,
            "ongoing" => ErrorStatus::Ongoing,
            "resolved" => ErrorStatus::Resolved,
            _ => {
                return Err(format!(
                    "unknown error status `{s}` (expected new, regressed, ongoing or resolved)"
                ));
            }
        })
    }
}

/// Hosts a list of groups gives per group (a failure on every node of a
/// 1,000-node fleet would otherwise make the list megabytes).
pub const LIST_HOSTS: usize = 10;

/// One group of failures sharing a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// The exception fingerprint (16 hex digits).
    pub fingerprint: String,
    /// The exception type (`ValueError`, `panic`, ...).
    pub kind: String,
    /// A message of one occurrence (the first one seen).
    pub message: String,
    /// `python`, `rust`, `java`, `go`.
    pub language: String,
    /// Occurrences counted (each run once, each OTLP log record once).
    pub count: u64,
    /// The first occurrence.
    pub first_seen: Timestamp,
    /// The latest occurrence.
    pub last_seen: Timestamp,
    /// Hosts it occurred on, sorted (in a list, the first
    /// [`LIST_HOSTS`]; the group's own page has them all).
    pub hosts: Vec<String>,
    /// How many hosts there are, when `hosts` was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts_total: Option<u64>,
    /// Distinct runs it occurred in.
    pub runs: u64,
    /// Where it stands.
    pub status: ErrorStatus,
    /// When it was resolved (by hand or by the quiet period), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// When it last regressed, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regressed_at: Option<Timestamp>,
}

impl ErrorGroup {
    /// How many hosts it occurred on, listed or not.
    pub fn host_count(&self) -> u64 {
        self.hosts_total.unwrap_or(self.hosts.len() as u64)
    }

    /// Keeps the first [`LIST_HOSTS`] hosts, counting them all.
    pub fn shorten_hosts(&mut self) {
        if self.hosts.len() > LIST_HOSTS {
            self.hosts_total = Some(self.hosts.len() as u64);
            self.hosts.truncate(LIST_HOSTS);
        }
    }
}

/// Where an occurrence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OccurrenceSource {
    /// A run that died with an exception.
    Run,
    /// An OTLP log record with `exception.*` attributes.
    Otlp,
}

impl OccurrenceSource {
    /// Lowercase name as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceSource::Run => "run",
            OccurrenceSource::Otlp => "otlp",
        }
    }
}

/// One occurrence of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOccurrence {
    /// The run it happened in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// The host it happened on.
    pub host: String,
    /// When it happened.
    pub at: Timestamp,
    /// Where it came from.
    pub source: OccurrenceSource,
}

/// `GET /api/v1/errors/{fingerprint}`: a group, its recent occurrences
/// (newest first) and a sample exception with its frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorGroupDetail {
    /// The group.
    pub group: ErrorGroup,
    /// Recent occurrences, newest first.
    pub occurrences: Vec<ErrorOccurrence>,
    /// Occurrences per host, most first.
    pub by_host: Vec<HostCount>,
    /// The exception of one occurrence, frames included.
    pub sample: Exception,
    /// Occurrences per interval from the first seen to now (the
    /// dashboard's chart; filled by the collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_time: Option<crate::chart::CountChart>,
}

/// How often a group occurred on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCount {
    /// The host.
    pub host: String,
    /// Occurrences on it.
    pub count: u64,
}

/// `GET /api/v1/errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorGroups {
    /// Groups, most recently seen first.
    pub groups: Vec<ErrorGroup>,
    /// Each group's occurrences per UTC day over the last days (the
    /// list's sparklines), in the order of `groups` (absent from an older
    /// collector).
    #[serde(default)]
    pub sparks: Vec<ErrorSpark>,
}

/// One error group's occurrences per UTC day, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSpark {
    /// The group.
    pub fingerprint: String,
    /// Start of the first day.
    pub from: crate::Timestamp,
    /// Occurrences per day.
    pub per_day: Vec<u64>,
    /// Only the newest occurrences were counted (the earliest days are
    /// short).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Which groups to list and how to judge their status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorQuery {
    /// "Now", for the "new" window.
    pub now: Timestamp,
    /// Only groups seen at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only groups in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ErrorStatus>,
    /// A group is "new" while its first occurrence is younger than this (s).
    pub new_window_s: u64,
    /// At most this many groups.
    pub limit: usize,
}

impl ErrorQuery {
    /// Every group (up to 1,000), judged at `now` with the default window.
    pub fn at(now: Timestamp) -> ErrorQuery {
        ErrorQuery {
            now,
            since: None,
            status: None,
            new_window_s: InsightsConfig::default().new_window_s,
            limit: 1000,
        }
    }
}

/// How slow-run detection judges a running run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowConfig {
    /// A run is slow when its elapsed time exceeds `factor` x the p95 of its
    /// name's past successful runs.
    pub factor: f64,
    /// Successful runs of the name needed before judging.
    pub min_history: usize,
    /// Never flag a run younger than this (s), however quick its history.
    pub min_elapsed_s: f64,
    /// How many of the latest successful runs make the statistics.
    pub window: usize,
    /// The collector takes a stack snapshot of a run flagged slow by
    /// itself, through the run's node's agent, and attaches it to the run.
    pub evidence: bool,
    /// At most one such snapshot per run this often (s).
    pub evidence_every_s: u64,
    /// At most this many such snapshots in any hour, across the fleet.
    pub evidence_per_hour: u32,
}

impl Default for SlowConfig {
    fn default() -> Self {
        SlowConfig {
            factor: 1.0,
            min_history: 10,
            min_elapsed_s: 1.0,
            window: 100,
            evidence: true,
            evidence_every_s: 600,
            evidence_per_hour: 30,
        }
    }
}

/// Duration statistics of a run name: `GET /api/v1/durations/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationStats {
    /// The run name.
    pub name: String,
    /// Successful finished runs the figures come from (the latest ones).
    pub n: usize,
    /// Median duration (s); 0 when `n` is 0.
    pub p50_s: f64,
    /// 95th percentile duration (s); 0 when `n` is 0.
    pub p95_s: f64,
}

/// A running run that is taking longer than usual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowRun {
    /// The run.
    pub run_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// When it started.
    pub started: Timestamp,
    /// Seconds since it started.
    pub elapsed_s: f64,
    /// Median duration of the name (s).
    pub p50_s: f64,
    /// 95th percentile duration of the name (s).
    pub p95_s: f64,
    /// `elapsed_s / p95_s`.
    pub factor: f64,
}

/// `GET /api/v1/runs/slow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SlowRuns {
    /// Slow runs, slowest (highest factor) first.
    pub runs: Vec<SlowRun>,
}

/// A finished run's duration against its name's statistics (run pages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDuration {
    /// The run.
    pub run_id: Uuid,
    /// Its duration (s), or elapsed so far while running.
    pub duration_s: f64,
    /// The name's statistics (past successful runs).
    pub stats: DurationStats,
    /// `duration_s / p95_s`, when there is a p95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
}

/// Settings of error grouping and slow-run detection (`[insights]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightsConfig {
    /// A group is "new" while its first occurrence is younger than this (s).
    pub new_window_s: u64,
    /// A group with no occurrence for this long (s) is resolved.
    pub quiet_s: u64,
    /// Slow-run detection.
    pub slow: SlowConfig,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            new_window_s: 24 * 3600,
            quiet_s: 7 * 24 * 3600,
            slow: SlowConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_ten_hosts_and_counts_them_all() {
        let mut g = ErrorGroup {
            fingerprint: "0".repeat(16),
            kind: "ValueError".into(),
            message: "m".into(),
            language: "python".into(),
            count: 30,
            first_seen: Timestamp::from_nanos(0),
            last_seen: Timestamp::from_nanos(0),
            hosts: (0..30).map(|i| format!("node-{i:02}")).collect(),
            hosts_total: None,
            runs: 30,
            status: ErrorStatus::Ongoing,
            resolved_at: None,
            regressed_at: None,
        };
        assert_eq!(g.host_count(), 30);
        g.shorten_hosts();
        assert_eq!(g.hosts.len(), LIST_HOSTS);
        assert_eq!(g.hosts[9], "node-09");
        assert_eq!(g.host_count(), 30);
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["hosts_total"], 30);
        // Few hosts: nothing cut, no count written.
        g.hosts.truncate(2);
        g.hosts_total = None;
        g.shorten_hosts();
        assert!(
            serde_json::to_value(&g)
                .unwrap()
                .get("hosts_total")
                .is_none()
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            ErrorStatus::New,
            ErrorStatus::Regressed,
            ErrorStatus::Ongoing,
            ErrorStatus::Resolved,
        ] {
            assert_eq!(s.as_str().parse::<ErrorStatus>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let e = "fresh".parse::<ErrorStatus>().unwrap_err();
        assert!(e.contains("fresh"), "{e}");
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let e = serde_json::from_str::<InsightsConfig>(r#"{"quiet":1}"#).unwrap_err();
        assert!(e.to_string().contains("quiet"), "{e}");
        let c: InsightsConfig = serde_json::from_str(r#"{"quiet_s":5}"#).unwrap();
        assert_eq!(c.quiet_s, 5);
        assert_eq!(c.slow.min_history, 10);
    }
}
