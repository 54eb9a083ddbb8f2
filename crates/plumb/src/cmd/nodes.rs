//! `plumb nodes`: the fleet as the collector sees it.

use crate::cmd::agent::client_config;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use plumb_model::Timestamp;
use plumb_model::node::{NodeStatus, NodeTransition};
use plumb_ship::Client;
use std::process::ExitCode;

/// Arguments of `plumb nodes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The collector's URL (default: `collector =` or PLUMB_COLLECTOR).
    #[arg(long)]
    pub collector: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the recorded state transitions (of NODE, or of every node)
    /// instead of the current states.
    #[arg(long, value_name = "NODE", num_args = 0..=1, default_missing_value = "")]
    pub history: Option<String>,
}

/// The nodes, from the collector.
pub fn fetch(client: &Client) -> Result<Vec<NodeStatus>> {
    let reply = client.get("/api/v1/nodes")?;
    serde_json::from_str(&reply.body).with_context(|| {
        format!(
            "unexpected answer from {}/api/v1/nodes (is it a plumb collector?)",
            client.base()
        )
    })
}

fn ago(t: Timestamp) -> String {
    let ns = (Timestamp::now().as_nanos() - t.as_nanos()).max(0);
    format!("{} ago", crate::cmd::query::human_duration(ns))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Prints the nodes as a table.
pub fn print_table(nodes: &[NodeStatus]) {
    println!(
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
        println!(
            "{:<20} {:<8} {:<10} {:<12} {:<16} {:<18} {:>5} {:>12}",
            n.node,
            n.state.as_str(),
            ago(n.since),
            ago(n.last_heartbeat),
            load,
            disk,
            r.runs_in_progress,
            drops
        );
    }
    if nodes.is_empty() {
        println!("(no nodes yet: start `plumb agent --collector URL` on each node)");
    }
}

fn print_history(v: &[NodeTransition]) {
    println!(
        "{:<24} {:<20} {:<8} {:<8} {:>6}",
        "TIME", "NODE", "FROM", "TO", "PHI"
    );
    for t in v {
        println!(
            "{:<24} {:<20} {:<8} {:<8} {:>6.1}",
            t.at.to_rfc3339_secs(),
            t.node,
            t.from.map_or("-", |s| s.as_str()),
            t.to.as_str(),
            t.phi
        );
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let Some(url) = args.collector.clone().or_else(|| cfg.collector.clone()) else {
        bail!(
            "no collector: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml"
        );
    };
    let client = Client::new(&client_config(&cfg, &url))?;
    if let Some(node) = args.history {
        let path = if node.is_empty() {
            "/api/v1/nodes/transitions".to_string()
        } else {
            format!("/api/v1/nodes/transitions?node={node}")
        };
        let reply = client.get(&path)?;
        let v: Vec<NodeTransition> = serde_json::from_str(&reply.body)
            .with_context(|| format!("unexpected answer from {url}{path}"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_history(&v);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = fetch(&client)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print_table(&nodes);
    }
    Ok(ExitCode::SUCCESS)
}
