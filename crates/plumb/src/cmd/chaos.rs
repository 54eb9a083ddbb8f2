//! `plumb chaos`: run a chaos scenario (plumb-chaos) against this machine's
//! processes, check one without running it, or undo what a killed run
//! left behind. The store is read only to find a target given as a plumb
//! run name.
//!
//! A target with `node = "NAME"` is another machine's: before anything is
//! injected, each such node must be known to the configured collector;
//! each of its faults is posted to `POST /api/v1/chaos/inject` (admin, as
//! `plumb rerun --on-node` does, with the same collector URL and token),
//! which hands it to that node's agent ([`remote_dispatch`]).

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, Result};
use plumb_model::RunState;
use plumb_model::chaos::{ChaosInjected, ChaosOrder, ChaosQuery};
use plumb_store::prelude::*;
use plumb_store::{RunFilter, Store};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Arguments of `plumb chaos`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Run a scenario: steady state, faults, steady state again, report.
    /// Exits 0 when the hypothesis held, 1 when it did not, 2 on trouble,
    /// 130 when stopped by SIGINT or SIGTERM (after removing every fault).
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML file.
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a scenario and print its plan (when each fault is injected)
    /// without running anything.
    Validate {
        /// The scenario file (TOML).
        scenario: PathBuf,
    },
    /// Kill a random target process every interval (± jitter), until
    /// stopped, with safety limits: at most --max-down targets left without
    /// a process, a stop file, allowed UTC time windows.
    Monkey(MonkeyArgs),
    /// A short scenario against a bundled example service and worker: a
    /// kill, an eviction and a latency spike, then the report's summary.
    Demo {
        /// The Python interpreter for the example programs.
        #[arg(long, default_value = "python3")]
        python: PathBuf,
    },
    /// Undo what a plumb chaos that was killed left behind (stopped
    /// processes, tmpfs mounts, started processes). `run` does this first
    /// on its own.
    Cleanup,
}

#[derive(Debug, clap::Args)]
struct MonkeyArgs {
    /// Processes whose command line matches this regex: one target;
    /// repeatable.
    #[arg(long = "pattern", alias = "targets", value_name = "REGEX")]
    patterns: Vec<String>,
    /// Processes with this exact name (/proc/PID/comm): one target;
    /// repeatable.
    #[arg(long = "process", value_name = "NAME")]
    processes: Vec<String>,
    /// The processes of this cgroup (a directory with cgroup.procs,
    /// absolute or under /sys/fs/cgroup): one target; repeatable.
    #[arg(long = "cgroup", value_name = "DIR")]
    cgroups: Vec<PathBuf>,
    /// Mean time between kills.
    #[arg(long, default_value = "10m")]
    every: String,
    /// Each kill comes up to this much earlier or later (seeded).
    #[arg(long, default_value = "0s")]
    jitter: String,
    /// SIGKILL or SIGTERM.
    #[arg(long, default_value = "SIGKILL")]
    signal: String,
    /// Never leave more than this many targets without a process.
    #[arg(long, default_value_t = 1)]
    max_down: usize,
    /// Stop as soon as this file exists.
    #[arg(long, value_name = "FILE")]
    stop_file: Option<PathBuf>,
    /// Only kill within this UTC window, HH:MM-HH:MM; repeatable.
    #[arg(long = "window", value_name = "HH:MM-HH:MM")]
    windows: Vec<String>,
    /// Seed of the schedule and of which process is hit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many turns (kills or skips).
    #[arg(long)]
    count: Option<u64>,
    /// Say what would be killed; kill nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object per turn.
    #[arg(long)]
    json: bool,
}

fn monkey(a: MonkeyArgs) -> Result<ExitCode> {
    use plumb_chaos::scenario::{TargetKind, parse_dur, signal_number};
    let mut targets = Vec::new();
    for p in &a.patterns {
        let re = regex_lite(p)?;
        targets.push((p.clone(), TargetKind::Pattern(re)));
    }
    for n in &a.processes {
        targets.push((n.clone(), TargetKind::Name(n.clone())));
    }
    for c in &a.cgroups {
        let dir = std::path::Path::new("/sys/fs/cgroup").join(c);
        if !dir.join("cgroup.procs").is_file() {
            anyhow::bail!(
                "--cgroup {}: no cgroup.procs there: not a cgroup directory",
                dir.display()
            );
        }
        targets.push((dir.display().to_string(), TargetKind::Cgroup(dir)));
    }
    if targets.is_empty() {
        anyhow::bail!(
            "say what to kill: --pattern REGEX, --process NAME or --cgroup DIR (repeatable)"
        );
    }
    let every = parse_dur(&a.every).map_err(|e| anyhow::anyhow!("--every: {e}"))?;
    let jitter = parse_dur(&a.jitter).map_err(|e| anyhow::anyhow!("--jitter: {e}"))?;
    if every.is_zero() {
        anyhow::bail!("--every must be more than 0");
    }
    if jitter >= every {
        anyhow::bail!("--jitter must be less than --every");
    }
    let signal = match signal_number(&a.signal) {
        Some(s) if s == libc::SIGKILL || s == libc::SIGTERM => s,
        _ => anyhow::bail!(
            "--signal {:?}: the monkey sends SIGKILL or SIGTERM",
            a.signal
        ),
    };
    let windows = a
        .windows
        .iter()
        .map(|w| plumb_chaos::monkey::parse_window(w))
        .collect::<Result<Vec<_>>>()?;
    let m = plumb_chaos::monkey::Monkey {
        targets,
        every,
        jitter,
        signal,
        max_down: a.max_down,
        stop_file: a.stop_file,
        windows,
        seed: a.seed,
        ticks: a.count,
        dry_run: a.dry_run,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    let json = a.json;
    let mut failed: Option<std::io::Error> = None;
    let ticks = plumb_chaos::monkey::run(&m, &stop, &mut |t| {
        let mut out = crate::out::stdout();
        let r = if json {
            serde_json::to_string(t)
                .map_err(std::io::Error::other)
                .and_then(|s| writeln!(out, "{s}"))
        } else {
            writeln!(out, "{} {:<10} {}", t.at, t.what, t.detail)
        }
        .and_then(|()| out.flush());
        // A reader that went away (`| head`) stops the monkey.
        if let Err(e) = r
            && failed.is_none()
        {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let killed = ticks.iter().filter(|t| t.what == "killed").count();
    let _ = writeln!(
        std::io::stderr(),
        "plumb chaos monkey: {killed} kill(s) in {} turn(s)",
        ticks.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn regex_lite(p: &str) -> Result<plumb_chaos::scenario::Pattern> {
    plumb_chaos::scenario::Pattern::new(p).map_err(|e| anyhow::anyhow!("--pattern {p:?}: {e}"))
}

/// Entry point.
pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    match a.what {
        What::Validate { scenario } if plumb_chaos::ctk::is_experiment(&scenario) => {
            let e = plumb_chaos::ctk::load(&scenario)?;
            outln!(
                "{}: ok: a chaostoolkit experiment: {} hypothesis probe(s), {} method activities, {} rollback(s)",
                scenario.display(),
                e.hypothesis.len(),
                e.method.len(),
                e.rollbacks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        What::Validate { scenario } => {
            let s = plumb_chaos::load(&scenario)?;
            let plan = preflight(&s, &scenario)?;
            outln!(
                "{}: ok: {} target(s), {} link(s), {} probe(s), {} injection(s) in {} (seed {})",
                scenario.display(),
                s.targets.len(),
                s.links.len(),
                s.probes.len(),
                plan.len(),
                plumb_chaos::scenario::human(s.duration),
                s.seed
            );
            for p in plan {
                let f = &s.faults[p.fault];
                let node = f
                    .node
                    .as_deref()
                    .or_else(|| {
                        s.targets
                            .iter()
                            .find(|t| t.name == f.on)
                            .and_then(|t| t.node.as_deref())
                    })
                    .map(|n| format!(" on node {n}, by its agent"))
                    .unwrap_or_default();
                outln!(
                    "  +{:>6} ms  {} on `{}`{node} for {} (line {})",
                    p.at.as_millis(),
                    f.kind.as_str(),
                    f.on,
                    plumb_chaos::scenario::human(f.duration),
                    f.line
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Monkey(m) => monkey(m),
        What::Demo { python } => {
            demo_scene(&cfg.home, &python)?;
            Ok(ExitCode::SUCCESS)
        }
        What::Cleanup => {
            let done = plumb_chaos::cleanup_leftovers(&cfg.home)?;
            if done.is_empty() {
                outln!("nothing left behind");
            }
            for d in done {
                outln!("undone: {d}");
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Run {
            scenario,
            json,
            report,
            quiet,
        } => run(&cfg, scenario, json, report, quiet),
    }
}

fn run(
    cfg: &Config,
    scenario: PathBuf,
    json: bool,
    html: Option<PathBuf>,
    quiet: bool,
) -> Result<ExitCode> {
    // A report that could not be written is found out before anything runs.
    if let Some(path) = &html {
        std::fs::File::create(path)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    // Never fails: a closed stderr (`2>&1 | head`) must not stop the run
    // half-way through, with faults still injected.
    let mut progress = |line: &str| {
        if !quiet {
            let _ = writeln!(std::io::stderr(), "plumb chaos: {line}");
        }
    };
    if plumb_chaos::ctk::is_experiment(&scenario) {
        let e = plumb_chaos::ctk::load(&scenario)?;
        let report =
            plumb_chaos::ctk::run(&e, scenario.display().to_string(), &mut progress, &stop);
        return finish(cfg, &report, json, html.as_deref(), quiet, None);
    }
    // The file is checked before anything (even the replay) is done; the
    // replay comes before the preflight, which would otherwise refuse a
    // directory a killed run left its tmpfs on.
    let s = plumb_chaos::load(&scenario)?;
    for d in plumb_chaos::cleanup_leftovers(&cfg.home)? {
        let _ = writeln!(
            std::io::stderr(),
            "plumb chaos: undone from a run that did not finish: {d}"
        );
    }
    preflight(&s, &scenario)?;
    let dispatch = remote_dispatch(cfg, &s, &scenario)?;
    let home = cfg.home.clone();
    let runs = move |name: &str| -> Result<Vec<u32>> { run_pids(&home, name) };
    let live = Live::start(cfg);
    let title = s.title.clone();
    let report = plumb_chaos::run(
        &s,
        plumb_chaos::Options {
            home: cfg.home.clone(),
            runs: &runs,
            progress: &mut progress,
            on_fault: &mut |f| live.send(fault_event(&title, f, f.removed.is_some())),
            remote: dispatch
                .as_ref()
                .map(|d| d as &plumb_chaos::remote::Dispatch),
            stop,
            scenario: scenario.display().to_string(),
        },
    )?;
    finish(cfg, &report, json, html.as_deref(), quiet, Some(live))
}

/// How long the collector waits for a node's agent to take a fault (its
/// poll returns at once when the request is posted).
const AGENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// For a scenario with targets on other nodes: checks, before anything is
/// injected, that a collector is configured and knows every such node,
/// and returns what hands each of their faults to the node's agent
/// through it (`POST /api/v1/chaos/inject`). `None` when every target is
/// this machine's.
#[allow(clippy::type_complexity)]
fn remote_dispatch(
    cfg: &Config,
    s: &plumb_chaos::Scenario,
    path: &std::path::Path,
) -> Result<Option<Box<dyn Fn(&str, &ChaosOrder) -> Result<ChaosInjected>>>> {
    // (line, what is on the node, the node): targets with `node`, and
    // cpu and memory faults with their own.
    let remote: Vec<(usize, String, String)> = s
        .targets
        .iter()
        .filter_map(|t| Some((t.line, format!("target `{}`", t.name), t.node.clone()?)))
        .chain(s.faults.iter().filter_map(|f| {
            Some((
                f.line,
                format!("fault {}", f.kind.as_str()),
                f.node.clone()?,
            ))
        }))
        .collect();
    let Some(first) = remote.first() else {
        return Ok(None);
    };
    let Some(url) = cfg.collector.clone() else {
        anyhow::bail!(
            "{}:{}: {} is on node {}: it goes through a collector to that node's agent, and none is configured: set PLUMB_COLLECTOR or `collector =` in plumb.toml (nothing was injected)",
            path.display(),
            first.0,
            first.1,
            first.2
        );
    };
    let url = url.trim_end_matches('/').to_string();
    let client = crate::target::client(cfg, &url)?;
    let nodes = crate::cmd::nodes::fetch(&client)
        .with_context(|| format!("asking {url} which nodes it knows (nothing was injected)"))?;
    for (line, what, node) in &remote {
        if !nodes.iter().any(|n| &n.node == node) {
            anyhow::bail!(
                "{}:{line}: {what}: no node `{node}` is known to the collector {url} (plumb nodes lists them; is `plumb agent --name {node} --allow-chaos` running there?); nothing was injected",
                path.display(),
            );
        }
    }
    let asked = plumb_http::Client::new(&plumb_http::Config {
        timeout: AGENT_WAIT + std::time::Duration::from_secs(30),
        retry: plumb_http::Retry::NEVER,
        ..crate::target::client_config(cfg, &url)
    })?;
    Ok(Some(Box::new(move |node: &str, order: &ChaosOrder| {
        let query = ChaosQuery {
            node: node.to_string(),
            order: order.clone(),
            wait_ms: AGENT_WAIT.as_millis() as u64,
        };
        let resp = asked
            .post("/api/v1/chaos/inject")
            .json(&query)
            .send()
            .with_context(|| {
                format!(
                    "asking {url} to have node {node}'s agent {} `{}`",
                    order.kind.as_str(),
                    order.target
                )
            })?;
        serde_json::from_slice::<ChaosInjected>(&resp.body).map_err(|e| {
            anyhow::Error::from(resp.decode_error(format!("{e} (is it a plumb collector?)")))
        })
    })))
}

/// One OTLP log record.
fn record(ts: &str, severity: (u8, &str), body: String, attrs: &[(&str, &str)]) -> Value {
    let ns = plumb_model::Timestamp::parse_rfc3339(ts)
        .map(|t| t.as_nanos())
        .unwrap_or_else(|_| plumb_model::Timestamp::now().as_nanos());
    let attributes: Vec<Value> = attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    json!({
        "timeUnixNano": ns.to_string(),
        "observedTimeUnixNano": ns.to_string(),
        "severityNumber": severity.0,
        "severityText": severity.1,
        "body": {"stringValue": body},
        "attributes": attributes,
    })
}

const INFO: (u8, &str) = (9, "INFO");
const WARN: (u8, &str) = (13, "WARN");

/// One fault's injection (`removed` false) or removal as an OTLP log
/// record, at its own UTC time; `None` when that did not happen.
fn fault_event(title: &str, f: &plumb_chaos::FaultReport, removed: bool) -> Option<Value> {
    let mut base = vec![
        ("plumb.chaos.title", title),
        ("plumb.chaos.kind", f.kind.as_str()),
        ("plumb.chaos.target", f.on.as_str()),
    ];
    // A fault a node's agent carried out names the node.
    let node = match &f.node {
        Some(n) => {
            base.push(("plumb.chaos.node", n.as_str()));
            format!(" node={n}")
        }
        None => String::new(),
    };
    if removed {
        let at = f.removed.as_ref()?;
        Some(record(
            at,
            INFO,
            format!(
                "chaos_removed kind={} on={}{node}: {}",
                f.kind, f.on, f.removal
            ),
            &base,
        ))
    } else {
        let at = f.injected.as_ref()?;
        Some(record(
            at,
            INFO,
            format!(
                "chaos_injected kind={} on={}{node}: {}",
                f.kind, f.on, f.action
            ),
            &base,
        ))
    }
}

/// The run's verdict as an OTLP log record.
fn verdict_event(report: &plumb_chaos::Report) -> Value {
    let title = report.title.as_str();
    let verdict = match &report.first_deviation {
        Some(d) => format!(
            "chaos_verdict {} title={title:?}: first deviation {}: {}",
            report.verdict, d.probe, d.detail
        ),
        None => format!("chaos_verdict {} title={title:?}", report.verdict),
    };
    record(
        &report.ended,
        if report.held { INFO } else { WARN },
        verdict,
        &[
            ("plumb.chaos.title", title),
            ("plumb.chaos.verdict", &report.verdict),
        ],
    )
}

/// Log records as an OTLP/HTTP JSON body (`service.name = plumb-chaos`),
/// so they stand on the collector's timeline beside the application's.
fn envelope(records: Vec<Value>) -> Value {
    json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "plumb-chaos"}},
                {"key": "host.name", "value": {"stringValue": plumb_stack::hostname()}},
            ]},
            "scopeLogs": [{
                "scope": {"name": "plumb.chaos", "version": env!("CARGO_PKG_VERSION")},
                "logRecords": records,
            }],
        }],
    })
}

/// The run's injections, removals and verdict, in that order per fault.
fn all_events(report: &plumb_chaos::Report) -> Vec<Value> {
    let mut records: Vec<Value> = report
        .faults
        .iter()
        .flat_map(|f| {
            [false, true]
                .into_iter()
                .filter_map(|removed| fault_event(&report.title, f, removed))
        })
        .collect();
    records.push(verdict_event(report));
    records
}

/// Posts log records to the collector.
fn post_events(cfg: &Config, url: &str, records: Vec<Value>) -> Result<()> {
    let body = envelope(records).to_string();
    plumb_http::Client::new(&crate::target::client_config(cfg, url))?
        .post(plumb_proxy::LOGS_PATH)
        .bytes("application/json", body)
        .send()?;
    Ok(())
}

/// Sends each injection and removal to the collector as it happens, from
/// a thread of its own, so a slow collector never delays a fault. After
/// the first failure it stops trying; what it could not send goes with the
/// verdict at the end.
struct Live {
    tx: Option<std::sync::mpsc::Sender<Value>>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<Value>)>>,
}

impl Live {
    fn start(cfg: &Config) -> Live {
        let Some(url) = cfg.collector.clone() else {
            return Live {
                tx: None,
                thread: None,
            };
        };
        let cfg = cfg.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Value>();
        let thread = std::thread::Builder::new()
            .name("chaos-events".into())
            .spawn(move || {
                let (mut sent, mut unsent, mut failing) = (0, Vec::new(), false);
                for r in rx {
                    if !failing && post_events(&cfg, &url, vec![r.clone()]).is_ok() {
                        sent += 1;
                    } else {
                        failing = true;
                        unsent.push(r);
                    }
                }
                (sent, unsent)
            })
            .ok();
        Live {
            tx: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    fn send(&self, record: Option<Value>) {
        if let (Some(tx), Some(r)) = (&self.tx, record) {
            let _ = tx.send(r);
        }
    }

    /// How many were sent, and those that were not.
    fn finish(mut self) -> (usize, Vec<Value>) {
        drop(self.tx.take());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// With a collector configured, sends the run's events to it (those the
/// live sender could not, and the verdict; `live` None: all of them); a
/// collector that is away costs a warning, never the verdict.
fn ship(cfg: &Config, report: &plumb_chaos::Report, live: Option<Live>) {
    let Some(url) = cfg.collector.clone() else {
        return;
    };
    let (before, records) = match live {
        Some(l) => {
            let (sent, mut unsent) = l.finish();
            unsent.push(verdict_event(report));
            (sent, unsent)
        }
        None => (0, all_events(report)),
    };
    let count = records.len();
    match post_events(cfg, &url, records) {
        Ok(()) => {
            let _ = writeln!(
                std::io::stderr(),
                "plumb chaos: {} event(s) sent to {url}",
                before + count
            );
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "plumb chaos: warning: cannot send the events to the collector {url}: {e:#}"
            );
        }
    }
}

/// Links to the collector's dashboard for each fault's window: the
/// timeline from 5 s before the injection to 5 s after the removal, and
/// the search of the run's events.
fn add_links(url: &str, report: &mut plumb_chaos::Report) {
    let base = url.trim_end_matches('/');
    let shift = |at: &str, by: i64| {
        plumb_model::Timestamp::parse_rfc3339(at)
            .map(|t| plumb_model::Timestamp::from_nanos(t.as_nanos() + by).to_rfc3339())
            .unwrap_or_else(|_| at.to_string())
    };
    for f in &mut report.faults {
        let (Some(from), Some(to)) = (f.injected.clone(), f.removed.clone().or(f.injected.clone()))
        else {
            continue;
        };
        let since = shift(&from, -5_000_000_000);
        let until = shift(&to, 5_000_000_000);
        f.links.push((
            "timeline".into(),
            format!(
                "{base}/timeline?since={}&until={}",
                plumb_http::encode_segment(&since),
                plumb_http::encode_segment(&until)
            ),
        ));
        f.links
            .push(("events".into(), format!("{base}/search?q=chaos_injected")));
    }
}

/// Writes the report (HTML file, then stdout) and gives the exit code.
fn finish(
    cfg: &Config,
    report: &plumb_chaos::Report,
    json: bool,
    html: Option<&std::path::Path>,
    quiet: bool,
    live: Option<Live>,
) -> Result<ExitCode> {
    ship(cfg, report, live);
    let mut report = report.clone();
    if let Some(url) = &cfg.collector {
        add_links(url, &mut report);
    }
    let report = &report;
    if let Some(path) = html {
        std::fs::write(path, report.html())
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        if !quiet {
            let _ = writeln!(
                std::io::stderr(),
                "plumb chaos: report written to {}",
                path.display()
            );
        }
    }
    // Written with `?`, so a reader that went away (`| head`) ends the
    // command quietly (main treats a broken pipe as success).
    let mut stdout = crate::out::stdout();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(report)?)?;
    } else {
        stdout.write_all(report.text().as_bytes())?;
    }
    stdout.flush()?;
    Ok(if report.held {
        ExitCode::SUCCESS
    } else if report.verdict == "stopped" {
        // SIGINT or SIGTERM: every fault was removed, then we stop.
        ExitCode::from(crate::exit::INTERRUPTED)
    } else {
        ExitCode::from(1)
    })
}

/// [`plumb_chaos::preflight`], its errors naming the file as parsing's do.
fn preflight(
    s: &plumb_chaos::Scenario,
    path: &std::path::Path,
) -> Result<Vec<plumb_chaos::engine::Planned>> {
    plumb_chaos::preflight(s).map_err(|e| anyhow::anyhow!("{}:{e:#}", path.display()))
}

/// The pids of the running runs of this name on this host.
fn run_pids(home: &std::path::Path, name: &str) -> Result<Vec<u32>> {
    let store = Store::open_read_only(home)
        .with_context(|| format!("target run `{name}`: cannot open the store"))?;
    let here = plumb_stack::hostname();
    let running = store.list_runs(&RunFilter {
        name: Some(name.to_string()),
        state: Some(RunState::Running),
        ..RunFilter::default()
    })?;
    let pids: Vec<u32> = running
        .iter()
        .filter(|r| r.host == here)
        .filter_map(|r| store.get_run(r.id).ok())
        .filter(|r| plumb_stack::proc::is_run_process(r.pid, r.started.as_nanos()))
        .map(|r| r.pid)
        .collect();
    if pids.is_empty() {
        anyhow::bail!("no run named `{name}` is running on this host");
    }
    Ok(pids)
}

const DEMO_SERVICE: &str = include_str!("../../../../examples/chaos/service.py");
const DEMO_WORKER: &str = include_str!("../../../../examples/chaos/worker.py");
const DEMO_CHECKPOINT: &str = include_str!("../../../../python/plumb/checkpoint.py");

/// `plumb demo`'s chaos scene (and `plumb chaos demo`): the example service
/// behind a link and the checkpointing worker, both started by plumb; a
/// kill, an eviction and a latency spike; the summary and where the HTML
/// report is. Everything started is stopped before it returns.
pub fn demo_scene(home: &std::path::Path, python: &std::path::Path) -> Result<()> {
    let dir = home.join("demo").join("chaos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("plumb"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("service.py"), DEMO_SERVICE)?;
    std::fs::write(dir.join("worker.py"), DEMO_WORKER)?;
    std::fs::write(dir.join("plumb/__init__.py"), "")?;
    std::fs::write(dir.join("plumb/checkpoint.py"), DEMO_CHECKPOINT)?;
    let port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (service, link) = (port()?, port()?);
    let py = python.display().to_string();
    let scenario = format!(
        r#"title = "the service answers within 150 ms through its link"
duration = "4500ms"
seed = 1
interval = "250ms"
settle = "500ms"

[[target]]
name = "service"
command = [{py:?}, "service.py", "--port", "{service}"]
ready = "127.0.0.1:{service}"
restart = true

[[target]]
name = "worker"
command = [{py:?}, "worker.py", "--dir", "checkpoints"]
restart = true

[[link]]
name = "api"
listen = "127.0.0.1:{link}"
upstream = "127.0.0.1:{service}"

[[probe]]
name = "health"
http = "http://127.0.0.1:{link}/health"
max_latency = "150ms"

[[probe]]
name = "worker without tracebacks"
log = "Traceback"
target = "worker"
absent = true

[[fault]]
kind = "kill"
target = "service"
at = "500ms"

[[fault]]
kind = "evict"
target = "worker"
grace = "1s"
at = "1500ms"

[[fault]]
kind = "latency"
link = "api"
latency = "200ms"
at = "3s"
duration = "1s"
"#
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario)?;
    outln!(
        "== chaos: a kill, an eviction and a latency spike against a small service and worker =="
    );
    outln!(
        "$ plumb chaos run {} --report {}",
        path.display(),
        dir.join("report.html").display()
    );
    let s = plumb_chaos::load(&path)?;
    let none = |_: &str| -> Result<Vec<u32>> { Ok(Vec::new()) };
    let mut progress = |_: &str| {};
    let report = plumb_chaos::run(
        &s,
        plumb_chaos::Options {
            home: home.to_path_buf(),
            runs: &none,
            progress: &mut progress,
            on_fault: &mut |_| {},
            remote: None,
            stop: Arc::new(AtomicBool::new(false)),
            scenario: path.display().to_string(),
        },
    )?;
    let html = dir.join("report.html");
    std::fs::write(&html, report.html())
        .with_context(|| format!("cannot write {}", html.display()))?;
    for f in &report.faults {
        let what = match &f.first_deviation {
            Some(d) => format!("deviated: {}: {}", d.probe, d.detail),
            None => f.verdict.clone(),
        };
        outln!("  {:<8} {:<8} {}", f.kind, f.on, f.action);
        outln!("  {:<8} {:<8} -> {what}", "", "");
    }
    outln!(
        "  hypothesis: {} (plumb chaos exits 1 when it does not hold, so a scenario can gate CI)",
        report.verdict
    );
    outln!("  HTML report: {}", html.display());
    Ok(())
}
