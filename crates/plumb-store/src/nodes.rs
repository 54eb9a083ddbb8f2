//! Nodes: the last report of each node, the heartbeat inter-arrival times
//! its failure detector needs, its state, and every state transition.
//!
//! The collector decides states ([`plumb_model::node::StatePolicy`]); this
//! module only keeps them, so a restarted collector knows where it was.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::Timestamp;
use plumb_model::node::{NodeReport, NodeState, NodeTransition};
use rusqlite::{OptionalExtension, params};

/// A node as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// Its state.
    pub state: NodeState,
    /// Since when.
    pub since: Timestamp,
    /// When its last heartbeat arrived (the collector's clock).
    pub last_seen: Timestamp,
    /// Its last report.
    pub report: NodeReport,
    /// Recent heartbeat inter-arrival times in milliseconds, oldest first.
    pub intervals_ms: Vec<f64>,
    /// Content hash of its last fingerprint.
    pub fingerprint: Option<String>,
    /// Hash of that fingerprint's software only
    /// (`plumb_model::env::software_hash`), what the node list compares;
    /// `None` for a fingerprint stored before it existed (until the node
    /// sends its fingerprint again).
    pub software: Option<String>,
}

/// A change of a node's software fingerprint, as a heartbeat brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvChange {
    /// The node.
    pub node: String,
    /// When the heartbeat with the new fingerprint arrived.
    pub at: Timestamp,
    /// Content hash of the fingerprint before.
    pub old: String,
    /// Content hash of the fingerprint after.
    pub new: String,
}

/// A fleet-wide preflight as recorded: its spec and what each node
/// answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightRecord {
    /// Its id.
    pub id: plumb_model::Uuid,
    /// When its results were complete.
    pub at: Timestamp,
    /// The spec (TOML) as sent.
    pub spec: String,
    /// Every node's outcomes, and the nodes that did not answer.
    pub result: plumb_model::preflight::FleetPreflight,
}

/// Preflights kept (the oldest go first).
pub const PREFLIGHTS_KEEP: usize = 200;

/// Changes kept per node (the oldest go first).
pub const ENV_CHANGES_KEEP: usize = 50;

type RawRow = (
    String,
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode((name, state, since, last, report, intervals, fp, software): RawRow) -> Result<NodeRow> {
    let report = serde_json::from_str(&report).map_err(|source| StoreError::Json {
        id: format!("node {name}"),
        source,
    })?;
    let intervals_ms = serde_json::from_str(&intervals).map_err(|source| StoreError::Json {
        id: format!("node {name} intervals"),
        source,
    })?;
    Ok(NodeRow {
        state: parse_state(&state)?,
        name,
        since: Timestamp::from_nanos(since),
        last_seen: Timestamp::from_nanos(last),
        report,
        intervals_ms,
        fingerprint: fp,
        software,
    })
}

fn parse_state(s: &str) -> Result<NodeState> {
    NodeState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown node state `{s}`")))
}

fn get_node(conn: &rusqlite::Connection, name: &str) -> Result<Option<NodeRow>> {
    let raw = conn
        .query_row(
            "SELECT name, state, since_ns, last_seen_ns, report, intervals, fingerprint, software FROM nodes WHERE name = ?1",
            [name],
            raw_row,
        )
        .optional()?;
    raw.map(decode).transpose()
}

fn insert_transition(
    conn: &rusqlite::Connection,
    node: &str,
    from: Option<NodeState>,
    to: NodeState,
    at: Timestamp,
    phi: f64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO node_transitions (node, from_state, to_state, at_ns, phi) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![node, from.map(|s| s.as_str()), to.as_str(), at.as_nanos(), phi],
    )?;
    Ok(())
}

impl crate::backend::Nodes for Store {
    fn put_node_report(
        &self,
        report: &NodeReport,
        received: Timestamp,
        initial: NodeState,
    ) -> Result<NodeRow> {
        let tx = self.conn().unchecked_transaction()?;
        let json = serde_json::to_string(report).expect("report serializes");
        let prev = get_node(&tx, &report.node)?;
        if let Some(f) = &report.fingerprint {
            crate::put_fingerprint_conn(&tx, &f.hash, &f.fingerprint)?;
        }
        let first = prev.is_none();
        let prev_fp = prev.as_ref().and_then(|p| p.fingerprint.clone());
        let row = crate::kit::next_node_row(prev, report, received, initial);
        if first {
            tx.execute(
                "INSERT INTO nodes (name, state, since_ns, last_seen_ns, report, intervals, fingerprint, software)
                 VALUES (?1, ?2, ?3, ?4, ?5, '[]', ?6, ?7)",
                params![
                    row.name,
                    row.state.as_str(),
                    received.as_nanos(),
                    received.as_nanos(),
                    json,
                    row.fingerprint,
                    row.software
                ],
            )?;
            insert_transition(&tx, &row.name, None, initial, received, 0.0)?;
        } else {
            let old = prev_fp.as_deref();
            if let Some((old, new)) = crate::kit::env_change(old, row.fingerprint.as_deref()) {
                tx.execute(
                    "INSERT OR REPLACE INTO node_env_changes (node, at_ns, old_fp, new_fp)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![row.name, received.as_nanos(), old, new],
                )?;
                tx.execute(
                    "DELETE FROM node_env_changes WHERE node = ?1 AND at_ns <= (
                         SELECT at_ns FROM node_env_changes WHERE node = ?1
                         ORDER BY at_ns DESC LIMIT 1 OFFSET ?2)",
                    params![row.name, ENV_CHANGES_KEEP as i64],
                )?;
            }
            tx.execute(
                "UPDATE nodes SET last_seen_ns = ?2, report = ?3, intervals = ?4, fingerprint = ?5,
                 software = ?6 WHERE name = ?1",
                params![
                    row.name,
                    received.as_nanos(),
                    json,
                    serde_json::to_string(&row.intervals_ms).expect("floats serialize"),
                    row.fingerprint,
                    row.software
                ],
            )?;
        }
        tx.commit()?;
        Ok(row)
    }

    fn set_node_state(&self, name: &str, to: NodeState, at: Timestamp, phi: f64) -> Result<bool> {
        let tx = self.conn().unchecked_transaction()?;
        let Some(row) = get_node(&tx, name)? else {
            return Err(StoreError::Corrupt(format!("no node named {name}")));
        };
        if row.state == to {
            return Ok(false);
        }
        tx.execute(
            "UPDATE nodes SET state = ?2, since_ns = ?3 WHERE name = ?1",
            params![name, to.as_str(), at.as_nanos()],
        )?;
        insert_transition(&tx, name, Some(row.state), to, at, phi)?;
        tx.commit()?;
        Ok(true)
    }

    fn nodes(&self) -> Result<Vec<NodeRow>> {
        let mut st = self.conn().prepare(
            "SELECT name, state, since_ns, last_seen_ns, report, intervals, fingerprint, software FROM nodes ORDER BY name",
        )?;
        let rows = st.query_map([], raw_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(decode(r?)?);
        }
        Ok(out)
    }

    fn node(&self, name: &str) -> Result<Option<NodeRow>> {
        get_node(self.conn(), name)
    }

    fn node_transitions_between(
        &self,
        name: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<NodeTransition>> {
        let conn = self.conn();
        let read = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<Vec<NodeTransition>> {
            let mut st = conn.prepare_cached(sql)?;
            let rows = st.query_map(args, |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, f64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (from, to, at, phi) = r?;
                out.push(NodeTransition {
                    node: name.to_string(),
                    from: from.as_deref().map(parse_state).transpose()?,
                    to: parse_state(&to)?,
                    at: Timestamp::from_nanos(at),
                    phi,
                });
            }
            Ok(out)
        };
        // Newest first along the node's index; each walk stops at its limit.
        let mut out = read(
            "SELECT from_state, to_state, at_ns, phi FROM node_transitions
             WHERE node = ?1 AND at_ns >= ?2 AND at_ns < ?3 ORDER BY id DESC LIMIT ?4",
            &[&name, &from.as_nanos(), &until.as_nanos(), &(limit as i64)],
        )?;
        if out.len() < limit {
            out.extend(read(
                "SELECT from_state, to_state, at_ns, phi FROM node_transitions
                 WHERE node = ?1 AND at_ns < ?2 ORDER BY id DESC LIMIT 1",
                &[&name, &from.as_nanos()],
            )?);
        }
        out.reverse();
        Ok(out)
    }

    fn node_transitions(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeTransition>> {
        let mut st = self.conn().prepare(
            "SELECT node, from_state, to_state, at_ns, phi FROM node_transitions
             WHERE ?1 IS NULL OR node = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![node, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, f64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (node, from, to, at, phi) = r?;
            out.push(NodeTransition {
                node,
                from: from.as_deref().map(parse_state).transpose()?,
                to: parse_state(&to)?,
                at: Timestamp::from_nanos(at),
                phi,
            });
        }
        out.reverse();
        Ok(out)
    }

    fn put_preflight(&self, p: &PreflightRecord) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO preflights (id, at_ns, spec, result) VALUES (?1, ?2, ?3, ?4)",
            params![
                p.id.to_string(),
                p.at.as_nanos(),
                p.spec,
                serde_json::to_string(&p.result).expect("results serialize")
            ],
        )?;
        tx.execute(
            "DELETE FROM preflights WHERE at_ns < (
                 SELECT at_ns FROM preflights ORDER BY at_ns DESC LIMIT 1 OFFSET ?1)",
            params![PREFLIGHTS_KEEP as i64 - 1],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn preflights(&self, limit: usize) -> Result<Vec<PreflightRecord>> {
        let mut st = self.conn().prepare(
            "SELECT id, at_ns, spec, result FROM preflights ORDER BY at_ns DESC, id LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit as i64], raw_preflight)?;
        rows.map(|r| decode_preflight(r?)).collect()
    }

    fn preflight(&self, id: plumb_model::Uuid) -> Result<Option<PreflightRecord>> {
        let mut st = self
            .conn()
            .prepare("SELECT id, at_ns, spec, result FROM preflights WHERE id = ?1")?;
        st.query_row(params![id.to_string()], raw_preflight)
            .optional()?
            .map(decode_preflight)
            .transpose()
    }

    fn env_changes(
        &self,
        node: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<EnvChange>> {
        let mut st = self.conn().prepare(
            "SELECT node, at_ns, old_fp, new_fp FROM node_env_changes
             WHERE (?1 IS NULL OR node = ?1) AND at_ns >= ?2 ORDER BY at_ns DESC, node LIMIT ?3",
        )?;
        let rows = st.query_map(params![node, since.as_nanos(), limit as i64], |r| {
            Ok(EnvChange {
                node: r.get(0)?,
                at: Timestamp::from_nanos(r.get(1)?),
                old: r.get(2)?,
                new: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

type RawPreflight = (String, i64, String, String);

fn raw_preflight(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPreflight> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode_preflight((id, at, spec, result): RawPreflight) -> Result<PreflightRecord> {
    crate::kit::preflight_record(&id, at, spec, &result)
}
