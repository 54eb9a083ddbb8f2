//! Spawning and supervising the child.
//!
//! API contract (the `plumb` binary and the store sink are written against
//! it; change it only together with them):

use plumb_model::{Fingerprint, Run, Stream, Timestamp};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::Redactor;

/// What to run and what to capture.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Program and arguments. Must not be empty.
    pub argv: Vec<OsString>,
    /// Run name; default: the program's base name.
    pub name: Option<String>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
    /// Configuration files to record (size, hash, small content redacted).
    pub config_files: Vec<PathBuf>,
    /// Input files, hashed before the run.
    pub inputs: Vec<PathBuf>,
    /// Output files, hashed after the run.
    pub outputs: Vec<PathBuf>,
    /// Secret rules and hash key.
    pub redactor: Redactor,
    /// Directory for the fingerprint cache (created if missing).
    pub cache_dir: PathBuf,
    /// Python interpreter to fingerprint when the command is not obviously
    /// Python (`PLUMB_PYTHON`).
    pub python: Option<PathBuf>,
    /// Extra tools to version: name -> command line run through `sh -c`.
    pub tools: BTreeMap<String, String>,
    /// Extra variables set for the child only (not recorded as its
    /// environment's own): `PLUMB_RUN_ID`, `OTEL_RESOURCE_ATTRIBUTES`.
    pub extra_env: Vec<(String, String)>,
    /// The run's id, chosen by the caller (UUIDv7).
    pub run_id: plumb_model::Uuid,
}

/// Where a run's records go. Implemented by the caller (the store, a spool).
///
/// Methods are called from the recorder's threads and must not block for
/// long: `output` is on the path between the child and the terminal.
/// A sink never fails the run; it deals with its own errors.
pub trait Sink: Send {
    /// The child has been spawned; `run` has everything known at start.
    fn started(&mut self, run: &Run);
    /// One read of the child's output, in the order read.
    fn output(&mut self, stream: Stream, seq: u64, time: Timestamp, data: &[u8]);
    /// The software fingerprint, once captured (before `finished`).
    fn fingerprint(&mut self, hash: &str, fingerprint: &Fingerprint);
    /// The child has exited and been reaped; `run` is complete.
    fn finished(&mut self, run: &Run);
}

/// Why a run could not be started at all.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No command was given.
    #[error("no command given: use `plumb run -- CMD ARGS...`")]
    NoCommand,
    /// The program could not be executed.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A system call the recorder needs failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the command, forwards output and signals, and returns the finished
/// run. The caller exits with `run.exit.shell_code()`.
pub fn record(opts: RunOptions, sink: &mut dyn Sink) -> Result<Run, RecordError> {
    let _ = (opts, sink);
    Err(RecordError::NoCommand)
}
