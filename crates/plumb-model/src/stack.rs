//! Stack snapshots: what every process of a job was doing at one moment.
//!
//! A [`StackSnapshot`] holds one [`ProcessSnapshot`] per process (facts
//! from /proc, and the stacks of its threads where a tool could take them,
//! or what was missing and why). [`StackSnapshot::groups`] folds identical
//! thread stacks together, largest group first, the way Allinea DDT's
//! parallel-stack view does for MPI jobs, so the one thread stuck somewhere
//! else stands out. `plumb-stack` takes snapshots; this module only holds
//! and groups them, with no I/O, so the recorder, the store and the
//! collector can carry them inside a [`crate::Run`].

use crate::{Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every process of a job at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSnapshot {
    /// When the snapshot began (UTC).
    pub taken: Timestamp,
    /// Why it was taken, when plumb took it by itself (`no output for
    /// 5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long taking it took, nanoseconds.
    pub took_ns: i64,
    /// One entry per process found, in the order of the tree walk (roots
    /// first).
    pub processes: Vec<ProcessSnapshot>,
}

/// One process: /proc facts always, thread stacks where they could be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessSnapshot {
    /// The host it runs on.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Command line, arguments joined by spaces (the name when empty).
    pub command: String,
    /// Scheduler state in words: `sleeping`, `running`, `disk sleep`,
    /// `stopped`, `zombie`, ... (`/proc/PID/stat`).
    pub state: String,
    /// The kernel function the main thread waits in (`/proc/PID/wchan`),
    /// when it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
    /// Number of threads.
    pub threads: u32,
    /// User CPU time, milliseconds.
    pub cpu_user_ms: u64,
    /// System CPU time, milliseconds.
    pub cpu_system_ms: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors, when /proc/PID/fd could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u32>,
    /// Sockets among them, by kind, when they could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<Sockets>,
    /// Whether it is a Python interpreter.
    #[serde(default)]
    pub python: bool,
    /// The stacks of its threads (Python stacks for Python, native ones
    /// otherwise or when no Python stack could be taken).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<ThreadStack>,
    /// What could not be found out about it, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Missing>,
}

/// A process's sockets by kind, from its descriptors and /proc/PID/net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Sockets {
    /// TCP sockets (v4 and v6).
    pub tcp: u32,
    /// Of those, listening.
    pub tcp_listening: u32,
    /// UDP sockets.
    pub udp: u32,
    /// Unix-domain sockets.
    pub unix: u32,
    /// Any other kind (netlink, raw, ...).
    pub other: u32,
}

/// Which kind of stack a thread's frames are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    /// Python frames (py-spy).
    Python,
    /// Native frames (eu-stack, gdb).
    Native,
}

impl StackKind {
    /// The kind's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StackKind::Python => "python",
            StackKind::Native => "native",
        }
    }
}

/// One thread's stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStack {
    /// The thread's id (the kernel's tid).
    pub tid: u32,
    /// Its name, when the tool gave one (`MainThread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Python or native frames.
    pub kind: StackKind,
    /// What the tool said of the thread (`idle`, `active`, `gil`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Frames, innermost (where it is now) first.
    pub frames: Vec<StackFrame>,
}

/// One frame of a live stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StackFrame {
    /// The function (`??` when unknown).
    pub function: String,
    /// Source file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Local variables (name, repr), with `plumb stack --locals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<(String, String)>,
}

impl StackFrame {
    /// `function (file:line)`, as shown.
    pub fn describe(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{} ({f}:{l})", self.function),
            (Some(f), None) => format!("{} ({f})", self.function),
            _ => self.function.clone(),
        }
    }
}

/// Why something about a process is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingReason {
    /// The tool that would take it is not installed (not on PATH).
    NotInstalled,
    /// Attaching with ptrace was refused (Yama ptrace_scope, EPERM, no
    /// CAP_SYS_PTRACE).
    PtraceDenied,
    /// The process ended before it could be looked at.
    Gone,
    /// The tool took longer than its time limit and was killed.
    TimedOut,
    /// Reading /proc was refused (another user's process).
    PermissionDenied,
    /// The tool failed for another reason (its message is kept).
    Failed,
}

impl MissingReason {
    /// The reason's name as shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingReason::NotInstalled => "not-installed",
            MissingReason::PtraceDenied => "ptrace-denied",
            MissingReason::Gone => "gone",
            MissingReason::TimedOut => "timed-out",
            MissingReason::PermissionDenied => "permission-denied",
            MissingReason::Failed => "failed",
        }
    }
}

/// Something that could not be found out about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// What is missing: `python stacks`, `native stacks`, `open files`.
    pub what: String,
    /// Why, as a kind.
    pub reason: MissingReason,
    /// Why, in words, with what to do about it (`install py-spy: pip
    /// install py-spy`).
    pub detail: String,
}

/// Where one thread of one process is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StackMember {
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

/// Threads whose stacks are identical (by each frame's function, file and
/// line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackGroup {
    /// Python or native.
    pub kind: StackKind,
    /// The shared frames, innermost first (locals of the first member).
    pub frames: Vec<StackFrame>,
    /// Every thread with this stack.
    pub members: Vec<StackMember>,
    /// Whether this group is an odd one out: a single thread whose stack
    /// no other thread shares, in a snapshot where some stack is shared.
    pub odd: bool,
}

impl StackGroup {
    /// How many threads share the stack.
    pub fn count(&self) -> usize {
        self.members.len()
    }
}

type Key = (StackKind, Vec<(String, Option<String>, Option<u32>)>);

impl StackSnapshot {
    /// Identical thread stacks grouped, largest group first; among equal
    /// sizes, by the first member's pid and thread. Single-thread groups
    /// are flagged [`StackGroup::odd`] when any group has more than one
    /// member, since that is the shape of "all workers here, one
    /// elsewhere".
    pub fn groups(&self) -> Vec<StackGroup> {
        let mut by_key: BTreeMap<Key, StackGroup> = BTreeMap::new();
        for p in &self.processes {
            for t in &p.stacks {
                let key: Key = (
                    t.kind,
                    t.frames
                        .iter()
                        .map(|f| (f.function.clone(), f.file.clone(), f.line))
                        .collect(),
                );
                let member = StackMember {
                    host: p.host.clone(),
                    pid: p.pid,
                    tid: t.tid,
                    thread: t.name.clone(),
                };
                by_key
                    .entry(key)
                    .or_insert_with(|| StackGroup {
                        kind: t.kind,
                        frames: t.frames.clone(),
                        members: Vec::new(),
                        odd: false,
                    })
                    .members
                    .push(member);
            }
        }
        let mut groups: Vec<StackGroup> = by_key.into_values().collect();
        for g in &mut groups {
            g.members.sort();
        }
        groups.sort_by(|a, b| {
            b.count()
                .cmp(&a.count())
                .then_with(|| a.members.first().cmp(&b.members.first()))
        });
        let shared = groups.iter().any(|g| g.count() > 1);
        for g in &mut groups {
            g.odd = shared && g.count() == 1;
        }
        groups
    }

    /// How many threads have a stack.
    pub fn threads_with_stacks(&self) -> usize {
        self.processes.iter().map(|p| p.stacks.len()).sum()
    }
}

impl StackSnapshot {
    /// The readable form `plumb stack` and `plumb show` print: the groups,
    /// largest first, odd ones out flagged, each with its members and
    /// frames (and locals where taken); then one line per process with its
    /// /proc facts and what is missing about it.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let groups = self.groups();
        let _ = writeln!(
            s,
            "{} process{}, {} thread stack{} in {} group{}, taken {} in {}",
            self.processes.len(),
            if self.processes.len() == 1 { "" } else { "es" },
            self.threads_with_stacks(),
            if self.threads_with_stacks() == 1 {
                ""
            } else {
                "s"
            },
            groups.len(),
            if groups.len() == 1 { "" } else { "s" },
            self.taken,
            crate::display::duration(self.took_ns),
        );
        for g in &groups {
            let n = g.count();
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| {
                    let thread = match &m.thread {
                        Some(name) => format!("{}/{name}", m.tid),
                        None => m.tid.to_string(),
                    };
                    format!("{}:{} thread {thread}", m.host, m.pid)
                })
                .collect();
            let _ = writeln!(
                s,
                "\n{n} thread{} ({} stack){}: {}",
                if n == 1 { "" } else { "s" },
                g.kind.as_str(),
                if g.odd { "  <-- odd one out" } else { "" },
                members.join(", ")
            );
            for f in &g.frames {
                let _ = writeln!(s, "    {}", f.describe());
                for (name, value) in &f.locals {
                    let _ = writeln!(s, "        {name} = {value}");
                }
            }
            if g.frames.is_empty() {
                let _ = writeln!(
                    s,
                    "    (no frames: the tool listed these threads but could not unwind them; what is missing is under processes)"
                );
            }
        }
        let _ = writeln!(s, "\nprocesses");
        for p in &self.processes {
            let mut facts = vec![p.state.clone()];
            if let Some(w) = &p.wchan {
                facts.push(format!("in {w}"));
            }
            facts.push(format!(
                "{} thread{}",
                p.threads,
                if p.threads == 1 { "" } else { "s" }
            ));
            facts.push(format!(
                "cpu {:.2}s+{:.2}s",
                p.cpu_user_ms as f64 / 1e3,
                p.cpu_system_ms as f64 / 1e3
            ));
            facts.push(format!(
                "rss {}",
                crate::display::size(p.rss_kib.saturating_mul(1024))
            ));
            if let Some(n) = p.open_files {
                facts.push(format!("{n} fds"));
            }
            if let Some(k) = p.sockets {
                let mut parts = Vec::new();
                if k.tcp > 0 {
                    parts.push(format!("tcp {} ({} listening)", k.tcp, k.tcp_listening));
                }
                for (name, n) in [("udp", k.udp), ("unix", k.unix), ("other", k.other)] {
                    if n > 0 {
                        parts.push(format!("{name} {n}"));
                    }
                }
                if !parts.is_empty() {
                    facts.push(format!("sockets {}", parts.join(", ")));
                }
            }
            // A command line may hold newlines (`python3 -c '...'`); one
            // process is one line.
            let command = p.command.replace('\n', "\\n");
            let _ = writeln!(s, "  {}:{}  {}  {command}", p.host, p.pid, facts.join(", "));
            for m in &p.missing {
                let _ = writeln!(
                    s,
                    "      no {} ({}): {}",
                    m.what,
                    m.reason.as_str(),
                    m.detail
                );
            }
        }
        s
    }
}

/// What a fleet-wide stack request looks at, on every node that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StackTarget {
    /// One run, by id or unique prefix of one.
    Run {
        /// The reference as given.
        run: String,
    },
    /// Every running run of this name.
    Name {
        /// The run name.
        name: String,
    },
    /// Every running run of the node(s) asked.
    Node,
    /// One process (and its descendants) on the node asked.
    Pid {
        /// Its id.
        pid: u32,
    },
}

impl StackTarget {
    /// The target in words (`name job`, `run 0193...`), for messages and
    /// the snapshot's reason.
    pub fn describe(&self) -> String {
        match self {
            StackTarget::Run { run } => format!("run {run}"),
            StackTarget::Name { name } => format!("name {name}"),
            StackTarget::Node => "every running run".into(),
            StackTarget::Pid { pid } => format!("pid {pid}"),
        }
    }
}

/// `POST /api/v1/stack`: what `plumb stack` asks the collector for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackQuery {
    /// What to look at.
    pub target: StackTarget,
    /// Only this node (all live nodes when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Add each Python frame's locals.
    #[serde(default)]
    pub locals: bool,
    /// How long to wait for the nodes' answers, milliseconds (for a
    /// profile: after its sampling window).
    pub wait_ms: u64,
    /// A CPU profile instead of a stack snapshot (`POST /api/v1/profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileSpec>,
    /// A preflight spec (TOML) to check on each node instead
    /// (`POST /api/v1/preflight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<String>,
    /// Only nodes with all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A run to start again on the node (`POST /api/v1/rerun` sets it;
    /// never taken from a client's query).
    #[serde(skip)]
    pub rerun: Option<crate::rerun::RerunOrder>,
    /// A fault for the node's agent to carry out (`POST
    /// /api/v1/chaos/inject` sets it; never taken from a client's query).
    #[serde(skip)]
    pub chaos: Option<crate::chaos::ChaosOrder>,
}

/// What a fleet-wide `plumb profile` asks each node to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// How long to sample each process, milliseconds (whole seconds).
    pub duration_ms: u64,
    /// Samples a second per process.
    pub rate_hz: u32,
    /// Also sample waiting threads.
    #[serde(default)]
    pub idle: bool,
    /// Keep Python frames apart by the line running.
    #[serde(default)]
    pub lines: bool,
}

/// One pending request, as an agent receives it from
/// `GET /api/v1/agent/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRequest {
    /// The request's id, quoted in the answer.
    pub id: Uuid,
    /// What to look at.
    pub target: StackTarget,
    /// Add each Python frame's locals.
    #[serde(default)]
    pub locals: bool,
    /// When the collector stops waiting (collector clock; an answer after
    /// it is dropped).
    pub deadline: Timestamp,
    /// Why it was asked (`plumb stack`, `longer than usual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sample a CPU profile instead of taking a snapshot. An agent older
    /// than this field answers with a snapshot, which the collector
    /// reports as "no profile" for that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileSpec>,
    /// Run these preflight checks (a spec, TOML) instead. An agent older
    /// than this field answers with a snapshot or "nothing here", which
    /// the collector reports as "cannot run preflight checks".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<String>,
    /// Start this run again instead (`plumb rerun --on-node`). An agent
    /// older than this field answers with a snapshot or "nothing here",
    /// which the collector reports as "cannot rerun".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun: Option<crate::rerun::RerunOrder>,
    /// Carry out this chaos fault instead (`plumb chaos run`, a target
    /// with `node`). An agent older than this field answers with a
    /// snapshot or "nothing here", which the collector reports as "cannot
    /// carry out chaos faults".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<crate::chaos::ChaosOrder>,
}

/// `POST /api/v1/agent/answers`: one node's answer to a [`StackRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackAnswer {
    /// The request answered.
    pub request: Uuid,
    /// The node answering.
    pub node: String,
    /// The runs whose processes the snapshot covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Uuid>,
    /// The snapshot; `None` when nothing on the node matched the target
    /// ("nothing here"), so the collector need not wait for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<StackSnapshot>,
    /// Why nothing matched, in words, when nothing did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The profile asked for by a profile request (processes whose
    /// `host` is the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::Profile>,
    /// The results of a preflight request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<crate::preflight::HostResults>,
    /// What became of a rerun request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun: Option<crate::rerun::RerunOutcome>,
    /// What became of a chaos order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<crate::chaos::ChaosOutcome>,
}

impl StackAnswer {
    /// `node`'s answer to request `request` that says nothing yet: each
    /// kind of request fills in its own field.
    pub fn empty(request: Uuid, node: &str) -> StackAnswer {
        StackAnswer {
            request,
            node: node.to_string(),
            runs: Vec::new(),
            snapshot: None,
            note: None,
            profile: None,
            preflight: None,
            rerun: None,
            chaos: None,
        }
    }
}

/// A node that did not answer in time, and what the collector knew of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silent {
    /// The node.
    pub node: String,
    /// Why, in words (`no answer within 5s`, `down since ...`).
    pub why: String,
}

/// The answer of `POST /api/v1/stack`: every answering node's processes
/// merged into one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStack {
    /// The merged snapshot (its processes carry their node as `host`).
    pub snapshot: StackSnapshot,
    /// The runs it covers (it is attached to each).
    #[serde(default)]
    pub runs: Vec<Uuid>,
    /// Nodes whose processes are in it.
    #[serde(default)]
    pub answered: Vec<String>,
    /// Nodes that answered with nothing matching.
    #[serde(default)]
    pub nothing_here: Vec<String>,
    /// Nodes asked that did not answer in time.
    #[serde(default)]
    pub not_answered: Vec<Silent>,
}

/// The answer of `POST /api/v1/profile`: every answering node's profile
/// merged into one (each process carries its node as `host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetProfile {
    /// The merged profile.
    pub profile: crate::profile::Profile,
    /// The runs it covers.
    #[serde(default)]
    pub runs: Vec<Uuid>,
    /// Nodes whose processes are in it.
    #[serde(default)]
    pub answered: Vec<String>,
    /// Nodes that answered with nothing matching.
    #[serde(default)]
    pub nothing_here: Vec<String>,
    /// Nodes asked that did not answer in time.
    #[serde(default)]
    pub not_answered: Vec<Silent>,
}

impl StackSnapshot {
    /// One snapshot of several: every process of each, in the order given;
    /// taken when the first was, and as long as the longest took.
    pub fn merge(parts: Vec<StackSnapshot>, reason: Option<String>) -> StackSnapshot {
        let taken = parts
            .iter()
            .map(|p| p.taken)
            .min()
            .unwrap_or_else(Timestamp::now);
        let took_ns = parts.iter().map(|p| p.took_ns).max().unwrap_or(0);
        StackSnapshot {
            taken,
            reason,
            took_ns,
            processes: parts.into_iter().flat_map(|p| p.processes).collect(),
        }
    }
}

/// Which timeout of `plumb run` fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutKind {
    /// `--timeout`: the run lasted longer than its limit.
    Total,
    /// `--silence-timeout`: nothing was printed on either stream for that long.
    Silence,
}

impl TimeoutKind {
    /// The flag that sets it, as shown.
    pub fn flag(self) -> &'static str {
        match self {
            TimeoutKind::Total => "--timeout",
            TimeoutKind::Silence => "--silence-timeout",
        }
    }
}

/// A timeout that fired, recorded on a [`crate::Run`] in state
/// [`crate::RunState::TimedOut`]: which one, the evidence taken before
/// anything was signalled, and how the run was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    /// Which timeout fired.
    pub kind: TimeoutKind,
    /// Its limit, nanoseconds.
    pub limit_ns: i64,
    /// How the limit was chosen, when not given directly (`auto: 3 x p95
    /// 2.0s of 12 succeeded runs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    /// When it fired (UTC).
    pub fired: Timestamp,
    /// The stacks of every process of the run, taken before the warning
    /// signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<StackSnapshot>,
    /// The warning signal sent afterwards (`SIGTERM`).
    pub signal: String,
    /// How long the run had to exit after the warning, nanoseconds.
    pub grace_ns: i64,
    /// How many processes the warning reached.
    #[serde(default)]
    pub signalled: u32,
    /// Whether the grace ran out and what was left was SIGKILLed.
    #[serde(default)]
    pub grace_expired: bool,
    /// How many processes were SIGKILLed.
    #[serde(default)]
    pub killed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: u32, frames: &[(&str, u32)]) -> ThreadStack {
        ThreadStack {
            tid,
            name: None,
            kind: StackKind::Python,
            status: None,
            frames: frames
                .iter()
                .map(|(f, l)| StackFrame {
                    function: f.to_string(),
                    file: Some("job.py".into()),
                    line: Some(*l),
                    locals: Vec::new(),
                })
                .collect(),
        }
    }

    fn process(pid: u32, stacks: Vec<ThreadStack>) -> ProcessSnapshot {
        ProcessSnapshot {
            host: "h".into(),
            pid,
            stacks,
            ..ProcessSnapshot::default()
        }
    }

    #[test]
    fn identical_stacks_group_and_the_odd_one_is_flagged() {
        let busy = [("busy", 3), ("<module>", 9)];
        let snap = StackSnapshot {
            taken: Timestamp::from_nanos(0),
            reason: None,
            took_ns: 0,
            processes: vec![
                process(10, vec![thread(10, &[("wait_lock", 6), ("<module>", 10)])]),
                process(11, vec![thread(11, &busy)]),
                process(12, vec![thread(12, &busy)]),
                process(13, vec![thread(13, &busy)]),
            ],
        };
        let groups = snap.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].count(), 3);
        assert!(!groups[0].odd);
        assert_eq!(
            groups[0].members.iter().map(|m| m.pid).collect::<Vec<_>>(),
            [11, 12, 13]
        );
        assert_eq!(groups[1].members[0].pid, 10);
        assert!(groups[1].odd);
        assert_eq!(groups[1].frames[0].describe(), "wait_lock (job.py:6)");
    }

    #[test]
    fn a_different_line_is_a_different_stack_and_nothing_is_odd_alone() {
        let snap = StackSnapshot {
            taken: Timestamp::from_nanos(0),
            reason: None,
            took_ns: 0,
            processes: vec![
                process(1, vec![thread(1, &[("f", 1)])]),
                process(2, vec![thread(2, &[("f", 2)])]),
            ],
        };
        let groups = snap.groups();
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| !g.odd), "no shared stack, no odd one");
    }

    #[test]
    fn a_snapshot_round_trips_through_json() {
        let mut p = process(7, vec![thread(7, &[("f", 1)])]);
        p.missing.push(Missing {
            what: "python stacks".into(),
            reason: MissingReason::NotInstalled,
            detail: "py-spy is not installed".into(),
        });
        p.sockets = Some(Sockets {
            tcp: 1,
            ..Sockets::default()
        });
        let snap = StackSnapshot {
            taken: Timestamp::from_nanos(5),
            reason: None,
            took_ns: 9,
            processes: vec![p],
        };
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"not-installed\""), "{json}");
        let back: StackSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }
}
