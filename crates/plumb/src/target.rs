//! Where a reading command reads from, the local store or a collector,
//! chosen by one rule, and the one place that turns the configuration into
//! the settings of an HTTP client for a collector.
//!
//! The rule, for `ls`, `show`, `logs`, `search`, `trace`, `diff`, `errors`,
//! `slow`, `nodes`, `clock` and `timeline` alike: `--local` reads the local store; otherwise
//! `--collector URL`, else the configured collector (`PLUMB_COLLECTOR`, or
//! `collector =` in plumb.toml), else the local store. Giving both flags is
//! refused by clap.

use crate::config::Config;
use anyhow::Result;
use std::time::Duration;

/// `--collector URL` / `--local`, flattened into every command that reads
/// the local store or a collector. Global, so a subcommand (`errors show`,
/// `nodes show`) takes them after its own name too.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceArgs {
    /// Read from this collector (`http://host:7700`) instead of the local
    /// store (default: `collector` in plumb.toml or PLUMB_COLLECTOR).
    #[arg(long, global = true, value_name = "URL")]
    pub collector: Option<String>,
    /// Read the local store even when a collector is configured.
    #[arg(long, global = true, conflicts_with = "collector")]
    pub local: bool,
}

/// Where a command reads, by [`SourceArgs::target`].
#[derive(Debug)]
pub enum Target {
    /// The local store (each command opens it as it needs).
    Local,
    /// A collector, through a client with the configured token and CA.
    Collector(plumb_http::Client),
}

impl SourceArgs {
    /// The collector to read, or `None` for the local store: the rule in
    /// the module docs.
    pub fn collector_url(&self, cfg: &Config) -> Option<String> {
        if self.local {
            None
        } else {
            self.collector.clone().or_else(|| cfg.collector.clone())
        }
    }

    /// Where to read, with the client made when it is a collector (a bad
    /// URL or CA file is reported here, before any request).
    pub fn target(&self, cfg: &Config) -> Result<Target> {
        Ok(match self.collector_url(cfg) {
            None => Target::Local,
            Some(url) => Target::Collector(client(cfg, &url)?),
        })
    }
}

/// How long one request of a reading command may take: a big run's output
/// comes in one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one shipping request may take; the shipper retries later.
const SHIP_TIMEOUT: Duration = Duration::from_secs(20);

/// A command reading a collector tries three times when the connection
/// cannot be made or the collector says it is busy (429, 502-504), waiting
/// up to 0.2 s, then 0.4 s (or the `Retry-After` it asked for, up to 5 s):
/// a collector restarting or briefly overloaded is not an error, and one
/// that is away is reported within a second.
const READ_RETRY: plumb_http::Retry = plumb_http::Retry {
    attempts: 3,
    backoff: plumb_http::Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
    },
};

/// The client settings for the collector at `url`: the configured token
/// (`PLUMB_TOKEN`, `token =`) and CA (`PLUMB_CA_CERT`, `ca_cert =`), and
/// the retries of a reading command.
pub fn client_config(cfg: &Config, url: &str) -> plumb_http::Config {
    plumb_http::Config {
        token: cfg.token.clone(),
        ca_cert: cfg.ca_cert.clone(),
        timeout: READ_TIMEOUT,
        retry: READ_RETRY,
        ..plumb_http::Config::new(url)
    }
}

/// A client of the collector at `url`, per [`client_config`].
pub fn client(cfg: &Config, url: &str) -> Result<plumb_http::Client> {
    Ok(plumb_http::Client::new(&client_config(cfg, url))?)
}

/// The same settings for the shipper (`plumb run`, `plumb agent`), which
/// retries whole passes itself.
pub fn ship_config(cfg: &Config, url: &str) -> plumb_ship::ClientConfig {
    let http = client_config(cfg, url);
    plumb_ship::ClientConfig {
        collector: http.url,
        token: http.token,
        ca_cert: http.ca_cert,
        timeout: SHIP_TIMEOUT,
    }
}

/// GETs `path` from a collector and parses its JSON; an answer that does
/// not parse is named with its URL and a hint that the server may not be
/// a plumb collector.
pub fn get_json<T: serde::de::DeserializeOwned>(
    client: &plumb_http::Client,
    path: &str,
) -> Result<T> {
    let resp = client.get(path).send()?;
    serde_json::from_slice(&resp.body).map_err(|e| {
        resp.decode_error(format!("{e} (is it a plumb collector?)"))
            .into()
    })
}
