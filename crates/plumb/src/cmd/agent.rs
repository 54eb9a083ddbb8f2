//! `plumb agent`, and the shipping side of `plumb run` when a collector is
//! configured.

use crate::config::{Config, parse_key_value};
use crate::out::outln;
use crate::target::ship_config;
use anyhow::{Context, Result, bail};
use plumb_ship::{BackgroundShipper, Client, Outbox, Shipper};
use plumb_store::{RunWriter, WarnFn, WriterConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Arguments of `plumb agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The collector's URL (default: `collector =` or PLUMB_COLLECTOR).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// A label sent with every heartbeat, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Time between heartbeats (`500ms`, `5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// The outbox to ship (default: `<store>/outbox`, or PLUMB_OUTBOX), where
    /// `plumb run` leaves runs the collector did not take yet.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// A mount point always reported, whatever its file system type
    /// (tmpfs and other pseudo file systems are skipped otherwise);
    /// repeatable, added to `[agent] mounts` of plumb.toml.
    #[arg(long = "mount", value_name = "PATH")]
    pub mounts: Vec<PathBuf>,
    /// How often to measure this node's clock against the collector's, on
    /// average (jittered by ±20%), or `off`.
    #[arg(long, default_value = "10s", value_parser = parse_clock_every, value_name = "DURATION")]
    pub clock_every: ClockEvery,
    /// Where the collector answers clock probes, when not on its API's
    /// port number (`plumb serve --clock-port`): HOST:PORT or a URL.
    #[arg(long, value_name = "HOST:PORT")]
    pub clock_target: Option<String>,
    /// Pretend this node's clock is this far ahead (`+2s`) or behind
    /// (`-2s`) in its clock probes: the demo's skewed node on a machine
    /// without libfaketime. Hidden: a real node's offset is its clock's.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = parse_shift, allow_hyphen_values = true)]
    pub simulate_clock_offset: Option<i64>,
    /// Do not read or send the node's hardware health.
    #[arg(long)]
    pub no_health: bool,
    /// The whole hardware health goes with a heartbeat at least this often
    /// (a change in a counter, a disk's SMART or a source's availability,
    /// or pressure, goes with the next heartbeat).
    #[arg(long, default_value = "1m", value_parser = parse_interval, value_name = "DURATION")]
    pub health_every: Duration,
    /// How often the node's software fingerprint is taken again, to see
    /// whether it changed (a change goes with the next heartbeat and
    /// raises the EnvironmentChanged alert).
    #[arg(long, default_value = "10m", value_parser = parse_interval, value_name = "DURATION")]
    pub fingerprint_every: Duration,
    /// How often to read the disks' SMART with smartctl, or `off`.
    #[arg(long, default_value = "1h", value_parser = parse_smart_every, value_name = "DURATION")]
    pub smart_every: ClockEvery,
    /// The smartctl program (smartmontools 7.0 or later, for --json).
    #[arg(long, default_value = "smartctl", value_name = "PATH")]
    pub smartctl: PathBuf,
    /// How often to benchmark this node when it is idle (1-minute load
    /// below 0.5 per CPU), or `off` (default: `[agent] bench_every` of
    /// plumb.toml, else 4h).
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| crate::config::parse_bench_every(s).map(ClockEvery))]
    pub bench_every: Option<ClockEvery>,
    /// The first benchmark is no sooner than this after the start.
    #[arg(long, hide = true, default_value = "2m", value_parser = parse_interval, value_name = "DURATION")]
    pub bench_delay: Duration,
    /// Where the benchmark measures disk I/O (default: the outbox).
    #[arg(long, value_name = "DIR")]
    pub bench_path: Option<PathBuf>,
    /// Idle means a 1-minute load per CPU below this (tests on a busy
    /// machine).
    #[arg(long, hide = true, default_value_t = plumb_agent::bench::IDLE_LOAD_PER_CPU)]
    pub bench_idle_below: f64,
    /// Run the quick benchmark (tests).
    #[arg(long, hide = true)]
    pub bench_quick: bool,
    /// Let the collector's admins start recorded runs of this node again
    /// here (`plumb rerun RUN --on-node`), as the users they ran as (the
    /// agent must be root to switch users). Off unless given.
    #[arg(long)]
    pub allow_reruns: bool,
    /// Let the collector's admins kill, evict and pause this node's
    /// processes, and load its CPU and memory (`plumb chaos run` with
    /// targets or cpu/memory faults that say `node = "THIS NODE"`); the agent removes each fault itself and journals it under
    /// its plumb home. Off unless given.
    #[arg(long)]
    pub allow_chaos: bool,
    /// An environment variable whose value (in the agent's environment)
    /// goes with the node's fingerprint, so `plumb env drift` compares it
    /// across nodes (repeatable). A secret-looking name or value is
    /// reported only as set.
    #[arg(long = "env-var", value_name = "NAME", value_parser = parse_var_name)]
    pub env_vars: Vec<String>,
    /// Read health under this directory instead of `/` (tests: a fake
    /// sysfs/procfs laid out as the kernel documents it).
    #[arg(long, hide = true, value_name = "DIR")]
    pub health_root: Option<PathBuf>,
}

/// `--env-var`: a variable's name (letters, digits and `_`, not starting
/// with a digit).
fn parse_var_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a variable name: use letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// `--smart-every`: a duration of a second or more, or `off`.
fn parse_smart_every(s: &str) -> Result<ClockEvery, String> {
    if s == "off" {
        return Ok(ClockEvery(None));
    }
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns < 1_000_000_000 {
        return Err(format!(
            "`{s}` is too short a SMART interval: use 1s or more (1h is the default; smartctl wakes disks), or `off`"
        ));
    }
    Ok(ClockEvery(Some(Duration::from_nanos(ns as u64))))
}

/// `--simulate-clock-offset`: a signed duration, in nanoseconds.
fn parse_shift(s: &str) -> Result<i64, String> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    Ok(sign * plumb_model::parse_duration_ns(rest)?)
}

/// `--clock-every`: a duration, or `off` (`None`).
#[derive(Debug, Clone, Copy)]
pub struct ClockEvery(pub Option<Duration>);

fn parse_clock_every(s: &str) -> Result<ClockEvery, String> {
    if s == "off" {
        return Ok(ClockEvery(None));
    }
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns < 10_000_000 {
        return Err(format!(
            "`{s}` is too short a clock probe interval: use 10ms or more, or `off`"
        ));
    }
    Ok(ClockEvery(Some(Duration::from_nanos(ns as u64))))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns < 10_000_000 {
        return Err(format!("`{s}` is too short an interval: use 10ms or more"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let Some(url) = args.collector.clone().or_else(|| cfg.collector.clone()) else {
        bail!(
            "no collector: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml"
        );
    };
    let outbox = args
        .spool
        .clone()
        .unwrap_or_else(|| plumb_ship::outbox::default_dir(&cfg.home));
    let mut ac = plumb_agent::AgentConfig::new(&url, outbox);
    ac.client = ship_config(&cfg, &url);
    if let Some(n) = args.name {
        ac.name = n;
    }
    ac.labels = args.labels.into_iter().collect();
    ac.interval = args.interval;
    ac.spool_max = cfg.spool_max;
    ac.cache_dir = cfg.home.join("cache");
    // As `plumb env` does: the configured Python, else `python3` on PATH,
    // so that `plumb env --node N` and `plumb env` on N agree.
    ac.python = cfg
        .python
        .clone()
        .or_else(|| Some(std::path::PathBuf::from("python3")));
    ac.tools = cfg.tools.clone();
    ac.mounts = cfg.agent_mounts.clone();
    ac.mounts.extend(args.mounts);
    ac.clock_every = args.clock_every.0;
    if let Some(t) = &args.clock_target {
        // Checked now, so a typo is an error at start rather than a
        // warning in the log.
        plumb_agent::clock::probe_address(t).context("--clock-target")?;
    }
    ac.clock_target = args.clock_target;
    ac.clock_shift_ns = args.simulate_clock_offset.unwrap_or(0);
    ac.health = !args.no_health;
    ac.health_every = args.health_every;
    ac.fingerprint_every = args.fingerprint_every;
    ac.smart_every = args.smart_every.0;
    ac.smartctl = args.smartctl;
    if let Some(every) = args.bench_every.map(|e| e.0).or(cfg.agent_bench_every) {
        ac.bench_every = every;
    }
    ac.bench_delay = args.bench_delay;
    ac.bench_path = args.bench_path;
    ac.bench_idle_below = args.bench_idle_below;
    ac.bench_quick = args.bench_quick;
    ac.allow_reruns = args.allow_reruns;
    ac.allow_chaos = args.allow_chaos;
    ac.home = Some(cfg.home.clone());
    let redactor = plumb_record::redact::Redactor::new(b"")
        .with_extra_fragments(cfg.redact_names.iter().cloned())
        .with_allowed_names(cfg.redact_allow.iter().cloned());
    ac.env_vars = args
        .env_vars
        .iter()
        .map(|n| (n.clone(), redactor.is_secret_name(n)))
        .collect();
    if let Some(root) = args.health_root {
        if !root.is_dir() {
            bail!("--health-root {}: not a directory", root.display());
        }
        ac.health_root = root;
    }
    let agent = plumb_agent::Agent::new(ac).context("cannot start the agent")?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the agent's signal handlers")?;
    }
    tracing::info!(collector = %url, "plumb agent started");
    agent.run(&stop);
    Ok(ExitCode::SUCCESS)
}

/// Starts the writer of a run. Without a collector it writes to the local
/// store. With one, it writes to the outbox and a shipper thread ships the
/// run while it goes on; finish it with [`finish_shipping`].
pub fn start_writer(
    cfg: &Config,
    mut config: WriterConfig,
    run_id: plumb_model::Uuid,
    warn: WarnFn,
) -> (RunWriter, Option<BackgroundShipper>) {
    let Some(url) = &cfg.collector else {
        return (RunWriter::start(config, warn), None);
    };
    let dir = plumb_ship::outbox::default_dir(&cfg.home);
    let outbox = match Outbox::open(&dir, cfg.spool_max) {
        Ok(o) => o,
        Err(e) => {
            warn(&format!(
                "plumb: warning: {e}; recording to the local store instead of shipping to {url}"
            ));
            return (RunWriter::start(config, warn), None);
        }
    };
    // Make room before this run adds to it.
    outbox.enforce_bound();
    config.spool_dirs.insert(0, dir);
    let client = Client::new(&ship_config(cfg, url));
    let writer = RunWriter::start_spooled(config, run_id, warn);
    match client {
        Ok(client) => {
            let node = plumb_record::host::hostname();
            // A refusal is said once, naming the run, by finish_shipping.
            let shipper = Shipper::new(outbox, client, &node)
                .quiet_refusals(&[401, 403, 413])
                .spawn(Duration::from_millis(500));
            (writer, Some(shipper))
        }
        Err(e) => {
            eprintln!(
                "plumb: warning: {e}; the run stays in {} until it can be shipped",
                outbox.dir().display()
            );
            (writer, None)
        }
    }
}

/// Gives the shipper at most 2 s to ship what is left of the run; what it
/// cannot ship stays in the outbox for `plumb agent` or the next run. When
/// the collector refused the token or a batch, says so once, with what to
/// do: a wrong token must not look like an outage.
pub fn finish_shipping(cfg: &Config, shipper: BackgroundShipper, run_id: plumb_model::Uuid) {
    let report = shipper.finish(Duration::from_secs(2));
    let dir = plumb_ship::outbox::default_dir(&cfg.home);
    let left = dir.join(format!("{run_id}.spool"));
    let aside = dir.join(format!("{run_id}.spool.bad"));
    let url = cfg.collector.as_deref().unwrap_or_default();
    match report.and_then(|r| r.refused) {
        Some(r) if left.exists() => eprintln!(
            "plumb: the collector at {url} {}; run {run_id} stays spooled in {} and will be sent once it is accepted (by `plumb agent` or the next `plumb run`)",
            r.why,
            dir.display()
        ),
        Some(r) if aside.exists() => eprintln!(
            "plumb: the collector at {url} {}; run {run_id} was not sent and is kept in {}",
            r.why,
            aside.display()
        ),
        _ if left.exists() => eprintln!(
            "plumb: note: the collector did not take all of run {run_id} yet; it waits in {} for `plumb agent` or the next `plumb run`",
            dir.display()
        ),
        _ => {}
    }
}

/// The `plumb demo` scene for nodes: starts three agents as separate
/// processes (`demo-node-1..3`, 1 s heartbeats, outboxes under
/// `spool_root`) reporting to `collector_url`, waits for their first
/// heartbeats, and prints what `plumb nodes` shows. The agents are left
/// running; the caller ends them (kill and wait) when the demo is over.
pub fn demo_scene(collector_url: &str, spool_root: &Path) -> Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let mut agents = Vec::new();
    for i in 1..=3 {
        let child = std::process::Command::new(&exe)
            .args(["agent", "--collector", collector_url, "--interval", "1s"])
            .args(["--name", &format!("demo-node-{i}")])
            .args(["--label", &format!("rack=r{}", (i + 1) / 2)])
            .arg("--spool")
            .arg(spool_root.join(format!("node-{i}")))
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("cannot start a demo agent")?;
        agents.push(child);
    }
    outln!("Started 3 agents (demo-node-1..3) reporting to {collector_url} every second.");
    let cfg = Config::load()?;
    let client = crate::target::client(&cfg, collector_url)?;
    // Bounded: the first heartbeats come within a second or two.
    for _ in 0..50 {
        let nodes = crate::cmd::nodes::fetch(&client)?;
        if nodes
            .iter()
            .filter(|n| n.node.starts_with("demo-node-"))
            .count()
            >= 3
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    outln!("$ plumb nodes");
    crate::cmd::nodes::print_table(&crate::cmd::nodes::fetch(&client)?);
    Ok(agents)
}
