//! `cargo xtask bench checkpoint [--dir DIR]`: the cost of a crash-safe
//! checkpoint against the bare minimum on the same file system.
//!
//! - Large: saving a 256 MiB state (raw bytes, `save_bytes`) against
//!   `dd if=/dev/zero of=F bs=1M count=256 conv=fsync`. Target: at least 70%
//!   of dd's throughput.
//! - Small: saving a 1 KiB state (JSON, `save`) against a bare write + fsync
//!   + rename + directory fsync of 1 KiB. Target: at most 2x the cost.
//!
//! The large state is zero bytes, the same bytes dd writes. Each large run
//! uses a fresh directory, so neither side pays for deleting
//! an older file; figures are medians. DIR defaults to a directory under the
//! system temporary directory; pass `--dir` to measure another file system.
//! `--nonzero` saves a non-zero pattern instead (dd still writes zeros):
//! some virtual disks write zeros faster, so this is the harder comparison.

use anyhow::{Context, Result, bail};
use plumb_checkpoint::Checkpointer;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LARGE_BYTES: usize = 256 << 20;
const LARGE_RUNS: usize = 5;
const SMALL_OPS: usize = 200;
const SMALL_ROUNDS: usize = 3;

pub fn run(rest: &[&str]) -> Result<()> {
    let mut dir = std::env::temp_dir();
    let mut nonzero = false;
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--dir" => dir = PathBuf::from(args.next().context("--dir needs a directory")?),
            "--nonzero" => nonzero = true,
            other => bail!(
                "usage: cargo xtask bench checkpoint [--dir DIR] [--nonzero]; unknown argument {other:?}"
            ),
        }
    }
    let base = dir.join(format!("plumb-bench-checkpoint-{}", std::process::id()));
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let result = run_in(&base, nonzero);
    let _ = fs::remove_dir_all(&base);
    result
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn run_in(base: &Path, nonzero: bool) -> Result<()> {
    println!("checkpoint benchmark in {}", base.display());

    // Large state.
    // The same bytes dd writes: the virtual disks of cloud machines may
    // treat zero-filled writes specially, so a different pattern here would
    // not compare like with like.
    let payload: Vec<u8> = if nonzero {
        (0..LARGE_BYTES).map(|i| (i % 251) as u8).collect()
    } else {
        vec![0u8; LARGE_BYTES]
    };
    let (mut dd_times, mut save_times) = (Vec::new(), Vec::new());
    for run in 0..LARGE_RUNS {
        let dir = base.join(format!("large-{run}"));
        fs::create_dir_all(&dir)?;
        let target = dir.join("dd.out");
        let start = Instant::now();
        let status = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", target.display()))
            .args(["bs=1M", "count=256", "conv=fsync", "status=none"])
            .status()
            .context("running dd")?;
        dd_times.push(start.elapsed());
        if !status.success() {
            bail!("dd failed: {status}");
        }
        fs::remove_file(&target)?;

        let mut ckpt = Checkpointer::builder(dir.join("ckpt"))
            .signals(&[])
            .open()?;
        let start = Instant::now();
        ckpt.save_bytes("raw", &payload)?;
        save_times.push(start.elapsed());
        drop(ckpt);
        fs::remove_dir_all(&dir)?;
    }
    let (dd, save) = (median(dd_times), median(save_times));
    let (dd_tp, save_tp) = (mib_per_s(LARGE_BYTES, dd), mib_per_s(LARGE_BYTES, save));
    let ratio = save_tp / dd_tp;
    println!("large state, 256 MiB, median of {LARGE_RUNS}:");
    println!(
        "  dd conv=fsync        {:>8.1} MiB/s  ({:.3} s)",
        dd_tp,
        dd.as_secs_f64()
    );
    println!(
        "  Checkpointer::save   {:>8.1} MiB/s  ({:.3} s)",
        save_tp,
        save.as_secs_f64()
    );
    println!(
        "  ratio {:.2} of dd's throughput (target >= 0.70): {}",
        ratio,
        if ratio >= 0.70 { "met" } else { "NOT met" }
    );

    // Small state: rounds alternate between the two so that a change in the
    // machine's load hits both alike.
    let state = serde_json::json!({ "blob": "x".repeat(1010) });
    let state_len = serde_json::to_vec(&state)?.len();
    let bytes = vec![b'x'; 1024];
    let (mut bare_times, mut ckpt_times) = (Vec::new(), Vec::new());
    let small = base.join("small");
    fs::create_dir_all(small.join("bare"))?;
    let mut ckpt = Checkpointer::builder(small.join("ckpt"))
        .signals(&[])
        .open()?;
    let dir_file = File::open(small.join("bare"))?;
    for _ in 0..SMALL_ROUNDS {
        let start = Instant::now();
        for _ in 0..SMALL_OPS {
            bare_save(&small.join("bare"), &dir_file, &bytes)?;
        }
        bare_times.push(start.elapsed() / SMALL_OPS as u32);
        let start = Instant::now();
        for _ in 0..SMALL_OPS {
            ckpt.save(&state)?;
        }
        ckpt_times.push(start.elapsed() / SMALL_OPS as u32);
    }
    let (bare, each) = (median(bare_times), median(ckpt_times));
    let ratio = each.as_secs_f64() / bare.as_secs_f64();
    println!(
        "small state, {state_len} bytes of JSON, {SMALL_OPS} saves x {SMALL_ROUNDS} rounds, median per save:"
    );
    println!(
        "  write+fsync+rename+dir fsync  {:>9.1} us",
        bare.as_secs_f64() * 1e6
    );
    println!(
        "  Checkpointer::save            {:>9.1} us",
        each.as_secs_f64() * 1e6
    );
    println!(
        "  ratio {:.2}x the bare cost (target <= 2.00): {}",
        ratio,
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// The least a crash-safe replace can do.
fn bare_save(dir: &Path, dir_file: &File, bytes: &[u8]) -> Result<()> {
    let temp = dir.join("state.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&temp, dir.join("state"))?;
    dir_file.sync_all()?;
    Ok(())
}
