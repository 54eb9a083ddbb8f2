//! `plumb profile`: sampled CPU profiles of every process of a job at
//! once, merged into one flame graph for the job and one per node, and two
//! nodes side by side with `--compare` (`plumb_stack::profile` samples,
//! `plumb_model::profile` merges and draws). With a collector (the rule of
//! `target.rs`), every live node's agent samples its processes of the job
//! over the same window and the collector merges their profiles; without
//! one, or with `--local`, this machine is sampled directly.

use crate::config::Config;
use crate::out::outln;
use crate::target::SourceArgs;
use anyhow::{Context, Result, bail};
use plumb_model::profile::{Profile, compare_html, flame_svg, top};
use plumb_model::stack::{FleetProfile, ProfileSpec, StackQuery};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `plumb profile`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["pid", "run", "name", "node"])))]
pub struct Args {
    /// The process (and every descendant of it) to sample: on this
    /// machine, or with --node on that node.
    #[arg(long, value_name = "PID", conflicts_with_all = ["run", "name"])]
    pub pid: Option<u32>,
    /// A running run (id or unique prefix), on whichever node runs it.
    #[arg(long, value_name = "ID", conflicts_with = "name")]
    pub run: Option<String>,
    /// Every running run of this name, on every node.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only this node (alone: every running run of it). Needs a collector.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
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
    /// `DIR/profile-NODE.svg` for each node (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Two nodes side by side (why is node 7 slower than node 3?):
    /// `--compare node-3,node-7` also writes
    /// `DIR/compare-node-3-node-7.html`. Needs a collector.
    #[arg(long, value_name = "NODE,NODE", value_parser = parse_pair)]
    pub compare: Option<(String, String)>,
    /// How long the collector waits for the nodes' profiles once the
    /// window is over (at most 50s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::stack::parse_wait)]
    pub wait: Duration,
    /// How many functions to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Print the profile (every process's folded stacks, with the nodes
    /// that answered) as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// Where to sample: a collector (every node) or, with --local, this machine.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `--compare A,B`: two different node names.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    let Some((a, b)) = s.split_once(',') else {
        return Err(format!("`{s}` is not two nodes: give them as A,B"));
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() || b.contains(',') {
        return Err(format!("`{s}` is not two nodes: give them as A,B"));
    }
    if a == b {
        return Err(format!(
            "`{s}` names {a} twice: compare two different nodes"
        ));
    }
    Ok((a.to_string(), b.to_string()))
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
    let cfg = Config::load()?;
    match a.source.collector_url(&cfg) {
        // A pid alone names a process of this machine.
        Some(url) if a.pid.is_none() || a.node.is_some() => fleet(&cfg, &url, &a),
        _ if a.node.is_some() || a.compare.is_some() => bail!(
            "--{} asks the nodes' agents through the collector, and no collector is {}: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml",
            if a.node.is_some() { "node" } else { "compare" },
            if a.source.local {
                "used with --local"
            } else {
                "configured"
            }
        ),
        _ => local(&cfg, &a),
    }
}

/// This machine, sampled directly.
fn local(cfg: &Config, a: &Args) -> Result<ExitCode> {
    let roots = super::stack::local_roots(cfg, a.pid, a.run.as_deref(), a.name.as_deref())?;
    // Refused before sampling, not after a wait of the whole window.
    prepare_out(a)?;
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
    let fleet = FleetProfile {
        answered: profile.hosts(),
        profile,
        runs: Vec::new(),
        nothing_here: Vec::new(),
        not_answered: Vec::new(),
    };
    finish(&fleet, a)
}

/// Through the collector: every live node (or `--node`) samples its
/// processes of the job over the same window, and the collector merges
/// their profiles.
fn fleet(cfg: &Config, url: &str, a: &Args) -> Result<ExitCode> {
    let target = super::stack::fleet_target(a.pid, a.run.as_deref(), a.name.as_deref());
    let query = StackQuery {
        target: target.clone(),
        node: a.node.clone(),
        locals: false,
        wait_ms: a.wait.as_millis() as u64,
        profile: Some(ProfileSpec {
            duration_ms: a.duration.as_millis() as u64,
            rate_hz: a.rate,
            idle: a.idle,
            lines: a.lines,
        }),
        preflight: None,
        labels: Default::default(),
        rerun: None,
        chaos: None,
    };
    // The request stays open for the whole window; it is not retried (a
    // retry would sample all over again).
    let client = plumb_http::Client::new(&plumb_http::Config {
        timeout: a.duration + a.wait + Duration::from_secs(30),
        retry: plumb_http::Retry::NEVER,
        ..crate::target::client_config(cfg, url)
    })?;
    if let Some((x, y)) = &a.compare {
        // Unknown names are refused before the window, not after it.
        let nodes: Vec<plumb_model::node::NodeStatus> =
            crate::target::get_json(&client, "/api/v1/nodes")?;
        for n in [x, y] {
            if !nodes.iter().any(|s| &s.node == n) {
                let known: Vec<&str> = nodes.iter().map(|s| s.node.as_str()).collect();
                bail!(
                    "--compare: no node `{n}` is known to the collector (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
        }
    }
    prepare_out(a)?;
    let resp = client
        .post("/api/v1/profile")
        .json(&query)
        .send()
        .with_context(|| format!("asking {url} for a profile of {}", target.describe()))?;
    let fleet: FleetProfile = resp.json()?;
    if fleet.profile.processes.is_empty() {
        return Err(super::stack::nobody_has(
            &target,
            &fleet.nothing_here,
            &fleet.not_answered,
        ));
    }
    finish(&fleet, a)
}

/// Makes the output directory, unless the profile goes out as JSON.
fn prepare_out(a: &Args) -> Result<()> {
    if !a.json {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("making the output directory {}", a.out.display()))?;
    }
    Ok(())
}

/// Prints or draws the profile; fails when nothing was sampled, or when a
/// node to compare has no samples.
fn finish(fleet: &FleetProfile, a: &Args) -> Result<ExitCode> {
    let profile = &fleet.profile;
    if a.json {
        let mut out = crate::out::stdout();
        serde_json::to_writer_pretty(&mut out, fleet)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(exit(profile));
    }
    let mut written = write_graphs(profile, &a.out)?;
    let mut missing_node = None;
    if let Some((x, y)) = &a.compare {
        let hosts = profile.hosts();
        match [x, y]
            .into_iter()
            .find(|n| !hosts.contains(n) || profile.folded(Some(n)).is_empty())
        {
            Some(n) => missing_node = Some(n.clone()),
            None => {
                let path = a
                    .out
                    .join(format!("compare-{}-{}.html", file_safe(x), file_safe(y)));
                let html = compare_html(
                    &format!("{x} and {y}: {}", window(profile)),
                    (x, &profile.folded(Some(x))),
                    (y, &profile.folded(Some(y))),
                );
                std::fs::write(&path, html)
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push(path);
            }
        }
    }
    report(profile, &written, a.top);
    if fleet.answered.len() > 1 || !fleet.nothing_here.is_empty() || !fleet.not_answered.is_empty()
    {
        outln!();
        super::stack::print_nodes(&fleet.answered, &fleet.nothing_here, &fleet.not_answered);
    }
    if let Some(n) = missing_node {
        bail!(
            "--compare: node {n} has no samples in this profile (nodes sampled: {}); the other graphs are written",
            profile.hosts().join(", ")
        );
    }
    Ok(exit(profile))
}

fn exit(profile: &Profile) -> ExitCode {
    if profile.samples() == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The window in words: `4 processes, 812 samples over 2 s at 100 Hz`.
fn window(profile: &Profile) -> String {
    format!(
        "{} processes, {} samples over {} s at {} Hz",
        profile.processes.len(),
        profile.samples(),
        profile.duration_ms / 1000,
        profile.rate_hz
    )
}

/// The job's flame graph and one per node when there are several; the
/// paths written.
fn write_graphs(profile: &Profile, dir: &Path) -> Result<Vec<PathBuf>> {
    let write = |name: String, body: String| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let mut written = vec![write(
        "profile.svg".into(),
        flame_svg(
            &format!("the job: {}", window(profile)),
            &profile.folded(None),
        ),
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
