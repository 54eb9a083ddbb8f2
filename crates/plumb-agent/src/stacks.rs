//! Stack and profile requests from the collector: a long poll on a thread of its own
//! (`GET /api/v1/agent/requests?node=N&wait=15s`, which returns the moment
//! a request is posted), the target resolved against the runs this node's
//! `plumb run`s are recording, a `plumb_stack` snapshot (or a sampled
//! profile, which takes its whole window), and the answer posted back
//! (`POST /api/v1/agent/answers`). Each request is answered on a thread of
//! its own, at most [`MAX_IN_FLIGHT`] at once, so a stack request is not
//! kept waiting behind a 30 s profile.
//!
//! The runs are found in the agent's outbox: with a collector configured,
//! `plumb run` records each run into a spool file there and holds that
//! file's lock while the run goes on, and its run record (id, name, pid)
//! is a frame of the file. So "this node's running runs" are the locked
//! spool files of the agent's own plumb home, whatever the host name says
//! (two agents on one machine, as in tests, each see only their own).
//! A node with nothing matching answers "nothing here" at once.
//!
//! A chaos order (`plumb chaos run`, a target with `node`) is answered by
//! [`crate::chaos::Chaos::answer`], or refused when the agent was not
//! started with `--allow-chaos`.
//!
//! A rerun request (`plumb rerun --on-node`) is answered by [`rerun`]:
//! this executable started as `plumb run` again, as the recorded user, in
//! the recorded directory; the answer says it started (or why not) and the
//! run reaches the collector as any run does.

use plumb_model::frame::{HEADER, Header, KIND_RUN};
use plumb_model::profile::{ProcessProfile, Profile};
use plumb_model::rerun::{RerunOrder, RerunOutcome};
use plumb_model::stack::{
    Missing, MissingReason, ProcessSnapshot, ProfileSpec, StackAnswer, StackRequest, StackSnapshot,
    StackTarget,
};
use plumb_model::{Run, RunState, Timestamp};
use plumb_ship::{Client, Outbox};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The collector's pending-request endpoint.
pub const REQUESTS_PATH: &str = "/api/v1/agent/requests";
/// The collector's answer endpoint.
pub const ANSWERS_PATH: &str = "/api/v1/agent/answers";
/// How long one poll is held open by the collector: under the shipping
/// client's 20 s request timeout.
const POLL_WAIT: &str = "15s";

/// Starts the thread that polls for stack requests and answers them, until
/// `stop` is set (it notices within one poll, at most [`POLL_WAIT`]).
pub fn spawn(
    client: Client,
    node: String,
    outbox: Outbox,
    allow_reruns: bool,
    chaos: Option<Arc<crate::chaos::Chaos>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("plumb-stacks".into())
        .spawn(move || {
            // Node names are letters, digits, `.`, `-` and `_` (checked
            // by `Agent::new`): nothing to escape in a query.
            let path = format!("{REQUESTS_PATH}?node={node}&wait={POLL_WAIT}");
            let mut failures = 0u32;
            let in_flight = Arc::new(AtomicUsize::new(0));
            while !stop.load(Ordering::Relaxed) {
                let requests: Vec<StackRequest> = match client.get(&path) {
                    Ok(r) => match serde_json::from_str(&r.body) {
                        Ok(v) => {
                            failures = 0;
                            v
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the collector's stack requests do not parse");
                            Vec::new()
                        }
                    },
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::debug!(error = %e, failures, "polling for stack requests failed");
                        }
                        // A collector away or too old for this endpoint:
                        // try again later, without hammering it.
                        let pause = Duration::from_millis(500 * u64::from(failures.min(10)));
                        let until = Instant::now() + pause;
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        continue;
                    }
                };
                for req in requests {
                    // Each request on a thread of its own: a profile samples
                    // for its whole window, and a stack request coming
                    // meanwhile must not wait behind it.
                    if in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
                        tracing::warn!(
                            request = %req.id,
                            "{MAX_IN_FLIGHT} stack or profile requests are being answered already; this one is left unanswered"
                        );
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let (client, node, outbox, busy, chaos) = (
                        client.clone(),
                        node.clone(),
                        outbox.clone(),
                        in_flight.clone(),
                        chaos.clone(),
                    );
                    let spawned = std::thread::Builder::new()
                        .name("plumb-stack-answer".into())
                        .spawn(move || {
                            let answer = match (&req.rerun, &req.chaos) {
                                (Some(order), _) => rerun_answer(
                                    &req,
                                    order,
                                    &node,
                                    client.base(),
                                    allow_reruns,
                                ),
                                (None, Some(order)) => {
                                    chaos_answer(&req, order, &node, chaos.as_deref())
                                }
                                (None, None) => {
                                    answer_from(&req, &node, &outbox, Some(client.base()))
                                }
                            };
                            deliver(&client, &req, &answer);
                            busy.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!(error = %e, "no thread to answer a stack request");
                    }
                }
            }
        })
}

/// Requests answered at once; past it, new ones are left unanswered (the
/// collector names the node as not answering) until one is done.
const MAX_IN_FLIGHT: usize = 4;

/// Posts `answer` to the collector.
fn deliver(client: &Client, req: &StackRequest, answer: &StackAnswer) {
    let body = serde_json::to_vec(answer).expect("answer serializes");
    match client.post(ANSWERS_PATH, "application/json", &body, false, &[]) {
        Ok(_) => {}
        // The asker stopped waiting before this node was done: expected of
        // a slow node, not a fault.
        Err(e) if e.status() == Some(404) => tracing::info!(
            request = %req.id,
            "stack answer came after the collector stopped waiting for it"
        ),
        Err(e) => {
            tracing::warn!(request = %req.id, error = %e, "stack answer not delivered")
        }
    }
}

/// This node's answer to `req`: a snapshot (or, for a profile request, a
/// profile) of the matching processes, or "nothing here".
pub fn answer(req: &StackRequest, node: &str, outbox: &Outbox) -> StackAnswer {
    answer_from(req, node, outbox, None)
}

/// [`answer`], for an agent reporting to `collector`: a preflight's clock
/// check measures this node's clock against it.
pub fn answer_from(
    req: &StackRequest,
    node: &str,
    outbox: &Outbox,
    collector: Option<&str>,
) -> StackAnswer {
    if let Some(spec) = &req.preflight {
        let (preflight, note) = match preflight(spec, node, req.deadline, collector) {
            Ok(r) => (Some(r), None),
            Err(why) => (None, Some(why)),
        };
        return StackAnswer {
            note,
            preflight,
            ..StackAnswer::empty(req.id, node)
        };
    }
    let started = Instant::now();
    let found = find(&req.target, outbox);
    if found.roots.is_empty() && found.gone.is_empty() {
        return StackAnswer {
            runs: found.runs,
            note: Some(format!("no {} on node {node}", req.target.describe())),
            ..StackAnswer::empty(req.id, node)
        };
    }
    if let Some(spec) = req.profile {
        let profile = profile(&found, spec, node);
        return StackAnswer {
            runs: found.runs,
            profile: Some(profile),
            ..StackAnswer::empty(req.id, node)
        };
    }
    let mut snap = if found.roots.is_empty() {
        StackSnapshot::merge(Vec::new(), None)
    } else {
        plumb_stack::snapshot(
            &found.roots,
            &plumb_stack::Options {
                locals: req.locals,
                host: node.to_string(),
                ..plumb_stack::Options::default()
            },
        )
    };
    // A run whose recorder still holds its spool file but whose process is
    // gone is said, as a process with what is missing, like any other.
    for run in &found.gone {
        snap.processes.push(ProcessSnapshot {
            host: node.to_string(),
            pid: run.pid,
            command: run.argv.join(" "),
            state: "gone".into(),
            missing: vec![gone(run)],
            ..ProcessSnapshot::default()
        });
    }
    snap.reason = req.reason.clone();
    snap.took_ns = started.elapsed().as_nanos() as i64;
    if snap.processes.is_empty() {
        snap.taken = Timestamp::now();
    }
    StackAnswer {
        runs: found.runs,
        snapshot: Some(snap),
        ..StackAnswer::empty(req.id, node)
    }
}

/// The processes of this node a request's target names.
struct Found {
    /// Live processes to look at (each with its descendants).
    roots: Vec<u32>,
    /// The runs matched.
    runs: Vec<plumb_model::Uuid>,
    /// Runs recorded as running whose process is gone.
    gone: Vec<Run>,
}

fn find(target: &StackTarget, outbox: &Outbox) -> Found {
    let mut found = Found {
        roots: Vec::new(),
        runs: Vec::new(),
        gone: Vec::new(),
    };
    if let StackTarget::Pid { pid } = target {
        if plumb_stack::proc::exists(*pid) {
            found.roots.push(*pid);
        }
        return found;
    }
    for run in running_runs(outbox) {
        let wanted = match target {
            StackTarget::Run { run: id } => run.id.to_string() == *id,
            StackTarget::Name { name } => run.name == *name,
            StackTarget::Node => true,
            StackTarget::Pid { .. } => false,
        };
        if !wanted {
            continue;
        }
        found.runs.push(run.id);
        if plumb_stack::proc::is_run_process(run.pid, run.started.as_nanos()) {
            found.roots.push(run.pid);
        } else {
            found.gone.push(run);
        }
    }
    found
}

/// What is missing of a run whose process is gone.
fn gone(run: &Run) -> Missing {
    Missing {
        what: "process".into(),
        reason: MissingReason::Gone,
        detail: format!(
            "run {} ({}) is recorded as running, but its process {} is gone (or the pid is another program's now)",
            run.id, run.name, run.pid
        ),
    }
}

/// Samples the processes found for `spec`'s window.
fn profile(found: &Found, spec: ProfileSpec, node: &str) -> Profile {
    let mut p = plumb_stack::profile::profile(
        &found.roots,
        &plumb_stack::profile::ProfileOptions {
            duration: Duration::from_millis(spec.duration_ms),
            rate_hz: spec.rate_hz,
            idle: spec.idle,
            lines: spec.lines,
            host: node.to_string(),
            ..plumb_stack::profile::ProfileOptions::default()
        },
    );
    for run in &found.gone {
        p.processes.push(ProcessProfile {
            host: node.to_string(),
            pid: run.pid,
            command: run.argv.join(" "),
            missing: vec![gone(run)],
            ..ProcessProfile::default()
        });
    }
    p
}

/// The runs being recorded into `outbox` right now: its locked spool
/// files, each with the last run record it holds.
pub fn running_runs(outbox: &Outbox) -> Vec<Run> {
    outbox
        .entries()
        .iter()
        .filter(|e| plumb_ship::outbox::is_being_written(&e.path))
        .filter_map(|e| last_run_record(&e.path))
        .filter(|r| r.state == RunState::Running)
        .collect()
}

/// The last whole run record of a spool file, reading only run frames'
/// payloads and seeking over output chunks (a spool can hold gigabytes of
/// output).
fn last_run_record(path: &Path) -> Option<Run> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut pos = 0u64;
    let mut last = None;
    // Bounded: every turn moves `pos` forward by a whole frame.
    while pos + (HEADER as u64) < len {
        let mut head = [0u8; HEADER];
        f.read_exact(&mut head).ok()?;
        let Ok(h) = Header::parse(&head) else {
            break;
        };
        let end = pos + h.frame_len() as u64;
        if end > len {
            // The recorder is writing this frame right now.
            break;
        }
        let mut kind = [0u8; 1];
        f.read_exact(&mut kind).ok()?;
        if kind[0] == KIND_RUN {
            let mut payload = vec![KIND_RUN; h.len as usize];
            f.read_exact(&mut payload[1..]).ok()?;
            if h.check(&payload).is_ok()
                && let Ok(run) = serde_json::from_slice::<Run>(&payload[1..])
            {
                last = Some(run);
            }
        } else {
            f.seek(SeekFrom::Start(end)).ok()?;
        }
        pos = end;
    }
    last
}

/// This node's answer to a rerun request: the run started (by
/// [`rerun`]), or why not.
fn rerun_answer(
    req: &StackRequest,
    order: &RerunOrder,
    node: &str,
    collector: &str,
    allowed: bool,
) -> StackAnswer {
    let outcome = if allowed {
        match rerun(order, node, collector) {
            Ok(pid) => RerunOutcome::Started { pid },
            Err(why) => RerunOutcome::Refused { why },
        }
    } else {
        RerunOutcome::Refused {
            why: "reruns are off on this node (start its agent with --allow-reruns to let the collector's admins start recorded runs again there)".into(),
        }
    };
    if let RerunOutcome::Refused { why } = &outcome {
        tracing::info!(original = %order.original, "rerun refused: {why}");
    }
    StackAnswer {
        rerun: Some(outcome),
        ..StackAnswer::empty(req.id, node)
    }
}

/// This node's answer to a chaos order: what [`crate::chaos::Chaos`]
/// did, or that chaos is off here.
fn chaos_answer(
    req: &StackRequest,
    order: &plumb_model::chaos::ChaosOrder,
    node: &str,
    chaos: Option<&crate::chaos::Chaos>,
) -> StackAnswer {
    let outcome = match chaos {
        Some(c) => c.answer(order, node),
        None => {
            tracing::info!(scenario = %order.scenario, target = %order.target, "chaos refused: it is off on this node");
            plumb_model::chaos::ChaosOutcome::Refused {
                why: crate::chaos::OFF.into(),
            }
        }
    };
    StackAnswer {
        chaos: Some(outcome),
        ..StackAnswer::empty(req.id, node)
    }
}

/// Starts `order` again on this node: this executable as `plumb run
/// --run-id ID --tag rerun_of=ORIGINAL ...` in the recorded directory,
/// with the recorded environment, as the recorded user (switched to when
/// the agent is root), shipping to `collector`. Returns its pid, or why it
/// cannot be started. A thread of its own waits for it.
///
/// plumb's own settings (`PLUMB_*`) are the agent's when the run's user
/// is the agent's, else the recorded ones (the user's own plumb home);
/// values plumb redacted come from the agent's environment or the rerun
/// is refused naming them.
pub fn rerun(order: &RerunOrder, node: &str, collector: &str) -> Result<u32, String> {
    use std::os::unix::process::CommandExt as _;
    if order.argv.is_empty() {
        return Err(format!("run {} recorded no command line", order.original));
    }
    let cwd = Path::new(&order.cwd);
    if !cwd.is_dir() {
        return Err(format!(
            "run {} ran in {}, which does not exist on node {node} now",
            order.original, order.cwd
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let user = &order.user;
    let who = if user.name.is_empty() {
        format!("uid {}", user.uid)
    } else {
        format!("{} (uid {})", user.name, user.uid)
    };
    let switch = user.uid != euid;
    if switch {
        if euid != 0 {
            return Err(format!(
                "the run ran as {who}; this agent runs as uid {euid}, not root, so it cannot start it as that user"
            ));
        }
        if let Some(why) = user_gone(user) {
            return Err(why);
        }
    }
    let agent_env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let secrets: BTreeMap<String, String> = agent_env
        .iter()
        .filter(|(k, _)| !k.starts_with("PLUMB_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (mut env, notes) =
        plumb_model::rerun::environment(&order.env, &secrets, &mut |_| None).map_err(|missing| {
            format!(
                "the run's environment had values plumb redacted and never stored: {}; set them in the environment of the agent on {node} (they are taken from there)",
                missing.join(", ")
            )
        })?;
    for n in notes {
        tracing::info!(original = %order.original, "rerun: {n}");
    }
    let settings = if switch { &order.env } else { &agent_env };
    for (k, v) in settings {
        if k.starts_with("PLUMB_")
            && !plumb_model::rerun::PER_RUN.contains(&k.as_str())
            && !plumb_model::is_redacted(v)
        {
            env.insert(k.clone(), v.clone());
        }
    }
    env.insert("PLUMB_COLLECTOR".into(), collector.to_string());
    let exe = std::env::current_exe().map_err(|e| format!("finding plumb's executable: {e}"))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(plumb_model::rerun::run_args(order, Some(order.run_id)))
        .current_dir(cwd)
        .env_clear()
        .envs(&env)
        .stdin(std::process::Stdio::null())
        // Apart, as the original's were when recorded from a terminal or
        // a pipeline: the recorder keeps stdout and stderr as two streams
        // when they go to different places. plumb's own lines on stderr
        // go to the agent's log.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // Its own process group: signals meant for the agent are not its.
        .process_group(0);
    if switch {
        let (uid, gid) = (user.uid, user.gid);
        let groups: Vec<libc::gid_t> = if user.groups.is_empty() {
            vec![gid]
        } else {
            user.groups.clone()
        };
        // SAFETY: only async-signal-safe calls between fork and exec:
        // setgroups, setgid, setuid, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "starting {} run as {who} in {}: {e}",
            exe.display(),
            order.cwd
        )
    })?;
    let pid = child.id();
    let (original, run_id) = (order.original, order.run_id);
    tracing::info!(%original, %run_id, pid, "rerun started");
    let stderr = child.stderr.take();
    let reaped = std::thread::Builder::new()
        .name("plumb-rerun".into())
        .spawn(move || {
            use std::io::BufRead as _;
            if let Some(err) = stderr {
                // Until the run ends and closes it.
                for line in std::io::BufReader::new(err).lines() {
                    match line {
                        Ok(l) if l.starts_with("plumb:") => {
                            tracing::info!(%run_id, "rerun: {l}")
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            match child.wait() {
                Ok(st) => tracing::info!(%original, %run_id, status = %st, "rerun ended"),
                Err(e) => tracing::warn!(%original, %run_id, error = %e, "waiting for a rerun"),
            }
        });
    if let Err(e) = reaped {
        tracing::warn!(error = %e, "no thread to wait for a rerun; it is reaped when the agent exits");
    }
    Ok(pid)
}

/// Why `user` cannot be switched to on this node: its uid has no account,
/// or the account has another name now.
fn user_gone(user: &plumb_model::UserInfo) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: passwd is plain data filled by getpwuid_r before use.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf's length is given.
    let rc =
        unsafe { libc::getpwuid_r(user.uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return Some(format!(
            "the run ran as {} (uid {}), which has no account on this node now",
            if user.name.is_empty() {
                "a user"
            } else {
                &user.name
            },
            user.uid
        ));
    }
    // SAFETY: getpwuid_r succeeded: pw_name points into buf, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_string_lossy();
    if !user.name.is_empty() && name != user.name {
        return Some(format!(
            "the run ran as {} (uid {}); uid {} is {name} on this node now",
            user.name, user.uid, user.uid
        ));
    }
    None
}

/// Runs a preflight spec on this node through `plumb preflight - --json`
/// (the agent is the `plumb` executable, which switches to the spec's
/// user itself when the spec says `run_as`), the spec on stdin, killed at
/// the collector's deadline. The results name the node as the collector
/// knows it.
fn preflight(
    spec: &str,
    node: &str,
    deadline: Timestamp,
    collector: Option<&str>,
) -> Result<plumb_model::preflight::HostResults, String> {
    use std::io::{Read as _, Write as _};
    let exe = std::env::current_exe().map_err(|e| format!("finding plumb's executable: {e}"))?;
    let mut cmd = std::process::Command::new(&exe);
    if let Some(url) = collector {
        cmd.env("PLUMB_COLLECTOR", url);
    }
    let mut child = cmd
        .args(["preflight", "-", "--json", "--spec-dir", "/"])
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {} preflight: {e}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(spec.as_bytes());
    }
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    // Bounded by the collector's deadline (it drops later answers).
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Timestamp::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the preflight checks took longer than the collector waits".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the preflight checks: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    match serde_json::from_slice::<plumb_model::preflight::HostResults>(&out) {
        Ok(mut r) => {
            r.node = node.to_string();
            Ok(r)
        }
        Err(_) => Err(format!(
            "the preflight checks failed ({status}): {}",
            String::from_utf8_lossy(&err).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::frame;

    fn run_frame(run: &Run, out: &mut Vec<u8>) {
        let mut p = vec![KIND_RUN];
        p.extend(serde_json::to_vec(run).unwrap());
        frame::encode(&p, out);
    }

    #[test]
    fn the_last_run_record_is_read_over_chunks_and_a_frame_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Run::new(plumb_model::new_id(), "job".into(), Timestamp::now());
        first.state = RunState::Running;
        first.pid = 10;
        let mut later = first.clone();
        later.pid = 11;
        let mut bytes = Vec::new();
        run_frame(&first, &mut bytes);
        frame::encode(&[3, 1, 2, 3, 4, 5], &mut bytes);
        run_frame(&later, &mut bytes);
        // Half a frame: the recorder is in the middle of writing it.
        let mut partial = Vec::new();
        run_frame(&first, &mut partial);
        bytes.extend_from_slice(&partial[..partial.len() / 2]);
        let path = dir.path().join("x.spool");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(last_run_record(&path).unwrap().pid, 11);
    }
}
