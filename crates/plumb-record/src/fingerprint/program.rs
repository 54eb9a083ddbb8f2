//! The program that was executed and the extra tools listed in plumb.toml:
//! resolving names through `PATH`, hashing executables once per content key,
//! and running short commands with a time limit.

use plumb_model::FileRecord;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::cache::{Cache, stat_key};

/// `PATH` from the child's environment, else plumb's own.
pub(crate) fn path_var(env: &[(OsString, OsString)]) -> Option<OsString> {
    env.iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
}

/// Where `program` is, as `execvp` would find it: a name with a slash is a
/// path (relative to `cwd`), anything else is looked up in `PATH`.
pub(crate) fn resolve(program: &OsStr, cwd: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.as_bytes().contains(&b'/') {
        let p = cwd.join(program);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(path?)
        .map(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                cwd.to_path_buf()
            } else {
                cwd.join(dir)
            };
            dir.join(program)
        })
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Path, size and SHA-256 of an executable; the hash is cached by (path,
/// size, mtime, inode, device). Returns whether it had to be hashed.
pub(crate) fn executable_record(path: &Path, cache: &Cache) -> (FileRecord, bool) {
    let Some(stat) = stat_key(path) else {
        return (crate::files::record_file(path), true);
    };
    let key = format!("{}\0{stat}", path.display());
    if let Some(record) = cache.get::<FileRecord>("exe", &key) {
        return (record, false);
    }
    let record = crate::files::record_file(path);
    if record.error.is_none() {
        cache.put("exe", &key, &record);
    }
    (record, true)
}

/// Runs `cmd` with stdin closed and output captured, in its own process
/// group; after `limit` the whole group is killed and `None` returned.
pub(crate) fn run_limited(mut cmd: Command, limit: Duration) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Registered as a helper while it lives, with the registry held across
    // the spawn: the recorder reaps children that belong to no run (orphans
    // re-parented to it), and must never reap this one before
    // `wait_with_output` does.
    let mut helpers = crate::tree::HELPERS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(error) => {
            tracing::debug!(?cmd, %error, "cannot run fingerprint helper");
            return None;
        }
    };
    let pid = child.id();
    helpers.push(pid as libc::pid_t);
    drop(helpers);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        crate::tree::HELPERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid as libc::pid_t);
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => Some(out),
        Ok(Err(error)) => {
            tracing::debug!(?cmd, %error, "fingerprint helper failed");
            None
        }
        Err(_) => {
            tracing::warn!(
                ?cmd,
                seconds = limit.as_secs(),
                "fingerprint helper timed out; killed"
            );
            // Our own child's process group, started just above.
            if let Ok(pgid) = i32::try_from(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            None
        }
    }
}

/// The first non-empty line of a command's stdout, else of its stderr
/// (`java -version` writes to stderr).
fn first_line(out: &Output) -> Option<String> {
    [&out.stdout, &out.stderr].into_iter().find_map(|bytes| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    })
}

/// How long a tool's version command may take.
const TOOL_LIMIT: Duration = Duration::from_secs(10);

/// Versions of the extra tools: the first line of `sh -c <command>`. Cached
/// by the command and the content key of the program it names, when that
/// resolves through `PATH`; returns how many commands were actually run.
pub(crate) fn tool_versions(
    tools: &BTreeMap<String, String>,
    env: &[(OsString, OsString)],
    cwd: &Path,
    cache: &Cache,
) -> (BTreeMap<String, String>, u32) {
    let path = path_var(env);
    let mut out = BTreeMap::new();
    let mut runs = 0;
    for (name, command) in tools {
        let program = command.split_whitespace().next().unwrap_or("");
        let key = resolve(OsStr::new(program), cwd, path.as_deref())
            .and_then(|p| stat_key(&p).map(|s| format!("{command}\0{}\0{s}", p.display())));
        if let Some(v) = key.as_deref().and_then(|k| cache.get::<String>("tool", k)) {
            out.insert(name.clone(), v);
            continue;
        }
        runs += 1;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command);
        if !env.is_empty() {
            cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        if cwd.is_dir() {
            cmd.current_dir(cwd);
        }
        let version = match run_limited(cmd, TOOL_LIMIT) {
            Some(o) => match first_line(&o) {
                Some(line) if o.status.success() => line,
                Some(line) => format!("error ({}): {line}", o.status),
                None => format!("error ({}): no output", o.status),
            },
            None => "error: could not run or timed out".to_string(),
        };
        if let Some(k) = &key
            && !version.starts_with("error")
        {
            cache.put("tool", k, &version);
        }
        out.insert(name.clone(), version);
    }
    (out, runs)
}

/// The interpreter a script's `#!` line names, resolved through `PATH` for
/// `#!/usr/bin/env NAME`.
pub(crate) fn shebang_interpreter(
    script: &Path,
    cwd: &Path,
    path: Option<&OsStr>,
) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if first.rsplit('/').next() == Some("env") {
        // Skip env's options (`-S`, `-u NAME` is rare enough to ignore) and
        // assignments, and take the program.
        let program = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
        return resolve(OsStr::new(program), cwd, path);
    }
    Some(PathBuf::from(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_follows_path_and_cwd() {
        let sh = resolve(
            OsStr::new("sh"),
            Path::new("/"),
            std::env::var_os("PATH").as_deref(),
        )
        .unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(
            resolve(
                OsStr::new("no-such-program-xyz"),
                Path::new("/"),
                Some(OsStr::new("/usr/bin:/bin"))
            ),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool"), "x").unwrap();
        assert_eq!(
            resolve(OsStr::new("./tool"), dir.path(), None),
            Some(dir.path().join("./tool"))
        );
    }

    #[test]
    fn shebangs_name_interpreters() {
        let dir = tempfile::tempdir().unwrap();
        let direct = dir.path().join("a");
        std::fs::write(&direct, "#!/usr/bin/python3 -u\nprint(1)\n").unwrap();
        assert_eq!(
            shebang_interpreter(&direct, dir.path(), None),
            Some(PathBuf::from("/usr/bin/python3"))
        );
        let via_env = dir.path().join("b");
        std::fs::write(&via_env, "#!/usr/bin/env -S sh -e\n").unwrap();
        let sh =
            shebang_interpreter(&via_env, dir.path(), std::env::var_os("PATH").as_deref()).unwrap();
        assert!(sh.ends_with("sh"), "{}", sh.display());
        let plain = dir.path().join("c");
        std::fs::write(&plain, "echo hi\n").unwrap();
        assert_eq!(shebang_interpreter(&plain, dir.path(), None), None);
    }

    #[test]
    fn tools_are_versioned_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let tools: BTreeMap<String, String> = [
            (
                "sh".to_string(),
                "sh -c 'echo sh 1.0; echo second line'".to_string(),
            ),
            ("stderr".to_string(), "echo on-stderr >&2".to_string()),
            ("broken".to_string(), "exit 3".to_string()),
        ]
        .into();
        let (v, runs) = tool_versions(&tools, &[], dir.path(), &cache);
        assert_eq!(runs, 3);
        assert_eq!(v["sh"], "sh 1.0");
        assert_eq!(v["stderr"], "on-stderr");
        assert!(v["broken"].starts_with("error"), "{}", v["broken"]);
        // `sh` and `echo` resolve through PATH, so their versions are
        // cached; `exit` is a builtin that failed, so it runs again.
        let (v2, runs2) = tool_versions(&tools, &[], dir.path(), &cache);
        assert_eq!(v2, v);
        assert_eq!(runs2, 1);
    }

    #[test]
    fn slow_commands_are_cut_off() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 30");
        let start = std::time::Instant::now();
        assert!(run_limited(cmd, Duration::from_millis(200)).is_none());
        assert!(start.elapsed() < Duration::from_secs(20));
    }
}
