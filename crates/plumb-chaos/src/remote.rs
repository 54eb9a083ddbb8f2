//! Faults on another machine's processes: a target with `node = "NAME"`
//! is faulted by that node's `plumb agent` (started with
//! `--allow-chaos`), through the collector.
//!
//! The scenario's side turns one injection into a
//! [`plumb_model::chaos::ChaosOrder`] ([`order`]); the engine hands it to
//! the caller's [`Dispatch`] (the CLI posts it to the collector). The
//! agent's side is [`carry_out`]: the same process matching, seeded
//! choice, signalling and journal as a local fault ([`crate::fault`]),
//! and [`finish`], which the agent calls itself after the fault's
//! duration (SIGCONT after a pause, SIGKILL after an eviction's grace),
//! so nothing stays broken when the scenario's `plumb chaos run` dies. A
//! run that is stopped early sends each injection's
//! [`ChaosOrder::ending`], and the agent removes it at once.

use crate::fault::{self, Active, World};
use crate::journal::Journal;
use crate::scenario::{Fault, FaultKind, Fill, Load, Schedule, Target, TargetKind, human};
use crate::target::RunResolver;
use anyhow::{Result, anyhow, bail};
use plumb_model::Timestamp;
use plumb_model::chaos::{ChaosHit, ChaosInjected, ChaosKind, ChaosOrder, ChaosSelect};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Hands one order to node `node`'s agent and returns what it did (the
/// CLI gives one that goes through the collector); an error says why
/// nothing was done.
pub type Dispatch = dyn Fn(&str, &ChaosOrder) -> Result<ChaosInjected>;

/// The order for one injection of `f` on `t`, a target with a node (or,
/// for cpu and memory pressure, on the fault's own node, `t` being
/// `None`); the agent chooses the process with `seed`.
pub fn order(f: &Fault, t: Option<&Target>, seed: u64, scenario: &str) -> Result<ChaosOrder> {
    let kind = match f.kind {
        FaultKind::Kill => ChaosKind::Kill,
        FaultKind::Evict => ChaosKind::Evict,
        FaultKind::Pause => ChaosKind::Pause,
        FaultKind::Cpu => ChaosKind::Cpu,
        FaultKind::Memory => ChaosKind::Memory,
        other => bail!(
            "fault {} cannot be carried out on another node (only kill, evict, pause, cpu and memory)",
            other.as_str()
        ),
    };
    let (target, select) = match t {
        None => (f.on.clone(), ChaosSelect::Host),
        Some(t) => (
            t.name.clone(),
            match &t.kind {
                TargetKind::Name(n) => ChaosSelect::Process(n.clone()),
                TargetKind::Pattern(re) => ChaosSelect::Pattern(re.as_str().to_string()),
                TargetKind::Run(r) => ChaosSelect::Run(r.clone()),
                TargetKind::Command(_) | TargetKind::Cgroup(_) => bail!(
                    "target `{}`: only process, pattern and run targets can be on another node",
                    t.name
                ),
            },
        ),
    };
    let pressure = matches!(kind, ChaosKind::Cpu | ChaosKind::Memory);
    Ok(ChaosOrder {
        kind,
        target,
        select,
        signal: crate::scenario::signal_name(f.signal).to_string(),
        duration_ms: f.duration.as_millis() as u64,
        all: f.all,
        any: f.any,
        seed,
        scenario: scenario.to_string(),
        id: plumb_model::new_id(),
        end: false,
        workers: if kind == ChaosKind::Cpu {
            f.workers as u64
        } else {
            0
        },
        size: if kind == ChaosKind::Memory { f.size } else { 0 },
        with: if pressure { f.with.clone() } else { None },
    })
}

/// A fault carried out on this machine for another machine's scenario.
#[derive(Debug)]
pub struct Carried {
    /// What was done, in words.
    pub what: String,
    /// The processes signalled.
    pub hit: Vec<ChaosHit>,
    /// When.
    pub injected: Timestamp,
    /// How it is removed, in words (empty for a kill).
    pub removal: String,
    /// What to remove with [`finish`] once this long has passed; `None`
    /// when nothing is left to remove (a kill).
    pub pending: Option<(Duration, Active)>,
}

/// Carries out `order` on this machine's processes: the target's
/// processes found as a local scenario finds them (never the caller or
/// its ancestors; a run by name through `runs`), one chosen with the
/// order's seed (every one for a pause with `all`), journaled in
/// `journal` before it is done, and signalled only while still
/// themselves. The caller removes it with [`finish`] after
/// [`Carried::pending`]'s duration.
pub fn carry_out(order: &ChaosOrder, journal: &Journal, runs: &RunResolver) -> Result<Carried> {
    let kind = match order.kind {
        ChaosKind::Kill => FaultKind::Kill,
        ChaosKind::Evict => FaultKind::Evict,
        ChaosKind::Pause => FaultKind::Pause,
        ChaosKind::Cpu => FaultKind::Cpu,
        ChaosKind::Memory => FaultKind::Memory,
    };
    let load = match order.with.as_deref() {
        _ if !matches!(kind, FaultKind::Cpu | FaultKind::Memory) => Load::Plumb,
        Some("plumb") => Load::Plumb,
        Some("stress-ng") => Load::StressNg(crate::scenario::stress_ng().ok_or_else(|| {
            anyhow!("with = \"stress-ng\", but stress-ng is not on PATH on this node (Debian: apt install stress-ng)")
        })?),
        Some(other) => bail!("with = {other:?}: \"stress-ng\" or \"plumb\""),
        None => crate::scenario::stress_ng().map_or(Load::Plumb, Load::StressNg),
    };
    if kind == FaultKind::Cpu && !(1..=1024).contains(&order.workers) {
        bail!("cpu takes 1 to 1024 workers, not {}", order.workers);
    }
    if kind == FaultKind::Memory && order.size == 0 {
        bail!("memory needs a size");
    }
    let signal = crate::scenario::signal_number(&order.signal)
        .ok_or_else(|| anyhow!("signal {:?} is not one plumb sends", order.signal))?;
    if kind == FaultKind::Kill && signal != libc::SIGKILL && signal != libc::SIGTERM {
        bail!("kill sends SIGKILL or SIGTERM, not {}", order.signal);
    }
    let target_kind = match &order.select {
        ChaosSelect::Process(n) => TargetKind::Name(n.clone()),
        ChaosSelect::Pattern(p) => TargetKind::Pattern(
            regex::Regex::new(p).map_err(|e| anyhow!("pattern {p:?} is not a regex: {e}"))?,
        ),
        ChaosSelect::Run(r) => TargetKind::Run(r.clone()),
        // Pressure acts on the node, not on a process.
        ChaosSelect::Host => TargetKind::Name(String::new()),
    };
    let target = Target {
        name: order.target.clone(),
        kind: target_kind,
        node: None,
        line: 0,
    };
    let duration = Duration::from_millis(order.duration_ms);
    let f = Fault {
        kind,
        on: order.target.clone(),
        schedule: Schedule::At(Duration::ZERO),
        duration,
        signal,
        offset: String::new(),
        env_set: BTreeMap::new(),
        env_remove: Vec::new(),
        user: None,
        path: PathBuf::new(),
        size: order.size,
        latency: Duration::ZERO,
        all: order.all,
        any: order.any,
        workers: order.workers.max(1) as usize,
        load,
        fill: Fill::Tmpfs,
        percent: 0.0,
        rate: String::new(),
        from: Vec::new(),
        node: None,
        with: None,
        line: 0,
    };
    let mut started = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(order.seed);
    let mut world = World {
        targets: std::slice::from_ref(&target),
        started: &mut started,
        runs,
        proxy: None,
        net: None,
        journal,
        base: Path::new("/"),
        rng: &mut rng,
    };
    let injected = Timestamp::now();
    let (what, active) = fault::inject(&f, &mut world)?;
    let hit = active
        .hit
        .iter()
        .map(|p| ChaosHit {
            pid: p.pid,
            command: p.cmdline.clone(),
        })
        .collect();
    let (removal, pending) = match kind {
        FaultKind::Pause => (
            format!("SIGCONT after {}", human(duration)),
            Some((duration, active)),
        ),
        FaultKind::Evict => (
            format!("SIGKILL after {} grace if still alive", human(duration)),
            Some((duration, active)),
        ),
        FaultKind::Cpu | FaultKind::Memory => (
            format!("load removed after {}", human(duration)),
            Some((duration, active)),
        ),
        _ => (String::new(), None),
    };
    Ok(Carried {
        what,
        hit,
        injected,
        removal,
        pending,
    })
}

/// Removes a fault [`carry_out`] left pending (SIGCONT, or SIGKILL after
/// the grace) and removes its journal entry; returns what was done.
pub fn finish(active: Active, journal: &Journal) -> Result<String> {
    let mut started = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(0);
    let none = |_: &str| -> Result<Vec<u32>> { Ok(Vec::new()) };
    let mut world = World {
        targets: &[],
        started: &mut started,
        runs: &none,
        proxy: None,
        net: None,
        journal,
        base: Path::new("/"),
        rng: &mut rng,
    };
    fault::remove(active, &mut world)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process of our own with a unique command line, reaped on drop.
    struct Sleeper(std::process::Child, String);

    impl Sleeper {
        fn start() -> Sleeper {
            let marker = format!("plumb-remote-test-{}", plumb_model::new_id().simple());
            let child = std::process::Command::new("bash")
                .args(["-c", &format!("exec -a {marker} sleep 60")])
                .spawn()
                .unwrap();
            // Bounded: exec happens at once.
            for _ in 0..200 {
                if crate::procs::read(child.id()).is_some_and(|p| p.cmdline.starts_with(&marker)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Sleeper(child, marker)
        }

        fn state(&self) -> char {
            crate::procs::read(self.0.id()).map_or('?', |p| p.state)
        }

        /// Whether its state comes to be `stopped` (T) or not within 5 s
        /// (a signal reaches a running process a moment after kill(2)).
        fn becomes(&self, stopped: bool) -> bool {
            for _ in 0..500 {
                if (self.state() == 'T') == stopped {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn pause_order(marker: &str) -> ChaosOrder {
        ChaosOrder {
            kind: ChaosKind::Pause,
            target: "sleeper".into(),
            select: ChaosSelect::Pattern(format!("^{marker} ")),
            signal: "SIGTERM".into(),
            duration_ms: 60_000,
            all: false,
            any: false,
            seed: 1,
            scenario: "test".into(),
            id: plumb_model::new_id(),
            end: false,
            workers: 0,
            size: 0,
            with: None,
        }
    }

    #[test]
    fn a_pause_is_journaled_and_finished_by_whoever_holds_it() {
        let home = tempfile::tempdir().unwrap();
        let s = Sleeper::start();
        let journal = Journal::open(home.path(), "agent-test").unwrap();
        let none = |_: &str| -> Result<Vec<u32>> { Ok(Vec::new()) };
        let c = carry_out(&pause_order(&s.1), &journal, &none).unwrap();
        assert_eq!(c.hit.len(), 1);
        assert_eq!(c.hit[0].pid, s.0.id());
        assert!(c.hit[0].command.starts_with(&s.1), "{:?}", c.hit);
        assert_eq!(c.removal, "SIGCONT after 1m00s");
        assert!(s.becomes(true), "stopped: {}", s.state());
        let entries = std::fs::read_dir(crate::journal::dir(home.path()))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count();
        assert_eq!(entries, 1, "the pause is journaled before it is done");
        let (_, active) = c.pending.unwrap();
        let said = finish(active, &journal).unwrap();
        assert_eq!(said, "SIGCONT 1 process(es)");
        assert!(s.becomes(false), "continued: {}", s.state());
        assert!(
            crate::journal::replay(home.path()).unwrap().is_empty(),
            "finishing removes the journal entry"
        );
        journal.close();
    }

    #[test]
    fn a_dead_holders_pause_is_continued_by_the_replay() {
        let home = tempfile::tempdir().unwrap();
        let s = Sleeper::start();
        let journal = Journal::open(home.path(), "agent-dead").unwrap();
        let none = |_: &str| -> Result<Vec<u32>> { Ok(Vec::new()) };
        let c = carry_out(&pause_order(&s.1), &journal, &none).unwrap();
        assert!(s.becomes(true), "stopped: {}", s.state());
        // The holder dies: its lock goes with it, its entry stays.
        drop(c);
        drop(journal);
        let done = crate::journal::replay(home.path()).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].contains("continued 1 of 1"), "{done:?}");
        assert!(s.becomes(false), "continued: {}", s.state());
    }

    #[test]
    fn nothing_matching_is_said_and_nothing_is_journaled() {
        let home = tempfile::tempdir().unwrap();
        let journal = Journal::open(home.path(), "agent-none").unwrap();
        let none = |_: &str| -> Result<Vec<u32>> { Ok(Vec::new()) };
        let mut o = pause_order("plumb-remote-test-nobody-has-this");
        o.kind = ChaosKind::Kill;
        o.signal = "SIGKILL".into();
        let e = carry_out(&o, &journal, &none).unwrap_err();
        assert!(
            e.to_string().contains("target `sleeper` has no process"),
            "{e}"
        );
        o.signal = "SIGUSR1".into();
        let e = carry_out(&o, &journal, &none).unwrap_err();
        assert!(
            e.to_string().contains("kill sends SIGKILL or SIGTERM"),
            "{e}"
        );
        journal.close();
    }
}
