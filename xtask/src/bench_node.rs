//! `cargo xtask bench node`: how steady and how quick `plumb bench-node`'s
//! default benchmark is (issue 20: ten runs on an idle machine vary by less
//! than 15%; one run takes at most 12 s).
//!
//! Runs the default benchmark (`plumb_agent::bench::run`, as the command
//! and the agent do) `--runs N` times (default 10) with disk I/O in a
//! directory under the target dir (`--path DIR` for another), then prints
//! each figure's median and its spread across the runs, (max - min) /
//! median, against the 15% target, and the wall time against 12 s. Where
//! sysbench and fio are installed, their figures for the same things are
//! printed beside ours with the ratio; otherwise "not installed".

use crate::measure::{self, verdict};
use anyhow::Result;
use plumb_agent::bench::{BenchOptions, run as bench};
use plumb_model::bench::{Figure, NodeBench};
use std::process::Command;

const SPREAD_TARGET_PCT: f64 = 15.0;
const WALL_TARGET_S: f64 = 12.0;

pub fn run(args: &[&str]) -> Result<()> {
    let runs: usize = measure::opt(args, "--runs").map_or(Ok(10), str::parse)?;
    let path = match measure::opt(args, "--path") {
        Some(p) => std::path::PathBuf::from(p),
        None => measure::fresh_work_dir("node")?,
    };
    println!(
        "bench node ({runs} default runs, disk at {}; load average {})",
        path.display(),
        measure::load_average()
    );
    let opts = BenchOptions {
        node: "xtask".into(),
        path: Some(path.clone()),
        collector: None,
        quick: false,
    };
    let mut results: Vec<NodeBench> = Vec::new();
    for i in 0..runs {
        let b = bench(&opts)?;
        println!(
            "  run {:>2}: {:.1} s, cpu int {:.0} Mops/s, triad {:.0} MB/s",
            i + 1,
            b.wall_s,
            b.cpu_int_mops.value,
            b.mem_triad_mbs.value
        );
        results.push(b);
    }
    let first = &results[0];
    println!(
        "\n  {:<32} {:>12} {:<8} {:>10} {:>12}",
        "FIGURE", "MEDIAN", "UNIT", "IN-RUN", "ACROSS RUNS"
    );
    let mut all_ok = true;
    for (i, f) in first.figures().iter().enumerate() {
        let values: Vec<f64> = results
            .iter()
            .map(|r| r.figures()[i].figure.value)
            .collect();
        let inner: Vec<f64> = results
            .iter()
            .map(|r| r.figures()[i].figure.spread_pct)
            .collect();
        let across = Figure::of(&values);
        let ok = across.spread_pct < SPREAD_TARGET_PCT;
        all_ok &= ok;
        println!(
            "  {:<32} {:>12.1} {:<8} {:>9.1}% {:>11.1}%  {} (< {SPREAD_TARGET_PCT}%)",
            f.label,
            across.value,
            f.unit,
            Figure::of(&inner).value,
            across.spread_pct,
            verdict(ok)
        );
    }
    let walls: Vec<f64> = results.iter().map(|r| r.wall_s).collect();
    let wall = Figure::of(&walls);
    let max = walls.iter().cloned().fold(0.0, f64::max);
    println!(
        "\n  wall time: median {:.1} s, longest {max:.1} s: {} (<= {WALL_TARGET_S} s)",
        wall.value,
        verdict(max <= WALL_TARGET_S)
    );
    println!(
        "  spread across runs: {}",
        if all_ok {
            "every figure meets the target"
        } else {
            "some figures MISS the target (is the machine idle? see the load average above)"
        }
    );
    let median_of = |name: &str| {
        let v: Vec<f64> = results
            .iter()
            .flat_map(|r| {
                r.figures()
                    .into_iter()
                    .filter(|f| f.name == name)
                    .map(|f| f.figure.value)
                    .collect::<Vec<_>>()
            })
            .collect();
        Figure::of(&v).value
    };
    println!("\nbeside other tools (ours / theirs):");
    compare_sysbench(median_of("cpu_all_int"), median_of("mem_triad"));
    compare_fio(
        &path,
        median_of("disk_seq_read"),
        median_of("disk_rand_read"),
    );
    Ok(())
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The number after `key` on the first line holding it.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn compare_sysbench(cpu_all: f64, triad: f64) {
    if !installed("sysbench") {
        println!("  sysbench: not installed (apt install sysbench)");
        return;
    }
    let threads = plumb_agent::bench::online_cpus().to_string();
    let out = Command::new("sysbench")
        .args(["cpu", "--time=5", &format!("--threads={threads}"), "run"])
        .output();
    match out
        .ok()
        .and_then(|o| number_after(&String::from_utf8_lossy(&o.stdout), "events per second:"))
    {
        Some(eps) => println!(
            "  sysbench cpu (all {threads} threads): {eps:.0} events/s; ours {cpu_all:.0} Mops/s ({:.2} Mops per event: different units, compare ratios between machines)",
            cpu_all / eps
        ),
        None => println!("  sysbench cpu: no `events per second` in its output"),
    }
    let out = Command::new("sysbench")
        .args([
            "memory",
            "--memory-block-size=1M",
            "--memory-total-size=20G",
            "--memory-oper=write",
            "run",
        ])
        .output();
    match out.ok().and_then(|o| {
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = t.lines().find(|l| l.contains("MiB/sec"))?.to_string();
        line.split(['(', ' ']).find_map(|w| w.parse::<f64>().ok())
    }) {
        Some(mib) => {
            let mbs = mib * 1.048576;
            println!(
                "  sysbench memory (write, 1 MiB blocks): {mbs:.0} MB/s; ours (triad) {triad:.0} MB/s, ratio {:.2}",
                triad / mbs
            )
        }
        None => println!("  sysbench memory: no MiB/sec in its output"),
    }
}

fn compare_fio(path: &std::path::Path, seq_read: f64, rand_iops: f64) {
    if !installed("fio") {
        println!("  fio: not installed (apt install fio)");
        return;
    }
    let file = path.join("fio.test");
    let run = |rw: &str, bs: &str| -> Option<serde_json::Value> {
        let out = Command::new("fio")
            .args([
                "--name=plumb",
                &format!("--filename={}", file.display()),
                "--size=64M",
                &format!("--rw={rw}"),
                &format!("--bs={bs}"),
                "--direct=1",
                "--runtime=3",
                "--time_based",
                "--output-format=json",
            ])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let read = |v: &serde_json::Value, k: &str| v["jobs"][0]["read"][k].as_f64();
    match run("read", "1M").and_then(|v| read(&v, "bw_bytes")) {
        Some(bw) => println!(
            "  fio sequential read (direct I/O): {:.0} MB/s; ours {seq_read:.0} MB/s, ratio {:.2}",
            bw / 1e6,
            seq_read / (bw / 1e6)
        ),
        None => println!("  fio sequential read: no figure in its output"),
    }
    match run("randread", "4k").and_then(|v| read(&v, "iops")) {
        Some(iops) => println!(
            "  fio 4 KiB random read (direct I/O, queue depth 1): {iops:.0} IOPS; ours {rand_iops:.0} IOPS, ratio {:.2}",
            rand_iops / iops
        ),
        None => println!("  fio random read: no figure in its output"),
    }
    let _ = std::fs::remove_file(&file);
}
