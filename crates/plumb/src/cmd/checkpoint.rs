//! `plumb checkpoint ls|verify|show DIR`: look into a checkpoint directory
//! written by plumb-checkpoint (Rust) or the `plumb` Python package. Read
//! only: never takes the writer's lock, never changes a file.

use anyhow::{Context, bail};
use plumb_checkpoint::{Entry, inspect, read, rfc3339};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Inspect checkpoint directories.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// List every checkpoint: sequence, time (UTC), size and validity.
    Ls {
        /// The checkpoint directory.
        dir: PathBuf,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every checkpoint; exit 1 and name each corrupt file if any.
    Verify {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Print the newest valid checkpoint's state (JSON pretty-printed, other
    /// encodings as raw bytes) on stdout; what it is goes to stderr.
    Show {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Show this sequence number instead of the newest valid one.
        #[arg(long)]
        seq: Option<u64>,
    },
}

/// Runs `plumb checkpoint`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Ls { dir, json } => ls(&dir, json),
        Cmd::Verify { dir } => verify(&dir),
        Cmd::Show { dir, seq } => show(&dir, seq),
    }
}

fn entries(dir: &Path) -> anyhow::Result<Vec<Entry>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(inspect(dir)?)
}

fn ls(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let entries = entries(dir)?;
    let mut out = crate::out::stdout();
    if json {
        for e in &entries {
            let line = match &e.check {
                Ok(info) => serde_json::json!({
                    "seq": e.seq, "time": info.time_rfc3339(), "time_ns": info.time_ns,
                    "size": e.size, "encoding": info.encoding, "valid": true,
                    "path": e.path,
                }),
                Err(problem) => serde_json::json!({
                    "seq": e.seq, "size": e.size, "valid": false,
                    "problem": problem.to_string(), "path": e.path,
                }),
            };
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        writeln!(out, "no checkpoints in {}", dir.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:>8}  {:<30}  {:>12}  {:<8}  STATUS",
        "SEQ", "TIME (UTC)", "SIZE", "ENCODING"
    )?;
    for e in &entries {
        match &e.check {
            Ok(info) => writeln!(
                out,
                "{:>8}  {:<30}  {:>12}  {:<8}  ok",
                e.seq,
                rfc3339(info.time_ns),
                e.size,
                info.encoding
            )?,
            Err(problem) => writeln!(
                out,
                "{:>8}  {:<30}  {:>12}  {:<8}  {problem}",
                e.seq, "-", e.size, "-"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> anyhow::Result<ExitCode> {
    let entries = entries(dir)?;
    let mut out = crate::out::stdout();
    let mut corrupt = 0;
    for e in &entries {
        match &e.check {
            Ok(_) => writeln!(out, "ok       {}", e.path.display())?,
            Err(problem) => {
                corrupt += 1;
                writeln!(out, "CORRUPT  {}: {problem}", e.path.display())?;
            }
        }
    }
    let valid = entries.len() - corrupt;
    writeln!(
        out,
        "{} checkpoints in {}: {valid} valid, {corrupt} corrupt",
        entries.len(),
        dir.display()
    )?;
    Ok(if corrupt == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show(dir: &Path, seq: Option<u64>) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let Some((info, payload)) = read(dir, seq)? else {
        bail!("no valid checkpoint in {}", dir.display());
    };
    eprintln!(
        "checkpoint {} ({}, {} bytes, written {}): {}",
        info.seq,
        info.encoding,
        info.payload_len,
        info.time_rfc3339(),
        info.path.display()
    );
    if info.encoding == "json" {
        let value: serde_json::Value = serde_json::from_slice(&payload).with_context(|| {
            format!(
                "{} is a valid checkpoint but its JSON does not parse",
                info.path.display()
            )
        })?;
        let mut out = crate::out::stdout();
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        out.flush()?;
    } else {
        // The program's own bytes, for a file or a pipe: as they are.
        let mut out = crate::out::raw_stdout();
        out.write_all(&payload)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
