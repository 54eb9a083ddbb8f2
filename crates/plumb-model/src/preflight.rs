//! The results of preflight checks (`plumb preflight`), as a host reports
//! them: here, or through its agent for a fleet-wide preflight. The checks
//! themselves are in plumb-record.

use serde::{Deserialize, Serialize};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The check, in words (`path /data/in r`).
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, or why it failed.
    pub detail: String,
}

/// The results of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResults {
    /// The host (its node name, through an agent).
    pub node: String,
    /// The user the checks ran as.
    pub user: String,
    /// Every check's outcome, in the spec's order.
    pub checks: Vec<Outcome>,
}

impl HostResults {
    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }
}

/// A fleet-wide preflight's answer (`POST /api/v1/preflight`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPreflight {
    /// Its id when the collector recorded it (`/preflight/{id}` on the
    /// dashboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<crate::Uuid>,
    /// Each node that answered, by name.
    pub nodes: Vec<HostResults>,
    /// Nodes down or silent until the deadline, or whose agent could not
    /// run the checks.
    pub not_answered: Vec<crate::stack::Silent>,
}
