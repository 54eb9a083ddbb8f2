//! Node history: each node's load, memory and disk use over time, kept
//! downsampled as heartbeats arrive (never a row per heartbeat). Every
//! heartbeat is folded into its node's row of each [`Step`]: the minute row
//! (kept [`Step::Minute`]'s span, for the last hour) and the ten-minute row
//! (kept eight days, for the day and week views and the sparklines). A row
//! holds the highest figures of its interval ([`NodeSample::merge`]), so a
//! short spike still shows. At 1,000 nodes that is about 1.3 million rows,
//! and rows older than a step keeps are deleted as the node's next
//! heartbeat is written, so the table stays bounded.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::Timestamp;
use plumb_model::node::NodeSample;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

const MINUTE_NS: i64 = 60_000_000_000;

/// A resolution of the node history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// One row per minute, kept three hours.
    Minute,
    /// One row per ten minutes, kept eight days.
    TenMinutes,
}

impl Step {
    /// Both steps, finest first.
    pub const ALL: [Step; 2] = [Step::Minute, Step::TenMinutes];

    /// The interval's length in nanoseconds.
    pub fn ns(self) -> i64 {
        match self {
            Step::Minute => MINUTE_NS,
            Step::TenMinutes => 10 * MINUTE_NS,
        }
    }

    /// The interval's length in seconds, as stored (`step_s`).
    pub fn secs(self) -> i64 {
        self.ns() / 1_000_000_000
    }

    /// How long rows of this step are kept (by interval start, collector
    /// clock).
    pub fn keep_ns(self) -> i64 {
        match self {
            Step::Minute => 3 * 60 * MINUTE_NS,
            Step::TenMinutes => 8 * 24 * 60 * MINUTE_NS,
        }
    }

    /// The start of the interval holding `t`.
    pub fn start_of(self, t: Timestamp) -> Timestamp {
        Timestamp::from_nanos(t.as_nanos() - t.as_nanos().rem_euclid(self.ns()))
    }
}

/// One point of a node's sparklines: load and the fullest disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparkRow {
    /// The node.
    pub node: String,
    /// Start of the interval.
    pub at: Timestamp,
    /// Highest 1-minute load.
    pub load1: f64,
    /// The fullest disk's highest use, percent.
    pub disk_pct: f64,
}

/// The disks of a sample as stored (JSON).
pub fn disks_json(s: &NodeSample) -> String {
    serde_json::to_string(&s.disks).expect("disks serialize")
}

/// A stored row back into a sample.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    node: &str,
    at_ns: i64,
    load1: f64,
    mem_used: i64,
    mem_total: i64,
    disks: &str,
) -> Result<NodeSample> {
    let disks = serde_json::from_str(disks).map_err(|source| StoreError::Json {
        id: format!("disk use of node {node} at {at_ns}"),
        source,
    })?;
    Ok(NodeSample {
        at: Timestamp::from_nanos(at_ns),
        load1,
        mem_used: mem_used.max(0) as u64,
        mem_total: mem_total.max(0) as u64,
        disks,
    })
}

/// What a heartbeat makes of the stored row of its interval: `old` with
/// `new` folded in, or `new` alone, at the interval's start.
pub fn folded(old: Option<NodeSample>, new: &NodeSample, start: Timestamp) -> NodeSample {
    match old {
        Some(mut o) => {
            o.merge(new);
            o.at = start;
            o
        }
        None => {
            let mut n = new.clone();
            n.at = start;
            n
        }
    }
}

/// An `i64` column from a byte count (SQLite and PostgreSQL integers are
/// signed; no real disk comes near the limit).
pub fn as_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl crate::backend::NodeHistory for Store {
    fn put_node_sample(&self, node: &str, at: Timestamp, sample: &NodeSample) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        for step in Step::ALL {
            let start = step.start_of(at);
            let old = tx
                .query_row(
                    "SELECT at_ns, load1, mem_used, mem_total, disks FROM node_samples
                     WHERE node = ?1 AND step_s = ?2 AND at_ns = ?3",
                    params![node, step.secs(), start.as_nanos()],
                    raw_sample,
                )
                .optional()?
                .map(|(a, l, u, t, d)| decode(node, a, l, u, t, &d))
                .transpose()?;
            let row = folded(old, sample, start);
            tx.execute(
                "INSERT OR REPLACE INTO node_samples
                 (node, step_s, at_ns, load1, mem_used, mem_total, disk_pct, disks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    node,
                    step.secs(),
                    start.as_nanos(),
                    row.load1,
                    as_i64(row.mem_used),
                    as_i64(row.mem_total),
                    row.disk_max_pct(),
                    disks_json(&row)
                ],
            )?;
            tx.execute(
                "DELETE FROM node_samples WHERE node = ?1 AND step_s = ?2 AND at_ns < ?3",
                params![node, step.secs(), start.as_nanos() - step.keep_ns()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn node_samples(
        &self,
        node: &str,
        step: Step,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<NodeSample>> {
        let mut st = self.conn().prepare_cached(
            "SELECT at_ns, load1, mem_used, mem_total, disks FROM node_samples
             WHERE node = ?1 AND step_s = ?2 AND at_ns >= ?3 ORDER BY at_ns LIMIT ?4",
        )?;
        let rows = st
            .query_map(
                params![node, step.secs(), since.as_nanos(), limit as i64],
                raw_sample,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(a, l, u, t, d)| decode(node, a, l, u, t, &d))
            .collect()
    }

    fn node_sparks(&self, step: Step, since: Timestamp) -> Result<Vec<SparkRow>> {
        // From the nodes to their rows (CROSS JOIN keeps that order): one
        // index seek per node rather than a scan of every node's history.
        let mut st = self.conn().prepare_cached(
            "SELECT s.node, s.at_ns, s.load1, s.disk_pct FROM nodes n
             CROSS JOIN node_samples s ON s.node = n.name AND s.step_s = ?1 AND s.at_ns >= ?2
             ORDER BY n.name, s.at_ns",
        )?;
        let rows = st
            .query_map(params![step.secs(), since.as_nanos()], |r| {
                Ok(SparkRow {
                    node: r.get(0)?,
                    at: Timestamp::from_nanos(r.get(1)?),
                    load1: r.get(2)?,
                    disk_pct: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// A sample row's columns `(at_ns, load1, mem_used, mem_total, disks)`, as
/// both the fold and the history read them.
type RawSample = (i64, f64, i64, i64, String);

fn raw_sample(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSample> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}
