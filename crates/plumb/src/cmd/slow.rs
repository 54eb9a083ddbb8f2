//! `plumb slow`: running runs that take longer than usual for their name,
//! from the local store or a collector; `plumb slow --name NAME` prints the
//! name's duration statistics.

use crate::cmd::query::open_store;
use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target, get_json};
use anyhow::Result;
use plumb_model::Timestamp;
use plumb_model::display::duration as human_duration;
use plumb_model::insights::{DurationStats, SlowRun, SlowRuns};
use plumb_model::text::Cell;
use plumb_store::prelude::*;
use std::process::ExitCode;

/// Arguments of `plumb slow`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print the p50/p95 duration of this run name instead.
    #[arg(long)]
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

enum Answer {
    Slow(Vec<SlowRun>),
    Stats(DurationStats),
}

fn query(args: &Args) -> Result<Answer> {
    let cfg = Config::load()?;
    match args.source.target(&cfg)? {
        Target::Local => {
            let store = open_store(&cfg)?;
            let slow = &cfg.insights.slow;
            Ok(match &args.name {
                Some(n) => Answer::Stats(store.duration_stats(n, slow.window)?),
                None => Answer::Slow(store.slow_runs(Timestamp::now(), slow)?),
            })
        }
        Target::Collector(client) => Ok(match &args.name {
            Some(n) => Answer::Stats(get_json(
                &client,
                &format!("/api/v1/durations/{}", plumb_http::encode_segment(n)),
            )?),
            None => Answer::Slow(get_json::<SlowRuns>(&client, "/api/v1/runs/slow")?.runs),
        }),
    }
}

fn secs(s: f64) -> String {
    human_duration((s * 1e9) as i64)
}

/// Prints slow runs as a table.
pub fn print_table(runs: &[SlowRun], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<36} {:<20} {:<16} {:>9} {:>8} {:>8} {:>7}",
        "RUN", "NAME", "HOST", "ELAPSED", "P50", "P95", "FACTOR"
    )?;
    for r in runs {
        writeln!(
            out,
            "{:<36} {:<20} {:<16} {:>9} {:>8} {:>8} {:>6.1}x",
            r.run_id,
            Cell(&r.name),
            Cell(&r.host),
            secs(r.elapsed_s),
            secs(r.p50_s),
            secs(r.p95_s),
            r.factor
        )?;
    }
    if runs.is_empty() {
        writeln!(out, "(no run is taking longer than usual)")?;
    }
    Ok(())
}

pub fn main(args: Args) -> Result<ExitCode> {
    match query(&args)? {
        Answer::Slow(runs) => {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&SlowRuns { runs })?);
            } else {
                print_table(&runs, &mut crate::out::stdout())?;
            }
        }
        Answer::Stats(s) => {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                outln!(
                    "{}: {} successful runs, p50 {}, p95 {}",
                    s.name,
                    s.n,
                    secs(s.p50_s),
                    secs(s.p95_s)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
