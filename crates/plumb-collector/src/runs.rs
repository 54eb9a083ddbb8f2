//! Runs: native ingest from `plumb run` spools, and the query API that
//! `plumb ls/show/logs/search/diff --collector` use.

use crate::AppState;
use axum::Router;
use axum::routing::get;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/runs/count", get(count))
}

async fn count(
    _: crate::auth::Viewer,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
    let n = state.db.read(|s| s.count_runs()).await?;
    Ok(axum::Json(serde_json::json!({ "runs": n })))
}
