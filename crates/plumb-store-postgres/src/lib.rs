/*!
plumb's store on PostgreSQL (15 or newer): every concern of the storage
boundary ([`plumb_store::Backend`]), for collectors that outgrow one SQLite
file or share one database.

[`PgConnector`] opens connections from a URL
(`postgres://user[:password]@host[:port]/database[?schema=NAME]`);
[`PgStore`] is one connection and implements every concern trait. The
schema is created and migrated by the first writer, under an advisory lock
so that several collectors starting together migrate once; a schema from a
newer plumb is refused and named. What a concern does that holds no SQL
(replay order, search matching, the output cap, spool frames, traces,
statistics) is `plumb_store::kit`, shared with SQLite, so both backends
pass the same `plumb-store-conformance` suite.

Storage follows the embedded store: runs are rows with their record as
JSON and indexed columns; output and log records are compressed chunks with
a word filter each, and a search tests each chunk's filter inside
PostgreSQL (one 32-byte block per word, read with `substring` from the
filter stored uncompressed), so only chunks that may match leave the
database. Identities are unique constraints, written with
`ON CONFLICT DO NOTHING`, so a record sent twice, to one collector or two,
is stored once.
*/
#![deny(missing_docs)]

mod fleet;
mod insights;
mod output;
mod raw;
mod retention;
mod runs;
mod schema;
mod telemetry;
pub mod testing;

use plumb_store::{Backend, Connector, ErrorKind, Result, StoreError};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row};
use std::cell::{RefCell, RefMut};
use std::time::Duration;

/// Where a PostgreSQL store is: a parsed URL, and the schema its tables
/// live in.
#[derive(Clone)]
pub struct PgConnector {
    config: Config,
    schema: Option<String>,
    describe: String,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector")
            .field("at", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Whether `url` names a PostgreSQL store (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgConnector {
    /// Parses a store URL: `postgres://user[:password]@host[:port]/db`,
    /// with libpq's query parameters (`sslmode` is not supported: use a
    /// local network or a tunnel) and plumb's own `schema=NAME` (default:
    /// the user's search path, usually `public`). A bad URL is an error
    /// naming what is wrong; nothing is connected here.
    pub fn new(url: &str) -> Result<PgConnector> {
        if !is_postgres_url(url) {
            return Err(StoreError::BadUrl(format!(
                "`{}` is not a PostgreSQL URL: it must start with postgres:// (for example postgres://plumb@db.example:5432/plumb)",
                redact(url)
            )));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", v)) => {
                    if !schema_name_ok(v) {
                        return Err(StoreError::BadUrl(format!(
                            "schema `{v}`: use 1 to 63 lowercase letters, digits or `_`, not starting with a digit"
                        )));
                    }
                    schema = Some(v.to_string());
                }
                _ => rest.push(pair),
            }
        }
        let plain = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: Config = plain
            .parse()
            .map_err(|e| StoreError::BadUrl(format!("`{}`: {e}", redact(url))))?;
        if config.get_hosts().is_empty() {
            return Err(StoreError::BadUrl(format!(
                "`{}` names no host (postgres://user@HOST:port/database)",
                redact(url)
            )));
        }
        if config.get_user().is_none() {
            let user = std::env::var("USER").unwrap_or_else(|_| "postgres".into());
            config.user(&user);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("plumb");
        let describe = describe(&config, schema.as_deref());
        Ok(PgConnector {
            config,
            schema,
            describe,
        })
    }

    /// A connection that writes, with the schema created or migrated.
    pub fn open(&self) -> Result<PgStore> {
        let store = self.connect(false)?;
        schema::migrate(&store)?;
        Ok(store)
    }

    /// A connection that only reads; a schema from a newer plumb, or none
    /// at all, is an error.
    pub fn open_read_only(&self) -> Result<PgStore> {
        let store = self.connect(true)?;
        schema::check(&store)?;
        Ok(store)
    }

    fn connect(&self, read_only: bool) -> Result<PgStore> {
        let client = self.client(read_only)?;
        Ok(PgStore {
            client: std::mem::ManuallyDrop::new(RefCell::new(client)),
            connector: self.clone(),
            read_only,
        })
    }

    fn client(&self, read_only: bool) -> Result<Client> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|e| self.unreachable(e))?;
        let mut setup = String::new();
        if let Some(s) = &self.schema {
            setup.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s};"
            ));
            if read_only {
                setup = format!("SET search_path TO {s};");
            }
        }
        if read_only {
            setup.push_str("SET default_transaction_read_only = on;");
        }
        // Times are nanoseconds in BIGINT columns; no time zone applies.
        setup.push_str("SET lock_timeout = '30s';");
        client.batch_execute(&setup).map_err(db)?;
        Ok(client)
    }

    fn unreachable(&self, e: postgres::Error) -> StoreError {
        StoreError::Unreachable {
            target: self.describe.clone(),
            source: Box::new(e),
        }
    }

    /// The schema the tables live in, when the URL named one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl Connector for PgConnector {
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn writer(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(self.open()?))
    }
    fn reader(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(self.open_read_only()?))
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.split_once('@') {
        Some((a, t)) => (Some(a), t),
        None => (None, rest),
    };
    match auth {
        Some(a) => match a.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{tail}"),
            None => format!("{scheme}://{a}@{tail}"),
        },
        None => url.to_string(),
    }
}

fn schema_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn describe(config: &Config, schema: Option<&str>) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let mut s = format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    );
    if let Some(schema) = schema {
        s.push_str(&format!("?schema={schema}"));
    }
    s
}

/// One connection to a PostgreSQL store; see the crate docs. A connection
/// lost (the server restarted, the network went away) is made again on
/// the next call, so a collector recovers by itself once the database is
/// back; calls in between fail as busy (the collector answers 503 with
/// Retry-After).
pub struct PgStore {
    /// Dropped on a thread of its own (see `Drop`).
    client: std::mem::ManuallyDrop<RefCell<Client>>,
    connector: PgConnector,
    read_only: bool,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let client = unsafe { std::mem::ManuallyDrop::take(&mut self.client) }.into_inner();
        // Closing a connection runs the driver's own event loop, which
        // cannot start on a thread that drives an async runtime (a
        // collector's reader pool dropped as it shuts down): close it on a
        // thread of its own, wherever the store is dropped.
        let closing = std::thread::Builder::new()
            .name("plumb-pg-close".into())
            .spawn(move || drop(client));
        if let Ok(t) = closing {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("at", &self.connector.describe)
            .finish_non_exhaustive()
    }
}

/// The most day partitions one transaction may make before it gives up.
const MAX_NEW_PARTITIONS: usize = 16;

impl PgStore {
    /// The connection, made again if it was lost.
    pub(crate) fn c(&self) -> Result<RefMut<'_, Client>> {
        let mut c = self.client.borrow_mut();
        if c.is_closed() {
            *c = self.connector.client(self.read_only)?;
        }
        Ok(c)
    }

    /// Runs `f` in a transaction, committed when it returns `Ok`.
    ///
    /// A row for a day whose partition of `chunks` or `log_chunks` does
    /// not exist yet makes the transaction fail; the partition is made
    /// then and `f` runs again (at most a few times: a batch may span days).
    pub(crate) fn tx<T>(
        &self,
        mut f: impl FnMut(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut made = 0;
        loop {
            let attempt = (|| {
                let mut c = self.c()?;
                let mut tx = c.transaction().map_err(db)?;
                let v = f(&mut tx)?;
                tx.commit().map_err(db)?;
                Ok(v)
            })();
            match attempt {
                Err(e) if made < MAX_NEW_PARTITIONS => match retention::missing_partition(&e) {
                    Some((table, t)) => {
                        retention::make_partition(&mut *self.c()?, &table, t)?;
                        made += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// Where the store is, for messages.
    pub fn describe(&self) -> &str {
        &self.connector.describe
    }
}

/// Statement shorthands on a connection or a transaction, with errors
/// made [`StoreError`]s.
pub(crate) trait Sql {
    fn x(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64>;
    fn q(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>;
    fn q1(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row>;
    fn qo(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>>;
}

impl<C: GenericClient> Sql for C {
    fn x(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.execute(sql, params).map_err(db)
    }
    fn q(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.query(sql, params).map_err(db)
    }
    fn q1(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        self.query_one(sql, params).map_err(db)
    }
    fn qo(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        self.query_opt(sql, params).map_err(db)
    }
}

/// Parameters built as a query is: boxed values, lent as the slice the
/// driver takes.
#[derive(Default)]
pub(crate) struct Params(Vec<Box<dyn ToSql + Sync>>);

impl Params {
    /// Adds a value and returns its placeholder (`$n`).
    pub(crate) fn add(&mut self, v: impl ToSql + Sync + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A driver error as a [`StoreError`], its kind read from the SQLSTATE
/// code (never from message text); a lost connection is busy, so the
/// caller retries.
pub(crate) fn db(e: postgres::Error) -> StoreError {
    let kind = match e.code() {
        None => ErrorKind::Busy,
        Some(code) => kind_of(code),
    };
    StoreError::Database {
        kind,
        source: Box::new(e),
    }
}

fn kind_of(code: &SqlState) -> ErrorKind {
    let c = code.code();
    if *code == SqlState::DISK_FULL || c == "53100" {
        ErrorKind::DiskFull
    } else if c.starts_with("23") {
        // Integrity constraint violations: unique, foreign key, check.
        ErrorKind::Conflict
    } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
        || c.starts_with("08")
        || c.starts_with("57P")
        || c.starts_with("53")
    {
        // Serialization and lock conflicts, lost connections, a server
        // shutting down or out of resources: trying again works.
        ErrorKind::Busy
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        ErrorKind::ReadOnly
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        ErrorKind::Corrupt
    } else if c.starts_with("58") {
        ErrorKind::Io
    } else {
        ErrorKind::Other
    }
}

/// A stored JSON record, read.
pub(crate) fn json<T: serde::de::DeserializeOwned>(id: impl Into<String>, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| StoreError::Json {
        id: id.into(),
        source,
    })
}

/// A stored run id, parsed.
pub(crate) fn uuid(s: &str) -> Result<plumb_model::Uuid> {
    plumb_model::Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad run id {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_bad_ones_named() {
        let c = PgConnector::new("postgres://plumb:secret@db.example:6543/fleet?schema=team_a")
            .unwrap();
        assert_eq!(
            c.describe,
            "postgres://plumb@db.example:6543/fleet?schema=team_a"
        );
        assert_eq!(c.schema(), Some("team_a"));
        let e = PgConnector::new("mysql://x@y/z").unwrap_err().to_string();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        let e = PgConnector::new("postgres://u:pw@h/d?schema=Bad-Name")
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema `Bad-Name`"), "{e}");
        let e = PgConnector::new("postgres://u:pw@h:notaport/d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad store URL") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:hunter2@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
    }
}
