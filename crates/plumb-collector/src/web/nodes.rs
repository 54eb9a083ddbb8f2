//! `/nodes` and `/nodes/{name}`, with their JSON twins
//! (`/api/v1/pages/nodes`, `/api/v1/nodes/{name}`).

use super::{Nav, PageError, PageViewer, ago, badge, bytes, esc, layout, time_cell, url_enc};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::node::{NodeReport, NodeState, NodeTransition};
use plumb_store::nodes::NodeRow;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// State changes shown on a node's page.
const HISTORY: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(nodes_page))
        .route("/nodes/{name}", get(node_page))
        .route("/api/v1/pages/nodes", get(nodes_json))
        .route("/api/v1/nodes/{name}", get(node_json))
}

/// A node as the dashboard shows it.
#[derive(Debug, Serialize)]
pub struct NodeView {
    /// Name.
    pub node: String,
    /// State.
    pub state: NodeState,
    /// In that state since.
    pub since: Timestamp,
    /// Last heartbeat (collector clock).
    pub last_heartbeat: Timestamp,
    /// The last report.
    pub report: NodeReport,
    /// Content hash of its software fingerprint.
    pub fingerprint: Option<String>,
    /// The label group it is compared with (`k=v,...`, empty for none).
    pub group: String,
    /// Its fingerprint differs from the most common one of its group.
    pub fingerprint_differs: bool,
    /// Clock offset against the collector, once agents measure it.
    pub clock_offset_ms: Option<f64>,
}

/// What `/nodes` shows.
#[derive(Debug, Serialize)]
pub struct NodesView {
    /// Nodes by name.
    pub nodes: Vec<NodeView>,
    /// When it was read.
    pub now: Timestamp,
}

fn group_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Marks each node whose fingerprint differs from the majority of the nodes
/// with the same labels (a group of one has nothing to differ from).
fn views(rows: Vec<NodeRow>) -> Vec<NodeView> {
    let mut counts: HashMap<(String, &str), usize> = HashMap::new();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    let keys: Vec<String> = rows.iter().map(|r| group_key(&r.report.labels)).collect();
    for (r, g) in rows.iter().zip(&keys) {
        if let Some(fp) = r.fingerprint.as_deref() {
            *counts.entry((g.clone(), fp)).or_default() += 1;
            *sizes.entry(g.clone()).or_default() += 1;
        }
    }
    let mut majority: HashMap<&str, (&str, usize)> = HashMap::new();
    for ((g, fp), n) in &counts {
        let e = majority.entry(g.as_str()).or_insert((fp, 0));
        // Ties go to the smaller hash, so the marker does not flicker.
        if *n > e.1 || (*n == e.1 && *fp < e.0) {
            *e = (fp, *n);
        }
    }
    let marked: Vec<bool> = rows
        .iter()
        .zip(&keys)
        .map(
            |(r, g)| match (r.fingerprint.as_deref(), majority.get(g.as_str())) {
                (Some(fp), Some((m, _))) => sizes.get(g).copied().unwrap_or(0) > 1 && fp != *m,
                _ => false,
            },
        )
        .collect();
    rows.into_iter()
        .zip(keys)
        .zip(marked)
        .map(|((r, group), differs)| NodeView {
            node: r.name,
            state: r.state,
            since: r.since,
            last_heartbeat: r.last_seen,
            report: r.report,
            fingerprint: r.fingerprint,
            group,
            fingerprint_differs: differs,
            clock_offset_ms: None,
        })
        .collect()
}

async fn nodes_data(state: &AppState) -> Result<NodesView, ApiError> {
    let rows = state.db.read(|s| s.nodes()).await?;
    Ok(NodesView {
        nodes: views(rows),
        now: Timestamp::now(),
    })
}

async fn nodes_json(_: Viewer, State(state): State<AppState>) -> Result<Json<NodesView>, ApiError> {
    Ok(Json(nodes_data(&state).await?))
}

fn disk_bars(b: &mut String, r: &NodeReport) {
    for d in &r.disks {
        let pct = if d.total > 0 {
            d.available as f64 / d.total as f64 * 100.0
        } else {
            0.0
        };
        let class = if pct < 10.0 {
            "bar low"
        } else if pct < 25.0 {
            "bar mid"
        } else {
            "bar"
        };
        let _ = write!(
            b,
            "<div class=\"disk\"><span class=\"mono\">{m}</span> <span class=\"{class}\" role=\"img\" aria-label=\"{pct:.0}% available\"><span style=\"width:{pct:.1}%\"></span></span> {avail} free of {total}</div>",
            m = esc(&d.mount),
            avail = bytes(d.available),
            total = bytes(d.total),
        );
    }
}

fn mem_cell(r: &NodeReport) -> String {
    let m = &r.memory;
    if m.total == 0 {
        return "—".into();
    }
    format!("{} free of {}", bytes(m.available), bytes(m.total))
}

async fn nodes_page(
    _: PageViewer,
    State(state): State<AppState>,
) -> Result<Html<String>, PageError> {
    let v = nodes_data(&state).await?;
    let mut b = String::with_capacity(1024 + v.nodes.len() * 900);
    let mut by_state = [0usize; 4];
    for n in &v.nodes {
        by_state[NodeState::ALL
            .iter()
            .position(|s| *s == n.state)
            .unwrap_or(0)] += 1;
    }
    let _ = write!(b, "<h1>Nodes</h1><p>{} nodes:", v.nodes.len());
    for (s, n) in NodeState::ALL.iter().zip(by_state) {
        let _ = write!(b, " {} {n}", badge(s.as_str()));
    }
    b.push_str("</p>");
    if v.nodes.is_empty() {
        b.push_str("<p>No node has reported yet: start <code>plumb agent --collector URL</code> on each.</p>");
    } else {
        b.push_str(
            "<table id=\"nodes\"><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Since</th>\
<th scope=\"col\" class=\"num\">Load (1m)</th><th scope=\"col\">Memory</th><th scope=\"col\">Disks</th>\
<th scope=\"col\" class=\"num\">Clock offset</th><th scope=\"col\">Fingerprint</th><th scope=\"col\" class=\"num\">Runs</th></tr></thead><tbody>",
        );
        for n in &v.nodes {
            let r = &n.report;
            let fp = match &n.fingerprint {
                Some(h) if n.fingerprint_differs => format!(
                    "<span class=\"mono\">{}</span> <span class=\"marker\" title=\"differs from most nodes labelled {g}\">≠ group</span>",
                    esc(&h[..12.min(h.len())]),
                    g = esc(if n.group.is_empty() {
                        "(none)"
                    } else {
                        &n.group
                    })
                ),
                Some(h) => format!("<span class=\"mono\">{}</span>", esc(&h[..12.min(h.len())])),
                None => "—".into(),
            };
            let _ = write!(
                b,
                "<tr data-node=\"{name}\"><td><a href=\"/nodes/{link}\">{name}</a></td><td>{st}</td><td title=\"{since_full}\">{since}</td>\
<td class=\"num\">{load:.2} / {cpus}</td><td>{mem}</td><td>",
                name = esc(&n.node),
                link = url_enc(&n.node),
                st = badge(n.state.as_str()),
                since_full = n.since.to_rfc3339(),
                since = ago(n.since),
                load = r.cpu.load1,
                cpus = r.cpu.cpus,
                mem = mem_cell(r),
            );
            disk_bars(&mut b, r);
            let _ = write!(
                b,
                "</td><td class=\"num\">{}</td><td>{fp}</td><td class=\"num\">{}</td></tr>",
                n.clock_offset_ms
                    .map(|o| format!("{o:.1} ms"))
                    .unwrap_or_else(|| "—".into()),
                r.runs_in_progress
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("Nodes", Nav::Nodes, "", &b))
}

/// What `/nodes/{name}` shows.
#[derive(Debug, Serialize)]
pub struct NodeDetail {
    /// The node.
    pub node: NodeView,
    /// Its state changes, oldest first (the latest 200).
    pub transitions: Vec<NodeTransition>,
}

async fn node_data(state: &AppState, name: String) -> Result<NodeDetail, ApiError> {
    let n = name.clone();
    let (row, transitions) = state
        .db
        .read(move |s| Ok((s.node(&n)?, s.node_transitions(Some(&n), HISTORY)?)))
        .await?;
    let row = row.ok_or_else(|| ApiError::NotFound(format!("no node `{name}` has reported")))?;
    let node = views(vec![row]).pop().expect("one row in, one view out");
    Ok(NodeDetail { node, transitions })
}

async fn node_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<NodeDetail>, ApiError> {
    Ok(Json(node_data(&state, name).await?))
}

async fn node_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, PageError> {
    let v = node_data(&state, name).await?;
    let n = &v.node;
    let r = &n.report;
    let mut b = String::with_capacity(8192);
    let _ = write!(
        b,
        "<h1>{} {}</h1><dl class=\"kv\"><dt>since</dt><dd>{} ({})</dd><dt>last heartbeat</dt><dd>{} ({})</dd>\
<dt>load</dt><dd>{:.2} {:.2} {:.2} on {} CPUs</dd><dt>memory</dt><dd>{}</dd><dt>runs in progress</dt><dd>{}</dd>\
<dt>uptime</dt><dd>{}</dd><dt>spool</dt><dd>{} files, {}; dropped {} runs, {}</dd>",
        esc(&n.node),
        badge(n.state.as_str()),
        time_cell(n.since),
        ago(n.since),
        time_cell(n.last_heartbeat),
        ago(n.last_heartbeat),
        r.cpu.load1,
        r.cpu.load5,
        r.cpu.load15,
        r.cpu.cpus,
        mem_cell(r),
        r.runs_in_progress,
        super::human_duration((r.uptime_s * 1e9) as i64),
        r.spool.files,
        bytes(r.spool.bytes),
        r.spool.dropped_runs,
        bytes(r.spool.dropped_bytes),
    );
    for (k, val) in &r.labels {
        let _ = write!(b, "<dt>label {}</dt><dd>{}</dd>", esc(k), esc(val));
    }
    if let Some(fp) = &n.fingerprint {
        let _ = write!(
            b,
            "<dt>fingerprint</dt><dd class=\"mono\">{}{}</dd>",
            esc(fp),
            if n.fingerprint_differs {
                " <span class=\"marker\">differs from its group</span>"
            } else {
                ""
            }
        );
    }
    b.push_str("</dl><h2>Disks</h2>");
    disk_bars(&mut b, r);
    let _ = write!(
        b,
        "<h2>Runs</h2><p><a href=\"/runs?q=host:{}\">Runs on this node</a></p>",
        url_enc(&n.node)
    );
    b.push_str("<h2>State history</h2>");
    if v.transitions.is_empty() {
        b.push_str("<p>No state changes recorded.</p>");
    } else {
        b.push_str(
            "<table id=\"history\"><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">From</th>\
<th scope=\"col\">To</th><th scope=\"col\" class=\"num\">φ</th></tr></thead><tbody>",
        );
        for t in v.transitions.iter().rev() {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td></tr>",
                time_cell(t.at),
                t.from
                    .map(|s| badge(s.as_str()))
                    .unwrap_or_else(|| "—".into()),
                badge(t.to.as_str()),
                t.phi
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout(&n.node, Nav::Nodes, "", &b))
}
