//! The store's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    /// A stored JSON record could not be read.
    #[error("stored record {id} does not parse: {source}")]
    Json {
        /// Which record.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
