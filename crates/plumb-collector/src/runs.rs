//! Runs: native ingest of `plumb run` records (spool frames), and the query
//! API that `plumb ls/show/logs/search/diff --collector` use.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `POST /api/v1/ingest/spool` | agent | spool frames (`application/x-plumb-spool`, optionally gzip) |
//! | `GET /api/v1/runs` | viewer | runs, filters as `plumb ls`: `name`, `host`, `failed`, `state`, `since` (ns), `tag=k=v`..., `limit` |
//! | `GET /api/v1/runs/chart` | viewer | runs per interval by state (`plumb_model::chart::RunsChart`): `name`, `host`, `state`, `since`, `until` (ns), `tag=k=v`..., `text`... |
//! | `GET /api/v1/runs/{ref}` | viewer | `{"run", "fingerprint"}`; `ref` is an id, a prefix, `last` or `last~N` |
//! | `GET /api/v1/runs/{ref}/id` | viewer | `{"id"}`: the reference resolved |
//! | `GET /api/v1/runs/{ref}/output` | viewer | output segments from `cursor` on (see [`OUTPUT_MEDIA_TYPE`]) |
//! | `GET /api/v1/fingerprints/{hash}` | viewer | a fingerprint |
//! | `GET /api/v1/search` | viewer | output lines, log records and spans (`plumb_model::telemetry::Hit`): `text`, `mode`, `ignore_case`, `kind` (`output,log,span`; default all), `host`, `run`, `stream`, `since`, `until` (ns), `limit` |
//! | `GET /api/v1/diff?a=&b=` | viewer | why two runs differ |

use crate::auth::{Agent, Viewer};
use crate::error::ApiError;
use crate::{AppState, body};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use plumb_model::{RunState, Stream, Timestamp};
use plumb_store::spool::{ImportError, ImportStats};
use plumb_store::{OutputCursor, Replayed, RunFilter, SearchMode, SearchOptions, StoreError};
use serde::Deserialize;
use std::time::Instant;

/// The media type of a native ingest body: spool frames.
pub const SPOOL_MEDIA_TYPE: &str = "application/x-plumb-spool";

/// The media type of `GET .../output`: a sequence of segments, each
/// `u8 stream (1 stdout, 2 stderr, 3 combined) | i64 time ns (LE) | u32 length (LE) |
/// bytes`, so output comes back byte for byte; stream 0 marks the gap where
/// output over the run's cap was dropped (see [`decode_replayed`]). The cursor to continue from
/// is in the `x-plumb-cursor` header, the run's state in `x-plumb-run-state`.
pub const OUTPUT_MEDIA_TYPE: &str = "application/x-plumb-output";

/// Header carrying the output cursor (JSON).
pub const CURSOR_HEADER: &str = "x-plumb-cursor";
/// Header carrying the run's state with its output.
pub const STATE_HEADER: &str = "x-plumb-run-state";

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ingest/spool", post(ingest_spool))
        .route("/api/v1/runs", get(list))
        .route("/api/v1/runs/chart", get(chart))
        .route("/api/v1/runs/{reference}", get(show))
        .route("/api/v1/runs/{reference}/id", get(resolve))
        .route("/api/v1/runs/{reference}/output", get(output))
        .route("/api/v1/fingerprints/{hash}", get(fingerprint))
        .route("/api/v1/search", get(search))
        .route("/api/v1/diff", get(diff))
        .route("/api/v1/retention", get(crate::retention::view))
}

async fn ingest_spool(
    _: Agent,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest_spool_inner(&state, &headers, request).await;
    let (code, sent, records, resp) = match result {
        Ok((stats, sent)) => {
            let records = stats.runs
                + stats.runs_kept
                + stats.fingerprints
                + stats.chunks
                + stats.chunks_duplicate;
            state.metrics.ingest_lines.inc_by(stats.lines);
            (200, sent, records, Json(stats).into_response())
        }
        Err((e, sent)) => (e.status().as_u16(), sent, 0, e.into_response()),
    };
    state.metrics.observe_ingest(
        "spool",
        code,
        sent,
        records,
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn ingest_spool_inner(
    state: &AppState,
    headers: &HeaderMap,
    request: Body,
) -> Result<(ImportStats, u64), (ApiError, u64)> {
    body::expect_content_type(headers, &[SPOOL_MEDIA_TYPE]).map_err(|e| (e, 0))?;
    let (bytes, sent, _lease) = body::read(&state.budget, headers, request, body::MAX_BODY)
        .await
        .map_err(|e| (e, 0))?;
    let for_export = state.export.as_ref().map(|_| bytes.clone());
    let stats = state
        .db
        .write(move |store| {
            // A bad body is an answer, not a store failure: carry it out of
            // the closure as a value.
            match store.import_frames(&bytes) {
                Ok(stats) => Ok(Ok(stats)),
                Err(ImportError::Store(e)) => Err(e),
                Err(other) => Ok(Err(other.to_string())),
            }
        })
        .await
        .map_err(|e| (e, sent))?
        .map_err(|msg| {
            (
                ApiError::BadRequest(format!("bad spool body, nothing stored: {msg}")),
                sent,
            )
        })?;
    if let (Some(x), Some(b)) = (&state.export, for_export) {
        x.enqueue(crate::export::Kind::Spool, b);
    }
    Ok((stats, sent))
}

/// Query of `GET /api/v1/runs`, as pairs so `tag` may repeat.
fn run_filter(pairs: Vec<(String, String)>) -> Result<RunFilter, ApiError> {
    let mut f = RunFilter {
        limit: 50,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "name" => f.name = Some(v),
            "host" => f.host = Some(v),
            "failed" => f.failed = parse_bool("failed", &v)?,
            "state" => f.state = Some(v.parse::<RunState>().map_err(ApiError::BadRequest)?),
            "since" => f.since = Some(parse_ns("since", &v)?),
            "tag" => match v.split_once('=') {
                Some((tk, tv)) if !tk.is_empty() => f.tags.push((tk.into(), tv.into())),
                _ => {
                    return Err(ApiError::BadRequest(format!("tag `{v}` is not key=value")));
                }
            },
            "limit" => f.limit = parse_num("limit", &v)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`: use name, host, failed, state, since, tag, limit"
                )));
            }
        }
    }
    Ok(f)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "`{name}={v}`: expected true or false"
        ))),
    }
}

fn parse_num(name: &str, v: &str) -> Result<usize, ApiError> {
    v.parse()
        .map_err(|_| ApiError::BadRequest(format!("`{name}={v}`: expected a whole number")))
}

fn parse_ns(name: &str, v: &str) -> Result<Timestamp, ApiError> {
    v.parse::<i64>().map(Timestamp::from_nanos).map_err(|_| {
        ApiError::BadRequest(format!(
            "`{name}={v}`: expected nanoseconds since the Unix epoch"
        ))
    })
}

async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<plumb_store::RunSummary>>, ApiError> {
    let filter = run_filter(pairs)?;
    Ok(Json(state.db.read(move |s| s.list_runs(&filter)).await?))
}

/// Query of `GET /api/v1/runs/chart`, as pairs so `tag` and `text` may
/// repeat.
fn chart_query(pairs: Vec<(String, String)>) -> Result<plumb_store::dash::RunQuery, ApiError> {
    let mut q = plumb_store::dash::RunQuery::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => q.name = Some(v),
            "host" => q.host = Some(v),
            "state" => q.state = Some(v.parse::<RunState>().map_err(ApiError::BadRequest)?),
            "since" => q.since = Some(parse_ns("since", &v)?),
            "until" => q.until = Some(parse_ns("until", &v)?),
            "text" => q.text.push(v),
            "tag" => match v.split_once('=') {
                Some((tk, tv)) if !tk.is_empty() => q.tags.push((tk.into(), tv.into())),
                _ => {
                    return Err(ApiError::BadRequest(format!("tag `{v}` is not key=value")));
                }
            },
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`: use name, host, state, since, until, tag, text"
                )));
            }
        }
    }
    Ok(q)
}

async fn chart(
    _: Viewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<plumb_model::chart::RunsChart>, ApiError> {
    let q = chart_query(pairs)?;
    let now = Timestamp::now();
    Ok(Json(
        state
            .db
            .read(move |s| plumb_store::dash::runs_chart(s, &q, now))
            .await?,
    ))
}

async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (run, fp) = state
        .db
        .read(move |s| {
            let run = s.get_run(s.resolve(&reference)?)?;
            let fp = s.run_fingerprint(&run)?;
            Ok((run, fp))
        })
        .await?;
    Ok(Json(serde_json::json!({ "run": run, "fingerprint": fp })))
}

async fn resolve(
    _: Viewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = state.db.read(move |s| s.resolve(&reference)).await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

async fn fingerprint(
    _: Viewer,
    State(state): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Json<plumb_model::Fingerprint>, ApiError> {
    let h = hash.clone();
    match state.db.read(move |s| s.get_fingerprint(&h)).await? {
        Some(fp) => Ok(Json(fp)),
        None => Err(ApiError::NotFound(format!("no fingerprint `{hash}`"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    stream: Option<String>,
    cursor: Option<String>,
}

fn parse_stream(v: &str) -> Result<Stream, ApiError> {
    match v {
        "stdout" => Ok(Stream::Stdout),
        "stderr" => Ok(Stream::Stderr),
        "combined" => Ok(Stream::Combined),
        other => Err(ApiError::BadRequest(format!(
            "stream `{other}`: expected stdout, stderr or combined"
        ))),
    }
}

/// Appends one piece of replayed output in the wire form of
/// [`OUTPUT_MEDIA_TYPE`]: `u8 stream`, `i64 time`, `u32 len`, the bytes
/// (little-endian). The gap over the output cap is stream 0, time 0, and
/// `u64 dropped`, `u64 cap`, then the line that marks it (for the
/// dashboard's live view); see [`decode_replayed`].
fn encode_replayed(buf: &mut Vec<u8>, piece: Replayed<'_>) {
    let (stream, time, data): (u8, i64, &[u8]) = match piece {
        Replayed::Read {
            stream,
            time,
            bytes,
        } => (stream.as_u8(), time.as_nanos(), bytes),
        Replayed::Gap { dropped, cap } => {
            let line = plumb_model::display::output_gap(dropped, cap);
            buf.push(GAP_STREAM);
            buf.extend_from_slice(&0i64.to_le_bytes());
            buf.extend_from_slice(&(16 + line.len() as u32).to_le_bytes());
            buf.extend_from_slice(&dropped.to_le_bytes());
            buf.extend_from_slice(&cap.to_le_bytes());
            buf.extend_from_slice(line.as_bytes());
            return;
        }
    };
    buf.push(stream);
    buf.extend_from_slice(&time.to_le_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
}

/// The stream number of a gap in the output wire form.
const GAP_STREAM: u8 = 0;

/// Reads the pieces of a body in the wire form of [`OUTPUT_MEDIA_TYPE`]
/// (see [`encode_replayed`]), calling `out` with each; an error names what
/// is malformed.
pub fn decode_replayed(
    mut p: &[u8],
    mut out: impl FnMut(Replayed<'_>) -> std::io::Result<()>,
) -> Result<(), DecodeError> {
    while !p.is_empty() {
        if p.len() < 13 {
            return Err(DecodeError::Malformed(
                "truncated output segment header".into(),
            ));
        }
        let time = i64::from_le_bytes(p[1..9].try_into().expect("8"));
        let len = u32::from_le_bytes(p[9..13].try_into().expect("4")) as usize;
        if p.len() < 13 + len {
            return Err(DecodeError::Malformed("truncated output segment".into()));
        }
        let data = &p[13..13 + len];
        let piece = if p[0] == GAP_STREAM {
            if len < 16 {
                return Err(DecodeError::Malformed(format!(
                    "gap of {len} bytes, expected at least 16"
                )));
            }
            Replayed::Gap {
                dropped: u64::from_le_bytes(data[..8].try_into().expect("8")),
                cap: u64::from_le_bytes(data[8..16].try_into().expect("8")),
            }
        } else {
            Replayed::Read {
                stream: Stream::from_u8(p[0])
                    .ok_or_else(|| DecodeError::Malformed(format!("unknown stream {}", p[0])))?,
                time: Timestamp::from_nanos(time),
                bytes: data,
            }
        };
        out(piece).map_err(DecodeError::Write)?;
        p = &p[13 + len..];
    }
    Ok(())
}

/// Why a body of replayed output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not in the wire form.
    #[error("{0}")]
    Malformed(String),
    /// Writing a piece failed.
    #[error("{0}")]
    Write(std::io::Error),
}

async fn output(
    _: Viewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<OutputQuery>,
) -> Result<Response, ApiError> {
    let only = q.stream.as_deref().map(parse_stream).transpose()?;
    let mut cursor: OutputCursor = match q.cursor.as_deref() {
        None | Some("") => OutputCursor::default(),
        Some(c) => serde_json::from_str(c).map_err(|e| {
            ApiError::BadRequest(format!("cursor `{c}` is not one this collector gave: {e}"))
        })?,
    };
    let (bytes, cursor, run_state) = state
        .db
        .read(move |s| {
            let id = s.resolve(&reference)?;
            // The state is read before the output, so a client that sees
            // "finished" has also been given all of the output.
            let run_state = s.get_run(id)?.state;
            let mut buf = Vec::new();
            s.replay_output(id, only, &mut cursor, &mut |piece| {
                encode_replayed(&mut buf, piece);
                Ok(())
            })?;
            Ok((buf, cursor, run_state))
        })
        .await?;
    let cursor_json = serde_json::to_string(&cursor).expect("cursor serializes");
    let mut resp = Response::new(Body::from(Bytes::from(bytes)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OUTPUT_MEDIA_TYPE),
    );
    h.insert(
        CURSOR_HEADER,
        HeaderValue::from_str(&cursor_json).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    h.insert(STATE_HEADER, HeaderValue::from_static(run_state.as_str()));
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    text: String,
    mode: Option<String>,
    ignore_case: Option<String>,
    host: Option<String>,
    run: Option<String>,
    stream: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

async fn search(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Vec<plumb_model::telemetry::Hit>>, ApiError> {
    let mode = match q.mode.as_deref() {
        None => SearchMode::Words,
        Some(m) => SearchMode::parse(m).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "mode `{m}` is not a search mode: use words, substring or regex"
            ))
        })?,
    };
    let ignore_case = match q.ignore_case.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "ignore_case `{v}` is not true or false"
            )));
        }
    };
    let mut opts = SearchOptions {
        text: q.text,
        mode,
        ignore_case,
        host: q.host,
        run: None,
        stream: q.stream.as_deref().map(parse_stream).transpose()?,
        kinds: match q.kind.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|k| k.parse().map_err(ApiError::BadRequest))
                .collect::<Result<_, _>>()?,
        },
        since: q
            .since
            .as_deref()
            .map(|v| parse_ns("since", v))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|v| parse_ns("until", v))
            .transpose()?,
        limit: q
            .limit
            .as_deref()
            .map(|v| parse_num("limit", v))
            .transpose()?
            .unwrap_or(100),
    };
    let run = q.run;
    let hits = state
        .db
        .read(move |s| {
            opts.run = run.as_deref().map(|r| s.resolve(r)).transpose()?;
            s.search(&opts)
        })
        .await?;
    Ok(Json(hits))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    a: String,
    b: String,
}

async fn diff(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<plumb_model::diff::RunDiff>, ApiError> {
    let d = state
        .db
        .read(move |s| {
            let load = |r: &str| -> Result<_, StoreError> {
                let run = s.get_run(s.resolve(r)?)?;
                let fp = s.run_fingerprint(&run)?;
                Ok((run, fp))
            };
            let (ra, fa) = load(&q.a)?;
            let (rb, fb) = load(&q.b)?;
            Ok(plumb_model::diff::diff(&ra, fa.as_ref(), &rb, fb.as_ref()))
        })
        .await?;
    Ok(Json(d))
}
