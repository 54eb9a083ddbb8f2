//! `/search?q=`: output lines and OTLP log lines containing the text, each
//! linked to its run at that moment; JSON twin `/api/v1/pages/search?q=`.

use super::{Nav, PageError, PageViewer, esc, layout, time_cell};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::{OutputLine, Uuid};
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
pub struct Hit {
    /// The line.
    #[serde(flatten)]
    pub line: OutputLine,
    /// `/runs/{id}#t{ns}` for output or logs of a stored run; `None` for
    /// logs of programs outside any run.
    pub link: Option<String>,
}

/// What `/search` shows.
#[derive(Debug, Serialize)]
pub struct SearchView {
    /// The text searched for.
    pub q: String,
    /// Hits, newest chunks first.
    pub hits: Vec<Hit>,
    /// Whether there may be more than shown.
    pub more: bool,
    /// Why the text could not be searched for (`"open quote`, `--`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn search_data(state: &AppState, q: String) -> Result<SearchView, ApiError> {
    let text = q.trim().to_string();
    if text.is_empty() {
        return Ok(SearchView {
            q,
            hits: Vec::new(),
            more: false,
            error: None,
        });
    }
    if let Err(e) = plumb_store::Matcher::new(&text, Default::default(), false) {
        return Ok(SearchView {
            q,
            hits: Vec::new(),
            more: false,
            error: Some(e.to_string()),
        });
    }
    let (lines, runs) = state
        .db
        .read(move |s| {
            let lines = s.search(&SearchOptions {
                text,
                limit: HITS + 1,
                ..Default::default()
            })?;
            let ids: Vec<Uuid> = lines.iter().map(|l| l.run_id).collect();
            let runs = s.existing_runs(&ids)?;
            Ok((lines, runs))
        })
        .await?;
    let more = lines.len() > HITS;
    let hits = lines
        .into_iter()
        .take(HITS)
        .map(|line| {
            // The run page gives the first output read or log line at each
            // time the anchor `t<ns>`.
            let link = runs
                .contains(&line.run_id)
                .then(|| format!("/runs/{}#t{}", line.run_id, line.time.as_nanos()));
            Hit { line, link }
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
        b.push_str("<p>Type words in the search box above (press <kbd>/</kbd>) to find them in every run's output and in OpenTelemetry logs. \
A line matches when it holds every word, in any order, ignoring case; <q>widget-5</q> or a \"quoted phrase\" matches its words in sequence.</p>");
    } else if let Some(e) = &v.error {
        let _ = write!(b, "<p class=\"error\">{}</p>", esc(e));
    } else if v.hits.is_empty() {
        let _ = write!(b, "<p>No line holds the words <q>{}</q>.</p>", esc(&v.q));
    } else {
        let _ = write!(
            b,
            "<p>{}{} lines hold the words <q>{}</q>.</p><table id=\"hits\"><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">Host</th>\
<th scope=\"col\">Run</th><th scope=\"col\">Line</th></tr></thead><tbody>",
            if v.more { "The first " } else { "" },
            v.hits.len(),
            esc(&v.q)
        );
        for h in &v.hits {
            let run = match &h.link {
                Some(l) => format!(
                    "<a class=\"mono\" href=\"{}\">{}</a>",
                    esc(l),
                    &h.line.run_id.to_string()[..13]
                ),
                None => "<span class=\"muted\">(no run)</span>".into(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{run}</td><td class=\"mono\">{}</td></tr>",
                time_cell(h.line.time),
                esc(&h.line.host),
                esc(&h.line.text)
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("Search", Nav::Search, &v.q, &b))
}
