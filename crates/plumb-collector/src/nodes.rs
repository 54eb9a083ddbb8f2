//! Nodes: heartbeats from `plumb agent`, node states from a phi-accrual
//! failure detector, and their history.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `POST /api/v1/ingest/node` | agent | one [`NodeReport`] (JSON, optionally gzip) |
//! | `GET /api/v1/nodes` | viewer | every node as a [`NodeStatus`], by name |
//! | `GET /api/v1/nodes/transitions` | viewer | state changes, oldest first: `node`, `limit` |
//!
//! [`NodeView`], [`NodeDetail`] and [`node_detail`] are what the dashboard's
//! node pages, their JSON twins and `plumb nodes show` (on a local store)
//! all read.
//!
//! A heartbeat's arrival time on the collector's clock (never the node's, which
//! may be skewed) feeds the node's window of inter-arrival times. A task
//! evaluates φ for every node twice a second and records each change of
//! state with its time, so a slow node goes suspect before it is declared
//! down, and comes back up with its next heartbeat.

use crate::auth::{Agent, Viewer};
use crate::error::ApiError;
use crate::{AppState, body};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use plumb_model::Timestamp;
use plumb_model::node::{NodeReport, NodeState, NodeStatus, NodeTransition, StatePolicy, phi};
use plumb_store::nodes::NodeRow;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Node reports are small; a larger body is a mistake.
const MAX_REPORT: usize = 4 << 20;

/// How often states are evaluated.
const EVALUATE_EVERY: Duration = Duration::from_millis(500);

/// Labels of per-node metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node's name.
    pub node: String,
}

/// The routes of this module. Registers its metrics on `state` and starts
/// the state evaluator on the current tokio runtime.
pub fn routes(state: &AppState) -> Router<AppState> {
    register_metrics(state);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(evaluator(state.clone()));
    } else {
        tracing::warn!("no tokio runtime: node states are only updated by heartbeats");
    }
    Router::new()
        .route("/api/v1/ingest/node", post(ingest_node))
        .route("/api/v1/nodes", get(list))
        .route("/api/v1/nodes/transitions", get(transitions))
}

fn register_metrics(state: &AppState) {
    let by_state = Family::<crate::metrics::StateLabels, Gauge>::default();
    let dropped_runs = Family::<NodeLabels, Gauge>::default();
    let dropped_bytes = Family::<NodeLabels, Gauge>::default();
    let spool_bytes = Family::<NodeLabels, Gauge>::default();
    let m = &state.metrics;
    m.register("nodes", "Nodes by state", by_state.clone());
    m.register(
        "node_spool_dropped_runs",
        "Runs a node dropped from its full outbox, as last reported",
        dropped_runs.clone(),
    );
    m.register(
        "node_spool_dropped_bytes",
        "Bytes a node dropped from its full outbox, as last reported",
        dropped_bytes.clone(),
    );
    m.register(
        "node_spool_bytes",
        "Bytes waiting in a node's outbox, as last reported",
        spool_bytes.clone(),
    );
    m.on_scrape(Arc::new(move |store| {
        let nodes = store.nodes()?;
        for s in NodeState::ALL {
            let n = nodes.iter().filter(|r| r.state == s).count();
            by_state
                .get_or_create(&crate::metrics::StateLabels {
                    state: s.as_str().to_string(),
                })
                .set(n as i64);
        }
        for r in &nodes {
            let l = NodeLabels {
                node: r.name.clone(),
            };
            let sp = &r.report.spool;
            dropped_runs.get_or_create(&l).set(sp.dropped_runs as i64);
            dropped_bytes.get_or_create(&l).set(sp.dropped_bytes as i64);
            spool_bytes.get_or_create(&l).set(sp.bytes as i64);
        }
        Ok(())
    }));
}

/// State changes kept in a [`NodeDetail`].
pub const HISTORY: usize = 200;

/// Runs in progress listed in a [`NodeDetail`] at most.
pub const RUNNING: usize = 100;

/// A node as the dashboard and `plumb nodes show` present it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// Name.
    pub node: String,
    /// State.
    pub state: NodeState,
    /// In that state since.
    pub since: Timestamp,
    /// Last heartbeat (collector clock).
    pub last_heartbeat: Timestamp,
    /// The last report.
    pub report: NodeReport,
    /// Content hash of its software fingerprint.
    pub fingerprint: Option<String>,
    /// The label group it is compared with (`k=v,...`, empty for none).
    pub group: String,
    /// Its fingerprint differs from the most common one of its group.
    pub fingerprint_differs: bool,
    /// Clock offset against the collector, once agents measure it.
    pub clock_offset_ms: Option<f64>,
}

/// Everything known about one node: `GET /api/v1/nodes/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDetail {
    /// The node.
    pub node: NodeView,
    /// The components where its software differs from most nodes of its
    /// group (empty when it agrees, or is alone in its group).
    #[serde(default)]
    pub differs_in: Vec<plumb_model::env::Difference>,
    /// Its latest software changes, newest first (at most
    /// [`ENV_HISTORY`]).
    #[serde(default)]
    pub env_changes: Vec<crate::env::NodeEnvChange>,
    /// Its state changes, oldest first (the latest [`HISTORY`]).
    pub transitions: Vec<NodeTransition>,
    /// Its runs in progress as the store holds them, newest first (at most
    /// [`RUNNING`]; the report's `runs_in_progress` is the node's own count).
    #[serde(default)]
    pub running: Vec<plumb_store::RunSummary>,
    /// Its hardware health: current values, unavailable sources and the
    /// latest readings summarized (absent from an older collector).
    #[serde(default)]
    pub health: Option<crate::health::HealthDetail>,
    /// Its latest benchmark results, newest first (at most
    /// [`BENCH_HISTORY`]).
    #[serde(default)]
    pub benches: Vec<crate::bench::BenchEntry>,
    /// Its load, memory and disks over the chosen range, with its state
    /// changes and disk-fill predictions: the node page's charts (absent
    /// from an older collector).
    #[serde(default)]
    pub charts: Option<NodeCharts>,
}

/// The time range of a node's charts (`?range=1h|1d|7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChartRange {
    /// The last hour, a point a minute.
    #[serde(rename = "1h")]
    Hour,
    /// The last day, a point per ten minutes.
    #[default]
    #[serde(rename = "1d")]
    Day,
    /// The last week, a point per ten minutes.
    #[serde(rename = "7d")]
    Week,
}

impl ChartRange {
    /// Every range, shortest first.
    pub const ALL: [ChartRange; 3] = [ChartRange::Hour, ChartRange::Day, ChartRange::Week];

    /// Its name in a URL and the JSON (`1h`, `1d`, `7d`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChartRange::Hour => "1h",
            ChartRange::Day => "1d",
            ChartRange::Week => "7d",
        }
    }

    /// Parses a name; the error names the ones there are.
    pub fn parse(s: &str) -> Result<ChartRange, String> {
        ChartRange::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("range `{s}` is not one of 1h, 1d, 7d"))
    }

    /// Its length.
    pub fn ns(self) -> i64 {
        const H: i64 = 3_600_000_000_000;
        match self {
            ChartRange::Hour => H,
            ChartRange::Day => 24 * H,
            ChartRange::Week => 7 * 24 * H,
        }
    }

    /// The stored resolution it is drawn from.
    pub fn step(self) -> plumb_store::samples::Step {
        match self {
            ChartRange::Hour => plumb_store::samples::Step::Minute,
            _ => plumb_store::samples::Step::TenMinutes,
        }
    }
}

/// One point of a node chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChartPoint {
    /// Start of the interval (collector clock).
    pub at: Timestamp,
    /// The highest value in it.
    pub value: f64,
}

/// One disk's use over the range, in percent, and when it is predicted to
/// fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSeries {
    /// Mount point.
    pub mount: String,
    /// Used share, percent, per interval.
    pub points: Vec<ChartPoint>,
    /// When it fills at the rate of its recent samples (the disk-fill
    /// alert's least-squares fit), if it is filling.
    pub fills_at: Option<Timestamp>,
}

/// A stretch of time the node spent in one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSpan {
    /// The state.
    pub state: NodeState,
    /// From (at least the range's start).
    pub from: Timestamp,
    /// Until (at most the range's end).
    pub until: Timestamp,
}

/// A node's charts: every series at the range's resolution, oldest first;
/// an interval in which no heartbeat arrived has no point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCharts {
    /// The range.
    pub range: ChartRange,
    /// Its start.
    pub from: Timestamp,
    /// Its end (when it was read).
    pub until: Timestamp,
    /// The spacing of the points, ns.
    pub step_ns: i64,
    /// The highest 1-minute load per interval.
    pub load: Vec<ChartPoint>,
    /// The highest memory in use per interval, percent of the total.
    pub memory: Vec<ChartPoint>,
    /// Memory in total as last sampled, bytes.
    pub memory_total: u64,
    /// Each disk, by mount.
    pub disks: Vec<DiskSeries>,
    /// States over the range (from the transitions that overlap it).
    pub states: Vec<StateSpan>,
    /// When the range held more than [`STATE_CAP`] transitions: the
    /// earliest shaded moment (the states before it are not shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states_from: Option<Timestamp>,
}

/// Transitions a node chart shades at most (the newest in its range).
pub const STATE_CAP: usize = 2000;

/// Samples a node chart reads at most (a week of ten-minute rows, and
/// some).
pub const CHART_SAMPLES: usize = 1100;

/// The charts of node `name` over `range` ending at `now`: its samples,
/// states from the transitions that overlap the range (at most
/// [`STATE_CAP`], the newest) and each disk's predicted
/// fill (from the disk-fill alert's samples when it keeps them, else from
/// the history's last six hours).
pub fn node_charts(
    store: &dyn plumb_store::Backend,
    name: &str,
    range: ChartRange,
    now: Timestamp,
) -> plumb_store::Result<NodeCharts> {
    let step = range.step();
    let from = Timestamp::from_nanos(now.as_nanos() - range.ns());
    let mut transitions = store.node_transitions_between(name, from, now, STATE_CAP + 1)?;
    // More than the cap in the range (the one before it is then absent).
    let capped = transitions.len() > STATE_CAP && transitions[0].at >= from;
    let states_from = capped.then(|| {
        transitions.remove(0);
        transitions[0].at
    });
    let samples = store.node_samples(name, step, step.start_of(from), CHART_SAMPLES)?;
    let pt = |at: Timestamp, value: f64| ChartPoint { at, value };
    let load = samples.iter().map(|s| pt(s.at, s.load1)).collect();
    let memory = samples
        .iter()
        .filter(|s| s.mem_total > 0)
        .map(|s| pt(s.at, s.mem_pct()))
        .collect();
    let mut mounts: Vec<&str> = samples
        .iter()
        .flat_map(|s| s.disks.iter().map(|d| d.mount.as_str()))
        .collect();
    mounts.sort_unstable();
    mounts.dedup();
    let recent_from = now.as_nanos() - 6 * 3_600_000_000_000;
    let mut disks = Vec::with_capacity(mounts.len());
    for m in mounts {
        let points: Vec<ChartPoint> = samples
            .iter()
            .filter_map(|s| {
                s.disks
                    .iter()
                    .find(|d| d.mount == m)
                    .map(|d| pt(s.at, d.pct()))
            })
            .collect();
        let mut fit = store.disk_samples(name, m)?;
        if fit.len() < 3 {
            fit = samples
                .iter()
                .filter(|s| s.at.as_nanos() >= recent_from)
                .filter_map(|s| {
                    let d = s.disks.iter().find(|d| d.mount == m)?;
                    Some((s.at, d.total.saturating_sub(d.used)))
                })
                .collect();
        }
        let last = fit.iter().map(|f| f.0).max();
        let min_span = crate::alerts::config::DiskFillRule::default().min_span;
        let fills_at = match (
            plumb_model::alerts::predict_fill_seconds(&fit, min_span.0.as_secs_f64()),
            last,
        ) {
            (Some(left), Some(last)) if left.is_finite() && left < 3.0e9 => Some(
                Timestamp::from_nanos(last.as_nanos().saturating_add((left * 1e9) as i64)),
            ),
            _ => None,
        };
        disks.push(DiskSeries {
            mount: m.to_string(),
            points,
            fills_at,
        });
    }
    Ok(NodeCharts {
        range,
        from,
        until: now,
        step_ns: step.ns(),
        load,
        memory,
        memory_total: samples.last().map_or(0, |s| s.mem_total),
        disks,
        states: state_spans(&transitions, states_from.unwrap_or(from), now),
        states_from,
    })
}

/// The states a node was in over `[from, until)`, from its transitions
/// (oldest first): the one it was in at `from` (the last before it), then
/// each change. Nothing before its first transition.
pub fn state_spans(
    transitions: &[NodeTransition],
    from: Timestamp,
    until: Timestamp,
) -> Vec<StateSpan> {
    let mut spans: Vec<StateSpan> = Vec::new();
    for t in transitions {
        if t.at >= until {
            break;
        }
        let start = t.at.max(from);
        if let Some(last) = spans.last_mut() {
            last.until = start;
        }
        spans.push(StateSpan {
            state: t.to,
            from: start,
            until,
        });
    }
    spans.retain(|s| s.until > s.from && s.until > from);
    spans
}

/// Software changes a node's detail carries.
pub const ENV_HISTORY: usize = 10;

/// Benchmark results a node's detail carries.
pub const BENCH_HISTORY: usize = 20;

/// A group's name: its labels as `k=v,k2=v2` (nodes with the same labels
/// are compared with each other).
pub fn group_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The nodes as views, each marked when its software differs from the
/// majority of the nodes with the same labels (a group of one has nothing
/// to differ from). Software is compared by the stored software-only hash
/// (`NodeRow::software`), so hardware alone marks nothing; a group with a
/// node whose fingerprint came before that hash existed is compared by
/// whole fingerprints until it sends one again. `rows` must be every node,
/// for the comparison. One pass over the rows, no fingerprint read.
pub fn views(rows: Vec<NodeRow>) -> Vec<NodeView> {
    let mut counts: HashMap<(String, &str), usize> = HashMap::new();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    let keys: Vec<String> = rows.iter().map(|r| group_key(&r.report.labels)).collect();
    let mut whole: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (r, g) in rows.iter().zip(&keys) {
        if r.fingerprint.is_some() && r.software.is_none() {
            whole.insert(g.as_str());
        }
    }
    let compared = |r: &'_ NodeRow, g: &str| -> Option<String> {
        if whole.contains(g) {
            r.fingerprint.clone()
        } else {
            r.software.clone()
        }
    };
    let hashes: Vec<Option<String>> = rows
        .iter()
        .zip(&keys)
        .map(|(r, g)| compared(r, g))
        .collect();
    for (h, g) in hashes.iter().zip(&keys) {
        if let Some(fp) = h.as_deref() {
            *counts.entry((g.clone(), fp)).or_default() += 1;
            *sizes.entry(g.clone()).or_default() += 1;
        }
    }
    let mut majority: HashMap<&str, (&str, usize)> = HashMap::new();
    for ((g, fp), n) in &counts {
        let e = majority.entry(g.as_str()).or_insert((fp, 0));
        // Ties go to the smaller hash, so the marker does not flicker.
        if *n > e.1 || (*n == e.1 && *fp < e.0) {
            *e = (fp, *n);
        }
    }
    let marked: Vec<bool> = hashes
        .iter()
        .zip(&keys)
        .map(|(h, g)| match (h.as_deref(), majority.get(g.as_str())) {
            (Some(fp), Some((m, _))) => sizes.get(g).copied().unwrap_or(0) > 1 && fp != *m,
            _ => false,
        })
        .collect();
    rows.into_iter()
        .zip(keys)
        .zip(marked)
        .map(|((r, group), differs)| {
            let clock_offset_ms = r.report.clock.map(|c| c.offset_ns as f64 / 1e6);
            NodeView {
                node: r.name,
                state: r.state,
                since: r.since,
                last_heartbeat: r.last_seen,
                report: r.report,
                fingerprint: r.fingerprint,
                group,
                fingerprint_differs: differs,
                clock_offset_ms,
            }
        })
        .collect()
}

/// Everything the store knows about node `name`: its view (compared with
/// its group), its state history, its runs in progress and its health
/// (pressure marked abnormal by `limits`); `None` when no node of that name
/// has reported.
pub fn node_detail(
    store: &dyn plumb_store::Backend,
    name: &str,
    limits: &plumb_model::health::FindingLimits,
    range: ChartRange,
) -> plumb_store::Result<Option<NodeDetail>> {
    let Some(row) = store.node(name)? else {
        return Ok(None);
    };
    // The outlier marker compares the node with the others of its group,
    // so the group's rows are needed, not just this one.
    let labels = row.report.labels.clone();
    let mut rows: Vec<NodeRow> = store
        .nodes()?
        .into_iter()
        .filter(|r| r.name != name && r.report.labels == labels)
        .collect();
    rows.insert(0, row);
    let differs_in = crate::env::drift_by_group(store, &rows)?
        .first()
        .map(|g| g.drift.differences(name))
        .unwrap_or_default();
    let node = views(rows).swap_remove(0);
    let env_changes =
        crate::env::env_changes(store, Some(name), Timestamp::from_nanos(0), ENV_HISTORY)?;
    let transitions = store.node_transitions(Some(name), HISTORY)?;
    let running = store.list_runs(&plumb_store::RunFilter {
        host: Some(name.to_string()),
        state: Some(plumb_model::RunState::Running),
        limit: RUNNING,
        ..Default::default()
    })?;
    let health = crate::health::node_health(store, name, crate::health::HISTORY, limits)?;
    let benches = store
        .node_bench_history(name, BENCH_HISTORY)?
        .into_iter()
        .map(crate::bench::BenchEntry::from)
        .collect();
    let charts = node_charts(store, name, range, Timestamp::now())?;
    Ok(Some(NodeDetail {
        node,
        differs_in,
        env_changes,
        transitions,
        running,
        health,
        benches,
        charts: Some(charts),
    }))
}

/// φ of a stored node at `now`.
fn phi_of(row: &NodeRow, now: Timestamp, not_before: Timestamp) -> f64 {
    let last = row.last_seen.max(not_before);
    let elapsed_ms = (now.as_nanos() - last.as_nanos()).max(0) as f64 / 1e6;
    phi(elapsed_ms, &row.intervals_ms, row.report.interval_ms as f64)
}

/// Re-evaluates every node's state twice a second, recording changes.
async fn evaluator(state: AppState) {
    // A collector that was itself down saw no heartbeats: the time before
    // it started says nothing about the nodes, so the detector's clock
    // starts no earlier than the collector.
    let started = Timestamp::now();
    let policy = StatePolicy::default();
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Node states change on one collector of those sharing the store
        // (see `leader`), so each change is recorded once.
        if !state.leader.is_leading() {
            continue;
        }
        let result = state
            .db
            .write(move |store| {
                let now = Timestamp::now();
                for row in store.nodes()? {
                    let p = phi_of(&row, now, started);
                    let to = policy.state(p, &row.report);
                    // A node cannot fail without first being late: when one
                    // tick sees it go from on time to down, it passed through
                    // suspect in between, and the history says so.
                    if to == NodeState::Down
                        && matches!(row.state, NodeState::Up | NodeState::Busy)
                    {
                        store.set_node_state(&row.name, NodeState::Suspect, now, p)?;
                    }
                    if to != row.state && store.set_node_state(&row.name, to, now, p)? {
                        tracing::info!(node = %row.name, from = %row.state, to = %to, phi = p, "node state changed");
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "node state evaluation failed");
        }
    }
}

async fn ingest_node(
    _: Agent,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let started = Instant::now();
    let result = ingest_node_inner(&state, &headers, request).await;
    let code = match &result {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    state.metrics.observe_ingest(
        "node",
        code,
        result.as_ref().map(|(_, n)| *n).unwrap_or(0),
        u64::from(result.is_ok()),
        started.elapsed().as_secs_f64(),
    );
    result.map(|(v, _)| Json(v))
}

async fn ingest_node_inner(
    state: &AppState,
    headers: &HeaderMap,
    request: Body,
) -> Result<(serde_json::Value, u64), ApiError> {
    body::expect_content_type(headers, &["application/json"])?;
    let (bytes, sent, _lease) = body::read(&state.budget, headers, request, MAX_REPORT).await?;
    let for_export = state.export.as_ref().map(|_| bytes.clone());
    let report: NodeReport = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad node report: {e}")))?;
    if report.node.is_empty()
        || report.node.len() > 253
        || !report
            .node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(ApiError::BadRequest(format!(
            "bad node report: node name `{}` must be 1-253 letters, digits, `.`, `-` or `_`",
            report.node.chars().take(300).collect::<String>()
        )));
    }
    if report.interval_ms == 0 {
        return Err(ApiError::BadRequest(
            "bad node report: interval_ms must be positive".into(),
        ));
    }
    let policy = StatePolicy::default();
    let mut report = report;
    // Health goes to its own bounded history; the node's row keeps the
    // heartbeat without it (most heartbeats carry none).
    let health = report.health.take();
    let (name, st) = state
        .db
        .write(move |store| {
            let now = Timestamp::now();
            // A heartbeat that just arrived has φ = 0: the node is up or busy.
            let fresh = policy.state(0.0, &report);
            let row = store.put_node_report(&report, now, fresh)?;
            store.set_node_state(&row.name, fresh, now, 0.0)?;
            if let Some(e) = &report.clock {
                store.put_clock_estimate(&row.name, e, now)?;
            }
            if let Some(h) = &health {
                store.put_node_health(&row.name, now, h)?;
            }
            // The node's history: folded into its minute and ten-minute
            // rows, never a row per heartbeat.
            store.put_node_sample(
                &row.name,
                now,
                &plumb_model::node::NodeSample::from_report(&report, now),
            )?;
            Ok((row.name, fresh))
        })
        .await?;
    if let (Some(x), Some(b)) = (&state.export, for_export) {
        x.enqueue(crate::export::Kind::Node, b);
    }
    Ok((serde_json::json!({ "node": name, "state": st }), sent))
}

async fn list(_: Viewer, State(state): State<AppState>) -> Result<Json<Vec<NodeStatus>>, ApiError> {
    Ok(Json(state.db.read(node_statuses).await?))
}

/// Every node the store knows, with its state and φ now: what
/// `GET /api/v1/nodes` answers, and what `plumb nodes --local` prints on
/// the collector's own machine.
pub fn node_statuses(store: &dyn plumb_store::Backend) -> plumb_store::Result<Vec<NodeStatus>> {
    let now = Timestamp::now();
    Ok(store
        .nodes()?
        .into_iter()
        .map(|r| NodeStatus {
            phi: phi_of(&r, now, Timestamp::from_nanos(0)),
            node: r.name,
            state: r.state,
            since: r.since,
            last_heartbeat: r.last_seen,
            report: r.report,
            fingerprint: r.fingerprint,
        })
        .collect())
}

/// Query of `GET /api/v1/nodes/transitions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionQuery {
    node: Option<String>,
    limit: Option<usize>,
}

async fn transitions(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<TransitionQuery>,
) -> Result<Json<Vec<NodeTransition>>, ApiError> {
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let node = q.node;
    let v = state
        .db
        .read(move |store| store.node_transitions(node.as_deref(), limit))
        .await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_store::prelude::*;

    fn report(node: &str) -> plumb_model::node::NodeReport {
        serde_json::from_value(serde_json::json!({
            "version": 1, "node": node, "sent": 0, "seq": 0, "interval_ms": 1000,
            "boot_id": "b",
            "cpu": {"load1": 0.5, "load5": 0.0, "load15": 0.0, "cpus": 2},
            "memory": {"total": 1, "available": 1, "swap_total": 0, "swap_free": 0}
        }))
        .unwrap()
    }

    /// The shading covers the range from the state the node was in at its
    /// start (read from the transitions around the range, not the node's
    /// latest 200); past the cap, the newest are shaded and the chart says
    /// from when.
    #[test]
    fn states_are_the_transitions_that_overlap_the_range_up_to_a_cap() {
        const SEC: i64 = 1_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let store = plumb_store::Store::open(dir.path()).unwrap();
        let now = Timestamp::from_nanos(1_000_000 * SEC);
        let at = |s: i64| Timestamp::from_nanos(now.as_nanos() - s * SEC);
        // Two days ago: 300 flaps, ending down; then back up 30 minutes ago.
        store
            .put_node_report(&report("a"), at(2 * 86_400 + 1), NodeState::Up)
            .unwrap();
        for i in 0..300 {
            let to = if i % 2 == 0 {
                NodeState::Suspect
            } else {
                NodeState::Down
            };
            store
                .set_node_state("a", to, at(2 * 86_400 - i), 1.0)
                .unwrap();
        }
        store
            .set_node_state("a", NodeState::Up, at(1800), 0.0)
            .unwrap();
        let c = node_charts(&store, "a", ChartRange::Hour, now).unwrap();
        let spans: Vec<(NodeState, i64, i64)> = c
            .states
            .iter()
            .map(|s| (s.state, s.from.as_nanos(), s.until.as_nanos()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (NodeState::Down, at(3600).as_nanos(), at(1800).as_nanos()),
                (NodeState::Up, at(1800).as_nanos(), now.as_nanos()),
            ]
        );
        assert_eq!(c.states_from, None);
        // More changes in the last hour than the cap: the newest are shaded.
        for i in 0..STATE_CAP as i64 + 10 {
            let to = if i % 2 == 0 {
                NodeState::Suspect
            } else {
                NodeState::Up
            };
            store
                .set_node_state(
                    "a",
                    to,
                    Timestamp::from_nanos(at(1700).as_nanos() + i * SEC / 2),
                    1.0,
                )
                .unwrap();
        }
        let now = Timestamp::from_nanos(at(1700).as_nanos() + 1100 * SEC);
        let c = node_charts(&store, "a", ChartRange::Hour, now).unwrap();
        assert_eq!(c.states.len(), STATE_CAP);
        let first = c.states_from.expect("the cap was hit");
        assert_eq!(c.states[0].from, first);
        assert_eq!(
            first.as_nanos(),
            at(1700).as_nanos() + 10 * SEC / 2,
            "the oldest 10 left out"
        );
    }
}
