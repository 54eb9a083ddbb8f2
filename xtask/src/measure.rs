//! What every benchmark measures the same way: where the build is, the
//! release `plumb` they run, a process's CPU time and memory, medians and
//! verdicts. One copy, so two benchmarks never disagree on what "CPU" or
//! "RSS" means.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where cargo puts its builds: `CARGO_TARGET_DIR` when set, else target/.
pub fn target_dir() -> PathBuf {
    let root = crate::workspace_root();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
}

/// An empty work directory for benchmark `name` under the target dir.
pub fn fresh_work_dir(name: &str) -> Result<PathBuf> {
    let work = target_dir().join(format!("bench-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    Ok(work)
}

/// Builds the release `plumb` exactly as the README's demo command does
/// (`cargo build --release -p plumb`, the same features, so the build is
/// shared and not redone), saying so first since a cold build takes
/// minutes, and returns its path.
pub fn release_plumb() -> Result<PathBuf> {
    let started = Instant::now();
    println!("building the release plumb (cargo build --release -p plumb) ...");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "--quiet", "-p", "plumb"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building plumb failed: {status}");
    }
    let plumb = target_dir().join("release/plumb");
    println!(
        "  {} ready after {:.1} s",
        plumb.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(plumb)
}

/// The median of `v` (the upper one of an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// The word a benchmark prints beside a figure and its target.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

/// User + system CPU seconds of process `pid` so far, every thread
/// included, exited ones too.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(stat_cpu(&stat).context("odd /proc stat")?.1)
}

/// User + system CPU seconds of this process's threads named `name`
/// (from /proc/self/task/TID/stat).
pub fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| stat_cpu(&stat))
        .filter(|(n, _)| n == name)
        .map(|(_, s)| s)
        .sum()
}

/// The command name and the utime + stime seconds of a /proc stat line
/// (fields 2, 14 and 15).
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    // The name sits in parentheses and may hold spaces and parentheses:
    // fields are counted after its last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((stat[open + 1..close].to_string(), (utime + stime) / hz))
}

/// The one-minute load average, to quote beside a figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// A `kB` line of /proc/PID/status: `VmHWM` (peak RSS), `VmRSS`, ...
pub fn vm_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("odd status line")?
        .parse()?)
}

/// CPU seconds (user + system) of this process, or of this thread, so far.
pub fn own_cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    seconds(ru.ru_utime) + seconds(ru.ru_stime)
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// What wait4 reports of a finished child.
#[derive(Debug)]
pub struct Usage {
    /// Its exit code, or 128 + the signal that killed it.
    pub code: i32,
    /// Peak RSS, KiB.
    pub maxrss_kib: i64,
    /// User plus system CPU, seconds (including descendants it reaped).
    pub cpu_s: f64,
}

/// Waits for child `pid` and returns what it used.
pub fn wait4(pid: u32) -> Result<Usage> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Usage {
        code,
        maxrss_kib: ru.ru_maxrss,
        cpu_s: seconds(ru.ru_utime) + seconds(ru.ru_stime),
    })
}

/// Bytes in the files under `p`.
pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                match e.metadata() {
                    Ok(m) if m.is_dir() => stack.push(e.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
    }
    total
}

/// `plumb serve` on a free loopback port with its store in `data`, no OTLP
/// listener: the child and the API's URL (`http://127.0.0.1:PORT`), read
/// from the first line it prints.
pub fn start_serve(plumb: &Path, data: &Path) -> Result<(std::process::Child, String)> {
    use anyhow::Context as _;
    use std::io::BufRead as _;
    let mut serve = std::process::Command::new(plumb)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-listen",
            "off",
            "--data",
        ])
        .arg(data)
        .env("PLUMB_HOME", data)
        .env_remove("PLUMB_COLLECTOR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting plumb serve")?;
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .nth(1)
        .context("plumb serve printed no address")?
        .to_string();
    Ok((serve, url))
}

/// The value after `--name` in a bench's arguments, if given.
pub fn opt<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .copied()
}
