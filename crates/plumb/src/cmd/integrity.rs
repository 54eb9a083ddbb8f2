//! `plumb integrity`: runs of one name given the same inputs that produced
//! different outputs, with how their environments differ.

use crate::config::Config;
use crate::out::{out, outln, stdout};
use crate::target::{SourceArgs, Target};
use anyhow::Result;
use plumb_model::text::Cell;
use plumb_store::integrity::{Flagged, flagged};
use std::io::Write as _;
use std::process::ExitCode;

/// Arguments of `plumb integrity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only runs with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// How many of the latest runs to compare.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub last: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> Result<ExitCode> {
    if a.last == 0 {
        anyhow::bail!("--last 0: compare at least one run");
    }
    let cfg = Config::load()?;
    let flagged = match a.source.target(&cfg)? {
        Target::Collector(client) => {
            let store = plumb_collector::client::RemoteStore::new(client.into());
            flagged(&store, a.name.as_deref(), a.last)?
        }
        Target::Local => {
            let store = crate::cmd::query::open_store(&cfg)?;
            flagged(&store, a.name.as_deref(), a.last)?
        }
    };
    if a.json {
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &flagged)?;
        writeln!(o)?;
    } else {
        print(&flagged);
    }
    Ok(if flagged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

fn short(h: &Option<String>) -> String {
    match h {
        Some(h) => h[..h.len().min(12)].to_string(),
        None => "(not produced)".into(),
    }
}

fn print(flagged: &[Flagged]) {
    if flagged.is_empty() {
        outln!("no runs with the same inputs and different outputs");
        return;
    }
    for (i, f) in flagged.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        let n: usize = f.finding.outcomes.iter().map(|o| o.runs.len()).sum();
        outln!(
            "{}: same inputs, different outputs ({} outcomes in {n} runs)",
            Cell(&f.finding.name),
            f.finding.outcomes.len()
        );
        for (path, hash) in &f.finding.inputs {
            outln!("  input  {}  {}", Cell(path), &hash[..hash.len().min(12)]);
        }
        for (k, o) in f.finding.outcomes.iter().enumerate() {
            let outputs: Vec<String> = o
                .outputs
                .iter()
                .map(|(p, h)| format!("{} {}", p, short(h)))
                .collect();
            outln!(
                "  outcome {}: {} ({} run{})",
                k + 1,
                Cell(&outputs.join(", ")),
                o.runs.len(),
                if o.runs.len() == 1 { "" } else { "s" }
            );
            for r in o.runs.iter().take(5) {
                outln!("    {}  {}  {}", r.id, Cell(&r.host), r.started);
            }
            if o.runs.len() > 5 {
                outln!("    ... and {} more", o.runs.len() - 5);
            }
        }
        let (x, y) = (
            f.finding.outcomes[0].runs[0].id,
            f.finding.outcomes[1].runs[0].id,
        );
        if f.environment.is_empty() {
            outln!(
                "  environments of {} and {} are the same: look at `plumb diff {x} {y}` (arguments, variables) or nondeterminism",
                short_id(x),
                short_id(y)
            );
        } else {
            outln!(
                "  environments of {} and {} differ:",
                short_id(x),
                short_id(y)
            );
            let mut s = String::new();
            plumb_model::diff::render_differences(&mut s, &f.environment);
            for line in s.lines().filter(|l| !l.is_empty()) {
                out!("  {}\n", plumb_model::text::escape_controls(line));
            }
        }
    }
}

fn short_id(id: plumb_model::Uuid) -> String {
    id.to_string()[..18].to_string()
}
