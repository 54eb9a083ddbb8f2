//! Alerts: rules from plumb.toml (`[alerts]`, see [`config`]) evaluated on
//! the collector every `interval`, their state kept in the store, and
//! delivered to the API, `/metrics`, webhooks and commands.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `GET /api/v1/alerts` | viewer | firing and recently resolved alerts, and the effective rules ([`AlertList`]) |
//!
//! One evaluation: record a disk sample per node and mount (thinned and
//! bounded, for the fill prediction), read one snapshot of the store, turn
//! the rules into candidate alerts, reconcile them with the stored alerts
//! ([`rules::reconcile`]: pending, firing, resolved; what to notify), store
//! the outcome in one transaction, then hand the notifications, grouped by
//! alert name, to the delivery task ([`deliver`]). The state is written
//! before anything is sent, so a restarted collector never tells the same
//! thing twice.
//!
//! Metrics: `plumb_alerts_firing{alertname,severity}`,
//! `plumb_alert_active{alertname,severity,fingerprint,...labels}` (1 per
//! firing alert) and `plumb_alert_notifications_total{receiver,outcome}`.

pub mod config;
pub mod deliver;
pub mod rules;

pub use config::AlertsConfig;

use crate::auth::Viewer;
use crate::error::ApiError;
use crate::{AppState, CollectorError};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::alerts::{Alert, AlertList, AlertState, RuleInfo, WebhookPayload};
use plumb_model::node::NodeStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Disk samples kept per mount (the window is divided into this many).
const SAMPLES_PER_MOUNT: usize = 256;
/// Resolved alerts kept at most, and for at most this long.
const RESOLVED_KEEP: usize = 1000;
const RESOLVED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Job names judged by the failure-rate rule: those with a run this recent
/// (a name that has not run for a day has no failure rate worth waking
/// anyone for, and the look-back bounds the scan of a large store).
const JOB_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// A duration in words, as everywhere in plumb (`plumb_model::display`).
pub fn human(d: Duration) -> String {
    plumb_model::display::duration(d.as_nanos().min(i64::MAX as u128) as i64)
}

/// Labels of `plumb_alerts_firing`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FiringLabels {
    /// Alert name.
    pub alertname: String,
    /// Severity.
    pub severity: String,
}

/// Validates `config`, stores the effective rules, registers the metrics
/// and starts evaluation and delivery on the current runtime. `api` is the
/// collector's own URL (the default `externalURL`).
pub async fn start(
    state: &AppState,
    config: &AlertsConfig,
    api: Option<std::net::SocketAddr>,
) -> Result<(), CollectorError> {
    config
        .validate()
        .map_err(|e| CollectorError::Config(format!("plumb.toml: {e}")))?;
    let infos = rules::rule_infos(config);
    let json = serde_json::to_string(&infos).expect("rules serialize");
    state
        .db
        .write(move |s| s.set_alert_rules(&json))
        .await
        .map_err(|e| CollectorError::Config(format!("cannot store the alert rules: {e}")))?;
    let counter =
        Family::<deliver::OutcomeLabels, prometheus_client::metrics::counter::Counter>::default();
    register_metrics(state, counter.clone());
    if !config.enabled {
        return Ok(());
    }
    let webhooks = config
        .webhook
        .iter()
        .map(|w| deliver::Webhook::new(w.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CollectorError::Config(format!("alerts.webhook: {e}")))?;
    let receivers = deliver::Receivers {
        webhooks,
        execs: config.exec.clone(),
        counter,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(deliver::QUEUE);
    if receivers.any() {
        tokio::spawn(deliver::run(receivers.clone(), rx));
    }
    let external = config
        .external_url
        .clone()
        .or_else(|| api.map(|a| format!("http://{a}")))
        .unwrap_or_default();
    tokio::spawn(evaluator(
        state.clone(),
        Arc::new(config.clone()),
        receivers,
        tx,
        external,
    ));
    Ok(())
}

fn register_metrics(
    state: &AppState,
    counter: Family<deliver::OutcomeLabels, prometheus_client::metrics::counter::Counter>,
) {
    let firing = Family::<FiringLabels, Gauge>::default();
    let active = Family::<Vec<(String, String)>, Gauge>::default();
    let m = &state.metrics;
    m.register(
        "alerts_firing",
        "Firing alerts by name and severity",
        firing.clone(),
    );
    m.register(
        "alert_active",
        "1 for every firing alert, with its labels and fingerprint",
        active.clone(),
    );
    m.register(
        "alert_notifications",
        "Alert notifications by receiver kind and outcome (sent, failed after retries, dropped when the queue was full)",
        counter,
    );
    m.on_scrape(Arc::new(move |store| {
        let rows = store.alert_rows()?;
        // Rebuilt every scrape: a resolved alert's series disappears
        // instead of lingering at a stale value.
        firing.clear();
        active.clear();
        for r in rows.iter().filter(|r| r.alert.state == AlertState::Firing) {
            let a = &r.alert;
            firing
                .get_or_create(&FiringLabels {
                    alertname: a.name.clone(),
                    severity: a.severity.as_str().into(),
                })
                .inc();
            let mut labels: Vec<(String, String)> = a
                .labels
                .iter()
                .filter(|(k, _)| valid_label_name(k) && k.as_str() != "fingerprint")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.push(("fingerprint".into(), a.fingerprint.clone()));
            active.get_or_create(&labels).set(1);
        }
        Ok(())
    }));
}

fn valid_label_name(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !k.starts_with("__")
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/alerts", get(list))
}

/// Firing alerts (newest first), then resolved ones (latest resolution
/// first), and the effective rules. One function serves the API and the
/// dashboard.
pub fn alert_list(store: &dyn plumb_store::Backend) -> plumb_store::Result<AlertList> {
    let mut alerts: Vec<Alert> = store
        .alert_rows()?
        .into_iter()
        .map(|r| r.alert)
        .filter(|a| a.state != AlertState::Pending)
        .collect();
    alerts.sort_by(|a, b| {
        let key = |x: &Alert| {
            (
                x.state != AlertState::Firing,
                std::cmp::Reverse(x.ends_at.unwrap_or(x.starts_at)),
            )
        };
        key(a).cmp(&key(b))
    });
    let rules: Vec<RuleInfo> = match store.alert_rules()? {
        Some(j) => serde_json::from_str(&j).map_err(|source| plumb_store::StoreError::Json {
            id: "alert rules".into(),
            source,
        })?,
        None => Vec::new(),
    };
    Ok(AlertList { alerts, rules })
}

async fn list(_: Viewer, State(state): State<AppState>) -> Result<Json<AlertList>, ApiError> {
    Ok(Json(state.db.read(alert_list).await?))
}

async fn evaluator(
    state: AppState,
    cfg: Arc<AlertsConfig>,
    receivers: deliver::Receivers,
    tx: tokio::sync::mpsc::Sender<WebhookPayload>,
    external: String,
) {
    let started = Timestamp::now();
    let mut limit = rules::RateLimit::default();
    let mut tick = tokio::time::interval(cfg.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Alerts are evaluated and sent by one collector of those sharing
        // the store (see `leader`).
        if !state.leader.is_leading() {
            continue;
        }
        match evaluate_once(&state, &cfg, started, &mut limit).await {
            Ok(notify) if !notify.is_empty() => {
                tracing::info!(alerts = notify.len(), "alert state changes to notify");
                if receivers.any() {
                    receivers.enqueue(&tx, payloads(&external, notify));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
        }
    }
}

/// One payload per alert name: Alertmanager's grouping by `alertname`.
pub fn payloads(external: &str, alerts: Vec<Alert>) -> Vec<WebhookPayload> {
    let mut groups: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    for a in alerts {
        groups.entry(a.name.clone()).or_default().push(a);
    }
    groups
        .into_iter()
        .map(|(name, alerts)| {
            WebhookPayload::new(
                "",
                external,
                BTreeMap::from([("alertname".to_string(), name)]),
                &alerts,
            )
        })
        .collect()
}

/// The health readings the health rules read, of every node that is not
/// down: the latest ones (as many as the pressure rule needs) and the
/// oldest within each rule's window.
fn health_series(
    store: &dyn plumb_store::Backend,
    nodes: &[NodeStatus],
    r: &config::Rules,
    now: Timestamp,
) -> plumb_store::Result<Vec<rules::HealthSeries>> {
    let windows: Vec<(&'static str, bool, config::Dur)> = vec![
        ("smart", r.smart.enabled, r.smart.window),
        (
            "memory_errors",
            r.memory_errors.enabled,
            r.memory_errors.window,
        ),
        (
            "thermal_throttle",
            r.thermal_throttle.enabled,
            r.thermal_throttle.window,
        ),
        ("oom_kill", r.oom_kill.enabled, r.oom_kill.window),
        ("io_errors", r.io_errors.enabled, r.io_errors.window),
    ];
    let any = r.pressure.enabled || windows.iter().any(|w| w.1);
    let mut out = Vec::new();
    if !any {
        return Ok(out);
    }
    let keep = if r.pressure.enabled {
        r.pressure.intervals.max(1) as usize
    } else {
        1
    };
    for n in nodes {
        if n.state == plumb_model::node::NodeState::Down {
            continue;
        }
        let recent: Vec<_> = store
            .node_health_recent(&n.node, keep)?
            .into_iter()
            .map(|row| row.health)
            .collect();
        if recent.is_empty() {
            continue;
        }
        let mut baseline = std::collections::HashMap::new();
        let mut by_window: std::collections::HashMap<i64, Option<plumb_model::health::NodeHealth>> =
            std::collections::HashMap::new();
        for (key, enabled, w) in &windows {
            if !enabled {
                continue;
            }
            let since = Timestamp::from_nanos(now.as_nanos().saturating_sub(w.as_nanos()));
            let b = match by_window.get(&w.as_nanos()) {
                Some(b) => b.clone(),
                None => {
                    let b = store
                        .node_health_history(&n.node, since, 1)?
                        .into_iter()
                        .next()
                        .map(|row| row.health);
                    by_window.insert(w.as_nanos(), b.clone());
                    b
                }
            };
            if let Some(b) = b {
                baseline.insert(*key, b);
            }
        }
        out.push(rules::HealthSeries {
            node: n.node.clone(),
            recent,
            baseline,
        });
    }
    Ok(out)
}

/// Every node's latest benchmark and the ones before it (as many as the
/// `node_bench_drop` rule takes the median of).
fn bench_series(
    store: &dyn plumb_store::Backend,
    r: &config::Rules,
) -> plumb_store::Result<Vec<rules::BenchSeries>> {
    let mut out = Vec::new();
    if !r.node_bench_drop.enabled {
        return Ok(out);
    }
    for latest in store.latest_node_benches()? {
        let mut rows =
            store.node_bench_history(&latest.node, r.node_bench_drop.history as usize + 1)?;
        if rows.is_empty() {
            continue;
        }
        let newest = rows.remove(0);
        out.push(rules::BenchSeries {
            node: latest.node,
            latest: newest.bench,
            earlier: rows.into_iter().map(|r| r.bench).collect(),
        });
    }
    Ok(out)
}

/// A benchmark figure with as many decimals as it needs.
pub fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

async fn evaluate_once(
    state: &AppState,
    cfg: &Arc<AlertsConfig>,
    started: Timestamp,
    limit: &mut rules::RateLimit,
) -> Result<Vec<Alert>, ApiError> {
    let fill = cfg.rules.disk_fill.clone();
    if fill.enabled {
        state
            .db
            .write(move |store| {
                let window_start =
                    Timestamp::from_nanos(Timestamp::now().as_nanos() - fill.window.as_nanos());
                let gap = fill.window.as_nanos() / SAMPLES_PER_MOUNT as i64;
                for n in store.nodes()? {
                    for d in &n.report.disks {
                        store.add_disk_sample(
                            &n.name,
                            &d.mount,
                            n.last_seen,
                            d.available,
                            d.total,
                            gap,
                            window_start,
                            SAMPLES_PER_MOUNT,
                        )?;
                    }
                }
                store.forget_disk_samples_before(window_start)?;
                Ok(())
            })
            .await?;
    }
    // The slow-run rule reads the collector's cached list when it judges by
    // the same settings as `[insights]`; otherwise it computes its own.
    let slow_cfg = plumb_model::insights::SlowConfig {
        factor: cfg.rules.slow_run.factor,
        min_history: cfg.rules.slow_run.min_history,
        ..state.insights.slow.clone()
    };
    let cached_slow = if cfg.rules.slow_run.enabled && slow_cfg == state.insights.slow {
        Some(crate::insights::slow_runs(state).await?)
    } else {
        None
    };
    let c = cfg.clone();
    let evidence = state.insights.slow.evidence;
    let snap = state
        .db
        .read(move |store| {
            let now = Timestamp::now();
            let r = &c.rules;
            let rows = store.nodes()?;
            // Down nodes' software is what it was: comparing it still
            // says something, but their alert would be noise beside
            // NodeDown; drift counts the nodes that report.
            let drift = if r.env_drift.enabled {
                let live: Vec<_> = rows
                    .iter()
                    .filter(|n| n.state != plumb_model::node::NodeState::Down)
                    .cloned()
                    .collect();
                crate::env::drift_by_group(store, &live)?
            } else {
                Vec::new()
            };
            let nodes: Vec<NodeStatus> = rows
                .into_iter()
                .map(|n| NodeStatus {
                    node: n.name,
                    state: n.state,
                    since: n.since,
                    last_heartbeat: n.last_seen,
                    report: n.report,
                    fingerprint: n.fingerprint,
                    phi: 0.0,
                })
                .collect();
            let mut disk_samples = std::collections::HashMap::new();
            if r.disk_fill.enabled {
                for n in &nodes {
                    for d in &n.report.disks {
                        disk_samples.insert(
                            (n.node.clone(), d.mount.clone()),
                            store.disk_samples(&n.node, &d.mount)?,
                        );
                    }
                }
            }
            let jobs = if r.failure_rate.enabled {
                store.job_outcomes(
                    Timestamp::from_nanos(now.as_nanos() - JOB_LOOKBACK.as_nanos() as i64),
                    r.failure_rate.last,
                )?
            } else {
                Vec::new()
            };
            let slow_runs = match cached_slow {
                Some(runs) => runs,
                None if r.slow_run.enabled => store.slow_runs(now, &slow_cfg)?,
                None => Vec::new(),
            };
            let error_groups = if r.new_error.enabled {
                let mut q = plumb_model::insights::ErrorQuery::at(now);
                q.status = Some(plumb_model::insights::ErrorStatus::New);
                store.error_groups(&q)?
            } else {
                Vec::new()
            };
            let env_changes = if r.env_change.enabled {
                let since = now.as_nanos() - r.env_change.window.0.as_nanos() as i64;
                crate::env::env_changes(store, None, Timestamp::from_nanos(since), 10_000)?
            } else {
                Vec::new()
            };
            let health = health_series(store, &nodes, r, now)?;
            let benches = bench_series(store, r)?;
            Ok(rules::Snapshot {
                health,
                benches,
                nodes,
                disk_samples,
                jobs,
                slow_runs,
                error_groups,
                alerts: store.alert_rows()?,
                drift,
                env_changes,
                evidence,
            })
        })
        .await?;
    let now = Timestamp::now();
    let candidates = rules::evaluate(cfg, &snap, started);
    let out = rules::reconcile(cfg, &snap.alerts, candidates, now, limit);
    let notify = out.notify;
    if !out.put.is_empty() || !out.delete.is_empty() {
        let (put, delete) = (out.put, out.delete);
        state
            .db
            .write(move |store| {
                store.put_alert_rows(&put, &delete)?;
                store.prune_resolved_alerts(
                    Timestamp::from_nanos(now.as_nanos() - RESOLVED_FOR.as_nanos() as i64),
                    RESOLVED_KEEP,
                )?;
                Ok(())
            })
            .await?;
    }
    Ok(notify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(human(Duration::from_secs(12_000)), "3h20m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_secs(90_061)), "1d1h");
    }

    #[test]
    fn label_names_prometheus_accepts() {
        assert!(valid_label_name("node"));
        assert!(valid_label_name("run_id"));
        assert!(!valid_label_name("9x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name("__name"));
    }
}
