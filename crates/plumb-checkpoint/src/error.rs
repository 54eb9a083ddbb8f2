//! The one error type of this crate.

use crate::format::CorruptKind;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening, saving or restoring checkpoints.
///
/// Whatever the error, checkpoints already on disk are untouched: a failed
/// save removes its own temporary file and nothing else.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint directory could not be created, listed or opened.
    #[error("checkpoint directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Another process holds the directory's lock: two writers in one
    /// directory would overwrite each other's sequence numbers.
    #[error(
        "checkpoint directory {dir} is in use by another process (it holds the lock on {lock})"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file system is full (ENOSPC) or the quota is exhausted (EDQUOT).
    /// The previous checkpoint is intact.
    #[error("no space left to write checkpoint {path}; the previous checkpoint is intact")]
    StorageFull {
        /// The checkpoint that could not be written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing, syncing or renaming a checkpoint failed for another reason.
    /// The previous checkpoint is intact.
    #[error("writing checkpoint {path}: {source}")]
    Write {
        /// The checkpoint that could not be written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Reading a checkpoint file failed.
    #[error("reading checkpoint {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A checkpoint that was asked for by sequence number is corrupt.
    #[error("checkpoint {path} is corrupt: {kind}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        kind: CorruptKind,
    },
    /// No checkpoint with this sequence number exists.
    #[error("no checkpoint with sequence number {seq} in {dir}")]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The sequence number asked for.
        seq: u64,
    },
    /// The state could not be serialized.
    #[error("serializing the state as {encoding}: {message}")]
    Serialize {
        /// The encoding that was attempted.
        encoding: String,
        /// What the serializer said.
        message: String,
    },
    /// The checkpoint is valid but its payload does not deserialize into the
    /// requested type (for instance after the state's type changed).
    #[error("deserializing checkpoint {path} ({encoding}): {message}")]
    Deserialize {
        /// The file.
        path: PathBuf,
        /// Its encoding.
        encoding: String,
        /// What the deserializer said.
        message: String,
    },
    /// The checkpoint's encoding is not the one the caller asked to decode.
    #[error("checkpoint {path} is encoded as {found:?}, not {expected:?}")]
    WrongEncoding {
        /// The file.
        path: PathBuf,
        /// Its encoding.
        found: String,
        /// The encoding the caller can decode.
        expected: String,
    },
    /// A setting is invalid (an encoding name that does not fit, a signal
    /// that cannot be caught, keeping zero checkpoints).
    #[error("invalid checkpoint setting: {0}")]
    Config(String),
    /// A signal handler could not be installed.
    #[error("installing the handler for signal {signal}: {source}")]
    Signal {
        /// The signal number.
        signal: i32,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl CheckpointError {
    /// Wraps an error from writing `path`, telling a full disk apart.
    pub(crate) fn write(path: PathBuf, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                CheckpointError::StorageFull { path, source }
            }
            _ => CheckpointError::Write { path, source },
        }
    }
}
