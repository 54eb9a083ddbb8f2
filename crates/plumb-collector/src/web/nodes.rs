//! `/nodes` and `/nodes/{name}`, with their JSON twins
//! (`/api/v1/pages/nodes`, `/api/v1/nodes/{name}`).

use super::{Nav, PageError, PageViewer, ago, badge, bytes, esc, layout, time_cell, url_enc};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::nodes::{ChartRange, NodeCharts, NodeDetail, NodeView, node_detail, views};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::node::NodeState;
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
    /// Nodes by name, as the list shows them.
    pub nodes: Vec<NodeListItem>,
    /// When it was read.
    pub now: Timestamp,
    /// The nodes with a benchmark, best CPU first (at most [`RANKED`]).
    #[serde(default)]
    pub ranking: Vec<crate::bench::BenchEntry>,
    /// Start of the sparklines' first interval (each `spark` value is one
    /// interval of `spark_step_ns`, over the last [`SPARK_HOURS`] hours).
    pub spark_from: Timestamp,
    /// Sparkline interval, ns.
    pub spark_step_ns: i64,
}

/// Nodes the nodes page ranks by benchmark (`plumb nodes --rank` has all).
pub const RANKED: usize = 20;

/// Hours the nodes page's sparklines cover.
pub const SPARK_HOURS: i64 = 2;

/// One node as the nodes list shows it: what its row needs and no more, so
/// the list stays small at a thousand nodes. Its whole last report (labels,
/// disk devices and inodes, network counters, the software fingerprint,
/// uptime, spool) is in `/api/v1/nodes/{name}`, as before.
#[derive(Debug, Clone, Serialize)]
pub struct NodeListItem {
    /// Name.
    pub node: String,
    /// State.
    pub state: NodeState,
    /// In that state since.
    pub since: Timestamp,
    /// 1-minute load.
    pub load1: f64,
    /// CPUs.
    pub cpus: u32,
    /// Memory in total, bytes.
    pub mem_total: u64,
    /// Memory available, bytes.
    pub mem_available: u64,
    /// Disks: mount, size, available.
    pub disks: Vec<ListDisk>,
    /// Runs in progress by its last report.
    pub runs: u32,
    /// Clock offset against the collector, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<f64>,
    /// The first 12 characters of its fingerprint's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Its fingerprint differs from most of its group.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fingerprint_differs: bool,
    /// Its label group (`k=v,...`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Its sparklines, when it has history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spark: Option<Spark>,
}

/// One disk in a [`NodeListItem`].
#[derive(Debug, Clone, Serialize)]
pub struct ListDisk {
    /// Mount point.
    pub mount: String,
    /// Size, bytes.
    pub total: u64,
    /// Available, bytes.
    pub available: u64,
}

impl NodeListItem {
    /// The list's view of a node.
    pub fn from_view(n: NodeView) -> NodeListItem {
        let r = n.report;
        NodeListItem {
            node: n.node,
            state: n.state,
            since: n.since,
            load1: r.cpu.load1,
            cpus: r.cpu.cpus,
            mem_total: r.memory.total,
            mem_available: r.memory.available,
            disks: r
                .disks
                .into_iter()
                .map(|d| ListDisk {
                    mount: d.mount,
                    total: d.total,
                    available: d.available,
                })
                .collect(),
            runs: r.runs_in_progress,
            clock_offset_ms: n.clock_offset_ms,
            fingerprint: n.fingerprint.map(|h| h.chars().take(12).collect()),
            fingerprint_differs: n.fingerprint_differs,
            group: n.group,
            spark: None,
        }
    }
}

/// One node's sparklines: one value per interval from the list's
/// `spark_from`, `null` for an interval with no heartbeat.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spark {
    /// The highest 1-minute load (one decimal).
    pub load: Vec<Option<f64>>,
    /// The fullest disk's highest use, whole percent.
    pub disk: Vec<Option<f64>>,
}

/// The sparklines' first interval and how many there are, at `now`.
pub fn spark_slots(now: Timestamp) -> (Timestamp, usize) {
    let step = plumb_store::samples::Step::TenMinutes;
    let from = step.start_of(Timestamp::from_nanos(
        now.as_nanos() - SPARK_HOURS * 3_600_000_000_000,
    ));
    let slots = ((step.start_of(now).as_nanos() - from.as_nanos()) / step.ns() + 1).max(1);
    (from, slots as usize)
}

/// Puts rows of [`plumb_store::NodeHistory::node_sparks`] on the nodes
/// they belong to (both by name), by interval from `from`.
pub fn add_sparks(
    nodes: &mut [NodeListItem],
    rows: Vec<plumb_store::samples::SparkRow>,
    from: Timestamp,
    slots: usize,
) {
    let step = plumb_store::samples::Step::TenMinutes.ns();
    let mut k = 0;
    for r in rows {
        let i = (r.at.as_nanos() - from.as_nanos()).div_euclid(step);
        if i < 0 || i as usize >= slots {
            continue;
        }
        while k < nodes.len() && nodes[k].node < r.node {
            k += 1;
        }
        let Some(n) = nodes.get_mut(k).filter(|n| n.node == r.node) else {
            continue;
        };
        let e = n.spark.get_or_insert_with(|| Spark {
            load: vec![None; slots],
            disk: vec![None; slots],
        });
        // Rounded: the page draws ten pixels, and the JSON stays small.
        e.load[i as usize] = Some((r.load1 * 10.0).round() / 10.0);
        e.disk[i as usize] = Some(r.disk_pct.round());
    }
}

/// A node's sparkline cell: load (solid, scaled to its CPUs or its highest
/// load) and its fullest disk (dashed, 0-100 %).
fn spark_cell(n: &NodeListItem) -> String {
    let Some(s) = &n.spark else {
        return "<td class=sp>—".into();
    };
    let hi = s.load.iter().flatten().copied().fold(0.0, f64::max);
    let disk = s.disk.iter().flatten().copied().fold(0.0, f64::max);
    let title = format!("load≤{hi:.1} disk≤{disk:.0}%");
    format!(
        "<td class=sp>{}",
        plumb_model::chart::mini_spark_svg(
            &title,
            [(&s.load, hi.max(f64::from(n.cpus))), (&s.disk, 100.0)]
        )
    )
}

/// Every node, for `/nodes` and its JSON twin.
pub async fn nodes_data(state: &AppState) -> Result<NodesView, ApiError> {
    let now = Timestamp::now();
    let (rows, mut ranking, spark_rows) = state
        .db
        .read(move |s| {
            Ok((
                s.nodes()?,
                crate::bench::latest_benches(s, &["cpu".into(), "mem".into()])?,
                // One read for every node's sparklines.
                s.node_sparks(plumb_store::samples::Step::TenMinutes, spark_slots(now).0)?,
            ))
        })
        .await?;
    ranking.truncate(RANKED);
    let mut nodes: Vec<NodeListItem> = views(rows)
        .into_iter()
        .map(NodeListItem::from_view)
        .collect();
    let (spark_from, slots) = spark_slots(now);
    add_sparks(&mut nodes, spark_rows, spark_from, slots);
    Ok(NodesView {
        nodes,
        now,
        ranking,
        spark_from,
        spark_step_ns: plumb_store::samples::Step::TenMinutes.ns(),
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
fn disk_lines<'a>(b: &mut String, disks: impl Iterator<Item = (&'a str, u64, u64)>) {
    for (i, (mount, available, total)) in disks.enumerate() {
        let d = ListDisk {
            mount: String::new(),
            total,
            available,
        };
        let pct = if d.total > 0 {
            d.available as f64 / d.total as f64 * 100.0
        } else {
            0.0
        };
        // Unquoted (one class each: `bar`, `low`/`mid` say the same by
        // colour and the figures by words).
        let class = if pct < 10.0 {
            "\"bar low\""
        } else if pct < 25.0 {
            "\"bar mid\""
        } else {
            "bar"
        };
        let _ = write!(
            b,
            "{br}{m} <i class={class} style=--p:{pct:.0}%></i> {avail} / {total}",
            br = if i > 0 { "<br>" } else { "" },
            m = esc(mount),
            avail = bytes(d.available),
            total = bytes(d.total),
        );
    }
}

fn mem_cell(available: u64, total: u64) -> String {
    if total == 0 {
        return "—".into();
    }
    format!("{} / {}", bytes(available), bytes(total))
}

fn fingerprint_cell(n: &NodeListItem) -> String {
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
    b.push_str(" · <a href=\"/preflight\">preflight checks</a></p>");
    if v.nodes.is_empty() {
        b.push_str("<p id=\"no-nodes\">No node has reported yet: start <code>plumb agent --collector URL</code> on each.</p>");
    }
    let _ = write!(
        b,
        "<table id=\"nodes\" data-poll=\"/api/v1/pages/nodes\" data-every=\"{POLL_MS}\"{hidden}><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Since</th>\
<th scope=\"col\" class=\"num\">Load (1m)</th><th scope=\"col\">Memory free / total</th><th scope=\"col\">Disks: free / size</th>\
<th scope=\"col\" class=\"num\">Clock offset</th><th scope=\"col\">Fingerprint</th><th scope=\"col\" class=\"num\">Runs</th>\
<th scope=\"col\" title=\"the highest per ten minutes: load solid, the fullest disk dashed\">Last {SPARK_HOURS} h</th></tr></thead><tbody>",
        hidden = if v.nodes.is_empty() { " hidden" } else { "" }
    );
    for n in &v.nodes {
        let _ = write!(
            b,
            "<tr data-node=\"{name}\"><td><a href=\"/nodes/{link}\">{name}</a><td>{st}<td title=\"{since_full}\">{since}\
<td>{load:.2} / {cpus}<td>{mem}<td class=\"disk\">",
            name = esc(&n.node),
            link = url_enc(&n.node),
            st = badge(n.state.as_str()),
            since_full = n.since.to_rfc3339_secs(),
            since = ago(n.since),
            load = n.load1,
            cpus = n.cpus,
            mem = mem_cell(n.mem_available, n.mem_total),
        );
        disk_lines(
            &mut b,
            n.disks
                .iter()
                .map(|d| (d.mount.as_str(), d.available, d.total)),
        );
        let _ = write!(
            b,
            "<td>{}<td>{}<td>{}{}</tr>",
            n.clock_offset_ms
                .map(|o| format!("{o:.1} ms"))
                .unwrap_or_else(|| "—".into()),
            fingerprint_cell(n),
            n.runs,
            spark_cell(n),
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

/// Query of a node page and its JSON twin.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeQuery {
    /// `1h`, `1d` (default) or `7d`.
    range: Option<String>,
}

impl NodeQuery {
    fn range(&self) -> Result<ChartRange, ApiError> {
        self.range
            .as_deref()
            .map_or(Ok(ChartRange::default()), ChartRange::parse)
            .map_err(ApiError::BadRequest)
    }
}

async fn node_data(
    state: &AppState,
    name: String,
    range: ChartRange,
) -> Result<NodeDetail, ApiError> {
    let n = name.clone();
    let limits = state.health_limits;
    state
        .db
        .read(move |s| node_detail(s, &n, &limits, range))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no node `{name}` has reported")))
}

async fn node_json(
    _: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Json<NodeDetail>, ApiError> {
    Ok(Json(node_data(&state, name, q.range()?).await?))
}

/// The node page's charts: the range links, then load, memory and disks
/// over the range with the node's states shaded behind each, and each
/// filling disk's prediction drawn ahead to the day it fills.
fn charts_section(b: &mut String, node: &str, c: &NodeCharts) {
    let _ = write!(
        b,
        "<h2 id=\"charts\">Over the last {}</h2><p class=\"ranges\">",
        match c.range {
            ChartRange::Hour => "hour",
            ChartRange::Day => "day",
            ChartRange::Week => "week",
        }
    );
    for r in ChartRange::ALL {
        if r == c.range {
            let _ = write!(b, "<strong aria-current=\"true\">{}</strong> ", r.as_str());
        } else {
            let _ = write!(
                b,
                "<a href=\"/nodes/{}?range={r}#charts\">{r}</a> ",
                url_enc(node),
                r = r.as_str()
            );
        }
    }
    let _ = write!(
        b,
        "<span class=\"muted\">the highest value per {}; a gap is a time with no heartbeat; shading is the node's state</span></p>",
        plumb_model::chart::interval_label(c.step_ns)
    );
    if let Some(t) = c.states_from {
        let _ = write!(
            b,
            "<p class=\"note\">Only the newest {} state changes are shaded: the states before {} are not shown.</p>",
            crate::nodes::STATE_CAP,
            esc(&plumb_model::chart::moment(t))
        );
    }
    let labels: Vec<&'static str> = c.states.iter().map(|s| s.state.as_str()).collect();
    let bands: Vec<plumb_model::chart::Band<'_>> = c
        .states
        .iter()
        .zip(&labels)
        // Up is the normal state: only the others are shaded.
        .filter(|(s, _)| s.state != NodeState::Up)
        .map(|(s, l)| plumb_model::chart::Band {
            from: s.from,
            until: s.until,
            label: l,
        })
        .collect();
    let pts = |v: &[crate::nodes::ChartPoint]| -> Vec<(Timestamp, f64)> {
        v.iter().map(|p| (p.at, p.value)).collect()
    };
    let chart = |b: &mut String,
                 id: &str,
                 title: &str,
                 unit: &str,
                 top: Option<f64>,
                 series: &[plumb_model::chart::LineSeries<'_>],
                 until: Timestamp,
                 forecasts: &[plumb_model::chart::Forecast<'_>]| {
        b.push_str("<div class=\"chart-box\">");
        b.push_str(&plumb_model::chart::lines_svg(
            &plumb_model::chart::LineChart {
                id,
                title,
                unit,
                from: c.from,
                until,
                step_ns: c.step_ns,
                top,
                series,
                bands: &bands,
                forecasts,
            },
        ));
        b.push_str("</div>");
    };
    let load = pts(&c.load);
    chart(
        b,
        "load-chart",
        &format!("Load (1-minute average) of {node}"),
        "load",
        None,
        &[plumb_model::chart::LineSeries {
            name: "load",
            points: &load,
        }],
        c.until,
        &[],
    );
    let mem = pts(&c.memory);
    chart(
        b,
        "memory-chart",
        &format!(
            "Memory in use of {node}, {} in total",
            bytes(c.memory_total)
        ),
        "%",
        Some(100.0),
        &[plumb_model::chart::LineSeries {
            name: "memory used",
            points: &mem,
        }],
        c.until,
        &[],
    );
    let disk_pts: Vec<Vec<(Timestamp, f64)>> = c.disks.iter().map(|d| pts(&d.points)).collect();
    let series: Vec<plumb_model::chart::LineSeries<'_>> = c
        .disks
        .iter()
        .zip(&disk_pts)
        .map(|(d, p)| plumb_model::chart::LineSeries {
            name: &d.mount,
            points: p,
        })
        .collect();
    let labels: Vec<String> = c
        .disks
        .iter()
        .map(|d| {
            d.fills_at.map_or_else(String::new, |t| {
                format!("{} full {}", d.mount, &t.to_rfc3339_secs()[..10])
            })
        })
        .collect();
    let forecasts: Vec<plumb_model::chart::Forecast<'_>> = c
        .disks
        .iter()
        .zip(&labels)
        .filter_map(|(d, l)| {
            let at = d.fills_at?;
            let last = d.points.last()?;
            Some(plumb_model::chart::Forecast {
                from: (last.at, last.value),
                to: (at, 100.0),
                label: l,
            })
        })
        .collect();
    // Drawn ahead to the day the first disk fills, at most as far again as
    // the range (further, the line is cut at the edge and says the date).
    let ahead = forecasts
        .iter()
        .map(|f| f.to.0.as_nanos())
        .min()
        .map_or(c.until.as_nanos(), |t| {
            t.clamp(c.until.as_nanos(), c.until.as_nanos() + c.range.ns())
        });
    chart(
        b,
        "disk-chart",
        &format!("Disk use of {node}"),
        "%",
        Some(100.0),
        &series,
        Timestamp::from_nanos(ahead),
        &forecasts,
    );
}

async fn node_page(
    _: PageViewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Html<String>, PageError> {
    let v = node_data(&state, name, q.range()?).await?;
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
        mem_cell(r.memory.available, r.memory.total),
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
    if let Some(c) = &v.charts {
        charts_section(&mut b, &n.node, c);
    }
    b.push_str("<h2>Disks: free / size</h2><div class=\"disk\">");
    disk_lines(
        &mut b,
        r.disks
            .iter()
            .map(|d| (d.mount.as_str(), d.available, d.total)),
    );
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
    use plumb_model::node::{CpuLoad, DiskInfo, MemoryInfo, NodeReport};
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

    /// A thousand nodes with three disks, each with a full two hours of
    /// sparkline points and a software fingerprint in its stored report.
    fn thousand() -> NodesView {
        let now = Timestamp::from_nanos(1_800_000_000_000_000_000);
        let mut rows = Vec::new();
        for i in 0..1000usize {
            for k in 0..=(SPARK_HOURS * 6) {
                rows.push(plumb_store::samples::SparkRow {
                    node: format!("node-{i:05}"),
                    at: Timestamp::from_nanos(now.as_nanos() - k * 600_000_000_000),
                    load1: (i * 7 + k as usize) as f64 % 17.0 * 0.37,
                    // Disks fill slowly: a tenth of a percent an interval.
                    disk_pct: (i % 90) as f64 + k as f64 * 0.1,
                });
            }
        }
        rows.sort_by(|a, b| (&a.node, a.at).cmp(&(&b.node, b.at)));
        let fp = plumb_model::Fingerprint {
            os: plumb_model::OsInfo {
                id: "debian".into(),
                version: "12.8".into(),
                pretty: "Debian 12.8".into(),
                kernel: "6.1.0".into(),
                arch: "x86_64".into(),
            },
            ..Default::default()
        };
        let mut nodes: Vec<NodeListItem> = (0..1000)
            .map(|i| {
                let mut n = node(i);
                n.report.fingerprint = Some(plumb_model::node::NodeFingerprint {
                    hash: fp.content_hash(),
                    fingerprint: fp.clone(),
                });
                NodeListItem::from_view(n)
            })
            .collect();
        let (spark_from, slots) = spark_slots(now);
        add_sparks(&mut nodes, rows, spark_from, slots);
        NodesView {
            nodes,
            now,
            ranking: Vec::new(),
            spark_from,
            spark_step_ns: 600_000_000_000,
        }
    }

    #[test]
    fn a_thousand_nodes_with_sparklines_make_a_small_page_and_json() {
        let v = thousand();
        assert!(
            v.nodes.iter().all(|n| n.spark.as_ref().is_some_and(|s| s
                .load
                .iter()
                .all(Option::is_some)
                && s.load.len() == 13)),
            "every node's every interval filled"
        );
        let json = serde_json::to_vec(&v).unwrap();
        println!("nodes JSON at 1,000 nodes: {} KiB", json.len() / 1024);
        assert!(json.len() < 600 * 1024, "{} bytes", json.len());
        assert!(
            !String::from_utf8_lossy(&json).contains("Debian"),
            "no fingerprint in the list"
        );
        let body = nodes_body(&v);
        let page = layout("Nodes", Nav::Nodes, "", &body).0;
        println!(
            "nodes page at 1,000 nodes, 3 disks each: {} KiB",
            page.len() / 1024
        );
        // The bench's 1,000-node page (3 disks each) measured 862 KiB in
        // session 3, with a bar of two elements and a label per disk; 462
        // KiB before the sparklines.
        assert!(page.len() < 600 * 1024, "{} bytes", page.len());
        assert_eq!(page.matches("<td class=sp><svg").count(), 1000);
        assert_eq!(page.matches("class=l2").count(), 1000);
        assert_eq!(page.matches("<tr data-node=").count(), 1000);
        assert_eq!(page.matches("<td class=\"disk\">").count(), 1000);
        assert_eq!(page.matches("<i class=").count(), 3000);
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
            nodes: vec![NodeListItem::from_view(n)],
            now: Timestamp::from_nanos(0),
            ranking: ranking.clone(),
            spark_from: Timestamp::from_nanos(0),
            spark_step_ns: 600_000_000_000,
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
