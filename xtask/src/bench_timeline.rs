//! `cargo xtask bench timeline`: `plumb timeline --merge` against GNU
//! `sort -m` on the same presorted files (issue 15).
//!
//! Writes 100 files (`--files N`) of 100,000 lines each (`--lines N`; the
//! issue's full size is 10M events, about 650 MB, with `--lines 100000`
//! and 100 files), each line `EPOCH.FRACTION host=hNN text`, times stamped
//! ascending with a random step, then merges them twice, output to
//! /dev/null: `LC_ALL=C sort -m -n -k1,1` and `plumb timeline --merge
//! FILE@OFFSET...` with a different offset per file (so plumb parses each
//! timestamp and corrects it, which sort does not have to do). Prints
//! events/s of both, plumb's time over sort's (target <= 1), and the peak
//! RSS of both from wait4 (target: plumb's memory proportional to the
//! number of files, not lines; sort -m stays under 12 MiB).

use crate::measure::{self, load_average, verdict};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// plumb's time over sort's.
const TARGET_RATIO: f64 = 1.0;

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let files: usize = opt("--files").map_or(Ok(100), str::parse)?;
    let lines: usize = opt("--lines").map_or(Ok(100_000), str::parse)?;
    if files == 0 || lines == 0 {
        bail!("--files and --lines must be at least 1");
    }
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("timeline")?;
    let started = Instant::now();
    let paths = generate(&work, files, lines)?;
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    let events = (files * lines) as f64;
    println!(
        "bench timeline: {files} files x {lines} lines = {events} events, {:.1} MB, written in {:.1} s (load {})",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        load_average()
    );

    let mut sort = Command::new("sort");
    sort.env("LC_ALL", "C")
        .args(["-m", "-n", "-k1,1"])
        .args(&paths);
    let (sort_s, sort_kib) = timed(sort, "sort -m")?;

    let mut merge = Command::new(&plumb);
    merge.args(["timeline", "--merge"]);
    for (i, p) in paths.iter().enumerate() {
        // Offsets from -50 ms to +49 ms: every file corrected differently.
        let ms = (i % 100) as i64 - 50;
        merge.arg(format!(
            "{}@{}{}ms",
            p.display(),
            if ms < 0 { "-" } else { "+" },
            ms.abs()
        ));
    }
    let (plumb_s, plumb_kib) = timed(merge, "plumb timeline --merge")?;

    let ratio = plumb_s / sort_s;
    println!(
        "  sort -m                 {sort_s:7.2} s  {:12.0} events/s  peak RSS {:6.1} MiB",
        events / sort_s,
        sort_kib as f64 / 1024.0
    );
    println!(
        "  plumb timeline --merge  {plumb_s:7.2} s  {:12.0} events/s  peak RSS {:6.1} MiB",
        events / plumb_s,
        plumb_kib as f64 / 1024.0
    );
    println!(
        "  plumb / sort -m: {ratio:.2} (target <= {TARGET_RATIO}: {})",
        verdict(ratio <= TARGET_RATIO)
    );
    println!(
        "  memory: plumb {:.1} KiB per file ({} files); sort -m {} 12 MiB",
        plumb_kib as f64 / files as f64,
        files,
        if sort_kib <= 12 * 1024 {
            "under"
        } else {
            "OVER"
        }
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Writes the presorted files.
fn generate(work: &Path, files: usize, lines: usize) -> Result<Vec<PathBuf>> {
    let mut rng = fastrand::Rng::with_seed(15);
    let mut paths = Vec::with_capacity(files);
    for f in 0..files {
        let path = work.join(format!("h{f:03}.log"));
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        // Microseconds from 2026-12-03T00:00:00Z, a few ms apart on
        // average, as a busy service logs.
        let mut t: u64 = 1_796_256_000_000_000 + rng.u64(0..1_000_000);
        for n in 0..lines {
            t += rng.u64(1..2_000);
            writeln!(
                w,
                "{}.{:06} host=h{f:03} req={n} GET /api/v1/items status=200",
                t / 1_000_000,
                t % 1_000_000
            )?;
        }
        w.flush()?;
        paths.push(path);
    }
    Ok(paths)
}

/// Runs `cmd` with its output to /dev/null; wall seconds and peak RSS.
fn timed(mut cmd: Command, what: &str) -> Result<(f64, i64)> {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let usage = measure::wait4(pid)?;
    let wall = started.elapsed().as_secs_f64();
    if usage.code != 0 {
        bail!("{what} failed with code {}", usage.code);
    }
    Ok((wall, usage.maxrss_kib))
}
