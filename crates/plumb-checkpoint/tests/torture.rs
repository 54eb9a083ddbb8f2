//! Crash-consistency torture: a child process saving checkpoints in a loop
//! is SIGKILLed at random moments more than a thousand times; after each
//! kill the checkpoint restored is exactly one that was fully saved.
//!
//! The child is this test binary re-executed with `CHILD_DIR` set: it runs
//! the same test function, which then takes the child's role.

mod common;

use common::{Rng, State, seed, state_for};
use plumb_checkpoint::{Checkpointer, TEMP_SUFFIX};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "PLUMB_CKPT_TORTURE_DIR";
const SHM: &str = "/dev/shm";
const WORKERS: u64 = 4;
const KILLS_PER_WORKER: u64 = 260;
/// The longest pause between the child reporting it is ready and the kill.
const MAX_DELAY_US: u64 = 50_000;

#[test]
fn sigkill_torture() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let seed = seed();
    eprintln!("torture seed {seed}");
    let tmp = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in(SHM).unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            // Half the workers write to the test's file system, half to
            // /dev/shm where fsync costs nothing: there many more saves fit
            // between kills, so kills land in every step of the protocol.
            let base = if w % 2 == 1 && Path::new(SHM).is_dir() {
                shm.path().to_path_buf()
            } else {
                tmp.path().to_path_buf()
            };
            let dir = base.join(format!("worker-{w}"));
            std::thread::spawn(move || worker(&dir, seed.wrapping_add(w)))
        })
        .collect();
    let mut kills = 0;
    let mut mid_save = 0;
    let mut highest = 0;
    for w in workers {
        let report = w.join().expect("a torture worker panicked");
        kills += report.kills;
        mid_save += report.mid_save;
        highest = highest.max(report.highest);
    }
    eprintln!(
        "{kills} kills in {:?}, {mid_save} of them during a save, highest counter {highest}",
        started.elapsed()
    );
    assert!(kills >= 1000, "only {kills} kills");
    // Proof that the kills hit the interesting moments, not only idle ones.
    assert!(
        mid_save > 0,
        "no kill landed during a save: the torture tested nothing"
    );
    assert!(
        highest > 100,
        "children saved only {highest} states in total"
    );
}

struct Report {
    kills: u64,
    mid_save: u64,
    highest: u64,
}

fn worker(dir: &Path, seed: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report {
        kills: 0,
        mid_save: 0,
        highest: 0,
    };
    for round in 0..KILLS_PER_WORKER {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "sigkill_torture",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot re-execute the test binary as the child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The counter restored by the child, from its READY line.
        let mut acked = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            // libtest prints "test sigkill_torture ... " before it.
            if let Some((_, n)) = line.split_once("READY ") {
                acked = Some(n.parse::<u64>().unwrap());
                break;
            }
        }
        let Some(mut acked) = acked else {
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: child never got ready ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::thread::sleep(Duration::from_micros(rng.below(MAX_DELAY_US)));
        child.kill().unwrap();
        child.wait().unwrap();
        report.kills += 1;
        // Every SAVED line was printed after save() returned.
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("SAVED ") {
                acked = acked.max(n.parse().unwrap());
            }
        }
        let leftover_temp = std::fs::read_dir(dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(TEMP_SUFFIX)
        });
        if leftover_temp {
            report.mid_save += 1;
        }
        let ckpt = Checkpointer::builder(dir).signals(&[]).open().unwrap();
        let restored: Option<State> = ckpt.restore().unwrap_or_else(|e| {
            panic!("round {round} (seed {seed}): restore failed after a kill: {e}")
        });
        let counter = restored.as_ref().map_or(0, |s| s.counter);
        if let Some(state) = &restored {
            assert!(
                *state == state_for(state.counter),
                "round {round} (seed {seed}): restored state with counter {} is not the one saved",
                state.counter
            );
        }
        // The save after the last acknowledged one may have completed its
        // rename before the kill, but nothing later can exist.
        assert!(
            counter == acked || counter == acked + 1,
            "round {round} (seed {seed}): restored counter {counter}, last acknowledged save {acked}"
        );
        report.highest = report.highest.max(counter);
    }
    report
}

/// The child: restores, then saves ever larger counters until killed.
fn child(dir: &Path) -> ! {
    let mut ckpt = Checkpointer::builder(dir)
        .signals(&[])
        .open()
        .expect("child cannot open");
    let mut counter = ckpt
        .restore::<State>()
        .expect("child cannot restore")
        .map_or(0, |s| s.counter);
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {counter}").unwrap();
    out.flush().unwrap();
    // Bounded: the parent kills it long before.
    for _ in 0..100_000 {
        counter += 1;
        ckpt.save(&state_for(counter)).expect("child save failed");
        writeln!(out, "SAVED {counter}").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(3)
}
