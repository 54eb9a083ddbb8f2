//! `plumb rerun RUN`: do again exactly what a recorded run did, here: the
//! same command line, directory and environment, recorded as a new run
//! linked to the original (tag `rerun_of`), after saying how this host's
//! software differs from the run's.
//!
//! The environment is the recorded one, except that plumb's own settings
//! (`PLUMB_*`) come from the environment of `plumb rerun`, so the new run
//! is recorded where the user is now. Values plumb redacted were never
//! stored: each is taken from the current environment, or asked for at a
//! terminal, or the rerun is refused naming them.
//!
//! `--on-node` (with a collector) does it on the run's own node instead:
//! the collector hands the run to that node's agent (`POST /api/v1/rerun`,
//! admin), which starts `plumb run` there as the recorded user, in the
//! recorded directory (`plumb_agent::stacks::rerun`); this command prints
//! how the node's software differs from the run's, then waits, at most
//! `--timeout`, for the new run to end and says how it ended.

use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target};
use anyhow::{Context, Result, bail};
use plumb_model::rerun::{RerunOrder, RerunQuery, RerunStarted};
use plumb_model::{Fingerprint, Run, Uuid};
use plumb_store::RunStore;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `plumb rerun`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The run to do again (id, unique prefix, `last`, `last~N`).
    pub run: String,
    /// Print what would run (command, directory, environment changes and
    /// the software difference) without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Run it on the node it ran on, through the collector and that
    /// node's agent (started with --allow-reruns), as the same user in the
    /// same directory; needs an admin token when the collector has tokens.
    #[arg(long, conflicts_with_all = ["here", "dry_run"])]
    pub on_node: bool,
    /// Run it here (the default).
    #[arg(long)]
    pub here: bool,
    /// With --on-node: the node's name, when its agent is not named like
    /// the run's host.
    #[arg(long, requires = "on_node", value_name = "NAME")]
    pub node: Option<String>,
    /// With --on-node: how long to wait for the new run to end (it goes on
    /// after that; `plumb show ID` has it).
    #[arg(long, requires = "on_node", default_value = "1h", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns < 1_000_000_000 {
        return Err(format!("`{s}` is too short a timeout: use 1s or more"));
    }
    Ok(std::time::Duration::from_nanos(ns as u64))
}

/// The environment to run with: the recorded one with plumb's settings
/// from `current`, and each redacted value from `current` or `ask`
/// (`plumb_model::rerun::environment`). Returns the environment and what
/// was done to it, in words.
pub fn environment(
    recorded: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    plumb_model::rerun::environment(recorded, current, ask).map_err(|missing| {
        anyhow::anyhow!(
            "the run's environment had values plumb redacted and never stored: {}; set them in the environment of `plumb rerun` (they are taken from there), or run it at a terminal to be asked",
            missing.join(", ")
        )
    })
}

/// Asks for a secret at the terminal, without echo; `None` when there is
/// no terminal or nothing was typed.
fn ask_terminal(name: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a terminal (checked above); saved is a valid pointer.
    let have = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above; quiet is a copy of the terminal's settings.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    eprint!("plumb: {name} was redacted in the record; value (not shown, not stored): ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    let v = line.trim_end_matches(['\n', '\r']).to_string();
    (read.is_ok() && !v.is_empty()).then_some(v)
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    if a.on_node {
        return match a.source.target(&cfg)? {
            Target::Collector(client) => on_node(&cfg, client, &a),
            Target::Local => bail!(
                "--on-node asks the run's node through a collector, and none is configured: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml (without one, `plumb rerun RUN` runs it here)"
            ),
        };
    }
    let (run, recorded_fp) = match a.source.target(&cfg)? {
        Target::Collector(client) => {
            let store = plumb_collector::client::RemoteStore::new(client.into());
            load(&store, &a.run)?
        }
        Target::Local => {
            let store = crate::cmd::query::open_store(&cfg)?;
            load(&store, &a.run)?
        }
    };
    if run.argv.is_empty() {
        bail!(
            "run {} recorded no command line (it never started: {}), so there is nothing to do again",
            run.id,
            run.launch_error.as_deref().unwrap_or("no command")
        );
    }
    let cwd = Path::new(&run.cwd);
    if !cwd.is_dir() {
        bail!(
            "run {} ran in {}, which does not exist here; a rerun happens in the same directory",
            run.id,
            run.cwd
        );
    }
    let here = plumb_record::host::hostname();
    eprintln!(
        "plumb: rerunning {} ({}) from {} on {}, in {}",
        run.id, run.name, run.started, run.host.hostname, run.cwd
    );
    if run.host.hostname != here {
        eprintln!(
            "plumb: note: the run was recorded on {}; this is {here}",
            run.host.hostname
        );
    }
    let current: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut ask = |k: &str| if a.dry_run { None } else { ask_terminal(k) };
    let (env, notes) = environment(&run.env, &current, &mut ask)?;
    for n in &notes {
        eprintln!("plumb: {n}");
    }
    software_changes(&cfg, &run, recorded_fp.as_ref(), cwd, &env);
    let exe = std::env::current_exe().context("finding plumb's own executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(plumb_model::rerun::run_args(
        &RerunOrder::of(&run, Uuid::nil()),
        None,
    ));
    if a.dry_run {
        eprintln!(
            "plumb: would run in {}: {}",
            run.cwd,
            shell_words(&run.argv)
        );
        return Ok(ExitCode::SUCCESS);
    }
    cmd.current_dir(cwd).env_clear().envs(&env);
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::from(crate::exit::TROUBLE),
    })
}

/// How long the collector waits for the node's agent to start the rerun
/// (its poll returns at once when the request is posted).
const AGENT_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// `--on-node`: the node's software difference, the request through the
/// collector, then the wait for the new run to end (bounded by
/// `--timeout`).
fn on_node(cfg: &Config, client: plumb_http::Client, a: &Args) -> Result<ExitCode> {
    let url = client.base().trim_end_matches('/').to_string();
    let store = plumb_collector::client::RemoteStore::new(client.clone().into());
    let (run, recorded_fp) = load(&store, &a.run)?;
    let node = a.node.clone().unwrap_or_else(|| run.host.hostname.clone());
    let who = if run.user.name.is_empty() {
        format!("uid {}", run.user.uid)
    } else {
        run.user.name.clone()
    };
    eprintln!(
        "plumb: rerunning {} ({}) from {} on node {node}, in {}, as {who}",
        run.id, run.name, run.started, run.cwd
    );
    node_software_changes(cfg, &client, &node, recorded_fp.as_ref());
    let started = std::time::Instant::now();
    let query = RerunQuery {
        run: run.id.to_string(),
        node: a.node.clone(),
        wait_ms: AGENT_WAIT.min(a.timeout).as_millis() as u64,
    };
    let asked = plumb_http::Client::new(&plumb_http::Config {
        timeout: AGENT_WAIT + std::time::Duration::from_secs(30),
        retry: plumb_http::Retry::NEVER,
        ..crate::target::client_config(cfg, &url)
    })?;
    let resp = asked
        .post("/api/v1/rerun")
        .json(&query)
        .send()
        .with_context(|| format!("asking {url} to rerun {} on node {node}", run.id))?;
    let s: RerunStarted = serde_json::from_slice(&resp.body).map_err(|e| {
        anyhow::Error::from(resp.decode_error(format!("{e} (is it a plumb collector?)")))
    })?;
    let page = format!("{url}/runs/{}", s.run_id);
    eprintln!(
        "plumb: node {} started it as run {} (pid {} there): {page}",
        s.node, s.run_id, s.pid
    );
    // Bounded by --timeout; each turn waits 250 ms.
    let path = format!("/api/v1/runs/{}", s.run_id);
    let mut failures = 0u32;
    let mut seen = false;
    let ended = loop {
        match client.get(&path).send() {
            Ok(r) => {
                failures = 0;
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .with_context(|| format!("reading run {} from {url}", s.run_id))?;
                let new: Run = serde_json::from_value(v["run"].clone())
                    .with_context(|| format!("reading run {} from {url}", s.run_id))?;
                if !seen {
                    seen = true;
                    eprintln!(
                        "plumb: run {} reached the collector; waiting for it to end",
                        s.run_id
                    );
                }
                if new.state.is_final() {
                    break Some(new);
                }
            }
            // Not shipped yet.
            Err(e) if e.status() == Some(404) => {}
            Err(e) => {
                failures += 1;
                if failures >= 20 {
                    return Err(anyhow::Error::from(e).context(format!(
                        "waiting for run {} at {url} (it goes on on node {}: plumb show {} later)",
                        s.run_id, s.node, s.run_id
                    )));
                }
            }
        }
        if started.elapsed() >= a.timeout {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let Some(new) = ended else {
        eprintln!(
            "plumb: run {} {} after {} (--timeout); it goes on on node {}: plumb show {} or {page}",
            s.run_id,
            if seen {
                "has not ended"
            } else {
                "has not reached the collector"
            },
            plumb_model::display::duration(a.timeout.as_nanos() as i64),
            s.node,
            s.run_id
        );
        return Ok(ExitCode::from(crate::exit::TROUBLE));
    };
    let how = match &new.exit {
        Some(e) => plumb_model::display::exit_status(e),
        None => new.state.as_str().to_string(),
    };
    outln!(
        "run {} (rerun of {}) on node {}: {}, {how}",
        new.id,
        run.id,
        s.node,
        new.state.as_str()
    );
    outln!("{page}");
    Ok(match new.exit.as_ref().and_then(|e| e.code) {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::from(crate::exit::TROUBLE),
    })
}

/// Prints how node `node`'s software, as its agent last sent it, differs
/// from what the run had.
fn node_software_changes(
    cfg: &Config,
    client: &plumb_http::Client,
    node: &str,
    recorded: Option<&Fingerprint>,
) {
    let Some(recorded) = recorded else {
        eprintln!("plumb: the run's software fingerprint is not stored; cannot say what changed");
        return;
    };
    let target = Target::Collector(client.clone());
    let mut now = match crate::cmd::env::node_fingerprint(cfg, &target, node) {
        Ok(Some((_, fp))) => fp,
        Ok(None) => {
            eprintln!("plumb: node {node} is not known to the collector; cannot say what changed");
            return;
        }
        Err(e) => {
            eprintln!("plumb: cannot say what changed on node {node}: {e:#}");
            return;
        }
    };
    // A node's fingerprint has no program, no repository and the Python
    // on its PATH: compare what both have.
    let mut then = recorded.clone();
    then.executable = None;
    then.git = None;
    now.executable = None;
    now.git = None;
    if then.python.is_none() {
        now.python = None;
    }
    print_changes(&then, now, &format!("node {node}'s software"));
}

fn load<S: RunStore>(store: &S, reference: &str) -> Result<(Run, Option<Fingerprint>)> {
    let run = store.get_run(store.resolve(reference)?)?;
    let fp = store.run_fingerprint(&run)?;
    Ok((run, fp))
}

/// Prints how this host's software (for the run's command, from its
/// directory) differs from what the run had.
fn software_changes(
    cfg: &Config,
    run: &Run,
    recorded: Option<&Fingerprint>,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) {
    let Some(recorded) = recorded else {
        eprintln!("plumb: the run's software fingerprint is not stored; cannot say what changed");
        return;
    };
    let argv: Vec<OsString> = run.argv.iter().map(OsString::from).collect();
    // With the environment the program will get (its PYTHONPATH, say).
    let env: Vec<(OsString, OsString)> = env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let (_, now) = crate::cmd::env::capture_in(cfg, None, &argv, cwd, env);
    print_changes(recorded, now, "the software");
}

/// Prints the difference between the recorded software and `now`.
fn print_changes(recorded: &Fingerprint, mut now: Fingerprint, what: &str) {
    // The libraries a program maps are known only while it runs: compare
    // everything else.
    let mut then = recorded.clone();
    then.libraries.clear();
    now.libraries.clear();
    let differences = plumb_model::diff::diff_fingerprints(&then, &now);
    if differences.is_empty() {
        eprintln!("plumb: {what} is the same as when the run was recorded");
        return;
    }
    let mut s = String::new();
    plumb_model::diff::render_differences(&mut s, &differences);
    eprintln!(
        "plumb: {what} changed since the run was recorded (then -> now):{}",
        plumb_model::text::escape_controls(s.trim())
            .lines()
            .map(|l| format!("\nplumb:   {l}"))
            .collect::<String>()
    );
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_value_nobody_gives_is_refused_by_name() {
        let secret = format!("{}x]", plumb_model::REDACTED_PREFIX);
        let recorded: BTreeMap<String, String> = [("API_KEY".to_string(), secret)].into();
        let e = environment(&recorded, &BTreeMap::new(), &mut |_| None).unwrap_err();
        assert!(e.to_string().contains("API_KEY"), "{e}");
        assert!(e.to_string().contains("plumb rerun"), "{e}");
    }
}
