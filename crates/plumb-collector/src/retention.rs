//! `[retention] output`: dropping recorded output, OpenTelemetry logs,
//! spans and metric points older than a horizon, while run records stay.
//!
//! The collector that leads ([`crate::leader`]) sweeps when it starts
//! leading and every [`EVERY`] after, in bounded steps
//! ([`plumb_store::Retention`]) so the store's writer is never held for
//! long. The horizon is the start of the UTC day that `now - keep` falls
//! in ([`plumb_store::kit::retention_horizon`]): output is kept in whole
//! days, at most one day longer than asked. What went is counted in
//! `/metrics` (`plumb_retention_dropped_*`), and readers of a run whose
//! output started before the horizon are told that its older output was
//! removed, never shown a silent gap.

use crate::AppState;
use plumb_model::Timestamp;
use plumb_store::Dropped;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;

/// How often the leading collector sweeps.
pub const EVERY: Duration = Duration::from_secs(600);
/// The most steps one sweep takes (each drops a day's partition or a few
/// hundred chunks): a bound, not a target; the next sweep goes on.
const MAX_STEPS: usize = 100_000;

/// What `[retention]` keeps and the counts of what it dropped. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// How long output is kept; forever when `None`.
    pub keep: Option<Duration>,
    chunks: Counter,
    log_chunks: Counter,
    spans: Counter,
    metric_points: Counter,
    bytes: Counter,
    horizon: Gauge,
}

impl Retention {
    /// Retention keeping `keep`, its counters registered in `metrics`.
    pub fn new(keep: Option<Duration>, metrics: &crate::Metrics) -> Retention {
        let r = Retention {
            keep,
            ..Default::default()
        };
        if keep.is_some() {
            let families: [(&str, &str, &Counter); 5] = [
                (
                    "retention_dropped_chunks",
                    "Output chunks dropped by [retention] output",
                    &r.chunks,
                ),
                (
                    "retention_dropped_log_chunks",
                    "Log chunks dropped by [retention] output",
                    &r.log_chunks,
                ),
                (
                    "retention_dropped_spans",
                    "Spans dropped by [retention] output",
                    &r.spans,
                ),
                (
                    "retention_dropped_metric_points",
                    "Metric points dropped by [retention] output",
                    &r.metric_points,
                ),
                (
                    "retention_dropped_bytes",
                    "Stored (compressed) chunk bytes dropped by [retention] output",
                    &r.bytes,
                ),
            ];
            for (name, help, c) in families {
                metrics.register(name, help, c.clone());
            }
            metrics.register(
                "retention_horizon_seconds",
                "Output older than this Unix time was dropped by [retention] output (0 before the first sweep)",
                r.horizon.clone(),
            );
        }
        r
    }

    fn count(&self, d: &Dropped) {
        self.chunks.inc_by(d.chunks);
        self.log_chunks.inc_by(d.log_chunks);
        self.spans.inc_by(d.spans);
        self.metric_points.inc_by(d.metric_points);
        self.bytes.inc_by(d.bytes);
    }
}

/// Starts sweeping (with a tokio runtime and `[retention] output` set).
pub fn start(state: &AppState) {
    let Some(keep) = state.retention.keep else {
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let state = state.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(crate::leader::RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sweep on first leading, then every EVERY while leading.
        let mut last: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            if !state.leader.is_leading() {
                last = None;
                continue;
            }
            if last.is_some_and(|l| l.elapsed() < EVERY) {
                continue;
            }
            last = Some(tokio::time::Instant::now());
            sweep(&state, keep).await;
        }
    });
}

/// One sweep: steps until nothing older than the horizon is left, the
/// store fails (retried at the next sweep) or this collector stops
/// leading. Returns what went.
pub async fn sweep(state: &AppState, keep: Duration) -> Dropped {
    let before = plumb_store::kit::retention_horizon(Timestamp::now(), keep);
    state
        .retention
        .horizon
        .set(before.as_nanos().div_euclid(1_000_000_000));
    let mut total = Dropped::default();
    for _ in 0..MAX_STEPS {
        if !state.leader.is_leading() {
            break;
        }
        match state.db.write(move |s| s.drop_output_before(before)).await {
            Ok(d) if d.is_empty() => break,
            Ok(d) => {
                state.retention.count(&d);
                total.add(d);
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot drop old output now; trying again at the next sweep");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    if !total.is_empty() {
        tracing::info!(
            before = %before.to_rfc3339_secs(),
            chunks = total.chunks,
            log_chunks = total.log_chunks,
            spans = total.spans,
            metric_points = total.metric_points,
            bytes = total.bytes,
            "retention: dropped output older than the horizon"
        );
    }
    total
}

/// `GET /api/v1/retention`: what this collector keeps and what its store
/// dropped.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RetentionView {
    /// `[retention] output` in seconds; absent when output is kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_keep_s: Option<u64>,
    /// Output older than this (ns since the Unix epoch) was dropped;
    /// absent when retention never ran on this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_before_ns: Option<i64>,
}

pub(crate) async fn view(
    _: crate::auth::Viewer,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<RetentionView>, crate::error::ApiError> {
    let horizon = state.db.read(|s| s.output_horizon()).await?;
    Ok(axum::Json(RetentionView {
        output_keep_s: state.retention.keep.map(|d| d.as_secs()),
        output_before_ns: horizon.map(|t| t.as_nanos()),
    }))
}
