//! Error groups and slow-run detection: the JSON API, the background task
//! that groups failed runs, the OTLP exception hook, and their `/metrics`.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `GET /api/v1/errors` | viewer | `{"groups": [...]}`, most recently seen first: `since` (ns), `status`, `limit` |
//! | `GET /api/v1/errors/{fingerprint}` | viewer | the group, `occurrences` (newest first, `recent` of them), `by_host`, `sample`, `over_time` (occurrences per interval since first seen) |
//! | `POST /api/v1/errors/{fingerprint}/resolve` | admin | resolves the group; returns it |
//! | `GET /api/v1/runs/slow` | viewer | `{"runs": [...]}`: running runs longer than usual |
//! | `GET /api/v1/runs/{ref}/duration` | viewer | a run's duration against its name's p50/p95 |
//! | `GET /api/v1/durations/{name}` | viewer | `{name, n, p50_s, p95_s}` |
//!
//! Grouping stays off the ingest path: failed runs are queued by a trigger
//! in the store, and [`spawn_grouper`]'s task files them about once a
//! second through the store's writer, a bounded batch per write. OTLP log
//! records are checked for `exception.*` attributes on the decoding threads
//! ([`otlp_occurrences`]); only those that have them reach the writer.
//!
//! Slow runs are computed once a second by [`spawn_slow_watch`]'s task into
//! a [`SlowCache`]; the API, the runs page, `/metrics` and the slow-run alert
//! rule all read that list ([`slow_runs`]) instead of scanning the store per
//! request.

use crate::AppState;
use crate::auth::{Role, Viewer};
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use plumb_model::insights::{
    DurationStats, ErrorGroup, ErrorGroupDetail, ErrorGroups, ErrorQuery, ErrorStatus,
    InsightsConfig, OccurrenceSource, RunDuration, SlowRun, SlowRuns,
};
use plumb_model::telemetry::LogBatch;
use plumb_model::{Exception, Timestamp};
use plumb_store::insights::NewOccurrence;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;

/// How often queued failed runs are grouped and quiet groups resolved.
pub const GROUP_INTERVAL: Duration = Duration::from_secs(1);

/// How often the slow-run list is recomputed.
pub const SLOW_INTERVAL: Duration = Duration::from_secs(1);

/// A cached slow-run list older than this (the task is stuck behind a busy
/// store, or has not run yet) is recomputed by the reader instead.
const SLOW_STALE: Duration = Duration::from_secs(5);

/// Failed runs grouped per store write; the writer serves ingest between
/// batches.
const DRAIN_BATCH: usize = 500;

/// Batches per interval at most, so a large backlog (a store upgraded with
/// many failed runs) is worked off steadily without hogging the writer.
const MAX_BATCHES: usize = 20;

/// Occurrences listed by `GET /api/v1/errors/{fingerprint}` by default.
const RECENT: usize = 50;

/// The routes of this module; registers the metrics and starts the
/// grouping and slow-run tasks.
pub fn routes(state: &AppState) -> Router<AppState> {
    register_metrics(&state.metrics, state.insights.clone(), state.slow.clone());
    spawn_grouper(state);
    spawn_slow_watch(state);
    Router::new()
        .route("/api/v1/errors", get(list))
        .route("/api/v1/errors/{fingerprint}", get(show))
        .route("/api/v1/errors/{fingerprint}/resolve", post(resolve))
        .route("/api/v1/runs/slow", get(slow))
        .route("/api/v1/runs/{reference}/duration", get(run_duration))
        .route("/api/v1/durations/{name}", get(durations))
}

/// The fingerprint every group uses: plumb-record's, so that runs and OTLP
/// records of the same failure agree.
pub fn fingerprint(e: &Exception) -> String {
    plumb_model::exception::fingerprint(e)
}

/// Starts the task that groups queued failed runs and resolves quiet groups
/// every [`GROUP_INTERVAL`] (when there is a tokio runtime).
pub fn spawn_grouper(state: &AppState) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: failed runs are not grouped into errors");
        return;
    };
    let state = state.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(GROUP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !state.leader.is_leading() {
                continue;
            }
            if let Err(e) = group_once(&state).await {
                tracing::warn!(error = %e, "grouping failed runs into errors failed; retrying");
            }
        }
    });
}

/// The running runs that take longer than usual, as last computed: shared
/// by every clone (one per collector, in [`AppState`]).
#[derive(Debug, Clone, Default)]
pub struct SlowCache {
    last: Arc<std::sync::RwLock<Option<SlowList>>>,
}

#[derive(Debug)]
struct SlowList {
    computed: std::time::Instant,
    runs: Arc<Vec<SlowRun>>,
}

impl SlowCache {
    /// The list if it was computed within `max_age`, with each run's
    /// elapsed time and factor brought up to `now` (the list is up to a
    /// second old; a run's age is not).
    pub fn get(&self, now: Timestamp, max_age: Duration) -> Option<Vec<SlowRun>> {
        let g = self.last.read().unwrap_or_else(|p| p.into_inner());
        let l = g.as_ref().filter(|l| l.computed.elapsed() <= max_age)?;
        Some(
            l.runs
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    let elapsed = (now.as_nanos() - r.started.as_nanos()) as f64 / 1e9;
                    if elapsed > r.elapsed_s {
                        r.elapsed_s = elapsed;
                        if r.p95_s > 0.0 {
                            r.factor = elapsed / r.p95_s;
                        }
                    }
                    r
                })
                .collect(),
        )
    }

    /// How many runs the last list holds (0 before the first).
    pub fn len(&self) -> usize {
        let g = self.last.read().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map_or(0, |l| l.runs.len())
    }

    /// Whether the last list is empty (or there is none yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the list.
    pub fn set(&self, runs: Vec<SlowRun>) {
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some(SlowList {
            computed: std::time::Instant::now(),
            runs: Arc::new(runs),
        });
    }
}

/// Recomputes the slow-run list into the cache (one bounded store read).
pub async fn refresh_slow_runs(state: &AppState) -> Result<Vec<SlowRun>, ApiError> {
    let cfg = state.insights.slow.clone();
    let runs = state
        .db
        .read(move |s| s.slow_runs(Timestamp::now(), &cfg))
        .await?;
    state.slow.set(runs.clone());
    Ok(runs)
}

/// Running runs longer than usual, by the collector's `[insights]`
/// settings: the cached list, or a fresh one when the cache is stale.
pub async fn slow_runs(state: &AppState) -> Result<Vec<SlowRun>, ApiError> {
    match state.slow.get(Timestamp::now(), SLOW_STALE) {
        Some(runs) => Ok(runs),
        None => refresh_slow_runs(state).await,
    }
}

/// Starts the task that recomputes the slow-run list every
/// [`SLOW_INTERVAL`] (when there is a tokio runtime; without one, readers
/// compute it themselves).
pub fn spawn_slow_watch(state: &AppState) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let state = state.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(SLOW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match refresh_slow_runs(&state).await {
                // Every collector keeps the list for its readers; evidence
                // is taken once, by the one that leads.
                Ok(slow) if state.leader.is_leading() => crate::stack::take_evidence(&state, &slow),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "computing the slow-run list failed; retrying")
                }
            }
        }
    });
}

/// One round: resolves groups quiet for the configured period, then files
/// queued failed runs, a bounded batch per store write.
pub async fn group_once(state: &AppState) -> Result<usize, ApiError> {
    let quiet = state.insights.quiet_s;
    state
        .db
        .write(move |s| s.auto_resolve_error_groups(Timestamp::now(), quiet))
        .await?;
    let mut filed = 0;
    for _ in 0..MAX_BATCHES {
        let d = state
            .db
            .write(|s| s.drain_error_queue(DRAIN_BATCH, &fingerprint))
            .await?;
        filed += d.filed;
        if d.taken < DRAIN_BATCH {
            break;
        }
    }
    if filed > 0 {
        tracing::debug!(filed, "failed runs grouped into errors");
    }
    Ok(filed)
}

/// The occurrences in OTLP log batches: records with `exception.type` or
/// `exception.message` attributes (OpenTelemetry semantic conventions). The
/// stack trace, when given, is parsed by plumb-record's parser, so the
/// record lands in the same group as a run that died of the same exception.
/// CPU only; call it on a decoding thread.
pub fn otlp_occurrences(batches: &[LogBatch]) -> Vec<NewOccurrence> {
    let mut out = Vec::new();
    for batch in batches {
        let source = &batch.source;
        let mut source_hash = None;
        for r in &batch.records {
            let text = |k: &str| r.attributes.get(k).and_then(|v| v.as_str());
            let (kind, message) = (text("exception.type"), text("exception.message"));
            if kind.is_none() && message.is_none() {
                continue;
            }
            let parsed = text("exception.stacktrace")
                .and_then(|st| plumb_model::exception::parse(st.as_bytes()));
            let exception = parsed.unwrap_or_else(|| {
                let language = source
                    .resource
                    .get("telemetry.sdk.language")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown");
                let mut e = Exception {
                    language: language.to_string(),
                    kind: kind.unwrap_or("Exception").to_string(),
                    message: message.unwrap_or("").to_string(),
                    ..Default::default()
                };
                e.fingerprint = fingerprint(&e);
                e
            });
            let hash = *source_hash.get_or_insert_with(|| source.hash());
            out.push(NewOccurrence {
                // The record's identity as the log store keeps it: a retried
                // export maps to the same key and is filed once.
                key: format!("otlp:{}:{:016x}", r.time.as_nanos(), r.content_hash(hash)),
                exception,
                run_id: source.run_id,
                host: if source.host.is_empty() {
                    source.service.clone()
                } else {
                    source.host.clone()
                },
                at: r.time,
                source: OccurrenceSource::Otlp,
            });
        }
    }
    out
}

/// Files OTLP occurrences found by [`otlp_occurrences`] (nothing to do, and
/// no store write, when there are none).
pub async fn record_otlp(
    state: &AppState,
    occurrences: Vec<NewOccurrence>,
) -> Result<(), ApiError> {
    if occurrences.is_empty() {
        return Ok(());
    }
    state
        .db
        .write(move |s| s.record_error_occurrences(&occurrences))
        .await?;
    Ok(())
}

/// `since=`: nanoseconds since the epoch (what programs send), else a
/// moment in the one syntax of [`plumb_model::parse_moment`].
fn parse_since(v: &str) -> Result<Timestamp, ApiError> {
    v.parse::<i64>().map(Timestamp::from_nanos).or_else(|_| {
        plumb_model::parse_moment(v, Timestamp::now())
            .map_err(|e| ApiError::BadRequest(format!("since: {e}")))
    })
}

fn parse_limit(v: &str, what: &str) -> Result<usize, ApiError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{what} `{v}` is not a positive integer")))
}

/// The query of `GET /api/v1/errors`, from its parameters.
pub fn error_query(
    config: &InsightsConfig,
    pairs: &[(String, String)],
) -> Result<ErrorQuery, ApiError> {
    let mut q = ErrorQuery::at(Timestamp::now());
    q.new_window_s = config.new_window_s;
    for (k, v) in pairs {
        match k.as_str() {
            "since" => q.since = Some(parse_since(v)?),
            "status" => {
                q.status = Some(v.parse::<ErrorStatus>().map_err(ApiError::BadRequest)?);
            }
            "limit" => q.limit = parse_limit(v, "limit")?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (expected since, status, limit)"
                )));
            }
        }
    }
    Ok(q)
}

async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ErrorGroups>, ApiError> {
    let q = error_query(&state.insights, &pairs)?;
    Ok(Json(state.db.read(move |s| error_list(s, &q)).await?))
}

/// Days the error list's sparklines cover.
pub const SPARK_DAYS: i64 = 14;

/// The groups of `q` with their sparklines: `GET /api/v1/errors` and
/// `/errors`. Every group's days come from one read of the store's per-day
/// rollup ([`plumb_store::Insights::error_day_counts`]), exact however
/// many occurrences there are.
pub fn error_list(
    s: &dyn plumb_store::Backend,
    q: &plumb_model::insights::ErrorQuery,
) -> plumb_store::Result<ErrorGroups> {
    const DAY: i64 = plumb_store::insights::DAY_NS;
    let mut groups = s.error_groups(q)?;
    groups
        .iter_mut()
        .for_each(plumb_model::insights::ErrorGroup::shorten_hosts);
    let now = Timestamp::now().as_nanos();
    let from = now - now.rem_euclid(DAY) - (SPARK_DAYS - 1) * DAY;
    let fps: Vec<String> = groups.iter().map(|g| g.fingerprint.clone()).collect();
    let mut per_group: std::collections::HashMap<String, Vec<u64>> = fps
        .iter()
        .map(|f| (f.clone(), vec![0u64; SPARK_DAYS as usize]))
        .collect();
    for (fp, day, n) in
        s.error_day_counts(&fps, Timestamp::from_nanos(from), SPARK_DAYS as usize)?
    {
        let i = (day.as_nanos() - from) / DAY;
        if let (Some(days), 0..SPARK_DAYS) = (per_group.get_mut(&fp), i) {
            days[i as usize] += n;
        }
    }
    let sparks = fps
        .into_iter()
        .map(|fp| {
            let per_day = per_group.remove(&fp).unwrap_or_default();
            plumb_model::insights::ErrorSpark {
                fingerprint: fp,
                from: Timestamp::from_nanos(from),
                per_day,
                partial: false,
            }
        })
        .collect();
    Ok(ErrorGroups { groups, sparks })
}

async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ErrorGroupDetail>, ApiError> {
    let mut recent = RECENT;
    for (k, v) in &pairs {
        match k.as_str() {
            "recent" => recent = parse_limit(v, "recent")?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (expected recent)"
                )));
            }
        }
    }
    let window = state.insights.new_window_s;
    let fp = fingerprint.clone();
    state
        .db
        .read(move |s| {
            let now = Timestamp::now();
            let mut d = s.error_group(&fp, now, window, recent)?;
            if let Some(d) = &mut d {
                crate::web::add_error_chart(s, d, now)?;
            }
            Ok(d)
        })
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no error group with fingerprint `{fingerprint}`"))
        })
}

async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(fingerprint): Path<String>,
) -> Result<Json<ErrorGroup>, ApiError> {
    crate::auth::require(&state, &headers, Role::Admin).await?;
    let window = state.insights.new_window_s;
    let fp = fingerprint.clone();
    let found = state
        .db
        .write(move |s| {
            let now = Timestamp::now();
            if !s.resolve_error_group(&fp, now)? {
                return Ok(None);
            }
            Ok(s.error_group(&fp, now, window, 0)?.map(|d| d.group))
        })
        .await?;
    found.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!("no error group with fingerprint `{fingerprint}`"))
    })
}

async fn slow(_: Viewer, State(state): State<AppState>) -> Result<Json<SlowRuns>, ApiError> {
    Ok(Json(SlowRuns {
        runs: slow_runs(&state).await?,
    }))
}

async fn run_duration(
    _: Viewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<RunDuration>, ApiError> {
    let window = state.insights.slow.window;
    Ok(Json(
        state
            .db
            .read(move |s| s.run_duration(s.resolve(&reference)?, Timestamp::now(), window))
            .await?,
    ))
}

async fn durations(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DurationStats>, ApiError> {
    let window = state.insights.slow.window;
    Ok(Json(
        state
            .db
            .read(move |s| s.duration_stats(&name, window))
            .await?,
    ))
}

/// Labels of the error-group gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

fn register_metrics(metrics: &Metrics, config: Arc<InsightsConfig>, slow_cache: SlowCache) {
    let slow = Gauge::<i64>::default();
    let groups = Family::<StatusLabels, Gauge>::default();
    let occurrences = Gauge::<i64>::default();
    metrics.register(
        "runs_longer_than_usual",
        "Running runs whose elapsed time exceeds the configured factor times the p95 of their name",
        slow.clone(),
    );
    metrics.register("error_groups", "Error groups by status", groups.clone());
    metrics.register(
        "error_occurrences",
        "Occurrences filed in all error groups",
        occurrences.clone(),
    );
    metrics.on_scrape(Arc::new(move |store| {
        let now = Timestamp::now();
        // The list the dashboard shows; computed here only when the task
        // has not kept it fresh.
        let n = match slow_cache.get(now, SLOW_STALE) {
            Some(runs) => runs.len(),
            None => store.slow_runs(now, &config.slow)?.len(),
        };
        slow.set(n as i64);
        let (by_status, total) = store.error_group_counts(now, config.new_window_s)?;
        for s in [
            ErrorStatus::New,
            ErrorStatus::Regressed,
            ErrorStatus::Ongoing,
            ErrorStatus::Resolved,
        ] {
            let n = by_status
                .iter()
                .find(|(x, _)| *x == s)
                .map_or(0, |(_, n)| *n);
            groups
                .get_or_create(&StatusLabels {
                    status: s.as_str().to_string(),
                })
                .set(n as i64);
        }
        occurrences.set(total as i64);
        Ok(())
    }));
}

#[cfg(test)]
mod tests;
