//! The HTTP admin API, wire-compatible with Toxiproxy 2.x, plus `/metrics`
//! and `/events`.

use crate::model::{self, ApiError};
use crate::state::Registry;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The version `/version` reports. Clients such as toxiproxy-ruby switch to
/// PATCH for updates at 2.6.0 and later, and we accept both.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

type Shared = Arc<Registry>;

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Errors go out the way Go's `http.Error` writes them in Toxiproxy: JSON
/// text, a trailing newline, and a text/plain content type.
fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{}\n", e.to_json()),
    )
        .into_response()
}

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| error_response(&e))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Builds the router over a registry.
pub(crate) fn router(reg: Shared) -> Router {
    Router::new()
        .route("/reset", post(reset))
        .route("/proxies", get(proxy_index).post(proxy_create))
        .route("/populate", post(populate))
        .route(
            "/proxies/{proxy}",
            get(proxy_show)
                .post(proxy_update)
                .patch(proxy_update)
                .delete(proxy_delete),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(toxic_index).post(toxic_create),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic_show)
                .post(toxic_update)
                .patch(toxic_update)
                .delete(toxic_delete),
        )
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .fallback(not_found)
        .layer(middleware::from_fn(toxiproxy_middleware))
        .with_state(reg)
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Refuses browsers (a guard against DNS-rebinding pages driving the API, as
/// in Toxiproxy) and tags every response with a request id.
async fn toxiproxy_middleware(req: Request, next: Next) -> Response {
    let browser = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    let mut resp = if browser {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "User agent not allowed\n",
        )
            .into_response()
    } else {
        next.run(req).await
    };
    let id = format!("plumb{:015}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("X-Toxiproxy-Request-Id", v);
    }
    resp
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

async fn reset(State(reg): State<Shared>) -> Response {
    respond(reg.reset().map(|()| no_content()))
}

async fn proxy_index(State(reg): State<Shared>) -> Response {
    let map: serde_json::Map<String, Value> = reg
        .list()
        .into_iter()
        .map(|p| (p.name.clone(), p.to_json()))
        .collect();
    json_response(StatusCode::OK, &Value::Object(map))
}

async fn proxy_create(State(reg): State<Shared>, body: Bytes) -> Response {
    respond((|| {
        let c = model::decode_proxy_create(&body)?;
        let p = reg.create(&c)?;
        Ok(json_response(StatusCode::CREATED, &p.to_json()))
    })())
}

async fn populate(State(reg): State<Shared>, body: Bytes) -> Response {
    let list = match model::decode_populate(&body) {
        Ok(l) => l,
        Err(e) => return populate_response(&e.to_json(), e.status, Vec::new()),
    };
    let (done, err) = reg.populate(&list);
    let proxies: Vec<Value> = done.iter().map(|p| p.to_json()).collect();
    match err {
        None => json_response(StatusCode::CREATED, &json!({ "proxies": proxies })),
        Some(e) => populate_response(&e.to_json(), e.status, proxies),
    }
}

fn populate_response(err: &Value, status: u16, proxies: Vec<Value>) -> Response {
    let mut body = err.clone();
    body["proxies"] = Value::Array(proxies);
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

async fn proxy_show(State(reg): State<Shared>, Path(name): Path<String>) -> Response {
    respond(
        reg.get(&name)
            .map(|p| json_response(StatusCode::OK, &p.to_json())),
    )
}

async fn proxy_update(
    State(reg): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond((|| {
        // The proxy must exist before the body is judged, as in Toxiproxy.
        reg.get(&name)?;
        let u = model::decode_proxy_update(&body)?;
        let p = reg.update(&name, &u)?;
        Ok(json_response(StatusCode::OK, &p.to_json()))
    })())
}

async fn proxy_delete(State(reg): State<Shared>, Path(name): Path<String>) -> Response {
    respond(reg.delete(&name).map(|()| no_content()))
}

async fn toxic_index(State(reg): State<Shared>, Path(name): Path<String>) -> Response {
    respond(reg.toxics(&name).map(|v| json_response(StatusCode::OK, &v)))
}

async fn toxic_create(
    State(reg): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    respond((|| {
        reg.get(&name)?;
        let spec = model::decode_toxic_create(&body)?;
        let v = reg.add_toxic(&name, spec)?;
        // Toxiproxy answers 200, not 201, here.
        Ok(json_response(StatusCode::OK, &v))
    })())
}

async fn toxic_show(
    State(reg): State<Shared>,
    Path((name, toxic)): Path<(String, String)>,
) -> Response {
    respond(
        reg.toxic(&name, &toxic)
            .map(|v| json_response(StatusCode::OK, &v)),
    )
}

async fn toxic_update(
    State(reg): State<Shared>,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond((|| {
        reg.toxic(&name, &toxic)?;
        let u = model::decode_toxic_update(&body)?;
        let v = reg.update_toxic(&name, &toxic, &u)?;
        Ok(json_response(StatusCode::OK, &v))
    })())
}

async fn toxic_delete(
    State(reg): State<Shared>,
    Path((name, toxic)): Path<(String, String)>,
) -> Response {
    respond(reg.remove_toxic(&name, &toxic).map(|()| no_content()))
}

async fn version() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        format!("{{\"version\": \"{TOXIPROXY_VERSION}\"}}\n"),
    )
        .into_response()
}

async fn metrics(State(reg): State<Shared>) -> Response {
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(Body::from(reg.metrics_text()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn events(State(reg): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let since = match q.get("since").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error_response(&ApiError::new(
                400,
                "query parameter since must be a non-negative integer",
            ));
        }
    };
    let (evs, dropped) = reg.events_since(since);
    json_response(
        StatusCode::OK,
        &json!({ "events": evs, "dropped": dropped }),
    )
}
