//! `plumb nodes`: the fleet as the collector sees it; `plumb nodes show
//! NAME`: everything known about one node. Both read the collector, or with
//! `--local` (or no collector configured) the local store, alike.

use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target, get_json};
use anyhow::{Context, Result, bail};
use plumb_collector::bench::BenchEntry;
use plumb_collector::health::{HealthDetail, HealthView};
use plumb_collector::nodes::NodeDetail;
use plumb_http::Client;
use plumb_model::Timestamp;
use plumb_model::health::Level;
use plumb_model::node::{NodeStatus, NodeTransition};
use plumb_model::text::Cell;
use plumb_store::prelude::*;
use std::process::ExitCode;

/// Arguments of `plumb nodes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Without a collector, the local store is read (a collector's own
    /// store, on its machine).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the recorded state transitions (of NODE, or of every node)
    /// instead of the current states.
    #[arg(long, value_name = "NODE", num_args = 0..=1, default_missing_value = "")]
    pub history: Option<String>,
    /// Print the nodes best first by their latest benchmark
    /// (`plumb bench-node`): one or more of cpu, mem, disk, net, separated
    /// by commas; later keys break ties.
    #[arg(long, value_name = "KEYS", conflicts_with = "history")]
    pub rank: Option<String>,
    #[command(subcommand)]
    pub what: Option<What>,
}

/// `plumb nodes` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Everything known about one node: state and since when, load, memory,
    /// disks, fingerprint (and whether it differs from its group), runs in
    /// progress, the history of its state changes. Reads the collector, or
    /// with `--local` (or no collector configured) the local store, as on
    /// the collector's own machine.
    Show {
        /// The node's name.
        name: String,
    },
    /// Hardware health: without NODE, the fleet with nodes that have
    /// something abnormal (a failing disk, memory errors, throttling, OOM
    /// kills, I/O errors, pressure) first; with NODE, its current values,
    /// the sources its agent cannot read and why, and its latest readings.
    Health {
        /// One node's name.
        node: Option<String>,
    },
}

/// The nodes, from the collector.
pub fn fetch(client: &Client) -> Result<Vec<NodeStatus>> {
    get_json(client, "/api/v1/nodes")
}

fn ago(t: Timestamp) -> String {
    let ns = (Timestamp::now().as_nanos() - t.as_nanos()).max(0);
    format!("{} ago", plumb_model::display::duration(ns))
}

fn bytes(n: u64) -> String {
    plumb_model::display::size(n)
}

/// Prints the nodes as a table.
pub fn print_table(nodes: &[NodeStatus]) {
    outln!(
        "{:<20} {:<8} {:<10} {:<12} {:<16} {:<18} {:>5} {:>12}",
        "NODE",
        "STATE",
        "SINCE",
        "HEARTBEAT",
        "LOAD 1/5/15",
        "DISK FREE (least)",
        "RUNS",
        "SPOOL DROPS"
    );
    for n in nodes {
        let r = &n.report;
        let load = format!("{:.2}/{:.2}/{:.2}", r.cpu.load1, r.cpu.load5, r.cpu.load15);
        let disk = r
            .disks
            .iter()
            .min_by_key(|d| d.available)
            .map(|d| format!("{} {}", bytes(d.available), d.mount))
            .unwrap_or_else(|| "-".into());
        let drops = if r.spool.dropped_runs == 0 {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                r.spool.dropped_runs,
                bytes(r.spool.dropped_bytes)
            )
        };
        outln!(
            "{:<20} {:<8} {:<10} {:<12} {:<16} {:<18} {:>5} {:>12}",
            Cell(&n.node),
            n.state.as_str(),
            ago(n.since),
            ago(n.last_heartbeat),
            load,
            Cell(&disk),
            r.runs_in_progress,
            drops
        );
    }
    if nodes.is_empty() {
        outln!("(no nodes yet: start `plumb agent --collector URL` on each node)");
    }
}

fn print_history(v: &[NodeTransition]) {
    outln!(
        "{:<24} {:<20} {:<8} {:<8} {:>6}",
        "TIME",
        "NODE",
        "FROM",
        "TO",
        "PHI"
    );
    for t in v {
        outln!(
            "{:<24} {:<20} {:<8} {:<8} {:>6.1}",
            t.at.to_rfc3339_secs(),
            Cell(&t.node),
            t.from.map_or("-", |s| s.as_str()),
            t.to.as_str(),
            t.phi
        );
    }
}

fn local_store(cfg: &Config) -> Result<plumb_store::Store> {
    plumb_store::Store::open_read_only(&cfg.home)
        .with_context(|| format!("cannot open the store in {}", cfg.home.display()))
}

/// One node, from the collector or, without one, the local store.
fn detail(cfg: &Config, target: &Target, name: &str) -> Result<NodeDetail> {
    let Target::Collector(client) = target else {
        let store = local_store(cfg)?;
        return plumb_collector::nodes::node_detail(&store, name, &health_limits(cfg), Default::default())?.with_context(|| {
            format!(
                "no node `{name}` has reported to the store in {} (is it a collector's store? `plumb nodes` lists the known ones)",
                cfg.home.display()
            )
        });
    };
    let path = format!("/api/v1/nodes/{}", plumb_http::encode_segment(name));
    match get_json(client, &path) {
        Err(e)
            if e.downcast_ref::<plumb_http::Error>()
                .is_some_and(|e| e.status() == Some(404)) =>
        {
            bail!(
                "no node `{name}` has reported to {} (`plumb nodes` lists the known ones)",
                client.base()
            )
        }
        other => other,
    }
}

fn pct(avail: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.0}%", avail as f64 * 100.0 / total as f64)
    }
}

/// Prints a node's history (the node page's charts): on a terminal a
/// Unicode sparkline per series, scaled to its highest value; into a pipe
/// or with NO_COLOR one line per interval with plain numbers (`-` for an
/// interval without heartbeats), as `plumb ls --chart` does.
pub fn print_charts(c: &plumb_collector::nodes::NodeCharts, pretty: bool) {
    use plumb_model::chart::{interval_label, spark_text};
    use std::collections::BTreeMap;
    outln!(
        "\nHISTORY: the highest per {} from {} to {} UTC",
        interval_label(c.step_ns),
        c.from.to_rfc3339_secs(),
        c.until.to_rfc3339_secs()
    );
    let mut names = vec!["LOAD".to_string(), "MEM%".to_string()];
    let mut series = vec![&c.load, &c.memory];
    for d in &c.disks {
        names.push(format!("DISK% {}", Cell(&d.mount)));
        series.push(&d.points);
    }
    // Every interval any series has, oldest first; `None` where one has
    // no point.
    let mut rows: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    for (k, s) in series.iter().enumerate() {
        for p in s.iter() {
            rows.entry(p.at.as_nanos())
                .or_insert_with(|| vec![None; series.len()])[k] = Some(p.value);
        }
    }
    if rows.is_empty() {
        outln!("  (no heartbeats in this range)");
        return;
    }
    if !pretty {
        let mut head = String::from("START               ");
        for n in &names {
            head.push_str(&format!("  {n:>6}"));
        }
        outln!("{head}");
        for (at, vals) in &rows {
            let mut line = Timestamp::from_nanos(*at).to_rfc3339_secs();
            for (v, n) in vals.iter().zip(&names) {
                let w = n.chars().count().max(6);
                match v {
                    Some(v) => line.push_str(&format!("  {v:>w$.2}")),
                    None => line.push_str(&format!("  {:>w$}", "-")),
                }
            }
            outln!("{line}");
        }
        return;
    }
    // Every interval of the range, so a gap shows as a space.
    let (from, step) = (
        c.from.as_nanos() - c.from.as_nanos().rem_euclid(c.step_ns),
        c.step_ns.max(1),
    );
    let slots = ((c.until.as_nanos() - from) / step + 1).clamp(1, 2000) as usize;
    for (k, n) in names.iter().enumerate() {
        let mut v = vec![0u64; slots];
        let mut hi: f64 = 0.0;
        for (at, vals) in &rows {
            if let Some(x) = vals[k] {
                let i = ((at - from) / step) as usize;
                if i < slots {
                    // Hundredths, at least 1 so a zero still shows as a point.
                    v[i] = ((x * 100.0).round() as u64).max(1);
                    hi = hi.max(x);
                }
            }
        }
        // A week is 1,008 intervals: shown as at most 120 columns, each the
        // highest of its intervals.
        let per = slots.div_ceil(120);
        let cols: Vec<u64> = v
            .chunks(per)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        outln!("  {n:<14} {} max {hi:.2}", spark_text(&cols));
    }
}

/// Prints one node for people.
pub fn print_detail(d: &NodeDetail) {
    let n = &d.node;
    let r = &n.report;
    let kv = |k: &str, v: String| outln!("{k:<18} {v}");
    kv("node", Cell(&n.node).to_string());
    kv(
        "state",
        format!(
            "{} since {} ({})",
            n.state.as_str(),
            n.since.to_rfc3339_secs(),
            ago(n.since)
        ),
    );
    kv(
        "last heartbeat",
        format!(
            "{} ({})",
            n.last_heartbeat.to_rfc3339_secs(),
            ago(n.last_heartbeat)
        ),
    );
    kv(
        "load 1/5/15",
        format!(
            "{:.2} {:.2} {:.2} on {} CPUs",
            r.cpu.load1, r.cpu.load5, r.cpu.load15, r.cpu.cpus
        ),
    );
    kv(
        "memory",
        if r.memory.total == 0 {
            "-".into()
        } else {
            format!(
                "{} free of {} ({})",
                bytes(r.memory.available),
                bytes(r.memory.total),
                pct(r.memory.available, r.memory.total)
            )
        },
    );
    kv(
        "uptime",
        plumb_model::display::duration((r.uptime_s * 1e9) as i64),
    );
    let labels: Vec<String> = r
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", Cell(k), Cell(v)))
        .collect();
    kv(
        "labels",
        if labels.is_empty() {
            "-".into()
        } else {
            labels.join(",")
        },
    );
    kv(
        "fingerprint",
        match &n.fingerprint {
            None => "- (not reported)".into(),
            Some(fp) if n.fingerprint_differs => format!(
                "{fp}  DIFFERS from most nodes labelled {}",
                if n.group.is_empty() {
                    "(none)"
                } else {
                    &n.group
                }
            ),
            Some(fp) => format!("{fp}  (same as its group)"),
        },
    );
    kv(
        "clock offset",
        n.clock_offset_ms
            .map_or_else(|| "- (not measured)".into(), |o| format!("{o:.1} ms")),
    );
    kv(
        "spool",
        format!(
            "{} files, {}; dropped {} runs ({})",
            r.spool.files,
            bytes(r.spool.bytes),
            r.spool.dropped_runs,
            bytes(r.spool.dropped_bytes)
        ),
    );
    if !d.differs_in.is_empty() {
        outln!("\nSOFTWARE THAT DIFFERS FROM ITS GROUP (see `plumb env drift`)");
        for x in &d.differs_in {
            outln!(
                "  {:<32} {}  (most have {})",
                Cell(&x.component),
                Cell(x.version.as_deref().unwrap_or("absent")),
                Cell(x.majority.as_deref().unwrap_or("it absent, or no majority"))
            );
        }
    }
    if !d.env_changes.is_empty() {
        outln!("\nSOFTWARE CHANGES (newest first)");
        for c in &d.env_changes {
            outln!(
                "  {}  {}",
                c.at,
                Cell(&plumb_collector::env::describe_change(c))
            );
        }
    }
    outln!("\nDISKS");
    if r.disks.is_empty() {
        outln!("  (none reported)");
    }
    for d in &r.disks {
        outln!(
            "  {:<24} {:>8} free of {:>8} ({:>4})  {} {}",
            Cell(&d.mount),
            bytes(d.available),
            bytes(d.total),
            pct(d.available, d.total),
            Cell(&d.fs_type),
            Cell(&d.device)
        );
    }
    outln!(
        "\nRUNS IN PROGRESS: {} by the node's last report, {} in the store",
        r.runs_in_progress,
        d.running.len()
    );
    for run in &d.running {
        outln!(
            "  {}  {:<24} started {} ({})",
            run.id,
            Cell(&run.name),
            run.started.to_rfc3339_secs(),
            ago(run.started)
        );
    }
    outln!("\nSTATE HISTORY (oldest first)");
    if d.transitions.is_empty() {
        outln!("  (no state changes recorded)");
    }
    for t in &d.transitions {
        outln!(
            "  {:<22} {:<8} -> {:<8} phi {:.1}",
            t.at.to_rfc3339_secs(),
            t.from.map_or("-", |s| s.as_str()),
            t.to.as_str(),
            t.phi
        );
    }
}

fn health_limits(cfg: &Config) -> plumb_model::health::FindingLimits {
    plumb_model::health::FindingLimits {
        memory_pressure: cfg.alerts.rules.pressure.memory_above,
        io_pressure: cfg.alerts.rules.pressure.io_above,
    }
}

fn health_main(cfg: &Config, target: &Target, node: Option<&str>, json: bool) -> Result<ExitCode> {
    let limits = health_limits(cfg);
    let Some(name) = node else {
        let fleet: Vec<HealthView> = match target {
            Target::Collector(client) => get_json(client, "/api/v1/nodes/health")?,
            _ => {
                if !cfg.home.join(plumb_store::DB_FILE).exists() {
                    eprintln!(
                        "plumb: no node has reported to the store in {} (nodes report to a collector with `plumb agent --collector URL`; read one with --collector URL)",
                        cfg.home.display()
                    );
                    Vec::new()
                } else {
                    plumb_collector::health::fleet_health(&local_store(cfg)?, &limits)?
                }
            }
        };
        if json {
            outln!("{}", serde_json::to_string_pretty(&fleet)?);
        } else {
            print_fleet_health(&fleet);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let d: HealthDetail = match target {
        Target::Collector(client) => {
            let path = format!("/api/v1/nodes/{}/health", plumb_http::encode_segment(name));
            match get_json(client, &path) {
                Err(e)
                    if e.downcast_ref::<plumb_http::Error>()
                        .is_some_and(|e| e.status() == Some(404)) =>
                {
                    bail!(
                        "no node `{name}` has reported to {} (`plumb nodes health` lists the known ones)",
                        client.base()
                    )
                }
                other => other?,
            }
        }
        _ => {
            if !cfg.home.join(plumb_store::DB_FILE).exists() {
                bail!(
                    "no node `{name}` has reported to the store in {} (there is none yet; nodes report to a collector with `plumb agent --collector URL`; read one with --collector URL)",
                    cfg.home.display()
                );
            }
            let store = local_store(cfg)?;
            plumb_collector::health::node_health(
                &store,
                name,
                plumb_collector::health::HISTORY,
                &limits,
            )?
            .with_context(|| {
                format!(
                    "no node `{name}` has reported to the store in {} (`plumb nodes health` lists the known ones)",
                    cfg.home.display()
                )
            })?
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print_node_health(&d);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the fleet's health, abnormal nodes first (as given).
pub fn print_fleet_health(v: &[HealthView]) {
    outln!(
        "{:<20} {:<8} {:<9} {:>11}  {}",
        "NODE",
        "STATE",
        "HEALTH",
        "UNAVAILABLE",
        "FINDINGS"
    );
    for n in v {
        let health = match (n.worst(), &n.health) {
            (_, None) => "-",
            (Some(Level::Critical), _) => "CRITICAL",
            (Some(Level::Warning), _) => "warning",
            (None, _) => "ok",
        };
        let findings = if n.health.is_none() {
            "(no health reported: an older agent, or --no-health)".to_string()
        } else {
            n.findings
                .iter()
                .map(|f| f.text.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        outln!(
            "{:<20} {:<8} {:<9} {:>11}  {}",
            Cell(&n.node),
            n.state.as_str(),
            health,
            n.unavailable.len(),
            Cell(&findings)
        );
    }
    if v.is_empty() {
        outln!("(no nodes yet: start `plumb agent --collector URL` on each node)");
    }
}

/// Prints one node's health for people.
pub fn print_node_health(d: &HealthDetail) {
    let c = &d.current;
    outln!("{:<18} {}", "node", Cell(&c.node));
    outln!("{:<18} {}", "state", c.state.as_str());
    let Some(h) = &c.health else {
        outln!(
            "\n(no health reported: the node's agent is older than health reading, or runs with --no-health)"
        );
        return;
    };
    if let Some(at) = c.at {
        outln!("{:<18} {} ({})", "read", at.to_rfc3339_secs(), ago(at));
    }
    outln!("\nFINDINGS");
    if c.findings.is_empty() {
        outln!("  nothing abnormal");
    }
    for f in &c.findings {
        let level = if f.level == Level::Critical {
            "CRITICAL"
        } else {
            "warning"
        };
        outln!("  {level:<8} {:<14} {}", f.source, Cell(&f.text));
    }
    outln!("\nVALUES");
    for (k, v) in plumb_model::health::value_rows(h) {
        outln!("  {:<24} {}", Cell(&k).to_string(), Cell(&v));
    }
    if !c.unavailable.is_empty() {
        outln!("\nUNAVAILABLE");
        for u in &c.unavailable {
            outln!("  {:<14} {}", u.source, Cell(&u.reason));
        }
    }
    if d.history.len() > 1 {
        outln!("\nLATEST READINGS (newest first)");
        outln!(
            "  {:<22} {:>5} {:>11} {:>8} {:>6} {:>8} {:>8} {:>6} {:>6}",
            "TIME",
            "OOM",
            "MEM CE/UE",
            "THROTTLE",
            "IOERR",
            "MEM PSI",
            "IO PSI",
            "MAX C",
            "SMART!"
        );
        let o = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let p = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}%"));
        for x in d.history.iter().rev().take(20) {
            outln!(
                "  {:<22} {:>5} {:>11} {:>8} {:>6} {:>8} {:>8} {:>6} {:>6}",
                x.at.to_rfc3339_secs(),
                o(x.oom_kills),
                format!("{}/{}", o(x.memory_corrected), o(x.memory_uncorrected)),
                o(x.throttle_events),
                o(x.io_errors),
                p(x.memory_pressure),
                p(x.io_pressure),
                x.max_temperature
                    .map_or("-".to_string(), |v| format!("{v:.0}")),
                o(x.smart_failing)
            );
        }
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let target = args.source.target(&cfg)?;
    if let Some(What::Health { node }) = &args.what {
        return health_main(&cfg, &target, node.as_deref(), args.json);
    }
    if let Some(keys) = &args.rank {
        return rank_main(&cfg, &target, keys, args.json);
    }
    if let Some(What::Show { name }) = &args.what {
        let d = detail(&cfg, &target, name)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&d)?);
        } else {
            print_detail(&d);
            if let Some(c) = &d.charts {
                use std::io::IsTerminal as _;
                let pretty = crate::out::raw_stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
                print_charts(c, pretty);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Target::Collector(client) = target else {
        // Without a collector, the local store: the collector's own store
        // on its machine, or an empty one on a node.
        // A node's home may hold no store yet: then no node has reported.
        if !cfg.home.join(plumb_store::DB_FILE).exists() {
            eprintln!(
                "plumb: no node has reported to the store in {} (there is none yet; nodes report to a collector with `plumb agent --collector URL`; read one with --collector URL)",
                cfg.home.display()
            );
            if args.json {
                outln!("[]");
            } else if args.history.is_some() {
                print_history(&[]);
            } else {
                print_table(&[]);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let store = local_store(&cfg)?;
        if let Some(node) = args.history {
            let v = store.node_transitions((!node.is_empty()).then_some(node.as_str()), 1000)?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_history(&v);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let nodes = plumb_collector::nodes::node_statuses(&store)?;
        if nodes.is_empty() {
            eprintln!(
                "plumb: no node has reported to the store in {} (nodes report to a collector with `plumb agent --collector URL`; read one with --collector URL)",
                cfg.home.display()
            );
        }
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&nodes)?);
        } else {
            print_table(&nodes);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(node) = args.history {
        let mut req = client.get("/api/v1/nodes/transitions");
        if !node.is_empty() {
            req = req.query("node", node);
        }
        let resp = req.send()?;
        let v: Vec<NodeTransition> = resp.json()?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_history(&v);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = fetch(&client)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print_table(&nodes);
    }
    Ok(ExitCode::SUCCESS)
}

/// `plumb nodes --rank KEYS`: every node's latest benchmark, best first.
fn rank_main(cfg: &Config, target: &Target, keys: &str, json: bool) -> Result<ExitCode> {
    let parsed = plumb_model::bench::parse_rank_keys(keys)
        .map_err(|e| anyhow::anyhow!("--rank {keys}: {e}"))?;
    let entries: Vec<BenchEntry> = match target {
        Target::Collector(client) => {
            let req = client
                .get("/api/v1/nodes/bench")
                .query("rank", parsed.join(","));
            let resp = req.send()?;
            serde_json::from_slice(&resp.body).map_err(|e| {
                anyhow::Error::from(resp.decode_error(format!("{e} (is it a plumb collector?)")))
            })?
        }
        Target::Local => {
            if !cfg.home.join(plumb_store::DB_FILE).exists() {
                Vec::new()
            } else {
                // Opened for writing when it can be, so a store made by an
                // older plumb gets its benchmark table; else read-only.
                let store = match plumb_store::Store::open(&cfg.home) {
                    Ok(s) => s,
                    Err(_) => local_store(cfg)?,
                };
                plumb_collector::bench::latest_benches(&store, &parsed).with_context(|| {
                    format!(
                        "cannot read node benchmarks from the store in {}",
                        cfg.home.display()
                    )
                })?
            }
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_rank(&entries, &parsed);
    Ok(ExitCode::SUCCESS)
}

/// Prints a ranking: the keys' scores and the main figures.
pub fn print_rank(entries: &[BenchEntry], keys: &[String]) {
    use crate::cmd::bench_node::number;
    outln!(
        "{:>4} {:<20} {:>12} {:>12} {:>12} {:>12} {:<10}",
        "RANK",
        "NODE",
        "CPU",
        "MEM MB/s",
        "DISK",
        "NET",
        "TAKEN"
    );
    for (i, e) in entries.iter().enumerate() {
        let score = |k: &str| e.bench.score(k).map_or_else(|| "-".into(), number);
        outln!(
            "{:>4} {:<20} {:>12} {:>12} {:>12} {:>12} {:<10}",
            i + 1,
            Cell(&e.node),
            score("cpu"),
            score("mem"),
            score("disk"),
            score("net"),
            ago(e.bench.taken_at)
        );
    }
    if entries.is_empty() {
        outln!(
            "(no node has sent a benchmark yet: run `plumb bench-node --collector URL`, or leave `plumb agent` running)"
        );
    } else {
        outln!(
            "ranked by {}; CPU: geometric mean of the four CPU figures (Mops/s, Mflop/s), DISK: of write, read MB/s and random IOPS, NET: upload MB/s per ms of round trip",
            keys.join(", then ")
        );
    }
}
