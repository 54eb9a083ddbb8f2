//! `/preflight` and `/preflight/{id}`: the fleet-wide preflights the
//! collector ran (`plumb preflight --nodes`, `POST /api/v1/preflight`),
//! newest first, and one preflight as a node-by-check table with every
//! failure's reason; JSON twins `/api/v1/preflights` and
//! `/api/v1/preflights/{id}`.

use super::{Nav, PageError, PageViewer, ago, badge, esc, layout, time_cell};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::preflight::FleetPreflight;
use plumb_model::{Timestamp, Uuid};
use plumb_store::nodes::PreflightRecord;
use serde::Serialize;
use std::fmt::Write as _;

/// Preflights listed.
const LISTED: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/preflight", get(list_page))
        .route("/preflight/{id}", get(one_page))
        .route("/api/v1/preflights", get(list_json))
        .route("/api/v1/preflights/{id}", get(one_json))
}

/// One recorded preflight, as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightSummary {
    /// Its id.
    pub id: Uuid,
    /// When its results were complete.
    pub at: Timestamp,
    /// Nodes that answered.
    pub nodes: usize,
    /// Of those, nodes with a failed check.
    pub failed_nodes: usize,
    /// Failed checks over all nodes.
    pub failed_checks: usize,
    /// Nodes down, silent, or unable to run the checks.
    pub not_answered: usize,
}

impl From<&PreflightRecord> for PreflightSummary {
    fn from(p: &PreflightRecord) -> Self {
        PreflightSummary {
            id: p.id,
            at: p.at,
            nodes: p.result.nodes.len(),
            failed_nodes: p.result.nodes.iter().filter(|n| n.failed() > 0).count(),
            failed_checks: p.result.nodes.iter().map(|n| n.failed()).sum(),
            not_answered: p.result.not_answered.len(),
        }
    }
}

/// One recorded preflight: `GET /api/v1/preflights/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightView {
    /// Its id.
    pub id: Uuid,
    /// When its results were complete.
    pub at: Timestamp,
    /// The spec as sent.
    pub spec: String,
    /// What each node answered.
    pub result: FleetPreflight,
}

async fn list(state: &AppState) -> Result<Vec<PreflightSummary>, ApiError> {
    let rows = state.db.read(|s| s.preflights(LISTED)).await?;
    Ok(rows.iter().map(PreflightSummary::from).collect())
}

async fn one(state: &AppState, id: &str) -> Result<PreflightView, ApiError> {
    let uuid = Uuid::parse_str(id)
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a preflight id (a UUID)")))?;
    let p = state
        .db
        .read(move |s| s.preflight(uuid))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no preflight {id}")))?;
    Ok(PreflightView {
        id: p.id,
        at: p.at,
        spec: p.spec,
        result: p.result,
    })
}

async fn list_json(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<PreflightSummary>>, ApiError> {
    Ok(Json(list(&state).await?))
}

async fn one_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PreflightView>, ApiError> {
    Ok(Json(one(&state, &id).await?))
}

async fn list_page(
    _: PageViewer,
    State(state): State<AppState>,
) -> Result<Html<String>, PageError> {
    let rows = list(&state).await?;
    let mut b = String::with_capacity(8192);
    b.push_str("<h1>Preflight checks</h1><p>Fleet-wide checks run with <code>plumb preflight SPEC --nodes ...</code>, newest first.</p>");
    if rows.is_empty() {
        b.push_str("<p>No preflight has run through this collector yet.</p>");
    } else {
        b.push_str(
            "<table id=\"preflights\"><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">Outcome</th>\
<th scope=\"col\">Nodes</th><th scope=\"col\">Failed checks</th><th scope=\"col\">Not answered</th></tr></thead><tbody>",
        );
        for r in &rows {
            let outcome = if r.failed_nodes == 0 && r.not_answered == 0 {
                "passed"
            } else {
                "failed"
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/preflight/{id}\">{when}</a> <span class=\"muted\">{ago}</span></td><td>{badge}</td>\
<td>{nodes} ({failed} failing)</td><td>{checks}</td><td>{silent}</td></tr>",
                id = r.id,
                when = time_cell(r.at),
                ago = esc(&ago(r.at)),
                badge = badge(outcome),
                nodes = r.nodes,
                failed = r.failed_nodes,
                checks = r.failed_checks,
                silent = r.not_answered,
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("preflight", Nav::Nodes, "", &b))
}

async fn one_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let v = one(&state, &id).await?;
    let r = &v.result;
    let failed: usize = r.nodes.iter().map(|n| n.failed()).sum();
    let mut b = String::with_capacity(16 * 1024);
    let _ = write!(
        b,
        "<h1>Preflight {short}</h1><p>{when} · {nodes} node{s} answered, {failed} failed check{fs}, {silent} did not answer · <a href=\"/preflight\">every preflight</a></p>",
        short = &v.id.to_string()[..8],
        when = time_cell(v.at),
        nodes = r.nodes.len(),
        s = if r.nodes.len() == 1 { "" } else { "s" },
        fs = if failed == 1 { "" } else { "s" },
        silent = r.not_answered.len(),
    );
    // Columns: the checks in the order the first node lists them, then any
    // other node's extra ones.
    let mut checks: Vec<&str> = Vec::new();
    for n in &r.nodes {
        for c in &n.checks {
            if !checks.contains(&c.check.as_str()) {
                checks.push(&c.check);
            }
        }
    }
    if !r.nodes.is_empty() {
        b.push_str("<table id=\"preflight-matrix\"><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">User</th>");
        for c in &checks {
            let _ = write!(b, "<th scope=\"col\" class=\"mono\">{}</th>", esc(c));
        }
        b.push_str("</tr></thead><tbody>");
        for n in &r.nodes {
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/nodes/{u}\">{name}</a></th><td>{user}</td>",
                u = super::url_enc(&n.node),
                name = esc(&n.node),
                user = esc(&n.user)
            );
            for c in &checks {
                match n.checks.iter().find(|x| x.check == *c) {
                    Some(x) if x.ok => {
                        let _ =
                            write!(b, "<td class=\"ok\" title=\"{}\">✓ ok</td>", esc(&x.detail));
                    }
                    Some(x) => {
                        let _ = write!(
                            b,
                            "<td class=\"bad\" title=\"{d}\">✗ {d}</td>",
                            d = esc(&x.detail)
                        );
                    }
                    None => b.push_str("<td>—</td>"),
                }
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table>");
    }
    if failed > 0 {
        b.push_str("<h2>Failures</h2><ul id=\"preflight-failures\">");
        for n in &r.nodes {
            for c in n.checks.iter().filter(|c| !c.ok) {
                let _ = write!(
                    b,
                    "<li><strong>{}</strong> (as {}): <span class=\"mono\">{}</span>: {}</li>",
                    esc(&n.node),
                    esc(&n.user),
                    esc(&c.check),
                    esc(&c.detail)
                );
            }
        }
        b.push_str("</ul>");
    }
    if !r.not_answered.is_empty() {
        b.push_str("<h2>Not answered</h2><ul>");
        for s in &r.not_answered {
            let _ = write!(
                b,
                "<li><strong>{}</strong>: {}</li>",
                esc(&s.node),
                esc(&s.why)
            );
        }
        b.push_str("</ul>");
    }
    let _ = write!(b, "<h2>Spec</h2><pre>{}</pre>", esc(&v.spec));
    Ok(layout("preflight", Nav::Nodes, "", &b))
}
