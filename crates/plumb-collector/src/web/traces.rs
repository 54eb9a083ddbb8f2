//! `/traces/{id}`: one trace as a waterfall, one row per span (indented
//! under its parent, a bar placed by its start and duration) with the log
//! records made in each span beneath it; JSON twin `/api/v1/traces/{id}`
//! (a [`Trace`]), which `plumb trace --collector` reads. `id` is a trace id
//! or a unique prefix of one.

use super::{Nav, PageError, PageViewer, badge, esc, human_duration, layout, time_cell};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::telemetry::{StatusCode, Trace, TraceRow};
use std::fmt::Write as _;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/traces/{reference}", get(trace_page))
        .route("/api/v1/traces/{reference}", get(trace_json))
}

/// The page's data, and the JSON twin's answer.
async fn trace_data(state: &AppState, reference: String) -> Result<Trace, ApiError> {
    state.db.read(move |s| s.trace(&reference)).await
}

async fn trace_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<Trace>, ApiError> {
    Ok(Json(trace_data(&state, reference).await?))
}

async fn trace_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Html<String>, PageError> {
    let t = trace_data(&state, reference).await?;
    let mut b = String::with_capacity(16 * 1024);
    render(&mut b, &t);
    Ok(layout(
        &format!("Trace {}", &t.trace_id[..8.min(t.trace_id.len())]),
        Nav::Search,
        "",
        &b,
    ))
}

/// The waterfall's time span: the first start (or log) to the last end.
fn bounds(t: &Trace) -> (i64, i64) {
    let times = t
        .spans
        .iter()
        .flat_map(|s| [s.start.as_nanos(), s.end.as_nanos()])
        .chain(t.logs.iter().map(|l| l.time.as_nanos()));
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for x in times {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo > hi { (0, 1) } else { (lo, hi) }
}

fn render(b: &mut String, t: &Trace) {
    let (t0, t1) = bounds(t);
    let total = (t1 - t0).max(1) as f64;
    let pct = |ns: i64| ((ns - t0) as f64 / total * 100.0).clamp(0.0, 100.0);
    let mut services: Vec<&str> = t.spans.iter().map(|s| s.source.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let mut runs: Vec<String> = t
        .spans
        .iter()
        .filter_map(|s| s.source.run_id)
        .map(|r| r.to_string())
        .collect();
    runs.sort_unstable();
    runs.dedup();
    let _ = write!(
        b,
        "<h1>Trace <span class=\"mono\">{}</span></h1><p>{} span{}, {} log record{}; started {}, took {}; services: {}.",
        esc(&t.trace_id),
        t.spans.len(),
        if t.spans.len() == 1 { "" } else { "s" },
        t.logs.len(),
        if t.logs.len() == 1 { "" } else { "s" },
        time_cell(plumb_model::Timestamp::from_nanos(t0)),
        human_duration(t1 - t0),
        if services.is_empty() {
            "none".to_owned()
        } else {
            services
                .iter()
                .map(|s| esc(s).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    if !runs.is_empty() {
        b.push_str(" Runs: ");
        for (i, r) in runs.iter().enumerate() {
            let _ = write!(
                b,
                "{}<a class=\"mono\" href=\"/runs/{r}\">{}</a>",
                if i > 0 { ", " } else { "" },
                &r[..13]
            );
        }
        b.push('.');
    }
    b.push_str("</p>");
    b.push_str(
        "<table id=\"waterfall\"><thead><tr><th scope=\"col\">Span</th><th scope=\"col\">Service</th>\
<th scope=\"col\" class=\"num\">Start</th><th scope=\"col\" class=\"num\">Duration</th><th scope=\"col\">Status</th>\
<th scope=\"col\">Timeline</th></tr></thead><tbody>",
    );
    for row in t.rows() {
        let indent = row.depth() as f64 * 1.2;
        match row {
            TraceRow::Span { index, .. } => {
                let s = &t.spans[index];
                let start = s.start.as_nanos();
                let left = pct(start);
                let width =
                    ((s.duration_ns() as f64) / total * 100.0).clamp(0.3, 100.0 - left.min(99.7));
                let err = s.status == StatusCode::Error;
                let status = if err {
                    let msg = if s.status_message.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", esc(&s.status_message))
                    };
                    format!("{}{msg}", badge("error"))
                } else {
                    esc(s.status.as_str()).into_owned()
                };
                let run = s.source.run_id.map_or(String::new(), |r| {
                    format!(
                        " <a class=\"muted mono\" href=\"/runs/{r}\">run {}</a>",
                        &r.to_string()[..8]
                    )
                });
                let _ = write!(
                    b,
                    "<tr class=\"span\" id=\"s{id}\"><td class=\"span-name\" style=\"padding-left:{indent:.1}em\">{name}{run}</td><td>{svc}</td>\
<td class=\"num\">+{off}</td><td class=\"num\">{dur}</td><td>{status}</td>\
<td><div class=\"waterfall\" aria-hidden=\"true\"><span{cls} style=\"left:{left:.2}%;width:{width:.2}%\"></span></div></td></tr>",
                    id = esc(&s.span_id),
                    name = esc(&s.name),
                    svc = esc(&s.source.service),
                    off = human_duration(start - t0),
                    dur = human_duration(s.duration_ns()),
                    cls = if err { " class=\"error\"" } else { "" },
                );
            }
            TraceRow::Log { index, .. } => {
                let l = &t.logs[index];
                let at = l.time.as_nanos();
                let _ = write!(
                    b,
                    "<tr class=\"log\"><td class=\"mono\" style=\"padding-left:{indent:.1}em\"><span class=\"sev sev-{sevc}\">{sev}</span> {msg}</td><td>{svc}</td>\
<td class=\"num\">+{off}</td><td></td><td></td>\
<td><div class=\"waterfall\" aria-hidden=\"true\"><span class=\"mark\" style=\"left:{left:.2}%\"></span></div></td></tr>",
                    sevc = esc(&l.severity.to_ascii_lowercase()),
                    sev = esc(&l.severity),
                    msg = esc(l.message_in_trace()),
                    svc = esc(&l.service),
                    off = human_duration(at - t0),
                    left = pct(at),
                );
            }
        }
    }
    b.push_str("</tbody></table>");
}
