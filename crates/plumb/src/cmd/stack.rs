//! `plumb stack`: what every process of a job is doing right now, on this
//! machine, with identical stacks grouped (`plumb_stack` takes the
//! snapshot, `plumb_model::stack` groups and renders it).

use crate::config::Config;
use anyhow::{Result, bail};
use plumb_model::stack::StackSnapshot;
use plumb_model::{Run, RunState};
use plumb_store::RunFilter;
use plumb_store::prelude::*;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `plumb stack`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "run", "name"])))]
pub struct Args {
    /// The process (and every descendant of it) to look at.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// A running run recorded on this machine (id or unique prefix).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Every running run of this name recorded on this machine.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the snapshot and its groups as JSON.
    #[arg(long)]
    pub json: bool,
    /// Add each Python frame's local variables (py-spy dump --locals).
    #[arg(long)]
    pub locals: bool,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let roots = local_roots(a.pid, a.run.as_deref(), a.name.as_deref())?;
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
            let cfg = Config::load()?;
            let store = crate::cmd::query::open_store(&cfg)?;
            let run = plumb_store::RunStore::get_run(
                &store,
                plumb_store::RunStore::resolve(&store, reference)?,
            )?;
            vec![local_pid(&run)?]
        }
        (None, None, Some(name)) => {
            let cfg = Config::load()?;
            let store = crate::cmd::query::open_store(&cfg)?;
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
                .filter(|r| r.pid != 0 && plumb_stack::proc::exists(r.pid))
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
