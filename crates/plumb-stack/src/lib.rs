/*!
Stack snapshots of a process tree: what every process of a job is doing now.

[`snapshot`] walks the tree under the given root pids through /proc and
looks at each process in parallel (a few threads): /proc facts always
([`proc`]), the Python stacks of every thread through `py-spy dump --json`
for a Python process, the native stacks of every thread through `eu-stack`
(elfutils) or else `gdb` for the others ([`tools`]). What cannot be taken is
said per process, with the reason ([`plumb_model::stack::Missing`]): a tool
not installed, ptrace refused, the process gone, a tool's time limit. A
snapshot never fails as a whole.

Every tool call has a time limit and its output a size cap. The tools run
as children of the calling process; a caller that reaps children it does
not know (the recorder, a child subreaper) passes a [`Spawner`] that
registers them while they live.

The types live in `plumb_model::stack`, so a snapshot travels inside a run
record; grouping identical stacks is `StackSnapshot::groups`.
*/

mod native;
pub mod proc;
pub mod profile;
mod python;
pub mod tools;

use plumb_model::Timestamp;
use plumb_model::stack::{Missing, MissingReason, ProcessSnapshot, StackSnapshot};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use tools::Spawner;

/// How a snapshot is taken.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ask py-spy for each frame's local variables (`--locals`).
    pub locals: bool,
    /// How long one tool call may take before it is killed.
    pub tool_timeout: Duration,
    /// How much of a tool's output is read; beyond it the output is cut
    /// (and the call counted as failed when it could not be parsed).
    pub output_cap: usize,
    /// Processes looked at at once.
    pub threads: usize,
    /// Where tools are looked up (`PATH`); the process's own when `None`.
    pub path: Option<OsString>,
    /// The host name put on every process; this host's when empty.
    pub host: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            locals: false,
            tool_timeout: Duration::from_secs(10),
            output_cap: 4 << 20,
            threads: 6,
            path: None,
            host: String::new(),
        }
    }
}

/// The host name (`gethostname`), or `localhost` when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Every process under `roots` (the roots themselves and their
/// descendants, each once), roots first, then breadth first. Roots that do
/// not exist are kept, so the snapshot says they are gone.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue: VecDeque<u32> = roots.iter().copied().collect();
    // Bounded: every pid is visited once, and /proc holds finitely many.
    while let Some(pid) = queue.pop_front() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        queue.extend(proc::children(pid));
    }
    out
}

/// A snapshot of every process under `roots`, with the tools spawned
/// directly.
pub fn snapshot(roots: &[u32], opts: &Options) -> StackSnapshot {
    snapshot_with(roots, opts, &tools::Direct)
}

/// [`snapshot`], with the tools spawned through `spawner`.
pub fn snapshot_with(roots: &[u32], opts: &Options, spawner: &dyn Spawner) -> StackSnapshot {
    let taken = Timestamp::now();
    let started = Instant::now();
    let pids = tree(roots);
    let host = if opts.host.is_empty() {
        hostname()
    } else {
        opts.host.clone()
    };
    let found = tools::Found::look_up(opts.path.as_deref());
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<ProcessSnapshot>>> = Mutex::new(vec![None; pids.len()]);
    let workers = opts.threads.clamp(1, 32).min(pids.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(&pid) = pids.get(i) else {
                        return;
                    };
                    let p = process(pid, &host, opts, &found, spawner);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(p);
                }
            });
        }
    });
    let processes = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    StackSnapshot {
        taken,
        reason: None,
        took_ns: i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX),
        processes,
    }
}

/// One process: its /proc facts, then its stacks.
fn process(
    pid: u32,
    host: &str,
    opts: &Options,
    found: &tools::Found,
    spawner: &dyn Spawner,
) -> ProcessSnapshot {
    let mut p = proc::facts(pid);
    p.host = host.to_string();
    if p.missing.iter().any(|m| m.reason == MissingReason::Gone) {
        return p;
    }
    if p.state == "zombie" {
        p.missing.push(Missing {
            what: "stacks".into(),
            reason: MissingReason::Gone,
            detail: "the process has exited (a zombie not yet reaped)".into(),
        });
        return p;
    }
    let mut need_native = true;
    if p.python {
        match python::stacks(pid, opts, found, spawner) {
            Ok(stacks) => {
                p.stacks = stacks;
                need_native = false;
            }
            Err(m) => p.missing.push(m),
        }
    }
    if need_native {
        match native::stacks(pid, opts, found, spawner) {
            Ok(stacks) => p.stacks = stacks,
            Err(m) => p.missing.push(m),
        }
    }
    // A tool that failed because the process ended says so plainly.
    if !proc::exists(pid) {
        for m in &mut p.missing {
            if m.reason == MissingReason::Failed {
                m.reason = MissingReason::Gone;
                m.detail = format!("the process ended while it was looked at ({})", m.detail);
            }
        }
    }
    p
}
