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
//! With eviction handling on (see [`crate::evict`]), SIGTERM is not
//! forwarded as is: it becomes the configured warning signal, and a grace
//! timer SIGKILLs the child if it has not exited when the grace runs out.
//! Cloud notices take the same path through a [`Warner`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use plumb_model::{Eviction, Timestamp};

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
    /// Notified when the child has been reaped, so that a grace timer
    /// stops waiting at once.
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
    let signal =
        crate::supervise::signal_name(policy.signal).unwrap_or_else(|| policy.signal.to_string());
    tracing::warn!(
        source,
        signal = %signal,
        grace_s = policy.grace.as_secs_f64(),
        "eviction warning: passing it on to the program"
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
        // SAFETY: the pid is our unreaped child (checked above, under the
        // lock `reap` takes before reaping).
        unsafe { libc::kill(pid, policy.signal) };
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

/// Waits until the child is reaped or the grace runs out; in the second
/// case SIGKILLs it, and its process group when it made its own (a
/// program that started workers in its own group must not leave them
/// behind).
fn grace_timer(target: &Target, grace: Duration) {
    let deadline = Instant::now() + grace;
    let mut state = lock(&target.state);
    loop {
        if state.reaped {
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
    // SAFETY: plain system calls on our unreaped child, under the lock.
    let (pgid, own) = unsafe { (libc::getpgid(pid), libc::getpgrp()) };
    let group = pgid == pid && pgid != own;
    tracing::warn!(pid, group, "grace period over: killing the program");
    unsafe {
        if group {
            libc::killpg(pgid, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
    }
    if let Some(e) = &mut state.eviction {
        e.grace_expired = true;
        e.killed_group = group;
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

    /// Whether the child has been reaped: nothing left to warn.
    pub(crate) fn done(&self) -> bool {
        lock(&self.target.state).reaped
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
        for sig in std::mem::take(&mut state.pending) {
            // SAFETY: pid is our child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
        }
        // A warning that came before the child existed is passed on now.
        if let (Some(_), Some(policy)) = (&state.eviction, self.target.evict) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, policy.signal) };
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

    /// Waits for the child to exit, then reaps it with `wait4` while holding
    /// the lock the dispatcher takes before forwarding, so a signal is never
    /// sent to a pid that has been reaped and possibly reused.
    pub(crate) fn reap(&self, pid: u32) -> io::Result<(libc::c_int, libc::rusage)> {
        let pid = pid as libc::pid_t;
        // First wait without reaping: the zombie keeps its pid reserved while
        // signals may still be forwarded to it.
        loop {
            // SAFETY: info is valid for the call.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                lock(&self.target.state).reaped = true;
                self.target.reaped_cv.notify_all();
                return Err(error);
            }
        }
        let mut state = lock(&self.target.state);
        state.reaped = true;
        if let Some(e) = &mut state.eviction {
            e.ended = Some(Timestamp::now());
        }
        self.target.reaped_cv.notify_all();
        loop {
            let mut status = 0;
            // SAFETY: status and usage are valid for the call.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if rc == pid {
                return Ok((status, usage));
            }
            let error = io::Error::last_os_error();
            if rc < 0 && error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
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
