//! `cargo xtask bench fingerprint`: what a software fingerprint costs, and
//! what drift over a fleet costs (issue 17's targets).
//!
//! 1. A Python virtualenv with `--packages N` distributions (default 300,
//!    installed as `*.dist-info` directories, which is all
//!    `importlib.metadata` reads) is fingerprinted as `plumb run` and
//!    `plumb env` do it, in process: cold (a fresh cache each time, so the
//!    interpreter is run to list the packages; target <= 50 ms) and cached
//!    (the same cache, nothing changed; target <= 2 ms). Medians of
//!    `--rounds` (default 15 cold, 100 cached).
//! 2. Drift over `--nodes N` nodes (default 1,000) from a real store, as
//!    `GET /api/v1/env/drift` computes it: the nodes are stored with
//!    their heartbeats (three environments, and every 50th node with one
//!    package upgraded), then `plumb_collector::env::fleet_drift` reads
//!    them and compares (target <= 200 ms). The pure comparison
//!    (`plumb_model::env::drift`) is timed on its own beside it.

use crate::measure::{self, median, verdict};
use anyhow::{Context, Result, bail};
use plumb_model::Timestamp;
use plumb_model::env::{components, drift};
use plumb_model::node::{NodeReport, NodeState};
use plumb_store::Store;
use plumb_store::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const COLD_TARGET_MS: f64 = 50.0;
const CACHED_TARGET_MS: f64 = 2.0;
const DRIFT_TARGET_MS: f64 = 200.0;

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let packages: usize = opt("--packages").map_or(Ok(300), str::parse)?;
    let nodes: usize = opt("--nodes").map_or(Ok(1000), str::parse)?;
    let cold_rounds: usize = opt("--rounds").map_or(Ok(15), str::parse)?;
    let work = measure::fresh_work_dir("fingerprint")?;
    println!(
        "bench fingerprint ({packages} Python distributions, {nodes} nodes; load average {})",
        measure::load_average()
    );
    let venv = work.join("venv");
    let status = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .context("python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv failed: {status}");
    }
    let site = std::fs::read_dir(venv.join("lib"))?
        .next()
        .context("the venv has no lib/pythonX.Y")??
        .path()
        .join("site-packages");
    for i in 0..packages {
        install(&site, &format!("bench-pkg-{i}"), &format!("1.{i}.0"))?;
    }
    let python = venv.join("bin/python");
    let plain = work.join("plain");
    std::fs::create_dir_all(&plain)?;

    // Cold: a fresh cache every round.
    let mut cold = Vec::new();
    let mut found = 0;
    for r in 0..cold_rounds {
        let cache = work.join(format!("cache-cold-{r}"));
        let t0 = Instant::now();
        let (_, fp, stats) = capture(&cache, &python, &plain).finish_with_stats();
        cold.push(t0.elapsed().as_secs_f64() * 1e3);
        if !stats.python_scanned {
            bail!("a cold capture did not list the packages");
        }
        found = fp.python.map_or(0, |p| p.packages.len());
    }
    if found < packages {
        bail!("the capture found {found} distributions, {packages} installed");
    }
    // Cached: the same cache, nothing changed.
    let cache = work.join("cache-warm");
    let (_, fp, _) = capture(&cache, &python, &plain).finish_with_stats();
    let mut cached = Vec::new();
    for _ in 0..100 {
        let t0 = Instant::now();
        let (_, _, stats) = capture(&cache, &python, &plain).finish_with_stats();
        cached.push(t0.elapsed().as_secs_f64() * 1e3);
        if stats.python_scanned {
            bail!("a cached capture ran the interpreter again");
        }
    }
    let cold_ms = median(&mut cold);
    let cached_ms = median(&mut cached);
    println!(
        "fingerprint, cold (fresh cache)   median {cold_ms:8.2} ms  target <= {COLD_TARGET_MS} ms  ratio {:.2}  {}",
        cold_ms / COLD_TARGET_MS,
        verdict(cold_ms <= COLD_TARGET_MS)
    );
    println!(
        "fingerprint, cached               median {cached_ms:8.3} ms  target <= {CACHED_TARGET_MS} ms  ratio {:.2}  {}",
        cached_ms / CACHED_TARGET_MS,
        verdict(cached_ms <= CACHED_TARGET_MS)
    );

    // Drift over a stored fleet.
    let store = Store::open(&work.join("store"))?;
    let variants = variants(&fp);
    let t_store = Instant::now();
    let mut pure_nodes = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mut f = variants[i % variants.len()].clone();
        if i % 50 == 7
            && let Some(py) = f.python.as_mut()
        {
            py.packages
                .insert(format!("bench-pkg-{}", i % packages), "9.9".into());
        }
        let hash = f.content_hash();
        pure_nodes.push((format!("node-{i:04}"), components(&f)));
        let report: NodeReport = serde_json::from_value(serde_json::json!({
            "version": 1, "node": format!("node-{i:04}"), "sent": 0, "seq": 1, "interval_ms": 5000,
            "labels": {"role": "worker"},
            "cpu": {"load1": 0.1, "load5": 0.1, "load15": 0.1, "cpus": 4},
            "memory": {"total": 8u64 << 30, "available": 3u64 << 30, "swap_total": 0, "swap_free": 0},
            "disks": [], "runs_in_progress": 0,
            "fingerprint": {"hash": hash, "fingerprint": f},
        }))?;
        store.put_node_report(&report, Timestamp::now(), NodeState::Up)?;
    }
    println!(
        "stored {nodes} nodes in {:.1} s",
        t_store.elapsed().as_secs_f64()
    );
    let labels = BTreeMap::from([("role".to_string(), "worker".to_string())]);
    let mut fleet = Vec::new();
    let mut items = 0;
    for _ in 0..20 {
        let t0 = Instant::now();
        let view = plumb_collector::env::fleet_drift(&store, &labels)?;
        fleet.push(t0.elapsed().as_secs_f64() * 1e3);
        items = view.drift.items.len();
        if view.drift.nodes.len() != nodes {
            bail!("drift compared {} nodes of {nodes}", view.drift.nodes.len());
        }
    }
    // Every node's map its own allocation: grouping compares contents.
    let refs: Vec<(&str, &BTreeMap<String, String>)> =
        pure_nodes.iter().map(|(n, c)| (n.as_str(), c)).collect();
    let mut pure = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let d = drift(&refs);
        pure.push(t0.elapsed().as_secs_f64() * 1e3);
        if d.items.len() != items {
            bail!(
                "the pure comparison found {} items, the store's {items}",
                d.items.len()
            );
        }
    }
    let fleet_ms = median(&mut fleet);
    let pure_ms = median(&mut pure);
    println!(
        "drift over {nodes} nodes (store)    median {fleet_ms:8.2} ms  target <= {DRIFT_TARGET_MS} ms  ratio {:.2}  {}  ({items} components differ)",
        fleet_ms / DRIFT_TARGET_MS,
        verdict(fleet_ms <= DRIFT_TARGET_MS)
    );
    println!("drift comparison alone           median {pure_ms:8.2} ms");
    Ok(())
}

fn install(site: &Path, name: &str, version: &str) -> Result<()> {
    let d = site.join(format!("{}-{version}.dist-info", name.replace('-', "_")));
    std::fs::create_dir_all(&d)?;
    std::fs::write(
        d.join("METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    )?;
    Ok(())
}

fn capture(cache: &Path, python: &Path, cwd: &Path) -> plumb_record::fingerprint::Capture {
    let opts = plumb_record::fingerprint::CaptureOptions {
        cache_dir: cache.to_path_buf(),
        argv: Vec::new(),
        cwd: cwd.to_path_buf(),
        env: Vec::new(),
        python: Some(python.to_path_buf()),
        tools: BTreeMap::new(),
    };
    plumb_record::fingerprint::Capture::start(&opts, std::process::id())
}

/// Three environments: the one measured, one with another kernel, one
/// with an older package.
fn variants(fp: &plumb_model::Fingerprint) -> Vec<plumb_model::Fingerprint> {
    let mut b = fp.clone();
    b.os.kernel = format!("{}-other", b.os.kernel);
    let mut c = fp.clone();
    if let Some(py) = c.python.as_mut() {
        py.packages.insert("bench-pkg-0".into(), "0.1".into());
    }
    vec![fp.clone(), fp.clone(), fp.clone(), b, c]
}
