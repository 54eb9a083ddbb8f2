//! Chaos faults on this node for a scenario run elsewhere (`plumb chaos
//! run` with a target that says `node = "THIS NODE"`), when the agent was
//! started with `--allow-chaos`.
//!
//! The collector hands the agent a [`ChaosOrder`] (in
//! `StackRequest.chaos`); [`Chaos::answer`] carries it out with
//! `plumb_chaos::remote::carry_out` (the same process matching, seeded
//! choice, signalling and cleanup journal as a local scenario) and answers
//! at once with the processes it signalled. The removal is the agent's
//! too: a thread of its own sends SIGCONT after a pause's duration, or
//! SIGKILL after an eviction's grace, so nothing stays broken if the
//! scenario's `plumb chaos run` dies. The journal lives under the agent's
//! plumb home (`<home>/chaos/journal`) and is replayed when the agent
//! starts ([`replay`]), so an agent killed mid-pause leaves no stopped
//! process once it is started again. A stopping agent removes what it
//! still holds first ([`Chaos::shutdown`]), and an order with `end`
//! removes its injection at once (the scenario's run was stopped).

use plumb_chaos::journal::Journal;
use plumb_model::Uuid;
use plumb_model::chaos::{ChaosOrder, ChaosOutcome};
use plumb_ship::Outbox;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the agent says when chaos is off.
pub const OFF: &str = "chaos is off on this node (start its agent with --allow-chaos to let the collector's admins kill, evict and pause processes and make CPU and memory pressure here)";

/// Undoes what a dead agent (or a dead `plumb chaos run`) of this plumb
/// home left in its journal; returns one line per thing undone.
pub fn replay(home: &Path) -> Vec<String> {
    match plumb_chaos::cleanup_leftovers(home) {
        Ok(done) => {
            for d in &done {
                tracing::info!("chaos: undone from before this start: {d}");
            }
            done
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "chaos: cannot replay the journal");
            Vec::new()
        }
    }
}

/// A removal this agent owes: set `now` to do it before its time.
#[derive(Debug)]
struct Owed {
    now: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<String>,
}

/// The agent's chaos side: its journal and the removals it owes, by the
/// injection's id.
#[derive(Debug)]
pub struct Chaos {
    journal: Arc<Journal>,
    outbox: Outbox,
    stop: Arc<AtomicBool>,
    removals: Mutex<HashMap<Uuid, Owed>>,
}

impl Chaos {
    /// Opens this agent's journal under `home` (after [`replay`]); runs
    /// named in orders are found among `outbox`'s running runs.
    pub fn open(home: &Path, outbox: Outbox) -> Result<Chaos, String> {
        let name = format!("agent-{}", plumb_model::new_id().simple());
        let journal = Journal::open(home, &name).map_err(|e| format!("{e:#}"))?;
        Ok(Chaos {
            journal: Arc::new(journal),
            outbox,
            stop: Arc::new(AtomicBool::new(false)),
            removals: Mutex::new(HashMap::new()),
        })
    }

    /// Carries out `order` on this node (named `node`) and says what it
    /// did, or why it did nothing; its removal is left to a thread of its
    /// own.
    pub fn answer(&self, order: &ChaosOrder, node: &str) -> ChaosOutcome {
        let outbox = self.outbox.clone();
        let node_name = node.to_string();
        let runs = move |name: &str| -> anyhow::Result<Vec<u32>> {
            let pids: Vec<u32> = crate::stacks::running_runs(&outbox)
                .into_iter()
                .filter(|r| r.name == name)
                .filter(|r| plumb_stack::proc::is_run_process(r.pid, r.started.as_nanos()))
                .map(|r| r.pid)
                .collect();
            if pids.is_empty() {
                anyhow::bail!(
                    "no run named `{name}` is being recorded on node {node_name} (through this agent's outbox)"
                );
            }
            Ok(pids)
        };
        if order.end {
            return self.end(order.id, node);
        }
        if self.stop.load(Ordering::Relaxed) {
            return ChaosOutcome::Refused {
                why: format!("the agent on node {node} is stopping"),
            };
        }
        let c = match plumb_chaos::remote::carry_out(order, &self.journal, &runs) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("on node {node}: {e:#}");
                tracing::info!(scenario = %order.scenario, target = %order.target, "chaos refused: {why}");
                return ChaosOutcome::Refused { why };
            }
        };
        tracing::info!(scenario = %order.scenario, target = %order.target, "chaos: {}", c.what);
        if let Some((after, active)) = c.pending {
            let (journal, stop) = (self.journal.clone(), self.stop.clone());
            let now = Arc::new(AtomicBool::new(false));
            let early = now.clone();
            let kind = order.kind.as_str();
            let spawned = std::thread::Builder::new()
                .name("plumb-chaos-removal".into())
                .spawn(move || {
                    // Bounded by the fault's duration; a stopping agent, or
                    // an order to end it, removes it at once.
                    let until = Instant::now() + after;
                    while Instant::now() < until
                        && !stop.load(Ordering::Relaxed)
                        && !early.load(Ordering::Relaxed)
                    {
                        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
                    }
                    match plumb_chaos::remote::finish(active, &journal) {
                        Ok(said) => {
                            tracing::info!("chaos: {kind} removed: {said}");
                            said
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "chaos: could not remove a {kind}");
                            format!("could not remove it: {e:#}")
                        }
                    }
                });
            match spawned {
                Ok(thread) => {
                    // An order without an id (an older plumb chaos) cannot
                    // be ended early; it is still removed in time.
                    let id = if order.id.is_nil() {
                        plumb_model::new_id()
                    } else {
                        order.id
                    };
                    let mut removals = self.removals.lock().unwrap_or_else(|e| e.into_inner());
                    removals.retain(|_, o| !o.thread.is_finished());
                    removals.insert(id, Owed { now, thread });
                }
                // The active fault was moved into the closure that did not
                // run; its journal entry stays, so the next start undoes it.
                Err(e) => {
                    tracing::warn!(error = %e, "chaos: no thread to remove a fault; the next start of the agent undoes it")
                }
            }
        }
        ChaosOutcome::Injected {
            what: c.what,
            hit: c.hit,
            injected: c.injected,
            removal: c.removal,
        }
    }

    /// Removes injection `id` now, before its time; says what that did.
    fn end(&self, id: Uuid, node: &str) -> ChaosOutcome {
        let owed = self
            .removals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match owed {
            Some(o) => {
                o.now.store(true, Ordering::Relaxed);
                // Bounded: the thread notices within 50 ms, then signals.
                let what = o
                    .thread
                    .join()
                    .unwrap_or_else(|_| "its removal failed".into());
                ChaosOutcome::Ended { what }
            }
            None => ChaosOutcome::Ended {
                what: format!("nothing of it is held on node {node} any more (already removed)"),
            },
        }
    }

    /// Removes every fault still held, at once, and waits for that.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let owed = std::mem::take(&mut *self.removals.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, o) in owed {
            let _ = o.thread.join();
        }
    }
}
