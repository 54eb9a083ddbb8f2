//! `plumb demo`.
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct Args {}
pub fn main(_a: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
