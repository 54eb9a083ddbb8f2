//! `/errors` and `/errors/{fingerprint}`: error groups, from the same store
//! functions as their JSON twins `/api/v1/errors` and
//! `/api/v1/errors/{fingerprint}` (see [`crate::insights`]).

use super::{Nav, PageError, PageViewer, ago, badge, esc, layout, time_cell, url_enc};
use crate::AppState;
use crate::error::ApiError;
use crate::insights::error_query;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use plumb_model::Timestamp;
use std::fmt::Write as _;

/// Occurrences listed on a group's page.
const RECENT: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/errors", get(errors_page))
        .route("/errors/{fingerprint}", get(group_page))
}

async fn errors_page(
    _: PageViewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Html<String>, PageError> {
    let q = error_query(&state.insights, &pairs)?;
    let status = q.status;
    let list = state
        .db
        .read(move |s| crate::insights::error_list(s, &q))
        .await?;
    let groups = &list.groups;
    let mut b = String::with_capacity(8192);
    b.push_str("<h1>Errors</h1><p>Exceptions of failed runs and OpenTelemetry logs, grouped by fingerprint (type and in-application frames, else type and normalized message). Show: ");
    let _ = write!(
        b,
        "<a href=\"/errors\"{}>all</a>",
        if status.is_none() {
            " aria-current=\"page\""
        } else {
            ""
        }
    );
    for s in ["new", "regressed", "ongoing", "resolved"] {
        let current = status.is_some_and(|x| x.as_str() == s);
        let _ = write!(
            b,
            " · <a href=\"/errors?status={s}\"{}>{s}</a>",
            if current {
                " aria-current=\"page\""
            } else {
                ""
            }
        );
    }
    b.push_str("</p>");
    if groups.is_empty() {
        b.push_str("<p>No error groups.</p>");
    } else {
        let _ = write!(
            b,
            "<table id=\"errors\"><thead><tr><th scope=\"col\">Error</th><th scope=\"col\">Status</th>\
<th scope=\"col\" class=\"num\">Count</th><th scope=\"col\" class=\"num\">Runs</th><th scope=\"col\">Hosts</th>\
<th scope=\"col\">First seen</th><th scope=\"col\">Last seen</th>\
<th scope=\"col\" title=\"occurrences per UTC day\">Last {days} days</th></tr></thead><tbody>",
            days = crate::insights::SPARK_DAYS,
        );
        for (g, sp) in groups
            .iter()
            .zip(list.sparks.iter().map(Some).chain(std::iter::repeat(None)))
        {
            let hosts = if g.host_count() > 3 {
                format!(
                    "{} and {} more",
                    g.hosts[..3.min(g.hosts.len())].join(", "),
                    g.host_count() - 3
                )
            } else {
                g.hosts.join(", ")
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/errors/{fp}\"><strong>{kind}</strong></a>: {msg} <span class=\"muted\">({lang})</span></td>\
<td>{status}</td><td class=\"num\">{count}</td><td class=\"num\">{runs}</td><td>{hosts}</td><td title=\"{first_full}\">{first}</td><td title=\"{last_full}\">{last}</td>\
<td class=sp>{spark}</td></tr>",
                spark = sp.map_or_else(String::new, error_spark),
                fp = url_enc(&g.fingerprint),
                kind = esc(&g.kind),
                msg = esc(&truncate(&g.message, 160)),
                lang = esc(&g.language),
                status = badge(g.status.as_str()),
                count = g.count,
                runs = g.runs,
                hosts = esc(&hosts),
                first_full = g.first_seen.to_rfc3339(),
                first = ago(g.first_seen),
                last_full = g.last_seen.to_rfc3339(),
                last = ago(g.last_seen),
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("Errors", Nav::Errors, "", &b))
}

/// A group's sparkline: occurrences per day, with the days in its hover
/// text.
fn error_spark(sp: &plumb_model::insights::ErrorSpark) -> String {
    let hi = sp.per_day.iter().copied().max().unwrap_or(0);
    let vals: Vec<Option<f64>> = sp.per_day.iter().map(|n| Some(*n as f64)).collect();
    let title = format!(
        "per day from {}: {}{}",
        &sp.from.to_rfc3339_secs()[..10],
        sp.per_day
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        if sp.partial {
            " (the newest occurrences only)"
        } else {
            ""
        }
    );
    plumb_model::chart::mini_spark_svg(&title, [(&vals, hi.max(1) as f64), (&[], 1.0)])
}

/// Occurrences a group's chart reads at most (the newest).
pub(crate) const CHART_CAP: usize = 100_000;

/// Fills `over_time`: the group's occurrences per interval from its first
/// sighting to `now`, from at most [`CHART_CAP`] of them.
pub(crate) fn add_chart(
    s: &dyn plumb_store::Backend,
    d: &mut plumb_model::insights::ErrorGroupDetail,
    now: Timestamp,
) -> plumb_store::Result<()> {
    let from = d.group.first_seen.min(now);
    let until = Timestamp::from_nanos(now.as_nanos().max(d.group.last_seen.as_nanos()) + 1);
    let times = s.error_occurrence_times(&d.group.fingerprint, from, until, CHART_CAP)?;
    let mut c = plumb_model::chart::count_times(&times, from, until);
    if times.len() == CHART_CAP {
        c.partial_from = times.last().copied();
    }
    d.over_time = Some(c);
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

async fn group_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
) -> Result<Html<String>, PageError> {
    let window = state.insights.new_window_s;
    let fp = fingerprint.clone();
    let d = state
        .db
        .read(move |s| {
            let now = Timestamp::now();
            let mut d = s.error_group(&fp, now, window, RECENT)?;
            if let Some(d) = &mut d {
                add_chart(s, d, now)?;
            }
            Ok(d)
        })
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("no error group with fingerprint `{fingerprint}`"))
        })?;
    let g = &d.group;
    let mut b = String::with_capacity(8192);
    let _ = write!(
        b,
        "<h1>{} {}</h1><p>{}</p><dl class=\"kv\"><dt>fingerprint</dt><dd class=\"mono\">{}</dd>\
<dt>language</dt><dd>{}</dd><dt>count</dt><dd>{}</dd><dt>runs</dt><dd>{}</dd>\
<dt>first seen</dt><dd>{}</dd><dt>last seen</dt><dd>{}</dd>",
        esc(&g.kind),
        badge(g.status.as_str()),
        esc(&g.message),
        esc(&g.fingerprint),
        esc(&g.language),
        g.count,
        g.runs,
        time_cell(g.first_seen),
        time_cell(g.last_seen),
    );
    if let Some(t) = g.regressed_at {
        let _ = write!(b, "<dt>regressed</dt><dd>{}</dd>", time_cell(t));
    }
    if let Some(t) = g.resolved_at {
        let _ = write!(b, "<dt>resolved</dt><dd>{}</dd>", time_cell(t));
    }
    b.push_str("</dl>");
    if let Some(c) = &d.over_time {
        let mut markers = vec![(g.first_seen, "first seen".to_string())];
        if let Some(t) = g.regressed_at {
            markers.push((t, "regressed".into()));
        }
        if let Some(t) = g.resolved_at {
            markers.push((t, "resolved".into()));
        }
        let title = format!(
            "Occurrences per {} of {}",
            plumb_model::chart::interval_label(c.interval_ns),
            g.kind
        );
        let svg = plumb_model::chart::stacked_bars_svg(&plumb_model::chart::StackedBars {
            id: "error-chart",
            title: &title,
            unit: "events",
            from: c.from,
            until: c.until,
            interval_ns: c.interval_ns,
            bars: c
                .counts
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let start = Timestamp::from_nanos(c.from.as_nanos() + i as i64 * c.interval_ns);
                    let end = Timestamp::from_nanos(start.as_nanos() + c.interval_ns);
                    plumb_model::chart::StackBar {
                        start,
                        end,
                        segments: vec![plumb_model::chart::Segment {
                            state: plumb_model::RunState::Failed,
                            value: *n as f64,
                        }],
                        hover: format!(
                            "{} – {}: {n} occurrence{}",
                            plumb_model::chart::moment(start),
                            plumb_model::chart::moment(end),
                            if *n == 1 { "" } else { "s" }
                        ),
                        href: None,
                    }
                })
                .collect(),
            max: None,
            markers,
            height: 180.0,
        });
        let _ = write!(
            b,
            "<section class=\"chart-box\" aria-label=\"Occurrences over time\">{svg}"
        );
        if let Some(p) = c.partial_from {
            let _ = write!(
                b,
                "<p class=\"note\">Only the newest {CHART_CAP} occurrences were counted: the bars before {} are short.</p>",
                esc(&plumb_model::chart::moment(p))
            );
        }
        b.push_str("</section>");
    }
    b.push_str("<h2>By host</h2><table id=\"by-host\"><thead><tr><th scope=\"col\">Host</th><th scope=\"col\" class=\"num\">Count</th></tr></thead><tbody>");
    for h in &d.by_host {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&h.host),
            h.count
        );
    }
    b.push_str("</tbody></table><h2>Sample</h2><pre class=\"output\" tabindex=\"0\">");
    let ex = &d.sample;
    let _ = writeln!(b, "{}: {}", esc(&ex.kind), esc(&ex.message));
    for f in &ex.frames {
        let _ = writeln!(
            b,
            "  {}:{} in {}",
            esc(f.file.as_deref().unwrap_or("?")),
            f.line.map(|l| l.to_string()).unwrap_or_default(),
            esc(f.function.as_deref().unwrap_or("?"))
        );
    }
    b.push_str("</pre><h2>Recent occurrences</h2><table id=\"occurrences\"><thead><tr><th scope=\"col\">When (UTC)</th>\
<th scope=\"col\">Host</th><th scope=\"col\">Source</th><th scope=\"col\">Run</th></tr></thead><tbody>");
    for o in &d.occurrences {
        let run = o
            .run_id
            .map(|id| format!("<a class=\"mono\" href=\"/runs/{id}\">{id}</a>"))
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{run}</td></tr>",
            time_cell(o.at),
            esc(&o.host),
            o.source.as_str()
        );
    }
    b.push_str("</tbody></table>");
    Ok(layout(&g.kind, Nav::Errors, "", &b))
}
