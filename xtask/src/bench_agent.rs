//! `cargo xtask bench agent`: what `plumb agent` costs a node.
//!
//! Runs a release `plumb serve` and a `plumb agent` at the default 5 s
//! interval for 30 s (`--seconds N` to change, `--interval D` to try
//! another interval), then reads the agent's CPU time from
//! `/proc/PID/stat` and its peak RSS (VmHWM) from `/proc/PID/status`.
//! Targets (issue 3): under 1% of one core and under 20 MiB RSS. For scale,
//! the baseline is the budget itself: the ratios printed are figure/target.
//! The agent reads hardware health at every heartbeat (issue 20), so the
//! steady figure includes it; the health read is also timed on its own
//! (this machine's `/`, and the failing fake root of the agent's tests,
//! which has every source), with the size it adds to a heartbeat.

use crate::measure::{self, cpu_seconds, verdict, vm_kib};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

const CPU_TARGET_PCT: f64 = 1.0;
const RSS_TARGET_MIB: f64 = 20.0;

/// Times `plumb_agent::health::read_fast` under `root`: mean and worst
/// microseconds per read over `n` reads, and its JSON size.
fn time_health_read(root: &std::path::Path, n: u32) -> (f64, f64, usize) {
    let mut worst = 0f64;
    let t0 = Instant::now();
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let h = plumb_agent::health::read_fast(root);
        worst = worst.max(t.elapsed().as_secs_f64() * 1e6);
        size = serde_json::to_vec(&h).map(|v| v.len()).unwrap_or(0);
    }
    (t0.elapsed().as_secs_f64() * 1e6 / f64::from(n), worst, size)
}

fn health_reads(interval: &str) -> Result<()> {
    let every = plumb_model::parse_duration_ns(interval).map_err(anyhow::Error::msg)? as f64 / 1e3;
    let fake = crate::workspace_root().join("crates/plumb-agent/testdata/health/failing");
    for (what, root) in [
        ("this machine (/)", std::path::PathBuf::from("/")),
        ("fake root, every source", fake),
    ] {
        let (mean, worst, size) = time_health_read(&root, 2000);
        println!(
            "  health read, {what}: {mean:.1} us mean, {worst:.0} us worst over 2000 reads; {:.4}% of one core at one read per {interval}; {size} bytes of JSON when sent",
            mean / every * 100.0
        );
    }
    Ok(())
}

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let seconds: u64 = opt("--seconds").map_or(Ok(30), str::parse)?;
    let interval = opt("--interval").unwrap_or("5s");
    if args.contains(&"--health-only") {
        // The health read alone, without building a release plumb.
        return health_reads(interval);
    }
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("agent")?;
    println!(
        "bench agent (plumb {}, interval {interval}, {seconds} s)",
        plumb.display()
    );

    let (mut serve, url) = measure::start_serve(&plumb, &work.join("collector"))?;
    let mut agent = Command::new(&plumb)
        .args([
            "agent",
            "--name",
            "bench-node",
            "--collector",
            &url,
            "--interval",
            interval,
        ])
        .env("PLUMB_HOME", work.join("node"))
        .env_remove("PLUMB_COLLECTOR")
        .spawn()
        .context("starting plumb agent")?;
    let pid = agent.id();
    // The first seconds include start-up and the first fingerprint (which
    // runs once, then every 10 minutes): measured separately.
    std::thread::sleep(Duration::from_secs(3));
    let (t0, cpu0) = (Instant::now(), cpu_seconds(pid)?);
    std::thread::sleep(Duration::from_secs(seconds));
    let (wall, cpu1) = (t0.elapsed().as_secs_f64(), cpu_seconds(pid)?);
    let hwm = vm_kib(pid, "VmHWM:")? as f64 / 1024.0;
    let rss = vm_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let heartbeats = count_heartbeats(&url);
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = serve.kill();
    let _ = serve.wait();

    let pct = (cpu1 - cpu0) / wall * 100.0;
    println!(
        "  start-up CPU (first 3 s, fingerprint included): {:.3} s",
        cpu0
    );
    println!(
        "  steady CPU: {pct:.3}% of one core over {wall:.1} s  target < {CPU_TARGET_PCT}%  ratio {:.2}  {}",
        pct / CPU_TARGET_PCT,
        verdict(pct < CPU_TARGET_PCT)
    );
    println!(
        "  peak RSS: {hwm:.1} MiB (now {rss:.1} MiB)  target < {RSS_TARGET_MIB} MiB  ratio {:.2}  {}",
        hwm / RSS_TARGET_MIB,
        verdict(hwm < RSS_TARGET_MIB)
    );
    if let Some(n) = heartbeats {
        println!("  node state at the end: {n}");
    }
    health_reads(interval)?;
    Ok(())
}

fn count_heartbeats(url: &str) -> Option<String> {
    let body = ureq::get(&format!("{url}/api/v1/nodes"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let n = v.as_array()?.first()?;
    Some(format!(
        "{} (last heartbeat seq {})",
        n["state"].as_str()?,
        n["report"]["seq"]
    ))
}
