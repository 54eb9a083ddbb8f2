//! `plumb run`: run a command exactly as if run directly, and record it.

use crate::config::{Config, parse_key_value};
use anyhow::{Context, Result, bail};
use plumb_model::{Fingerprint, Run, RunState, Stream, Timestamp, WaitKind, Waiting};
use plumb_record::cloud::CloudWatch;
use plumb_record::evict::EvictOptions;
use plumb_record::retry::{Backoff, RetryOn};
use plumb_record::throttle::ThrottleSpec;
use plumb_record::{Redactor, RunOptions, Sink, Supervision};
use plumb_store::prelude::*;
use plumb_store::{Destination, RunWriter, WriterConfig};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a throttle's N counts (`--throttle-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThrottleScope {
    /// Leases held at the collector: N across the fleet.
    Fleet,
    /// Slot files on this machine (or a shared --throttle-dir).
    Host,
}

/// Arguments of `plumb run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run name (default: the script or module run, e.g. `train` for
    /// `python3 train.py`, else the program's base name).
    #[arg(long)]
    pub name: Option<String>,
    /// A tag, `key=value` (repeatable).
    #[arg(long = "tag", value_parser = parse_key_value)]
    pub tags: Vec<(String, String)>,
    /// A configuration file to record: size, hash and (when small) its
    /// redacted content (repeatable; also PLUMB_CONFIG_FILES).
    #[arg(long = "config")]
    pub configs: Vec<PathBuf>,
    /// An input file to hash before the run (repeatable).
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// An output file to hash after the run (repeatable).
    #[arg(long = "output")]
    pub outputs: Vec<PathBuf>,
    /// Eviction: on SIGTERM, send the program the --on-evict signal, give
    /// it this long to exit (`30s`), then SIGKILL it; the run is recorded
    /// as evicted. Without it SIGTERM is forwarded unchanged.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace, allow_hyphen_values = true)]
    pub grace: Option<Duration>,
    /// The warning signal sent to the program on eviction (default SIGTERM).
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    pub on_evict: Option<i32>,
    /// Poll this cloud's instance metadata for an interruption notice and
    /// treat one as an eviction warning: aws, gcp, azure, or a URL.
    #[arg(long, value_name = "aws|gcp|azure|URL")]
    pub watch_cloud: Option<String>,
    /// The metadata service's base URL (default http://169.254.169.254).
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// How often to poll for the cloud notice.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace, default_value = "5s")]
    pub watch_interval: Duration,
    /// Run the command again up to N times after a failure or an eviction.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Wait between attempts: exponential from BASE up to CAP, full jitter.
    #[arg(long, value_name = "BASE..CAP", default_value = "1s..5m")]
    pub backoff: Backoff,
    /// Which outcomes are retried: exit codes and the words failure,
    /// killed, evicted, comma-separated (default: failure,evicted).
    #[arg(long, value_name = "OUTCOMES")]
    pub retry_on: Option<RetryOn>,
    /// Wait for one of N slots of the throttle NAME before starting, so at
    /// most N runs holding it run at once: across the fleet when a
    /// collector is configured (leases held at the collector, first come
    /// first served), else on this machine (or on every machine sharing
    /// --throttle-dir). The run is recorded as waiting meanwhile, with its
    /// place in the queue.
    #[arg(long, value_name = "NAME=N")]
    pub throttle: Option<ThrottleSpec>,
    /// Where throttles keep their slot files (default <plumb home>/throttle);
    /// implies --throttle-scope host.
    #[arg(long, value_name = "DIR", requires = "throttle")]
    pub throttle_dir: Option<PathBuf>,
    /// Where the throttle's N counts: `fleet` (leases held at the
    /// collector, the default when a collector is configured) or `host`
    /// (slot files on this machine, or in --throttle-dir; the default
    /// without a collector).
    #[arg(long, value_name = "fleet|host", requires = "throttle")]
    pub throttle_scope: Option<ThrottleScope>,
    /// The program's checkpoint directory, passed as PLUMB_CHECKPOINT_DIR
    /// (default: <plumb home>/checkpoints/<first attempt's id>).
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// SIGKILL the processes the command leaves running when it ends
    /// (background jobs, daemons, workers whose parent died; found because
    /// plumb is their subreaper). Without it they are only reported: on
    /// the record and in a `plumb:` line on stderr.
    #[arg(long)]
    pub kill_orphans: bool,
    /// Record no post-mortem locals: by default a Python process of the
    /// run that dies of an uncaught exception leaves every frame's local
    /// variables with the run (through a `sitecustomize` plumb puts first
    /// on PYTHONPATH; `plumb show RUN --locals`).
    #[arg(long)]
    pub no_locals: bool,
    /// Refuse to start the command unless its environment matches this
    /// lock (pip requirements or `pip freeze` output, uv.lock,
    /// poetry.lock, Cargo.lock, or `plumb env lock`'s): the mismatches
    /// are printed and the refusal is recorded as a cancelled run.
    #[arg(long, value_name = "FILE")]
    pub require_lock: Option<PathBuf>,
    /// Stop the run after this long (`10m`), or `auto`: --timeout-factor
    /// times the p95 duration of this name's recent succeeded runs in the
    /// local store, at least --timeout-floor. Before stopping it, plumb
    /// takes the stacks of every process; the run is recorded as timed-out
    /// with them (`plumb show`).
    #[arg(long, value_name = "DURATION|auto", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<TimeoutSpec>,
    /// Stop the run when it prints nothing on stdout or stderr for this
    /// long (`5m`), with the same evidence as --timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true)]
    pub silence_timeout: Option<Duration>,
    /// When the run prints nothing on stdout or stderr for this long, take
    /// a stack snapshot of its processes and attach it to the run (once
    /// per silence, at most 5 per run); nothing is stopped.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true)]
    pub snapshot_on_silence: Option<Duration>,
    /// With --timeout auto: the multiple of the p95 duration (default 3).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub timeout_factor: Option<f64>,
    /// With --timeout auto: the shortest timeout it may choose (default 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true)]
    pub timeout_floor: Option<Duration>,
    /// Ship the run to this collector (`http://host:7700`) instead of the
    /// local store (default: `collector` in plumb.toml or PLUMB_COLLECTOR).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// Record to the local store even when a collector is configured.
    #[arg(long, conflicts_with = "collector")]
    pub local: bool,
    /// The (first attempt's) run id, chosen by the caller: `plumb every`
    /// names a run still running when it skips a start, `plumb watch`
    /// journals the id before the run starts.
    #[arg(long, value_name = "UUID", hide = true)]
    pub run_id: Option<plumb_model::Uuid>,
    /// Read the node's counters (pressure, throttling, I/O errors, OOM
    /// kills) under this directory instead of `/` (tests: a fake
    /// sysfs/procfs laid out as the kernel documents it, as for `plumb
    /// agent --health-root`).
    #[arg(long, hide = true, value_name = "DIR")]
    pub health_root: Option<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "`{s}` is negative: a duration must be zero or more"
        ));
    }
    plumb_model::parse_duration_ns(s).map(|ns| Duration::from_nanos(ns.max(0) as u64))
}

/// `--timeout`: a duration, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeoutSpec {
    /// A fixed limit.
    Fixed(Duration),
    /// From the name's history.
    Auto,
}

fn parse_timeout(s: &str) -> Result<TimeoutSpec, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(TimeoutSpec::Auto);
    }
    parse_positive_duration(s).map(TimeoutSpec::Fixed)
}

/// A duration that must be more than zero: a timeout of zero or less would
/// stop the run before it started.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_grace(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` is zero: a timeout must be more than zero"));
    }
    Ok(d)
}

/// How many succeeded runs `--timeout auto` needs before it trusts their
/// p95.
const AUTO_MIN_HISTORY: usize = 5;
/// How many of the latest succeeded runs `--timeout auto` looks at.
const AUTO_WINDOW: usize = 50;
/// The timeout `--timeout auto` uses without enough history: Jenkins'
/// elastic timeout falls back to the same hour.
const AUTO_FALLBACK: Duration = Duration::from_secs(3600);
const AUTO_DEFAULT_FACTOR: f64 = 3.0;
const AUTO_DEFAULT_FLOOR: Duration = Duration::from_secs(60);

/// The run's timeouts from the arguments, checked before anything runs;
/// `--timeout auto` reads this name's history from the local store and
/// says on stderr what it chose and why.
pub fn timeouts(cfg: &Config, args: &Args) -> Result<plumb_record::timeout::Timeouts> {
    if let Some(f) = args.timeout_factor {
        if args.timeout != Some(TimeoutSpec::Auto) {
            bail!("--timeout-factor needs --timeout auto");
        }
        if !(f.is_finite() && f > 0.0) {
            bail!("--timeout-factor {f}: the factor must be a number greater than zero");
        }
    }
    if args.timeout_floor.is_some() && args.timeout != Some(TimeoutSpec::Auto) {
        bail!("--timeout-floor needs --timeout auto");
    }
    let mut t = plumb_record::timeout::Timeouts {
        silence: args.silence_timeout,
        snapshot_on_silence: args.snapshot_on_silence,
        signal: args.on_evict.unwrap_or(libc::SIGTERM),
        grace: args.grace.unwrap_or(plumb_record::evict::DEFAULT_GRACE),
        ..Default::default()
    };
    match args.timeout {
        None => {}
        Some(TimeoutSpec::Fixed(d)) => t.total = Some(d),
        Some(TimeoutSpec::Auto) => {
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| plumb_record::name::default_name(&args.command));
            let factor = args.timeout_factor.unwrap_or(AUTO_DEFAULT_FACTOR);
            let floor = args.timeout_floor.unwrap_or(AUTO_DEFAULT_FLOOR);
            let stats = crate::cmd::query::open_store(cfg)
                .and_then(|s| Ok(s.duration_stats(&name, AUTO_WINDOW)?));
            let fallback = |why: String| {
                eprintln!(
                    "plumb: --timeout auto: {why}; using {} this time",
                    plumb_model::display::duration(AUTO_FALLBACK.as_nanos() as i64)
                );
                (AUTO_FALLBACK, format!("auto: {why}, fallback"))
            };
            let (limit, basis) = match stats {
                Ok(s) if s.n >= AUTO_MIN_HISTORY && s.p95_s > 0.0 => {
                    let chosen = Duration::from_secs_f64(s.p95_s * factor).max(floor);
                    let basis = format!(
                        "auto: {factor} x p95 {} of the last {} succeeded runs of `{name}`, floor {}",
                        plumb_model::display::duration((s.p95_s * 1e9) as i64),
                        s.n,
                        plumb_model::display::duration(floor.as_nanos() as i64)
                    );
                    eprintln!(
                        "plumb: --timeout auto: {} ({basis})",
                        plumb_model::display::duration(chosen.as_nanos() as i64)
                    );
                    (chosen, basis)
                }
                Ok(s) => fallback(format!(
                    "only {} succeeded run{} of `{name}` in the local store (it needs {AUTO_MIN_HISTORY})",
                    s.n,
                    if s.n == 1 { "" } else { "s" }
                )),
                Err(e) => fallback(format!("cannot read the history of `{name}`: {e:#}")),
            };
            t.total = Some(limit);
            t.basis = Some(basis);
        }
    }
    Ok(t)
}

fn parse_signal(s: &str) -> Result<i32, String> {
    plumb_record::evict::parse_signal(s).map_err(|e| e.to_string())
}

/// How eviction is handled, from the arguments; `None` leaves signal
/// forwarding as it is without them.
pub fn evict_options(args: &Args) -> Result<Option<EvictOptions>> {
    let cloud = match &args.watch_cloud {
        Some(spec) => Some(CloudWatch::new(
            spec,
            args.metadata_url.as_deref(),
            args.watch_interval,
        )?),
        None if args.metadata_url.is_some() => {
            bail!("--metadata-url needs --watch-cloud aws|gcp|azure")
        }
        None => None,
    };
    if args.grace.is_none() && cloud.is_none() {
        if args.on_evict.is_some() {
            bail!("--on-evict needs --grace (for SIGTERM) or --watch-cloud (for cloud notices)");
        }
        return Ok(None);
    }
    Ok(Some(EvictOptions {
        signal: args.on_evict.unwrap_or(libc::SIGTERM),
        grace: args.grace.unwrap_or(plumb_record::evict::DEFAULT_GRACE),
        on_sigterm: args.grace.is_some(),
        cloud,
    }))
}

/// Forwards the recorder's events to the store writer, with every field
/// of the run record redacted on the way (`Redactor::redact_run`).
struct StoreSink {
    writer: Option<RunWriter>,
    destination: Option<Destination>,
    redactor: Redactor,
    /// Where the node's counters are read (`/`, or `--health-root`).
    node_root: PathBuf,
    /// The node's counters read just before the command started; the
    /// finished record gets the difference to a reading at its end.
    node_start: Option<plumb_model::health::NodeHealth>,
}

impl Sink for StoreSink {
    fn started(&mut self, run: &Run) {
        if let Some(w) = &self.writer {
            let mut run = run.clone();
            self.redactor.redact_run(&mut run);
            w.started(&run);
        }
    }
    fn output(&mut self, stream: Stream, seq: u64, time: Timestamp, data: &[u8]) {
        if let Some(w) = &self.writer {
            w.output(stream, seq, time, data);
        }
    }
    fn lend(&mut self) -> Vec<u8> {
        match &self.writer {
            Some(w) => w.lend(),
            None => Vec::new(),
        }
    }
    fn output_owned(
        &mut self,
        stream: Stream,
        seq: u64,
        time: Timestamp,
        buf: Vec<u8>,
        start: usize,
    ) {
        if let Some(w) = &self.writer {
            w.output_owned(stream, seq, time, buf, start);
        }
    }
    fn fingerprint(&mut self, hash: &str, fingerprint: &Fingerprint) {
        if let Some(w) = &self.writer {
            w.fingerprint(hash, fingerprint);
        }
    }
    fn finished(&mut self, run: &Run) {
        if let Some(w) = self.writer.take() {
            let mut run = run.clone();
            // Read first: the end of the run is now, not after redaction.
            if let Some(start) = self.node_start.take()
                && run.launch_error.is_none()
            {
                let end = plumb_agent::health::read_for_run(&self.node_root);
                run.node = Some(plumb_model::conditions::NodeConditions::between(
                    &start, &end,
                ));
            }
            self.redactor.redact_run(&mut run);
            self.destination = Some(w.finish(&run));
        }
    }
}

/// Builds the recorder's options from configuration and arguments.
pub fn options(cfg: &Config, args: &Args, run_id: plumb_model::Uuid) -> Result<RunOptions> {
    let mut configs = cfg.config_files.clone();
    configs.extend(args.configs.iter().cloned());
    // A configuration file named on purpose but missing is a mistake worth
    // stopping for, before anything runs.
    for c in configs.iter().chain(&args.inputs) {
        if !c.is_file() {
            bail!(
                "{} does not exist or is not a file (named with --config/--input or PLUMB_CONFIG_FILES)",
                c.display()
            );
        }
    }
    let redactor = Redactor::new(&cfg.redaction_key())
        .with_extra_fragments(cfg.redact_names.iter().cloned())
        .with_allowed_names(cfg.redact_allow.iter().cloned());
    let otel = match std::env::var("OTEL_RESOURCE_ATTRIBUTES") {
        Ok(v) if !v.trim().is_empty() => format!("{v},plumb.run.id={run_id}"),
        _ => format!("plumb.run.id={run_id}"),
    };
    Ok(RunOptions {
        argv: args.command.clone(),
        name: args.name.clone(),
        tags: args.tags.iter().cloned().collect(),
        config_files: configs,
        inputs: args.inputs.clone(),
        outputs: args.outputs.clone(),
        redactor,
        cache_dir: cfg.home.join("cache"),
        python: cfg.python.clone(),
        tools: cfg.tools.clone(),
        extra_env: vec![
            ("PLUMB_RUN_ID".into(), run_id.to_string()),
            ("OTEL_RESOURCE_ATTRIBUTES".into(), otel),
        ],
        run_id,
        postmortem_dir: (!args.no_locals).then(|| cfg.home.clone()),
    })
}

/// The configuration with `--collector`/`--local` applied.
pub(crate) fn config(args: &Args) -> Result<Config> {
    let mut cfg = Config::load()?;
    if let Some(url) = &args.collector {
        cfg.collector = Some(url.clone());
    } else if args.local {
        cfg.collector = None;
    }
    Ok(cfg)
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = config(&args)?;
    // Everything that can be wrong with the arguments is found before
    // anything runs. A command starting with `-` is a mistyped option
    // (the command may start with anything, so clap takes it as one).
    if let Some(first) = args.command.first().and_then(|c| c.to_str())
        && first.starts_with('-')
    {
        bail!(
            "`{first}` is not an option of `plumb run` (see `plumb run --help`); the command to run goes after `--`"
        );
    }
    let evict = evict_options(&args)?;
    let timeouts = timeouts(&cfg, &args)?;
    let health_root = match &args.health_root {
        Some(root) if !root.is_dir() => {
            bail!("--health-root {}: not a directory", root.display())
        }
        Some(root) => root.clone(),
        None => PathBuf::from("/"),
    };
    let retry_on = args.retry_on.clone().unwrap_or_default();
    let max_attempts = args.retries.saturating_add(1);
    let first_id = args.run_id.unwrap_or_else(plumb_model::new_id);
    let checkpoint_dir = if args.checkpoint_dir.is_some() || args.retries > 0 || evict.is_some() {
        let dir = args
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| cfg.home.join("checkpoints").join(first_id.to_string()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the checkpoint directory {}", dir.display()))?;
        Some(dir)
    } else {
        None
    };
    // Ctrl-C or SIGTERM while waiting (between attempts, or for a throttle
    // slot) stops the wait. While a child runs the recorder's own handlers
    // take over (and restore these afterwards).
    let stop = Arc::new(AtomicBool::new(false));
    // Which of the two stopped the wait, for the exit code.
    let terminated = Arc::new(AtomicBool::new(false));
    if args.retries > 0 || args.throttle.is_some() {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing the signal handlers for waiting")?;
        }
        signal_hook::flag::register(libc::SIGTERM, Arc::clone(&terminated))
            .context("installing the signal handlers for waiting")?;
    }
    let scope = match (args.throttle_scope, &cfg.collector) {
        (Some(ThrottleScope::Fleet), _) if args.throttle_dir.is_some() => {
            bail!(
                "--throttle-dir is for --throttle-scope host: fleet-wide slots are leases at the collector"
            )
        }
        (Some(ThrottleScope::Fleet), None) => bail!(
            "--throttle-scope fleet needs a collector (--collector URL, PLUMB_COLLECTOR, or `collector =` in plumb.toml)"
        ),
        (Some(scope), _) => scope,
        (None, Some(_)) if args.throttle_dir.is_none() => ThrottleScope::Fleet,
        (None, _) => ThrottleScope::Host,
    };
    if scope == ThrottleScope::Fleet && args.throttle.is_some() {
        // A bad PLUMB_THROTTLE_TTL_MS is said before anything runs.
        crate::lease::ttl()?;
    }
    let throttle = args.throttle.as_ref().map(|spec| {
        let root = args
            .throttle_dir
            .clone()
            .unwrap_or_else(|| cfg.home.join("throttle"));
        (spec, root.join(&spec.name))
    });
    if let Some((spec, dir)) = &throttle
        && scope == ThrottleScope::Host
    {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("throttle `{}`: cannot create {}", spec.name, dir.display())
        })?;
    }
    if let Some(path) = &args.require_lock
        && let Some(code) = require_lock(&cfg, &args, path)?
    {
        return Ok(code);
    }
    let mut attempt = 1;
    let mut backoff: Option<(Duration, String)> = None;
    loop {
        let run_id = if attempt == 1 {
            first_id
        } else {
            plumb_model::new_id()
        };
        let mut opts = options(&cfg, &args, run_id)?;
        opts.extra_env
            .push(("PLUMB_ATTEMPT".into(), attempt.to_string()));
        if let Some(dir) = &checkpoint_dir {
            opts.extra_env.push((
                "PLUMB_CHECKPOINT_DIR".into(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        let mut sup = Supervision {
            attempt,
            first_attempt: (attempt > 1).then_some(first_id),
            max_attempts: (args.retries > 0).then_some(max_attempts),
            evict: evict.clone(),
            waited: None,
            kill_orphans: args.kill_orphans,
            timeouts: timeouts.clone(),
        };
        let throttle_wait = match (&throttle, &cfg.collector) {
            (None, _) => None,
            (Some((spec, _)), Some(url)) if scope == ThrottleScope::Fleet => {
                Some(ThrottleWait::Fleet(Box::new(
                    crate::lease::FleetThrottle::new(&cfg, url, spec, run_id)?,
                )))
            }
            (Some((spec, dir)), _) => Some(ThrottleWait::Host(spec, dir.as_path())),
        };
        let wait = Wait {
            backoff: backoff.take(),
            throttle: throttle_wait,
            stop: &stop,
        };
        let run = match record_attempt(&cfg, opts, &mut sup, wait, &health_root)? {
            Attempt::Ran(run) => *run,
            Attempt::NotStarted(code) => return Ok(code),
            Attempt::Cancelled => {
                eprintln!("plumb: interrupted while waiting; the command was not started");
                // What a shell reports for an interrupted command, whatever
                // the previous attempt did: the user stopped plumb, and a
                // script must be able to tell that from the program failing.
                return Ok(ExitCode::from(if terminated.load(Ordering::SeqCst) {
                    crate::exit::TERMINATED
                } else {
                    crate::exit::INTERRUPTED
                }));
            }
        };
        report_orphans(&run);
        let code = run.exit.as_ref().map_or(255, |e| e.shell_code());
        let code = ExitCode::from(code.clamp(0, 255) as u8);
        if attempt >= max_attempts
            || !retry_on.matches(&run)
            || plumb_record::retry::interrupted(&run)
        {
            return Ok(code);
        }
        let delay = args.backoff.next_delay(attempt - 1, None);
        eprintln!(
            "plumb: attempt {attempt}/{max_attempts} {} ({}); attempt {} in {}",
            run.state.as_str(),
            describe_exit(&run),
            attempt + 1,
            plumb_model::display::duration(delay.as_nanos() as i64)
        );
        let reason = format!(
            "backing off before attempt {} of {max_attempts}: attempt {attempt} {} ({})",
            attempt + 1,
            run.state.as_str(),
            describe_exit(&run)
        );
        backoff = Some((delay, reason));
        attempt += 1;
    }
}

/// What an attempt waits for before it starts.
struct Wait<'a> {
    /// A retry's backoff and why.
    backoff: Option<(Duration, String)>,
    /// A throttle to take a slot of.
    throttle: Option<ThrottleWait<'a>>,
    /// Set by SIGINT/SIGTERM: give up waiting.
    stop: &'a AtomicBool,
}

/// Where a throttle's slots are.
enum ThrottleWait<'a> {
    /// Slot files in a directory (`--throttle-scope host`).
    Host(&'a ThrottleSpec, &'a std::path::Path),
    /// Leases at the collector.
    Fleet(Box<crate::lease::FleetThrottle>),
}

/// A throttle slot held while the command runs; dropping it frees it.
#[allow(dead_code)] // held for its Drop
enum Held {
    /// A slot file's lock.
    Slot(plumb_record::throttle::Slot),
    /// A lease at the collector, renewed on a thread.
    Lease(crate::lease::HeldLease),
}

/// How an attempt went.
enum Attempt {
    /// The command ran (whatever its outcome).
    Ran(Box<Run>),
    /// The command could not be started; the exit code to report.
    NotStarted(ExitCode),
    /// Interrupted while waiting: the command never started.
    Cancelled,
}

/// How often a throttle's slots are tried while all are held.
const THROTTLE_POLL: Duration = Duration::from_millis(100);

/// Waits as `wait` says, keeping the attempt's record in state waiting
/// (stored, and shipped when a collector is configured). Returns the slot
/// held, if any, or `None` when interrupted, after recording the attempt
/// as cancelled.
fn wait_to_start(
    opts: &RunOptions,
    sup: &mut Supervision,
    wait: Wait<'_>,
    sink: &mut StoreSink,
) -> Result<Option<Option<Held>>> {
    let since = Timestamp::now();
    let mut record = None;
    if let Some((delay, reason)) = wait.backoff {
        let waiting = Waiting {
            kind: WaitKind::Backoff,
            reason,
            since,
            until: Some(Timestamp::from_nanos(
                since.as_nanos() + delay.as_nanos() as i64,
            )),
            ended: None,
        };
        let run = plumb_record::supervise::waiting_run(opts, sup, waiting);
        sink.started(&run);
        let waited = sleep_unless(wait.stop, delay);
        record = Some(run);
        if !waited {
            cancel(record, sink);
            return Ok(None);
        }
    }
    let mut slot = None;
    if let Some(ThrottleWait::Fleet(fleet)) = wait.throttle {
        return wait_for_lease(opts, sup, *fleet, wait.stop, record, since, sink);
    }
    if let Some(ThrottleWait::Host(spec, dir)) = wait.throttle {
        let take = || {
            plumb_record::throttle::try_acquire(dir, spec)
                .with_context(|| format!("throttle `{}`: cannot use {}", spec.name, dir.display()))
        };
        slot = take()?;
        if slot.is_none() {
            let reason = format!(
                "waiting for a slot of throttle `{}` (all {} held)",
                spec.name, spec.slots
            );
            eprintln!("plumb: {reason}");
            let mut run = record.take().unwrap_or_else(|| {
                let w = Waiting {
                    kind: WaitKind::Throttle,
                    reason: String::new(),
                    since,
                    until: None,
                    ended: None,
                };
                plumb_record::supervise::waiting_run(opts, sup, w)
            });
            if let Some(w) = run.waiting.as_mut() {
                w.kind = WaitKind::Throttle;
                w.reason = reason;
                w.until = None;
            }
            sink.started(&run);
            record = Some(run);
            while slot.is_none() {
                if !sleep_unless(wait.stop, THROTTLE_POLL) {
                    cancel(record, sink);
                    return Ok(None);
                }
                slot = take()?;
            }
        }
    }
    sup.waited = record.and_then(|r| r.waiting);
    Ok(Some(slot.map(Held::Slot)))
}

/// Waits for a lease of a fleet-wide throttle, asking the collector again
/// every poll (which keeps the run's place in the queue), with the run
/// recorded as waiting and its reason saying its place, updated as it
/// moves. A collector that cannot be reached is waited for, said once per
/// outage on stderr; a refusal (the token, a conflicting N) is an error.
fn wait_for_lease(
    opts: &RunOptions,
    sup: &mut Supervision,
    fleet: crate::lease::FleetThrottle,
    stop: &AtomicBool,
    mut record: Option<Run>,
    since: Timestamp,
    sink: &mut StoreSink,
) -> Result<Option<Option<Held>>> {
    use crate::lease::Asked;
    let mut away = false;
    let mut last_reason = String::new();
    let mut last_state: Option<plumb_model::throttle::LeaseState>;
    loop {
        match fleet.ask() {
            // Recorded as cancelled, with the reason, by record_attempt.
            Err(e) => return Err(e),
            Ok(Asked::State(s)) if s.granted => {
                if away {
                    eprintln!("plumb: the collector answers again");
                }
                break;
            }
            Ok(Asked::State(s)) => {
                if away {
                    eprintln!("plumb: the collector answers again");
                    away = false;
                }
                let reason = fleet.reason(&s);
                if reason != last_reason {
                    if last_reason.is_empty() {
                        eprintln!("plumb: {reason}");
                    }
                    let mut run = record.take().unwrap_or_else(|| {
                        let w = Waiting {
                            kind: WaitKind::Throttle,
                            reason: String::new(),
                            since,
                            until: None,
                            ended: None,
                        };
                        plumb_record::supervise::waiting_run(opts, sup, w)
                    });
                    if let Some(w) = run.waiting.as_mut() {
                        w.kind = WaitKind::Throttle;
                        w.reason = reason.clone();
                        w.until = None;
                    }
                    sink.started(&run);
                    record = Some(run);
                    last_reason = reason;
                }
                last_state = Some(s);
            }
            Ok(Asked::Away(why)) => {
                last_state = None;
                if !away {
                    away = true;
                    eprintln!(
                        "plumb: cannot reach the collector for a slot of a fleet-wide throttle ({why}); still waiting, asking again every {} (local slots are not used: they could exceed N fleet-wide)",
                        plumb_model::display::duration(fleet.poll(None).as_nanos() as i64)
                    );
                }
            }
        }
        if !sleep_unless(stop, fleet.poll(last_state.as_ref())) {
            fleet.leave();
            cancel(record, sink);
            return Ok(None);
        }
    }
    sup.waited = record.and_then(|r| r.waiting);
    Ok(Some(Some(Held::Lease(fleet.hold()))))
}

/// Records a run that never started (`plumb every`'s skipped start): the
/// record `plumb run` with these arguments would have written, waiting as
/// `waiting` says and cancelled at once, through the same writer, spool
/// and shipper. Returns its id.
pub(crate) fn record_not_started(
    cfg: &Config,
    args: &Args,
    waiting: Waiting,
) -> Result<plumb_model::Uuid> {
    let run_id = plumb_model::new_id();
    let opts = options(cfg, args, run_id)?;
    let sup = Supervision::default();
    let (mut sink, shipper) = open_sink(cfg, &opts);
    let run = plumb_record::supervise::waiting_run(&opts, &sup, waiting);
    sink.started(&run);
    cancel(Some(run), &mut sink);
    if let Some(shipper) = shipper {
        crate::cmd::agent::finish_shipping(cfg, shipper, run_id);
    }
    Ok(run_id)
}

/// `--require-lock`: checks the command's environment against the lock;
/// on a mismatch prints it, records the refusal (a cancelled run with the
/// reason and the environment's fingerprint) and returns the exit code.
fn require_lock(cfg: &Config, args: &Args, path: &Path) -> Result<Option<ExitCode>> {
    let lock = plumb_record::lock::read(path).context("--require-lock")?;
    let (mut hash, mut fp) = crate::cmd::env::capture_here(cfg, None, &args.command);
    let wants_python = lock
        .pins
        .iter()
        .any(|p| p.component.starts_with(plumb_model::env::PYTHON_PACKAGE));
    if fp.python.is_none() && wants_python {
        // The command is not a Python program plumb recognises (a shell
        // script, say): check the Python it would find on PATH.
        (hash, fp) = crate::cmd::env::capture_here(cfg, Some(Path::new("python3")), &args.command);
    }
    let checked = plumb_record::lock::check(&lock, &crate::cmd::env::checkable(&fp));
    if checked.mismatches.is_empty() {
        return Ok(None);
    }
    let n = checked.mismatches.len();
    let mut reason = format!(
        "refused: the environment does not match {} ({}): {n} mismatch{}",
        path.display(),
        checked.kind.as_str(),
        if n == 1 { "" } else { "es" }
    );
    eprintln!("plumb: {reason}");
    for m in &checked.mismatches {
        eprintln!(
            "plumb:   {}",
            plumb_model::text::escape_controls(&m.to_string())
        );
    }
    for m in checked.mismatches.iter().take(20) {
        reason.push_str(&format!("\n{m}"));
    }
    if n > 20 {
        reason.push_str(&format!("\n... and {} more", n - 20));
    }
    let run_id = args.run_id.unwrap_or_else(plumb_model::new_id);
    let opts = options(cfg, args, run_id)?;
    let (mut sink, shipper) = open_sink(cfg, &opts);
    let mut run =
        plumb_record::supervise::unstarted_run(&opts, &Supervision::default(), Timestamp::now());
    run.launch_error = Some(reason);
    run.fingerprint = Some(hash.clone());
    sink.started(&run);
    sink.fingerprint(&hash, &fp);
    cancel(Some(run), &mut sink);
    if let Some(shipper) = shipper {
        crate::cmd::agent::finish_shipping(cfg, shipper, run_id);
    }
    eprintln!("plumb: the command was not started; recorded as run {run_id}");
    Ok(Some(ExitCode::from(crate::exit::TROUBLE)))
}

/// Where a run's record goes: with a collector configured, the outbox,
/// shipped as it goes by the returned shipper (see cmd::agent); without
/// one, the local store.
fn open_sink(
    cfg: &Config,
    opts: &RunOptions,
) -> (StoreSink, Option<plumb_ship::BackgroundShipper>) {
    let (writer, shipper) = crate::cmd::agent::start_writer(
        cfg,
        WriterConfig {
            store_dir: cfg.home.clone(),
            spool_dirs: plumb_store::spool::candidate_dirs(&cfg.home),
            output_cap: cfg.output_cap,
            flush_interval: Duration::from_secs(1),
            busy_timeout: Duration::from_secs(5),
        },
        opts.run_id,
        Box::new(|line| eprintln!("{line}")),
    );
    let sink = StoreSink {
        writer: Some(writer),
        destination: None,
        redactor: opts.redactor.clone(),
        node_root: PathBuf::from("/"),
        node_start: None,
    };
    (sink, shipper)
}

/// Records a waiting attempt as cancelled: it ends without having started.
fn cancel(record: Option<Run>, sink: &mut StoreSink) {
    if let Some(mut run) = record {
        let now = Timestamp::now();
        run.state = RunState::Cancelled;
        run.ended = Some(now);
        if let Some(w) = run.waiting.as_mut() {
            w.ended = Some(now);
        }
        sink.finished(&run);
    }
}

/// Records one attempt. The inner error is the exit code for a command
/// that could not be started at all (not worth retrying: a missing program
/// does not appear by itself).
fn record_attempt(
    cfg: &Config,
    opts: RunOptions,
    sup: &mut Supervision,
    wait: Wait<'_>,
    health_root: &Path,
) -> Result<Attempt> {
    let run_id = opts.run_id;
    // With a collector configured the run goes to the outbox and is shipped
    // as it goes (see cmd::agent); without one, to the local store.
    let (mut sink, shipper) = open_sink(cfg, &opts);
    let waited = wait_to_start(&opts, sup, wait, &mut sink);
    let (recorded, _slot) = match waited {
        Ok(Some(slot)) => {
            // What the node goes through during the run: its counters now
            // and when the run ends (`StoreSink::finished`).
            sink.node_root = health_root.to_path_buf();
            sink.node_start = Some(plumb_agent::health::read_for_run(health_root));
            (
                Some(plumb_record::record_supervised(opts, sup, &mut sink)),
                slot,
            )
        }
        Ok(None) => (None, None),
        Err(e) => {
            // A throttle directory that cannot be used: the attempt is
            // recorded as cancelled rather than left waiting forever.
            cancel(
                plumb_record::supervise::waiting_run(
                    &opts,
                    sup,
                    Waiting {
                        kind: WaitKind::Throttle,
                        reason: format!("{e:#}"),
                        since: Timestamp::now(),
                        until: None,
                        ended: None,
                    },
                )
                .into(),
                &mut sink,
            );
            if let Some(shipper) = shipper {
                crate::cmd::agent::finish_shipping(cfg, shipper, run_id);
            }
            return Err(e);
        }
    };
    if let Some(shipper) = shipper {
        crate::cmd::agent::finish_shipping(cfg, shipper, run_id);
    }
    let Some(recorded) = recorded else {
        return Ok(Attempt::Cancelled);
    };
    match recorded {
        Ok(run) => Ok(Attempt::Ran(Box::new(run))),
        Err(plumb_record::RecordError::Spawn { program, source }) => {
            // The failed launch is already recorded (state failed, with the
            // reason); the codes are a shell's: 127 not found, 126 found
            // but not runnable.
            eprintln!("plumb: cannot run `{program}`: {source}");
            let code = plumb_record::supervise::launch_exit_code(&source);
            Ok(Attempt::NotStarted(ExitCode::from(code as u8)))
        }
        Err(e) => Err(e.into()),
    }
}

/// One `plumb:` line on stderr about processes the command left running.
fn report_orphans(run: &Run) {
    if run.orphans.is_empty() {
        return;
    }
    let list: Vec<String> = run
        .orphans
        .iter()
        .map(|o| format!("{} ({})", o.pid, o.command))
        .collect();
    let n = run.orphans.len();
    let what = if n == 1 { "process" } else { "processes" };
    if run.orphans_killed {
        eprintln!(
            "plumb: the command left {n} {what} running; killed (--kill-orphans): {}",
            list.join(", ")
        );
    } else {
        eprintln!(
            "plumb: the command left {n} {what} running (plumb run --kill-orphans kills them): {}",
            list.join(", ")
        );
    }
}

fn describe_exit(run: &Run) -> String {
    match run.exit.as_ref().map(|e| (e.code, e.signal)) {
        Some((Some(c), _)) => format!("exit code {c}"),
        Some((None, Some(s))) => format!(
            "signal {}",
            plumb_record::signal_name(s).unwrap_or_else(|| s.to_string())
        ),
        _ => "no exit status".into(),
    }
}

/// Sleeps for `d` unless `stop` is set first; false when stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
