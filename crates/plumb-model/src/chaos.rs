//! Chaos faults on other machines: a `plumb chaos run` scenario's target
//! with `node = "NAME"` is faulted by that node's agent, through the
//! collector.
//!
//! [`ChaosOrder`] is what the collector hands the node's agent (in
//! `StackRequest.chaos`), [`ChaosOutcome`] what the agent answers,
//! [`ChaosQuery`]/[`ChaosInjected`] the `POST /api/v1/chaos/inject`
//! exchange between the CLI and the collector. The agent carries out the
//! whole fault, its removal included (SIGCONT after a pause, SIGKILL after
//! an eviction's grace), so nothing stays broken when the scenario's
//! `plumb chaos run` dies.

use crate::{Timestamp, Uuid};
use serde::{Deserialize, Serialize};

/// The fault kinds an agent carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChaosKind {
    /// One process gets `signal` (SIGKILL or SIGTERM).
    Kill,
    /// One process gets the warning `signal`, then SIGKILL after the grace
    /// (`duration_ms`) if still alive.
    Evict,
    /// SIGSTOP, then SIGCONT after `duration_ms`.
    Pause,
    /// CPU pressure on the node: `workers` busy workers for `duration_ms`.
    Cpu,
    /// Memory pressure on the node: `size` bytes resident for
    /// `duration_ms`.
    Memory,
}

impl ChaosKind {
    /// Its name in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            ChaosKind::Kill => "kill",
            ChaosKind::Evict => "evict",
            ChaosKind::Pause => "pause",
            ChaosKind::Cpu => "cpu",
            ChaosKind::Memory => "memory",
        }
    }
}

/// Which processes of the node a target stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum ChaosSelect {
    /// Every process with this exact name (`/proc/PID/comm`).
    Process(String),
    /// Every process whose command line matches this regular expression.
    Pattern(String),
    /// The processes of the running plumb runs of this name on the node.
    Run(String),
    /// No process: the node itself (cpu and memory pressure).
    Host,
}

impl ChaosSelect {
    /// In words, as a scenario says it (`pattern "worker\.py"`).
    pub fn describe(&self) -> String {
        match self {
            ChaosSelect::Process(n) => format!("process {n:?}"),
            ChaosSelect::Pattern(p) => format!("pattern {p:?}"),
            ChaosSelect::Run(r) => format!("run {r:?}"),
            ChaosSelect::Host => "the node itself".to_string(),
        }
    }
}

/// One fault for a node's agent to carry out on its own processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosOrder {
    /// What to do.
    pub kind: ChaosKind,
    /// The target's name in the scenario (for messages).
    pub target: String,
    /// The processes the target stands for.
    pub select: ChaosSelect,
    /// kill: SIGKILL or SIGTERM; evict: the warning signal. By name
    /// (`SIGTERM`), as signal numbers differ between architectures.
    pub signal: String,
    /// pause: how long the processes stay stopped; evict: the grace;
    /// kill: 0.
    pub duration_ms: u64,
    /// pause: every process of the target, not one.
    #[serde(default)]
    pub all: bool,
    /// kill: chosen among every process (a remote target has no main one,
    /// so this changes nothing; kept for the scenario's meaning).
    #[serde(default)]
    pub any: bool,
    /// The seed of the choice of process.
    pub seed: u64,
    /// The scenario's title (the agent's log says it).
    #[serde(default)]
    pub scenario: String,
    /// This injection's id, chosen by the scenario's run, so it can be
    /// ended early (nil: it cannot).
    #[serde(default)]
    pub id: Uuid,
    /// Do not inject: remove injection `id` now, before its time (the
    /// scenario's run was stopped).
    #[serde(default)]
    pub end: bool,
    /// cpu: how many busy workers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workers: u64,
    /// memory: how many bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// cpu and memory: what makes the load on the node (`stress-ng` or
    /// `plumb`; its own choice when not said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ChaosOrder {
    /// The order that removes this one's injection now.
    pub fn ending(&self) -> ChaosOrder {
        ChaosOrder {
            end: true,
            ..self.clone()
        }
    }
}

/// One process a fault hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosHit {
    /// Its pid on the node.
    pub pid: u32,
    /// Its command line.
    pub command: String,
}

/// A node's answer to a [`ChaosOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ChaosOutcome {
    /// The fault is in place; the agent removes it itself.
    Injected {
        /// What was done, in words.
        what: String,
        /// The processes signalled.
        hit: Vec<ChaosHit>,
        /// When (the node's clock).
        injected: Timestamp,
        /// How the agent removes it, in words (`SIGCONT after 2s`);
        /// empty when there is nothing to remove (a kill).
        #[serde(default)]
        removal: String,
    },
    /// An injection was removed before its time (an order with `end`).
    Ended {
        /// What removing it did, in words.
        what: String,
    },
    /// Nothing was done.
    Refused {
        /// Why, in words (no process matches, chaos is off on the node).
        why: String,
    },
}

/// `POST /api/v1/chaos/inject`: what `plumb chaos run` asks for one
/// injection on a remote target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosQuery {
    /// The node whose agent carries it out.
    pub node: String,
    /// The fault.
    pub order: ChaosOrder,
    /// How long to wait for the agent's answer, milliseconds.
    pub wait_ms: u64,
}

/// The answer of `POST /api/v1/chaos/inject`: the fault is in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosInjected {
    /// The node whose agent did it.
    pub node: String,
    /// What was done, in words.
    pub what: String,
    /// The processes signalled.
    pub hit: Vec<ChaosHit>,
    /// When (the node's clock).
    pub injected: Timestamp,
    /// How the agent removes it, in words.
    #[serde(default)]
    pub removal: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_outcomes_read_back_as_written() {
        let order = ChaosOrder {
            kind: ChaosKind::Pause,
            target: "workers".into(),
            select: ChaosSelect::Pattern("worker\\.py".into()),
            signal: "SIGTERM".into(),
            duration_ms: 2000,
            all: true,
            any: false,
            seed: 7,
            scenario: "t".into(),
            id: crate::new_id(),
            end: false,
            workers: 0,
            size: 0,
            with: None,
        };
        let json = serde_json::to_string(&order).unwrap();
        // What a pause does not use is left out, so older agents read it.
        assert!(
            !json.contains(r#""workers":"#) && !json.contains(r#""with":"#),
            "{json}"
        );
        assert!(json.contains(r#""kind":"pause""#), "{json}");
        assert!(
            json.contains(r#""select":{"by":"pattern","value":"worker\\.py"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ChaosOrder>(&json).unwrap(), order);
        let ending = order.ending();
        assert!(ending.end && ending.id == order.id);
        // Without id and end (an older plumb chaos): nil, inject.
        let old = json
            .replace(&format!(r#","id":"{}""#, order.id), "")
            .replace(r#","end":false"#, "");
        let read: ChaosOrder = serde_json::from_str(&old).unwrap();
        assert!(read.id.is_nil() && !read.end, "{old}");
        // Pressure on the node itself.
        let cpu = ChaosOrder {
            kind: ChaosKind::Cpu,
            select: ChaosSelect::Host,
            workers: 2,
            with: Some("stress-ng".into()),
            ..order.clone()
        };
        let json = serde_json::to_string(&cpu).unwrap();
        assert!(json.contains(r#""select":{"by":"host"}"#), "{json}");
        assert_eq!(serde_json::from_str::<ChaosOrder>(&json).unwrap(), cpu);
        let out = ChaosOutcome::Refused { why: "no".into() };
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(json, r#"{"outcome":"refused","why":"no"}"#);
        assert_eq!(serde_json::from_str::<ChaosOutcome>(&json).unwrap(), out);
    }
}
