//! `cargo xtask`: project chores and benchmarks.
//!
//! `cargo xtask bench <name>` runs one benchmark, which prints its figures
//! and the ratio against its baseline. Each benchmark lives in its own module.

use anyhow::{Result, bail};

mod bench_agent;
mod bench_checkpoint;
mod bench_dashboard;
mod bench_ingest;
mod bench_proxy;
mod bench_recorder;

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

/// The whole test suite: every crate's tests under nextest, then the Python
/// package's tests under pytest.
fn test(extra: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    let status = std::process::Command::new(&cargo)
        .current_dir(&root)
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra)
        .status()?;
    if !status.success() {
        bail!("cargo nextest failed: {status}");
    }
    let status = std::process::Command::new("python3")
        .current_dir(&root)
        .args(["-m", "pytest", "-q", "python/tests"])
        .status()?;
    if !status.success() {
        bail!("pytest failed: {status}");
    }
    Ok(())
}

const BENCHES: &[&str] = &[
    "agent",
    "checkpoint",
    "dashboard",
    "ingest",
    "proxy",
    "recorder",
];

fn bench(name: &str, rest: &[&str]) -> Result<()> {
    match name {
        "agent" => bench_agent::run(rest),
        "checkpoint" => bench_checkpoint::run(rest),
        "dashboard" => bench_dashboard::run(rest),
        "ingest" => bench_ingest::run(rest),
        "proxy" => bench_proxy::run(rest),
        "recorder" => bench_recorder::run(rest),
        other => bail!("unknown benchmark `{other}`; known: {}", BENCHES.join(", ")),
    }
}
