//! `cargo xtask bench recorder`: what recording costs.
//!
//! 1. Overhead on a short job: `plumb run -- PY -c pass` against `PY -c pass`
//!    (PY is the interpreter itself, not a shim), warm fingerprint cache.
//!    Target: median ratio <= 1.25.
//! 2. Output: `plumb run -- cat F | wc -c` against `cat F | tee out.log | wc -c`,
//!    F = 1 GiB of 100-byte lines, everything stored. Target: median ratio
//!    <= 1.25, plumb's peak RSS < 64 MiB.
//! 3. `plumb search` for a rare word over 10 million stored lines: p50 <= 200 ms.
//! 4. `plumb ls` over 100,000 runs: <= 100 ms.
//! 5. What recording the node's conditions adds to every run: the two
//!    reads of the node's counters (`plumb_agent::health::read_for_run`,
//!    at the start and at the end) and their difference. Target: <= 2 ms
//!    in all (`--only 5` runs it without building a release plumb).
//!
//! Options: `--quick` (smaller sizes, for a smoke run), `--only N` (one part).

use crate::measure::{self, dir_size, median, verdict, wait4};
use anyhow::{Context, Result, bail};
use plumb_model::{Run, RunState, Stream, Timestamp};
use plumb_store::Store;
use plumb_store::chunk::ChunkBuilder;
use plumb_store::prelude::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn run(args: &[&str]) -> Result<()> {
    let quick = args.contains(&"--quick");
    let only: Option<u32> = args
        .iter()
        .position(|a| *a == "--only")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok());
    if only == Some(5) {
        return node_conditions();
    }
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("recorder")?;
    println!(
        "bench recorder (plumb {}){}",
        plumb.display(),
        if quick { " --quick" } else { "" }
    );
    if only.is_none_or(|n| n == 1) {
        overhead(&plumb, &work, if quick { 10 } else { 40 })?;
    }
    if only.is_none_or(|n| n == 2) {
        output(
            &plumb,
            &work,
            if quick { 64 << 20 } else { 1 << 30 },
            if quick { 1 } else { 3 },
        )?;
    }
    if only.is_none_or(|n| n == 3) {
        search(&plumb, &work, if quick { 1_000_000 } else { 10_000_000 })?;
    }
    if only.is_none_or(|n| n == 4) {
        list(&plumb, &work, if quick { 10_000 } else { 100_000 })?;
    }
    if only.is_none() {
        node_conditions()?;
    }
    Ok(())
}

/// Part 5: the per-run cost of the node's conditions, on this machine's
/// `/` and on the agent tests' fake root (which has every counter).
fn node_conditions() -> Result<()> {
    const TARGET_MS: f64 = 2.0;
    let fake = crate::workspace_root().join("crates/plumb-agent/testdata/health/failing");
    println!("node conditions per run (two counter reads and their difference)");
    for (what, root) in [
        ("this machine (/)", std::path::PathBuf::from("/")),
        ("fake root, every counter", fake),
    ] {
        let n = 1000;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let a = plumb_agent::health::read_for_run(&root);
            let b = plumb_agent::health::read_for_run(&root);
            let c = plumb_model::conditions::NodeConditions::between(&a, &b);
            std::hint::black_box(c);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let med = median(&mut times);
        let worst = times.iter().cloned().fold(0.0, f64::max);
        println!(
            "  {what}: median {med:.3} ms, worst {worst:.3} ms over {n}; {} (<= {TARGET_MS} ms)",
            verdict(med <= TARGET_MS)
        );
    }
    Ok(())
}

fn overhead(plumb: &Path, work: &Path, reps: usize) -> Result<()> {
    let py = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("python3 is needed for the overhead benchmark")?;
    let py = String::from_utf8(py.stdout)?.trim().to_string();
    let home = work.join("overhead-store");
    let time = |with_plumb: bool| -> Result<f64> {
        let mut c = if with_plumb {
            let mut c = Command::new(plumb);
            c.args(["run", "--", &py, "-c", "pass"]);
            c
        } else {
            let mut c = Command::new(&py);
            c.args(["-c", "pass"]);
            c
        };
        c.env("PLUMB_HOME", &home)
            .current_dir(work)
            .stdout(Stdio::null());
        let t = Instant::now();
        let s = c.status()?;
        if !s.success() {
            bail!("job failed: {s}");
        }
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // Warm the store, the fingerprint cache and the page cache.
    for _ in 0..3 {
        time(true)?;
        time(false)?;
    }
    let (mut bare, mut rec) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        bare.push(time(false)?);
        rec.push(time(true)?);
    }
    let (b, r) = (median(&mut bare), median(&mut rec));
    let ratio = r / b;
    println!(
        "1. short job: `{py} -c pass` bare {b:.1} ms, under plumb run {r:.1} ms (medians of {reps}): +{:.1} ms, ratio {ratio:.2} (target <= 1.25: {}; Sacred file observer 17.7x)",
        r - b,
        verdict(ratio <= 1.25)
    );
    Ok(())
}

fn output(plumb: &Path, work: &Path, size: u64, reps: usize) -> Result<()> {
    let f = work.join("lines.txt");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f)?);
        let mut n = 0u64;
        let mut i = 0u64;
        let words = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
        ];
        while n < size {
            // 100-byte lines: a counter, a few words, padding.
            let mut line = format!(
                "{i:012} {} {} {} request took {} ms status={}",
                words[(i % 8) as usize],
                words[(i / 8 % 8) as usize],
                words[(i / 64 % 8) as usize],
                i % 997,
                200 + (i % 5)
            );
            line.truncate(99);
            while line.len() < 99 {
                line.push('.');
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
            n += 100;
            i += 1;
        }
    }
    let fs = f.to_string_lossy().to_string();
    let size_on_disk = std::fs::metadata(&f)?.len();
    let tee_log = work.join("out.log");
    let home = work.join("output-store");
    let gib = size as f64 / (1u64 << 30) as f64;
    let (mut base, mut rec, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tee_cpu, mut plumb_cpu, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Baseline and plumb take turns, so a change in machine load moves
    // both alike; each round's ratio is printed, and their spread.
    for round in 0..reps {
        let _ = std::fs::remove_file(&tee_log);
        let t = Instant::now();
        let mut cat = Command::new("cat")
            .arg(&fs)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut tee = Command::new("tee")
            .arg(&tee_log)
            .stdin(cat.stdout.take().expect("piped"))
            .stdout(Stdio::piped())
            .spawn()?;
        let wc = Command::new("wc")
            .arg("-c")
            .stdin(tee.stdout.take().expect("piped"))
            .stdout(Stdio::piped())
            .spawn()?;
        let tee_usage = wait4(tee.id())?;
        let counted = wc.wait_with_output()?;
        let _ = cat.wait()?;
        let b = t.elapsed().as_secs_f64();
        if tee_usage.code != 0 {
            bail!("tee failed with {}", tee_usage.code);
        }
        check_count(&counted.stdout, size)?;
        base.push(b);
        tee_cpu.push(tee_usage.cpu_s / gib);

        let _ = std::fs::remove_dir_all(&home);
        let t = Instant::now();
        let mut wc = Command::new("wc")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let child = Command::new(plumb)
            .args(["run", "--", "cat", &fs])
            .env("PLUMB_HOME", &home)
            // Everything is stored: the default cap (1 GiB) is just below
            // the file's whole lines.
            .env("PLUMB_OUTPUT_CAP", (2 * size).to_string())
            .stdout(wc.stdin.take().expect("piped"))
            .spawn()?;
        let usage = wait4(child.id())?;
        let counted = wc.wait_with_output()?;
        let r = t.elapsed().as_secs_f64();
        if usage.code != 0 {
            bail!("plumb run failed with {}", usage.code);
        }
        check_count(&counted.stdout, size)?;
        rec.push(r);
        rss.push(usage.maxrss_kib as f64 / 1024.0);
        // wait4 counts the descendants plumb reaped (cat) too; plumb
        // recorded cat's own share, so plumb's is the difference.
        let (_, shown) = time_cmd(plumb, &home, &["show", "last", "--json"])?;
        let shown: serde_json::Value = serde_json::from_slice(&shown)?;
        let child_cpu = ["user_us", "system_us"]
            .iter()
            .filter_map(|k| shown["run"]["rusage"][k].as_u64())
            .sum::<u64>() as f64
            / 1e6;
        let output = &shown["run"]["output"];
        if output["stdout_bytes"].as_u64() != Some(size_on_disk)
            || output["dropped_bytes"].as_u64() != Some(0)
        {
            bail!("plumb did not store all of the output: {output}");
        }
        let own = (usage.cpu_s - child_cpu) / gib;
        plumb_cpu.push(own);
        ratios.push(r / b);
        println!(
            "   round {}: tee {b:.2} s ({:.2} CPU-s/GiB), plumb {r:.2} s ({own:.2} CPU-s/GiB, cat {:.2}): ratio {:.2}",
            round + 1,
            tee_usage.cpu_s / gib,
            child_cpu / gib,
            r / b
        );
    }
    let stored = dir_size(&home);
    // Output faster than the recorder indexes as it goes is indexed by the
    // first search that reads it: report that deferred cost too.
    let (first, _) = time_cmd(plumb, &home, &["search", "zyzzyvarare"])?;
    let (second, _) = time_cmd(plumb, &home, &["search", "zyzzyvarare"])?;
    let (b, r) = (median(&mut base), median(&mut rec));
    let peak = rss.iter().cloned().fold(0.0, f64::max);
    let wal = std::fs::metadata(home.join("plumb.db-wal")).map_or(0, |m| m.len());
    let ratio = median(&mut ratios);
    println!(
        "2. output: {} MiB of 100-byte lines: `cat|tee|wc` {b:.2} s, `plumb run -- cat|wc` {r:.2} s (medians of {reps}): ratio {ratio:.2}, rounds {:.2}..{:.2} (target <= 1.25: {}); {:.0} MB/s through plumb; plumb peak RSS {peak:.1} MiB (target < 64: {}); store {:.1} MiB on disk ({:.2}x of raw), of which {:.1} MiB is WAL (the first search's filters; a flood leaves it empty)",
        size >> 20,
        ratios[0],
        ratios[ratios.len() - 1],
        verdict(ratio <= 1.25),
        size as f64 / r / 1e6,
        verdict(peak < 64.0),
        stored as f64 / (1 << 20) as f64,
        stored as f64 / size as f64,
        wal as f64 / (1 << 20) as f64
    );
    println!(
        "   CPU per GiB (medians): plumb {:.2} s, tee {:.2} s",
        median(&mut plumb_cpu),
        median(&mut tee_cpu)
    );
    println!(
        "   first search over that store (indexes what the recorder left unindexed): {first:.0} ms; the next one: {second:.0} ms"
    );
    let _ = std::fs::remove_file(&f);
    let _ = std::fs::remove_file(&tee_log);
    Ok(())
}

/// Checks what `wc -c` printed against the size of the file.
fn check_count(wc_stdout: &[u8], size: u64) -> Result<()> {
    let n: u64 = String::from_utf8_lossy(wc_stdout).trim().parse()?;
    if n != size.div_ceil(100) * 100 {
        bail!("wc counted {n} bytes, expected {size}");
    }
    Ok(())
}

/// Fills a store with `lines` lines of output over 100 runs on 10 hosts,
/// with the word `zyzzyvarare` in exactly 3 lines.
fn fill_output(home: &Path, lines: u64) -> Result<()> {
    let store = Store::open(home)?;
    let runs = 100u64;
    let per_run = lines / runs;
    let t0 = Timestamp::now().as_nanos() - 3_600_000_000_000;
    let rare = [per_run / 3, per_run / 2, per_run - 5];
    for r in 0..runs {
        let mut run = Run::new(
            plumb_model::new_id(),
            "ingest".into(),
            Timestamp::from_nanos(t0),
        );
        run.host.hostname = format!("node-{:02}", r % 10);
        run.state = RunState::Succeeded;
        store.put_run(&run)?;
        let mut b = ChunkBuilder::new(Stream::Stdout);
        let mut sealed = Vec::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        for i in 0..per_run {
            let word = if r == 42 && rare.contains(&i) {
                "zyzzyvarare"
            } else {
                "ok"
            };
            let line = format!(
                "{:012} worker={} shard={} op=write key=user:{} latency_ms={} result={word}\n",
                r * per_run + i,
                i % 16,
                i % 64,
                (i * 7919) % 1_000_003,
                i % 250
            );
            buf.extend_from_slice(line.as_bytes());
            if buf.len() >= 60_000 {
                let ts = Timestamp::from_nanos(t0 + (r * per_run + i) as i64 * 300_000);
                b.push(i, ts, &buf, &mut sealed);
                buf.clear();
            }
            if sealed.len() >= 16 {
                store.put_chunks(run.id, &run.host.hostname, &sealed)?;
                sealed.clear();
            }
        }
        let ts = Timestamp::from_nanos(t0 + ((r + 1) * per_run) as i64 * 300_000);
        b.push(per_run, ts, &buf, &mut sealed);
        b.flush(&mut sealed);
        store.put_chunks(run.id, &run.host.hostname, &sealed)?;
    }
    Ok(())
}

fn time_cmd(plumb: &Path, home: &Path, args: &[&str]) -> Result<(f64, Vec<u8>)> {
    let t = Instant::now();
    let o = Command::new(plumb)
        .args(args)
        .env("PLUMB_HOME", home)
        .output()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // `plumb search` exits 1 when nothing matched, as grep does; the rare
    // word of part 2 is not in the output on purpose.
    let no_match = args.first() == Some(&"search") && o.status.code() == Some(1);
    if !o.status.success() && !no_match {
        bail!(
            "plumb {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok((ms, o.stdout))
}

fn search(plumb: &Path, work: &Path, lines: u64) -> Result<()> {
    let home = work.join("search-store");
    let t = Instant::now();
    fill_output(&home, lines)?;
    let fill = t.elapsed().as_secs_f64();
    let raw = lines * 90;
    let stored = dir_size(&home);
    println!(
        "   (stored {lines} lines, ~{} MiB raw, in {fill:.1} s: {:.0}k lines/s through chunking and indexing; {:.1} MiB on disk, {:.2}x of raw)",
        raw >> 20,
        lines as f64 / fill / 1e3,
        stored as f64 / (1 << 20) as f64,
        stored as f64 / raw as f64
    );
    let mut times = Vec::new();
    for _ in 0..7 {
        let (ms, out) = time_cmd(plumb, &home, &["search", "zyzzyvarare", "--json"])?;
        let hits: serde_json::Value = serde_json::from_slice(&out)?;
        if hits.as_array().map(|a| a.len()) != Some(3) {
            bail!("expected 3 hits, got {hits}");
        }
        times.push(ms);
    }
    let p50 = median(&mut times);
    let mut filtered = Vec::new();
    for _ in 0..7 {
        let (ms, _) = time_cmd(
            plumb,
            &home,
            &[
                "search",
                "zyzzyvarare",
                "--host",
                "node-02",
                "--since",
                "1h",
            ],
        )?;
        filtered.push(ms);
    }
    let fp50 = median(&mut filtered);
    println!(
        "3. search for a rare word over {lines} lines: p50 {p50:.0} ms (target <= 200: {}); filtered by host and the last hour: p50 {fp50:.0} ms (whole process, start to exit)",
        verdict(p50 <= 200.0)
    );
    Ok(())
}

fn list(plumb: &Path, work: &Path, runs: u64) -> Result<()> {
    let home = work.join("ls-store");
    {
        let store = Store::open(&home)?;
        let t0 = Timestamp::now().as_nanos() - runs as i64 * 1_000_000_000;
        let mut batch = Vec::with_capacity(1000);
        for i in 0..runs {
            let mut run = Run::new(
                plumb_model::new_id(),
                format!("job-{}", i % 50),
                Timestamp::from_nanos(t0 + i as i64 * 1_000_000_000),
            );
            run.host.hostname = format!("node-{:03}", i % 100);
            run.state = if i % 10 == 0 {
                RunState::Failed
            } else {
                RunState::Succeeded
            };
            run.ended = Some(Timestamp::from_nanos(
                t0 + i as i64 * 1_000_000_000 + 500_000_000,
            ));
            run.argv = vec!["python3".into(), "train.py".into(), format!("--seed={i}")];
            for k in 0..30 {
                run.env.insert(format!("VAR_{k}"), format!("value-{k}"));
            }
            batch.push(run);
            if batch.len() == 1000 {
                store.put_runs(&batch)?;
                batch.clear();
            }
        }
        store.put_runs(&batch)?;
    }
    let mut times = Vec::new();
    for _ in 0..9 {
        let (ms, out) = time_cmd(plumb, &home, &["ls"])?;
        if out.iter().filter(|b| **b == b'\n').count() != 51 {
            bail!("ls printed {} lines", out.len());
        }
        times.push(ms);
    }
    let p50 = median(&mut times);
    let mut filt = Vec::new();
    for _ in 0..9 {
        let (ms, _) = time_cmd(
            plumb,
            &home,
            &["ls", "--failed", "--name", "job-7", "--host", "node-007"],
        )?;
        filt.push(ms);
    }
    println!(
        "4. plumb ls over {runs} runs: p50 {p50:.1} ms (target <= 100: {}); with --failed --name --host: p50 {:.1} ms (whole process, start to exit)",
        verdict(p50 <= 100.0),
        median(&mut filt)
    );
    Ok(())
}
