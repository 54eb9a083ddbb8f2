//! `plumb watch DIR [--throttle NAME=N] -- CMD {}`: runs CMD for each new
//! regular file in DIR, each as a recorded `plumb run` (so a throttle is
//! fleet-wide with a collector, and every run is recorded and shipped like
//! any other), at most `--jobs` at once here and N at once fleet-wide.
//!
//! DIR is polled every `--interval` (500 ms). Files are skipped while they
//! may still be being written: names starting with `.` and ending in
//! `.tmp` or `.part` (write to `name.part`, then rename). Only DIR itself is
//! watched, not its subdirectories.
//!
//! A journal, `DIR/.plumb-watch/journal.jsonl`, records `started` (file,
//! run id) before each run is spawned and `finished` (file, exit code)
//! after it ends, each line fsync'd. On start, the journal is read back:
//! finished files are never run again; files started but not finished
//! (plumb watch was killed while they ran) are run again, once, said on
//! stderr and as a `rerun` line; files never seen are run. Each run is
//! sent SIGTERM if plumb watch dies (PR_SET_PDEATHSIG), so a killed watch
//! leaves no run going on that its restart would repeat.
//!
//! With `--throttle` and a collector, the collector is asked once at start
//! (`preflight`), so a refused token or a conflicting N stops plumb watch
//! before any file is taken rather than failing every file's run.
//!
//! Ctrl-C or SIGTERM: no new run starts; the running ones are waited for.
//! (Ctrl-C at a terminal reaches the running commands as well; a run
//! that ends interrupted is left unfinished in the journal and runs again
//! at the next start.)

use anyhow::{Context, Result, bail};
use plumb_model::Uuid;
use plumb_record::throttle::ThrottleSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Arguments of `plumb watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to watch (its own files, not subdirectories).
    pub dir: PathBuf,
    /// Hold a slot of this throttle for each run (`plumb run --throttle`:
    /// fleet-wide with a collector).
    #[arg(long, value_name = "NAME=N")]
    pub throttle: Option<ThrottleSpec>,
    /// Runs at once on this host (default: the throttle's N, else 1).
    #[arg(long, value_name = "J")]
    pub jobs: Option<u32>,
    /// The runs' name (default: plumb run's, from the command).
    #[arg(long)]
    pub name: Option<String>,
    /// Only files whose name matches this glob (`*` and `?`), e.g. `*.png`.
    #[arg(long, value_name = "GLOB")]
    pub pattern: Option<String>,
    /// How often DIR is looked at.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// The command; `{}` in any argument is replaced by the file's path.
    /// Without `{}`, the path is added as the last argument.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let ns = plumb_model::parse_duration_ns(s).map_err(|e| e.to_string())?;
    if ns < 10_000_000 {
        return Err(format!("`{s}`: the interval must be at least 10ms"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// The journal's directory inside DIR.
pub const JOURNAL_DIR: &str = ".plumb-watch";
/// The journal's file name.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Entry {
    /// About to spawn the run of `file`.
    Started { file: String, run: Uuid },
    /// The run of `file` ended with `exit` (plumb run's exit code).
    Finished { file: String, exit: i32 },
    /// `file` was started but not finished before plumb watch stopped; it
    /// is run again.
    Rerun { file: String, run: Uuid },
}

/// The append-only journal, fsync'd after every line.
struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    fn write(&mut self, e: &Entry) -> Result<()> {
        let mut line = serde_json::to_string(e)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot write the journal {}", self.path.display()))
    }
}

/// Files started but not finished, with their run, in the order started.
type Unfinished = Vec<(String, Uuid)>;

/// What the journal says: files finished, and files started but not
/// finished.
fn read_journal(path: &Path) -> Result<(HashSet<String>, Unfinished)> {
    let mut finished = HashSet::new();
    let mut open: Unfinished = Vec::new();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((finished, open)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = match serde_json::from_str(&line) {
            Ok(e) => e,
            // A line cut short by a crash mid-write: said and skipped
            // (a started line lost this way reruns nothing; a finished
            // one lost reruns its file once).
            Err(e) => {
                eprintln!(
                    "plumb: watch: ignoring line {} of {} ({e})",
                    i + 1,
                    path.display()
                );
                continue;
            }
        };
        match entry {
            Entry::Started { file, run } | Entry::Rerun { file, run } => {
                open.retain(|(f, _)| f != &file);
                open.push((file, run));
            }
            Entry::Finished { file, .. } => {
                open.retain(|(f, _)| f != &file);
                finished.insert(file);
            }
        }
    }
    Ok((finished, open))
}

/// Whether `name` matches `glob` (`*` any run of characters, `?` one).
fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == n[ni]) {
            gi += 1;
            ni += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ni));
            gi += 1;
        } else if let Some((sg, sn)) = star {
            gi = sg + 1;
            ni = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// Whether a file name is one to skip: hidden, or still being written.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// The regular files of `dir` worth running, by name.
fn scan(dir: &Path, pattern: Option<&str>) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if skipped(&name) || !pattern.is_none_or(|p| glob_match(p, &name)) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            found.insert(name);
        }
    }
    Ok(found)
}

/// CMD for `path`: `{}` replaced in every argument, or the path appended.
fn command_for(command: &[OsString], path: &Path) -> Vec<OsString> {
    let p = path.as_os_str().to_string_lossy();
    let has = command.iter().any(|a| a.to_string_lossy().contains("{}"));
    let mut out: Vec<OsString> = command
        .iter()
        .map(|a| match a.to_str() {
            Some(s) if s.contains("{}") => s.replace("{}", &p).into(),
            _ => a.clone(),
        })
        .collect();
    if !has {
        out.push(path.as_os_str().to_os_string());
    }
    out
}

pub fn main(args: Args) -> Result<ExitCode> {
    if let Some(first) = args.command.first().and_then(|c| c.to_str())
        && first.starts_with('-')
    {
        bail!(
            "`{first}` is not an option of `plumb watch` (see `plumb watch --help`); the command to run goes after `--`"
        );
    }
    let meta = std::fs::metadata(&args.dir)
        .with_context(|| format!("cannot watch {}", args.dir.display()))?;
    if !meta.is_dir() {
        bail!("cannot watch {}: not a directory", args.dir.display());
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| args.throttle.as_ref().map_or(1, |t| t.slots));
    if jobs == 0 {
        bail!("--jobs 0: at least one run must be allowed at once");
    }
    if let Some(spec) = &args.throttle {
        preflight(spec)?;
    }
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot watch {}", args.dir.display()))?;
    let jdir = dir.join(JOURNAL_DIR);
    std::fs::create_dir_all(&jdir)
        .with_context(|| format!("cannot create the journal directory {}", jdir.display()))?;
    let jpath = jdir.join(JOURNAL_FILE);
    let (mut done, open) = read_journal(&jpath)?;
    let mut journal = Journal {
        file: std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jpath)
            .with_context(|| format!("cannot open the journal {}", jpath.display()))?,
        path: jpath,
    };
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the signal handlers")?;
    }
    // Files to run, in order: the interrupted ones first.
    let mut queue: VecDeque<(String, bool)> = VecDeque::new();
    let mut seen: HashSet<String> = done.clone();
    for (file, run) in open {
        eprintln!(
            "plumb: watch: {file} was started (run {run}) but plumb watch stopped before it finished; running it again"
        );
        seen.insert(file.clone());
        queue.push_back((file, true));
    }
    let mut running: HashMap<String, Child> = HashMap::new();
    let mut failed = 0u32;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            for name in scan(&dir, args.pattern.as_deref())? {
                if seen.insert(name.clone()) {
                    queue.push_back((name, false));
                }
            }
        }
        // Reap the runs that ended.
        let mut ended = Vec::new();
        for (file, child) in running.iter_mut() {
            if let Some(status) = child.try_wait().context("waiting for a run")? {
                ended.push((file.clone(), status));
            }
        }
        for (file, status) in ended {
            running.remove(&file);
            let code = status.code().unwrap_or(128 + status.signal_or_zero());
            if stopping
                && (code == i32::from(crate::exit::INTERRUPTED)
                    || code == i32::from(crate::exit::TERMINATED))
            {
                // Ctrl-C at a terminal reaches the runs too (they share
                // its process group): left unfinished, so it runs again.
                eprintln!(
                    "plumb: watch: {file} was interrupted; it runs again when plumb watch starts next"
                );
                continue;
            }
            journal.write(&Entry::Finished {
                file: file.clone(),
                exit: code,
            })?;
            done.insert(file.clone());
            if code != 0 {
                failed += 1;
                eprintln!("plumb: watch: {file}: the run exited with {code}");
            }
        }
        if stopping {
            if running.is_empty() {
                break;
            }
        } else {
            while running.len() < jobs as usize
                && let Some((file, rerun)) = queue.pop_front()
            {
                let path = dir.join(&file);
                if !path.is_file() {
                    // Gone before its turn (moved away, deleted).
                    seen.remove(&file);
                    continue;
                }
                let run = plumb_model::new_id();
                journal.write(&if rerun {
                    Entry::Rerun {
                        file: file.clone(),
                        run,
                    }
                } else {
                    Entry::Started {
                        file: file.clone(),
                        run,
                    }
                })?;
                let mut c = std::process::Command::new(&exe);
                c.arg("run").arg("--run-id").arg(run.to_string());
                if let Some(name) = &args.name {
                    c.arg("--name").arg(name);
                }
                if let Some(t) = &args.throttle {
                    c.arg("--throttle").arg(t.to_string());
                }
                c.arg("--")
                    .args(command_for(&args.command, &path))
                    .stdin(std::process::Stdio::null());
                // SAFETY: prctl only, async-signal-safe, between fork and
                // exec.
                unsafe {
                    c.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let child = c
                    .spawn()
                    .with_context(|| format!("cannot start plumb run for {file}"))?;
                running.insert(file, child);
            }
        }
        std::thread::sleep(if stopping {
            Duration::from_millis(50)
        } else {
            args.interval
        });
    }
    eprintln!("plumb: watch: stopped; every run started has ended");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// With a collector configured, asks it once for the throttle (and gives
/// the place straight back), so a refused token or another N than the
/// fleet's is said now, before any file is taken, instead of failing
/// every file's run. A collector that cannot be reached is no error: the
/// runs wait for it.
fn preflight(spec: &ThrottleSpec) -> Result<()> {
    let cfg = crate::config::Config::load()?;
    let Some(url) = &cfg.collector else {
        return Ok(());
    };
    let probe = crate::lease::FleetThrottle::new(&cfg, url, spec, plumb_model::new_id())?;
    if let crate::lease::Asked::State(_) = probe.ask()? {
        probe.leave();
    }
    Ok(())
}

/// The signal number of a status, 0 when none.
trait SignalOrZero {
    fn signal_or_zero(&self) -> i32;
}

impl SignalOrZero for std::process::ExitStatus {
    fn signal_or_zero(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.signal().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_skips_and_placeholders() {
        assert!(glob_match("*.png", "a.png"));
        assert!(!glob_match("*.png", "a.png.part"));
        assert!(glob_match("img-??.*", "img-01.jpg"));
        assert!(!glob_match("img-??.*", "img-1.jpg"));
        assert!(glob_match("*", "x"));
        for s in [".x", "a.tmp", "b.part"] {
            assert!(skipped(s), "{s}");
        }
        assert!(!skipped("a.png"));
        let p = Path::new("/d/a b.png");
        assert_eq!(
            command_for(&["convert".into(), "{}".into(), "out/{}.jpg".into()], p),
            ["convert", "/d/a b.png", "out//d/a b.png.jpg"]
        );
        assert_eq!(command_for(&["wc".into()], p), ["wc", "/d/a b.png"]);
    }
}
