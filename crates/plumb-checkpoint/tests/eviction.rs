//! Eviction signals: a real child process gets the signal mid-work, saves at
//! its next safe point and exits with code 75; restarted, it resumes from
//! exactly that state.
//!
//! Each test re-executes this test binary with `CHILD_DIR` set, running the
//! same test function, which then takes the child's role.

mod common;

use common::{State, state_for};
use plumb_checkpoint::{Checkpointer, EXIT_EVICTED};
use std::io::{BufRead, BufReader, Lines};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "PLUMB_CKPT_EVICT_DIR";
const CHILD_SIGNALS: &str = "PLUMB_CKPT_EVICT_SIGNALS";
const CHILD_DROP_FIRST: &str = "PLUMB_CKPT_EVICT_DROP_FIRST";

/// The child's work loop: one step per millisecond, a safe point after each.
fn child(dir: &Path) -> ! {
    let mut builder = Checkpointer::builder(dir).every_steps(1_000_000);
    if let Ok(list) = std::env::var(CHILD_SIGNALS) {
        let signals: Vec<i32> = list.split(',').map(|s| s.parse().unwrap()).collect();
        builder = builder.signals(&signals);
    }
    let mut ckpt = builder.open().unwrap();
    let mut counter = ckpt.restore::<State>().unwrap().map_or(0, |s| s.counter);
    if std::env::var_os(CHILD_DROP_FIRST).is_some() {
        drop(ckpt);
        println!("READY {counter}");
        std::thread::sleep(Duration::from_secs(20));
        std::process::exit(4);
    }
    println!("READY {counter}");
    for _ in 0..20_000 {
        counter += 1;
        std::thread::sleep(Duration::from_millis(1));
        println!("STEP {counter}");
        ckpt.at_safe_point(&state_for(counter)).unwrap();
    }
    std::process::exit(3)
}

fn child_mode() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
    }
}

struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    ready_at: u64,
}

fn spawn(test: &str, dir: &Path, envs: &[(&str, &str)]) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready_at = loop {
        let line = lines
            .next()
            .expect("child ended before it was ready")
            .unwrap();
        // libtest prints "test NAME ... " before it.
        if let Some((_, n)) = line.split_once("READY ") {
            break n.parse().unwrap();
        }
    };
    Running {
        child,
        lines,
        ready_at,
    }
}

/// Sends `signal` after a little work, and returns the exit status and the
/// last step the child reported.
fn evict(mut running: Running, signal: i32) -> (ExitStatus, u64) {
    std::thread::sleep(Duration::from_millis(40));
    let pid = running.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "child did not exit within 20 s of signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut last = running.ready_at;
    for line in running.lines {
        if let Some((_, n)) = line.unwrap().split_once("STEP ") {
            last = n.parse().unwrap();
        }
    }
    (status, last)
}

fn restored(dir: &Path) -> Option<State> {
    Checkpointer::builder(dir)
        .signals(&[])
        .open()
        .unwrap()
        .restore()
        .unwrap()
}

#[test]
fn each_default_signal_saves_then_exits_75_and_the_restart_resumes() {
    child_mode();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut resumed_from = 0;
    for signal in [libc::SIGTERM, libc::SIGQUIT, libc::SIGUSR1] {
        let running = spawn(
            "each_default_signal_saves_then_exits_75_and_the_restart_resumes",
            dir,
            &[],
        );
        assert_eq!(
            running.ready_at, resumed_from,
            "the restarted child did not resume from the saved state"
        );
        let (status, last_step) = evict(running, signal);
        assert_eq!(
            status.code(),
            Some(EXIT_EVICTED),
            "signal {signal}: {status}"
        );
        assert!(last_step > resumed_from, "signal {signal}: no work done");
        // The state saved is the one of the step at which the signal was
        // noticed, and it is complete.
        assert_eq!(restored(dir), Some(state_for(last_step)), "signal {signal}");
        resumed_from = last_step;
    }
}

#[test]
fn only_the_configured_signals_are_caught() {
    child_mode();
    let tmp = tempfile::tempdir().unwrap();
    let usr2 = libc::SIGUSR2.to_string();
    let envs = [(CHILD_SIGNALS, usr2.as_str())];
    let test = "only_the_configured_signals_are_caught";
    let (status, last) = evict(spawn(test, tmp.path(), &envs), libc::SIGUSR2);
    assert_eq!(status.code(), Some(EXIT_EVICTED), "{status}");
    assert_eq!(restored(tmp.path()), Some(state_for(last)));
    // SIGTERM is not in the list: it keeps its default action.
    let (status, _) = evict(spawn(test, tmp.path(), &envs), libc::SIGTERM);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert_eq!(restored(tmp.path()), Some(state_for(last)));
}

#[test]
fn dropping_the_checkpointer_gives_signals_back_their_default_action() {
    child_mode();
    let tmp = tempfile::tempdir().unwrap();
    let running = spawn(
        "dropping_the_checkpointer_gives_signals_back_their_default_action",
        tmp.path(),
        &[(CHILD_DROP_FIRST, "1")],
    );
    let (status, _) = evict(running, libc::SIGTERM);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
}
