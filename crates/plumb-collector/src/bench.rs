//! Node benchmarks: the results `plumb bench-node` and idle agents send,
//! stored per node with history ([`plumb_store::Benches`]), read back for
//! `plumb nodes --rank`, the dashboard's nodes and node pages, and the
//! `node_bench_drop` alert; and the two small endpoints the benchmark
//! measures the network to the collector with.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `POST /api/v1/ingest/bench` | agent | store one [`NodeBench`] (JSON) |
//! | `GET /api/v1/agent/bench/ping` | agent | an empty answer, for round trips |
//! | `POST /api/v1/agent/bench/sink` | agent | reads the body, answers its length |
//! | `GET /api/v1/nodes/bench?rank=cpu,mem` | viewer | every node's latest [`BenchEntry`], best first by the keys (by name without) |
//! | `GET /api/v1/nodes/{name}/bench?limit=N` | viewer | one node's results, newest first (`?before=NS`: only the latest taken at or before then) |

use crate::AppState;
use crate::auth::{Agent, Viewer};
use crate::body;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::bench::{NodeBench, parse_rank_keys, rank};
use serde::{Deserialize, Serialize};

/// The largest result body accepted.
const MAX_RESULT: usize = 256 << 10;
/// The largest body the throughput sink reads.
pub const MAX_SINK: usize = 64 << 20;
/// Results a node's history answers by default.
pub const HISTORY: usize = 50;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ingest/bench", post(ingest))
        .route("/api/v1/agent/bench/ping", get(ping))
        .route("/api/v1/agent/bench/sink", post(sink))
        .route("/api/v1/nodes/bench", get(latest))
        .route("/api/v1/nodes/{name}/bench", get(history))
}

/// One stored result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchEntry {
    /// The node.
    pub node: String,
    /// When it arrived (collector clock).
    pub at: Timestamp,
    /// The result.
    pub bench: NodeBench,
}

impl From<plumb_store::bench::BenchRow> for BenchEntry {
    fn from(r: plumb_store::bench::BenchRow) -> BenchEntry {
        BenchEntry {
            node: r.node,
            at: r.at,
            bench: r.bench,
        }
    }
}

/// Checks a result before it is stored: a node name like a heartbeat's,
/// every figure positive and finite.
pub fn validate(b: &NodeBench) -> Result<(), String> {
    if b.node.is_empty()
        || b.node.len() > 253
        || !b
            .node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!(
            "bad benchmark: node name `{}` must be 1-253 letters, digits, `.`, `-` or `_`",
            b.node.chars().take(300).collect::<String>()
        ));
    }
    for f in b.figures() {
        if !f.figure.is_valid() {
            return Err(format!(
                "bad benchmark: figure `{}` is {} (must be positive and finite, with a finite spread)",
                f.name, f.figure.value
            ));
        }
    }
    Ok(())
}

async fn ingest(
    _: Agent,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    body::expect_content_type(&headers, &["application/json"])?;
    let (bytes, _, _lease) = body::read(&state.budget, &headers, request, MAX_RESULT).await?;
    let bench: NodeBench = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("bad benchmark: {e}")))?;
    validate(&bench).map_err(ApiError::BadRequest)?;
    let node = bench.node.clone();
    let at = state
        .db
        .write(move |s| {
            let at = Timestamp::now();
            s.put_node_bench(&bench.node, at, &bench).map(|_| at)
        })
        .await?;
    Ok(Json(serde_json::json!({ "node": node, "at": at })))
}

async fn ping(_: Agent) -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn sink(
    _: Agent,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (bytes, _, _lease) = body::read(&state.budget, &headers, request, MAX_SINK).await?;
    Ok(Json(serde_json::json!({ "bytes": bytes.len() })))
}

/// Every node's latest result, best first by `keys` (by node name when
/// there are none).
pub fn latest_benches(
    store: &dyn plumb_store::Backend,
    keys: &[String],
) -> plumb_store::Result<Vec<BenchEntry>> {
    let rows = store.latest_node_benches()?;
    if keys.is_empty() {
        return Ok(rows.into_iter().map(BenchEntry::from).collect());
    }
    let benches: Vec<NodeBench> = rows.iter().map(|r| r.bench.clone()).collect();
    let order = rank(&benches, keys);
    let mut out = Vec::with_capacity(rows.len());
    for b in order {
        if let Some(r) = rows.iter().find(|r| r.node == b.node) {
            out.push(BenchEntry::from(r.clone()));
        }
    }
    Ok(out)
}

/// Query of `GET /api/v1/nodes/bench`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestQuery {
    rank: Option<String>,
}

async fn latest(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<LatestQuery>,
) -> Result<Json<Vec<BenchEntry>>, ApiError> {
    let keys = match q.rank.as_deref() {
        Some(r) => parse_rank_keys(r).map_err(ApiError::BadRequest)?,
        None => Vec::new(),
    };
    Ok(Json(
        state.db.read(move |s| latest_benches(s, &keys)).await?,
    ))
}

/// Query of `GET /api/v1/nodes/{name}/bench`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
    /// Only the latest result taken (node clock) at or before this
    /// moment, in ns since the epoch: what a run started then ran on.
    before: Option<i64>,
}

async fn history(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<BenchEntry>>, ApiError> {
    let limit = q
        .limit
        .unwrap_or(HISTORY)
        .clamp(1, plumb_store::bench::KEEP_ROWS);
    let before = q.before;
    let rows = state
        .db
        .read(move |s| match before {
            Some(t) => Ok(s
                .node_bench_before(&name, Timestamp::from_nanos(t))?
                .into_iter()
                .collect()),
            None => s.node_bench_history(&name, limit),
        })
        .await?;
    Ok(Json(rows.into_iter().map(BenchEntry::from).collect()))
}
