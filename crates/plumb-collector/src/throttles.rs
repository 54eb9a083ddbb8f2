//! Fleet-wide throttles: `plumb run --throttle NAME=N` with a collector
//! configured holds a lease here instead of a local slot file.
//!
//! | Route | Role | What |
//! |---|---|---|
//! | `POST /api/v1/throttles/{name}/acquire` | agent | [`LeaseRequest`] → [`LeaseState`]: a slot, or a place in the queue (asking again renews either) |
//! | `POST /api/v1/throttles/{name}/renew` | agent | [`RenewRequest`] → [`LeaseState`]; 404 when the lease expired |
//! | `POST /api/v1/throttles/{name}/release` | agent | [`ReleaseRequest`] → `{"released": bool}`; releasing twice is fine |
//! | `GET /api/v1/throttles` | viewer | every throttle held or waited for: [`ThrottleView`]s |
//!
//! Leases live in the store (`plumb_store::Throttles`), written by the
//! store's one writer, so a restarted collector finds every lease where
//! it was and never grants an extra one. Expired leases and places are
//! dropped at the start of every call (no background task): a holder
//! that died frees its slot at the first request after its TTL. The TTL
//! is the request's (`ttl_ms`, from [`MIN_TTL`] to [`MAX_TTL`]), else
//! [`LEASE_TTL`] (15 s); holders renew every [`RENEW_EVERY`] (5 s).

use crate::auth::{Agent, Viewer};
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::throttle::{
    LEASE_TTL, LeaseRequest, LeaseState, MAX_TTL, MIN_TTL, RENEW_EVERY, ReleaseRequest,
    RenewRequest, ThrottleView,
};
use std::time::Duration;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/throttles", get(list))
        .route("/api/v1/throttles/{name}/acquire", post(acquire))
        .route("/api/v1/throttles/{name}/renew", post(renew))
        .route("/api/v1/throttles/{name}/release", post(release))
}

// Named here so the documentation's numbers are checked by the compiler.
const _: () = assert!(RENEW_EVERY.as_secs() * 3 == LEASE_TTL.as_secs());

/// The TTL a request asked for, or the default; out of bounds is a 400.
fn ttl(ms: Option<u64>) -> Result<Duration, ApiError> {
    let Some(ms) = ms else {
        return Ok(LEASE_TTL);
    };
    let d = Duration::from_millis(ms);
    if d < MIN_TTL || d > MAX_TTL {
        return Err(ApiError::BadRequest(format!(
            "ttl_ms {ms}: a lease lasts from {} ms to {} s",
            MIN_TTL.as_millis(),
            MAX_TTL.as_secs()
        )));
    }
    Ok(d)
}

async fn acquire(
    _: Agent,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<LeaseRequest>,
) -> Result<Json<LeaseState>, ApiError> {
    let ttl = ttl(req.ttl_ms)?;
    let s = state
        .db
        .write(move |s| s.throttle_acquire(&name, &req, ttl, Timestamp::now()))
        .await?;
    Ok(Json(s))
}

async fn renew(
    _: Agent,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<RenewRequest>,
) -> Result<Json<LeaseState>, ApiError> {
    let ttl = ttl(req.ttl_ms)?;
    let s = state
        .db
        .write(move |s| s.throttle_renew(&name, &req.holder, ttl, Timestamp::now()))
        .await?;
    Ok(Json(s))
}

async fn release(
    _: Agent,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ReleaseRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let released = state
        .db
        .write(move |s| s.throttle_release(&name, &req.holder, Timestamp::now()))
        .await?;
    Ok(Json(serde_json::json!({ "released": released })))
}

async fn list(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<ThrottleView>>, ApiError> {
    let views = state
        .db
        .write(|s| {
            let now = Timestamp::now();
            s.throttle_expire(now)?;
            s.throttle_list(now)
        })
        .await?;
    Ok(Json(views))
}
