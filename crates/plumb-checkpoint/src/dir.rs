//! Checkpoint directories: file names, listing, and read-only inspection.

use crate::error::CheckpointError;
use crate::format::{CorruptKind, Header, decode_frame};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Every checkpoint file name starts with this.
pub const FILE_PREFIX: &str = "checkpoint-";
/// Every checkpoint file name ends with this.
pub const FILE_SUFFIX: &str = ".ckpt";
/// Temporary files start with this and end with [`TEMP_SUFFIX`]; they are
/// never read, and [`crate::Checkpointer::open`] deletes leftovers.
pub const TEMP_PREFIX: &str = ".checkpoint-";
/// See [`TEMP_PREFIX`].
pub const TEMP_SUFFIX: &str = ".ckpt.tmp";
/// The lock file held (with `flock`) by the one process writing a directory.
pub const LOCK_FILE: &str = ".checkpoint.lock";

/// The file name of checkpoint `seq`: `checkpoint-` and 20 zero-padded
/// decimal digits, so that names sort like numbers.
pub fn file_name(seq: u64) -> String {
    format!("{FILE_PREFIX}{seq:020}{FILE_SUFFIX}")
}

/// The temporary file name for checkpoint `seq`.
pub(crate) fn temp_name(seq: u64) -> String {
    format!("{TEMP_PREFIX}{seq:020}{TEMP_SUFFIX}")
}

/// The sequence number in a checkpoint file name, or `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// What a valid checkpoint's header says, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The file.
    pub path: PathBuf,
    /// Sequence number.
    pub seq: u64,
    /// When it was written: nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Size of the payload in bytes.
    pub payload_len: u64,
    /// The payload's encoding (`json`, `raw`, ...).
    pub encoding: String,
}

impl CheckpointInfo {
    /// The time as RFC 3339 in UTC with a `Z`, to the nanosecond.
    pub fn time_rfc3339(&self) -> String {
        rfc3339(self.time_ns)
    }
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with `Z`.
pub fn rfc3339(time_ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(time_ns)) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("(out-of-range time {time_ns} ns)"),
    }
}

/// Why a checkpoint file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Its bytes are not a valid checkpoint.
    Corrupt(CorruptKind),
    /// It could not be read (the operating system's message).
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Corrupt(kind) => write!(f, "corrupt: {kind}"),
            Problem::Unreadable(msg) => write!(f, "unreadable: {msg}"),
        }
    }
}

/// One checkpoint file found in a directory, and whether it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// The sequence number in its name.
    pub seq: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its header, or why it cannot be used.
    pub check: Result<CheckpointInfo, Problem>,
}

/// The checkpoint files in `dir` as (sequence number from the name, path),
/// sorted by sequence number, oldest first. Other files are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let dir_err = |source| CheckpointError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_file_name) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads and validates one checkpoint file, returning its header and payload.
pub(crate) fn read_checkpoint(
    path: &Path,
    seq_in_name: u64,
) -> Result<(CheckpointInfo, Vec<u8>), Problem> {
    let bytes = fs::read(path).map_err(|e| Problem::Unreadable(e.to_string()))?;
    let (header, payload): (Header, &[u8]) = decode_frame(&bytes).map_err(Problem::Corrupt)?;
    if header.seq != seq_in_name {
        return Err(Problem::Corrupt(CorruptKind::SequenceMismatch {
            in_name: seq_in_name,
            in_header: header.seq,
        }));
    }
    let info = CheckpointInfo {
        path: path.to_path_buf(),
        seq: header.seq,
        time_ns: header.time_ns,
        size: bytes.len() as u64,
        payload_len: header.payload_len,
        encoding: header.encoding,
    };
    let payload = payload.to_vec();
    Ok((info, payload))
}

/// Lists and validates every checkpoint in `dir`, oldest first, without
/// taking the lock or changing anything. This is what `plumb checkpoint ls`
/// and `verify` show.
///
/// # Errors
/// [`CheckpointError::Dir`] when the directory cannot be listed. Corrupt or
/// unreadable files are not errors: they are entries with a [`Problem`].
pub fn inspect(dir: impl AsRef<Path>) -> Result<Vec<Entry>, CheckpointError> {
    let dir = dir.as_ref();
    let mut entries = Vec::new();
    for (seq, path) in list(dir)? {
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let check = read_checkpoint(&path, seq).map(|(info, _)| info);
        entries.push(Entry {
            path,
            seq,
            size,
            check,
        });
    }
    Ok(entries)
}

/// Reads checkpoint `seq` from `dir` (or, with `None`, the newest valid one),
/// without taking the lock. Returns `Ok(None)` when there is no valid
/// checkpoint at all.
///
/// # Errors
/// [`CheckpointError::NotFound`] or [`CheckpointError::Corrupt`] when a
/// specific `seq` was asked for and is missing or corrupt.
pub fn read(
    dir: impl AsRef<Path>,
    seq: Option<u64>,
) -> Result<Option<(CheckpointInfo, Vec<u8>)>, CheckpointError> {
    let dir = dir.as_ref();
    let files = list(dir)?;
    match seq {
        Some(want) => {
            let Some((_, path)) = files.iter().find(|(s, _)| *s == want) else {
                return Err(CheckpointError::NotFound {
                    dir: dir.to_path_buf(),
                    seq: want,
                });
            };
            match read_checkpoint(path, want) {
                Ok(found) => Ok(Some(found)),
                Err(Problem::Corrupt(kind)) => Err(CheckpointError::Corrupt {
                    path: path.clone(),
                    kind,
                }),
                Err(Problem::Unreadable(msg)) => Err(CheckpointError::Read {
                    path: path.clone(),
                    source: io::Error::other(msg),
                }),
            }
        }
        None => Ok(newest_valid(&files)),
    }
}

/// The newest valid checkpoint among `files` (sorted oldest first), warning
/// about each newer one that is skipped.
pub(crate) fn newest_valid(files: &[(u64, PathBuf)]) -> Option<(CheckpointInfo, Vec<u8>)> {
    for (seq, path) in files.iter().rev() {
        match read_checkpoint(path, *seq) {
            Ok(found) => return Some(found),
            Err(problem) => tracing::warn!(
                file = %path.display(),
                %problem,
                "skipping checkpoint that cannot be used; falling back to the previous one"
            ),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        assert_eq!(file_name(42), "checkpoint-00000000000000000042.ckpt");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("checkpoint-.ckpt"), None);
        assert_eq!(parse_file_name("checkpoint-12a.ckpt"), None);
        assert_eq!(parse_file_name(&temp_name(3)), None);
        assert!(is_temp_name(&temp_name(3)));
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn rfc3339_is_utc_with_z() {
        assert_eq!(rfc3339(1_500_000_000_000_000_000), "2017-07-14T02:40:00Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.000000001Z");
    }
}
