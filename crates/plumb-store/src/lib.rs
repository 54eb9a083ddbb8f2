/*!
plumb's storage: runs, fingerprints and output, on SQLite, and search.

The embedded store is one SQLite file (`plumb.db`, WAL mode) in the store
directory. Runs are rows with their whole record as JSON plus indexed
columns; fingerprints are stored once by content hash; output is stored in
compressed, checksummed chunks with a word filter each (see [`chunk`]), so
that a search reads a few bytes per chunk and decompresses only the chunks
that may match. Nothing outside this crate writes SQL.

```
let dir = tempfile::tempdir().unwrap();
use plumb_store::prelude::*;
let store = plumb_store::Store::open(dir.path()).unwrap();
let run = plumb_model::Run::new(plumb_model::new_id(), "job".into(), plumb_model::Timestamp::now());
store.put_run(&run).unwrap();
assert_eq!(store.get_run(run.id).unwrap().name, "job");
```
*/
#![deny(missing_docs)]

pub mod alerts;
mod backend;
pub mod bench;
pub mod bloom;
mod cap;
pub mod chunk;
pub mod clock;
pub mod copy;
pub mod dash;
mod error;
pub mod health;
pub mod insights;
pub mod integrity;
pub mod kit;
mod lease;
mod matcher;
pub mod nodes;
mod query;
mod raw;
mod retention;
mod runs;
pub mod samples;
mod schema;
pub mod spool;
pub mod telemetry;
pub mod throttles;
mod timeline;
pub mod tokens;
mod writer;

pub use backend::{
    Alerts, Backend, Benches, Clocks, Connector, Health, Insights, Leases, NodeHistory, Nodes,
    Output, OutputSink, Raw, Retention, RunStore, Runs, SqliteConnector, Telemetry, Throttles,
    Timeline, Tokens,
};
/// The concern traits, for code that calls a store's methods: `use
/// plumb_store::prelude::*;`. [`RunStore`] is left out: every backend also
/// implements it, and having both in scope makes a call ambiguous.
pub mod prelude {
    // Anonymous, so that the glob brings the methods into scope without
    // the names, which would clash with common ones (`std::process::Output`).
    pub use crate::backend::{
        Alerts as _, Benches as _, Clocks as _, Health as _, Insights as _, Leases as _,
        NodeHistory as _, Nodes as _, Output as _, Raw as _, Retention as _, Runs as _,
        Telemetry as _, Throttles as _, Timeline as _, Tokens as _,
    };
}
pub use error::{ErrorKind, Result, StoreError};
pub use matcher::{Matcher, SearchMode};
pub use query::{
    Dropped, OutputCursor, Replayed, RunFilter, RunSummary, SearchOptions, take_kinds,
};
pub use writer::{Destination, RunWriter, WarnFn, WriterConfig};

use plumb_model::{Fingerprint, Run, Uuid};
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file name inside a store directory.
pub const DB_FILE: &str = "plumb.db";

/// How many snapshots [`Runs::attach_snapshot`] keeps per run: enough for
/// a run asked about now and then, bounded against one asked about in a
/// loop.
pub const MAX_ATTACHED_SNAPSHOTS: usize = 20;

/// An open store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    dir: PathBuf,
}

/// The default store directory: `$PLUMB_HOME`, else `$XDG_DATA_HOME/plumb`,
/// else `~/.local/share/plumb`.
pub fn default_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("PLUMB_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("plumb");
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/share/plumb")
}

/// Makes a store made by an older plumb (or under a loose umask) private:
/// the directory 0700, the database, its WAL and shared-memory files 0600.
/// Only files this user owns are changed, and each change is reported
/// once, as a warning naming the file and its old mode (once: the next
/// command finds it private), so a user learns that others could read it.
fn tighten_modes(dir: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let files = [
        (dir.to_path_buf(), 0o700),
        (dir.join(DB_FILE), 0o600),
        (dir.join(format!("{DB_FILE}-wal")), 0o600),
        (dir.join(format!("{DB_FILE}-shm")), 0o600),
    ];
    for (p, want) in files {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = m.mode() & 0o777;
        if m.uid() == uid && mode & !want != 0 {
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(want)) {
                Ok(()) => tracing::warn!(
                    "{} was readable by other users (mode {mode:o}); made it private ({want:o}): it holds environments, command lines and output",
                    p.display()
                ),
                Err(error) => {
                    tracing::warn!(path = %p.display(), %error, "others may read this store file")
                }
            }
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// Refuses a file at the database path that is not a plumb store, and a
    /// store from a newer plumb, without writing anything to it.
    pub fn open(dir: &Path) -> Result<Store> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Io {
                what: "cannot create store directory",
                path: dir.to_path_buf(),
                source,
            })?;
        let path = dir.join(DB_FILE);
        check_not_foreign(&path)?;
        // The store holds environments, command lines and output: private
        // to its owner whatever the umask. SQLite gives the WAL and
        // shared-memory files the database file's mode, so creating the
        // database 0600 first covers all three.
        if !path.exists() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
        }
        tighten_modes(dir);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::init(conn, dir, &path)
    }

    /// Opens an existing store read-only (for queries where the directory
    /// may not be writable). Errors if there is none.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        let path = dir.join(DB_FILE);
        check_not_foreign(&path)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let store = Store {
            conn,
            dir: dir.to_path_buf(),
        };
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        check_version(&path, version)?;
        Ok(store)
    }

    fn init(conn: Connection, dir: &Path, path: &Path) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(30))?;
        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id != 0 && app_id != schema::APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
                reason: format!("SQLite application id {app_id:#x} is not plumb's"),
            });
        }
        if app_id == 0 && version == 0 {
            let tables: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )?;
            if tables > 0 {
                return Err(StoreError::Foreign {
                    path: path.to_path_buf(),
                    reason: format!("an SQLite database with {tables} other tables"),
                });
            }
        }
        check_version(path, version)?;
        // WAL lets readers and the many concurrent recorders proceed together;
        // NORMAL sync keeps commits cheap and the file consistent after a crash.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A WAL that grew during a flood of output (see the writer's
        // checkpointer) is cut back to this when it next restarts.
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        // A short-lived `plumb run` must not pay for a checkpoint and its
        // fsyncs when it closes; checkpoints happen as the WAL grows.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        // The common case, an up-to-date store, takes no write lock.
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current as usize >= schema::MIGRATIONS.len() {
            return Ok(());
        }
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let Some(step) = schema::MIGRATIONS.get(version as usize) else {
                return Ok(());
            };
            tx.execute_batch(step)?;
            tx.pragma_update(None, "application_id", schema::APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Imports every finished spool file in `dir` (see [`spool`]); returns
    /// how many runs were imported.
    pub fn import_spool(&self, dir: &Path) -> Result<usize> {
        spool::import_dir(self, dir)
    }

    /// How long a write waits for another connection that holds the
    /// database before failing with [`ErrorKind::Busy`] (30 s by default).
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<()> {
        self.conn.busy_timeout(timeout)?;
        Ok(())
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

pub(crate) fn put_run_tx(tx: &rusqlite::Transaction<'_>, run: &Run) -> Result<()> {
    // A final record of a run over its output cap drops what is over it,
    // wherever the record lands (see `cap`).
    let settled = cap::settle(tx, run)?;
    let run = settled.as_ref().unwrap_or(run);
    let json = serde_json::to_string(run).expect("run serializes");
    let id = run.id.to_string();
    let exit = run.exit.as_ref();
    tx.execute(
        "INSERT INTO runs (id, hexid, name, host, state, started_ns, ended_ns, exit_code, signal, fingerprint, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, host = excluded.host, state = excluded.state,
           started_ns = excluded.started_ns, ended_ns = excluded.ended_ns, exit_code = excluded.exit_code,
           signal = excluded.signal, fingerprint = excluded.fingerprint, record = excluded.record",
        params![
            id,
            run.id.simple().to_string(),
            run.name,
            run.host.hostname,
            run.state.as_str(),
            run.started.as_nanos(),
            run.ended.map(|t| t.as_nanos()),
            exit.and_then(|e| e.code),
            exit.and_then(|e| e.signal),
            run.fingerprint,
            json
        ],
    )?;
    tx.execute("DELETE FROM run_tags WHERE run_id = ?1", [&id])?;
    for (k, v) in &run.tags {
        tx.execute(
            "INSERT INTO run_tags (run_id, key, value) VALUES (?1, ?2, ?3)",
            params![id, k, v],
        )?;
    }
    Ok(())
}

/// Stores a fingerprint once (a transaction derefs to its connection).
pub(crate) fn put_fingerprint_conn(conn: &Connection, hash: &str, fp: &Fingerprint) -> Result<()> {
    let json = serde_json::to_string(fp).expect("fingerprint serializes");
    conn.execute(
        "INSERT OR IGNORE INTO fingerprints (hash, record) VALUES (?1, ?2)",
        params![hash, json],
    )?;
    Ok(())
}

pub(crate) fn put_chunks_tx(
    tx: &rusqlite::Transaction<'_>,
    run_id: Uuid,
    host: &str,
    chunks: &[chunk::SealedChunk],
) -> Result<()> {
    let id = run_id.to_string();
    let mut meta = tx.prepare_cached(
        "INSERT OR IGNORE INTO chunks (run_id, host, stream, part, first_seq, t_min, t_max, lines, raw_bytes, crc, bloom)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut data = tx.prepare_cached("INSERT INTO chunk_data (id, data) VALUES (?1, ?2)")?;
    for c in chunks {
        let inserted = meta.execute(params![
            id,
            host,
            c.stream.as_u8(),
            c.part as i64,
            c.first_seq as i64,
            c.t_min.as_nanos(),
            c.t_max.as_nanos(),
            c.lines as i64,
            c.raw_bytes as i64,
            c.crc as i64,
            c.bloom,
        ])?;
        if inserted == 1 {
            data.execute(params![tx.last_insert_rowid(), c.data])?;
        }
    }
    Ok(())
}

fn check_version(path: &Path, version: i64) -> Result<()> {
    let supported = schema::MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(())
}

/// Refuses, before SQLite touches it, a file at the database path that is not
/// an SQLite database at all (so it is never overwritten or "repaired").
fn check_not_foreign(path: &Path) -> Result<()> {
    use std::io::Read;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                what: "cannot inspect",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|source| StoreError::Io {
        what: "cannot open",
        path: path.to_path_buf(),
        source,
    })?;
    let n = f.read(&mut head).map_err(|source| StoreError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    if n < 16 || &head != b"SQLite format 3\0" {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "it is not an SQLite database".into(),
        });
    }
    Ok(())
}
