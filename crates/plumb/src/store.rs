//! Which store a collector command uses: the embedded SQLite store in a
//! directory (the default), or a server database named by a URL.
//!
//! `--store URL` wins, then `PLUMB_STORE_URL`, then `[store] url` in
//! plumb.toml; without any, `--data DIR` or the configured store directory
//! is the embedded store. A URL is `postgres://user[:password]@host[:port]/db`
//! (with `?schema=NAME` to keep several stores in one database) or
//! `sqlite:DIR`.

use crate::config::Config;
use anyhow::{Result, bail};
use plumb_store::Connector;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The store a collector command opens; see the module docs.
pub fn connector(
    cfg: &Config,
    data: Option<PathBuf>,
    store: Option<String>,
    busy_timeout: Duration,
) -> Result<Arc<dyn Connector>> {
    if data.is_some() && store.is_some() {
        bail!("--data DIR and --store URL both name the store: give one");
    }
    let url = match data {
        Some(_) => None,
        None => store.or_else(|| cfg.store_url.clone()),
    };
    let sqlite = |dir: PathBuf| -> Arc<dyn Connector> {
        Arc::new(plumb_store::SqliteConnector { dir, busy_timeout })
    };
    match url {
        None => Ok(sqlite(data.unwrap_or_else(|| cfg.home.clone()))),
        Some(u) if plumb_store_postgres::is_postgres_url(&u) => {
            Ok(Arc::new(plumb_store_postgres::PgConnector::new(&u)?))
        }
        Some(u) => match u
            .strip_prefix("sqlite://")
            .or_else(|| u.strip_prefix("sqlite:"))
        {
            Some(dir) if !dir.is_empty() => Ok(sqlite(PathBuf::from(dir))),
            _ => bail!(
                "store URL `{u}`: use postgres://user@host:port/database (PostgreSQL) or sqlite:DIR (the embedded store in DIR)"
            ),
        },
    }
}
