//! The eviction scene of `plumb demo`: a worker is evicted mid-run, saves
//! its checkpoint, is retried by `plumb run` and resumes where it stopped.
//!
//! The worker is a Python program using plumb's own checkpoint library
//! (python/plumb/checkpoint.py, built into this binary and written next to
//! the worker), so what the demo shows is what a user's program gets.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The Python checkpoint library, written beside the demo worker.
const CHECKPOINT_PY: &str = include_str!("../../../../python/plumb/checkpoint.py");

/// Sums i*i for i below 40, one step every 50 ms, checkpointing each step.
const WORKER: &str = r#"
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plumb_checkpoint import Checkpointer
attempt = os.environ.get("PLUMB_ATTEMPT", "1")
with Checkpointer(os.environ["PLUMB_CHECKPOINT_DIR"], every_steps=1) as ck:
    state = ck.restore({"step": 0, "sum": 0})
    if state["step"]:
        print(f"attempt {attempt}: resuming from checkpoint at step {state['step']}", flush=True)
    else:
        print(f"attempt {attempt}: starting from scratch", flush=True)
    while state["step"] < 40:
        state["sum"] += state["step"] * state["step"]
        state["step"] += 1
        if state["step"] % 5 == 0:
            print(f"attempt {attempt}: step {state['step']}", flush=True)
        time.sleep(0.05)
        if ck.should_save() and ck.eviction_signal is not None:
            print(f"attempt {attempt}: eviction warning, checkpoint saved at step {state['step']}", flush=True)
        ck.at_safe_point(state)
    print(f"attempt {attempt}: done, sum = {state['sum']} (uninterrupted: {sum(i * i for i in range(40))})", flush=True)
"#;

/// Runs the scene against the store in `plumb_home`, printing what happens;
/// a few seconds in all. `python` runs the worker.
pub fn demo_scene(plumb_home: &Path, python: &Path) -> Result<()> {
    let plumb = std::env::current_exe().context("finding the plumb executable")?;
    scene(&plumb, plumb_home, python, &mut crate::out::stdout())
}

/// The scene, run with the `plumb` executable at `plumb`, written to `out`.
fn scene(plumb: &Path, plumb_home: &Path, python: &Path, out: &mut dyn Write) -> Result<()> {
    let dir = plumb_home.join("demo").join("evict");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("plumb_checkpoint.py"), CHECKPOINT_PY)?;
    let worker = dir.join("worker.py");
    std::fs::write(&worker, WORKER)?;
    let checkpoints = dir.join("checkpoints");
    // A fresh start each time the demo runs.
    let _ = std::fs::remove_dir_all(&checkpoints);

    writeln!(
        out,
        "== eviction: a worker is evicted mid-run, saves, is retried and resumes =="
    )?;
    writeln!(
        out,
        "$ plumb run --grace 5s --retries 2 --backoff 200ms..500ms -- {} worker.py",
        python.display()
    )?;
    let start = Instant::now();
    let mut child = Command::new(plumb)
        .args([
            "run",
            "--name",
            "evictable-worker",
            "--tag",
            "demo=evict",
            "--grace",
            "5s",
            "--retries",
            "2",
            "--backoff",
            "200ms..500ms",
            "--checkpoint-dir",
        ])
        .arg(&checkpoints)
        .arg("--")
        .arg(python)
        .arg(&worker)
        .env("PLUMB_HOME", plumb_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting plumb run")?;
    let (tx, rx) = mpsc::channel();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let stamp = |start: Instant| format!("[{:5.2}s]", start.elapsed().as_secs_f64());
    let mut evicted = false;
    let deadline = start + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                writeln!(out, "{} {line}", stamp(start))?;
                if !evicted && line.contains("step 15") {
                    evicted = true;
                    writeln!(
                        out,
                        "{} demo: SIGTERM to plumb, as Kubernetes or Slurm would send it",
                        stamp(start)
                    )?;
                    // SAFETY: our own unreaped child.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the eviction scene did not finish within 30 s");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = child.wait()?;
    writeln!(
        out,
        "{} plumb run exited with {} (the last attempt's code)",
        stamp(start),
        status.code().map_or("a signal".into(), |c| c.to_string())
    )?;

    writeln!(out, "\n$ plumb ls --tag demo=evict --limit 2")?;
    let ls = Command::new(plumb)
        .args(["ls", "--tag", "demo=evict", "--limit", "2"])
        .env("PLUMB_HOME", plumb_home)
        .output()?;
    write!(out, "{}", String::from_utf8_lossy(&ls.stdout))?;
    writeln!(
        out,
        "\n$ plumb show <the evicted attempt>   (eviction lines)"
    )?;
    let show = Command::new(plumb)
        .args(["show", "last~1"])
        .env("PLUMB_HOME", plumb_home)
        .output()?;
    for line in String::from_utf8_lossy(&show.stdout).lines() {
        if line.starts_with("state")
            || line.starts_with("exit")
            || line.starts_with("attempt")
            || line.starts_with("evicted")
            || line.starts_with("          ")
        {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_is_evicted_retried_and_resumes_to_the_uninterrupted_sum() {
        // Unit tests run from target/<profile>/deps; the plumb executable
        // (built for the integration tests) is one directory up.
        let exe = std::env::current_exe().unwrap();
        let plumb = exe.parent().unwrap().parent().unwrap().join("plumb");
        if !plumb.exists() {
            panic!("{} not built", plumb.display());
        }
        let home = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        scene(&plumb, home.path(), Path::new("python3"), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("demo: SIGTERM to plumb"), "{text}");
        assert!(
            text.contains("eviction warning, checkpoint saved"),
            "{text}"
        );
        assert!(
            text.contains("attempt 2: resuming from checkpoint at step"),
            "{text}"
        );
        assert!(
            text.contains("done, sum = 20540 (uninterrupted: 20540)"),
            "{text}"
        );
        assert!(text.contains("exited with 0"), "{text}");
        assert!(text.contains("evicted") && text.contains("1/3"), "{text}");
        assert!(text.contains("by SIGTERM, sent SIGTERM"), "{text}");
    }
}
