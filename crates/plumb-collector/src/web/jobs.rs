//! `/jobs/{name}`: a job's history (every run of a name): duration over
//! time as points by state with the p50..p95 band of the slow-run
//! statistics, and the failure rate per day on the same time axis; its
//! JSON twin `/api/v1/pages/jobs/{name}`. The run page draws the same
//! history with its run marked ([`history`], [`history_svg`]).

use super::{Nav, PageError, PageViewer, esc, human_duration, layout, url_enc};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::chart::{self, Point, Points, Segment, StackBar, StackedBars, align_down};
use plumb_model::insights::{DurationStats, SlowConfig};
use plumb_model::{RunState, Timestamp, Uuid};
use plumb_store::Backend;
use plumb_store::dash::{COUNT_BUCKET_NS, RunQuery};
use plumb_store::integrity::{Flagged, flagged};
use serde::Serialize;
use std::fmt::Write as _;

/// Runs drawn on the job page (the newest).
pub const JOB_POINTS: usize = 500;
/// Runs drawn on a run page's history.
pub const RUN_PAGE_POINTS: usize = 200;
const DAY: i64 = 86_400_000_000_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs/{name}", get(job_page))
        .route("/api/v1/pages/jobs/{name}", get(job_json))
}

/// One run as a point of the history.
#[derive(Debug, Clone, Serialize)]
pub struct JobPoint {
    /// The run.
    pub id: Uuid,
    /// Its state.
    pub state: RunState,
    /// When it started.
    pub started: Timestamp,
    /// When it ended, if it has.
    pub ended: Option<Timestamp>,
    /// How long it ran (so far, while running), seconds.
    pub duration_s: f64,
    /// Longer than usual by the slow-run settings (`factor` x p95, with
    /// enough history), finished or not.
    pub longer_than_usual: bool,
}

/// Runs and failures of one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct DayRate {
    /// The day's start.
    pub day: Timestamp,
    /// Runs started that day.
    pub runs: u64,
    /// Of those, finished (succeeded or failed one way or another).
    pub finished: u64,
    /// Of those, failed, killed, evicted or timed out.
    pub failed: u64,
    /// `failed / finished` in percent; 0 with nothing finished.
    pub rate_pct: f64,
}

/// A job's history: what `/jobs/{name}` shows and the run page draws.
#[derive(Debug, Clone, Serialize)]
pub struct JobHistory {
    /// The run name.
    pub name: String,
    /// Start of the time axis (a UTC day).
    pub from: Timestamp,
    /// Its end.
    pub until: Timestamp,
    /// The newest runs (at most a page's worth), oldest first; waiting runs
    /// have no duration and are left out.
    pub runs: Vec<JobPoint>,
    /// Median and p95 of its latest successful runs, exactly as the
    /// slow-run detection computes them (`Insights::duration_stats`).
    pub stats: DurationStats,
    /// Failure rate per UTC day over the axis, empty days included.
    pub days: Vec<DayRate>,
}

/// Reads a job's history: the newest `limit` runs of `name`, the duration
/// statistics over the slow-run `window`, and the failure rate per day
/// from the store's rollup. `current`, when given, is drawn even if older
/// than the newest `limit`.
pub fn history(
    s: &dyn Backend,
    name: &str,
    limit: usize,
    slow: &SlowConfig,
    current: Option<Uuid>,
    now: Timestamp,
) -> plumb_store::Result<JobHistory> {
    let mut runs = s.job_runs(name, limit)?;
    if let Some(id) = current
        && !runs.iter().any(|r| r.id == id)
    {
        let r = s.get_run(id)?;
        runs.insert(
            0,
            plumb_store::dash::JobRun {
                id,
                state: r.state,
                started: r.started,
                ended: r.ended,
            },
        );
    }
    let stats = s.duration_stats(name, slow.window)?;
    // The test of `Store::slow_runs`, applied to every run drawn.
    let longer = |d: f64| {
        stats.n >= slow.min_history.max(1)
            && stats.p95_s > 0.0
            && d >= slow.min_elapsed_s
            && d > slow.factor * stats.p95_s
    };
    let points: Vec<JobPoint> = runs
        .iter()
        .filter(|r| r.state != RunState::Waiting)
        .map(|r| {
            let end = r.ended.unwrap_or(now);
            let duration_s = (end.as_nanos() - r.started.as_nanos()).max(0) as f64 / 1e9;
            JobPoint {
                id: r.id,
                state: r.state,
                started: r.started,
                ended: r.ended,
                duration_s,
                longer_than_usual: longer(duration_s),
            }
        })
        .collect();
    let first = runs
        .iter()
        .map(|r| r.started.as_nanos())
        .min()
        .unwrap_or(now.as_nanos());
    let from = align_down(first, DAY);
    let until = align_down(now.as_nanos().max(first), DAY) + DAY;
    // At most a year of days.
    let from = from.max(until - 366 * DAY);
    let q = RunQuery {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let counts = s.run_counts(
        &q,
        Timestamp::from_nanos(from),
        Timestamp::from_nanos(until),
    )?;
    let n = ((until - from) / DAY) as usize;
    let mut days: Vec<DayRate> = (0..n)
        .map(|i| DayRate {
            day: Timestamp::from_nanos(from + i as i64 * DAY),
            runs: 0,
            finished: 0,
            failed: 0,
            rate_pct: 0.0,
        })
        .collect();
    debug_assert_eq!(DAY % COUNT_BUCKET_NS, 0);
    for c in &counts.rows {
        let i = ((c.bucket_ns - from) / DAY) as usize;
        if let Some(d) = days.get_mut(i) {
            d.runs += c.n;
            if c.state.is_failure() {
                d.failed += c.n;
                d.finished += c.n;
            } else if c.state == RunState::Succeeded {
                d.finished += c.n;
            }
        }
    }
    for d in &mut days {
        if d.finished > 0 {
            d.rate_pct = d.failed as f64 * 100.0 / d.finished as f64;
        }
    }
    Ok(JobHistory {
        name: name.to_string(),
        from: Timestamp::from_nanos(from),
        until: Timestamp::from_nanos(until),
        runs: points,
        stats,
        days,
    })
}

/// The two charts of a history, one above the other on the same time
/// axis: durations as points (the `current` run ringed) with the p50..p95
/// band, then the failure rate per day.
pub fn history_svg(h: &JobHistory, current: Option<Uuid>) -> String {
    let band = (h.stats.n > 0).then(|| {
        (
            h.stats.p50_s,
            h.stats.p95_s,
            format!(
                "p50 {} – p95 {} (last {} successful runs)",
                human_duration((h.stats.p50_s * 1e9) as i64),
                human_duration((h.stats.p95_s * 1e9) as i64),
                h.stats.n
            ),
        )
    });
    let title = format!("Duration of each run of {}", h.name);
    let mut out = chart::points_svg(&Points {
        id: "job-durations",
        title: &title,
        unit: "s",
        from: h.from,
        until: h.until,
        points: h
            .runs
            .iter()
            .map(|p| Point {
                t: p.started,
                value: p.duration_s,
                state: p.state,
                hover: format!(
                    "{} started {}: {} {}{}",
                    &p.id.to_string()[..13],
                    chart::moment(p.started),
                    p.state.as_str(),
                    if p.ended.is_some() { "after " } else { "for " },
                    human_duration((p.duration_s * 1e9) as i64)
                ),
                href: Some(format!("/runs/{}", p.id)),
                current: Some(p.id) == current,
                slow: p.longer_than_usual,
            })
            .collect(),
        band,
        height: 240.0,
    });
    let title = format!("Failure rate per day of {}", h.name);
    out.push_str(&chart::stacked_bars_svg(&StackedBars {
        id: "job-failures",
        title: &title,
        unit: "% failed",
        from: h.from,
        until: h.until,
        interval_ns: DAY,
        bars: h
            .days
            .iter()
            .map(|d| StackBar {
                start: d.day,
                end: Timestamp::from_nanos(d.day.as_nanos() + DAY),
                segments: vec![Segment {
                    state: RunState::Failed,
                    value: d.rate_pct,
                }],
                hover: format!(
                    "{}: {:.0}% failed ({} of {} finished; {} started)",
                    &d.day.to_rfc3339_secs()[..10],
                    d.rate_pct,
                    d.failed,
                    d.finished,
                    d.runs
                ),
                href: None,
            })
            .collect(),
        max: Some(100.0),
        markers: Vec::new(),
        height: 140.0,
    }));
    out
}

/// What the job page shows: the history and the runs flagged for equal
/// inputs with different outputs.
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    /// The history drawn.
    #[serde(flatten)]
    pub history: JobHistory,
    /// Groups of its latest [`INTEGRITY_RUNS`] runs with the same inputs
    /// and more than one outcome (`plumb integrity --name`).
    pub integrity: Vec<Flagged>,
}

/// Runs compared for equal inputs with different outputs on a job page.
pub const INTEGRITY_RUNS: usize = 200;

async fn job_data(state: &AppState, name: String) -> Result<JobPage, ApiError> {
    let slow = state.insights.slow.clone();
    let now = Timestamp::now();
    let page = state
        .db
        .read(move |s| {
            let history = history(s, &name, JOB_POINTS, &slow, None, now)?;
            let integrity = flagged(s, Some(&name), INTEGRITY_RUNS)?;
            Ok(JobPage { history, integrity })
        })
        .await?;
    let h = &page.history;
    if h.runs.is_empty() && h.days.iter().all(|d| d.runs == 0) {
        return Err(ApiError::NotFound(format!("no runs named `{}`", h.name)));
    }
    Ok(page)
}

async fn job_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobPage>, ApiError> {
    Ok(Json(job_data(&state, name).await?))
}

/// The flagged groups as HTML: shared inputs, each outcome with its runs,
/// and how the software of the two largest outcomes' newest runs differs.
fn integrity_html(b: &mut String, flagged: &[Flagged]) {
    let short = |h: &Option<String>| match h {
        Some(h) => h[..h.len().min(12)].to_string(),
        None => "(not produced)".to_string(),
    };
    let _ = write!(
        b,
        "<h2 id=\"integrity\">Same inputs, different outputs</h2><p>{} group{} among the latest {INTEGRITY_RUNS} runs: runs whose inputs had the same contents and whose outputs did not.</p>",
        flagged.len(),
        if flagged.len() == 1 { "" } else { "s" }
    );
    for f in flagged {
        b.push_str("<section class=\"integrity\"><p>Inputs:");
        for (path, hash) in &f.finding.inputs {
            let _ = write!(
                b,
                " <span class=\"mono\">{} {}</span>",
                esc(path),
                esc(&hash[..hash.len().min(12)])
            );
        }
        b.push_str("</p><table><thead><tr><th scope=\"col\">Outcome</th><th scope=\"col\">Outputs</th><th scope=\"col\">Runs</th></tr></thead><tbody>");
        for (k, o) in f.finding.outcomes.iter().enumerate() {
            let outputs: Vec<String> = o
                .outputs
                .iter()
                .map(|(p, h)| format!("{} {}", esc(p), esc(&short(h))))
                .collect();
            let runs: Vec<String> = o
                .runs
                .iter()
                .take(10)
                .map(|r| {
                    let id = r.id.to_string();
                    format!(
                        "<a href=\"/runs/{id}\">{}</a> on {}",
                        &id[..8],
                        esc(&r.host)
                    )
                })
                .collect();
            let more = o.runs.len().saturating_sub(10);
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}{}</td></tr>",
                k + 1,
                outputs.join("<br>"),
                runs.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        b.push_str("</tbody></table>");
        if f.environment.is_empty() {
            b.push_str("<p>The software of outcomes 1 and 2 is the same: look at the data, the arguments, or nondeterminism.</p>");
        } else {
            let mut text = String::new();
            plumb_model::diff::render_differences(&mut text, &f.environment);
            let _ = write!(
                b,
                "<p>How the software of outcomes 1 and 2 differs:</p><pre>{}</pre>",
                esc(&text)
            );
        }
        b.push_str("</section>");
    }
}

async fn job_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, PageError> {
    let page = job_data(&state, name).await?;
    let h = &page.history;
    let mut b = String::with_capacity(64 * 1024);
    let _ = write!(
        b,
        "<h1>Job {name}</h1><p><a href=\"/runs?q={q}\">All runs of this name</a> · {n} shown (the newest {max} at most)",
        name = esc(&h.name),
        q = url_enc(&format!("name:{}", h.name)),
        n = h.runs.len(),
        max = JOB_POINTS,
    );
    if h.stats.n > 0 {
        let _ = write!(
            b,
            " · p50 <span id=\"job-p50\">{}</span>, p95 <span id=\"job-p95\">{}</span> over the last {} successful runs",
            human_duration((h.stats.p50_s * 1e9) as i64),
            human_duration((h.stats.p95_s * 1e9) as i64),
            h.stats.n
        );
    }
    b.push_str(".</p><section class=\"chart-box\" aria-label=\"History\">");
    b.push_str(&history_svg(h, None));
    b.push_str("</section>");
    if !page.integrity.is_empty() {
        integrity_html(&mut b, &page.integrity);
    }
    Ok(layout(&format!("job {}", h.name), Nav::Runs, "", &b))
}
