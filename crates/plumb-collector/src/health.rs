//! Node hardware health: what the agents send with their heartbeats
//! (stored per node with a bounded history by `nodes.rs`'s ingest), read
//! back for `plumb nodes health`, the dashboard's node page and its JSON
//! twin.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `GET /api/v1/nodes/health` | viewer | every node's [`HealthView`], abnormal nodes first |
//! | `GET /api/v1/nodes/{name}/health` | viewer | one node's [`HealthDetail`]: current values and a summary of each reading over time |

use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::health::{Finding, FindingLimits, Level, NodeHealth, findings};
use plumb_model::node::NodeState;
use serde::{Deserialize, Serialize};

/// Readings summarized in a [`HealthDetail`] by default.
pub const HISTORY: usize = 120;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/nodes/health", get(fleet))
        .route("/api/v1/nodes/{name}/health", get(one))
}

/// A source that could not be read, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    /// The source (`smart`, `psi`, ...).
    pub source: String,
    /// Why.
    pub reason: String,
}

/// One node's current health, as the fleet view lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    /// Node name.
    pub node: String,
    /// Its state.
    pub state: NodeState,
    /// When its latest health arrived (collector clock); `None` when its
    /// agent never sent any (an older agent, or health turned off).
    pub at: Option<Timestamp>,
    /// What is abnormal, critical first.
    pub findings: Vec<Finding>,
    /// The sources its agent could not read.
    pub unavailable: Vec<Unavailable>,
    /// The latest reading.
    pub health: Option<NodeHealth>,
}

impl HealthView {
    /// The worst finding's level.
    pub fn worst(&self) -> Option<Level> {
        self.findings.iter().map(|f| f.level).max()
    }
}

/// One reading in a few numbers, for "changes over time".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthPoint {
    /// When it arrived (collector clock).
    pub at: Timestamp,
    /// OOM kills since boot.
    pub oom_kills: Option<u64>,
    /// Corrected memory errors.
    pub memory_corrected: Option<u64>,
    /// Uncorrected memory errors.
    pub memory_uncorrected: Option<u64>,
    /// Thermal throttle events.
    pub throttle_events: Option<u64>,
    /// I/O errors.
    pub io_errors: Option<u64>,
    /// Memory PSI, some avg10, percent.
    pub memory_pressure: Option<f64>,
    /// I/O PSI, some avg10, percent.
    pub io_pressure: Option<f64>,
    /// The hottest sensor, Celsius.
    pub max_temperature: Option<f64>,
    /// Disks failing their SMART self-assessment.
    pub smart_failing: Option<u64>,
}

impl HealthPoint {
    /// The summary of `h`, arrived at `at`.
    pub fn of(at: Timestamp, h: &NodeHealth) -> HealthPoint {
        let psi = h.psi.ok();
        HealthPoint {
            at,
            oom_kills: h.oom_kills.ok().copied(),
            memory_corrected: h.memory_errors.ok().map(|_| h.corrected_memory_errors()),
            memory_uncorrected: h.memory_errors.ok().map(|_| h.uncorrected_memory_errors()),
            throttle_events: h.throttling.ok().map(|t| t.total()),
            io_errors: h.io_errors.ok().map(|_| h.io_error_total()),
            memory_pressure: psi.and_then(|p| p.memory.as_ref()).map(|r| r.some.avg10),
            io_pressure: psi.and_then(|p| p.io.as_ref()).map(|r| r.some.avg10),
            max_temperature: h
                .temperatures
                .ok()
                .and_then(|t| t.iter().map(|t| t.celsius).reduce(f64::max)),
            smart_failing: h
                .smart
                .ok()
                .map(|d| d.iter().filter(|d| d.passed == Some(false)).count() as u64),
        }
    }
}

/// One node's health: `GET /api/v1/nodes/{name}/health`, the health
/// section of its dashboard page and of `plumb nodes health NODE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthDetail {
    /// Its current health.
    pub current: HealthView,
    /// Its latest readings, oldest first, summarized.
    pub history: Vec<HealthPoint>,
}

fn view(
    store: &dyn plumb_store::Backend,
    node: String,
    state: NodeState,
    limits: &FindingLimits,
) -> plumb_store::Result<HealthView> {
    let latest = store.node_health_recent(&node, 1)?.into_iter().next();
    Ok(match latest {
        Some(row) => HealthView {
            node,
            state,
            at: Some(row.at),
            findings: findings(&row.health, limits),
            unavailable: row
                .health
                .unavailable()
                .into_iter()
                .map(|(s, r)| Unavailable {
                    source: s.into(),
                    reason: r.into(),
                })
                .collect(),
            health: Some(row.health),
        },
        None => HealthView {
            node,
            state,
            at: None,
            findings: Vec::new(),
            unavailable: Vec::new(),
            health: None,
        },
    })
}

/// Every node's current health: nodes with a critical finding first, then
/// those with warnings (more findings first), then the rest, then those
/// that never sent health; by name within each.
pub fn fleet_health(
    store: &dyn plumb_store::Backend,
    limits: &FindingLimits,
) -> plumb_store::Result<Vec<HealthView>> {
    let mut out = Vec::new();
    for n in store.nodes()? {
        out.push(view(store, n.name, n.state, limits)?);
    }
    out.sort_by(|a, b| {
        let key = |v: &HealthView| {
            (
                std::cmp::Reverse(v.worst()),
                std::cmp::Reverse(v.findings.len()),
                v.health.is_none(),
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.node.cmp(&b.node))
    });
    Ok(out)
}

/// One node's health with `history` readings summarized; `None` when no
/// node of that name has reported.
pub fn node_health(
    store: &dyn plumb_store::Backend,
    name: &str,
    history: usize,
    limits: &FindingLimits,
) -> plumb_store::Result<Option<HealthDetail>> {
    let Some(row) = store.node(name)? else {
        return Ok(None);
    };
    let current = view(store, row.name, row.state, limits)?;
    let mut points: Vec<HealthPoint> = store
        .node_health_recent(name, history)?
        .iter()
        .map(|r| HealthPoint::of(r.at, &r.health))
        .collect();
    points.reverse();
    Ok(Some(HealthDetail {
        current,
        history: points,
    }))
}

/// The thresholds the views mark findings by: the pressure rule's, so the
/// fleet view and the alerts agree.
pub fn limits(state: &AppState) -> FindingLimits {
    state.health_limits
}

async fn fleet(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<HealthView>>, ApiError> {
    let l = limits(&state);
    Ok(Json(state.db.read(move |s| fleet_health(s, &l)).await?))
}

/// Query of `GET /api/v1/nodes/{name}/health`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneQuery {
    history: Option<usize>,
}

async fn one(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<OneQuery>,
) -> Result<Json<HealthDetail>, ApiError> {
    let l = limits(&state);
    let n = name.clone();
    let history = q
        .history
        .unwrap_or(HISTORY)
        .min(plumb_store::health::KEEP_ROWS);
    state
        .db
        .read(move |s| node_health(s, &n, history, &l))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no node `{name}` has reported")))
}
