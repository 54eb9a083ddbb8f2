//! Alerts: what the collector's alert rules found, as `GET /api/v1/alerts`
//! returns it, the Alertmanager-compatible webhook payload, and the disk-fill
//! prediction.
//!
//! An alert is identified by its labels (`alertname`, `severity`, `node`,
//! `mount`, `job`, ...): its fingerprint is a hash of the sorted labels, so
//! the same condition on the same thing is the same alert across
//! evaluations and collector restarts.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// Lowercase name, as in labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, but not yet for the rule's `for` duration.
    Pending,
    /// The condition holds (for at least `for`).
    Firing,
    /// The condition held and no longer does.
    Resolved,
}

impl AlertState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<AlertState> {
        [
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Human text of an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// One line.
    pub summary: String,
    /// The details: the values that made it fire.
    pub description: String,
}

/// One alert as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// [`fingerprint`] of its labels.
    pub fingerprint: String,
    /// The rule's alert name (also the `alertname` label).
    pub name: String,
    /// Its severity (also the `severity` label).
    pub severity: Severity,
    /// Firing or resolved (pending alerts are not listed).
    pub state: AlertState,
    /// Every label, `alertname` and `severity` included.
    pub labels: BTreeMap<String, String>,
    /// Summary and description.
    pub annotations: Annotations,
    /// When the condition started to hold.
    pub starts_at: Timestamp,
    /// When it stopped holding (resolved alerts only).
    pub ends_at: Option<Timestamp>,
    /// When a notification about it was last sent.
    pub last_notified: Option<Timestamp>,
}

/// One effective rule, as `plumb alerts rules` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// The rule's key in plumb.toml (`disk_low`, `node_down`, ...).
    pub rule: String,
    /// The alert name it raises.
    pub alertname: String,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Severity of its alerts (the highest one for rules with two).
    pub severity: Severity,
    /// How long the condition must hold before the alert fires, seconds.
    pub for_s: f64,
    /// Its thresholds, in words.
    pub condition: String,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    /// Firing alerts first, then recently resolved ones, newest first.
    pub alerts: Vec<Alert>,
    /// The effective rules.
    pub rules: Vec<RuleInfo>,
}

/// The fingerprint of a label set: the first 16 hex digits of the SHA-256
/// of `name=value` lines in name order (as Alertmanager's, a short stable
/// hex id; the hash differs from Alertmanager's own, which nothing relies on).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        // Lengths first, so `a=b,c` and `a=b` + `c=` cannot collide.
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `endsAt` Alertmanager sends for an alert that has not ended.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert in a webhook payload (Alertmanager's webhook format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`).
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339, or [`ZERO_TIME`] while firing.
    pub ends_at: String,
    /// A link to the alert on the collector.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
}

/// A webhook body, Alertmanager's version 4, so receivers written for
/// Alertmanager take it unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Always `"4"`.
    pub version: String,
    /// A key identifying the group (here: per alert name).
    pub group_key: String,
    /// Alerts left out of this payload.
    pub truncated_alerts: u64,
    /// `firing` if any alert in it fires, else `resolved`.
    pub status: String,
    /// The receiver's name (`webhook` or `exec`, with its index).
    pub receiver: String,
    /// Labels the group is formed by.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert in it has.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert in it has.
    pub common_annotations: BTreeMap<String, String>,
    /// The collector's URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

impl WebhookPayload {
    /// The payload for `alerts` (all of one group) from a collector at
    /// `external_url`.
    pub fn new(
        receiver: &str,
        external_url: &str,
        group_labels: BTreeMap<String, String>,
        alerts: &[Alert],
    ) -> WebhookPayload {
        let common = |f: &dyn Fn(&Alert) -> BTreeMap<String, String>| {
            let mut it = alerts.iter().map(f);
            let mut c = it.next().unwrap_or_default();
            for m in it {
                c.retain(|k, v| m.get(k) == Some(v));
            }
            c
        };
        let annotations = |a: &Alert| {
            BTreeMap::from([
                ("summary".to_string(), a.annotations.summary.clone()),
                ("description".to_string(), a.annotations.description.clone()),
            ])
        };
        let group_key = format!(
            "{{}}:{{{}}}",
            group_labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let firing = alerts.iter().any(|a| a.state == AlertState::Firing);
        WebhookPayload {
            version: "4".into(),
            group_key,
            truncated_alerts: 0,
            status: if firing { "firing" } else { "resolved" }.into(),
            receiver: receiver.into(),
            common_labels: common(&|a| a.labels.clone()),
            common_annotations: common(&annotations),
            group_labels,
            external_url: external_url.into(),
            alerts: alerts
                .iter()
                .map(|a| WebhookAlert {
                    status: match a.state {
                        AlertState::Resolved => "resolved",
                        _ => "firing",
                    }
                    .into(),
                    labels: a.labels.clone(),
                    annotations: annotations(a),
                    starts_at: a.starts_at.to_rfc3339(),
                    ends_at: a
                        .ends_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| ZERO_TIME.into()),
                    generator_url: format!(
                        "{}/api/v1/alerts#{}",
                        external_url.trim_end_matches('/'),
                        a.fingerprint
                    ),
                    fingerprint: a.fingerprint.clone(),
                })
                .collect(),
        }
    }
}

/// When a disk is predicted to have no space left, from `(time, available
/// bytes)` samples: the least-squares line through them, extended to zero.
///
/// Returns the seconds from the last sample until it reaches zero, or `None`
/// when it cannot be told or is not filling: fewer than 3 samples, samples
/// spanning less than `min_span_s`, or a level or rising line. A disk that
/// is already full gives `Some(0.0)`.
pub fn predict_fill_seconds(samples: &[(Timestamp, u64)], min_span_s: f64) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let t0 = samples[0].0.as_nanos();
    let last = samples.iter().map(|s| s.0).max()?;
    let span_s = (last.as_nanos() - t0) as f64 / 1e9;
    if span_s < min_span_s || span_s <= 0.0 {
        return None;
    }
    // Times relative to the first sample keep the sums well inside f64's
    // precision (absolute nanoseconds squared would not be).
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples
        .iter()
        .map(|s| (s.0.as_nanos() - t0) as f64 / 1e9)
        .collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.1 as f64).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx; // bytes per second
    if slope >= 0.0 {
        return None;
    }
    let x_last = (last.as_nanos() - t0) as f64 / 1e9;
    let level_now = my + slope * (x_last - mx);
    if level_now <= 0.0 {
        return Some(0.0);
    }
    Some(level_now / -slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_nanos(1_800_000_000_000_000_000 + s * 1_000_000_000)
    }

    #[test]
    fn a_steady_fill_is_extended_to_zero() {
        // 1000 bytes lost per second, 100_000 left at t=100 s: 100 s to go.
        let s: Vec<_> = (0..=10)
            .map(|i| (at(i * 10), 200_000 - (i as u64) * 10_000))
            .collect();
        let left = predict_fill_seconds(&s, 60.0).unwrap();
        assert!((left - 100.0).abs() < 1e-6, "{left}");
    }

    #[test]
    fn noise_around_a_trend_still_predicts_it() {
        let s: Vec<_> = (0..100)
            .map(|i| {
                let noise = if i % 2 == 0 { 500 } else { 0 };
                (at(i), 1_000_000 - (i as u64) * 1000 + noise)
            })
            .collect();
        let left = predict_fill_seconds(&s, 10.0).unwrap();
        assert!((left - 901.0).abs() < 5.0, "{left}");
    }

    #[test]
    fn level_rising_short_or_few_samples_predict_nothing() {
        let level: Vec<_> = (0..10).map(|i| (at(i * 60), 5000)).collect();
        assert_eq!(predict_fill_seconds(&level, 60.0), None);
        let rising: Vec<_> = (0..10).map(|i| (at(i * 60), 5000 + i as u64)).collect();
        assert_eq!(predict_fill_seconds(&rising, 60.0), None);
        let short: Vec<_> = (0..10).map(|i| (at(i), 5000 - i as u64)).collect();
        assert_eq!(predict_fill_seconds(&short, 60.0), None);
        assert_eq!(predict_fill_seconds(&short[..2], 0.0), None);
        let same_time = vec![(at(0), 10), (at(0), 5), (at(0), 1)];
        assert_eq!(predict_fill_seconds(&same_time, 0.0), None);
    }

    #[test]
    fn a_disk_past_full_on_the_line_gives_zero() {
        let s = vec![(at(0), 3000), (at(10), 1000), (at(20), 0)];
        assert_eq!(predict_fill_seconds(&s, 1.0), Some(0.0));
    }

    #[test]
    fn fingerprints_depend_on_every_label_and_not_on_order() {
        let a = BTreeMap::from([
            ("alertname".to_string(), "X".to_string()),
            ("node".to_string(), "n1".to_string()),
        ]);
        let mut b = a.clone();
        b.insert("node".into(), "n2".into());
        assert_eq!(fingerprint(&a).len(), 16);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
    }

    #[test]
    fn webhook_payload_has_alertmanager_fields() {
        let labels = BTreeMap::from([
            ("alertname".to_string(), "DiskSpaceLow".to_string()),
            ("node".to_string(), "n1".to_string()),
        ]);
        let alert = Alert {
            fingerprint: fingerprint(&labels),
            name: "DiskSpaceLow".into(),
            severity: Severity::Critical,
            state: AlertState::Firing,
            labels: labels.clone(),
            annotations: Annotations {
                summary: "s".into(),
                description: "d".into(),
            },
            starts_at: at(0),
            ends_at: None,
            last_notified: None,
        };
        let p = WebhookPayload::new(
            "webhook-0",
            "http://127.0.0.1:7700",
            BTreeMap::from([("alertname".to_string(), "DiskSpaceLow".to_string())]),
            &[alert],
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(v["groupKey"], "{}:{alertname=\"DiskSpaceLow\"}");
        assert_eq!(v["commonLabels"]["node"], "n1");
        assert!(v["alerts"][0]["generatorURL"].is_string());
        assert!(v["externalURL"].is_string());
        assert_eq!(v["truncatedAlerts"], 0);
    }
}
