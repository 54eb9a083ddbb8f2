//! `cargo xtask bench dashboard`: server-side rendering time of every
//! dashboard page over a large store.
//!
//! The store holds 1,000 nodes, 1,000,000 runs and 10,000,000 output lines
//! (1,000 lines in each of 10,000 runs). Seeding goes through the store API
//! in batched transactions and takes minutes, so the seeded store is kept
//! under `<target>/bench-dashboard/seed-v<SEED_VERSION>/` and reused by later
//! runs (delete it, or bump the version, to reseed). A collector is started
//! on it in-process, and each page is requested `--n` times (default 30)
//! over HTTP on loopback, one at a time. Printed per page: p50 and p95, the
//! target (nodes <= 50 ms, every other page <= 100 ms at p50) and p50 as a
//! ratio of the target.
//!
//! Options: `--n N`.

use anyhow::{Context, Result, bail};
use plumb_model::node::{
    CpuLoad, DiskInfo, MemoryInfo, NodeFingerprint, NodeReport, NodeState, SpoolStats,
};
use plumb_model::{Fingerprint, OsInfo, Run, RunState, Stream, Timestamp, Uuid};
use plumb_store::Store;
use plumb_store::chunk::ChunkBuilder;
use plumb_store::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bump when the seeded data changes shape.
const SEED_VERSION: u32 = 2;
const NODES: usize = 1_000;
const RUNS: usize = 1_000_000;
/// Runs that have output, and lines each: 10,000,000 lines in all.
const RUNS_WITH_OUTPUT: usize = 10_000;
const LINES_PER_RUN: usize = 1_000;
const NAMES: usize = 200;
/// The newest runs are still running.
const RUNNING: usize = 200;
/// A word planted once in all the output.
const RARE: &str = "zebraquux";

#[derive(Debug)]
struct Meta {
    /// A run with output, failed, with earlier runs of its name.
    sample_run: String,
    /// A node name.
    sample_node: String,
    /// The page key halfway through the runs.
    deep_key: String,
}

pub fn run(args: &[&str]) -> Result<()> {
    let n: usize = match args.iter().position(|a| *a == "--n") {
        Some(i) => args
            .get(i + 1)
            .context("--n needs a number")?
            .parse()
            .context("--n needs a number")?,
        None => 30,
    };
    let target = crate::measure::target_dir();
    let dir = target
        .join("bench-dashboard")
        .join(format!("seed-v{SEED_VERSION}"));
    let meta_file = dir.join("seeded.json");
    let meta: Meta = match std::fs::read(&meta_file) {
        Ok(b) => {
            println!("reusing the seeded store in {}", dir.display());
            let v: serde_json::Value = serde_json::from_slice(&b).context("reading seeded.json")?;
            let field = |k: &str| -> Result<String> {
                Ok(v[k]
                    .as_str()
                    .context("seeded.json lacks a field")?
                    .to_string())
            };
            Meta {
                sample_run: field("sample_run")?,
                sample_node: field("sample_node")?,
                deep_key: field("deep_key")?,
            }
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let t = Instant::now();
            let meta = seed(&dir)?;
            let v = serde_json::json!({
                "sample_run": meta.sample_run,
                "sample_node": meta.sample_node,
                "deep_key": meta.deep_key,
            });
            std::fs::write(&meta_file, serde_json::to_vec(&v)?)?;
            println!(
                "seeded {} in {:.0} s",
                dir.display(),
                t.elapsed().as_secs_f64()
            );
            meta
        }
    };
    let handle = plumb_collector::spawn(plumb_collector::CollectorConfig::new(
        std::sync::Arc::new(plumb_store::SqliteConnector::new(dir.clone())),
    ))
    .context("starting the collector")?;
    let url = handle.url();
    println!(
        "collector {url}; {NODES} nodes, {RUNS} runs, {} output lines; {n} requests per page",
        RUNS_WITH_OUTPUT * LINES_PER_RUN
    );
    let pages: Vec<(String, String, f64)> = vec![
        ("nodes".into(), "/nodes".into(), 50.0),
        ("nodes JSON".into(), "/api/v1/pages/nodes".into(), 50.0),
        ("node".into(), format!("/nodes/{}", meta.sample_node), 50.0),
        (
            "node 1h".into(),
            format!("/nodes/{}?range=1h", meta.sample_node),
            50.0,
        ),
        (
            "node 7d".into(),
            format!("/nodes/{}?range=7d", meta.sample_node),
            50.0,
        ),
        (
            "node JSON 7d".into(),
            format!("/api/v1/nodes/{}?range=7d", meta.sample_node),
            50.0,
        ),
        ("errors".into(), "/errors".into(), 50.0),
        ("runs".into(), "/runs".into(), 100.0),
        (
            "runs deep page".into(),
            format!("/runs?after={}", meta.deep_key),
            100.0,
        ),
        (
            "runs state:failed".into(),
            "/runs?q=state%3Afailed".into(),
            100.0,
        ),
        (
            "runs name+host".into(),
            "/runs?q=name%3Ajob-7+host%3Anode-0007".into(),
            100.0,
        ),
        (
            "runs tag+since".into(),
            "/runs?q=tag%3Ateam%3Dml+since%3A2h".into(),
            100.0,
        ),
        ("runs free text".into(), "/runs?q=job-19".into(), 100.0),
        ("run".into(), format!("/runs/{}", meta.sample_run), 100.0),
        ("job".into(), "/jobs/job-7".into(), 100.0),
        (
            "runs chart API".into(),
            "/api/v1/runs/chart?name=job-7".into(),
            100.0,
        ),
        (
            "run diff".into(),
            format!("/runs/{}/diff", meta.sample_run),
            100.0,
        ),
        (
            "search rare word".into(),
            format!("/search?q={RARE}"),
            100.0,
        ),
    ];
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "page", "p50 ms", "p95 ms", "target", "ratio", "KiB"
    );
    let mut missed = Vec::new();
    for (name, path, target_ms) in &pages {
        let mut times = Vec::with_capacity(n);
        let mut size = 0;
        // One request first, unmeasured: the first read of a page's data
        // pulls it from disk into the page cache.
        for i in 0..=n {
            let t = Instant::now();
            let mut resp = agent
                .get(&format!("{url}{path}"))
                .call()
                .with_context(|| format!("GET {path}"))?;
            let body = resp
                .body_mut()
                .with_config()
                .limit(256 << 20)
                .read_to_vec()?;
            let took = t.elapsed().as_secs_f64() * 1e3;
            if resp.status().as_u16() != 200 {
                bail!(
                    "GET {path}: {}: {}",
                    resp.status(),
                    String::from_utf8_lossy(&body)
                );
            }
            size = body.len();
            if i > 0 {
                times.push(took);
            }
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        println!(
            "{name:<20} {p50:>9.1} {p95:>9.1} {:>9} {:>7.2} {:>9}",
            format!("<={target_ms:.0}"),
            p50 / target_ms,
            size / 1024
        );
        if p50 > *target_ms {
            missed.push(name.clone());
        }
    }
    if missed.is_empty() {
        println!("every page met its p50 target");
    } else {
        println!("missed the p50 target: {}", missed.join(", "));
    }
    handle.shutdown();
    Ok(())
}

fn seed(dir: &Path) -> Result<Meta> {
    let store = Store::open(dir)?;
    let now = Timestamp::now().as_nanos();
    let t = Instant::now();
    for i in 0..NODES {
        let report = node_report(i);
        store.put_node_report(&report, Timestamp::from_nanos(now), NodeState::Up)?;
    }
    println!("  {NODES} nodes in {:.1} s", t.elapsed().as_secs_f64());
    // Their history as heartbeats would leave it: a week of ten-minute
    // rows and the last hour of minute rows per node (a heartbeat every
    // ten minutes, then every minute; the store folds each into both).
    let t = Instant::now();
    const MIN: i64 = 60_000_000_000;
    for i in 0..NODES {
        let mut report = node_report(i);
        let mut put = |at: i64, k: i64| -> Result<()> {
            report.cpu.load1 = ((i as i64 * 7 + k) % 17) as f64 * 0.37;
            for d in &mut report.disks {
                d.available = d.available.saturating_sub(1 << 24);
            }
            let at = Timestamp::from_nanos(at);
            store.put_node_sample(
                &report.node,
                at,
                &plumb_model::node::NodeSample::from_report(&report, at),
            )?;
            Ok(())
        };
        for k in (1..(7 * 24 * 6)).rev() {
            put(now - k * 10 * MIN, k)?;
        }
        for k in (0..60).rev() {
            put(now - k * MIN, k)?;
        }
    }
    println!(
        "  {NODES} nodes' history in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut batch = Vec::with_capacity(10_000);
    let mut with_output: Vec<(Uuid, String, i64)> = Vec::new();
    let mut sample_run = None;
    let mut deep_key = None;
    let teams = ["ml", "infra", "web", "data"];
    for i in 0..RUNS {
        // One run a second, the newest now.
        let started = now - (RUNS - i) as i64 * 1_000_000_000;
        let mut run = Run::new(
            plumb_model::new_id(),
            format!("job-{}", i % NAMES),
            Timestamp::from_nanos(started),
        );
        run.host.hostname = format!("node-{:04}", i % NODES);
        run.argv = vec![
            "python".into(),
            "train.py".into(),
            format!("--seed={}", rng.u32(..)),
        ];
        run.cwd = "/srv/work".into();
        run.tags
            .insert("team".into(), teams[i % teams.len()].into());
        run.env.insert("PATH".into(), "/usr/bin:/bin".into());
        let roll = rng.u32(0..100);
        if i >= RUNS - RUNNING {
            run.state = RunState::Running;
        } else {
            run.state = match roll {
                0..90 => RunState::Succeeded,
                90..97 => RunState::Failed,
                97..99 => RunState::Killed,
                _ => RunState::Evicted,
            };
            run.ended = Some(Timestamp::from_nanos(
                started + rng.i64(1_000_000_000..600_000_000_000),
            ));
            run.exit = Some(plumb_model::ExitStatus {
                code: Some(if run.state == RunState::Succeeded {
                    0
                } else {
                    1
                }),
                ..Default::default()
            });
        }
        if i % (RUNS / RUNS_WITH_OUTPUT) == 0 {
            with_output.push((run.id, run.host.hostname.clone(), started));
        }
        if i == RUNS / 2 {
            deep_key = Some(format!("{started}_{}", run.id));
        }
        if i > RUNS / 2 && sample_run.is_none() && i % (RUNS / RUNS_WITH_OUTPUT) == 0 {
            run.state = RunState::Failed;
            sample_run = Some(run.id.to_string());
        }
        batch.push(run);
        if batch.len() == batch.capacity() {
            store.put_runs(&batch)?;
            batch.clear();
        }
    }
    store.put_runs(&batch)?;
    println!("  {RUNS} runs in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let rare_at = with_output.len() / 3;
    for (k, (id, host, started)) in with_output.iter().enumerate() {
        let mut text = String::with_capacity(LINES_PER_RUN * 48);
        for l in 0..LINES_PER_RUN {
            use std::fmt::Write as _;
            let _ = writeln!(
                text,
                "step {l} loss {:.4} lr 0.001 batch {}{}",
                1.0 / (l as f64 + 1.0),
                rng.u32(..1000),
                if k == rare_at && l == 500 {
                    " zebraquux"
                } else {
                    ""
                }
            );
        }
        let mut b = ChunkBuilder::new(Stream::Stdout);
        let mut sealed = Vec::new();
        // Reads of ~4 KiB, a millisecond apart.
        for (seq, read) in text.as_bytes().chunks(4096).enumerate() {
            b.push(
                seq as u64,
                Timestamp::from_nanos(started + seq as i64 * 1_000_000),
                read,
                &mut sealed,
            );
        }
        b.flush(&mut sealed);
        store.put_chunks(*id, host, &sealed)?;
    }
    println!(
        "  {} output lines in {:.1} s",
        RUNS_WITH_OUTPUT * LINES_PER_RUN,
        t.elapsed().as_secs_f64()
    );
    Ok(Meta {
        sample_run: sample_run.context("no sample run chosen")?,
        sample_node: "node-0042".into(),
        deep_key: deep_key.context("no deep key")?,
    })
}

fn node_report(i: usize) -> NodeReport {
    // A few nodes in each rack run other software.
    let os = if i % 97 == 5 { "12.9" } else { "12.8" };
    let fp = Fingerprint {
        os: OsInfo {
            id: "debian".into(),
            version: os.into(),
            pretty: format!("Debian {os}"),
            kernel: "6.1.0".into(),
            arch: "x86_64".into(),
        },
        ..Default::default()
    };
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("rack".to_string(), format!("r{}", i % 10));
    NodeReport {
        version: plumb_model::node::NODE_REPORT_VERSION,
        node: format!("node-{i:04}"),
        sent: Timestamp::now(),
        seq: 1,
        interval_ms: 5000,
        labels,
        boot_id: format!("boot-{i}"),
        uptime_s: 86_400.0,
        cpu: CpuLoad {
            load1: (i % 16) as f64 * 0.5,
            load5: 1.0,
            load15: 1.0,
            cpus: 16,
        },
        memory: MemoryInfo {
            total: 64 << 30,
            available: (i as u64 % 64) << 30,
            swap_total: 0,
            swap_free: 0,
        },
        disks: ["/", "/data", "/scratch"]
            .iter()
            .enumerate()
            .map(|(k, m)| DiskInfo {
                mount: (*m).into(),
                fs_type: "ext4".into(),
                device: format!("/dev/nvme{k}n1"),
                total: 1 << 40,
                available: ((i as u64 * 7 + k as u64 * 13) % 100) << 34,
                inodes_total: 1 << 26,
                inodes_free: 1 << 25,
            })
            .collect(),
        network: Vec::new(),
        runs_in_progress: (i % 5) as u32,
        spool: SpoolStats::default(),
        fingerprint: Some(NodeFingerprint {
            hash: fp.content_hash(),
            fingerprint: fp,
        }),
        clock: None,
        health: None,
    }
}
