//! `/nodes` and `/nodes/{name}`, with their JSON twins
//! (`/api/v1/pages/nodes`, `/api/v1/nodes/{name}`).

use super::{Nav, PageError, PageViewer, ago, badge, bytes, esc, layout, time_cell, url_enc};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::nodes::{NodeDetail, NodeView, node_detail, views};
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::node::{NodeReport, NodeState};
use serde::Serialize;
use std::fmt::Write as _;

/// How often the nodes page asks its JSON twin for changes (ms).
const POLL_MS: u32 = 3000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(nodes_page))
        .route("/nodes/{name}", get(node_page))
        .route("/api/v1/pages/nodes", get(nodes_json))
        .route("/api/v1/nodes/{name}", get(node_json))
}

/// What `/nodes` shows.
#[derive(Debug, Serialize)]
pub struct NodesView {
    /// Nodes by name.
    pub nodes: Vec<NodeView>,
    /// When it was read.
    pub now: Timestamp,
    /// The nodes with a benchmark, best CPU first (at most [`RANKED`]).
    #[serde(default)]
    pub ranking: Vec<crate::bench::BenchEntry>,
}

/// Nodes the nodes page ranks by benchmark (`plumb nodes --rank` has all).
pub const RANKED: usize = 20;

/// Every node, for `/nodes` and its JSON twin.
pub async fn nodes_data(state: &AppState) -> Result<NodesView, ApiError> {
    let (rows, mut ranking) = state
        .db
        .read(|s| {
            Ok((
                s.nodes()?,
                crate::bench::latest_benches(s, &["cpu".into(), "mem".into()])?,
            ))
        })
        .await?;
    ranking.truncate(RANKED);
    Ok(NodesView {
        nodes: views(rows),
        now: Timestamp::now(),
        ranking,
    })
}

/// A benchmark score cell.
fn score_cell(b: &plumb_model::bench::NodeBench, key: &str) -> String {
    b.score(key)
        .map_or_else(|| "—".into(), crate::alerts::figure)
}

/// The nodes page's ranking: nodes best first by their latest benchmark.
fn ranking_section(b: &mut String, v: &NodesView) {
    if v.ranking.is_empty() {
        return;
    }
    b.push_str(
        "<h2 id=\"ranking\">Ranking by benchmark</h2><p>Best first by CPU, then memory bandwidth, from each node's latest <code>plumb bench-node</code> (<code>plumb nodes --rank cpu,mem</code>).</p>\
<table id=\"bench-ranking\"><thead><tr><th scope=\"col\" class=\"num\">#</th><th scope=\"col\">Node</th>\
<th scope=\"col\" class=\"num\">CPU</th><th scope=\"col\" class=\"num\">Memory MB/s</th><th scope=\"col\" class=\"num\">Disk</th>\
<th scope=\"col\" class=\"num\">Net</th><th scope=\"col\">Taken</th></tr></thead><tbody>",
    );
    for (i, e) in v.ranking.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td class=\"num\">{}</td><td><a href=\"/nodes/{}#benchmarks\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            url_enc(&e.node),
            esc(&e.node),
            score_cell(&e.bench, "cpu"),
            score_cell(&e.bench, "mem"),
            score_cell(&e.bench, "disk"),
            score_cell(&e.bench, "net"),
            ago(e.bench.taken_at),
        );
    }
    b.push_str("</tbody></table>");
}

/// The node page's benchmark history, newest first.
fn bench_section(b: &mut String, benches: &[crate::bench::BenchEntry]) {
    b.push_str("<h2 id=\"benchmarks\">Benchmarks</h2>");
    if benches.is_empty() {
        b.push_str("<p>No benchmark yet: its agent runs one when the node is idle (every 4 h by default), or run <code>plumb bench-node --collector URL</code> on it.</p>");
        return;
    }
    b.push_str(
        "<table id=\"bench-history\"><thead><tr><th scope=\"col\">Taken (UTC)</th>\
<th scope=\"col\" class=\"num\">CPU int, 1 core (Mops/s)</th><th scope=\"col\" class=\"num\">CPU int, all (Mops/s)</th>\
<th scope=\"col\" class=\"num\">CPU float, 1 core (Mflop/s)</th><th scope=\"col\" class=\"num\">Memory (MB/s)</th>\
<th scope=\"col\" class=\"num\">Disk read (MB/s)</th><th scope=\"col\" class=\"num\">Random read (IOPS)</th>\
<th scope=\"col\" class=\"num\">Round trip (ms)</th></tr></thead><tbody>",
    );
    let f = |x: &plumb_model::bench::Figure| {
        format!(
            "{} <small title=\"spread of its repetitions, (max - min) / median\">{:.0}%</small>",
            crate::alerts::figure(x.value),
            x.spread_pct
        )
    };
    for e in benches {
        let d = e.bench.disk.as_ref();
        let _ = write!(
            b,
            "<tr><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            time_cell(e.bench.taken_at),
            if e.bench.quick { " (quick)" } else { "" },
            f(&e.bench.cpu_int_mops),
            f(&e.bench.cpu_all_int_mops),
            f(&e.bench.cpu_float_mflops),
            f(&e.bench.mem_triad_mbs),
            d.map_or_else(|| "—".into(), |d| f(&d.seq_read_mbs)),
            d.map_or_else(|| "—".into(), |d| f(&d.rand_read_iops)),
            e.bench
                .net
                .as_ref()
                .map_or_else(|| "—".into(), |n| f(&n.rtt_ms)),
        );
    }
    b.push_str("</tbody></table>");
}

async fn nodes_json(_: Viewer, State(state): State<AppState>) -> Result<Json<NodesView>, ApiError> {
    Ok(Json(nodes_data(&state).await?))
}

/// The disks of a report, one line each: mount, a bar of the free share,
/// free / size. Compact on purpose: the nodes page repeats this for every
/// mount of every node, so each byte here is a kilobyte at a thousand nodes
/// (one empty element per bar, its share in a custom property).
fn disk_lines(b: &mut String, r: &NodeReport) {
    for (i, d) in r.disks.iter().enumerate() {
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
            "{br}{m} <span class=\"{class}\" style=\"--p:{pct:.0}%\"></span> {avail} / {total}",
            br = if i > 0 { "<br>" } else { "" },
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
    format!("{} / {}", bytes(m.available), bytes(m.total))
}

fn fingerprint_cell(n: &NodeView) -> String {
    match &n.fingerprint {
        Some(h) if n.fingerprint_differs => format!(
            "<code>{}</code> <span class=\"marker\" title=\"differs from most nodes labelled {g}\">≠ group</span>",
            esc(&h[..12.min(h.len())]),
            g = esc(if n.group.is_empty() {
                "(none)"
            } else {
                &n.group
            })
        ),
        Some(h) => format!("<code>{}</code>", esc(&h[..12.min(h.len())])),
        None => "—".into(),
    }
}

/// The body of `/nodes`: a summary by state and one table row per node.
/// Rows leave their cells unclosed (valid HTML, and a tenth of the page at
/// a thousand nodes); `data-poll` tells the page's script where to fetch
/// changes, so the table keeps itself current without a reload, and is
/// complete without the script.
fn nodes_body(v: &NodesView) -> String {
    let mut b = String::with_capacity(1024 + v.nodes.len() * 560);
    let mut by_state = [0usize; 4];
    for n in &v.nodes {
        by_state[NodeState::ALL
            .iter()
            .position(|s| *s == n.state)
            .unwrap_or(0)] += 1;
    }
    let _ = write!(
        b,
        "<h1>Nodes</h1><p id=\"node-counts\"><span>{}</span> nodes:",
        v.nodes.len()
    );
    for (s, n) in NodeState::ALL.iter().zip(by_state) {
        let _ = write!(
            b,
            " {} <span data-count=\"{}\">{n}</span>",
            badge(s.as_str()),
            s.as_str()
        );
    }
    b.push_str("</p>");
    if v.nodes.is_empty() {
        b.push_str("<p id=\"no-nodes\">No node has reported yet: start <code>plumb agent --collector URL</code> on each.</p>");
    }
    let _ = write!(
        b,
        "<table id=\"nodes\" data-poll=\"/api/v1/pages/nodes\" data-every=\"{POLL_MS}\"{hidden}><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Since</th>\
<th scope=\"col\" class=\"num\">Load (1m)</th><th scope=\"col\">Memory free / total</th><th scope=\"col\">Disks: free / size</th>\
<th scope=\"col\" class=\"num\">Clock offset</th><th scope=\"col\">Fingerprint</th><th scope=\"col\" class=\"num\">Runs</th></tr></thead><tbody>",
        hidden = if v.nodes.is_empty() { " hidden" } else { "" }
    );
    for n in &v.nodes {
        let r = &n.report;
        let _ = write!(
            b,
            "<tr data-node=\"{name}\"><td><a href=\"/nodes/{link}\">{name}</a><td>{st}<td title=\"{since_full}\">{since}\
<td>{load:.2} / {cpus}<td>{mem}<td class=\"disk\">",
            name = esc(&n.node),
            link = url_enc(&n.node),
            st = badge(n.state.as_str()),
            since_full = n.since.to_rfc3339_secs(),
            since = ago(n.since),
            load = r.cpu.load1,
            cpus = r.cpu.cpus,
            mem = mem_cell(r),
        );
        disk_lines(&mut b, r);
        let _ = write!(
            b,
            "<td>{}<td>{}<td>{}</tr>",
            n.clock_offset_ms
                .map(|o| format!("{o:.1} ms"))
                .unwrap_or_else(|| "—".into()),
            fingerprint_cell(n),
            r.runs_in_progress
        );
    }
    b.push_str("</tbody></table>");
    ranking_section(&mut b, v);
    b
}

async fn nodes_page(
    _: PageViewer,
    State(state): State<AppState>,
) -> Result<Html<String>, PageError> {
    let v = nodes_data(&state).await?;
    Ok(layout("Nodes", Nav::Nodes, "", &nodes_body(&v)))
}

async fn node_data(state: &AppState, name: String) -> Result<NodeDetail, ApiError> {
    let n = name.clone();
    let limits = state.health_limits;
    state
        .db
        .read(move |s| node_detail(s, &n, &limits))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no node `{name}` has reported")))
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
<dt>load</dt><dd>{:.2} {:.2} {:.2} on {} CPUs</dd><dt>memory free / total</dt><dd>{}</dd><dt>runs in progress</dt><dd>{}</dd>\
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
    b.push_str("</dl>");
    if !v.differs_in.is_empty() {
        b.push_str(
            "<h2>Software that differs from its group</h2><table id=\"drift\"><thead><tr>\
<th scope=\"col\">Component</th><th scope=\"col\">This node</th><th scope=\"col\">Most of its group</th></tr></thead><tbody>",
        );
        for d in &v.differs_in {
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.component),
                esc(d.version.as_deref().unwrap_or("(absent)")),
                esc(d.majority.as_deref().unwrap_or("(absent or no majority)"))
            );
        }
        b.push_str("</tbody></table>");
    }
    if !v.env_changes.is_empty() {
        b.push_str(
            "<h2>Software changes</h2><table id=\"env-changes\"><thead><tr>\
<th scope=\"col\">When (UTC)</th><th scope=\"col\">What changed</th></tr></thead><tbody>",
        );
        for c in &v.env_changes {
            let what = crate::env::describe_change(c);
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&c.at.to_string()),
                esc(&what)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Disks: free / size</h2><div class=\"disk\">");
    disk_lines(&mut b, r);
    b.push_str("</div>");
    let _ = write!(
        b,
        "<h2>Runs in progress</h2><p>{} by the node's last report; <a href=\"/runs?q=host:{}\">every run on this node</a></p>",
        r.runs_in_progress,
        url_enc(&n.node)
    );
    if !v.running.is_empty() {
        b.push_str(
            "<table id=\"running\"><thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Name</th>\
<th scope=\"col\">Started (UTC)</th></tr></thead><tbody>",
        );
        for run in &v.running {
            let id = run.id.to_string();
            let _ = write!(
                b,
                "<tr><td><a class=\"mono\" href=\"/runs/{id}\">{short}</a></td><td>{name}</td><td>{t}</td></tr>",
                short = &id[..8],
                name = esc(&run.name),
                t = time_cell(run.started),
            );
        }
        b.push_str("</tbody></table>");
    }
    health_section(&mut b, v.health.as_ref());
    bench_section(&mut b, &v.benches);
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

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".into(), |v| v.to_string())
}

/// The node page's health section: what is abnormal, the current values,
/// the sources that could not be read and why, the latest readings.
fn health_section(b: &mut String, d: Option<&crate::health::HealthDetail>) {
    use plumb_model::health::Level;
    b.push_str("<h2 id=\"health\">Health</h2>");
    let Some(d) = d else {
        return;
    };
    let c = &d.current;
    let Some(h) = &c.health else {
        b.push_str(
            "<p>No hardware health reported: the node's agent is older than health reading, or runs with <code>--no-health</code>.</p>",
        );
        return;
    };
    if let Some(at) = c.at {
        let _ = write!(b, "<p>Read {} ({}).</p>", time_cell(at), ago(at));
    }
    if c.findings.is_empty() {
        b.push_str("<p id=\"health-findings\">Nothing abnormal.</p>");
    } else {
        b.push_str("<ul id=\"health-findings\">");
        for f in &c.findings {
            let _ = write!(
                b,
                "<li><span class=\"marker\">{}</span> {}: {}</li>",
                if f.level == Level::Critical {
                    "critical"
                } else {
                    "warning"
                },
                esc(&f.source),
                esc(&f.text)
            );
        }
        b.push_str("</ul>");
    }
    b.push_str("<dl class=\"kv\" id=\"health-values\">");
    for (k, v) in plumb_model::health::value_rows(h) {
        let v = esc(&v);
        // A failing disk stands out.
        let v = if k.starts_with("SMART ") && v.starts_with("FAILED") {
            format!(
                "<span class=\"marker\">FAILED</span>{}",
                &v["FAILED".len()..]
            )
        } else {
            v.to_string()
        };
        let _ = write!(b, "<dt>{}</dt><dd>{v}</dd>", esc(&k));
    }
    b.push_str("</dl>");
    if !c.unavailable.is_empty() {
        b.push_str(
            "<h3>Not available on this node</h3><table id=\"health-unavailable\"><thead><tr>\
<th scope=\"col\">Source</th><th scope=\"col\">Why</th></tr></thead><tbody>",
        );
        for u in &c.unavailable {
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&u.source),
                esc(&u.reason)
            );
        }
        b.push_str("</tbody></table>");
    }
    if d.history.len() > 1 {
        b.push_str(
            "<h3>Latest readings</h3><table id=\"health-history\"><thead><tr><th scope=\"col\">When (UTC)</th>\
<th scope=\"col\" class=\"num\">OOM kills</th><th scope=\"col\" class=\"num\">Mem. errors (corr./uncorr.)</th>\
<th scope=\"col\" class=\"num\">Throttle events</th><th scope=\"col\" class=\"num\">I/O errors</th>\
<th scope=\"col\" class=\"num\">Mem. pressure</th><th scope=\"col\" class=\"num\">I/O pressure</th>\
<th scope=\"col\" class=\"num\">Hottest °C</th><th scope=\"col\" class=\"num\">SMART failing</th></tr></thead><tbody>",
        );
        for p in d.history.iter().rev().take(30) {
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}/{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                time_cell(p.at),
                opt(p.oom_kills),
                opt(p.memory_corrected),
                opt(p.memory_uncorrected),
                opt(p.throttle_events),
                opt(p.io_errors),
                opt(p.memory_pressure.map(|v| format!("{v:.1}%"))),
                opt(p.io_pressure.map(|v| format!("{v:.1}%"))),
                opt(p.max_temperature.map(|v| format!("{v:.0}"))),
                opt(p.smart_failing),
            );
        }
        b.push_str("</tbody></table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::node::{CpuLoad, DiskInfo, MemoryInfo};
    use std::collections::BTreeMap;

    fn node(i: usize) -> NodeView {
        let t = Timestamp::from_nanos(1_800_000_000_000_000_000 + i as i64);
        NodeView {
            node: format!("node-{i:05}"),
            state: NodeState::ALL[i % 4],
            since: t,
            last_heartbeat: t,
            report: NodeReport {
                version: 1,
                node: format!("node-{i:05}"),
                sent: t,
                seq: 0,
                interval_ms: 5000,
                labels: BTreeMap::from([("rack".to_string(), format!("r{}", i % 10))]),
                boot_id: String::new(),
                uptime_s: 0.0,
                cpu: CpuLoad {
                    load1: 1.25,
                    cpus: 16,
                    ..Default::default()
                },
                memory: MemoryInfo {
                    total: 64 << 30,
                    available: 20 << 30,
                    ..Default::default()
                },
                disks: ["/", "/data", "/scratch"]
                    .iter()
                    .enumerate()
                    .map(|(k, m)| DiskInfo {
                        mount: m.to_string(),
                        fs_type: "ext4".into(),
                        device: format!("/dev/sd{k}"),
                        total: 500 << 30,
                        available: ((i * 37 + k * 11) % 100) as u64 * (5 << 30),
                        inodes_total: 0,
                        inodes_free: 0,
                    })
                    .collect(),
                network: vec![],
                runs_in_progress: (i % 3) as u32,
                spool: Default::default(),
                fingerprint: None,
                clock: None,
                health: None,
            },
            fingerprint: Some(format!("{:064x}", i % 7)),
            group: format!("rack=r{}", i % 10),
            fingerprint_differs: i.is_multiple_of(50),
            clock_offset_ms: None,
        }
    }

    #[test]
    fn a_thousand_nodes_with_three_disks_make_a_small_page() {
        let v = NodesView {
            nodes: (0..1000).map(node).collect(),
            now: Timestamp::from_nanos(1_800_000_000_000_000_000),
            ranking: Vec::new(),
        };
        let body = nodes_body(&v);
        let page = layout("Nodes", Nav::Nodes, "", &body).0;
        println!(
            "nodes page at 1,000 nodes, 3 disks each: {} KiB",
            page.len() / 1024
        );
        // The bench's 1,000-node page (3 disks each) measured 862 KiB in
        // session 3, with a bar of two elements and a label per disk.
        assert!(page.len() < 500 * 1024, "{} bytes", page.len());
        assert_eq!(page.matches("<tr data-node=").count(), 1000);
        assert_eq!(page.matches("<td class=\"disk\">").count(), 1000);
        assert_eq!(page.matches("class=\"bar").count(), 3000);
        assert_eq!(page.matches("≠ group").count(), 20);
        assert!(page.contains("data-poll=\"/api/v1/pages/nodes\""));
    }

    #[test]
    fn names_and_mounts_are_escaped() {
        let mut n = node(1);
        n.node = "<b>x</b>".into();
        n.report.disks[0].mount = "/\"><script>".into();
        let fig = plumb_model::bench::Figure {
            value: 10.0,
            spread_pct: 1.0,
            reps: 3,
        };
        let bench = plumb_model::bench::NodeBench {
            version: plumb_model::bench::BENCH_VERSION,
            node: n.node.clone(),
            taken_at: Timestamp::from_nanos(0),
            wall_s: 1.0,
            quick: false,
            cpus: 1,
            cpu_int_mops: fig.clone(),
            cpu_float_mflops: fig.clone(),
            cpu_all_int_mops: fig.clone(),
            cpu_all_float_mflops: fig.clone(),
            mem_triad_mbs: fig,
            mem_bytes: 1,
            disk: None,
            net: None,
        };
        let ranking = vec![crate::bench::BenchEntry {
            node: n.node.clone(),
            at: Timestamp::from_nanos(0),
            bench,
        }];
        let body = nodes_body(&NodesView {
            nodes: vec![n],
            now: Timestamp::from_nanos(0),
            ranking: ranking.clone(),
        });
        assert!(
            !body.contains("<b>x") && !body.contains("<script>"),
            "{body}"
        );
        assert!(body.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(body.contains("id=\"bench-ranking\""), "{body}");
        let mut history = String::new();
        bench_section(&mut history, &ranking);
        assert!(history.contains("id=\"bench-history\""), "{history}");
        assert!(!history.contains("<b>x"), "{history}");
    }
}
