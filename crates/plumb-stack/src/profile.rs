//! Sampled CPU profiles of a process tree: every process sampled over the
//! same window, at once, `py-spy record` for Python processes and `perf
//! record` for the others, each tool's samples folded into
//! [`plumb_model::profile::Folded`] stacks. As with snapshots, what cannot
//! be sampled is said per process and never fails the whole profile.

use crate::tools::{self, Direct, Found};
use crate::{hostname, proc, tree};
use plumb_model::Timestamp;
use plumb_model::profile::{Folded, ProcessProfile, Profile, parse_folded};
use plumb_model::stack::{Missing, MissingReason, StackKind};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WHAT: &str = "cpu samples";

/// How a profile is taken.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// How long each process is sampled (whole seconds: py-spy counts in
    /// seconds).
    pub duration: Duration,
    /// Samples a second.
    pub rate_hz: u32,
    /// Also sample Python threads that are waiting (sleeping, blocked on
    /// I/O or a lock): a wall-clock profile rather than a CPU one.
    pub idle: bool,
    /// Keep Python frames apart by the line running rather than folding
    /// each function into one frame (named by its `def` line).
    pub lines: bool,
    /// Where tools are looked up (`PATH`); the process's own when `None`.
    pub path: Option<OsString>,
    /// The host name put on every process; this host's when empty.
    pub host: String,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            duration: Duration::from_secs(10),
            rate_hz: 100,
            idle: false,
            lines: false,
            path: None,
            host: String::new(),
        }
    }
}

/// Samples every process under `roots` for `opts.duration`, all at once
/// (one thread per process, since each tool blocks for the whole window).
pub fn profile(roots: &[u32], opts: &ProfileOptions) -> Profile {
    let taken = Timestamp::now();
    let pids = tree(roots);
    let host = if opts.host.is_empty() {
        hostname()
    } else {
        opts.host.clone()
    };
    let found = Found::look_up(opts.path.as_deref());
    let scratch = tempfile::Builder::new().prefix("plumb-profile").tempdir();
    let processes = std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .iter()
            .map(|&pid| {
                let (host, found, scratch) = (&host, &found, &scratch);
                scope.spawn(move || {
                    let mut p = one(pid, opts, found, scratch.as_ref().ok().map(|d| d.path()));
                    p.host = host.clone();
                    p
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&pids)
            .map(|(h, &pid)| {
                h.join().unwrap_or_else(|_| ProcessProfile {
                    pid,
                    missing: vec![missing(
                        MissingReason::Failed,
                        "the sampler panicked".into(),
                    )],
                    ..ProcessProfile::default()
                })
            })
            .collect()
    });
    Profile {
        taken,
        duration_ms: u64::try_from(opts.duration.as_millis()).unwrap_or(u64::MAX),
        rate_hz: opts.rate_hz,
        processes,
    }
}

fn missing(reason: MissingReason, detail: String) -> Missing {
    Missing {
        what: WHAT.into(),
        reason,
        detail,
    }
}

/// One process, sampled by the tool for its kind.
fn one(pid: u32, opts: &ProfileOptions, found: &Found, scratch: Option<&Path>) -> ProcessProfile {
    let facts = proc::facts(pid);
    let mut p = ProcessProfile {
        pid,
        command: facts.command.clone(),
        ..ProcessProfile::default()
    };
    if facts
        .missing
        .iter()
        .any(|m| m.reason == MissingReason::Gone)
        || facts.state == "zombie"
    {
        p.missing.push(missing(
            MissingReason::Gone,
            format!("process {pid} ended before it could be sampled"),
        ));
        return p;
    }
    let Some(scratch) = scratch else {
        p.missing.push(missing(
            MissingReason::Failed,
            "no scratch directory for the samples could be made (is the temporary directory writable?)".into(),
        ));
        return p;
    };
    let result = if facts.python {
        p.kind = Some(StackKind::Python);
        python(pid, opts, found, scratch)
    } else {
        p.kind = Some(StackKind::Native);
        native(pid, opts, found, scratch)
    };
    match result {
        Ok(stacks) => p.stacks = stacks,
        Err(m) => p.missing.push(m),
    }
    p
}

/// A tool's limit: the window and time to start and write out.
fn limit(opts: &ProfileOptions) -> Duration {
    opts.duration + Duration::from_secs(20)
}

fn seconds(opts: &ProfileOptions) -> String {
    opts.duration.as_secs_f64().ceil().max(1.0).to_string()
}

fn python(
    pid: u32,
    opts: &ProfileOptions,
    found: &Found,
    scratch: &Path,
) -> Result<Vec<Folded>, Missing> {
    let Some(py_spy) = &found.py_spy else {
        return Err(missing(
            MissingReason::NotInstalled,
            "py-spy is not installed (not on PATH): pip install py-spy".into(),
        ));
    };
    let file = scratch.join(format!("{pid}.folded"));
    let mut cmd = Command::new(py_spy);
    cmd.args(["record", "--format", "raw", "--pid", &pid.to_string()])
        .args(["--duration", &seconds(opts)])
        .args(["--rate", &opts.rate_hz.to_string()])
        .arg("--output")
        .arg(&file);
    if opts.idle {
        cmd.arg("--idle");
    }
    if !opts.lines {
        cmd.arg("--function");
    }
    let out = tools::run(cmd, "py-spy", WHAT, limit(opts), 64 * 1024, &Direct)?;
    // py-spy writes what it sampled even when the process ended during
    // the window; those samples are kept.
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(parse_folded(&text)),
        Err(_) if !out.success => Err(tools::failure(pid, "py-spy", WHAT, &out)),
        Err(e) => Err(missing(
            MissingReason::Failed,
            format!("py-spy wrote no samples file ({e})"),
        )),
    }
}

fn native(
    pid: u32,
    opts: &ProfileOptions,
    found: &Found,
    scratch: &Path,
) -> Result<Vec<Folded>, Missing> {
    let Some(perf) = &found.perf else {
        return Err(missing(
            MissingReason::NotInstalled,
            "perf is not installed (not on PATH): apt install linux-perf".into(),
        ));
    };
    let data = scratch.join(format!("{pid}.perf"));
    // cpu-clock is a software event: it works in virtual machines that
    // give no hardware counters, where perf's default event records
    // nothing.
    let mut cmd = Command::new(perf);
    cmd.args(["record", "-q", "-e", "cpu-clock", "-g"])
        .args(["-F", &opts.rate_hz.to_string()])
        .args(["-p", &pid.to_string()])
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &seconds(opts)]);
    let out = tools::run(cmd, "perf", WHAT, limit(opts), 64 * 1024, &Direct)?;
    if !out.success || !data.exists() {
        return Err(tools::failure(pid, "perf", WHAT, &out));
    }
    let mut cmd = Command::new(perf);
    cmd.args(["script", "-F", "comm,pid,tid,ip,sym,dso", "-i"])
        .arg(&data);
    let script = tools::run(cmd, "perf", WHAT, limit(opts), 256 << 20, &Direct)?;
    if !script.success {
        return Err(tools::failure(pid, "perf", WHAT, &script));
    }
    Ok(fold_perf(&script.stdout))
}

/// `perf script` output (a header line per sample, then its frames
/// innermost first, a blank line after) folded into stacks, outermost
/// first. Addresses perf could not name keep their library's name.
pub(crate) fn fold_perf(text: &str) -> Vec<Folded> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    let mut frames: Vec<String> = Vec::new();
    let mut comm = String::new();
    let mut flush = |frames: &mut Vec<String>, comm: &str| {
        if frames.is_empty() && comm.is_empty() {
            return;
        }
        if frames.is_empty() {
            frames.push(comm.to_string());
        }
        frames.reverse();
        *merged.entry(frames.join(";")).or_insert(0) += 1;
        frames.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut frames, &comm);
            comm.clear();
        } else if !line.starts_with(char::is_whitespace) {
            flush(&mut frames, &comm);
            comm = line.split_whitespace().next().unwrap_or("?").to_string();
        } else {
            let t = line.trim();
            let rest = t.split_once(' ').map_or(t, |(_, r)| r.trim());
            let (sym, dso) = match rest.rfind(" (") {
                Some(i) => (&rest[..i], rest[i + 2..].trim_end_matches(')')),
                None => (rest, ""),
            };
            let sym = sym.rfind("+0x").map_or(sym, |i| &sym[..i]);
            let name = if sym.is_empty() || sym == "[unknown]" {
                let lib = Path::new(dso)
                    .file_name()
                    .map_or(dso.into(), |f| f.to_string_lossy());
                format!("[unknown] ({lib})")
            } else {
                sym.to_string()
            };
            frames.push(name.replace(';', ":"));
        }
    }
    flush(&mut frames, &comm);
    merged
        .into_iter()
        .map(|(stack, count)| Folded { stack, count })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_script_output_folds_outermost_first() {
        let text = "spin  5980/5980  \n\t            1152 spin (/tmp/spin)\n\t            1175 main (/tmp/spin)\n\t           2724a __libc_start_call_main (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\nspin  5980/5980  \n\t 1143 spin+0x1a (/tmp/spin)\n\t 1175 main (/tmp/spin)\n\t 2724a __libc_start_call_main (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\nspin 5980/5981\n\t ffff [unknown] (/usr/lib/libfoo.so.1)\n";
        let f = fold_perf(text);
        assert_eq!(
            f,
            vec![
                Folded {
                    stack: "[unknown] (libfoo.so.1)".into(),
                    count: 1
                },
                Folded {
                    stack: "__libc_start_call_main;main;spin".into(),
                    count: 2
                },
            ]
        );
    }
}
