//! `plumb run`.
use std::process::ExitCode;

/// Arguments of `plumb run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

pub fn main(_a: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("plumb run: being built")
}
