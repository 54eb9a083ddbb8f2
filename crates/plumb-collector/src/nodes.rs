//! Nodes: heartbeats from `plumb agent`, node states from a phi-accrual
//! failure detector, and their history.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `POST /api/v1/ingest/node` | agent | one [`NodeReport`] (JSON, optionally gzip) |
//! | `GET /api/v1/nodes` | viewer | every node as a [`NodeStatus`], by name |
//! | `GET /api/v1/nodes/transitions` | viewer | state changes, oldest first: `node`, `limit` |
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
use serde::Deserialize;
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
    let (bytes, sent) = body::read(headers, request, MAX_REPORT).await?;
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
    let (name, st) = state
        .db
        .write(move |store| {
            let now = Timestamp::now();
            // A heartbeat that just arrived has φ = 0: the node is up or busy.
            let fresh = policy.state(0.0, &report);
            let row = store.put_node_report(&report, now, fresh)?;
            store.set_node_state(&row.name, fresh, now, 0.0)?;
            Ok((row.name, fresh))
        })
        .await?;
    Ok((serde_json::json!({ "node": name, "state": st }), sent))
}

async fn list(_: Viewer, State(state): State<AppState>) -> Result<Json<Vec<NodeStatus>>, ApiError> {
    let rows = state.db.read(|store| store.nodes()).await?;
    let now = Timestamp::now();
    Ok(Json(
        rows.into_iter()
            .map(|r| NodeStatus {
                phi: phi_of(&r, now, Timestamp::from_nanos(0)),
                node: r.name,
                state: r.state,
                since: r.since,
                last_heartbeat: r.last_seen,
                report: r.report,
                fingerprint: r.fingerprint,
            })
            .collect(),
    ))
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
