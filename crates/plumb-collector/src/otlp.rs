//! OTLP/HTTP ingest (`/v1/logs`, `/v1/traces`, `/v1/metrics`) and the
//! telemetry queries (`/api/v1/telemetry/...`).
//!
//! Any OpenTelemetry SDK or collector exporting OTLP/HTTP can point here
//! unchanged (`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4318`). Bodies are
//! protobuf or JSON, optionally gzip-compressed; decoding lives in
//! `plumb-otlp`. Answers follow the OTLP specification: 200 with an
//! `Export*ServiceResponse` (with `partial_success` when some records were
//! rejected), 400 for undecodable data, 413 over the size limits, 415 for
//! other content types or encodings, 429 when too many requests are in
//! flight and 503 when the store cannot write (disk full, locked), both with
//! `Retry-After`. Error bodies are a `google.rpc.Status` in the request's
//! format. A request is acknowledged only after its transaction committed
//! (WAL), so an acknowledged record survives a crash of the collector.
//!
//! Decoding and encoding run on blocking threads, in parallel across
//! requests; the store's writer thread only runs the inserts.

use crate::auth::{Role, Viewer};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use plumb_model::telemetry::{LogLine, MetricPoint, Span};
use plumb_model::{Timestamp, Uuid};
use plumb_otlp::{DecodeError, Format};
use plumb_store::StoreError;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Largest request body accepted, as sent (compressed or not).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest body after gzip decompression.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// Ingest requests decoded or written at once; more get 429, which bounds
/// memory and tells exporters to back off instead of queueing here.
pub const MAX_IN_FLIGHT: usize = 64;

/// Per-router ingest state: the in-flight limit.
#[derive(Debug)]
struct Ingest {
    in_flight: Semaphore,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    let ingest = Arc::new(Ingest {
        in_flight: Semaphore::new(MAX_IN_FLIGHT),
    });
    Router::new()
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/api/v1/telemetry/runs/{id}/logs", get(run_logs))
        .route("/api/v1/telemetry/runs/{id}/spans", get(run_spans))
        .route("/api/v1/telemetry/traces/{trace_id}", get(trace))
        .route("/api/v1/telemetry/metrics/{name}", get(metric_points))
        .layer(Extension(ingest))
}

/// An OTLP failure: an HTTP status, a message, and `Retry-After` when
/// retrying later can help. The body is a `google.rpc.Status` in the
/// request's format.
#[derive(Debug)]
struct OtlpError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    format: Option<Format>,
}

impl OtlpError {
    fn new(status: StatusCode, message: impl Into<String>) -> OtlpError {
        OtlpError {
            status,
            message: message.into(),
            retry_after: None,
            format: None,
        }
    }

    fn retry(mut self, secs: u64) -> OtlpError {
        self.retry_after = Some(secs);
        self
    }
}

impl From<DecodeError> for OtlpError {
    fn from(e: DecodeError) -> Self {
        let status = match e {
            DecodeError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DecodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Malformed(_) => StatusCode::BAD_REQUEST,
            DecodeError::Busy(_) => {
                return OtlpError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry(1);
            }
        };
        OtlpError::new(status, e.to_string())
    }
}

impl From<ApiError> for OtlpError {
    fn from(e: ApiError) -> Self {
        OtlpError {
            status: e.status(),
            message: e.to_string(),
            retry_after: e.retry_after(),
            format: None,
        }
    }
}

/// Through [`ApiError`], so OTLP answers a store failure with the same
/// status and Retry-After as every other endpoint.
impl From<StoreError> for OtlpError {
    fn from(e: StoreError) -> Self {
        OtlpError::from(ApiError::from(e))
    }
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "OTLP ingest failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "OTLP request refused");
        }
        let body = plumb_otlp::error_body(&self.message, self.format);
        let ct = self.format.unwrap_or(Format::Json).content_type();
        let mut resp = (self.status, [(header::CONTENT_TYPE, ct)], body).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"plumb\""),
            );
        }
        resp
    }
}

/// Which signal a request carries.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    fn endpoint(self) -> &'static str {
        match self {
            Signal::Logs => "otlp_logs",
            Signal::Traces => "otlp_traces",
            Signal::Metrics => "otlp_metrics",
        }
    }
}

async fn logs(
    state: State<AppState>,
    ingest: Extension<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(Signal::Logs, state, ingest, headers, body).await
}

async fn traces(
    state: State<AppState>,
    ingest: Extension<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(Signal::Traces, state, ingest, headers, body).await
}

async fn metrics(
    state: State<AppState>,
    ingest: Extension<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(Signal::Metrics, state, ingest, headers, body).await
}

/// One export request, start to finish, with its metrics.
async fn export(
    signal: Signal,
    State(state): State<AppState>,
    Extension(ingest): Extension<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let sent_bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| Format::from_content_type(Some(ct)));
    let result = export_inner(signal, &state, &ingest, &headers, body).await;
    let (resp, stored) = match result {
        Ok((resp, stored)) => (resp, stored),
        Err(mut e) => {
            e.format = format.and_then(Result::ok);
            (e.into_response(), 0)
        }
    };
    if let Signal::Logs = signal {
        state.metrics.ingest_lines.inc_by(stored);
    }
    state.metrics.observe_ingest(
        signal.endpoint(),
        resp.status().as_u16(),
        sent_bytes,
        stored,
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn export_inner(
    signal: Signal,
    state: &AppState,
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, u64), OtlpError> {
    crate::auth::require(state, headers, Role::Agent).await?;
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(text(header::CONTENT_TYPE))?;
    let encoding = text(header::CONTENT_ENCODING).map(str::to_owned);
    // An oversized body is read up to the limit rather than refused from
    // its Content-Length alone: a client that is still writing when the
    // connection closes sees a broken pipe instead of the 413 and its reason.
    // The body is read before any permit or memory is taken, so slow
    // senders hold nothing other exporters need; the body deadline bounds
    // how long one may take.
    let declared = text(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| crate::body::read_error(&e, || ApiError::PayloadTooLarge(String::new())))
        .map_err(|e| match e {
            ApiError::PayloadTooLarge(_) => too_large(declared),
            other => OtlpError::from(other),
        })?;
    let Ok(_permit) = ingest.in_flight.try_acquire() else {
        return Err(OtlpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {MAX_IN_FLIGHT} OTLP requests in flight; retry after the delay given"
            ),
        )
        .retry(1));
    };
    let lease = state
        .budget
        .lease(bytes.len() as u64)
        .map_err(|s| OtlpError::from(ApiError::from(s)))?;
    let limits = state.limits.otlp;
    // Decompression and decoding lease memory as they go: the inflated
    // body in steps, then what the scan says decoding will build, so the
    // requests in flight together stay within the ingest budget.
    let decode = move |signal: plumb_otlp::Signal, mut lease: crate::body::Lease| {
        let mut short = None;
        let plain = plumb_otlp::decompress_metered(
            &bytes,
            encoding.as_deref(),
            MAX_DECOMPRESSED,
            &mut |n| {
                lease.grow(n as u64).map_err(|s| {
                    let m = s.message();
                    short = Some(s);
                    DecodeError::Busy(m)
                })
            },
        );
        if let Some(s) = short {
            return Err(OtlpError::from(ApiError::from(s)));
        }
        let plain = plain?.into_owned();
        let cost = plumb_otlp::scan(&plain, format, signal, &limits)?;
        lease
            .grow(cost.decoded_bytes())
            .map_err(|s| OtlpError::from(ApiError::from(s)))?;
        Ok((plain, lease))
    };
    // With export on, the decoded body is kept until the store has it and
    // then queued as it is (still counted in this request's memory lease).
    let keep = state.export.is_some();
    let queue = |signal: plumb_otlp::Signal, records: usize, plain: Option<Vec<u8>>| {
        if let (Some(x), Some(p)) = (&state.export, plain) {
            x.enqueue_otlp(signal, format, records, &p);
        }
    };
    match signal {
        Signal::Logs => {
            let (prepared, rejected, message, exceptions, kept, _lease) = cpu(move || {
                let (plain, lease) = decode(plumb_otlp::Signal::Logs, lease)?;
                let logs = plumb_otlp::decode_logs_within(&plain, format, &limits)?;
                let kept = keep.then_some(plain);
                let records = logs.batches.iter().map(|b| b.records.len()).sum::<usize>()
                    + logs.rejected as usize;
                let prepared = plumb_store::telemetry::prepare_logs(&logs.batches);
                let exceptions = crate::insights::otlp_occurrences(&logs.batches);
                Ok((
                    prepared,
                    logs.rejected,
                    logs.message,
                    exceptions,
                    (records, kept),
                    lease,
                ))
            })
            .await?;
            let stored = state.db.put_logs(prepared).await??.stored as u64;
            crate::insights::record_otlp(state, exceptions).await?;
            queue(plumb_otlp::Signal::Logs, kept.0, kept.1);
            Ok((
                ok(
                    format,
                    plumb_otlp::logs_response(rejected, &message, format),
                ),
                stored,
            ))
        }
        Signal::Traces => {
            let (traces, kept, _lease) = cpu(move || {
                let (plain, lease) = decode(plumb_otlp::Signal::Traces, lease)?;
                Ok((
                    plumb_otlp::decode_traces_within(&plain, format, &limits)?,
                    keep.then_some(plain),
                    lease,
                ))
            })
            .await?;
            let (rejected, message) = (traces.rejected, traces.message);
            let spans = traces.spans;
            let records = spans.len() + rejected as usize;
            let stored = state.db.write(move |s| Ok(s.put_spans(&spans))).await?? as u64;
            queue(plumb_otlp::Signal::Traces, records, kept);
            Ok((
                ok(
                    format,
                    plumb_otlp::traces_response(rejected, &message, format),
                ),
                stored,
            ))
        }
        Signal::Metrics => {
            let (m, kept, _lease) = cpu(move || {
                let (plain, lease) = decode(plumb_otlp::Signal::Metrics, lease)?;
                Ok((
                    plumb_otlp::decode_metrics_within(&plain, format, &limits)?,
                    keep.then_some(plain),
                    lease,
                ))
            })
            .await?;
            let (rejected, message) = (m.rejected, m.message);
            let points = m.points;
            let records = points.len() + rejected as usize;
            let stored = state
                .db
                .write(move |s| Ok(s.put_metric_points(&points)))
                .await?? as u64;
            queue(plumb_otlp::Signal::Metrics, records, kept);
            Ok((
                ok(
                    format,
                    plumb_otlp::metrics_response(rejected, &message, format),
                ),
                stored,
            ))
        }
    }
}

fn too_large(len: Option<u64>) -> OtlpError {
    let sent = len.map(|l| format!(" ({l} bytes)")).unwrap_or_default();
    OtlpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body{sent} is larger than the {MAX_BODY}-byte limit; send smaller batches"
        ),
    )
}

/// Runs CPU work (decompression, decoding, chunk encoding) off the async
/// workers.
async fn cpu<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OtlpError> + Send + 'static,
) -> Result<T, OtlpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        OtlpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("OTLP decoding task failed: {e}"),
        )
    })?
}

fn ok(format: Format, body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// `?limit=N` (0: all) and `?since=RFC3339` of the telemetry queries.
#[derive(Debug, serde::Deserialize)]
struct QueryArgs {
    #[serde(default)]
    limit: usize,
    since: Option<String>,
}

/// A run id, in full or as a prefix the store resolves.
async fn run_id(state: &AppState, id: String) -> Result<Uuid, ApiError> {
    if let Ok(u) = Uuid::parse_str(&id) {
        return Ok(u);
    }
    state.db.read(move |s| s.resolve(&id)).await
}

/// `GET /api/v1/telemetry/runs/{id}/logs`: the run's log records as
/// stored lines, oldest first.
async fn run_logs(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryArgs>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    let id = run_id(&state, id).await?;
    Ok(Json(state.db.read(move |s| s.run_logs(id, q.limit)).await?))
}

/// `GET /api/v1/telemetry/runs/{id}/spans`: the run's spans by start.
async fn run_spans(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Span>>, ApiError> {
    let id = run_id(&state, id).await?;
    Ok(Json(state.db.read(move |s| s.run_spans(id)).await?))
}

/// `GET /api/v1/telemetry/traces/{trace_id}`: a trace's spans by start.
async fn trace(
    _: Viewer,
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Vec<Span>>, ApiError> {
    if trace_id.len() != 32 || !trace_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "`{trace_id}` is not a trace id: expected 32 hex digits"
        )));
    }
    Ok(Json(
        state.db.read(move |s| s.trace_spans(&trace_id)).await?,
    ))
}

/// `GET /api/v1/telemetry/metrics/{name}?since=&limit=`: a metric's points.
async fn metric_points(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QueryArgs>,
) -> Result<Json<Vec<MetricPoint>>, ApiError> {
    let since = q
        .since
        .as_deref()
        .map(Timestamp::parse_rfc3339)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    Ok(Json(
        state
            .db
            .read(move |s| s.metric_points(&name, since, q.limit))
            .await?,
    ))
}

#[cfg(test)]
mod tests;
