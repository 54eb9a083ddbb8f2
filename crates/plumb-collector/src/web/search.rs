//! `/search?q=`: output lines, log records and spans matching the text
//! (`kind:output`, `kind:log`, `kind:span` at either end narrow it), each
//! linked to its run at that moment and to its trace; JSON twin
//! `/api/v1/pages/search?q=`.

use super::{Nav, PageError, PageViewer, badge, esc, human_duration, layout, time_cell};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Uuid;
use plumb_model::telemetry::{Hit, StatusCode};
use plumb_store::SearchOptions;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Hits per page.
const HITS: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/search", get(search_page))
        .route("/api/v1/pages/search", get(search_json))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
}

/// One hit, with where it links.
#[derive(Debug, Serialize)]
pub struct SearchHit {
    /// The hit: `kind` and the fields of its kind.
    #[serde(flatten)]
    pub hit: Hit,
    /// `/runs/{id}#t{ns}` for output or logs of a stored run; `None` for
    /// records of programs outside any run.
    pub link: Option<String>,
    /// `/traces/{id}` (with `#s{span}` for a span) for spans and for log
    /// records made inside one.
    pub trace_link: Option<String>,
}

/// What `/search` shows.
#[derive(Debug, Serialize)]
pub struct SearchView {
    /// The text searched for.
    pub q: String,
    /// Hits: output lines, then log records, then spans.
    pub hits: Vec<SearchHit>,
    /// Whether there may be more than shown.
    pub more: bool,
    /// Why the text could not be searched for (`"open quote`, `--`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn search_data(state: &AppState, q: String) -> Result<SearchView, ApiError> {
    let empty = |error: Option<String>| SearchView {
        q: q.clone(),
        hits: Vec::new(),
        more: false,
        error,
    };
    // `kind:log`, `kind:span`, `kind:output` at either end, as on the CLI.
    let (kinds, text) = match plumb_store::take_kinds(&q) {
        Ok(k) => k,
        Err(e) => return Ok(empty(Some(e.to_string()))),
    };
    if text.trim().is_empty() && kinds.is_empty() {
        return Ok(empty(None));
    }
    if let Err(e) = plumb_store::Matcher::new(&text, Default::default(), false) {
        return Ok(empty(Some(e.to_string())));
    }
    let (found, runs) = state
        .db
        .read(move |s| {
            let found = s.search(&SearchOptions {
                text,
                kinds,
                limit: HITS + 1,
                ..Default::default()
            })?;
            let ids: Vec<Uuid> = found.iter().filter_map(Hit::run_id).collect();
            let runs = s.existing_runs(&ids)?;
            Ok((found, runs))
        })
        .await?;
    let more = found.len() > HITS;
    let hits = found
        .into_iter()
        .take(HITS)
        .map(|hit| {
            // The run page gives the first output read or log line at each
            // time the anchor `t<ns>`.
            let link = hit
                .run_id()
                .filter(|id| runs.contains(id))
                .map(|id| format!("/runs/{id}#t{}", hit.time().as_nanos()));
            let trace_link = match &hit {
                Hit::Span(s) => Some(format!("/traces/{}#s{}", s.trace_id, s.span_id)),
                other => other.trace_id().map(|t| format!("/traces/{t}")),
            };
            SearchHit {
                hit,
                link,
                trace_link,
            }
        })
        .collect();
    Ok(SearchView {
        q,
        hits,
        more,
        error: None,
    })
}

async fn search_json(
    _: Viewer,
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Json<SearchView>, ApiError> {
    Ok(Json(search_data(&state, p.q.unwrap_or_default()).await?))
}

async fn search_page(
    _: PageViewer,
    State(state): State<AppState>,
    Query(p): Query<SearchParams>,
) -> Result<Html<String>, PageError> {
    let v = search_data(&state, p.q.unwrap_or_default()).await?;
    let mut b = String::with_capacity(16 * 1024);
    b.push_str("<h1>Search</h1>");
    if v.q.trim().is_empty() {
        b.push_str("<p>Type words in the search box above (press <kbd>/</kbd>) to find them in every run's output, in log records and in spans \
(by name, service and attributes). A line matches when it holds every word, in any order, ignoring case; <q>widget-5</q> or a \"quoted phrase\" matches its words in sequence. \
Start or end with <code>kind:output</code>, <code>kind:log</code> or <code>kind:span</code> to find only those.</p>");
    } else if let Some(e) = &v.error {
        let _ = write!(b, "<p class=\"error\">{}</p>", esc(e));
    } else if v.hits.is_empty() {
        let _ = write!(b, "<p>No record matches <q>{}</q>.</p>", esc(&v.q));
    } else {
        let _ = write!(
            b,
            "<p>{}{} records match <q>{}</q>.</p><table id=\"hits\"><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">Host</th>\
<th scope=\"col\">Run</th><th scope=\"col\">Kind</th><th scope=\"col\">Source</th><th scope=\"col\">Line</th></tr></thead><tbody>",
            if v.more { "The first " } else { "" },
            v.hits.len(),
            esc(&v.q)
        );
        for h in &v.hits {
            // Records from outside any run leave the run cell empty.
            let run = match (&h.link, h.hit.run_id()) {
                (Some(l), Some(id)) => format!(
                    "<a class=\"mono\" href=\"{}\">{}</a>",
                    esc(l),
                    &id.to_string()[..13]
                ),
                (None, Some(id)) => {
                    format!("<span class=\"mono\">{}</span>", &id.to_string()[..13])
                }
                (_, None) => String::new(),
            };
            let trace = h.trace_link.as_deref().map_or(String::new(), |l| {
                format!(" <a class=\"trace-link\" href=\"{}\">trace</a>", esc(l))
            });
            let (kind, source, line) = match &h.hit {
                Hit::Output(o) => (
                    o.stream.as_str().to_owned(),
                    String::new(),
                    esc(&o.text).into_owned(),
                ),
                Hit::Log(l) => (
                    "log".to_owned(),
                    format!(
                        "{} <span class=\"sev sev-{}\">{}</span>",
                        esc(&l.service),
                        esc(&l.severity.to_ascii_lowercase()),
                        esc(&l.severity)
                    ),
                    esc(l.message()).into_owned(),
                ),
                Hit::Span(s) => (
                    "span".to_owned(),
                    esc(&s.service).into_owned(),
                    format!(
                        "<a class=\"span-name\" href=\"{}\">{}</a> {} {}",
                        esc(h.trace_link.as_deref().unwrap_or("")),
                        esc(&s.name),
                        human_duration(s.duration_ns),
                        if s.status == StatusCode::Error {
                            badge("error")
                        } else {
                            esc(s.status.as_str()).into_owned()
                        }
                    ),
                ),
            };
            let trace = if matches!(h.hit, Hit::Span(_)) {
                String::new()
            } else {
                trace
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"run\">{run}</td><td class=\"kind\">{kind}</td><td>{source}</td><td class=\"mono line\">{line}{trace}</td></tr>",
                time_cell(h.hit.time()),
                esc(h.hit.host()),
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("Search", Nav::Search, &v.q, &b))
}
