#![deny(missing_docs)]
//! `plumb-chaos`: chaos experiments against a user's own processes on a
//! plain Linux machine (`plumb chaos run SCENARIO.toml`).
//!
//! A scenario ([`scenario`]) names its targets (commands plumb starts,
//! processes by name or pattern, plumb runs by name), network links plumb
//! proxies itself, a steady-state hypothesis (HTTP, command and log
//! probes), the faults with their seeded schedules, and rollbacks.
//! [`engine::run`] checks the steady state, runs the method while the
//! probes run continuously, removes every fault, checks again and returns
//! a [`report::Report`]. Every injection that could outlive plumb is
//! written to a cleanup [`journal`] first, replayed by the next start.
//! [`ctk`] runs chaostoolkit experiment files (process and http
//! activities) the way chaostoolkit does. A target with `node = "NAME"`
//! is faulted by that node's agent ([`remote`]).

pub mod ctk;
pub mod engine;
pub mod enospc;
pub mod fault;
pub mod journal;
pub mod monkey;
pub mod netns;
pub mod probe;
pub mod procs;
pub mod remote;
pub mod report;
pub mod scenario;
pub mod target;

pub use engine::{Options, cleanup_leftovers, plan, preflight, run};
pub use report::{FaultReport, Report};
pub use scenario::{Scenario, load};
