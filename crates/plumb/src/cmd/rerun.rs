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

use crate::config::Config;
use crate::target::{SourceArgs, Target};
use anyhow::{Context, Result, bail};
use plumb_model::{Fingerprint, Run, is_redacted};
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
}

/// Variables `plumb run` sets for each run itself.
const PER_RUN: &[&str] = &["PLUMB_RUN_ID", "PLUMB_ATTEMPT", "PLUMB_CHECKPOINT_DIR"];

/// The environment to run with: the recorded one with plumb's settings
/// from `current`, and each redacted value from `current` or `ask`.
/// Returns the environment and what was done to it, in words.
pub fn environment(
    recorded: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut env = BTreeMap::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for (k, v) in recorded {
        if k.starts_with("PLUMB_") {
            continue;
        }
        if k == "OTEL_RESOURCE_ATTRIBUTES" {
            // plumb adds the run's id; the new run adds its own.
            let kept: Vec<&str> = v
                .split(',')
                .filter(|p| !p.trim().starts_with("plumb.run.id="))
                .collect();
            if !kept.is_empty() {
                env.insert(k.clone(), kept.join(","));
            }
            continue;
        }
        if is_redacted(v) {
            if let Some(now) = current.get(k) {
                notes.push(format!(
                    "{k}: redacted in the record, taken from the current environment"
                ));
                env.insert(k.clone(), now.clone());
            } else if let Some(given) = ask(k) {
                notes.push(format!("{k}: redacted in the record, as given"));
                env.insert(k.clone(), given);
            } else {
                missing.push(k.clone());
            }
            continue;
        }
        env.insert(k.clone(), v.clone());
    }
    if !missing.is_empty() {
        bail!(
            "the run's environment had values plumb redacted and never stored: {}; set them in the environment of `plumb rerun` (they are taken from there), or run it at a terminal to be asked",
            missing.join(", ")
        );
    }
    for (k, v) in current {
        if k.starts_with("PLUMB_") && !PER_RUN.contains(&k.as_str()) {
            env.insert(k.clone(), v.clone());
        }
    }
    Ok((env, notes))
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
    cmd.arg("run").arg("--name").arg(&run.name);
    for (k, v) in &run.tags {
        if k != "rerun_of" {
            cmd.arg("--tag").arg(format!("{k}={v}"));
        }
    }
    cmd.arg("--tag").arg(format!("rerun_of={}", run.id));
    for f in &run.inputs {
        cmd.arg("--input").arg(&f.path);
    }
    for f in &run.outputs {
        cmd.arg("--output").arg(&f.path);
    }
    for f in &run.config_files {
        cmd.arg("--config").arg(&f.path);
    }
    cmd.arg("--").args(run.argv.iter().map(OsString::from));
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
    let (_, mut now) = crate::cmd::env::capture_in(cfg, None, &argv, cwd, env);
    // The libraries a program maps are known only while it runs: compare
    // everything else.
    let mut then = recorded.clone();
    then.libraries.clear();
    now.libraries.clear();
    let differences = plumb_model::diff::diff_fingerprints(&then, &now);
    if differences.is_empty() {
        eprintln!("plumb: the software is the same as when the run was recorded");
        return;
    }
    let mut s = String::new();
    plumb_model::diff::render_differences(&mut s, &differences);
    eprintln!(
        "plumb: the software changed since the run was recorded (then -> now):{}",
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

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_recorded_environment_with_plumbs_settings_and_secrets_from_now() {
        let secret = format!("{}x]", plumb_model::REDACTED_PREFIX);
        let recorded = map(&[
            ("PATH", "/old/bin"),
            ("API_KEY", &secret),
            ("PLUMB_RUN_ID", "old"),
            ("PLUMB_HOME", "/old/home"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=x,plumb.run.id=old",
            ),
        ]);
        let current = map(&[
            ("PATH", "/new/bin"),
            ("API_KEY", "s3cret"),
            ("PLUMB_HOME", "/new/home"),
            ("PLUMB_RUN_ID", "mine"),
        ]);
        let (env, notes) = environment(&recorded, &current, &mut |_| None).unwrap();
        assert_eq!(env["PATH"], "/old/bin", "the record's, not today's");
        assert_eq!(env["API_KEY"], "s3cret");
        assert_eq!(env["PLUMB_HOME"], "/new/home");
        assert!(!env.contains_key("PLUMB_RUN_ID"));
        assert_eq!(env["OTEL_RESOURCE_ATTRIBUTES"], "service.name=x");
        assert_eq!(notes.len(), 1);

        let e = environment(&recorded, &map(&[]), &mut |_| None).unwrap_err();
        assert!(e.to_string().contains("API_KEY"), "{e}");
        let (env, _) =
            environment(&recorded, &map(&[]), &mut |k| Some(format!("typed-{k}"))).unwrap();
        assert_eq!(env["API_KEY"], "typed-API_KEY");
    }
}
