//! `plumb stack`: what every process of a job is doing right now, with
//! identical stacks grouped (`plumb_stack` takes a snapshot,
//! `plumb_model::stack` groups and renders it). With a collector (the
//! rule of `target.rs`), the collector asks every live node's agent, and
//! the nodes' snapshots come back merged into one; without one, or with
//! `--local`, this machine is looked at directly.

use crate::config::Config;
use crate::out::outln;
use crate::target::SourceArgs;
use anyhow::{Context, Result, bail};
use plumb_model::stack::{FleetStack, Silent, StackQuery, StackSnapshot, StackTarget};
use plumb_model::{Run, RunState};
use plumb_store::RunFilter;
use plumb_store::prelude::*;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `plumb stack`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["pid", "run", "name", "node"])))]
pub struct Args {
    /// The process (and every descendant of it) to look at: on this
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
    /// How long the collector waits for the nodes' answers (at most 50s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_wait)]
    pub wait: Duration,
    /// Print the snapshot and its groups as JSON.
    #[arg(long)]
    pub json: bool,
    /// Add each Python frame's local variables (py-spy dump --locals).
    #[arg(long)]
    pub locals: bool,
    /// Where to ask: a collector (every node) or, with --local, this machine.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// `--wait`: a positive duration no longer than the collector waits.
pub(crate) fn parse_wait(s: &str) -> Result<Duration, String> {
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns <= 0 {
        return Err(format!(
            "`{s}` leaves the nodes no time to answer: give a duration such as 5s"
        ));
    }
    let d = Duration::from_nanos(ns as u64);
    if d > Duration::from_secs(50) {
        return Err(format!("`{s}` is longer than the longest wait, 50s"));
    }
    Ok(d)
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    match a.source.collector_url(&cfg) {
        // A pid alone names a process of this machine.
        Some(url) if a.pid.is_none() || a.node.is_some() => fleet(&cfg, &url, &a),
        _ if a.node.is_some() => bail!(
            "--node asks a node's agent through the collector, and no collector is configured: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml"
        ),
        _ => local(&cfg, a),
    }
}

/// Through the collector: every live node (or `--node`) is asked, and
/// their snapshots come back merged.
fn fleet(cfg: &Config, url: &str, a: &Args) -> Result<ExitCode> {
    let target = fleet_target(a.pid, a.run.as_deref(), a.name.as_deref());
    let query = StackQuery {
        target: target.clone(),
        node: a.node.clone(),
        locals: a.locals,
        wait_ms: a.wait.as_millis() as u64,
        profile: None,
        preflight: None,
        labels: Default::default(),
        rerun: None,
        chaos: None,
    };
    let client = crate::target::client(cfg, url)?;
    let resp = client
        .post("/api/v1/stack")
        .json(&query)
        .send()
        .with_context(|| format!("asking {url} for the stacks of {}", target.describe()))?;
    let fleet: FleetStack = resp.json()?;
    if fleet.snapshot.processes.is_empty() {
        return Err(nobody_has(
            &target,
            &fleet.nothing_here,
            &fleet.not_answered,
        ));
    }
    if a.json {
        let mut out = crate::out::stdout();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "snapshot": fleet.snapshot,
                "groups": fleet.snapshot.groups(),
                "runs": fleet.runs,
                "answered": fleet.answered,
                "nothing_here": fleet.nothing_here,
                "not_answered": fleet.not_answered,
            }),
        )?;
        writeln!(out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    print(&fleet.snapshot, false)?;
    outln!();
    print_nodes(&fleet.answered, &fleet.nothing_here, &fleet.not_answered);
    if !fleet.runs.is_empty() {
        let ids: Vec<String> = fleet.runs.iter().map(|r| r.to_string()).collect();
        outln!(
            "attached  to run{} {}",
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--pid`, `--run`, `--name` (or none: every running run) ask the
/// nodes for (`plumb stack` and `plumb profile` alike).
pub(crate) fn fleet_target(pid: Option<u32>, run: Option<&str>, name: Option<&str>) -> StackTarget {
    match (pid, run, name) {
        (Some(pid), _, _) => StackTarget::Pid { pid },
        (None, Some(run), _) => StackTarget::Run { run: run.into() },
        (None, None, Some(name)) => StackTarget::Name { name: name.into() },
        (None, None, None) => StackTarget::Node,
    }
}

/// The error when no node had a process of `target`, naming the nodes
/// asked and those that did not answer.
pub(crate) fn nobody_has(
    target: &StackTarget,
    nothing_here: &[String],
    not_answered: &[Silent],
) -> anyhow::Error {
    let mut why = format!("no node has a running process for {}", target.describe());
    if !nothing_here.is_empty() {
        why.push_str(&format!(" (asked: {})", nothing_here.join(", ")));
    }
    for s in not_answered {
        why.push_str(&format!("; node {} did not answer: {}", s.node, s.why));
    }
    if nothing_here.is_empty() && not_answered.is_empty() {
        why.push_str(
            " (no node is known to the collector: is `plumb agent` running on the nodes?)",
        );
    }
    crate::exit::NotFound(why).into()
}

/// The nodes that answered, had nothing there, or did not answer.
pub(crate) fn print_nodes(answered: &[String], nothing_here: &[String], not_answered: &[Silent]) {
    outln!(
        "nodes     {} answered: {}",
        answered.len(),
        answered.join(", ")
    );
    if !nothing_here.is_empty() {
        outln!("          nothing there: {}", nothing_here.join(", "));
    }
    for s in not_answered {
        outln!("          NOT ANSWERING: {} ({})", s.node, s.why);
    }
}

/// This machine only: today's behaviour without a collector.
fn local(cfg: &Config, a: Args) -> Result<ExitCode> {
    let roots = local_roots(cfg, a.pid, a.run.as_deref(), a.name.as_deref())?;
    let snap = plumb_stack::snapshot(
        &roots,
        &plumb_stack::Options {
            locals: a.locals,
            ..plumb_stack::Options::default()
        },
    );
    print(&snap, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The root pids of what `--pid`, `--run` or `--name` points at on this
/// machine (`plumb stack` and `plumb profile` alike), or a clear refusal
/// saying where it is instead.
pub(crate) fn local_roots(
    cfg: &Config,
    pid: Option<u32>,
    run: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<u32>> {
    let roots = match (pid, run, name) {
        (Some(pid), _, _) => {
            if !plumb_stack::proc::exists(pid) {
                return Err(
                    crate::exit::NotFound(format!("no process {pid} on this machine")).into(),
                );
            }
            vec![pid]
        }
        (None, Some(reference), _) => {
            let store = crate::cmd::query::open_store(cfg)?;
            let run = plumb_store::RunStore::get_run(
                &store,
                plumb_store::RunStore::resolve(&store, reference)?,
            )?;
            vec![local_pid(&run)?]
        }
        (None, None, Some(name)) => {
            let store = crate::cmd::query::open_store(cfg)?;
            let here = plumb_stack::hostname();
            let running = store.list_runs(&RunFilter {
                name: Some(name.to_string()),
                state: Some(RunState::Running),
                ..RunFilter::default()
            })?;
            if running.is_empty() {
                return Err(crate::exit::NotFound(format!(
                    "no run named `{name}` is running (plumb ls --name {name} lists its runs)"
                ))
                .into());
            }
            let (local, elsewhere): (Vec<_>, Vec<_>) = running.iter().partition(|r| r.host == here);
            if local.is_empty() {
                let hosts: Vec<&str> = elsewhere.iter().map(|r| r.host.as_str()).collect();
                bail!(
                    "the running runs named `{name}` are on other hosts ({}), not on {here}: run plumb stack there",
                    hosts.join(", ")
                );
            }
            if !elsewhere.is_empty() {
                tracing::warn!(
                    count = elsewhere.len(),
                    "runs named `{name}` running on other hosts are left out"
                );
            }
            local
                .iter()
                .filter_map(|r| store.get_run(r.id).ok())
                .filter(|r| plumb_stack::proc::is_run_process(r.pid, r.started.as_nanos()))
                .map(|r| r.pid)
                .collect()
        }
        (None, None, None) => bail!("say what to look at: --pid PID, --run ID or --name NAME"),
    };
    if roots.is_empty() {
        bail!("the running runs' processes are gone (their recorder may have died)");
    }
    Ok(roots)
}

/// The pid of a run that is running on this machine; a clear refusal
/// otherwise, naming the run and where it is.
fn local_pid(run: &Run) -> Result<u32> {
    if run.state != RunState::Running {
        bail!(
            "run {} ({}) is {}, not running: there is nothing to look at (plumb show {} has what was recorded)",
            run.id,
            run.name,
            run.state.as_str(),
            run.id
        );
    }
    let here = plumb_stack::hostname();
    if run.host.hostname != here {
        bail!(
            "run {} ({}) runs on {}, not on this host ({here}): run plumb stack there",
            run.id,
            run.name,
            run.host.hostname
        );
    }
    if run.pid == 0 || !plumb_stack::proc::exists(run.pid) {
        bail!(
            "run {} ({}) is recorded as running, but its process {} is gone (its recorder may have died)",
            run.id,
            run.name,
            run.pid
        );
    }
    if !plumb_stack::proc::is_run_process(run.pid, run.started.as_nanos()) {
        bail!(
            "run {} ({}) is recorded as running, but process {} started long after or before it: that pid is another program's now (the run's recorder may have died)",
            run.id,
            run.name,
            run.pid
        );
    }
    Ok(run.pid)
}

fn print(snap: &StackSnapshot, json: bool) -> Result<()> {
    let mut out = crate::out::stdout();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "snapshot": snap, "groups": snap.groups() }),
        )?;
        writeln!(out)?;
    } else {
        out.write_all(snap.render().as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The demo's job: a lead starts three workers and works along with them;
/// one worker deadlocks on a lock it already holds. The others sleep in
/// short steps inside `crunch`, so the demo costs no CPU.
const DEMO_JOB: &str = r#"import subprocess, sys, threading, time

def crunch():
    while True:
        time.sleep(0.1)

def wait_for_lock(lock):
    lock.acquire()
    lock.acquire()  # never returns: the worker is stuck

if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "lead"
    if role == "lead":
        for r in ["worker", "worker", "stuck"]:
            subprocess.Popen([sys.executable, __file__, r])
    if role == "stuck":
        wait_for_lock(threading.Lock())
    crunch()
"#;

/// The `plumb demo` scene of a stuck worker: a job of four processes runs
/// under `plumb run` on demo-node-1 (recording into that agent's outbox,
/// `outbox`), and `plumb stack --name workers` through the collector groups
/// the three that work and singles out the stuck one. Returns the run's
/// process for the caller to stop with the other demo processes.
pub fn demo_scene(
    collector: &str,
    home: &std::path::Path,
    dir: &std::path::Path,
    outbox: &std::path::Path,
    python: &std::path::Path,
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let script = dir.join("workers.py");
    std::fs::write(&script, DEMO_JOB)?;
    let job = std::process::Command::new(&exe)
        .env("PLUMB_HOME", home)
        .env("PLUMB_COLLECTOR", collector)
        .env("PLUMB_OUTBOX", outbox)
        .args(["run", "--name", "workers", "--"])
        .arg(python)
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start the stuck-worker job")?;
    outln!("   started `workers` on demo-node-1: a lead and three workers, one stuck on a lock");
    outln!("── $ plumb stack --name workers --collector {collector}");
    // Bounded: the workers start and the agent sees the run within a
    // second or two; until then the answer may hold fewer processes.
    let mut last = String::new();
    for _ in 0..20 {
        let out = std::process::Command::new(&exe)
            .env("PLUMB_HOME", home)
            .args(["stack", "--name", "workers", "--collector", collector])
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run plumb stack")?;
        last = String::from_utf8_lossy(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .into_owned();
        if out.status.success() && last.starts_with("4 processes") && last.contains("odd one out") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    crate::out::out!("{last}");
    Ok(job)
}
