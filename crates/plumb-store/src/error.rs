//! The store's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database behind the store said no. Backend-neutral: the kind is
    /// read from the backend's own codes when the error is made (SQLite's
    /// result codes, the OS errno), and the backend's error is kept as the
    /// source for its message.
    #[error("store database error: {source}")]
    Database {
        /// What kind of failure it is.
        kind: ErrorKind,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file at the store's path is not a plumb store.
    #[error("{path} is not a plumb store ({reason}); refusing to touch it")]
    Foreign {
        /// The path.
        path: PathBuf,
        /// Why it was judged foreign.
        reason: String,
    },
    /// The store was written by a newer plumb.
    #[error(
        "store {path} has schema version {found}, newer than this plumb's {supported}; upgrade plumb"
    )]
    TooNew {
        /// The path.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// Stored data failed a consistency check.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// A run reference matched nothing.
    #[error("no run matches `{0}`")]
    NoSuchRun(String),
    /// A run prefix matched several runs.
    #[error("`{prefix}` is ambiguous: it matches {}{}", .candidates.join(", "), if *.more { ", ..." } else { "" })]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Some of the runs it matches.
        candidates: Vec<String>,
        /// Whether there are more than listed.
        more: bool,
    },
    /// A run reference was malformed.
    #[error(
        "`{0}` is not a run reference: use a run id, a unique prefix of one (at least 4 hex digits), `last` or `last~N`"
    )]
    BadReference(String),
    /// A trace reference (an id or a unique prefix of one) matched no
    /// stored trace.
    #[error("no trace matches `{0}`")]
    NoSuchTrace(String),
    /// A search query could not be understood.
    #[error("bad search: {0}")]
    BadQuery(String),
    /// A throttle request is malformed (no name, 0 slots, no holder).
    #[error("bad throttle request: {0}")]
    BadThrottle(String),
    /// A throttle request disagrees with the holders and waiters already
    /// there on how many slots the throttle has.
    #[error(
        "throttle `{name}` has {held} slots for the runs holding or waiting for it; this request says {asked}: use the same N everywhere (or wait until none hold it)"
    )]
    ThrottleConflict {
        /// The throttle.
        name: String,
        /// The N of those already there.
        held: u32,
        /// The N asked for.
        asked: u32,
    },
    /// A renewal of a lease (or place) that is not there: it expired, or
    /// was released.
    #[error("throttle `{name}` has no lease or place for `{holder}` (it expired or was released)")]
    NoSuchLease {
        /// The throttle.
        name: String,
        /// The holder.
        holder: String,
    },
    /// A store URL could not be understood.
    #[error("bad store URL: {0}")]
    BadUrl(String),
    /// The database server cannot be reached (refused, unresolvable, gone
    /// away, or the login was refused).
    #[error("cannot reach the store database at {target}")]
    Unreachable {
        /// Where it was looked for: host, port and database, no password.
        target: String,
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored JSON record could not be read.
    #[error("stored record {id} does not parse: {source}")]
    Json {
        /// Which record.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// What kind of failure a [`StoreError`] is, for callers that must answer
/// differently to each (a server choosing an HTTP status, a client deciding
/// whether to retry). Read from SQLite's result codes and the OS error
/// number, never from message text, so a reworded message changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another connection holds the database longer than the busy timeout;
    /// trying again shortly works.
    Busy,
    /// The disk (or the quota) is full; trying again works once space is
    /// freed.
    DiskFull,
    /// The operating system reported an I/O error (SQLite's `SQLITE_IOERR`
    /// or another errno): often a filling disk seen part way through a
    /// write, sometimes failing hardware.
    Io,
    /// The database or its directory cannot be written (read-only file
    /// system or file).
    ReadOnly,
    /// What is stored fails a consistency check, or the file is damaged.
    Corrupt,
    /// A run or trace reference matched nothing.
    NotFound,
    /// The caller's input (a reference or query) is malformed or ambiguous.
    BadInput,
    /// The write contradicts what is stored (the same identity with other
    /// content, or a name already taken).
    Conflict,
    /// Anything else: a fault to report, not to retry.
    Other,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            kind: sqlite_kind(&e),
            source: Box::new(e),
        }
    }
}

impl StoreError {
    /// The kind of this failure; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Database { kind, .. } => *kind,
            StoreError::Io { source, .. } => io_kind(source),
            StoreError::Corrupt(_) | StoreError::Json { .. } => ErrorKind::Corrupt,
            StoreError::NoSuchRun(_)
            | StoreError::NoSuchTrace(_)
            | StoreError::NoSuchLease { .. } => ErrorKind::NotFound,
            StoreError::ThrottleConflict { .. } => ErrorKind::Conflict,
            StoreError::Ambiguous { .. }
            | StoreError::BadReference(_)
            | StoreError::BadQuery(_)
            | StoreError::BadThrottle(_)
            | StoreError::BadUrl(_) => ErrorKind::BadInput,
            StoreError::Unreachable { .. } => ErrorKind::Busy,
            StoreError::Foreign { .. } | StoreError::TooNew { .. } => ErrorKind::Other,
        }
    }
}

fn sqlite_kind(e: &rusqlite::Error) -> ErrorKind {
    use rusqlite::ErrorCode;
    let rusqlite::Error::SqliteFailure(failure, _) = e else {
        return ErrorKind::Other;
    };
    match failure.code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Busy,
        ErrorCode::DiskFull => ErrorKind::DiskFull,
        ErrorCode::SystemIoFailure => ErrorKind::Io,
        ErrorCode::ReadOnly => ErrorKind::ReadOnly,
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::Corrupt,
        ErrorCode::ConstraintViolation => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => ErrorKind::DiskFull,
        Some(libc::EROFS) => ErrorKind::ReadOnly,
        _ => ErrorKind::Io,
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use std::time::Duration;

    /// The kind of the error `sql` fails with on `store`.
    fn kind_of(store: &Store, sql: &str) -> ErrorKind {
        let e = StoreError::from(store.conn().execute_batch(sql).unwrap_err());
        e.kind()
    }

    #[test]
    fn a_database_held_by_another_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let holder = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        store.set_busy_timeout(Duration::ZERO).unwrap();
        assert_eq!(kind_of(&store, "BEGIN IMMEDIATE"), ErrorKind::Busy);
    }

    #[test]
    fn writing_through_a_read_only_store_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let ro = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(kind_of(&ro, "CREATE TABLE t (x)"), ErrorKind::ReadOnly);
    }

    #[test]
    fn os_errors_are_classified_by_errno() {
        let io = |errno| StoreError::Io {
            what: "cannot write",
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(io(libc::ENOSPC).kind(), ErrorKind::DiskFull);
        assert_eq!(io(libc::EDQUOT).kind(), ErrorKind::DiskFull);
        assert_eq!(io(libc::EROFS).kind(), ErrorKind::ReadOnly);
        assert_eq!(io(libc::EIO).kind(), ErrorKind::Io);
        assert_eq!(
            StoreError::NoSuchRun("x".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(StoreError::BadQuery("x".into()).kind(), ErrorKind::BadInput);
        assert_eq!(StoreError::Corrupt("x".into()).kind(), ErrorKind::Corrupt);
    }
}
