//! `plumb ls`, `show`, `logs`, `search`, `diff`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LsArgs {}
#[derive(Debug, clap::Args)]
pub struct ShowArgs {}
#[derive(Debug, clap::Args)]
pub struct LogsArgs {}
#[derive(Debug, clap::Args)]
pub struct SearchArgs {}
#[derive(Debug, clap::Args)]
pub struct DiffArgs {}

pub fn ls(_a: LsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
pub fn show(_a: ShowArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
pub fn logs(_a: LogsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
pub fn search(_a: SearchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
pub fn diff(_a: DiffArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("being built")
}
