//! The software fingerprint of a run, captured cheaply and cached by content
//! key.

use plumb_model::Fingerprint;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// What the fingerprint capture needs to know about the run.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Directory of the persistent cache (created if missing).
    pub cache_dir: PathBuf,
    /// The child's command line.
    pub argv: Vec<OsString>,
    /// The child's working directory.
    pub cwd: PathBuf,
    /// The child's environment.
    pub env: Vec<(OsString, OsString)>,
    /// A Python interpreter to fingerprint even when the command is not
    /// obviously Python.
    pub python: Option<PathBuf>,
    /// Extra tools: name -> command run through `sh -c`.
    pub tools: BTreeMap<String, String>,
}

/// A fingerprint capture running beside the child.
#[derive(Debug)]
pub struct Capture {
    fingerprint: Fingerprint,
}

impl Capture {
    /// Starts capturing for the child `child_pid`; returns at once.
    pub fn start(opts: &CaptureOptions, child_pid: u32) -> Capture {
        let _ = (opts, child_pid);
        Capture {
            fingerprint: Fingerprint::default(),
        }
    }

    /// Waits for the capture to complete (call after the child exited) and
    /// returns the fingerprint's content hash and the fingerprint.
    pub fn finish(self) -> (String, Fingerprint) {
        (self.fingerprint.content_hash(), self.fingerprint)
    }
}

/// Job-scheduler ids found in the environment (`slurm.job_id`, `k8s.pod`...).
pub fn scheduler_ids(env: &[(OsString, OsString)]) -> BTreeMap<String, String> {
    let _ = env;
    BTreeMap::new()
}

/// The container id when running inside a container, from
/// `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub fn container_id() -> Option<String> {
    None
}
