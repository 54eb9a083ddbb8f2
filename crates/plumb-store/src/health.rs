//! Node hardware health: each [`NodeHealth`] a node's agent sent, with the
//! collector's time of arrival, a bounded history per node (at most
//! [`KEEP_ROWS`] rows and [`KEEP_NS`] of age). The latest row of a node is
//! its current health; the rows over time are what the alert rules compare
//! (a counter that rose, pressure over N readings) and what the node page
//! shows.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::Timestamp;
use plumb_model::health::NodeHealth;
use rusqlite::params;

/// How long readings are kept per node (by arrival, collector clock).
pub const KEEP_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// At most this many readings per node (a day and more at one a minute).
pub const KEEP_ROWS: usize = 3000;

/// One stored reading.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthRow {
    /// The node.
    pub node: String,
    /// When it arrived (the collector's clock).
    pub at: Timestamp,
    /// What the node read.
    pub health: NodeHealth,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn decode(rows: Vec<(String, i64, String)>) -> Result<Vec<HealthRow>> {
    rows.into_iter()
        .map(|(node, at, json)| {
            let health = serde_json::from_str(&json).map_err(|source| StoreError::Json {
                id: format!("health of node {node} at {at}"),
                source,
            })?;
            Ok(HealthRow {
                node,
                at: Timestamp::from_nanos(at),
                health,
            })
        })
        .collect()
}

impl crate::backend::Health for Store {
    fn put_node_health(&self, node: &str, at: Timestamp, health: &NodeHealth) -> Result<()> {
        let json = serde_json::to_string(health).expect("health serializes");
        let tx = self.conn().unchecked_transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO node_health (node, at_ns, health) VALUES (?1, ?2, ?3)",
            params![node, at.as_nanos(), json],
        )?;
        tx.execute(
            "DELETE FROM node_health WHERE node = ?1 AND at_ns < ?2",
            params![node, at.as_nanos() - KEEP_NS],
        )?;
        tx.execute(
            "DELETE FROM node_health WHERE node = ?1 AND at_ns < (
                SELECT at_ns FROM node_health WHERE node = ?1
                ORDER BY at_ns DESC LIMIT 1 OFFSET ?2)",
            params![node, (KEEP_ROWS - 1) as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn node_health_history(
        &self,
        node: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<HealthRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT node, at_ns, health FROM node_health
             WHERE node = ?1 AND at_ns >= ?2 ORDER BY at_ns LIMIT ?3",
        )?;
        let rows = st
            .query_map(params![node, since.as_nanos(), limit as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        decode(rows)
    }

    fn node_health_recent(&self, node: &str, limit: usize) -> Result<Vec<HealthRow>> {
        let mut st = self.conn().prepare_cached(
            "SELECT node, at_ns, health FROM node_health
             WHERE node = ?1 ORDER BY at_ns DESC LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![node, limit as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        decode(rows)
    }
}
