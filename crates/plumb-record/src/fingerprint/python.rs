//! The Python interpreter of a Python program and every distribution
//! installed for it, listed by `importlib.metadata` in a subprocess of that
//! interpreter.
//!
//! Listing takes a tenth of a second or more, so the result is cached. The
//! cache entry remembers what the listing depended on: the interpreter's
//! content key, and the modification time of every `sys.path` entry and of
//! the user site directory (existing or not). Installing or removing a
//! distribution adds or removes a `*.dist-info` directory, which changes
//! its parent's modification time, so an unchanged environment is never
//! listed again, and a changed one always is.

use plumb_model::PythonEnv;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::CaptureOptions;
use super::cache::{Cache, mtime_ns, stat_key};
use super::program::{path_var, resolve, run_limited, shebang_interpreter};

/// Environment variables that change what the interpreter sees.
const ENV_KEYS: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONNOUSERSITE",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "HOME",
];

/// Printed before the JSON, so that whatever a `sitecustomize` prints first
/// is skipped.
const MARKER: &str = "@@plumb-python-scan@@";

const SCRIPT: &str = r#"
import sys, os, re, json, platform
sys.path[:] = [p for p in sys.path if p]
packages = {}
seen = set()
def add(name, version):
    # Names as PEP 503 compares them: `Typing_Extensions` is
    # `typing-extensions`, however its directory spells it.
    key = "-".join(filter(None, re.split(r"[-_.]+", name.lower())))
    if key and key not in seen:
        seen.add(key)
        packages[key] = version or ""
# The name and version are in the directory's name (NAME-VERSION.dist-info,
# NAME-VERSION[-pyX.Y].egg-info): listing the directories is ten times
# faster than importlib.metadata, which parses every METADATA file. Only
# directories named otherwise are read, in path order as importlib would.
for p in sys.path:
    try:
        entries = sorted(os.listdir(p))
    except Exception:
        continue
    for e in entries:
        if e.endswith(".dist-info"):
            stem = e[:-10]
        elif e.endswith(".egg-info"):
            stem = e[:-9]
        else:
            continue
        parts = stem.split("-")
        if len(parts) >= 2 and parts[0] and parts[1][:1].isdigit():
            add(parts[0], parts[1])
            continue
        try:
            from importlib import metadata
            d = metadata.PathDistribution.at(os.path.join(p, e))
            add(d.metadata["Name"], d.version)
        except Exception:
            pass
try:
    import site
    user_site = site.getusersitepackages()
except Exception:
    user_site = None
print("@@plumb-python-scan@@")
print(json.dumps({"executable": sys.executable, "version": platform.python_version(),
                  "prefix": sys.prefix, "path": sys.path, "user_site": user_site,
                  "packages": packages}))
"#;

/// The cache entries' kind, changed whenever the listing does (2: names
/// and versions read from the `*.dist-info` directories' names, names
/// normalized as PEP 503 says), so that
/// a new plumb never reads an older plumb's listing.
const CACHE_KIND: &str = "python-2";

/// How long a listing may take before it is abandoned.
const SCAN_LIMIT: Duration = Duration::from_secs(60);

/// `python`, `python3`, `python3.11`, `python3.13t`, `pypy3`.
pub(crate) fn is_python_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name
        .strip_prefix("python")
        .or_else(|| name.strip_prefix("pypy"))
    else {
        return false;
    };
    let rest = rest.strip_suffix(['d', 'm', 't', 'u']).unwrap_or(rest);
    rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The interpreter to list packages for: `opts.python` when given; else
/// the program when it is a Python interpreter (directly or through `env`),
/// or the interpreter its `#!` line names.
pub(crate) fn interpreter(opts: &CaptureOptions) -> Option<PathBuf> {
    let path = path_var(&opts.env);
    if let Some(p) = &opts.python {
        return resolve(p.as_os_str(), &opts.cwd, path.as_deref());
    }
    let mut args = opts.argv.iter();
    let mut program = args.next()?;
    if Path::new(program).file_name() == Some(OsStr::new("env")) {
        // `env [-i] [-u NAME] [NAME=VALUE]... PROGRAM`.
        loop {
            let a = args.next()?;
            let b = a.as_encoded_bytes();
            if matches!(b, b"-u" | b"--unset" | b"-C" | b"--chdir") {
                args.next();
            } else if !b.starts_with(b"-") && !b.contains(&b'=') {
                program = a;
                break;
            }
        }
    }
    let resolved = resolve(program, &opts.cwd, path.as_deref())?;
    if Path::new(program).file_name().is_some_and(is_python_name) {
        return Some(resolved);
    }
    let interp = shebang_interpreter(&resolved, &opts.cwd, path.as_deref())?;
    (interp.file_name().is_some_and(is_python_name) && interp.is_file()).then_some(interp)
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// Content key of the interpreter as named.
    interpreter: Option<String>,
    /// Content key of `sys.executable` (differs for wrappers and shims).
    executable: Option<String>,
    /// Every path the listing depended on, with its modification time then
    /// (`None`: it did not exist).
    watched: Vec<(String, Option<i64>)>,
    env: PythonEnv,
}

#[derive(Deserialize)]
struct ScanOutput {
    executable: String,
    version: String,
    prefix: String,
    path: Vec<String>,
    user_site: Option<String>,
    packages: BTreeMap<String, String>,
}

fn env_value<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a OsStr> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_os_str())
}

/// The interpreter's environment, from the cache when nothing it depends on
/// changed; returns whether the interpreter had to be run.
pub(crate) fn python_env(
    interp: &Path,
    opts: &CaptureOptions,
    cache: &Cache,
) -> (Option<PythonEnv>, bool) {
    let mut key = interp.display().to_string();
    for k in ENV_KEYS {
        // With no environment given, the child inherits plumb's.
        let v = if opts.env.is_empty() {
            std::env::var_os(k)
        } else {
            env_value(&opts.env, k).map(OsStr::to_os_string)
        };
        key.push('\0');
        key.push_str(&v.unwrap_or_default().to_string_lossy());
    }
    let interp_stat = stat_key(interp);
    let fresh = || {
        cache
            .get::<Entry>(CACHE_KIND, &key)
            .filter(|entry| {
                entry.interpreter == interp_stat
                    && stat_key(Path::new(&entry.env.executable)) == entry.executable
                    && entry
                        .watched
                        .iter()
                        .all(|(p, m)| mtime_ns(Path::new(p)) == *m)
            })
            .map(|entry| entry.env)
    };
    if let Some(env) = fresh() {
        return (Some(env), false);
    }
    // Many recorders starting at once: one lists, the others wait and read.
    let _lock = cache.lock(CACHE_KIND, &key);
    if let Some(env) = fresh() {
        return (Some(env), false);
    }
    let Some(scan) = scan(interp, opts) else {
        return (None, true);
    };
    let mut watched: Vec<(String, Option<i64>)> = scan
        .path
        .iter()
        .chain(scan.user_site.iter())
        .map(|p| (p.clone(), mtime_ns(Path::new(p))))
        .collect();
    watched.sort();
    watched.dedup();
    let env = PythonEnv {
        executable: scan.executable,
        version: scan.version,
        prefix: scan.prefix,
        packages: scan.packages,
    };
    let entry = Entry {
        interpreter: interp_stat,
        executable: stat_key(Path::new(&env.executable)),
        watched,
        env,
    };
    cache.put(CACHE_KIND, &key, &entry);
    (Some(entry.env), true)
}

fn scan(interp: &Path, opts: &CaptureOptions) -> Option<ScanOutput> {
    let mut cmd = Command::new(interp);
    cmd.arg("-c").arg(SCRIPT);
    if !opts.env.is_empty() {
        cmd.env_clear().envs(opts.env.iter().map(|(k, v)| (k, v)));
    }
    if opts.cwd.is_dir() {
        cmd.current_dir(&opts.cwd);
    }
    let out = run_limited(cmd, SCAN_LIMIT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.rsplit_once(MARKER).map(|(_, j)| j.trim());
    match json.map(serde_json::from_str::<ScanOutput>) {
        Some(Ok(scan)) => Some(scan),
        Some(Err(error)) => {
            tracing::warn!(interpreter = %interp.display(), %error, "unreadable Python package listing");
            None
        }
        None => {
            tracing::warn!(
                interpreter = %interp.display(),
                status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "Python package listing failed"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names() {
        for yes in [
            "python",
            "python3",
            "python3.11",
            "python3.13t",
            "pypy3",
            "python2.7",
        ] {
            assert!(is_python_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            "pythonista",
            "ipython",
            "python-config",
            "py",
            "sh",
            "python3-x",
        ] {
            assert!(!is_python_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn interpreter_detection() {
        let dir = tempfile::tempdir().unwrap();
        let opts = |argv: &[&str]| CaptureOptions {
            argv: argv.iter().map(OsString::from).collect(),
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        let direct = interpreter(&opts(&["python3", "-c", "pass"])).unwrap();
        assert!(direct.is_absolute(), "{}", direct.display());
        assert!(interpreter(&opts(&["env", "-u", "X", "python3", "x.py"])).is_some());
        assert_eq!(interpreter(&opts(&["sh", "-c", "true"])), None);
        let script = dir.path().join("job");
        std::fs::write(&script, "#!/usr/bin/env python3\nprint(1)\n").unwrap();
        assert!(interpreter(&opts(&["./job"])).is_some());
        let mut forced = opts(&["sh"]);
        forced.python = Some(PathBuf::from("python3"));
        assert!(interpreter(&forced).is_some());
    }
}
