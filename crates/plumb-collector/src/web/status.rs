//! `/status` and its JSON twin `/api/v1/status`: the collector itself.
//! Its ingest rate comes from its own counters (`plumb_ingest_records`,
//! `plumb_ingest_lines`, `plumb_ingest_bytes`), sampled once a minute into a small ring in
//! memory ([`Ring`], the last [`KEEP`] minutes; nothing is stored); the
//! spool backlog and drops are what agents reported in their last
//! heartbeats; alerts are the store's.

use super::{Nav, PageError, PageViewer, bytes, layout};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::metrics::EndpointLabels;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::alerts::AlertState;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Minutes the ring keeps.
pub const KEEP: usize = 60;

/// The ingest endpoints counted.
const ENDPOINTS: [&str; 5] = ["spool", "node", "otlp_logs", "otlp_traces", "otlp_metrics"];

/// The collector's counters once a minute (in memory only).
#[derive(Debug, Clone, Default)]
pub struct Ring(Arc<Mutex<VecDeque<Sample>>>);

/// Counter totals at a moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// When.
    pub at: Timestamp,
    /// Records ingested since the collector started.
    pub records: u64,
    /// Output lines and log records ingested since it started.
    pub lines: u64,
    /// Request bytes ingested since the collector started.
    pub bytes: u64,
}

fn totals(state: &AppState) -> Sample {
    let (mut records, mut b) = (0, 0);
    for e in ENDPOINTS {
        let l = EndpointLabels {
            endpoint: e.to_string(),
        };
        records += state.metrics.ingest_records.get_or_create(&l).get();
        b += state.metrics.ingest_bytes.get_or_create(&l).get();
    }
    Sample {
        at: Timestamp::now(),
        records,
        lines: state.metrics.ingest_lines.get(),
        bytes: b,
    }
}

impl Ring {
    fn push(&self, s: Sample) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.push_back(s);
        while r.len() > KEEP + 1 {
            r.pop_front();
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Samples the counters now and then once a minute, on the current tokio
/// runtime (none: the page shows only the figures since the start).
pub fn start(state: &AppState) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let state = state.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.status.push(totals(&state));
        }
    });
}

/// One minute's ingest rate.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// End of the interval.
    pub at: Timestamp,
    /// Records per second over it.
    pub records_per_s: f64,
    /// Output lines and log records per second over it.
    pub lines_per_s: f64,
    /// Bytes per second over it.
    pub bytes_per_s: f64,
}

/// What `/status` shows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// When it was read.
    pub now: Timestamp,
    /// Records ingested since the collector started (spool, heartbeats,
    /// OTLP), and their request bytes.
    pub records_total: u64,
    /// Request bytes ingested since the start.
    pub bytes_total: u64,
    /// Output lines (recorded runs' output, in spooled chunks) and OTLP log
    /// records ingested since the start.
    pub lines_total: u64,
    /// The rate per minute sampled, oldest first (the last hour).
    pub per_minute: Vec<Rate>,
    /// Spool files waiting on the nodes, as last reported.
    pub spool_files: u64,
    /// Their bytes.
    pub spool_bytes: u64,
    /// Runs the nodes dropped from a full spool, as last reported.
    pub dropped_runs: u64,
    /// Bytes dropped so.
    pub dropped_bytes: u64,
    /// Nodes that reported a spool backlog or drops.
    pub nodes_with_backlog: Vec<String>,
    /// Alerts firing now.
    pub alerts_firing: usize,
    /// Alerts pending (their condition holds, `for` not yet passed).
    pub alerts_pending: usize,
}

/// The status, for the page and its twin.
pub async fn status_data(state: &AppState) -> Result<StatusView, ApiError> {
    let (nodes, alerts) = state.db.read(|s| Ok((s.nodes()?, s.alert_rows()?))).await?;
    let now = totals(state);
    let mut samples = state.status.samples();
    samples.push(now);
    let per_minute = samples
        .windows(2)
        .filter_map(|w| {
            let secs = (w[1].at.as_nanos() - w[0].at.as_nanos()) as f64 / 1e9;
            (secs >= 1.0).then(|| Rate {
                at: w[1].at,
                records_per_s: w[1].records.saturating_sub(w[0].records) as f64 / secs,
                lines_per_s: w[1].lines.saturating_sub(w[0].lines) as f64 / secs,
                bytes_per_s: w[1].bytes.saturating_sub(w[0].bytes) as f64 / secs,
            })
        })
        .collect();
    let mut v = StatusView {
        now: now.at,
        records_total: now.records,
        bytes_total: now.bytes,
        lines_total: now.lines,
        per_minute,
        spool_files: 0,
        spool_bytes: 0,
        dropped_runs: 0,
        dropped_bytes: 0,
        nodes_with_backlog: Vec::new(),
        alerts_firing: alerts
            .iter()
            .filter(|a| a.alert.state == AlertState::Firing)
            .count(),
        alerts_pending: alerts
            .iter()
            .filter(|a| a.alert.state == AlertState::Pending)
            .count(),
    };
    for n in &nodes {
        let sp = &n.report.spool;
        v.spool_files += sp.files;
        v.spool_bytes += sp.bytes;
        v.dropped_runs += sp.dropped_runs;
        v.dropped_bytes += sp.dropped_bytes;
        if sp.files > 0 || sp.dropped_runs > 0 {
            v.nodes_with_backlog.push(n.name.clone());
        }
    }
    Ok(v)
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(status_page))
        .route("/api/v1/status", get(status_json))
}

async fn status_json(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(status_data(&state).await?))
}

async fn status_page(
    _: PageViewer,
    State(state): State<AppState>,
) -> Result<Html<String>, PageError> {
    let v = status_data(&state).await?;
    let mut b = String::with_capacity(8192);
    let _ = write!(
        b,
        "<h1>Collector status</h1><dl class=\"kv\" id=\"status\"><dt>records ingested</dt><dd>{} ({}) since it started</dd>\
<dt>lines ingested</dt><dd id=\"lines-total\">{} output lines and log records since it started</dd>\
<dt>spool backlog on the nodes</dt><dd>{} files, {}</dd><dt>dropped by full spools</dt><dd>{} runs, {}</dd>\
<dt>alerts</dt><dd>{} firing, {} pending (<a href=\"/alerts\">alerts</a>)</dd></dl>",
        v.records_total,
        bytes(v.bytes_total),
        v.lines_total,
        v.spool_files,
        bytes(v.spool_bytes),
        v.dropped_runs,
        bytes(v.dropped_bytes),
        v.alerts_firing,
        v.alerts_pending,
    );
    let pts: Vec<(Timestamp, f64)> = v
        .per_minute
        .iter()
        .map(|r| (r.at, r.records_per_s))
        .collect();
    let lines: Vec<(Timestamp, f64)> = v.per_minute.iter().map(|r| (r.at, r.lines_per_s)).collect();
    let from = Timestamp::from_nanos(v.now.as_nanos() - KEEP as i64 * 60_000_000_000);
    b.push_str("<div class=\"chart-box\">");
    b.push_str(&plumb_model::chart::lines_svg(&plumb_model::chart::LineChart {
        id: "ingest-chart",
        title: "Records and lines ingested per second, per minute (the last hour since the collector started)",
        unit: "per s",
        from,
        until: v.now,
        step_ns: 60_000_000_000,
        top: None,
        series: &[
            plumb_model::chart::LineSeries {
                name: "records/s",
                points: &pts,
            },
            plumb_model::chart::LineSeries {
                name: "lines/s",
                points: &lines,
            },
        ],
        bands: &[],
        forecasts: &[],
    }));
    b.push_str("</div>");
    if !v.nodes_with_backlog.is_empty() {
        b.push_str("<h2>Nodes with a backlog or drops</h2><ul id=\"backlog\">");
        for n in &v.nodes_with_backlog {
            let _ = write!(
                b,
                "<li><a href=\"/nodes/{}\">{}</a></li>",
                super::url_enc(n),
                super::esc(n)
            );
        }
        b.push_str("</ul>");
    }
    Ok(layout("Status", Nav::None, "", &b))
}
