//! `cargo xtask`: project chores and benchmarks.
//!
//! `cargo xtask bench <name>` runs one benchmark, which prints its figures
//! and the ratio against its baseline. Each benchmark lives in its own module.

use anyhow::{Result, bail};

mod bench_checkpoint;
mod bench_proxy;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", name, rest @ ..] => bench(name, rest),
        _ => {
            eprintln!("usage: cargo xtask bench <{}>", BENCHES.join("|"));
            bail!("unknown xtask command: {args:?}")
        }
    }
}

const BENCHES: &[&str] = &["checkpoint", "proxy"];

fn bench(name: &str, rest: &[&str]) -> Result<()> {
    match name {
        "checkpoint" => bench_checkpoint::run(rest),
        "proxy" => bench_proxy::run(rest),
        other => bail!("unknown benchmark `{other}`; known: {}", BENCHES.join(", ")),
    }
}
