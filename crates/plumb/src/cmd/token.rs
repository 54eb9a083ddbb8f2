//! `plumb token`: access tokens for the collector.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use plumb_collector::Role;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plumb token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// What to do with tokens.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create {
        /// What it allows: agent (write), viewer (read) or admin (both).
        #[arg(long)]
        role: Role,
        /// A label for humans, e.g. the node or person it is for.
        #[arg(long, default_value = "")]
        name: String,
        /// The collector's store directory (default: the configured store).
        #[arg(long, conflicts_with = "store")]
        data: Option<PathBuf>,
        /// The collector's store as a URL (postgres://..., sqlite:DIR), as
        /// `plumb serve --store` takes it.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Revoke a token, named by the start of its hash as `plumb token ls`
    /// shows it; a running collector refuses it within a second or two.
    Revoke {
        /// At least 8 hex digits of the token's hash (from `plumb token ls`).
        hash: String,
        /// Allow revoking the last token, which leaves a loopback collector
        /// open to every local user (it needs no token when it has none).
        #[arg(long)]
        force: bool,
        /// The collector's store directory (default: the configured store).
        #[arg(long, conflicts_with = "store")]
        data: Option<PathBuf>,
        /// The collector's store as a URL (postgres://..., sqlite:DIR), as
        /// `plumb serve --store` takes it.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// List tokens (role, label, creation time; never the token).
    Ls {
        /// The collector's store directory (default: the configured store).
        #[arg(long, conflicts_with = "store")]
        data: Option<PathBuf>,
        /// The collector's store as a URL (postgres://..., sqlite:DIR), as
        /// `plumb serve --store` takes it.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
}

/// How long a token command waits for a collector holding the store.
const BUSY: std::time::Duration = std::time::Duration::from_secs(30);

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    match a.command {
        TokenCommand::Create {
            role,
            name,
            data,
            store,
        } => {
            let target = crate::store::connector(&cfg, data, store, BUSY)?;
            let store = target
                .writer()
                .with_context(|| format!("cannot open the store {}", target.describe()))?;
            let token = plumb_collector::auth::create_token(&*store, role, &name)?;
            let mut out = crate::out::stdout();
            writeln!(out, "{token}")?;
            eprintln!(
                "plumb: created a {} token; it is shown only this once. Clients send it as PLUMB_TOKEN (or `token =` in plumb.toml).",
                role.as_str()
            );
        }
        TokenCommand::Revoke {
            hash,
            force,
            data,
            store,
        } => {
            let prefix = hash.trim().to_ascii_lowercase();
            if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!(
                    "`{hash}` is not a token hash prefix: give at least 8 hex digits of the HASH column of `plumb token ls`"
                );
            }
            let target = crate::store::connector(&cfg, data, store, BUSY)?;
            let store = target
                .writer()
                .with_context(|| format!("cannot open the store {}", target.describe()))?;
            let tokens = store.tokens()?;
            let matching: Vec<_> = tokens
                .iter()
                .filter(|t| plumb_model::hex(&t.hash).starts_with(&prefix))
                .collect();
            let token = match matching.as_slice() {
                [] => bail!(
                    "no token's hash starts with `{prefix}` in {} (see `plumb token ls`)",
                    target.describe()
                ),
                [one] => *one,
                many => bail!(
                    "`{prefix}` matches {} tokens: give more digits of the hash",
                    many.len()
                ),
            };
            if tokens.len() == 1 && !force {
                bail!(
                    "this is the last token: without tokens a loopback collector lets every local user read and write. Create another token first, or pass --force"
                );
            }
            store.delete_token(&token.hash)?;
            eprintln!(
                "plumb: revoked the {} token {} ({}); a running collector refuses it within 2 s",
                token.role,
                &plumb_model::hex(&token.hash)[..16],
                if token.name.is_empty() {
                    "no name"
                } else {
                    &token.name
                }
            );
        }
        TokenCommand::Ls { data, store } => {
            let target = crate::store::connector(&cfg, data, store, BUSY)?;
            let store = target
                .reader()
                .with_context(|| format!("cannot open the store {}", target.describe()))?;
            let mut out = crate::out::stdout();
            writeln!(
                out,
                "{:<8}  {:<20}  {:<16}  CREATED",
                "ROLE", "NAME", "HASH"
            )?;
            for t in store.tokens()? {
                writeln!(
                    out,
                    "{:<8}  {:<20}  {:<16}  {}",
                    t.role,
                    t.name,
                    &plumb_model::hex(&t.hash)[..16],
                    t.created.to_rfc3339_secs()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
