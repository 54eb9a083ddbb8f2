//! Timeouts that leave evidence: `plumb run --timeout` (the run lasted too
//! long) and `--silence-timeout` (nothing printed on either stream for too
//! long).
//!
//! A slow run and a dead one look the same once a timeout fires, so before
//! anything is signalled the watcher takes a stack snapshot of every
//! process of the run (`plumb_stack`, with the tools registered as the
//! recorder's helpers so they are never reaped or signalled as the run's).
//! Then it starts the same stop as an eviction ([`crate::evict`]): the
//! warning signal to every process, the grace, SIGKILL of what is left
//! (the program's group too). The run is recorded as
//! [`plumb_model::RunState::TimedOut`] with a [`plumb_model::stack::Timeout`]
//! saying which fired and holding the snapshot.

use crate::signals::Warner;
use plumb_model::Timestamp;
use plumb_model::stack::{StackSnapshot, Timeout, TimeoutKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The timeouts of a run; both off by default.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// The longest the run may last.
    pub total: Option<Duration>,
    /// How `total` was chosen when it was not given directly (`--timeout
    /// auto`), recorded with the timeout.
    pub basis: Option<String>,
    /// The longest the run may print nothing on either stream.
    pub silence: Option<Duration>,
    /// The warning signal sent once the snapshot is taken.
    pub signal: libc::c_int,
    /// How long the run has after the warning before SIGKILL.
    pub grace: Duration,
    /// Take a stack snapshot (without stopping anything) when the run has
    /// printed nothing for this long; once per silence, at most
    /// [`MAX_SILENCE_SNAPSHOTS`] per run.
    pub snapshot_on_silence: Option<Duration>,
}

/// How many snapshots `--snapshot-on-silence` attaches to one run at most,
/// so a run silent on and off for days does not grow without bound.
pub const MAX_SILENCE_SNAPSHOTS: usize = 5;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            total: None,
            basis: None,
            silence: None,
            signal: libc::SIGTERM,
            grace: crate::evict::DEFAULT_GRACE,
            snapshot_on_silence: None,
        }
    }
}

impl Timeouts {
    /// Whether any timeout is set.
    pub fn any(&self) -> bool {
        self.total.is_some() || self.silence.is_some()
    }

    /// Whether the run's clocks need watching: a timeout, or snapshots on
    /// silence.
    pub fn watching(&self) -> bool {
        self.any() || self.snapshot_on_silence.is_some()
    }
}

/// When the run last printed, as milliseconds since the recorder's start
/// of the run; written by the capture thread on every read.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Output was read just now.
    pub(crate) fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    fn elapsed(&self) -> Duration {
        self.base.elapsed()
    }
}

/// Registers each stack tool as a helper of the recorder's across its
/// spawn, so the reaper leaves it to the snapshot that started it.
struct Helpers;

impl plumb_stack::Spawner for Helpers {
    fn spawn(&self, cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        let mut helpers = crate::tree::HELPERS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        helpers.push(child.id() as libc::pid_t);
        Ok(child)
    }

    fn reaped(&self, pid: u32) {
        crate::tree::HELPERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid as libc::pid_t);
    }
}

/// A snapshot of every process of the run whose program is `pid`.
pub(crate) fn snapshot_run(pid: u32, others: &[libc::pid_t]) -> StackSnapshot {
    let procs = crate::tree::run_processes(Some(pid as libc::pid_t), others);
    let roots: Vec<u32> = procs.iter().map(|p| p.pid as u32).collect();
    plumb_stack::snapshot_with(
        &roots,
        &plumb_stack::Options {
            host: crate::host::hostname(),
            ..plumb_stack::Options::default()
        },
        &Helpers,
    )
}

/// How often the watcher looks at the clocks.
const TICK: Duration = Duration::from_millis(50);

/// Watches the run's clocks until it is over ([`Warner::done`]) or a
/// timeout fires; then snapshots, puts the [`Timeout`] in `fired` and
/// starts the stop. Snapshots on silence go to `snapshots`. Runs on its
/// own thread.
pub(crate) fn watch(
    timeouts: &Timeouts,
    activity: &Activity,
    pid: u32,
    warner: &Warner,
    fired: &Mutex<Option<Timeout>>,
    snapshots: &Mutex<Vec<StackSnapshot>>,
    others: &dyn Fn() -> Vec<libc::pid_t>,
) {
    // A snapshot on silence is taken once per silence: re-armed when the
    // run prints again.
    let mut armed = true;
    let mut taken = 0;
    // Bounded: ends when the run is over, or once a timeout fired.
    loop {
        if warner.done() {
            return;
        }
        if let Some(d) = timeouts.snapshot_on_silence {
            let quiet = activity.quiet_for();
            if quiet < d {
                armed = true;
            } else if armed && taken < MAX_SILENCE_SNAPSHOTS && !warner.under_way() {
                armed = false;
                taken += 1;
                tracing::info!(
                    silent_s = quiet.as_secs_f64(),
                    "no output: taking a stack snapshot of the run"
                );
                let mut snap = snapshot_run(pid, &others());
                snap.reason = Some(format!(
                    "no output for {}",
                    plumb_model::display::duration(quiet.as_nanos() as i64)
                ));
                snapshots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(snap);
            }
        }
        let which = match (timeouts.total, timeouts.silence) {
            (Some(t), _) if activity.elapsed() >= t => Some((TimeoutKind::Total, t)),
            (_, Some(s)) if activity.quiet_for() >= s => Some((TimeoutKind::Silence, s)),
            _ => None,
        };
        if let Some((kind, limit)) = which {
            // An eviction already stopping the run is not a timeout.
            if warner.under_way() {
                return;
            }
            tracing::warn!(
                timeout = kind.flag(),
                limit_s = limit.as_secs_f64(),
                "timeout: taking a stack snapshot of the run, then stopping it"
            );
            let at = Timestamp::now();
            let snapshot = snapshot_run(pid, &others());
            *fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(Timeout {
                kind,
                limit_ns: i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX),
                basis: match kind {
                    TimeoutKind::Total => timeouts.basis.clone(),
                    TimeoutKind::Silence => None,
                },
                fired: at,
                snapshot: Some(snapshot),
                signal: crate::signals::signal_name(timeouts.signal)
                    .unwrap_or_else(|| timeouts.signal.to_string()),
                grace_ns: i64::try_from(timeouts.grace.as_nanos()).unwrap_or(i64::MAX),
                signalled: 0,
                grace_expired: false,
                killed: 0,
            });
            warner.warn(
                kind.flag(),
                Some(format!(
                    "{} {}",
                    kind.flag(),
                    plumb_model::display::duration(limit.as_nanos() as i64)
                )),
            );
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// Shared between the watcher and the end of the run.
pub(crate) type Fired = Arc<Mutex<Option<Timeout>>>;

/// The snapshots taken on silence, shared the same way.
pub(crate) type Snapshots = Arc<Mutex<Vec<StackSnapshot>>>;
