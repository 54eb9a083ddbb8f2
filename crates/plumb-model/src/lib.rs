/*!
Every type that crosses a plumb process boundary.

A [`Run`] is what `plumb run` records about one execution of a program; a
[`Fingerprint`] is the software environment it ran in, stored once and
referenced by its content hash; an [`OutputChunk`] is one read of the child's
stdout or stderr. These types are serialized with serde (JSON in the store and
on the wire) and carry a schema version so that older records stay readable.

This crate does no I/O.

```
use plumb_model::{Run, Timestamp};
let run = Run::new(plumb_model::new_id(), "train".into(), Timestamp::now());
assert_eq!(run.state, plumb_model::RunState::Running);
assert!(run.started.to_rfc3339().ends_with('Z'));
```
*/
#![deny(missing_docs)]

mod time;

pub mod alerts;
pub mod bench;
pub mod chaos;
pub mod chart;
pub mod clock;
pub mod conditions;
pub mod diff;
pub mod display;
pub mod env;
mod eviction;
pub mod exception;
pub mod frame;
pub mod fuzzing;
pub mod health;
pub mod insights;
pub mod integrity;
pub mod node;
pub mod postmortem;
pub mod preflight;
pub mod profile;
pub mod rerun;
pub mod schedule;
mod secret;
pub mod stack;
pub mod telemetry;
pub mod text;
pub mod throttle;
pub mod timeline;

pub use eviction::Eviction;
pub use secret::Secret;

pub use time::{Timestamp, parse_duration, parse_duration_ns, parse_moment};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use uuid::Uuid;

/// The schema version written into every stored [`Run`].
pub const RUN_SCHEMA_VERSION: u32 = 1;

/// A new globally unique, time-ordered id (UUIDv7).
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Which output stream of the child a byte came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
    /// Both, through one channel: the recorder's stdout and stderr were the
    /// same file, pipe or terminal, so the child was given one pipe (or one
    /// pty) for both and their bytes are in the order it wrote them, with
    /// no way to tell which stream each came from.
    Combined,
}

impl Stream {
    /// Every stream, in storage order.
    pub const ALL: [Stream; 3] = [Stream::Stdout, Stream::Stderr, Stream::Combined];

    /// The stream's name as shown to users and stored (`stdout`, `stderr`,
    /// `combined`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Combined => "combined",
        }
    }

    /// The stream's number in storage: 1 for stdout, 2 for stderr, 3 for
    /// combined.
    pub fn as_u8(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
            Stream::Combined => 3,
        }
    }

    /// The inverse of [`Stream::as_u8`].
    pub fn from_u8(n: u8) -> Option<Stream> {
        match n {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            3 => Some(Stream::Combined),
            _ => None,
        }
    }
}

impl std::str::FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stdout" | "out" | "1" => Ok(Stream::Stdout),
            "stderr" | "err" | "2" => Ok(Stream::Stderr),
            "combined" => Ok(Stream::Combined),
            other => Err(format!(
                "unknown stream `{other}`: expected `stdout`, `stderr` or `combined`"
            )),
        }
    }
}

/// One read of a child's output: the bytes exactly as read, when, and a
/// sequence number shared by both streams so the interleaving can be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Which stream.
    pub stream: Stream,
    /// Position of this read among all reads of both streams of the run.
    pub seq: u64,
    /// When the bytes were read (UTC).
    pub time: Timestamp,
    /// The bytes, unchanged.
    pub data: Vec<u8>,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Not started yet: waiting for a throttle slot, or backing off before a
    /// retry ([`Run::waiting`] says which and until when).
    Waiting,
    /// Started and not yet finished (or the recorder died before it could say).
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited with a non-zero code.
    Failed,
    /// Terminated by a signal.
    Killed,
    /// Stopped after an eviction warning (signal or cloud notice).
    Evicted,
    /// Given up while waiting (the recorder was interrupted): the command
    /// never started.
    Cancelled,
    /// Stopped by `plumb run --timeout` or `--silence-timeout` ([`Run::timeout`]
    /// says which, with the stacks taken before it was stopped).
    #[serde(rename = "timed-out")]
    TimedOut,
}

impl RunState {
    /// The state's name as shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Waiting => "waiting",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Killed => "killed",
            RunState::Evicted => "evicted",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed-out",
        }
    }

    /// Every state, in the order of a run's life.
    pub const ALL: [RunState; 8] = [
        RunState::Waiting,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Killed,
        RunState::Evicted,
        RunState::Cancelled,
        RunState::TimedOut,
    ];

    /// True once the run has ended, one way or another.
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Waiting | RunState::Running)
    }

    /// True for every state in which the run did not succeed.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunState::Failed | RunState::Killed | RunState::Evicted | RunState::TimedOut
        )
    }
}

impl std::str::FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "waiting" => RunState::Waiting,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "killed" => RunState::Killed,
            "evicted" => RunState::Evicted,
            "cancelled" => RunState::Cancelled,
            "timed-out" => RunState::TimedOut,
            other => {
                return Err(format!(
                    "unknown run state `{other}`: expected one of {}",
                    RunState::ALL.map(RunState::as_str).join(", ")
                ));
            }
        })
    }
}

/// How the child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitStatus {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that terminated it, when it was killed.
    pub signal: Option<i32>,
    /// The signal's name (`SIGKILL`), when it was killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    /// Whether it dumped core.
    #[serde(default)]
    pub core_dumped: bool,
}

impl ExitStatus {
    /// The code a shell would report: the exit code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// One stack frame of an exception or panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Frame {
    /// Source file, as printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Function or method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// The exception or panic a program died with, parsed from its stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Exception {
    /// `python`, `rust`, `java`, `go`.
    pub language: String,
    /// Exception type (`ValueError`, `java.lang.IllegalStateException`, `panic`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The message.
    pub message: String,
    /// Frames, outermost first (the order the language prints them in is
    /// normalized to this).
    #[serde(default)]
    pub frames: Vec<Frame>,
    /// Exceptions this one was caused by or raised while handling, innermost
    /// cause first as the language prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Exception>,
    /// A stable hash for grouping identical failures: type plus frames, or
    /// type plus the message with numbers and addresses normalized.
    pub fingerprint: String,
}

/// Host identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostInfo {
    /// `gethostname`.
    pub hostname: String,
    /// Fully qualified name where it resolves, else the host name.
    pub fqdn: String,
    /// All non-loopback IP addresses.
    #[serde(default)]
    pub ips: Vec<String>,
}

/// The user a run ran as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserInfo {
    /// Login name, when the uid has one.
    pub name: String,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// A file named on the command line: a configuration, input or output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FileRecord {
    /// The path as given.
    pub path: String,
    /// Size in bytes, when it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the content, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content itself, for small text configuration files, with
    /// secret-looking values redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Why it could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Resource usage of the child and its reaped descendants, from `wait4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Rusage {
    /// User CPU time, microseconds.
    pub user_us: u64,
    /// System CPU time, microseconds.
    pub system_us: u64,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Blocks read.
    pub in_blocks: u64,
    /// Blocks written.
    pub out_blocks: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
}

/// What was captured of the run's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputSummary {
    /// Bytes written to stdout; when [`OutputSummary::combined`], bytes
    /// written to stdout and stderr together.
    pub stdout_bytes: u64,
    /// Bytes written to stderr.
    pub stderr_bytes: u64,
    /// Lines (newline-terminated or final) over both streams.
    pub lines: u64,
    /// Bytes not kept because the per-run cap was reached.
    #[serde(default)]
    pub dropped_bytes: u64,
    /// Whether stdout was a terminal (pty) for the child.
    #[serde(default)]
    pub stdout_tty: bool,
    /// Whether stderr was a terminal (pty) for the child.
    #[serde(default)]
    pub stderr_tty: bool,
    /// Whether stdout and stderr went to the same file, pipe or terminal,
    /// and so were captured through one channel as [`Stream::Combined`]:
    /// their bytes are counted in `stdout_bytes` and `stderr_bytes` is 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub combined: bool,
    /// Where output was dropped over the per-run cap, once the run wrote
    /// more than half of it; see [`OutputGap`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<OutputGap>,
}

/// The one place in a run's output where bytes over the cap were dropped.
///
/// A run keeps the first half of its output cap (the head: how it started)
/// and the newest bytes up to the rest of the cap (the tail: how it ended).
/// Reads after the head have sequence numbers above `after_seq`, so a
/// reader replaying the output in order knows where the gap is and marks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputGap {
    /// Sequence number of the head's last read.
    pub after_seq: u64,
    /// The cap in force: raw bytes kept at most, head and tail together.
    pub cap: u64,
    /// Bytes dropped at the gap (also counted in
    /// [`OutputSummary::dropped_bytes`]); 0 while nothing was dropped.
    pub dropped: u64,
}

/// Everything recorded about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Globally unique, time-ordered id (UUIDv7), assigned where the run started.
    pub id: Uuid,
    /// Schema version of this record.
    pub schema: u32,
    /// Name (default: the program's base name).
    pub name: String,
    /// User-given tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Where it is in its life.
    pub state: RunState,
    /// When it started (UTC).
    pub started: Timestamp,
    /// When it ended (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    /// The exception or panic it died with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Exception>,
    /// Uncaught exceptions with every frame's locals, from the Python hook
    /// of `plumb run` (one per process and thread that died of one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postmortem: Vec<postmortem::PostMortem>,
    /// The command line, exactly (non-UTF-8 bytes are replaced).
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The child's pid.
    #[serde(default)]
    pub pid: u32,
    /// What stdin was: `tty`, `pipe`, `file`, `null`, `socket`, `closed`, `other`.
    #[serde(default)]
    pub stdin: String,
    /// Host identity.
    pub host: HostInfo,
    /// User identity.
    pub user: UserInfo,
    /// The full environment, secrets replaced by [`redacted_marker`] values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Configuration files (`--config`).
    #[serde(default)]
    pub config_files: Vec<FileRecord>,
    /// Input files (`--input`), hashed at start.
    #[serde(default)]
    pub inputs: Vec<FileRecord>,
    /// Output files (`--output`), hashed after the run.
    #[serde(default)]
    pub outputs: Vec<FileRecord>,
    /// Content hash of the software [`Fingerprint`], stored separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Job-scheduler ids found in the environment (`slurm.job_id`, ...).
    #[serde(default)]
    pub scheduler: BTreeMap<String, String>,
    /// Container or cgroup id when inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Resource usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rusage: Option<Rusage>,
    /// What was captured of the output.
    #[serde(default)]
    pub output: OutputSummary,
    /// Attempt number, 1 for the first.
    #[serde(default = "one")]
    pub attempt: u32,
    /// The first attempt's id, for retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt: Option<Uuid>,
    /// How many attempts the retry policy allowed in all, when `plumb run
    /// --retries` was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The eviction warning and its timings, when one came during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction: Option<Eviction>,
    /// The timeout that stopped the run (state [`RunState::TimedOut`]),
    /// with the stack snapshot taken before it was signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<stack::Timeout>,
    /// Stack snapshots plumb took by itself while the run ran
    /// (`plumb run --snapshot-on-silence`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<stack::StackSnapshot>,
    /// What the run waited for before it started (a throttle slot, or a
    /// retry's backoff); kept after it started, with the wait's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Why the command could not be started at all (not found, not
    /// executable); such a run is failed with exit code 127 or 126, and
    /// started and ended at the same moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_error: Option<String>,
    /// Processes the command left running when it ended (daemons,
    /// forgotten workers), found among plumb's descendants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<Orphan>,
    /// Whether those orphans were killed (`plumb run --kill-orphans`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphans_killed: bool,
    /// What the kernel's OOM killer did to the run: its own process or a
    /// process of its tree killed for want of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom: Option<OomKill>,
    /// What the node went through during the run (pressure, throttling,
    /// I/O errors, OOM kills), from its kernel counters read by `plumb run`
    /// at the start and at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<conditions::NodeConditions>,
    /// Interrupts (SIGINT, SIGTERM without eviction handling) sent to the
    /// recorder by a process and passed on to every process of the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<ForwardedSignal>,
    /// Problems the recorder met that did not stop the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Where the recorder learned of an OOM kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OomSource {
    /// The cgroup v1 memory controller (`memory.oom_control`).
    CgroupV1,
    /// The cgroup v2 memory controller (`memory.events`).
    CgroupV2,
    /// The kernel log (`/dev/kmsg`), with `/proc/vmstat`'s `oom_kill`.
    KernelLog,
}

impl OomSource {
    /// How `plumb show` and the run page say where it came from.
    pub fn describe(self) -> &'static str {
        match self {
            OomSource::CgroupV1 => "the v1 memory cgroup",
            OomSource::CgroupV2 => "the v2 memory cgroup",
            OomSource::KernelLog => "the kernel log",
        }
    }
}

/// A kill by the kernel's OOM killer during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    /// Whether the run's own process (the one `plumb run` started) was
    /// killed; `false` when only a process of its tree was (a worker).
    pub root: bool,
    /// The killed processes' ids, when the kernel log named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// The killed process's name (`comm`), when the kernel log named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How many OOM kills the cgroup (or, without one, the kernel log)
    /// counted during the run.
    pub kills: u64,
    /// The memory limit of the run's cgroup in bytes, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The cgroup's peak memory use in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<u64>,
    /// The cgroup's path inside its hierarchy (`/jobs/train`), when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Where this was learned.
    pub source: OomSource,
}

/// An interrupt passed on to every process of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedSignal {
    /// The signal's name (`SIGINT`).
    pub signal: String,
    /// When it was passed on (UTC).
    pub time: Timestamp,
    /// How many processes it reached: the program and its descendants.
    pub processes: u32,
}

/// A process the command left behind when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// Its process id when the run ended.
    pub pid: u32,
    /// Its command line (`/proc/PID/cmdline`, arguments joined by spaces),
    /// or its name when the command line is empty.
    pub command: String,
}

/// Why a run is (or was) in state [`RunState::Waiting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    /// Backing off before a retry (`plumb run --retries`).
    Backoff,
    /// Waiting for a free slot of a throttle (`plumb run --throttle`).
    Throttle,
    /// A periodic start skipped because the job's previous run was still
    /// running (`plumb every`): recorded as cancelled, never started, so
    /// two runs of a job never overlap.
    Overlap,
}

/// A run's wait before it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// What it waits for.
    pub kind: WaitKind,
    /// In words: which throttle and how full it is, or which attempt failed
    /// and how.
    pub reason: String,
    /// When the wait began (UTC).
    pub since: Timestamp,
    /// When the wait is planned to end: a backoff's end; unknown for a
    /// throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// When it actually ended (the run started, or was cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
}

impl Waiting {
    /// Nanoseconds waited, up to `now` while still waiting.
    pub fn waited_ns(&self, now: Timestamp) -> i64 {
        self.ended.unwrap_or(now).as_nanos() - self.since.as_nanos()
    }
}

fn one() -> u32 {
    1
}

impl Run {
    /// A new run in state [`RunState::Running`] with everything else empty.
    pub fn new(id: Uuid, name: String, started: Timestamp) -> Run {
        Run {
            id,
            schema: RUN_SCHEMA_VERSION,
            name,
            tags: BTreeMap::new(),
            state: RunState::Running,
            started,
            ended: None,
            exit: None,
            exception: None,
            postmortem: Vec::new(),
            argv: Vec::new(),
            cwd: String::new(),
            pid: 0,
            stdin: String::new(),
            host: HostInfo::default(),
            user: UserInfo::default(),
            env: BTreeMap::new(),
            config_files: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            fingerprint: None,
            scheduler: BTreeMap::new(),
            container: None,
            rusage: None,
            output: OutputSummary::default(),
            attempt: 1,
            first_attempt: None,
            max_attempts: None,
            eviction: None,
            timeout: None,
            snapshots: Vec::new(),
            waiting: None,
            launch_error: None,
            orphans: Vec::new(),
            orphans_killed: false,
            oom: None,
            node: None,
            forwarded: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Duration in nanoseconds, when it has ended.
    pub fn duration_ns(&self) -> Option<i64> {
        self.ended.map(|e| e.as_nanos() - self.started.as_nanos())
    }
}

/// The prefix of every redacted environment or configuration value.
pub const REDACTED_PREFIX: &str = "[redacted:";

/// The marker that replaces a secret value: `[redacted:<hash>]`, where the
/// hash is a short keyed hash so that equal secrets compare equal.
pub fn redacted_marker(short_hash: &str) -> String {
    format!("{REDACTED_PREFIX}{short_hash}]")
}

/// Whether a stored value is a redaction marker.
pub fn is_redacted(value: &str) -> bool {
    value.starts_with(REDACTED_PREFIX) && value.ends_with(']')
}

/// The operating system, from `/etc/os-release` and `uname`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OsInfo {
    /// `ID` (`debian`).
    pub id: String,
    /// `VERSION_ID` (`12`).
    pub version: String,
    /// `PRETTY_NAME`.
    pub pretty: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Machine architecture (`x86_64`).
    pub arch: String,
}

/// A shared library the program had mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Library {
    /// Path as mapped.
    pub path: String,
    /// Version where known (from the soname or file name, or the package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A Python interpreter and what is installed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PythonEnv {
    /// `sys.executable`.
    pub executable: String,
    /// `platform.python_version()`.
    pub version: String,
    /// `sys.prefix` (tells a virtualenv apart).
    #[serde(default)]
    pub prefix: String,
    /// Every installed distribution and its version.
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

/// The git state of the repository containing the working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GitState {
    /// The repository's top directory.
    pub root: String,
    /// `HEAD` commit.
    pub commit: String,
    /// Branch name, when not detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// URL of `origin` (credentials removed), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Whether tracked files differ from `HEAD`.
    pub dirty: bool,
    /// SHA-256 of `git diff HEAD` when dirty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_sha256: Option<String>,
}

/// The software environment a run ran in. Content-addressed: its id is the
/// SHA-256 of its canonical JSON, see [`Fingerprint::content_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    /// Operating system and kernel.
    pub os: OsInfo,
    /// CPU model name.
    #[serde(default)]
    pub cpu_model: String,
    /// Logical CPUs.
    #[serde(default)]
    pub cpu_count: u32,
    /// Total memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// C library and version (`glibc 2.36`).
    #[serde(default)]
    pub libc: String,
    /// The program that was executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<FileRecord>,
    /// Shared libraries it had mapped while running.
    #[serde(default)]
    pub libraries: Vec<Library>,
    /// The Python interpreter and its packages, for Python programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonEnv>,
    /// Versions of extra tools listed in plumb.toml (`gcc` -> first line of
    /// `gcc --version`).
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// Git state of the working directory's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitState>,
    /// Environment variables a node's agent was told to report
    /// (`plumb agent --env-var NAME`): name -> value, [`VARIABLE_UNSET`]
    /// when unset, [`VARIABLE_REDACTED`] when secret-looking. Runs' own
    /// fingerprints leave it empty (their whole environment is on the run).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A reported variable that is not set on the node.
pub const VARIABLE_UNSET: &str = "(unset)";
/// A reported variable whose name or value looks secret: only that it is
/// set leaves the node.
pub const VARIABLE_REDACTED: &str = "(set, redacted)";

impl Fingerprint {
    /// SHA-256 (hex) of the canonical JSON encoding. Maps are ordered
    /// (`BTreeMap`) and libraries sorted before hashing, so equal
    /// environments hash equal.
    pub fn content_hash(&self) -> String {
        let mut canonical = self.clone();
        canonical.libraries.sort();
        canonical.libraries.dedup();
        let json = serde_json::to_vec(&canonical).expect("fingerprint serializes");
        sha256_hex(&json)
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// One line of recorded output, as returned by searches and `plumb logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLine {
    /// The run it belongs to.
    pub run_id: Uuid,
    /// The run's host name.
    pub host: String,
    /// Which stream.
    pub stream: Stream,
    /// When it was read.
    pub time: Timestamp,
    /// The line without its newline, non-UTF-8 bytes replaced.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_code_follows_the_shell_convention() {
        let killed = ExitStatus {
            code: None,
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(killed.shell_code(), 137);
        let exited = ExitStatus {
            code: Some(3),
            ..Default::default()
        };
        assert_eq!(exited.shell_code(), 3);
    }

    #[test]
    fn run_round_trips_through_json() {
        let mut run = Run::new(
            new_id(),
            "x".into(),
            Timestamp::from_nanos(1_700_000_000_123_456_789),
        );
        run.env.insert("API_TOKEN".into(), redacted_marker("ab12"));
        let json = serde_json::to_string(&run).unwrap();
        let back: Run = serde_json::from_str(&json).unwrap();
        assert_eq!(back, run);
        assert!(is_redacted(&back.env["API_TOKEN"]));
    }

    #[test]
    fn fingerprint_hash_ignores_library_order() {
        let lib = |p: &str| Library {
            path: p.into(),
            version: None,
        };
        let a = Fingerprint {
            libraries: vec![lib("/a.so"), lib("/b.so")],
            ..Default::default()
        };
        let b = Fingerprint {
            libraries: vec![lib("/b.so"), lib("/a.so")],
            ..Default::default()
        };
        assert_eq!(a.content_hash(), b.content_hash());
        let c = Fingerprint {
            libraries: vec![lib("/c.so")],
            ..Default::default()
        };
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
