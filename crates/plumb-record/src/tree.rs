//! The processes of a run: the program and every descendant of it.
//!
//! A signal sent to the program alone misses what it started: the Python
//! script behind `sh -c`, a multiprocessing pool, `xargs -P` workers, a
//! worker that made its own process group or session. The recorder is a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so a process whose parent
//! dies is re-parented to the recorder instead of init, and stays findable
//! as one of the recorder's children. The tree is read from /proc: each
//! task's `children` file where the kernel has one, else the parent pid in
//! every `/proc/PID/stat`.
//!
//! A pid read from /proc may belong to another process by the time it is
//! signalled (the process exited, its parent reaped it, the pid was
//! reused). [`signal`] therefore opens a pidfd first and checks the
//! process's start time through it before sending anything: a pidfd names
//! one process, never its successor.
//!
//! The recorder's own helpers (the fingerprint's `python`, `git`, tool
//! commands) are its children too, but not the run's: they are registered
//! in [`HELPERS`] while they live, and never signalled or reaped here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::Mutex;

/// Children of the recorder that are not part of any run (fingerprint
/// helpers). Held across a helper's spawn, so a helper never exists
/// unregistered.
pub(crate) static HELPERS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// One process of a run, named by its pid and start time (clock ticks
/// since boot), which together never name another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: libc::pid_t,
    pub start: u64,
}

/// Makes this process a child subreaper: orphans of its descendants are
/// re-parented to it. Failure (an old kernel) only means orphans go to
/// init and cannot be followed.
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot become a child subreaper; orphans go to init");
    }
}

/// What /proc/PID/stat says: (parent pid, state letter, start time).
fn stat(pid: libc::pid_t) -> Option<(libc::pid_t, u8, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, so the
    // fields are counted from the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let state = *fields.first()?.as_bytes().first()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, state, start))
}

/// The children of `pid` from its tasks' `children` files, or `None`
/// where the kernel does not have them (CONFIG_PROC_CHILDREN).
fn children_files(pid: libc::pid_t) -> Option<Vec<libc::pid_t>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let path = task.path().join("children");
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                any = true;
                out.extend(
                    s.split_whitespace()
                        .filter_map(|p| p.parse::<libc::pid_t>().ok()),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {}
        }
    }
    any.then_some(out)
}

/// Where children are looked up: the kernel's lists, or a map built once
/// from every process's parent pid.
enum Children {
    Files,
    Map(HashMap<libc::pid_t, Vec<libc::pid_t>>),
}

impl Children {
    fn new() -> Children {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        if children_files(me).is_some() {
            return Children::Files;
        }
        let mut map: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if let Some((ppid, _, _)) = stat(pid) {
                    map.entry(ppid).or_default().push(pid);
                }
            }
        }
        Children::Map(map)
    }

    fn of(&self, pid: libc::pid_t) -> Vec<libc::pid_t> {
        match self {
            Children::Files => children_files(pid).unwrap_or_default(),
            Children::Map(m) => m.get(&pid).cloned().unwrap_or_default(),
        }
    }
}

/// The recorder's children that belong to no run being recorded and to no
/// helper: processes re-parented to it, orphans of a run. `exclude` are
/// the programs of the runs being recorded.
fn adopted(children: &Children, exclude: &[libc::pid_t]) -> Vec<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    children
        .of(me)
        .into_iter()
        .filter(|p| !exclude.contains(p) && !helpers.contains(p))
        .collect()
}

/// Every live process of a run: `program` (while not yet reaped) and its
/// descendants, and the processes re-parented to the recorder (orphans of
/// the run) with theirs. Zombies are left out: they have ended.
pub(crate) fn run_processes(program: Option<libc::pid_t>, others: &[libc::pid_t]) -> Vec<Proc> {
    let children = Children::new();
    let mut exclude: Vec<libc::pid_t> = others.to_vec();
    exclude.extend(program);
    let mut queue: VecDeque<libc::pid_t> = program.into_iter().collect();
    queue.extend(adopted(&children, &exclude));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    // Bounded: every pid is visited once, and /proc holds finitely many.
    while let Some(pid) = queue.pop_front() {
        if !seen.insert(pid) {
            continue;
        }
        let Some((_, state, start)) = stat(pid) else {
            continue;
        };
        if state != b'Z' && state != b'X' {
            out.push(Proc { pid, start });
        }
        queue.extend(children.of(pid));
    }
    out
}

/// The zombies among the recorder's adopted children: orphans of a run
/// that have ended and are the recorder's to reap.
pub(crate) fn adopted_zombies(others: &[libc::pid_t]) -> Vec<libc::pid_t> {
    let children = Children::new();
    adopted(&children, others)
        .into_iter()
        .filter(|&p| matches!(stat(p), Some((_, b'Z', _))))
        .collect()
}

/// Whether `pid` is a helper of the recorder's (not a run's process).
pub(crate) fn is_helper(pid: libc::pid_t) -> bool {
    HELPERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&pid)
}

/// Sends `sig` to `p` if it is still the process that was found: through a
/// pidfd checked against the start time, so a reused pid is never
/// signalled. Returns whether the signal was sent.
pub(crate) fn signal(p: &Proc, sig: libc::c_int) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid, 0) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            // A kernel before 5.3: the start time checked just before the
            // signal is the best there is.
            if stat(p.pid).is_some_and(|(_, _, start)| start == p.start) {
                // SAFETY: kill has no memory effects.
                return unsafe { libc::kill(p.pid, sig) } == 0;
            }
        }
        return false;
    }
    let fd = fd as libc::c_int;
    // The pidfd now pins the process: if the start time still matches, it
    // is the one found, and the signal reaches it or nobody.
    let same = stat(p.pid).is_some_and(|(_, _, start)| start == p.start);
    let sent = same
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        && unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        } == 0;
    // SAFETY: closing the pidfd we opened.
    unsafe { libc::close(fd) };
    sent
}

/// Sends `sig` to every process in `procs`; returns how many it reached.
pub(crate) fn signal_all(procs: &[Proc], sig: libc::c_int) -> u32 {
    procs.iter().filter(|p| signal(p, sig)).count() as u32
}

/// A process's command line for the record: its arguments joined by
/// spaces, or its name when it has none (a kernel thread, a zombie).
pub(crate) fn command_line(pid: libc::pid_t) -> String {
    plumb_stack::proc::command_line(pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_child_and_its_child_are_found_and_named() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // Bounded: the background sleep starts within moments (the fork
        // shows first with the shell's command line, then the exec).
        let mut procs = Vec::new();
        for _ in 0..500 {
            procs = run_processes(Some(pid), &[]);
            if procs
                .iter()
                .any(|p| p.pid != pid && command_line(p.pid) == "sleep 30")
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(procs.iter().any(|p| p.pid == pid), "{procs:?}");
        let sleeper = procs.iter().find(|p| p.pid != pid).expect("the sleep");
        assert_eq!(command_line(sleeper.pid), "sleep 30");
        // A stale start time never reaches the process.
        let stale = Proc {
            pid: sleeper.pid,
            start: sleeper.start + 1,
        };
        assert!(!signal(&stale, libc::SIGKILL));
        assert_eq!(signal_all(&procs, libc::SIGKILL), 2);
        let _ = child.wait();
    }
}
