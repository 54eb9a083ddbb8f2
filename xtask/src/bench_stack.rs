//! `cargo xtask bench stack`: how long `plumb stack` takes over 100 Python
//! processes.
//!
//! Starts one Python parent that starts 99 children, all sleeping in a
//! known function, then runs a release `plumb stack --pid PARENT --json`
//! three times (`--runs N` to change, `--processes N` for another tree
//! size) and prints the median wall time, its ratio to the 2 s target
//! (issue 16), the CPU seconds of each snapshot (the tools' included, from
//! wait4), and the load average, the figure to compare on a busy machine.
//! It fails when a snapshot misses a process or a stack.

use crate::measure::{self, load_average, median, verdict};
use anyhow::{Context, Result, bail};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

const TARGET_S: f64 = 2.0;

/// The tree: the parent starts N-1 children, prints `ready` once all of
/// them are asleep in `sleeping_here`, and sleeps there too.
const TREE: &str = r#"import subprocess, sys, time
def sleeping_here():
    time.sleep(3600)
if len(sys.argv) > 1 and sys.argv[1] == "child":
    print("up", flush=True)
    sleeping_here()
kids = [subprocess.Popen([sys.executable, __file__, "child"], stdout=subprocess.PIPE) for _ in range(int(sys.argv[1]) - 1)]
for k in kids:
    k.stdout.readline()
print("ready", flush=True)
sleeping_here()
"#;

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let runs: usize = opt("--runs").map_or(Ok(3), str::parse)?;
    let processes: usize = opt("--processes").map_or(Ok(100), str::parse)?;
    if runs == 0 || processes < 2 {
        bail!("--runs must be at least 1 and --processes at least 2");
    }
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("stack")?;
    let script = work.join("tree.py");
    std::fs::write(&script, TREE)?;
    println!(
        "bench stack (plumb {}, {processes} Python processes, {runs} snapshots)",
        plumb.display()
    );
    // The real interpreter, not a version manager's shim script, which
    // would be one more (non-Python) process in the tree.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("running python3 (apt install python3)")?;
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    // Its own process group, so the whole tree is killed by its id.
    let mut tree = Command::new(&python)
        .arg(&script)
        .arg(processes.to_string())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting python3 (apt install python3)")?;
    let mut line = String::new();
    std::io::BufReader::new(tree.stdout.take().expect("piped")).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = tree.kill();
        bail!("the process tree did not start: {line:?}");
    }
    let result = measure_snapshots(&plumb, tree.id(), processes, runs);
    if let Ok(pgid) = i32::try_from(tree.id()) {
        // SAFETY: kill has no memory effects; the group is the tree's own.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = tree.wait();
    let (mut walls, cpus) = result?;
    let wall = median(&mut walls);
    println!(
        "snapshot of {processes} processes: median {wall:.2} s wall ({:.2}x the {TARGET_S} s target, {}), CPU {} s each, load average {}",
        wall / TARGET_S,
        verdict(wall <= TARGET_S),
        cpus.iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        load_average()
    );
    Ok(())
}

fn measure_snapshots(
    plumb: &std::path::Path,
    root: u32,
    processes: usize,
    runs: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let child = Command::new(plumb)
            .args(["stack", "--json", "--pid", &root.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut child.stdout.expect("piped"), &mut out)?;
        let usage = measure::wait4(pid)?;
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push(usage.cpu_s);
        if usage.code != 0 {
            bail!("plumb stack exited {}", usage.code);
        }
        let v: serde_json::Value = serde_json::from_slice(&out)?;
        let procs = v["snapshot"]["processes"]
            .as_array()
            .context("no processes")?;
        let with_stacks = procs
            .iter()
            .filter(|p| p["stacks"].as_array().is_some_and(|s| !s.is_empty()))
            .count();
        if procs.len() != processes || with_stacks != processes {
            bail!(
                "the snapshot has {} processes, {with_stacks} with stacks; {processes} expected (is py-spy installed? .ci/install-stack.sh)",
                procs.len()
            );
        }
    }
    Ok((walls, cpus))
}
