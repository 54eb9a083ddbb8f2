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
//! The store also holds 200 error groups with their occurrences spread
//! over the last 14 days (added to a store seeded before they were, and
//! recorded in `seeded.json`'s `errors`).
//!
//! Then the browser stage (on when chromium, node and
//! tests/dashboard/node_modules are present; `--no-browser` skips it, and a
//! skip says why): `tests/dashboard/bench.mjs` visits every page with a
//! chart in headless Chromium, saves a PNG of each under
//! `<target>/bench/screens/` (paths printed), and counts what each chart
//! drew; each count is compared with the page's JSON twin, a bar of the
//! runs chart is clicked and the list it narrowed to is compared with the
//! JSON twin of the narrowed query. A mismatch fails the bench.
//!
//! Options: `--n N`, `--no-browser`.

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
    /// The fingerprint of the error group with the most occurrences.
    sample_error: String,
}

/// Error groups seeded, and the days their occurrences spread over.
const ERROR_GROUPS: usize = 200;
const ERROR_DAYS: i64 = 14;

pub fn run(args: &[&str]) -> Result<()> {
    let n: usize = match args.iter().position(|a| *a == "--n") {
        Some(i) => args
            .get(i + 1)
            .context("--n needs a number")?
            .parse()
            .context("--n needs a number")?,
        None => 30,
    };
    let browser = !args.contains(&"--no-browser");
    if let Some(bad) = args
        .iter()
        .enumerate()
        .find(|(i, a)| {
            a.starts_with("--")
                && !matches!(**a, "--n" | "--no-browser")
                && !(*i > 0 && args[i - 1] == "--n")
        })
        .map(|(_, a)| a)
    {
        bail!("unknown option `{bad}` (expected --n N, --no-browser)");
    }
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
            let sample_error = match v["sample_error"].as_str() {
                Some(fp) => fp.to_string(),
                None => {
                    // Seeded before the error groups were: add them.
                    let t = Instant::now();
                    let fp = seed_errors(&Store::open(&dir)?)?;
                    let mut v = v.clone();
                    v["sample_error"] = fp.clone().into();
                    std::fs::write(&meta_file, serde_json::to_vec(&v)?)?;
                    println!(
                        "added {ERROR_GROUPS} error groups in {:.0} s",
                        t.elapsed().as_secs_f64()
                    );
                    fp
                }
            };
            Meta {
                sample_run: field("sample_run")?,
                sample_node: field("sample_node")?,
                deep_key: field("deep_key")?,
                sample_error,
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
                "sample_error": meta.sample_error,
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
    // The sample node's last hour and day as fresh heartbeats would leave
    // them, so its 1h and 1d charts have points however old the seed is,
    // and every node's last two hours (the /nodes sparklines).
    let t = Instant::now();
    let store = Store::open(&dir)?;
    refresh_node(&store, &meta.sample_node)?;
    refresh_sparks(&store)?;
    drop(store);
    println!(
        "refreshed the nodes' recent history in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let handle = plumb_collector::spawn(plumb_collector::CollectorConfig::new(
        std::sync::Arc::new(plumb_store::SqliteConnector::new(dir.clone())),
    ))
    .context("starting the collector")?;
    let url = handle.url();
    println!(
        "collector {url}; {NODES} nodes, {RUNS} runs, {} output lines, {ERROR_GROUPS} error groups; {n} requests per page; load average {}",
        RUNS_WITH_OUTPUT * LINES_PER_RUN,
        crate::measure::load_average()
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
        ("errors JSON".into(), "/api/v1/errors".into(), 50.0),
        (
            "error group".into(),
            format!("/errors/{}", meta.sample_error),
            50.0,
        ),
        ("status".into(), "/status".into(), 50.0),
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
    println!("load average {}", crate::measure::load_average());
    let stage = if browser {
        match browser_missing() {
            None => browser_stage(&agent, &url, &meta, &target.join("bench").join("screens")),
            Some(why) => {
                println!("browser stage skipped: {why}");
                Ok(())
            }
        }
    } else {
        println!("browser stage skipped: --no-browser");
        Ok(())
    };
    handle.shutdown();
    stage
}

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the browser stage cannot run here, if it cannot.
fn browser_missing() -> Option<String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(Into::into))
        .any(|p| p.exists());
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pw = workspace()
        .join("tests/dashboard/node_modules/playwright-core")
        .exists();
    let mut lacking = Vec::new();
    if !chromium {
        lacking.push("chromium (/usr/bin/chromium or $CHROMIUM)");
    }
    if !node {
        lacking.push("node");
    }
    if !pw {
        lacking.push("tests/dashboard/node_modules/playwright-core");
    }
    (!lacking.is_empty()).then(|| {
        format!(
            "no {} (run .ci/install-dashboard.sh)",
            lacking.join(", no ")
        )
    })
}

fn get_json(agent: &ureq::Agent, url: &str, path: &str) -> Result<serde_json::Value> {
    let mut resp = agent
        .get(&format!("{url}{path}"))
        .call()
        .with_context(|| format!("GET {path}"))?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()?;
    if resp.status().as_u16() != 200 {
        bail!(
            "GET {path}: {}: {}",
            resp.status(),
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

fn len(v: &serde_json::Value) -> u64 {
    v.as_array().map_or(0, |a| a.len() as u64)
}

/// What to count on a page: a key, a CSS selector, `count` or `points`,
/// and the count its JSON twin gives.
type Probe = (
    &'static str,
    &'static str,
    &'static str,
    fn(&serde_json::Value) -> u64,
);

/// One page of the browser stage: what to count on it (key, CSS selector,
/// `count` or `points`) and where its JSON twin says how many.
struct Shot {
    name: String,
    path: String,
    twin: String,
    /// (key, selector, how, the count from the twin).
    probes: Vec<Probe>,
}

fn browser_stage(agent: &ureq::Agent, url: &str, meta: &Meta, screens: &Path) -> Result<()> {
    let node = &meta.sample_node;
    let mut shots = vec![
        Shot {
            name: "runs".into(),
            path: "/runs".into(),
            twin: "/api/v1/pages/runs".into(),
            probes: vec![
                ("bars", "svg#runs-chart g.bar", "count", |v| {
                    len(&v["chart"]["bars"])
                }),
                ("rows", "#runs tbody tr", "count", |v| len(&v["runs"])),
            ],
        },
        Shot {
            name: "job".into(),
            path: "/jobs/job-7".into(),
            twin: "/api/v1/pages/jobs/job-7".into(),
            probes: vec![
                ("points", "svg#job-durations g.point", "count", |v| {
                    len(&v["runs"])
                }),
                ("days", "svg#job-failures g.bar", "count", |v| {
                    len(&v["days"])
                }),
            ],
        },
        Shot {
            name: "nodes".into(),
            path: "/nodes".into(),
            twin: "/api/v1/pages/nodes".into(),
            probes: vec![
                ("rows", "#nodes tbody tr", "count", |v| len(&v["nodes"])),
                ("sparks", "#nodes tbody td.sp svg", "count", |v| {
                    v["nodes"].as_array().map_or(0, |a| {
                        a.iter().filter(|n| !n["spark"].is_null()).count() as u64
                    })
                }),
            ],
        },
    ];
    for range in ["1h", "1d", "7d"] {
        shots.push(Shot {
            name: format!("node-{range}"),
            path: format!("/nodes/{node}?range={range}"),
            twin: format!("/api/v1/nodes/{node}?range={range}"),
            probes: vec![
                ("load", "svg#load-chart g.series polyline", "points", |v| {
                    len(&v["charts"]["load"])
                }),
                (
                    "memory",
                    "svg#memory-chart g.series polyline",
                    "points",
                    |v| len(&v["charts"]["memory"]),
                ),
                ("disk", "svg#disk-chart g.series polyline", "points", |v| {
                    v["charts"]["disks"]
                        .as_array()
                        .map_or(0, |a| a.iter().map(|d| len(&d["points"])).sum())
                }),
            ],
        });
    }
    shots.push(Shot {
        name: "errors".into(),
        path: "/errors".into(),
        twin: "/api/v1/errors".into(),
        probes: vec![
            ("rows", "#errors tbody tr", "count", |v| len(&v["groups"])),
            ("sparks", "#errors tbody td.sp svg", "count", |v| {
                len(&v["sparks"])
            }),
        ],
    });
    shots.push(Shot {
        name: "error-group".into(),
        path: format!("/errors/{}", meta.sample_error),
        twin: format!("/api/v1/errors/{}", meta.sample_error),
        probes: vec![("bars", "svg#error-chart g.bar", "count", |v| {
            len(&v["over_time"]["counts"])
        })],
    });
    shots.push(Shot {
        name: "status".into(),
        path: "/status".into(),
        twin: "/api/v1/status".into(),
        probes: vec![(
            "points",
            "svg#ingest-chart g.series polyline",
            "points",
            |v| 2 * len(&v["per_minute"]), // records/s and lines/s
        )],
    });
    // The twins before and after the browser ran: a page drawn across a
    // minute's turn may match either.
    let before: Vec<serde_json::Value> = shots
        .iter()
        .map(|s| get_json(agent, url, &s.twin))
        .collect::<Result<_>>()?;
    // The bar to click: the newest with runs in the middle of the chart.
    let bars = before[0]["chart"]["bars"]
        .as_array()
        .context("the runs twin has no chart")?;
    let bar = bars[..bars.len() / 2 + 1]
        .iter()
        .rev()
        .find(|b| b["total"].as_u64().unwrap_or(0) > 0)
        .context("the runs chart has no bar with runs")?
        .clone();
    let args = serde_json::json!({
        "pages": shots.iter().map(|s| serde_json::json!({
            "name": s.name,
            "path": s.path,
            "probes": s.probes.iter().map(|(k, sel, how, _)| serde_json::json!({"key": k, "sel": sel, "how": how})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "click": {"path": "/runs", "start": bar["start"].to_string()},
    });
    let _ = std::fs::remove_dir_all(screens);
    std::fs::create_dir_all(screens)?;
    let t = Instant::now();
    let mut child = std::process::Command::new("node")
        .arg("bench.mjs")
        .arg(url)
        .arg(screens)
        .arg(args.to_string())
        .current_dir(workspace().join("tests/dashboard"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting node tests/dashboard/bench.mjs")?;
    // Bounded: the pages take seconds; a hung browser is killed.
    let end = Instant::now() + Duration::from_secs(600);
    while child.try_wait()?.is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the browser stage did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        bail!(
            "tests/dashboard/bench.mjs failed ({}):\n{stdout}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("bench.mjs printed no JSON: {stdout}"))?;
    let after: Vec<serde_json::Value> = shots
        .iter()
        .map(|s| get_json(agent, url, &s.twin))
        .collect::<Result<_>>()?;
    println!(
        "browser stage: {} pages in headless Chromium in {:.1} s; screenshots in {}",
        shots.len(),
        t.elapsed().as_secs_f64(),
        screens.display()
    );
    println!(
        "{:<12} {:>8}  {:<44} PNG",
        "page", "load ms", "drawn (JSON twin)"
    );
    let mut wrong = Vec::new();
    for (k, s) in shots.iter().enumerate() {
        let got = &seen["pages"][k];
        let mut cells = Vec::new();
        for (key, _, _, want) in &s.probes {
            let drawn = got["counts"][key].as_u64().unwrap_or(u64::MAX);
            let (a, b) = (want(&before[k]), want(&after[k]));
            let ok = drawn == a || drawn == b;
            cells.push(format!(
                "{key} {drawn}{}",
                if ok {
                    "".into()
                } else {
                    format!(" (want {a})")
                }
            ));
            if !ok {
                wrong.push(format!(
                    "{} {key}: drew {drawn}, its JSON twin says {a}",
                    s.name
                ));
            }
        }
        println!(
            "{:<12} {:>8}  {:<44} {}",
            s.name,
            got["load_ms"],
            cells.join(", "),
            got["shot"].as_str().unwrap_or("(no screenshot)")
        );
    }
    // The click: the list is the JSON twin's for the narrowed query, every
    // run in it started in the bar, and the bar's count is the total.
    let q = seen["url_after_click"]
        .as_str()
        .and_then(|u| u.split_once("/runs?"))
        .map(|(_, q)| q.to_string())
        .context("the click did not lead to /runs?...")?;
    let twin = get_json(agent, url, &format!("/api/v1/pages/runs?{q}"))?;
    let ids: Vec<&str> = twin["runs"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    let shown: Vec<&str> = seen["ids_after_click"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let (start, stop) = (
        bar["start"].as_i64().unwrap_or(0),
        bar["end"].as_i64().unwrap_or(0),
    );
    let inside = twin["runs"].as_array().is_some_and(|a| {
        a.iter().all(|r| {
            let t = r["started"].as_i64().unwrap_or(i64::MIN);
            t >= start && t < stop
        })
    });
    let total_ok = twin["chart"]["total"] == bar["total"];
    let click_ok = !shown.is_empty() && shown == ids && inside && total_ok;
    println!(
        "{:<12} {:>8}  {:<44} {}",
        "runs click",
        "",
        format!(
            "rows {} of the bar's {} runs{}",
            shown.len(),
            bar["total"],
            if click_ok { ", all inside it" } else { "" }
        ),
        seen["shot_click"].as_str().unwrap_or("(no screenshot)")
    );
    if !click_ok {
        wrong.push(format!(
            "clicking the bar at {start}: the page listed {} runs, the narrowed twin {} (all inside the bar: {inside}; its total {} for the bar's {})",
            shown.len(),
            ids.len(),
            twin["chart"]["total"],
            bar["total"]
        ));
    }
    if !wrong.is_empty() {
        bail!(
            "the browser stage found charts that differ from their JSON twins:\n  {}",
            wrong.join("\n  ")
        );
    }
    println!("browser stage: every chart drew what its JSON twin says");
    Ok(())
}

/// The last hour of minute samples and the last day of ten-minute samples
/// of `node`, up to now.
fn refresh_node(store: &Store, node: &str) -> Result<()> {
    const MIN: i64 = 60_000_000_000;
    let i: usize = node.trim_start_matches("node-").parse().unwrap_or(0);
    let now = Timestamp::now().as_nanos();
    let mut report = node_report(i);
    for k in (0..24 * 6).rev().map(|k| k * 10).chain((0..60).rev()) {
        report.cpu.load1 = ((i as i64 * 7 + k) % 17) as f64 * 0.37;
        let at = Timestamp::from_nanos(now - k * MIN);
        store.put_node_sample(
            &report.node,
            at,
            &plumb_model::node::NodeSample::from_report(&report, at),
        )?;
    }
    Ok(())
}

/// Every node's ten-minute samples over the last two hours and ten
/// minutes, up to now: what the /nodes sparklines read.
fn refresh_sparks(store: &Store) -> Result<()> {
    const TEN_MIN: i64 = 600_000_000_000;
    let now = Timestamp::now().as_nanos();
    for i in 0..NODES {
        let mut report = node_report(i);
        for k in (0..14).rev() {
            report.cpu.load1 = ((i as i64 * 7 + k) % 17) as f64 * 0.37;
            let at = Timestamp::from_nanos(now - k * TEN_MIN);
            store.put_node_sample(
                &report.node,
                at,
                &plumb_model::node::NodeSample::from_report(&report, at),
            )?;
        }
    }
    Ok(())
}

/// [`ERROR_GROUPS`] groups, the first with the most occurrences (group `g`
/// has 40,000 / (g + 1), at least 20), at random moments over the last
/// [`ERROR_DAYS`] days; returns the first group's fingerprint.
fn seed_errors(store: &Store) -> Result<String> {
    use plumb_model::insights::OccurrenceSource;
    use plumb_store::insights::NewOccurrence;
    let now = Timestamp::now().as_nanos();
    let span = ERROR_DAYS * 86_400_000_000_000;
    let mut rng = fastrand::Rng::with_seed(22);
    let mut first = None;
    let mut batch = Vec::with_capacity(10_000);
    let mut total = 0;
    for g in 0..ERROR_GROUPS {
        let mut e = plumb_model::Exception {
            language: "python".into(),
            kind: format!("SeedError{g}"),
            message: format!("shard {g} could not be read"),
            frames: Vec::new(),
            causes: Vec::new(),
            fingerprint: String::new(),
        };
        e.fingerprint = plumb_model::exception::fingerprint(&e);
        first.get_or_insert_with(|| e.fingerprint.clone());
        for k in 0..(40_000 / (g + 1)).max(20) {
            batch.push(NewOccurrence {
                key: format!("otlp:seed:{g}:{k}"),
                exception: e.clone(),
                run_id: None,
                host: format!("node-{:04}", rng.usize(..NODES)),
                at: Timestamp::from_nanos(now - rng.i64(0..span)),
                source: OccurrenceSource::Otlp,
            });
            if batch.len() == batch.capacity() {
                total += store.record_error_occurrences(&batch)?;
                batch.clear();
            }
        }
    }
    total += store.record_error_occurrences(&batch)?;
    println!("  {ERROR_GROUPS} error groups, {total} occurrences over {ERROR_DAYS} days");
    first.context("no error group seeded")
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
    let sample_error = seed_errors(&store)?;
    Ok(Meta {
        sample_run: sample_run.context("no sample run chosen")?,
        sample_node: "node-0042".into(),
        deep_key: deep_key.context("no deep key")?,
        sample_error,
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
