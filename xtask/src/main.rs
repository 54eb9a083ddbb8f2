//! `cargo xtask`: project chores and benchmarks.
//!
//! `cargo xtask bench <name>` runs one benchmark, which prints its figures
//! and the ratio against its baseline. Each benchmark lives in its own module.

use anyhow::{Result, bail};

mod bench_agent;
mod bench_checkpoint;
mod bench_clock;
mod bench_copy;
mod bench_dashboard;
mod bench_fingerprint;
mod bench_ingest;
mod bench_node;
mod bench_proxy;
mod bench_recorder;
mod bench_stack;
mod bench_timeline;
mod measure;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", name, rest @ ..] => bench(name, rest),
        ["test", rest @ ..] => test(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask test | cargo xtask bench <{}>",
                BENCHES.join("|")
            );
            bail!("unknown xtask command: {args:?}")
        }
    }
}

/// The workspace's top directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The whole test suite: first what the tests need from outside Rust
/// (`.ci/install-*.sh`: Python packages, node modules, chromium, promtool,
/// py-spy, elfutils, stress-ng and PostgreSQL; each installs only what is missing and
/// says what it installs), then every crate's tests under nextest (the
/// PostgreSQL tests start a private server, stopped here at the end), then the Python package's tests
/// under pytest. Each stage's time is printed at the end.
fn test(extra: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    let mut times = Vec::new();
    let started = std::time::Instant::now();
    let mut scripts: Vec<_> = std::fs::read_dir(root.join(".ci"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("install-") && n.ends_with(".sh"))
        })
        .collect();
    scripts.sort();
    println!(
        "== test dependencies: {} install scripts in .ci/ (each installs only what is missing)",
        scripts.len()
    );
    for script in &scripts {
        let status = std::process::Command::new("bash")
            .current_dir(&root)
            .arg(script)
            .status()?;
        if !status.success() {
            bail!(
                "{} failed ({status}); the tests that need it would fail",
                script.display()
            );
        }
    }
    times.push(("install test dependencies", started.elapsed()));

    let started = std::time::Instant::now();
    println!("== cargo nextest run --workspace");
    let status = std::process::Command::new(&cargo)
        .current_dir(&root)
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra)
        .status()?;
    times.push(("cargo nextest (build and run)", started.elapsed()));
    // The collector's end-to-end tests again, every collector on
    // PostgreSQL (tests/support: PLUMB_TEST_STORE), so both backends pass
    // the same ingest, search, dashboard, error-group, alert, token and
    // node-state tests.
    let pg_started = std::time::Instant::now();
    println!("== the collector's tests on PostgreSQL");
    let mut pg_args = vec!["nextest", "run", "-p", "plumb", "--no-fail-fast"];
    for t in PG_PASS {
        pg_args.extend(["--test", t]);
    }
    let pg_status = std::process::Command::new(&cargo)
        .current_dir(&root)
        .args(&pg_args)
        .args(extra)
        .env("PLUMB_TEST_STORE", "postgres")
        .status()?;
    times.push(("collector tests on PostgreSQL", pg_started.elapsed()));
    // The PostgreSQL tests started a private server (see
    // plumb_store_postgres::testing); it stops with the suite.
    if plumb_store_postgres::testing::stop_private() {
        println!("== stopped the tests' PostgreSQL server");
    }
    if !status.success() {
        bail!("cargo nextest failed: {status}");
    }
    if !pg_status.success() {
        bail!("the collector's tests on PostgreSQL failed: {pg_status}");
    }
    let started = std::time::Instant::now();
    println!("== pytest python/tests");
    let status = std::process::Command::new("python3")
        .current_dir(&root)
        .args(["-m", "pytest", "-q", "python/tests"])
        .status()?;
    times.push(("pytest", started.elapsed()));
    if !status.success() {
        bail!("pytest failed: {status}");
    }
    for (stage, t) in times {
        println!("{:7.1}s  {stage}", t.as_secs_f64());
    }
    Ok(())
}

/// The test binaries run a second time with every collector on
/// PostgreSQL: those whose collectors do not read the SQLite file behind
/// the collector's back.
const PG_PASS: &[&str] = &[
    "collector",
    "nodecharts",
    "insights",
    "alerts",
    "nodes_cli",
    "agent",
    "ship",
    "dashboard",
    "charts",
    "timeline",
    "otlp_ingest",
    "health",
    "retention",
    "bench_node",
    "run_health",
];

const BENCHES: &[&str] = &[
    "agent",
    "checkpoint",
    "clock",
    "copy",
    "dashboard",
    "fingerprint",
    "ingest",
    "node",
    "proxy",
    "recorder",
    "stack",
    "timeline",
];

fn bench(name: &str, rest: &[&str]) -> Result<()> {
    match name {
        "agent" => bench_agent::run(rest),
        "checkpoint" => bench_checkpoint::run(rest),
        "clock" => bench_clock::run(rest),
        "copy" => bench_copy::run(rest),
        "dashboard" => bench_dashboard::run(rest),
        "fingerprint" => bench_fingerprint::run(rest),
        "ingest" => bench_ingest::run(rest),
        "node" => bench_node::run(rest),
        "proxy" => bench_proxy::run(rest),
        "recorder" => bench_recorder::run(rest),
        "stack" => bench_stack::run(rest),
        "timeline" => bench_timeline::run(rest),
        other => bail!("unknown benchmark `{other}`; known: {}", BENCHES.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    type Edges = BTreeMap<String, BTreeSet<String>>;

    /// The plumb crates each crate's Cargo.toml names under `[dependencies]`.
    fn cargo_edges() -> Edges {
        let root = super::workspace_root();
        let mut edges = Edges::new();
        for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut deps = BTreeSet::new();
            let mut in_deps = false;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('[') {
                    in_deps = line == "[dependencies]";
                } else if in_deps && line.starts_with("plumb-") {
                    let dep = line.split(['.', ' ', '=']).next().unwrap();
                    deps.insert(dep.to_string());
                }
            }
            edges.insert(name, deps);
        }
        edges
    }

    /// The list in ARCHITECTURE.md's "Crate dependencies" section.
    fn stated_edges() -> Edges {
        let text =
            std::fs::read_to_string(super::workspace_root().join("ARCHITECTURE.md")).unwrap();
        let section = text
            .split("## Crate dependencies")
            .nth(1)
            .expect("ARCHITECTURE.md has a Crate dependencies section");
        let block = section
            .split("```text\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("the section has a ```text block");
        block
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (from, to) = l.split_once("->").expect("lines read `crate -> deps`");
                (
                    from.trim().to_string(),
                    to.split_whitespace().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn architecture_names_every_crate_edge() {
        let (cargo, stated) = (cargo_edges(), stated_edges());
        for (krate, deps) in &cargo {
            assert_eq!(
                stated.get(krate),
                Some(deps),
                "ARCHITECTURE.md's edges of {krate} differ from its Cargo.toml"
            );
        }
        let extra: Vec<_> = stated.keys().filter(|k| !cargo.contains_key(*k)).collect();
        assert!(
            extra.is_empty(),
            "ARCHITECTURE.md names crates that do not exist: {extra:?}"
        );
    }
}
