//! Forwarding signals from the recorder to its child, and terminal resizes to
//! the child's pseudo-terminals.
//!
//! A signal handler only writes the signal number into a process-wide
//! self-pipe (the one thing that is async-signal-safe and cheap); a
//! dispatcher thread reads it and does the work for every run being recorded
//! in this process. Handlers are installed while at least one
//! [`Forwarder`] lives and the previous dispositions are restored after the
//! last one is dropped, so the library can be called repeatedly and from
//! several threads.
//!
//! Only signals sent by a process (`si_code` `SI_USER`, `SI_QUEUE`,
//! `SI_TKILL`) are forwarded. Terminal-generated ones (Ctrl-C, Ctrl-\, a
//! hang-up; `SI_KERNEL`) already reached the child, which stays in the
//! recorder's process group, and must not arrive twice.
//!
//! SIGINT and SIGTERM, which ask the job to stop, go to every process of the
//! run ([`crate::tree`]: the program, its descendants, orphans re-parented
//! to the recorder), whatever groups or sessions they made; the other
//! signals go to the program alone, as they would run directly.
//!
//! With eviction handling on (see [`crate::evict`]), SIGTERM is not
//! forwarded as is: it becomes the configured warning signal, sent to every
//! process of the run, and a grace timer SIGKILLs every process still alive
//! when the grace runs out. The run ends when its last process has ended.
//! Cloud notices take the same path through a [`Warner`].
//!
//! Lock order: `REGISTRY`, then a target's `state`, then the leaf locks
//! `PROGRAMS` and [`tree::HELPERS`]. Reaping anything (the program or an
//! adopted orphan) happens under the target's `state`, as does signalling,
//! so no pid is signalled after this process reaped it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use plumb_model::{Eviction, ForwardedSignal, Orphan, Timestamp};

use crate::tree;

/// The signals forwarded to the child.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Write end of the self-pipe, read by the signal handler.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

/// The process-wide registry of runs being recorded.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    saved: Vec::new(),
    targets: Vec::new(),
});

/// The programs of the runs being recorded in this process (not reaped
/// yet): children of the recorder that are no run's orphans.
static PROGRAMS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

fn programs() -> Vec<libc::pid_t> {
    lock(&PROGRAMS).clone()
}

/// How long the processes that got an interrupt have, after the program
/// ended, to end too before those still alive are reported as orphans.
const AFTER_INTERRUPT: Duration = Duration::from_secs(2);

/// How long after the grace the recorder waits for SIGKILLed processes
/// (one in uninterruptible sleep takes its time) before it stops waiting.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Set once the self-pipe and its dispatcher thread exist.
static DISPATCHER: OnceLock<io::Result<()>> = OnceLock::new();

struct Registry {
    /// Dispositions to restore once no run is being recorded.
    saved: Vec<(libc::c_int, libc::sigaction)>,
    targets: Vec<Arc<Target>>,
}

/// One run being recorded.
struct Target {
    state: Mutex<TargetState>,
    /// Duplicates of the child's pty masters, owned here so that a resize
    /// never lands on a descriptor number that has been closed and reused.
    winch_to: Vec<OwnedFd>,
    /// The recorder's own terminal whose size the ptys follow.
    winch_from: Option<RawFd>,
    /// How eviction warnings are handled, when they are.
    evict: Option<EvictPolicy>,
    /// Notified when the run's last process has ended (`done`), so that a
    /// grace timer stops waiting at once.
    reaped_cv: Condvar,
}

/// The part of [`crate::evict::EvictOptions`] the signal path needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvictPolicy {
    pub signal: libc::c_int,
    pub grace: Duration,
    pub on_sigterm: bool,
}

struct TargetState {
    pid: Option<libc::pid_t>,
    reaped: bool,
    /// The program has been reaped and, where the run was being stopped
    /// (an eviction, an interrupt), every other process of it has ended.
    done: bool,
    /// Interrupts passed on to every process of the run.
    forwarded: Vec<ForwardedSignal>,
    /// Signals that arrived before the child existed.
    pending: Vec<libc::c_int>,
    /// The eviction in progress, from the first warning on.
    eviction: Option<Eviction>,
}

/// While alive, signals sent to this process are forwarded to one child and
/// do not kill the recorder.
pub(crate) struct Forwarder {
    target: Arc<Target>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; we restore it so the interrupted code
    // never sees our write's errno.
    let errno = unsafe { *libc::__errno_location() };
    let from_process = if info.is_null() {
        true
    } else {
        // SAFETY: the kernel hands SA_SIGINFO handlers a valid siginfo.
        let code = unsafe { (*info).si_code };
        matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL)
    };
    if sig == libc::SIGWINCH || from_process {
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            // SAFETY: write is async-signal-safe; a full pipe (EAGAIN) only
            // loses a signal that a flood of identical ones already carries.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
    }
    unsafe { *libc::__errno_location() = errno };
}

fn start_dispatcher() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Only the write end is non-blocking: the handler must never block.
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    std::thread::Builder::new()
        .name("plumb-signals".into())
        .spawn(move || dispatch(read))?;
    // The write end lives as long as the process: the handler may run at any
    // time, so it must never see a closed or reused descriptor.
    PIPE_W.store(
        std::os::fd::IntoRawFd::into_raw_fd(write),
        Ordering::Relaxed,
    );
    Ok(())
}

fn dispatch(read: OwnedFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!(error = %io::Error::last_os_error(), "signal pipe failed; signals are no longer forwarded");
            return;
        }
        if n == 0 {
            return;
        }
        let registry = lock(&REGISTRY);
        for &byte in &buf[..n as usize] {
            let sig = libc::c_int::from(byte);
            for target in &registry.targets {
                if sig == libc::SIGWINCH {
                    if let Some(from) = target.winch_from {
                        for to in &target.winch_to {
                            crate::pty::copy_window_size(from, to.as_raw_fd());
                        }
                    }
                } else if sig == libc::SIGTERM && target.evict.is_some_and(|e| e.on_sigterm) {
                    warn(target, "SIGTERM", None);
                } else {
                    let mut state = lock(&target.state);
                    match state.pid {
                        _ if state.reaped => {}
                        Some(pid) if sig == libc::SIGINT || sig == libc::SIGTERM => {
                            let procs = tree::run_processes(Some(pid), &others(pid));
                            let processes = tree::signal_all(&procs, sig);
                            state.forwarded.push(ForwardedSignal {
                                signal: signal_name(sig).unwrap_or_else(|| sig.to_string()),
                                time: Timestamp::now(),
                                processes,
                            });
                        }
                        // SAFETY: the pid is our unreaped child (see `reap`),
                        // so it cannot have been reused.
                        Some(pid) => unsafe {
                            libc::kill(pid, sig);
                        },
                        None => state.pending.push(sig),
                    }
                }
            }
        }
    }
}

/// Starts an eviction: sends the warning signal to the child (or keeps it
/// for when the child exists) and a grace timer that SIGKILLs it. Later
/// warnings change nothing: the first one set the deadline.
fn warn(target: &Arc<Target>, source: &str, detail: Option<String>) {
    let Some(policy) = target.evict else {
        return;
    };
    let mut state = lock(&target.state);
    if state.reaped {
        return;
    }
    if let Some(e) = &state.eviction {
        tracing::info!(source, first = %e.source, "eviction warning ignored: an eviction is already under way");
        return;
    }
    let signal = signal_name(policy.signal).unwrap_or_else(|| policy.signal.to_string());
    // A timeout (`--timeout`, `--silence-timeout`) takes this path too.
    let what = if source.starts_with("--") {
        "timeout: sending the warning signal to every process of the run"
    } else {
        "eviction warning: passing it on to the program"
    };
    tracing::warn!(
        source,
        signal = %signal,
        grace_s = policy.grace.as_secs_f64(),
        "{what}"
    );
    state.eviction = Some(Eviction {
        warned: Timestamp::now(),
        source: source.to_string(),
        detail,
        signal,
        grace_ns: i64::try_from(policy.grace.as_nanos()).unwrap_or(i64::MAX),
        ended: None,
        grace_expired: false,
        killed_group: false,
        signalled: 0,
        killed: 0,
    });
    if let Some(pid) = state.pid {
        // The program is unreaped (checked above, under the lock `reap`
        // takes before reaping); its descendants are checked by pidfd.
        let procs = tree::run_processes(Some(pid), &others(pid));
        let n = tree::signal_all(&procs, policy.signal);
        if let Some(e) = &mut state.eviction {
            e.signalled = n;
        }
    }
    drop(state);
    let target = Arc::clone(target);
    let spawned = std::thread::Builder::new()
        .name("plumb-grace".into())
        .spawn(move || grace_timer(&target, policy.grace));
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the grace timer; the program will not be killed when the grace runs out");
    }
}

/// The other runs' programs, which are no orphans of this one.
pub(crate) fn others(pid: libc::pid_t) -> Vec<libc::pid_t> {
    programs().into_iter().filter(|&p| p != pid).collect()
}

/// Waits until the run's last process has ended or the grace runs out; in
/// the second case SIGKILLs every process of the run still alive: the
/// program, its process group when it made its own, its descendants
/// whatever group or session they made, and orphans re-parented to the
/// recorder.
fn grace_timer(target: &Target, grace: Duration) {
    let deadline = Instant::now() + grace;
    let mut state = lock(&target.state);
    loop {
        if state.done {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state = target
            .reaped_cv
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let Some(pid) = state.pid else {
        return;
    };
    let program = (!state.reaped).then_some(pid);
    let procs = tree::run_processes(program, &others(pid));
    let mut group = false;
    if !state.reaped {
        // SAFETY: plain system calls on our unreaped child, under the lock.
        let (pgid, own) = unsafe { (libc::getpgid(pid), libc::getpgrp()) };
        group = pgid == pid && pgid != own;
        unsafe {
            if group {
                libc::killpg(pgid, libc::SIGKILL);
            }
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let killed = tree::signal_all(&procs, libc::SIGKILL);
    tracing::warn!(
        pid,
        group,
        killed,
        "grace period over: killing every process of the run"
    );
    if let Some(e) = &mut state.eviction {
        e.grace_expired = true;
        e.killed_group = group;
        e.killed = killed;
    }
}

/// Passes eviction warnings from elsewhere (a cloud notice) to one run.
#[derive(Clone)]
pub(crate) struct Warner {
    target: Arc<Target>,
}

impl std::fmt::Debug for Warner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warner").finish_non_exhaustive()
    }
}

impl Warner {
    /// Starts the eviction, exactly as SIGTERM does with eviction handling.
    pub(crate) fn warn(&self, source: &str, detail: Option<String>) {
        warn(&self.target, source, detail);
    }

    /// Whether the run is over (its program reaped, and its other
    /// processes ended where it was being stopped): nothing left to warn.
    pub(crate) fn done(&self) -> bool {
        lock(&self.target.state).done
    }

    /// Whether a stop (an eviction, a timeout) has already begun.
    pub(crate) fn under_way(&self) -> bool {
        lock(&self.target.state).eviction.is_some()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop signal forwarding.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Forwarder {
    /// Installs the handlers (if no other run is being recorded) and
    /// registers a run whose child does not exist yet. `winch_to` are the
    /// pty masters that follow the size of the terminal `winch_from`.
    pub(crate) fn install(
        winch_to: Vec<OwnedFd>,
        winch_from: Option<RawFd>,
        evict: Option<EvictPolicy>,
    ) -> io::Result<Self> {
        if let Err(e) = DISPATCHER.get_or_init(start_dispatcher) {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        let target = Arc::new(Target {
            state: Mutex::new(TargetState {
                pid: None,
                reaped: false,
                done: false,
                forwarded: Vec::new(),
                pending: Vec::new(),
                eviction: None,
            }),
            winch_to,
            winch_from,
            evict,
            reaped_cv: Condvar::new(),
        });
        let mut registry = lock(&REGISTRY);
        if registry.targets.is_empty() {
            let mut watched = FORWARDED.to_vec();
            watched.push(libc::SIGWINCH);
            for sig in watched {
                // SAFETY: a zeroed sigaction with an empty mask is valid; we
                // fill in the handler and flags.
                let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                // SA_RESTART keeps the blocking calls of other threads
                // (read, wait) from failing with EINTR.
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                unsafe { libc::sigemptyset(&mut action.sa_mask) };
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                // SAFETY: both structs are valid for the call.
                if unsafe { libc::sigaction(sig, &action, &mut old) } != 0 {
                    let error = io::Error::last_os_error();
                    restore(&mut registry.saved);
                    return Err(error);
                }
                registry.saved.push((sig, old));
            }
        }
        registry.targets.push(Arc::clone(&target));
        Ok(Forwarder { target })
    }

    /// The child exists: forward whatever arrived before it did.
    pub(crate) fn set_child(&self, pid: u32) {
        let mut state = lock(&self.target.state);
        let pid = pid as libc::pid_t;
        state.pid = Some(pid);
        lock(&PROGRAMS).push(pid);
        for sig in std::mem::take(&mut state.pending) {
            // SAFETY: pid is our child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
        }
        // A warning that came before the child existed is passed on now.
        if let (Some(_), Some(policy)) = (&state.eviction, self.target.evict) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, policy.signal) };
            if let Some(e) = &mut state.eviction {
                e.signalled = 1;
            }
        }
    }

    /// A handle that starts an eviction of this run from another thread.
    pub(crate) fn warner(&self) -> Warner {
        Warner {
            target: Arc::clone(&self.target),
        }
    }

    /// The eviction that happened during this run, if any; complete once
    /// the child has been reaped.
    pub(crate) fn eviction(&self) -> Option<Eviction> {
        lock(&self.target.state).eviction.clone()
    }

    /// The interrupts passed on to every process of the run.
    pub(crate) fn forwarded(&self) -> Vec<ForwardedSignal> {
        lock(&self.target.state).forwarded.clone()
    }

    /// After [`Forwarder::reap`]: the processes of the run still alive
    /// (orphans re-parented to the recorder, and theirs). With `kill`, each
    /// is SIGKILLed and waited for (a bounded while). Returns them and
    /// whether they were killed and are gone.
    pub(crate) fn orphans(&self, kill: bool) -> (Vec<Orphan>, bool) {
        let state = lock(&self.target.state);
        reap_adopted();
        let procs = tree::run_processes(None, &programs());
        let orphans: Vec<Orphan> = procs
            .iter()
            .map(|p| Orphan {
                pid: p.pid as u32,
                command: tree::command_line(p.pid),
            })
            .collect();
        if !kill || procs.is_empty() {
            return (orphans, false);
        }
        tree::signal_all(&procs, libc::SIGKILL);
        drop(state);
        let gone = self.wait_for_tree(Instant::now() + AFTER_KILL);
        (orphans, gone)
    }

    /// Waits (reaping adopted orphans as they end) until no process of the
    /// run is left or `until`. Returns whether none is left.
    fn wait_for_tree(&self, until: Instant) -> bool {
        // Bounded by `until`; each round sleeps a little.
        loop {
            {
                let _state = lock(&self.target.state);
                reap_adopted();
            }
            if tree::run_processes(None, &programs()).is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the child to exit, then reaps it with `wait4` while holding
    /// the lock the dispatcher takes before forwarding, so a signal is never
    /// sent to a pid that has been reaped and possibly reused. Orphans of
    /// the run that end meanwhile (re-parented to the recorder, a child
    /// subreaper) are reaped too, never the program's status. When the run
    /// was being stopped (an eviction, an interrupt), it then waits for
    /// the run's other processes to end as well: until the grace timer has
    /// killed them, or for [`AFTER_INTERRUPT`].
    pub(crate) fn reap(&self, pid: u32) -> io::Result<(libc::c_int, libc::rusage)> {
        let pid = pid as libc::pid_t;
        // First wait without reaping: the zombie keeps its pid reserved while
        // signals may still be forwarded to it.
        loop {
            // SAFETY: info is valid for the call.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc =
                unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc != 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let mut state = lock(&self.target.state);
                state.reaped = true;
                state.done = true;
                drop(state);
                self.target.reaped_cv.notify_all();
                lock(&PROGRAMS).retain(|&p| p != pid);
                return Err(error);
            }
            // SAFETY: waitid filled a SIGCHLD siginfo.
            let ended = unsafe { info.si_pid() };
            if ended == pid {
                break;
            }
            if tree::is_helper(ended) || programs().contains(&ended) {
                // Another thread waits for that one; let it.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            // An orphan re-parented to us: nobody else will reap it.
            let _state = lock(&self.target.state);
            // SAFETY: reaps one zombie child by pid, under the lock.
            unsafe { libc::waitpid(ended, std::ptr::null_mut(), libc::WNOHANG) };
        }
        let mut state = lock(&self.target.state);
        state.reaped = true;
        let result = loop {
            let mut status = 0;
            // SAFETY: status and usage are valid for the call.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if rc == pid {
                break Ok((status, usage));
            }
            let error = io::Error::last_os_error();
            if rc < 0 && error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(error);
        };
        lock(&PROGRAMS).retain(|&p| p != pid);
        let until = match (&state.eviction, self.target.evict) {
            (Some(e), Some(policy)) => {
                let warned_ago = Duration::from_nanos(
                    (Timestamp::now().as_nanos() - e.warned.as_nanos()).max(0) as u64,
                );
                Some(Instant::now() + policy.grace.saturating_sub(warned_ago) + AFTER_KILL)
            }
            _ if !state.forwarded.is_empty() => Some(Instant::now() + AFTER_INTERRUPT),
            _ => None,
        };
        drop(state);
        if let Some(until) = until {
            self.wait_for_tree(until);
        }
        let mut state = lock(&self.target.state);
        state.done = true;
        if let Some(e) = &mut state.eviction {
            e.ended = Some(Timestamp::now());
        }
        drop(state);
        self.target.reaped_cv.notify_all();
        result
    }
}

/// Reaps the recorder's adopted children that have ended (orphans of a
/// run); the caller holds a target's `state` lock.
fn reap_adopted() {
    for p in tree::adopted_zombies(&programs()) {
        // SAFETY: reaps one zombie child by pid.
        unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let mut registry = lock(&REGISTRY);
        registry.targets.retain(|t| !Arc::ptr_eq(t, &self.target));
        if registry.targets.is_empty() {
            restore(&mut registry.saved);
        }
    }
}

fn restore(saved: &mut Vec<(libc::c_int, libc::sigaction)>) {
    for (sig, old) in saved.drain(..) {
        // SAFETY: `old` is what sigaction returned for this signal.
        unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    }
}
/// `SIGKILL` for 9, and so on: the standard names from
/// [`plumb_model::display::signal_known`], and `SIGRTMIN+n` for real-time
/// signals by this platform's numbering.
pub fn signal_name(signal: i32) -> Option<String> {
    if let Some(name) = plumb_model::display::signal_known(signal) {
        return Some(name.to_string());
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    (min..=max)
        .contains(&signal)
        .then(|| format!("SIGRTMIN+{}", signal - min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_follow_the_platform() {
        // The one table in plumb-model must agree with this platform's
        // numbering for every signal it names.
        let platform = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGSTKFLT, "SIGSTKFLT"),
            (libc::SIGCHLD, "SIGCHLD"),
            (libc::SIGCONT, "SIGCONT"),
            (libc::SIGSTOP, "SIGSTOP"),
            (libc::SIGTSTP, "SIGTSTP"),
            (libc::SIGTTIN, "SIGTTIN"),
            (libc::SIGTTOU, "SIGTTOU"),
            (libc::SIGURG, "SIGURG"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGXFSZ, "SIGXFSZ"),
            (libc::SIGVTALRM, "SIGVTALRM"),
            (libc::SIGPROF, "SIGPROF"),
            (libc::SIGWINCH, "SIGWINCH"),
            (libc::SIGIO, "SIGIO"),
            (libc::SIGPWR, "SIGPWR"),
            (libc::SIGSYS, "SIGSYS"),
        ];
        for (number, name) in platform {
            assert_eq!(
                signal_name(number).as_deref(),
                Some(name),
                "signal {number}"
            );
        }
        assert_eq!(
            signal_name(libc::SIGRTMIN() + 2).as_deref(),
            Some("SIGRTMIN+2")
        );
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(-1), None);
    }
}
