//! `/runs` (qualifier search, keyset pages), `/runs/{id}` (everything the
//! recorder captured, output with a live tail, spans and logs),
//! `/runs/{id}/diff` and `/runs/{id}/stack` (live stacks of a running run
//! on every node), with their JSON twins.

use super::{
    Nav, PageError, PageViewer, badge, bytes, esc, human_duration, layout, time_cell, url_enc,
};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::chart::RunsChart;
use plumb_model::diff::RunDiff;
use plumb_model::insights::{RunDuration, SlowRun};
use plumb_model::telemetry::{LogLine, Span, StatusCode};
use plumb_model::{Fingerprint, Run, RunState, Stream, Timestamp, Uuid};
use plumb_store::dash::{PageKey, RunQuery, RunsPage};
use plumb_store::{OutputCursor, Replayed};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Runs per page.
const PAGE: usize = 50;
/// Output kept on a run page; the rest is a `plumb logs` away.
const OUTPUT_CAP: usize = 1 << 20;
/// Log lines shown on a run page.
const LOG_CAP: usize = 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/diff", get(diff_page))
        .route("/runs/{id}/stack", get(stack_page))
        .route("/api/v1/pages/runs", get(runs_json))
        .route("/api/v1/pages/runs/{id}", get(run_json))
        .route("/api/v1/pages/runs/{id}/diff", get(diff_json))
        .route("/api/v1/pages/runs/{id}/stack", get(stack_json))
}

/// Parses the runs search box: qualifiers `name:` `host:` `state:`
/// `tag:k=v` `since:2h` `until:1h` (or RFC 3339 times; runs started at or
/// after `since` and before `until`), and free words that must
/// appear in the run name. The message of an error names the bad part.
pub fn parse_run_query(q: &str) -> Result<RunQuery, String> {
    let mut out = RunQuery {
        limit: PAGE,
        ..Default::default()
    };
    for word in q.split_whitespace() {
        let Some((key, value)) = word.split_once(':') else {
            out.text.push(word.to_string());
            continue;
        };
        if value.is_empty() {
            return Err(format!("`{word}`: `{key}:` needs a value after the colon"));
        }
        match key {
            "name" => out.name = Some(value.to_string()),
            "host" => out.host = Some(value.to_string()),
            "state" => {
                out.state = Some(value.parse::<RunState>().map_err(|_| {
                    format!(
                        "`{word}`: unknown state `{value}`; use {}",
                        RunState::ALL.map(RunState::as_str).join(", ")
                    )
                })?)
            }
            "tag" => match value.split_once('=') {
                Some((k, v)) if !k.is_empty() => out.tags.push((k.into(), v.into())),
                _ => return Err(format!("`{word}`: a tag is written tag:key=value")),
            },
            "since" => {
                out.since = Some(
                    plumb_model::parse_moment(value, Timestamp::now())
                        .map_err(|e| format!("`{word}`: since: {e}"))?,
                );
            }
            "until" => {
                out.until = Some(
                    plumb_model::parse_moment(value, Timestamp::now())
                        .map_err(|e| format!("`{word}`: until: {e}"))?,
                );
            }
            // A colon in a free word (a URL, a time) is just text.
            _ if value.starts_with("//") || key.chars().any(|c| !c.is_ascii_alphabetic()) => {
                out.text.push(word.to_string())
            }
            other => {
                return Err(format!(
                    "`{word}`: unknown qualifier `{other}:`; use name:, host:, state:, tag:key=value, since:, until:"
                ));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct RunsParams {
    q: Option<String>,
    after: Option<String>,
}

/// What `/runs` shows.
#[derive(Debug, Serialize)]
pub struct RunsView {
    /// The search box's text.
    pub q: String,
    /// What was wrong with it, if anything (the page then lists all runs).
    pub error: Option<String>,
    /// The page.
    #[serde(flatten)]
    pub page: RunsPage,
    /// Whether this is a later page.
    pub paged: bool,
    /// Running runs longer than usual (first page only), as
    /// `/api/v1/runs/slow` lists them.
    pub slow: Vec<SlowRun>,
    /// When it was read.
    pub now: Timestamp,
    /// Runs per interval by state for the same filter (paging aside): the
    /// chart above the list.
    pub chart: RunsChart,
}

/// The query `q` with its `since:` and `until:` replaced by one interval's:
/// where clicking a bar of the runs chart goes.
pub fn narrowed_query(q: &str, start: Timestamp, end: Timestamp) -> String {
    let mut words: Vec<String> = q
        .split_whitespace()
        .filter(|w| !w.starts_with("since:") && !w.starts_with("until:"))
        .map(str::to_string)
        .collect();
    words.push(format!("since:{}", start.to_rfc3339_secs()));
    words.push(format!("until:{}", end.to_rfc3339_secs()));
    words.join(" ")
}

async fn runs_data(state: &AppState, p: RunsParams) -> Result<RunsView, ApiError> {
    let q = p.q.unwrap_or_default();
    let (mut query, error) = match parse_run_query(&q) {
        Ok(query) => (query, None),
        Err(e) => (
            RunQuery {
                limit: PAGE,
                ..Default::default()
            },
            Some(e),
        ),
    };
    if let Some(a) = p.after.as_deref().filter(|a| !a.is_empty()) {
        query.after = Some(PageKey::decode(a).map_err(ApiError::BadRequest)?);
    }
    let paged = query.after.is_some();
    let slow = if paged {
        Vec::new()
    } else {
        crate::insights::slow_runs(state).await?
    };
    let now = Timestamp::now();
    let (page, chart) = state
        .db
        .read(move |s| {
            let page = s.runs_page(&query)?;
            let chart = plumb_store::dash::runs_chart(s, &query, now)?;
            Ok((page, chart))
        })
        .await?;
    Ok(RunsView {
        q,
        error,
        page,
        paged,
        slow,
        now,
        chart,
    })
}

async fn runs_json(
    _: Viewer,
    State(state): State<AppState>,
    Query(p): Query<RunsParams>,
) -> Result<Json<RunsView>, ApiError> {
    let v = runs_data(&state, p).await?;
    if let Some(e) = &v.error {
        return Err(ApiError::BadRequest(e.clone()));
    }
    Ok(Json(v))
}

fn secs(s: f64) -> String {
    human_duration((s * 1e9) as i64)
}

/// What a run waited for (or waits for): the reason, since when, until
/// when if known, and how long.
fn waiting_kv(b: &mut String, w: &plumb_model::Waiting) {
    let now = Timestamp::now();
    let (label, how_long) = match w.ended {
        Some(_) => ("waited", human_duration(w.waited_ns(now))),
        None => (
            "waiting",
            format!(
                "<span data-started=\"{}\">{}</span> so far",
                w.since.as_nanos(),
                human_duration(w.waited_ns(now))
            ),
        ),
    };
    let until = match (w.ended, w.until) {
        (None, Some(u)) => format!(", until {}", time_cell(u)),
        _ => String::new(),
    };
    let _ = write!(
        b,
        "<dt>{label}</dt><dd id=\"waiting\">{how_long}{until}: {}</dd>",
        esc(&w.reason)
    );
}

fn duration_cell(started: Timestamp, ended: Option<Timestamp>, running: bool) -> String {
    match ended {
        Some(e) => human_duration(e.as_nanos() - started.as_nanos()),
        None if running => format!(
            "<span data-started=\"{}\">{}</span>",
            started.as_nanos(),
            human_duration(Timestamp::now().as_nanos() - started.as_nanos())
        ),
        None => "—".into(),
    }
}

async fn runs_page(
    _: PageViewer,
    State(state): State<AppState>,
    Query(p): Query<RunsParams>,
) -> Result<Html<String>, PageError> {
    let v = runs_data(&state, p).await?;
    let mut b = String::with_capacity(16 * 1024);
    b.push_str("<h1>Runs</h1>");
    let _ = write!(
        b,
        "<form class=\"filter\" method=\"get\" action=\"/runs\" role=\"search\">\
<label for=\"runs-q\" class=\"skip\">Filter runs</label>\
<input id=\"runs-q\" name=\"q\" type=\"search\" value=\"{}\" \
placeholder=\"name:train host:gpu-3 state:failed tag:team=ml since:2h words\" aria-describedby=\"runs-help\">\
<button type=\"submit\">Filter</button></form>\
<p id=\"runs-help\" class=\"muted\">Qualifiers: <code>name:</code> <code>host:</code> <code>state:</code> \
<code>tag:key=value</code> <code>since:2h</code> <code>until:1h</code>; other words must appear in the run name.</p>",
        esc(&v.q)
    );
    runs_chart_section(&mut b, &v);
    if let Some(e) = &v.error {
        let _ = write!(
            b,
            "<p class=\"error-box\" role=\"alert\" id=\"query-error\">{}</p>",
            esc(e)
        );
    }
    if !v.slow.is_empty() {
        b.push_str(
            "<section aria-labelledby=\"h-slow\"><h2 id=\"h-slow\">Longer than usual</h2><table id=\"slow\"><thead><tr>\
<th scope=\"col\">Run</th><th scope=\"col\">Name</th><th scope=\"col\">Host</th><th scope=\"col\" class=\"num\">Running for</th>\
<th scope=\"col\" class=\"num\">p50</th><th scope=\"col\" class=\"num\">p95</th><th scope=\"col\" class=\"num\">× p95</th></tr></thead><tbody>",
        );
        for r in &v.slow {
            let id = r.run_id.to_string();
            let _ = write!(
                b,
                "<tr><td class=\"mono\"><a href=\"/runs/{id}\">{short}</a></td><td>{name}</td><td>{host}</td>\
<td class=\"num\">{dur}</td><td class=\"num\">{p50}</td><td class=\"num\">{p95}</td><td class=\"num\">{f:.1}</td></tr>",
                short = &id[..13.min(id.len())],
                name = esc(&r.name),
                host = esc(&r.host),
                dur = duration_cell(r.started, None, true),
                p50 = secs(r.p50_s),
                p95 = secs(r.p95_s),
                f = r.factor,
            );
        }
        b.push_str("</tbody></table></section><h2>All runs</h2>");
    }
    if v.page.runs.is_empty() {
        b.push_str("<p>No runs match.</p>");
    } else {
        b.push_str(
            "<table id=\"runs\"><thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Name</th>\
<th scope=\"col\">Host</th><th scope=\"col\">State</th><th scope=\"col\">Started (UTC)</th>\
<th scope=\"col\" class=\"num\">Duration</th><th scope=\"col\" class=\"num\">Exit</th><th scope=\"col\">Attempt</th></tr></thead><tbody>",
        );
        for r in &v.page.runs {
            let id = r.id.to_string();
            let exit = match (r.exit_code, r.signal) {
                (Some(c), _) => c.to_string(),
                (None, Some(s)) => plumb_model::display::exit_or_oom(None, Some(s), r.oom_killed),
                _ => "—".into(),
            };
            let attempt = match r.max_attempts {
                Some(m) => format!("{}/{m}", r.attempt),
                None if r.attempt > 1 => r.attempt.to_string(),
                None => String::new(),
            };
            let _ = write!(
                b,
                "<tr><td class=\"mono\"><a href=\"/runs/{id}\">{short}</a></td><td>{name}</td><td>{host}</td>\
<td>{state}</td><td>{started}</td><td class=\"num\">{dur}</td><td class=\"num\">{exit}</td><td>{attempt}</td></tr>",
                short = &id[..13.min(id.len())],
                name = esc(&r.name),
                host = esc(&r.host),
                state = badge(r.state.as_str()),
                started = time_cell(r.started),
                dur = duration_cell(r.started, r.ended, r.state == RunState::Running),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<nav class=\"pager\" aria-label=\"Pages\">");
    if v.paged {
        let _ = write!(b, "<a href=\"/runs?q={}\">Newest</a>", url_enc(&v.q));
    }
    if let Some(next) = &v.page.next {
        let _ = write!(
            b,
            "<a href=\"/runs?q={}&amp;after={}\" rel=\"next\">Older runs</a>",
            url_enc(&v.q),
            url_enc(next)
        );
    }
    b.push_str("</nav>");
    Ok(layout("Runs", Nav::Runs, "", &b))
}

/// The runs-over-time chart above the list: each bar links to the list
/// narrowed to its interval.
fn runs_chart_section(b: &mut String, v: &RunsView) {
    let c = &v.chart;
    let title = format!(
        "Runs per {} by state{}",
        plumb_model::chart::interval_label(c.interval_ns),
        if v.q.trim().is_empty() {
            String::new()
        } else {
            format!(" for “{}”", v.q.trim())
        }
    );
    let q = v.q.clone();
    let svg = plumb_model::chart::runs_chart_svg("runs-chart", &title, c, &|bar| {
        Some(format!(
            "/runs?q={}",
            url_enc(&narrowed_query(&q, bar.start, bar.end))
        ))
    });
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-chart\" class=\"chart-box\"><h2 id=\"h-chart\" class=\"skip\">Runs over time</h2>{svg}\
<p class=\"muted\" id=\"runs-chart-note\">{total} runs from {from} to {until}, one bar per {iv}; click a bar to list its runs.</p>",
        total = c.total,
        from = esc(&plumb_model::chart::moment(c.from)),
        until = esc(&plumb_model::chart::moment(c.until)),
        iv = plumb_model::chart::interval_label(c.interval_ns),
    );
    if let Some(p) = c.partial_from {
        let _ = write!(
            b,
            "<p class=\"note\">Only the newest {} runs of this filter were counted (a host or tag filter reads runs one by one): the bars before {} are short.</p>",
            plumb_store::dash::DIRECT_COUNT_CAP,
            esc(&plumb_model::chart::moment(p))
        );
    }
    b.push_str("</section>");
}

/// One read of a run's output, as the page shows it.
#[derive(Debug, Serialize)]
pub struct Segment {
    /// stdout or stderr.
    pub stream: Stream,
    /// When it was read.
    pub time: Timestamp,
    /// The bytes, lossily decoded.
    pub text: String,
    /// Whether this marks where output over the cap was dropped (`text`
    /// then says how much).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gap: bool,
}

/// What `/runs/{id}` shows.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// The record.
    pub run: Run,
    /// Its fingerprint, if stored.
    pub fingerprint: Option<Fingerprint>,
    /// The previous run of the same name, for the diff link.
    pub previous: Option<Uuid>,
    /// Its output, up to 1 MiB.
    pub output: Vec<Segment>,
    /// Whether output was left out.
    pub output_truncated: bool,
    /// Where a live tail continues (`GET /api/v1/runs/{id}/output?cursor=`).
    pub cursor: OutputCursor,
    /// Its OTLP log lines (the first 1000).
    pub logs: Vec<LogLine>,
    /// Its OTLP spans.
    pub spans: Vec<Span>,
    /// Its duration against its name's p50/p95 (`/api/v1/runs/{id}/duration`).
    pub duration: RunDuration,
    /// Running longer than usual, by the collector's slow-run settings.
    pub longer_than_usual: bool,
    /// The history of its name (the newest runs, this one among them).
    pub history: super::jobs::JobHistory,
}

async fn run_data(state: &AppState, reference: String) -> Result<RunView, ApiError> {
    let slow_cfg = state.insights.slow.clone();
    state
        .db
        .read(move |s| {
            let id = s.resolve(&reference)?;
            let run = s.get_run(id)?;
            let fingerprint = s.run_fingerprint(&run)?;
            let previous = s.previous_run(id)?;
            let mut output = Vec::new();
            let mut kept = 0usize;
            let mut truncated = false;
            let mut cursor = OutputCursor::default();
            // Output dropped by retention is marked where it was: first.
            if let Some(note) =
                plumb_model::display::output_retention(run.started, s.output_horizon()?)
            {
                output.push(Segment {
                    stream: Stream::Stdout,
                    time: Timestamp::from_nanos(0),
                    text: format!("[plumb: {note}]"),
                    gap: true,
                });
            }
            s.replay_output(id, None, &mut cursor, &mut |piece| {
                match piece {
                    Replayed::Read { .. } if truncated => {}
                    Replayed::Read {
                        stream,
                        time,
                        bytes,
                    } => {
                        if kept + bytes.len() > OUTPUT_CAP {
                            truncated = true;
                        } else {
                            kept += bytes.len();
                            output.push(Segment {
                                stream,
                                time,
                                text: String::from_utf8_lossy(bytes).into_owned(),
                                gap: false,
                            });
                        }
                    }
                    Replayed::Gap { dropped, cap } if !truncated => output.push(Segment {
                        stream: Stream::Stdout,
                        time: Timestamp::from_nanos(0),
                        text: plumb_model::display::output_gap(dropped, cap),
                        gap: true,
                    }),
                    Replayed::Gap { .. } => {}
                }
                Ok(())
            })?;
            let logs = s.run_logs(id, LOG_CAP)?;
            let spans = s.run_spans(id)?;
            let duration = s.run_duration(id, Timestamp::now(), slow_cfg.window)?;
            let history = super::jobs::history(
                s,
                &run.name,
                super::jobs::RUN_PAGE_POINTS,
                &slow_cfg,
                Some(id),
                Timestamp::now(),
            )?;
            // The same test as Store::slow_runs applies to running runs.
            let longer_than_usual = run.state == RunState::Running
                && duration.stats.n >= slow_cfg.min_history.max(1)
                && duration.stats.p95_s > 0.0
                && duration.duration_s >= slow_cfg.min_elapsed_s
                && duration.duration_s > slow_cfg.factor * duration.stats.p95_s;
            Ok(RunView {
                duration,
                longer_than_usual,
                run,
                fingerprint,
                previous,
                output,
                output_truncated: truncated,
                cursor,
                logs,
                spans,
                history,
            })
        })
        .await
}

async fn run_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(run_data(&state, id).await?))
}

fn kv(b: &mut String, k: &str, v: &str) {
    let _ = write!(b, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
}

async fn run_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let v = run_data(&state, id).await?;
    let r = &v.run;
    let id = r.id.to_string();
    // The runs that did this one again (`plumb rerun`), newest first.
    let q = plumb_store::dash::RunQuery {
        tags: vec![(plumb_model::rerun::RERUN_OF.into(), id.clone())],
        limit: 20,
        ..Default::default()
    };
    let reruns = state
        .db
        .read(move |s| s.runs_page(&q))
        .await
        .map(|p| p.runs)
        .unwrap_or_default();
    let running = r.state == RunState::Running;
    // A waiting run is followed too: the page picks up its start.
    let live = !r.state.is_final();
    let mut b = String::with_capacity(64 * 1024);
    let _ = write!(
        b,
        "<h1>{name} <span id=\"run-state\" class=\"state st-{st}\">{st}</span></h1>\
<p class=\"mono\">{id}</p>",
        name = esc(&r.name),
        st = r.state.as_str(),
    );
    if running {
        let _ = write!(
            b,
            "<p><a href=\"/runs/{id}/stack\">What its processes are doing now, on every node</a></p>"
        );
    }
    match v.previous {
        Some(p) => {
            let _ = write!(
                b,
                "<p><a href=\"/runs/{id}/diff\">Diff against the previous run of this name</a> \
(<a class=\"mono\" href=\"/runs/{p}\">{p}</a>)</p>"
            );
        }
        None => b.push_str("<p class=\"muted\">No earlier run of this name to diff against.</p>"),
    }
    let _ = write!(
        b,
        "<p><a id=\"job-link\" href=\"/jobs/{}\">History of every run of this name</a></p>",
        url_enc(&r.name)
    );
    b.push_str("<div class=\"cols\"><section aria-labelledby=\"h-run\"><h2 id=\"h-run\">Run</h2><dl class=\"kv\">");
    kv(&mut b, "command", &shell_words(&r.argv));
    kv(&mut b, "cwd", &r.cwd);
    kv(&mut b, "host", &r.host.hostname);
    kv(&mut b, "user", &r.user.name);
    let _ = write!(b, "<dt>started</dt><dd>{}</dd>", time_cell(r.started));
    if let Some(e) = r.ended {
        let _ = write!(b, "<dt>ended</dt><dd>{}</dd>", time_cell(e));
    }
    let _ = write!(
        b,
        "<dt>duration</dt><dd>{}{}</dd>",
        duration_cell(r.started, r.ended, running),
        if v.longer_than_usual {
            " <span class=\"state st-warning\" id=\"slow-flag\">longer than usual</span>"
        } else {
            ""
        }
    );
    let st = &v.duration.stats;
    if st.n > 0 {
        kv(
            &mut b,
            "usual duration",
            &format!(
                "p50 {}, p95 {} over the last {} runs of this name",
                secs(st.p50_s),
                secs(st.p95_s),
                st.n
            ),
        );
    }
    if let Some(x) = &r.exit {
        kv(&mut b, "exit", &plumb_model::display::exit_status(x));
    }
    if let Some(o) = &r.oom {
        kv(&mut b, "cause", &plumb_model::display::oom(o));
    }
    if let Some(w) = &r.waiting {
        waiting_kv(&mut b, w);
    }
    if let Some(attempt) = plumb_model::display::attempt(r) {
        kv(&mut b, "attempt", &attempt);
    }
    if let Some(first) = r.first_attempt {
        let _ = write!(
            b,
            "<dt>first attempt</dt><dd><a class=\"mono\" href=\"/runs/{first}\">{first}</a></dd>"
        );
    }
    if let Some(e) = &r.eviction {
        kv(
            &mut b,
            "eviction",
            &plumb_model::display::eviction(e).join("; "),
        );
    }
    for (k, val) in &r.tags {
        if k == plumb_model::rerun::RERUN_OF
            && let Ok(orig) = val.parse::<plumb_model::Uuid>()
        {
            let _ = write!(
                b,
                "<dt>rerun of</dt><dd id=\"rerun-of\">rerun of <a class=\"mono\" href=\"/runs/{orig}\">{orig}</a></dd>"
            );
            continue;
        }
        kv(&mut b, &format!("tag {k}"), val);
    }
    if !reruns.is_empty() {
        b.push_str("<dt>reruns</dt><dd id=\"reruns\">");
        for (i, x) in reruns.iter().enumerate() {
            let _ = write!(
                b,
                "{}<a class=\"mono\" href=\"/runs/{id}\">{id}</a> ({st})",
                if i > 0 { ", " } else { "" },
                id = x.id,
                st = x.state.as_str()
            );
        }
        b.push_str("</dd>");
    }
    kv(
        &mut b,
        "output",
        &plumb_model::display::output_summary(&r.output),
    );
    if let Some(h) = &r.fingerprint {
        kv(&mut b, "fingerprint", h);
    }
    if let Some(e) = &r.launch_error {
        kv(&mut b, "launch failed", e);
    }
    if let Some((heading, lines)) = plumb_model::display::orphans(r) {
        kv(
            &mut b,
            "orphans",
            &format!("{heading}: {}", lines.join("; ")),
        );
    }
    // What the node went through during the run, one fact per line, as
    // `plumb show` says it.
    for line in plumb_model::conditions::notable_lines(r) {
        kv(&mut b, "node during the run", &line);
    }
    for w in &r.warnings {
        kv(&mut b, "warning", w);
    }
    b.push_str(
        "</dl></section><section aria-labelledby=\"h-env\"><h2 id=\"h-env\">Environment</h2>",
    );
    if let Some(fp) = &v.fingerprint {
        b.push_str("<dl class=\"kv\">");
        kv(&mut b, "os", &fp.os.pretty);
        kv(&mut b, "kernel", &fp.os.kernel);
        kv(
            &mut b,
            "cpu",
            &format!("{} × {}", fp.cpu_count, fp.cpu_model),
        );
        if let Some(g) = &fp.git {
            kv(
                &mut b,
                "git",
                &format!(
                    "{} {}{}",
                    g.branch.as_deref().unwrap_or("(detached)"),
                    g.commit,
                    if g.dirty { " (dirty)" } else { "" }
                ),
            );
        }
        if let Some(p) = &fp.python {
            kv(&mut b, "python", &format!("{} {}", p.executable, p.version));
        }
        b.push_str("</dl>");
    }
    if !r.env.is_empty() {
        let _ = write!(
            b,
            "<details><summary>Environment variables ({}, secrets redacted as stored)</summary><table><thead><tr><th scope=\"col\">Variable</th><th scope=\"col\">Value</th></tr></thead><tbody>",
            r.env.len()
        );
        for (k, val) in &r.env {
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                esc(k),
                esc(val)
            );
        }
        b.push_str("</tbody></table></details>");
    }
    b.push_str("</section></div>");
    if let Some(ex) = &r.exception {
        b.push_str("<section aria-labelledby=\"h-exc\"><h2 id=\"h-exc\">Exception</h2>");
        exception_chain(&mut b, ex);
        b.push_str("</section>");
    }
    if let Some(t) = &r.timeout {
        // Which timeout fired, and the stacks it took first, in `plumb
        // show`'s words.
        b.push_str("<section aria-labelledby=\"h-timeout\"><h2 id=\"h-timeout\">Timed out</h2>");
        let _ = write!(b, "<p>{}</p>", esc(&plumb_model::display::timeout(t)));
        if let Some(snap) = &t.snapshot {
            let _ = write!(
                b,
                "<pre class=\"output\" data-stacks=\"timeout\">{}</pre>",
                esc(&snap.render())
            );
        }
        b.push_str("</section>");
    }
    for snap in &r.snapshots {
        let _ = write!(
            b,
            "<section><h2>Stacks taken by plumb ({})</h2><pre class=\"output\" data-stacks=\"auto\">{}</pre></section>",
            esc(snap.reason.as_deref().unwrap_or("automatically")),
            esc(&snap.render())
        );
    }
    if !r.postmortem.is_empty() {
        // The same lines as `plumb show --locals`, one block per process
        // and thread that died.
        b.push_str(
            "<section aria-labelledby=\"h-locals\"><h2 id=\"h-locals\">Post-mortem locals</h2>",
        );
        for pm in &r.postmortem {
            b.push_str("<pre class=\"output\" data-postmortem=\"1\">");
            for line in plumb_model::display::postmortem(pm) {
                let _ = writeln!(b, "{}", esc(&line));
            }
            b.push_str("</pre>");
        }
        b.push_str("</section>");
    }
    b.push_str("<section aria-labelledby=\"h-history\" class=\"chart-box\"><h2 id=\"h-history\">History of this job</h2>");
    b.push_str(&super::jobs::history_svg(&v.history, Some(r.id)));
    b.push_str("</section>");
    // Output: each read is a span; the first read at a time carries the
    // anchor `t<ns>` that search hits link to.
    b.push_str("<section aria-labelledby=\"h-out\"><h2 id=\"h-out\">Output</h2>");
    let cursor = serde_json::to_string(&v.cursor).unwrap_or_default();
    let _ = write!(
        b,
        "<pre class=\"output\" id=\"output\" tabindex=\"0\" aria-label=\"Output\" data-run=\"{id}\" data-cursor=\"{}\"{}>",
        esc(&cursor),
        if live { " data-live=\"1\"" } else { "" }
    );
    let mut anchors = std::collections::HashSet::new();
    // A read of one stream that follows an unfinished line of the other
    // starts on a line of its own: run directly, the two would have glued
    // on a terminal, but the page labels each stream and must not show one
    // line made of both.
    let mut open_line: Option<Stream> = None;
    for seg in &v.output {
        if seg.gap {
            if open_line.take().is_some() {
                b.push('\n');
            }
            let _ = writeln!(b, "<span class=\"gap\">{}</span>", esc(&seg.text));
            continue;
        }
        let t = seg.time.as_nanos();
        if open_line.is_some_and(|s| s != seg.stream) {
            b.push('\n');
        }
        open_line = (!seg.text.ends_with('\n') && !seg.text.is_empty()).then_some(seg.stream);
        let class = match seg.stream {
            Stream::Stderr => " class=\"err\"",
            Stream::Combined => " class=\"combined\"",
            Stream::Stdout => "",
        };
        if anchors.insert(t) {
            let _ = write!(b, "<span id=\"t{t}\"{class}>{}</span>", esc(&seg.text));
        } else {
            let _ = write!(b, "<span{class}>{}</span>", esc(&seg.text));
        }
    }
    b.push_str("</pre>");
    if v.output_truncated {
        let _ = write!(
            b,
            "<p class=\"note\">Only the first {} are shown: <code>plumb logs {id}</code> prints all of it.</p>",
            bytes(OUTPUT_CAP as u64)
        );
    }
    if running {
        b.push_str("<p class=\"muted\">Running: new output appears here as it arrives.</p>");
    } else if r.state == RunState::Waiting {
        b.push_str("<p class=\"muted\">Waiting: its output appears here once it starts.</p>");
    }
    b.push_str("</section>");
    render_spans(&mut b, &v.spans);
    if !v.logs.is_empty() {
        b.push_str("<section aria-labelledby=\"h-logs\"><h2 id=\"h-logs\">Logs (OpenTelemetry)</h2><pre class=\"output\" tabindex=\"0\">");
        for l in &v.logs {
            let t = l.time.as_nanos();
            if anchors.insert(t) {
                let _ = writeln!(b, "<span id=\"t{t}\">{}</span>", esc(&l.text));
            } else {
                let _ = writeln!(b, "{}", esc(&l.text));
            }
        }
        b.push_str("</pre></section>");
    }
    Ok(layout(&r.name, Nav::Runs, "", &b))
}

/// A simple waterfall: each span a bar placed by its start and end within
/// the run's first start and last end, its name linking to its trace's page.
fn render_spans(b: &mut String, spans: &[Span]) {
    if spans.is_empty() {
        return;
    }
    let t0 = spans.iter().map(|s| s.start.as_nanos()).min().unwrap_or(0);
    let t1 = spans.iter().map(|s| s.end.as_nanos()).max().unwrap_or(t0);
    let total = (t1 - t0).max(1) as f64;
    b.push_str(
        "<section aria-labelledby=\"h-spans\"><h2 id=\"h-spans\">Spans (OpenTelemetry)</h2><table id=\"spans\"><thead><tr>\
<th scope=\"col\">Span</th><th scope=\"col\">Service</th><th scope=\"col\" class=\"num\">Duration</th><th scope=\"col\">Timeline</th></tr></thead><tbody>",
    );
    for s in spans {
        let left = (s.start.as_nanos() - t0) as f64 / total * 100.0;
        let width =
            ((s.end.as_nanos() - s.start.as_nanos()).max(0) as f64 / total * 100.0).max(0.3);
        let err = s.status == StatusCode::Error;
        let indent = if s.parent_span_id.is_some() {
            "↳ "
        } else {
            ""
        };
        let _ = write!(
            b,
            "<tr><td>{indent}<a href=\"/traces/{trace}#s{span}\">{name}</a>{e}</td><td>{svc}</td><td class=\"num\">{dur}</td>\
<td><div class=\"waterfall\" aria-hidden=\"true\"><span{cls} style=\"left:{left:.2}%;width:{width:.2}%\"></span></div></td></tr>",
            name = esc(&s.name),
            trace = esc(&s.trace_id),
            span = esc(&s.span_id),
            e = if err {
                format!(" {}", badge("error"))
            } else {
                String::new()
            },
            svc = esc(&s.source.service),
            dur = human_duration(s.end.as_nanos() - s.start.as_nanos()),
            cls = if err { " class=\"error\"" } else { "" },
        );
    }
    b.push_str("</tbody></table></section>");
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `/runs/{id}/diff` shows.
#[derive(Debug, Serialize)]
pub struct DiffView {
    /// The run.
    pub run: Uuid,
    /// The previous run of its name, if any.
    pub previous: Option<Uuid>,
    /// previous → run, when there is a previous run.
    pub diff: Option<RunDiff>,
}

async fn diff_data(state: &AppState, reference: String) -> Result<DiffView, ApiError> {
    state
        .db
        .read(move |s| {
            let id = s.resolve(&reference)?;
            let Some(prev) = s.previous_run(id)? else {
                return Ok(DiffView {
                    run: id,
                    previous: None,
                    diff: None,
                });
            };
            let (ra, rb) = (s.get_run(prev)?, s.get_run(id)?);
            let (fa, fb) = (s.run_fingerprint(&ra)?, s.run_fingerprint(&rb)?);
            Ok(DiffView {
                run: id,
                previous: Some(prev),
                diff: Some(plumb_model::diff::diff(&ra, fa.as_ref(), &rb, fb.as_ref())),
            })
        })
        .await
}

async fn diff_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DiffView>, ApiError> {
    Ok(Json(diff_data(&state, id).await?))
}

/// How long the stack page waits for the nodes.
const STACK_WAIT_MS: u64 = 5_000;

/// The data of `/runs/{id}/stack`: the run, and, while it runs, a live
/// snapshot of its processes on every node (not attached to the run: a
/// page view changes nothing; `plumb stack --run` attaches).
#[derive(Debug, Serialize)]
pub struct StackView {
    /// The run.
    pub run: Uuid,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: RunState,
    /// The nodes' merged answer, while it runs.
    pub live: Option<plumb_model::stack::FleetStack>,
}

async fn stack_data(state: &AppState, id: String) -> Result<StackView, ApiError> {
    let run = state
        .db
        .read(move |s| {
            let id = s.resolve(&id)?;
            s.get_run(id)
        })
        .await?;
    let live = if run.state == RunState::Running {
        let q = plumb_model::stack::StackQuery {
            target: plumb_model::stack::StackTarget::Run {
                run: run.id.to_string(),
            },
            node: None,
            locals: false,
            wait_ms: STACK_WAIT_MS,
            profile: None,
            preflight: None,
            labels: Default::default(),
            rerun: None,
            chaos: None,
        };
        Some(crate::stack::ask(state, q, Some("dashboard".into()), false).await?)
    } else {
        None
    };
    Ok(StackView {
        run: run.id,
        name: run.name,
        state: run.state,
        live,
    })
}

async fn stack_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StackView>, ApiError> {
    Ok(Json(stack_data(&state, id).await?))
}

async fn stack_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let v = stack_data(&state, id).await?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Stacks of {name}</h1><p>Run <a class=\"mono\" href=\"/runs/{r}\">{r}</a> is {st}.</p>",
        name = esc(&v.name),
        r = v.run,
        st = v.state.as_str(),
    );
    match &v.live {
        None => b.push_str(
            "<p>It is not running: there is nothing live to look at. The run page shows the stacks taken while it ran.</p>",
        ),
        Some(f) => {
            if f.snapshot.processes.is_empty() {
                b.push_str("<p>No node had its processes.</p>");
            } else {
                let _ = write!(
                    b,
                    "<pre class=\"output\" data-stacks=\"live\">{}</pre>",
                    esc(&f.snapshot.render())
                );
            }
            b.push_str("<dl class=\"kv\">");
            kv(&mut b, "answered", &f.answered.join(", "));
            if !f.nothing_here.is_empty() {
                kv(&mut b, "nothing there", &f.nothing_here.join(", "));
            }
            for s in &f.not_answered {
                kv(&mut b, "not answering", &format!("{} ({})", s.node, s.why));
            }
            b.push_str("</dl>");
        }
    }
    Ok(layout(&format!("stacks of {}", v.name), Nav::Runs, "", &b))
}

async fn diff_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let v = diff_data(&state, id).await?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Diff</h1><p>Run <a class=\"mono\" href=\"/runs/{r}\">{r}</a>",
        r = v.run
    );
    match (&v.previous, &v.diff) {
        (Some(p), Some(d)) => {
            let _ = write!(
                b,
                " against the previous run of its name, <a class=\"mono\" href=\"/runs/{p}\">{p}</a>.</p><p>{}</p>",
                esc(&d.summary())
            );
            if d.is_empty() {
                b.push_str("<p>No differences.</p>");
            } else {
                b.push_str(
                    "<table id=\"diff\"><thead><tr><th scope=\"col\">What</th><th scope=\"col\">Key</th>\
<th scope=\"col\">Previous</th><th scope=\"col\">This run</th></tr></thead><tbody>",
                );
                for x in &d.differences {
                    let _ = write!(
                        b,
                        "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}",
                        esc(x.category.as_str()),
                        esc(&x.key),
                        esc(x.a.as_deref().unwrap_or("—")),
                        esc(x.b.as_deref().unwrap_or("—")),
                    );
                    if !x.detail.is_empty() {
                        b.push_str("<pre>");
                        for line in &x.detail {
                            let _ = writeln!(b, "{}", esc(line));
                        }
                        b.push_str("</pre>");
                    }
                    b.push_str("</td></tr>");
                }
                b.push_str("</tbody></table>");
            }
        }
        _ => b.push_str(": no earlier run of its name.</p>"),
    }
    Ok(layout("Diff", Nav::Runs, "", &b))
}

/// The whole exception chain, in `plumb show`'s order and words: each cause
/// (innermost first, as the language prints them) followed by "which led
/// to:", then the exception itself; frames as "at function (file:line)".
fn exception_chain(b: &mut String, ex: &plumb_model::Exception) {
    for cause in &ex.causes {
        exception_chain(b, cause);
        b.push_str("<p class=\"muted\">which led to:</p>");
    }
    let _ = write!(
        b,
        "<p><strong>{}</strong>: {}</p>",
        esc(&ex.kind),
        esc(&ex.message)
    );
    if !ex.frames.is_empty() {
        b.push_str("<pre class=\"output\">");
        for f in &ex.frames {
            let _ = writeln!(
                b,
                "at {} ({}:{})",
                esc(f.function.as_deref().unwrap_or("?")),
                esc(f.file.as_deref().unwrap_or("?")),
                f.line.map_or("?".into(), |l| l.to_string())
            );
        }
        b.push_str("</pre>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_narrows_the_query_to_its_interval() {
        let a = Timestamp::parse_rfc3339("2026-12-04T05:00:00Z").unwrap();
        let b = Timestamp::parse_rfc3339("2026-12-04T06:00:00Z").unwrap();
        let q = narrowed_query("name:train since:2d  until:1h state:failed", a, b);
        assert_eq!(
            q,
            "name:train state:failed since:2026-12-04T05:00:00Z until:2026-12-04T06:00:00Z"
        );
        let parsed = parse_run_query(&q).unwrap();
        assert_eq!((parsed.since, parsed.until), (Some(a), Some(b)));
    }

    #[test]
    fn qualifiers_parse_and_bad_ones_are_named() {
        let q = parse_run_query("name:train host:gpu-3 state:failed tag:team=ml since:2h loss nan")
            .unwrap();
        assert_eq!(q.name.as_deref(), Some("train"));
        assert_eq!(q.host.as_deref(), Some("gpu-3"));
        assert_eq!(q.state, Some(RunState::Failed));
        assert_eq!(q.tags, vec![("team".into(), "ml".into())]);
        let ago = Timestamp::now().as_nanos() - q.since.unwrap().as_nanos();
        assert!((7_100e9 as i64..7_300e9 as i64).contains(&ago), "{ago}");
        assert_eq!(q.text, vec!["loss".to_string(), "nan".into()]);
        let e = parse_run_query("since:banana").unwrap_err();
        assert!(e.contains("since:banana"), "{e}");
        let e = parse_run_query("state:sleepy").unwrap_err();
        assert!(e.contains("sleepy") && e.contains("running"), "{e}");
        let e = parse_run_query("colour:red").unwrap_err();
        assert!(e.contains("colour:"), "{e}");
        assert!(
            parse_run_query("tag:novalue")
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            parse_run_query("name:")
                .unwrap_err()
                .contains("needs a value")
        );
        let q = parse_run_query("until:2026-12-04T05:00:00Z since:2026-12-04T04:00:00Z").unwrap();
        assert_eq!(
            q.until,
            Some(Timestamp::parse_rfc3339("2026-12-04T05:00:00Z").unwrap())
        );
        assert!(q.since < q.until);
        assert!(
            parse_run_query("until:soon")
                .unwrap_err()
                .contains("until:soon")
        );
        assert_eq!(
            parse_run_query("http://x").unwrap().text,
            vec!["http://x".to_string()]
        );
    }
}
