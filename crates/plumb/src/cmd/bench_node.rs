//! `plumb bench-node`: measure this node (CPU, memory bandwidth, disk I/O
//! at a path, the network to a collector) and, with `--collector`, send the
//! result to the collector, which keeps each node's history
//! (`plumb nodes --rank`, the dashboard, the `node_bench_drop` alert).

use crate::config::Config;
use crate::out::outln;
use crate::target::ship_config;
use anyhow::{Context, Result};
use plumb_agent::bench::{BenchOptions, run, send};
use plumb_model::bench::NodeBench;
use plumb_model::text::Cell;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plumb bench-node`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Measure sequential and random disk I/O in this directory (a test
    /// file is written there and removed).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Also measure the round trip and throughput to this collector and
    /// send it the result (with the agent token of PLUMB_TOKEN or
    /// plumb.toml).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// About 1 s instead of about 10 s: fewer, shorter repetitions (less
    /// trustworthy; compared only with other quick results).
    #[arg(long)]
    pub quick: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let client = match &args.collector {
        Some(url) => Some(
            plumb_ship::Client::new(&ship_config(&cfg, url))
                .with_context(|| format!("--collector {url}"))?,
        ),
        None => None,
    };
    let node = args.name.unwrap_or_else(plumb_record::host::hostname);
    let opts = BenchOptions {
        node,
        path: args.path,
        collector: client.clone(),
        quick: args.quick,
    };
    let bench = run(&opts)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&bench).expect("bench serializes")
        );
    } else {
        print(&bench);
    }
    if let Some(c) = &client {
        send(c, &bench).with_context(|| {
            format!(
                "the benchmark ran, but the collector {} did not take the result",
                c.base()
            )
        })?;
        if !args.json {
            outln!("sent to {}", c.base());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a result for people: one figure a line with its unit and spread.
pub fn print(b: &NodeBench) {
    outln!(
        "{}: {}benchmark in {:.1} s on {} CPUs ({} of memory for the triad)",
        Cell(&b.node),
        if b.quick { "quick " } else { "" },
        b.wall_s,
        b.cpus,
        plumb_model::display::size(b.mem_bytes)
    );
    print_figures(b);
    if let Some(d) = &b.disk {
        outln!(
            "disk at {}: {}",
            Cell(&d.path),
            match &d.note {
                Some(n) => n.clone(),
                None if d.direct_io => "reads bypassed the page cache (O_DIRECT)".into(),
                None if d.cache_dropped => {
                    "the file's page cache was dropped before each read".into()
                }
                None => "the page cache could not be dropped before reading".into(),
            }
        );
    }
    if let Some(n) = &b.net {
        outln!("network to {}", Cell(&n.collector));
    }
}

/// The figures as a table (also used by `plumb show`).
pub fn print_figures(b: &NodeBench) {
    outln!(
        "  {:<32} {:>12} {:<8} {:>7}",
        "FIGURE",
        "VALUE",
        "UNIT",
        "SPREAD"
    );
    for f in b.figures() {
        outln!(
            "  {:<32} {:>12} {:<8} {:>6.1}%",
            f.label,
            number(f.figure.value),
            f.unit,
            f.figure.spread_pct
        );
    }
}

/// A figure with as many decimals as it needs.
pub fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
