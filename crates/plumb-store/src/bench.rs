//! Node benchmark results: each [`NodeBench`] a node sent, with the
//! collector's time of arrival and the node's own time it was taken, a
//! bounded history per node (at most [`KEEP_ROWS`]). The latest row of a
//! node ranks it (`plumb nodes --rank`); its history is what the
//! `node_bench_drop` alert compares a new result with; the latest taken
//! before a run started is the one `plumb show` prints beside the run.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::Timestamp;
use plumb_model::bench::NodeBench;
use rusqlite::{OptionalExtension, params};

/// At most this many results per node (a benchmark every 4 h: five months).
pub const KEEP_ROWS: usize = 1000;

/// One stored result.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// The node.
    pub node: String,
    /// When it arrived (the collector's clock).
    pub at: Timestamp,
    /// What the node measured.
    pub bench: NodeBench,
}

/// Decodes one stored result (shared by the backends).
pub fn decode_row(node: String, at: i64, json: &str) -> Result<BenchRow> {
    let bench = serde_json::from_str(json).map_err(|source| StoreError::Json {
        id: format!("benchmark of node {node} at {at}"),
        source,
    })?;
    Ok(BenchRow {
        node,
        at: Timestamp::from_nanos(at),
        bench,
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn decode(rows: Vec<(String, i64, String)>) -> Result<Vec<BenchRow>> {
    rows.into_iter()
        .map(|(node, at, json)| decode_row(node, at, &json))
        .collect()
}

impl crate::backend::Benches for Store {
    fn put_node_bench(&self, node: &str, at: Timestamp, bench: &NodeBench) -> Result<()> {
        let json = serde_json::to_string(bench).expect("bench serializes");
        let tx = self.conn().unchecked_transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO node_bench (node, at_ns, taken_ns, bench) VALUES (?1, ?2, ?3, ?4)",
            params![node, at.as_nanos(), bench.taken_at.as_nanos(), json],
        )?;
        tx.execute(
            "DELETE FROM node_bench WHERE node = ?1 AND at_ns < (
                SELECT at_ns FROM node_bench WHERE node = ?1
                ORDER BY at_ns DESC LIMIT 1 OFFSET ?2)",
            params![node, (KEEP_ROWS - 1) as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn node_bench_history(&self, node: &str, limit: usize) -> Result<Vec<BenchRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT node, at_ns, bench FROM node_bench
             WHERE node = ?1 ORDER BY at_ns DESC LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![node, limit as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        decode(rows)
    }

    fn latest_node_benches(&self) -> Result<Vec<BenchRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT b.node, b.at_ns, b.bench FROM node_bench b
             WHERE b.at_ns = (SELECT MAX(at_ns) FROM node_bench WHERE node = b.node)
             ORDER BY b.node",
        )?;
        let rows = st
            .query_map([], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        decode(rows)
    }

    fn node_bench_before(&self, node: &str, before: Timestamp) -> Result<Option<BenchRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT node, at_ns, bench FROM node_bench
             WHERE node = ?1 AND taken_ns <= ?2 ORDER BY taken_ns DESC, at_ns DESC LIMIT 1",
        )?;
        let found = st
            .query_row(params![node, before.as_nanos()], row)
            .optional()?;
        found.map(|(n, at, j)| decode_row(n, at, &j)).transpose()
    }
}
