//! Spawning and supervising the child.
//!
//! API contract (the `plumb` binary and the store sink are written against
//! it; change it only together with them):

use plumb_model::{ExitStatus, Fingerprint, Run, RunState, Rusage, Stream, Timestamp};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capture::{self, Source};
use crate::evict::EvictOptions;
use crate::signals::{EvictPolicy, Forwarder};
use crate::{Redactor, cloud, files, fingerprint, host, postmortem, pty};
use plumb_model::exception;

/// What to run and what to capture.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Program and arguments. Must not be empty.
    pub argv: Vec<OsString>,
    /// Run name; default: derived from the command line by
    /// [`crate::name::default_name`] (`python3 train.py` is `train`).
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
    /// Where the Python post-mortem hook and its files live (see
    /// [`crate::postmortem`]); `None` records no locals.
    pub postmortem_dir: Option<PathBuf>,
}

/// How a run is supervised beyond plain recording: which attempt it is,
/// and how eviction warnings are handled. The default is attempt 1 of 1,
/// with signals forwarded unchanged.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// The first attempt's id, for the second attempt on.
    pub first_attempt: Option<plumb_model::Uuid>,
    /// How many attempts the retry policy allows in all, when retrying.
    pub max_attempts: Option<u32>,
    /// Eviction handling; `None` forwards every signal unchanged.
    pub evict: Option<EvictOptions>,
    /// The wait that came before this attempt (a throttle slot, a retry's
    /// backoff), recorded on the run with the moment it ended.
    pub waited: Option<plumb_model::Waiting>,
    /// Whether processes the command leaves running when it ends (orphans,
    /// re-parented to the recorder) are SIGKILLed; they are reported on
    /// [`Run::orphans`] either way.
    pub kill_orphans: bool,
    /// `--timeout` and `--silence-timeout`: when one fires, the run's
    /// stacks are taken, then it is stopped as an eviction is (warning
    /// signal, grace, SIGKILL) and recorded as timed out.
    pub timeouts: crate::timeout::Timeouts,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            attempt: 1,
            first_attempt: None,
            max_attempts: None,
            evict: None,
            waited: None,
            kill_orphans: false,
            timeouts: crate::timeout::Timeouts::default(),
        }
    }
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
    /// A buffer for the next read of output: the read is appended to what
    /// it holds and the buffer comes back through [`Sink::output_owned`].
    /// A sink that keeps output in buffers of its own (the store writer)
    /// lends one, so no byte is copied on the way. By default a new buffer.
    fn lend(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// One read of the child's output, `buf[start..]`, in a buffer from
    /// [`Sink::lend`], handed over. By default passed to [`Sink::output`].
    fn output_owned(
        &mut self,
        stream: Stream,
        seq: u64,
        time: Timestamp,
        buf: Vec<u8>,
        start: usize,
    ) {
        self.output(stream, seq, time, &buf[start..]);
    }
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
    /// The program could not be executed. The failed run (with
    /// [`Run::launch_error`] and the shell's exit code, see
    /// [`launch_exit_code`]) has already been given to [`Sink::finished`].
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
///
/// The child inherits stdin, the environment (plus `extra_env`), the working
/// directory, the process group and the session. Its stdout and stderr are
/// pseudo-terminals where the recorder's own are terminals, pipes otherwise;
/// one pipe or pty for both (recorded as [`Stream::Combined`]) when the
/// recorder's own stdout and stderr are the same place, so their order is
/// kept as it would be directly. Every read is copied unchanged to the
/// recorder's stdout or stderr before the sink sees it. The recorder
/// becomes a child subreaper, so orphans of the run are re-parented to it
/// and reported on [`Run::orphans`].
///
/// Work before the spawn is kept to a few system calls (plus hashing of the
/// configuration and input files the caller named); host, user and
/// environment capture run while the child already runs.
pub fn record(opts: RunOptions, sink: &mut dyn Sink) -> Result<Run, RecordError> {
    record_supervised(opts, &Supervision::default(), sink)
}

/// [`record`], with eviction handling and the attempt's place in a series
/// of retries.
///
/// With [`Supervision::evict`] set, an eviction warning (SIGTERM to the
/// recorder when [`EvictOptions::on_sigterm`], or a cloud notice) sends
/// [`EvictOptions::signal`] to the child, which then has
/// [`EvictOptions::grace`] to exit before it is SIGKILLed. The run is
/// recorded with its [`plumb_model::Eviction`] and in state
/// [`RunState::Evicted`], unless the child still exited with code 0 (it
/// finished its work).
pub fn record_supervised(
    opts: RunOptions,
    sup: &Supervision,
    sink: &mut dyn Sink,
) -> Result<Run, RecordError> {
    let Some(program) = opts.argv.first().cloned() else {
        return Err(RecordError::NoCommand);
    };
    let started = Timestamp::now();
    let stdin = host::stdin_kind();
    let cwd = std::env::current_dir();
    // Configuration and input files describe the state before the run, so
    // they are read before the child can change them.
    let config_files: Vec<_> = opts
        .config_files
        .iter()
        .map(|p| files::record_config(p, &opts.redactor))
        .collect();
    let inputs: Vec<_> = opts.inputs.iter().map(|p| files::record_file(p)).collect();

    // When stdout and stderr are one file, pipe or terminal, the child gets
    // one channel for both, as it would have directly: two channels copied
    // by two reads could not keep the order of its writes.
    let combined = same_destination(libc::STDOUT_FILENO, libc::STDERR_FILENO);
    let stdout = Output::new(libc::STDOUT_FILENO)?;
    let stderr = if combined {
        None
    } else {
        Some(Output::new(libc::STDERR_FILENO)?)
    };
    let winch_from = [libc::STDOUT_FILENO, libc::STDERR_FILENO]
        .into_iter()
        .find(|&fd| is_tty(fd));
    let mut winch_to = Vec::new();
    for out in std::iter::once(&stdout).chain(stderr.as_ref()) {
        if let Output::Pty(p) = out {
            winch_to.push(p.master.try_clone().map_err(|source| RecordError::Os {
                what: "duplicating a pty master",
                source,
            })?);
        }
    }
    // A timeout stops the run the way an eviction does; without eviction
    // handling SIGTERM to the recorder is still forwarded unchanged.
    let policy = sup
        .evict
        .as_ref()
        .map(|e| EvictPolicy {
            signal: e.signal,
            grace: e.grace,
            on_sigterm: e.on_sigterm,
        })
        .or_else(|| {
            sup.timeouts.any().then_some(EvictPolicy {
                signal: sup.timeouts.signal,
                grace: sup.timeouts.grace,
                on_sigterm: false,
            })
        });
    let forwarder =
        Forwarder::install(winch_to, winch_from, policy).map_err(|source| RecordError::Os {
            what: "installing signal handlers",
            source,
        })?;
    let (reaped_r, reaped_w) = std::io::pipe().map_err(|source| RecordError::Os {
        what: "creating a pipe",
        source,
    })?;

    let stdout_tty = matches!(stdout, Output::Pty(_));
    let stderr_tty = match &stderr {
        Some(o) => matches!(o, Output::Pty(_)),
        None => stdout_tty,
    };
    // Orphans of the run (a shell's background job, a daemon, a pool's
    // workers whose parent died) are re-parented to the recorder rather
    // than init, so they can still be signalled on eviction and reported
    // when the run ends.
    crate::tree::become_subreaper();
    let mut setup_warnings = Vec::new();
    let hook = opts.postmortem_dir.as_ref().and_then(|dir| {
        postmortem::Hook::prepare(dir, opts.run_id, std::env::var_os("PYTHONPATH"))
            .map_err(|e| {
                setup_warnings.push(format!(
                    "no post-mortem locals: cannot set up the Python hook in {}: {e}",
                    dir.display()
                ))
            })
            .ok()
    });
    let mut cmd = Command::new(&program);
    cmd.args(&opts.argv[1..])
        .stdin(Stdio::inherit())
        .envs(opts.extra_env.iter().map(|(k, v)| (k, v)));
    if let Some(h) = &hook {
        cmd.envs(h.env().iter().map(|(k, v)| (k, v)));
    }
    let (stdout_end, stdout_read) = stdout.split();
    let mut sources = Vec::with_capacity(2);
    match stderr {
        Some(stderr) => {
            let (stderr_end, stderr_read) = stderr.split();
            cmd.stdout(stdout_end).stderr(stderr_end);
            sources.push((stdout_read, Stream::Stdout, libc::STDOUT_FILENO));
            sources.push((stderr_read, Stream::Stderr, libc::STDERR_FILENO));
        }
        None => {
            let stderr_end = stdout_end.try_clone().map_err(|source| RecordError::Os {
                what: "duplicating the output channel",
                source,
            })?;
            cmd.stdout(stdout_end).stderr(stderr_end);
            // Either descriptor of the recorder reaches the same place;
            // stdout is the one written to.
            sources.push((stdout_read, Stream::Combined, libc::STDOUT_FILENO));
        }
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            let program = program.to_string_lossy().into_owned();
            let mut run = skeleton(&opts, sup, started);
            run.waiting = sup.waited.clone().map(|mut w| {
                w.ended = Some(started);
                w
            });
            launch_failed(&mut run, &opts, &cwd, &program, &source);
            run.config_files = config_files;
            run.inputs = inputs;
            run.stdin = stdin.to_string();
            sink.finished(&run);
            return Err(RecordError::Spawn { program, source });
        }
    };
    // Close our copies of the child's ends (held by `cmd`), or end of file
    // would never come.
    drop(cmd);
    let pid = child.id();
    forwarder.set_child(pid);
    // Read while the child lives: its cgroup, and the OOM kill counts.
    let oom_watch = crate::oom::Watch::start(pid);
    let watch_warnings = Arc::new(Mutex::new(Vec::new()));
    // Dropped when this function returns, which stops the polling.
    let _cloud_watcher = match sup.evict.as_ref().and_then(|e| e.cloud.clone()) {
        Some(watch) => match cloud::watch(watch, forwarder.warner(), Arc::clone(&watch_warnings)) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "cannot start watching for cloud notices");
                watch_warnings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("cloud notices not watched: {error}"));
                None
            }
        },
        None => None,
    };

    // Everything from here on runs beside the child.
    // The recorder's own environment, which the child inherited: the
    // variables `extra_env` adds or overrides for the child are plumb's, not
    // the user's, so their values are never recorded.
    let env_os: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let cwd_path = cwd.as_ref().cloned().unwrap_or_default();
    let capture_opts = fingerprint::CaptureOptions {
        cache_dir: opts.cache_dir.clone(),
        argv: opts.argv.clone(),
        cwd: cwd_path.clone(),
        env: env_os.clone(),
        python: opts.python.clone(),
        tools: opts.tools.clone(),
    };
    let fingerprint_capture = fingerprint::Capture::start(&capture_opts, pid);
    let hostname = host::hostname();
    let mut fqdn = host::FqdnLookup::start(hostname.clone());

    let sources: Vec<Source> = sources
        .into_iter()
        .map(|(fd, stream, copy_to)| Source {
            fd,
            stream,
            copy_to,
        })
        .collect();

    let sink = Mutex::new(sink);
    let activity = crate::timeout::Activity::new();
    let fired: crate::timeout::Fired = Arc::default();
    let snapshots: crate::timeout::Snapshots = Arc::default();
    let (mut run, captured, waited) = std::thread::scope(|scope| {
        // Hold the sink until `started` has been called, so that no output
        // reaches it first; the capture thread still copies to the terminal
        // meanwhile.
        let mut guard = sink.lock().unwrap_or_else(|e| e.into_inner());
        let capture_thread = std::thread::Builder::new()
            .name("plumb-capture".into())
            .spawn_scoped(scope, || {
                capture::run(sources, &reaped_r.into(), &sink, &activity)
            });
        if sup.timeouts.watching() {
            let warner = forwarder.warner();
            let (activity, fired, snapshots) = (&activity, &fired, &snapshots);
            let watcher = std::thread::Builder::new()
                .name("plumb-timeout".into())
                .spawn_scoped(scope, move || {
                    crate::timeout::watch(
                        &sup.timeouts,
                        activity,
                        pid,
                        &warner,
                        fired,
                        snapshots,
                        &|| crate::signals::others(pid as libc::pid_t),
                    )
                });
            if let Err(error) = watcher {
                tracing::warn!(%error, "cannot start the timeout watcher; the run has no timeout");
            }
        }
        let capture_thread = match capture_thread {
            Ok(t) => Some(t),
            Err(error) => {
                tracing::warn!(%error, "cannot start the output capture thread");
                None
            }
        };

        let mut run = skeleton(&opts, sup, started);
        run.waiting = sup.waited.clone().map(|mut w| {
            w.ended = Some(started);
            w
        });
        match &cwd {
            Ok(p) => run.cwd = p.to_string_lossy().into_owned(),
            Err(error) => run
                .warnings
                .push(format!("working directory unknown: {error}")),
        }
        run.pid = pid;
        run.stdin = stdin.to_string();
        run.host = plumb_model::HostInfo {
            fqdn: fqdn.get(FQDN_WAIT_AT_START),
            hostname,
            ips: host::non_loopback_ips(),
        };
        run.user = host::user_info();
        run.env = env_os
            .iter()
            .map(|(k, v)| {
                let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
                let value = opts.redactor.redact(&k, &v);
                (k.into_owned(), value)
            })
            .collect();
        run.config_files = config_files;
        run.inputs = inputs;
        run.scheduler = fingerprint::scheduler_ids(&env_os);
        run.container = fingerprint::container_id();
        run.output.stdout_tty = stdout_tty;
        run.output.stderr_tty = stderr_tty;
        run.output.combined = combined;
        guard.started(&run);
        drop(guard);

        let waited = forwarder.reap(pid);
        run.ended = Some(Timestamp::now());
        // Tell the capture thread the child is gone: it drains what is left
        // and stops even if a grandchild holds the streams open.
        let _ = std::io::Write::write_all(&mut &reaped_w, b"x");
        let captured = match capture_thread.map(|t| t.join()) {
            Some(Ok(c)) => c,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => capture::Captured::default(),
        };
        (run, captured, waited)
    });
    let sink = sink.into_inner().unwrap_or_else(|e| e.into_inner());
    run.eviction = forwarder.eviction();
    let timed_out = fired.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut t) = timed_out {
        // The stop the timeout started went through the eviction path; its
        // counts belong to the timeout, and no eviction warning came.
        if let Some(e) = run.eviction.take_if(|e| e.source == t.kind.flag()) {
            t.signalled = e.signalled;
            t.killed = e.killed;
            t.grace_expired = e.grace_expired;
        }
        run.timeout = Some(t);
    }
    run.snapshots = std::mem::take(&mut *snapshots.lock().unwrap_or_else(|e| e.into_inner()));
    run.forwarded = forwarder.forwarded();
    let (orphans, killed) = forwarder.orphans(sup.kill_orphans);
    run.orphans = orphans;
    run.orphans_killed = killed;
    drop(forwarder);
    run.warnings.extend(std::mem::take(
        &mut *watch_warnings.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    drop(child);

    match waited {
        Ok((status, usage)) => {
            run.exit = Some(exit_status(status));
            run.rusage = Some(rusage(&usage));
        }
        Err(error) => {
            run.warnings
                .push(format!("cannot collect the exit status: {error}"));
            run.exit = Some(ExitStatus::default());
        }
    }
    let sigkilled = run
        .exit
        .as_ref()
        .is_some_and(|e| e.signal == Some(libc::SIGKILL));
    let (oom, oom_warning) = oom_watch.finish(sigkilled);
    run.oom = oom;
    run.warnings.extend(oom_warning);
    run.state = match &run.exit {
        // Whatever the program did once stopped, the run did not finish
        // within its limit.
        _ if run.timeout.is_some() => RunState::TimedOut,
        Some(ExitStatus { code: Some(0), .. }) => RunState::Succeeded,
        _ if run.eviction.is_some() => RunState::Evicted,
        Some(ExitStatus {
            signal: Some(_), ..
        }) => RunState::Killed,
        _ => RunState::Failed,
    };
    run.output.stdout_bytes = captured.stdout_bytes;
    run.output.stderr_bytes = captured.stderr_bytes;
    run.output.lines = captured.lines;
    run.warnings.extend(captured.warnings);
    if run.state.is_failure() {
        run.exception = exception::parse(&captured.stderr_tail);
    }
    // A program the OOM killer killed prints nothing; its error group is
    // the kill itself.
    if run.exception.is_none()
        && let Some(o) = run.oom.as_ref().filter(|o| o.root)
    {
        run.exception = Some(exception::oom_kill(o));
    }
    run.warnings.extend(setup_warnings);
    if let Some(hook) = hook {
        let (found, warning) = hook.collect();
        run.postmortem = found;
        run.warnings.extend(warning);
    }
    run.outputs = opts.outputs.iter().map(|p| files::record_file(p)).collect();
    // The lookup has had the whole run to finish by now.
    run.host.fqdn = fqdn.get(FQDN_WAIT_AT_END);

    let (hash, fp) = fingerprint_capture.finish();
    sink.fingerprint(&hash, &fp);
    run.fingerprint = Some(hash);
    sink.finished(&run);
    Ok(run)
}

/// Fills in the record of a command that could not be started: failed,
/// with the exit code a shell gives (127 not found, 126 anything else), the
/// reason, and the same identity (host, user, working directory,
/// environment) as a run that started; it starts and ends at once.
fn launch_failed(
    run: &mut Run,
    opts: &RunOptions,
    cwd: &std::io::Result<PathBuf>,
    program: &str,
    error: &std::io::Error,
) {
    run.state = RunState::Failed;
    run.ended = Some(run.started);
    run.exit = Some(ExitStatus {
        code: Some(launch_exit_code(error)),
        ..ExitStatus::default()
    });
    run.launch_error = Some(format!("cannot run `{program}`: {error}"));
    match cwd {
        Ok(p) => run.cwd = p.to_string_lossy().into_owned(),
        Err(error) => run
            .warnings
            .push(format!("working directory unknown: {error}")),
    }
    let hostname = host::hostname();
    run.host = plumb_model::HostInfo {
        fqdn: hostname.clone(),
        hostname,
        ips: host::non_loopback_ips(),
    };
    run.user = host::user_info();
    run.env = std::env::vars_os()
        .map(|(k, v)| {
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            let value = opts.redactor.redact(&k, &v);
            (k.into_owned(), value)
        })
        .collect();
}

/// The exit code a shell reports for a command it could not start: 127
/// when the program was not found, 126 when it was found but could not be
/// executed.
pub fn launch_exit_code(error: &std::io::Error) -> i32 {
    if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// What a run's record takes from the options and the supervision alone:
/// id, name, attempt numbering, tags and command line.
fn skeleton(opts: &RunOptions, sup: &Supervision, started: Timestamp) -> Run {
    let mut run = Run::new(opts.run_id, run_name(opts), started);
    run.attempt = sup.attempt;
    run.first_attempt = sup.first_attempt;
    run.max_attempts = sup.max_attempts;
    run.tags = opts.tags.clone();
    run.argv = opts
        .argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    run
}

/// The record of an attempt that has not started yet: in state
/// [`RunState::Waiting`], with what it waits for, and what is known before
/// the command runs (name, tags, command line, working directory, host,
/// user, attempt). When the attempt starts, [`record_supervised`] writes
/// the full record under the same id over it.
pub fn waiting_run(opts: &RunOptions, sup: &Supervision, waiting: plumb_model::Waiting) -> Run {
    let mut run = unstarted_run(opts, sup, waiting.since);
    run.state = RunState::Waiting;
    run.waiting = Some(waiting);
    run
}

/// The record of a run that has not started (yet, or at all: refused
/// before it could): its name, command, directory, host and user, in
/// state `Waiting`, as of `at`.
pub fn unstarted_run(opts: &RunOptions, sup: &Supervision, at: Timestamp) -> Run {
    let mut run = skeleton(opts, sup, at);
    run.state = RunState::Waiting;
    if let Ok(p) = std::env::current_dir() {
        run.cwd = p.to_string_lossy().into_owned();
    }
    let hostname = host::hostname();
    run.host = plumb_model::HostInfo {
        fqdn: hostname.clone(),
        hostname,
        ips: host::non_loopback_ips(),
    };
    run.user = host::user_info();
    run
}

/// How long the start record waits for the host's fully qualified name; it
/// is usually in /etc/hosts or a DNS cache and arrives in well under this.
const FQDN_WAIT_AT_START: Duration = Duration::from_millis(5);

/// How long the finished record waits for it at most after the child
/// exited, so that a DNS server that does not answer costs a short job
/// little.
const FQDN_WAIT_AT_END: Duration = Duration::from_millis(50);

/// The run's name: the one given, else one derived from the command line
/// ([`crate::name::default_name`]: the script, not the interpreter).
fn run_name(opts: &RunOptions) -> String {
    match &opts.name {
        Some(name) => name.clone(),
        None => crate::name::default_name(&opts.argv),
    }
}

/// Where one of the child's output streams goes.
enum Output {
    /// A pty, because the recorder's own descriptor is a terminal.
    Pty(pty::Pty),
    /// A pipe: (read end, write end).
    Pipe(OwnedFd, OwnedFd),
}

impl Output {
    fn new(fd: RawFd) -> Result<Output, RecordError> {
        if is_tty(fd) {
            let p = pty::open(fd).map_err(|source| RecordError::Os {
                what: "opening a pseudo-terminal",
                source,
            })?;
            return Ok(Output::Pty(p));
        }
        let (r, w) = std::io::pipe().map_err(|source| RecordError::Os {
            what: "creating a pipe",
            source,
        })?;
        Ok(Output::Pipe(r.into(), w.into()))
    }

    /// The child's end, and the recorder's.
    fn split(self) -> (OwnedFd, OwnedFd) {
        match self {
            Output::Pty(p) => (p.slave, p.master),
            Output::Pipe(r, w) => (w, r),
        }
    }
}

/// Whether descriptors `a` and `b` lead to the same place: the same file,
/// pipe or terminal (same device and inode). For a regular file they must
/// also share one open file description (`> f 2>&1`, one offset) or both
/// append (`>> f 2>> f`); `> f 2> f` opens the file twice, and the two
/// streams then overwrite each other, which only separate channels
/// reproduce. Where the kernel cannot
/// tell (kcmp(2) refused), the same inode is taken as the same place.
pub(crate) fn same_destination(a: RawFd, b: RawFd) -> bool {
    let stat = |fd: RawFd| {
        // SAFETY: fstat writes into a stat we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
    };
    let (Some(sa), Some(sb)) = (stat(a), stat(b)) else {
        return false;
    };
    if sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino {
        return false;
    }
    if (sa.st_mode & libc::S_IFMT) != libc::S_IFREG {
        return true;
    }
    // Two descriptions that both append (`>> f 2>> f`) write in the order
    // of the writes, as one channel does.
    // SAFETY: F_GETFL only reads the descriptors' flags.
    let appends = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_APPEND != 0;
    if appends(a) && appends(b) {
        return true;
    }
    // SAFETY: kcmp only compares kernel objects of our own process.
    let pid = unsafe { libc::getpid() };
    const KCMP_FILE: libc::c_long = 0;
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid as libc::c_long,
            pid as libc::c_long,
            KCMP_FILE,
            a as libc::c_long,
            b as libc::c_long,
        )
    };
    // 0: the same open file description; -1: kcmp is not available here.
    rc <= 0
}

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty has no memory effects.
    unsafe { libc::isatty(fd) == 1 }
}

/// Decodes a `wait` status.
fn exit_status(status: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        ExitStatus {
            code: None,
            signal: Some(signal),
            signal_name: crate::signals::signal_name(signal),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        ExitStatus {
            code: Some(libc::WEXITSTATUS(status)),
            ..ExitStatus::default()
        }
    }
}

fn micros(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64
}

/// Converts `wait4`'s usage; `ru_maxrss` is in KiB on Linux.
fn rusage(u: &libc::rusage) -> Rusage {
    let n = |v: libc::c_long| v.max(0) as u64;
    Rusage {
        user_us: micros(u.ru_utime),
        system_us: micros(u.ru_stime),
        max_rss_kib: n(u.ru_maxrss),
        minor_faults: n(u.ru_minflt),
        major_faults: n(u.ru_majflt),
        in_blocks: n(u.ru_inblock),
        out_blocks: n(u.ru_oublock),
        voluntary_switches: n(u.ru_nvcsw),
        involuntary_switches: n(u.ru_nivcsw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_defaults_to_the_script_and_a_given_name_wins() {
        let opts = RunOptions {
            argv: vec!["/usr/bin/python3".into(), "x.py".into()],
            name: None,
            tags: BTreeMap::new(),
            config_files: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            redactor: Redactor::new(b"k"),
            cache_dir: PathBuf::new(),
            python: None,
            tools: BTreeMap::new(),
            extra_env: Vec::new(),
            run_id: plumb_model::new_id(),
            postmortem_dir: None,
        };
        assert_eq!(run_name(&opts), "x");
        let named = RunOptions {
            name: Some("nightly".into()),
            ..opts
        };
        assert_eq!(run_name(&named), "nightly");
    }
}
