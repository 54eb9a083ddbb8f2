//! Finding and running the stack tools (py-spy, eu-stack, gdb): each call
//! in its own process group, with a time limit and an output cap; failures
//! turned into a [`Missing`] with the reason.

use plumb_model::stack::{Missing, MissingReason};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the tools and is told when each is reaped. The recorder, a child
/// subreaper that reaps children belonging to nobody, implements it to
/// register each tool as its own helper across the spawn.
pub trait Spawner: Sync {
    /// Spawns `cmd`.
    fn spawn(&self, cmd: &mut Command) -> io::Result<Child>;
    /// The tool with this pid has been reaped.
    fn reaped(&self, pid: u32);
}

/// Spawns tools directly.
#[derive(Debug, Clone, Copy)]
pub struct Direct;

impl Spawner for Direct {
    fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        cmd.spawn()
    }
    fn reaped(&self, _pid: u32) {}
}

/// The tools found on the search path.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// py-spy.
    pub py_spy: Option<PathBuf>,
    /// eu-stack (elfutils).
    pub eu_stack: Option<PathBuf>,
    /// gdb.
    pub gdb: Option<PathBuf>,
    /// perf (linux-perf), for native CPU profiles.
    pub perf: Option<PathBuf>,
}

impl Found {
    /// Looks each tool up on `path` (the process's `PATH` when `None`).
    pub fn look_up(path: Option<&OsStr>) -> Found {
        let path = path
            .map(|p| p.to_os_string())
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        Found {
            py_spy: which("py-spy", &path).map(|p| past_shim(p, "py-spy")),
            eu_stack: which("eu-stack", &path),
            gdb: which("gdb", &path),
            perf: which("perf", &path),
        }
    }
}

/// The program a version manager's shim would run, when `found` is a pyenv
/// or asdf shim (pip installs py-spy under pyenv, whose shim is a bash
/// script that starts pyenv, which takes about 170 ms each time against
/// py-spy's own 20 ms: a snapshot of 100 processes spent most of its time
/// in shims). The manager is asked once, from this directory, which is the
/// answer the shim would reach; `found` itself when it is no shim or the
/// manager does not answer.
pub fn past_shim(found: PathBuf, name: &str) -> PathBuf {
    let Some(manager) = shim_manager(&found) else {
        return found;
    };
    let mut cmd = Command::new(&manager);
    cmd.args(["which", name]);
    match run(
        cmd,
        "shim",
        name,
        Duration::from_secs(5),
        64 * 1024,
        &Direct,
    ) {
        Ok(out) if out.success => {
            let real = PathBuf::from(out.stdout.trim());
            if real.is_absolute() && real.is_file() {
                return real;
            }
            found
        }
        _ => found,
    }
}

/// The manager a shim script hands over to (`exec "/root/.pyenv/libexec/pyenv"
/// exec ...` or `exec /root/.asdf/bin/asdf exec ...`), if `path` is one.
fn shim_manager(path: &std::path::Path) -> Option<PathBuf> {
    if path.parent()?.file_name()? != "shims" {
        return None;
    }
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let text = std::str::from_utf8(head.get(..n)?).ok()?;
    if !text.starts_with("#!") {
        return None;
    }
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("exec ")?;
        let manager = rest.split_whitespace().next()?.trim_matches('"');
        let base = std::path::Path::new(manager).file_name()?;
        ((base == "pyenv" || base == "asdf") && rest.contains(" exec "))
            .then(|| PathBuf::from(manager))
    })
}

/// The first executable file named `name` in the directories of `path`.
pub fn which(name: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What a finished tool call produced.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited with 0.
    pub success: bool,
    /// Its stdout, up to the cap.
    pub stdout: String,
    /// Its stderr, up to the cap.
    pub stderr: String,
    /// Whether stdout was cut at the cap.
    pub cut: bool,
}

/// Runs `cmd` (stdin closed, output captured, its own process group) for at
/// most `limit`, reading at most `cap` bytes of each stream. A call over
/// its limit has its group SIGKILLed and is a [`MissingReason::TimedOut`].
pub fn run(
    mut cmd: Command,
    tool: &str,
    what: &str,
    limit: Duration,
    cap: usize,
    spawner: &dyn super::Spawner,
) -> Result<Output, Missing> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawner.spawn(&mut cmd).map_err(|e| Missing {
        what: what.into(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            MissingReason::NotInstalled
        } else {
            MissingReason::Failed
        },
        detail: format!("cannot run {tool}: {e}"),
    })?;
    let pid = child.id();
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (stdout, stderr, status) = std::thread::scope(|scope| {
        let out = scope.spawn(move || read_capped(out, cap));
        let err = scope.spawn(move || read_capped(err, cap));
        let deadline = Instant::now() + limit;
        // Bounded by the deadline; a tool over it is killed and then reaped.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    if let Ok(pgid) = i32::try_from(pid) {
                        // SAFETY: our own unreaped child's process group.
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    }
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        let o = out.join().unwrap_or_default();
        let e = err.join().unwrap_or_default();
        (o, e, status)
    });
    spawner.reaped(pid);
    let Some(status) = status else {
        return Err(Missing {
            what: what.into(),
            reason: MissingReason::TimedOut,
            detail: format!(
                "{tool} took longer than {:.0} s and was killed",
                limit.as_secs_f64()
            ),
        });
    };
    Ok(Output {
        success: status.success(),
        cut: stdout.1,
        stdout: String::from_utf8_lossy(&stdout.0).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.0).into_owned(),
    })
}

/// Reads a stream up to `cap` bytes, then drains the rest so the writer is
/// never blocked; returns the bytes and whether they were cut.
fn read_capped<R: Read>(r: Option<R>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut cut = false;
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                cut |= n > room;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (buf, cut)
}

/// Why attaching to a process is refused here, in words: Yama's
/// ptrace_scope when it restricts, else the capability.
pub fn ptrace_hint() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        Some(1) => "kernel.yama.ptrace_scope is 1 (only a parent may attach): run as root, give the tool CAP_SYS_PTRACE, or set it to 0".into(),
        Some(2) => "kernel.yama.ptrace_scope is 2 (only CAP_SYS_PTRACE may attach): run as root or give the tool CAP_SYS_PTRACE".into(),
        Some(3) => "kernel.yama.ptrace_scope is 3 (no attaching at all until reboot)".into(),
        _ => "the process belongs to another user, or this container lacks CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE)".into(),
    }
}

/// A failed tool call as a [`Missing`]: ptrace refused, the process gone,
/// or the tool's own message.
pub fn failure(pid: u32, tool: &str, what: &str, out: &Output) -> Missing {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let lower = text.to_ascii_lowercase();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .chars()
        .take(300)
        .collect::<String>();
    if !super::proc::exists(pid) || lower.contains("no such process") {
        return Missing {
            what: what.into(),
            reason: MissingReason::Gone,
            detail: format!("the process ended before {tool} could attach"),
        };
    }
    if lower.contains("operation not permitted")
        || lower.contains("os error 1)")
        || lower.contains("permission denied")
        || lower.contains("ptrace")
    {
        return Missing {
            what: what.into(),
            reason: MissingReason::PtraceDenied,
            detail: format!(
                "{tool} may not attach (ptrace refused: {first}); {}",
                ptrace_hint()
            ),
        };
    }
    Missing {
        what: what.into(),
        reason: MissingReason::Failed,
        detail: format!("{tool} failed: {first}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(path: &std::path::Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_pyenv_shim_is_looked_past_to_the_program_it_would_run() {
        let dir = tempfile::tempdir().unwrap();
        let (shims, libexec, real) = (
            dir.path().join("shims"),
            dir.path().join("libexec"),
            dir.path().join("versions"),
        );
        for d in [&shims, &libexec, &real] {
            std::fs::create_dir(d).unwrap();
        }
        let real_py_spy = real.join("py-spy");
        script(&real_py_spy, "#!/bin/sh\necho real\n");
        let manager = libexec.join("pyenv");
        // The manager answers `which NAME` as pyenv does.
        script(
            &manager,
            &format!(
                "#!/bin/sh\n[ \"$1\" = which ] && [ \"$2\" = py-spy ] && echo {}\n",
                real_py_spy.display()
            ),
        );
        let shim = shims.join("py-spy");
        script(
            &shim,
            &format!(
                "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\nexec \"{}\" exec \"$program\" \"$@\"\n",
                manager.display()
            ),
        );
        let found = Found::look_up(Some(shims.as_os_str()));
        assert_eq!(found.py_spy.as_deref(), Some(real_py_spy.as_path()));
        // A manager that does not answer leaves the shim in place.
        script(&manager, "#!/bin/sh\nexit 1\n");
        let found = Found::look_up(Some(shims.as_os_str()));
        assert_eq!(found.py_spy.as_deref(), Some(shim.as_path()));
        // A program that is no shim is taken as it is.
        assert_eq!(past_shim(real_py_spy.clone(), "py-spy"), real_py_spy);
    }

    #[test]
    fn a_tool_over_its_limit_is_killed_and_said_to_be() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let e = run(
            cmd,
            "sleep",
            "stacks",
            Duration::from_millis(200),
            1024,
            &Direct,
        )
        .unwrap_err();
        assert_eq!(e.reason, MissingReason::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn output_over_the_cap_is_cut() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 100000 /dev/zero"]);
        let out = run(cmd, "sh", "stacks", Duration::from_secs(20), 1000, &Direct).unwrap();
        assert!(out.success);
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.cut);
    }

    #[test]
    fn a_tool_not_on_the_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let found = Found::look_up(Some(dir.path().as_os_str()));
        assert!(found.py_spy.is_none() && found.eu_stack.is_none() && found.gdb.is_none());
    }
}
