//! `cargo xtask bench copy`: how fast `plumb store copy` moves a store
//! from SQLite to PostgreSQL.
//!
//! Seeds an SQLite store with the store's own API: `--runs N` runs (1000)
//! of `--lines N` output lines each (1000), so a million lines by default,
//! cut into chunks as the recorder cuts them. Then runs the release
//! `plumb store copy --from DIR --to postgres://...` into a fresh schema on
//! the tests' PostgreSQL server (`--pg-url URL` for another) and prints
//! the copy's rows/s and MB/s (from its own summary line), output lines/s,
//! the comparison's time, and the load average. It fails when the copy
//! does not end equal.

use crate::measure::{self, load_average};
use anyhow::{Context, Result, bail};
use plumb_store::prelude::*;
use std::process::Command;
use std::time::Instant;

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let runs: usize = opt("--runs").map_or(Ok(1000), str::parse)?;
    let lines: usize = opt("--lines").map_or(Ok(1000), str::parse)?;
    if runs == 0 || lines == 0 {
        bail!("--runs and --lines must be at least 1");
    }
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("copy")?;
    let src = work.join("sqlite");
    let seeded = Instant::now();
    let raw = seed(&src, runs, lines)?;
    println!(
        "bench copy: {runs} runs x {lines} lines = {} lines ({:.1} MB raw) seeded in {:.1} s",
        runs * lines,
        raw as f64 / 1e6,
        seeded.elapsed().as_secs_f64()
    );
    let base = match opt("--pg-url") {
        Some(u) => u.to_string(),
        None => plumb_store_postgres::testing::server_url(),
    };
    let schema = format!("bench_copy_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    let started = Instant::now();
    let out = Command::new(&plumb)
        .args(["store", "copy", "--from"])
        .arg(&src)
        .args(["--to", &url])
        .env("PLUMB_HOME", work.join("home"))
        .output()
        .context("running plumb store copy")?;
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "plumb store copy failed: {}\n{stdout}\n{stderr}",
            out.status
        );
    }
    if stdout.contains("DIFFERS") {
        bail!("the copy differs:\n{stdout}");
    }
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("copied "))
        .context("the copy's summary line")?;
    // "copied R rows (M MB) in S s: ..."
    let secs: f64 = summary
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .context("the copy's time in its summary")?;
    println!("  {summary}");
    println!(
        "  {:.0} output lines/s, {:.1} MB/s of raw output; comparing both sides took {:.1} s (wall {wall:.1} s in all)",
        (runs * lines) as f64 / secs.max(1e-9),
        raw as f64 / 1e6 / secs.max(1e-9),
        wall - secs
    );
    println!(
        "  load average {} (PostgreSQL, plumb and whatever else runs share the machine)",
        load_average()
    );
    let mut c = postgres::Client::connect(&base, postgres::NoTls)?;
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
    Ok(())
}

/// Writes `runs` runs of `lines` lines each; the raw bytes of output.
fn seed(dir: &std::path::Path, runs: usize, lines: usize) -> Result<u64> {
    let store = plumb_store::Store::open(dir)?;
    let t0 = 1_764_000_000_000_000_000i64;
    let mut raw = 0u64;
    for i in 0..runs {
        let mut run = plumb_model::Run::new(
            plumb_model::new_id(),
            format!("job-{}", i % 20),
            plumb_model::Timestamp::from_nanos(t0 + i as i64 * 1_000_000_000),
        );
        run.state = plumb_model::RunState::Succeeded;
        run.ended = Some(plumb_model::Timestamp::from_nanos(
            t0 + i as i64 * 1_000_000_000 + 500_000_000,
        ));
        run.host.hostname = format!("node-{}", i % 8);
        store.put_run(&run)?;
        let mut chunks = Vec::new();
        let mut b = plumb_store::chunk::ChunkBuilder::new(plumb_model::Stream::Stdout);
        for j in 0..lines {
            let line = format!(
                "run {i} step {j} loss {:.6} token{}\n",
                fastrand::f64(),
                (i * j) % 9973
            );
            raw += line.len() as u64;
            b.push(
                j as u64,
                plumb_model::Timestamp::from_nanos(t0 + (i * lines + j) as i64),
                line.as_bytes(),
                &mut chunks,
            );
        }
        b.flush(&mut chunks);
        store.put_chunks(run.id, &run.host.hostname, &chunks)?;
    }
    Ok(raw)
}
