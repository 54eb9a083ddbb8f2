//! `plumb profile`: sampled CPU profiles of every process of a job at
//! once, merged into one flame graph for the job and one per host
//! (`plumb_stack::profile` samples, `plumb_model::profile` merges and
//! draws).

use crate::out::outln;
use anyhow::{Context, Result};
use plumb_model::profile::{Profile, flame_svg, top};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `plumb profile`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "run", "name"])))]
pub struct Args {
    /// The process (and every descendant of it) to sample.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// A running run recorded on this machine (id or unique prefix).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Every running run of this name recorded on this machine.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long to sample, in whole seconds (`30s`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_window, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Samples a second per process (1 to 1000). The cost to the job is
    /// bounded by it: each sample pauses a Python process for a few
    /// microseconds.
    #[arg(long, value_name = "HZ", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: u32,
    /// Also sample threads that are waiting (sleep, I/O, locks): where the
    /// wall-clock time goes rather than the CPU time.
    #[arg(long)]
    pub idle: bool,
    /// Keep Python frames apart by the line running; by default each
    /// function is one frame, named by the line of its `def`.
    #[arg(long)]
    pub lines: bool,
    /// Where to write the flame graphs: `DIR/profile.svg` for the job and
    /// `DIR/profile-HOST.svg` for each host (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// How many functions to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Print the profile (every process's folded stacks) as JSON instead.
    #[arg(long)]
    pub json: bool,
}

/// A sampling window: at least a second, whole seconds (py-spy counts in
/// seconds; a fraction is rounded up), at most an hour.
fn parse_window(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!("`{s}` is negative: sample for 1s or more"));
    }
    let d = plumb_model::parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is under a second: sample for 1s or more"));
    }
    if d > Duration::from_secs(3600) {
        return Err(format!("`{s}` is over an hour: sample for 1h or less"));
    }
    Ok(Duration::from_secs(d.as_secs_f64().ceil() as u64))
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = crate::config::Config::load()?;
    let roots = super::stack::local_roots(&cfg, a.pid, a.run.as_deref(), a.name.as_deref())?;
    // Refused before sampling, not after a wait of the whole window.
    if !a.json {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("making the output directory {}", a.out.display()))?;
    }
    let profile = plumb_stack::profile::profile(
        &roots,
        &plumb_stack::profile::ProfileOptions {
            duration: a.duration,
            rate_hz: a.rate,
            idle: a.idle,
            lines: a.lines,
            ..plumb_stack::profile::ProfileOptions::default()
        },
    );
    if a.json {
        let mut out = crate::out::stdout();
        serde_json::to_writer_pretty(&mut out, &profile)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let written = write_graphs(&profile, &a.out)?;
    report(&profile, &written, a.top);
    Ok(if profile.samples() == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The job's flame graph and one per host when there are several; the
/// paths written.
fn write_graphs(profile: &Profile, dir: &Path) -> Result<Vec<PathBuf>> {
    let write = |name: String, body: String| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let window = format!(
        "{} processes, {} samples over {} s at {} Hz",
        profile.processes.len(),
        profile.samples(),
        profile.duration_ms / 1000,
        profile.rate_hz
    );
    let mut written = vec![write(
        "profile.svg".into(),
        flame_svg(&format!("the job: {window}"), &profile.folded(None)),
    )?];
    let hosts = profile.hosts();
    if hosts.len() > 1 {
        for h in &hosts {
            written.push(write(
                format!("profile-{}.svg", file_safe(h)),
                flame_svg(h, &profile.folded(Some(h))),
            )?);
        }
    }
    Ok(written)
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn report(profile: &Profile, written: &[PathBuf], n: usize) {
    let all = profile.samples();
    let sampled = profile.processes.iter().filter(|p| p.samples() > 0).count();
    outln!(
        "{} samples from {sampled} of {} processes over {} s at {} Hz",
        all,
        profile.processes.len(),
        profile.duration_ms / 1000,
        profile.rate_hz
    );
    for p in profile.processes.iter().filter(|p| !p.missing.is_empty()) {
        for m in &p.missing {
            outln!(
                "  pid {} ({}) on {}: no {}: {} ({})",
                p.pid,
                p.command,
                p.host,
                m.what,
                m.detail,
                m.reason.as_str()
            );
        }
    }
    if all > 0 {
        outln!("\nfunctions with the most samples (own = running in it, total = on the stack)");
        outln!("{:>7} {:>7}  function", "own", "total");
        for h in top(&profile.folded(None), n) {
            outln!(
                "{:>6.1}% {:>6.1}%  {}",
                100.0 * h.own as f64 / all as f64,
                100.0 * h.total as f64 / all as f64,
                h.frame
            );
        }
    }
    outln!();
    for w in written {
        outln!("wrote {}", w.display());
    }
}
