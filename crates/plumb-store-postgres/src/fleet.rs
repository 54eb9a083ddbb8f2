//! The fleet's concerns on PostgreSQL: [`Nodes`], [`Alerts`], [`Tokens`],
//! [`Clocks`](plumb_store::Clocks), [`Health`], [`Benches`], [`Throttles`] and [`Leases`].
//!
//! Writes that read before they write (a node's window of heartbeats, the
//! throttle queue, disk samples) lock what they read (`FOR UPDATE`, or a
//! transaction-scoped advisory lock for a throttle), so two collectors on
//! one database never interleave them.

use crate::{PgStore, Sql, json};
use plumb_model::Timestamp;
use plumb_model::alerts::{Alert, AlertState, Annotations, Severity};
use plumb_model::clock::Estimate;
use plumb_model::node::{NodeReport, NodeState, NodeTransition};
use plumb_model::throttle::{Lease, LeaseRequest, LeaseState, ThrottleView};
use plumb_store::alerts::{AlertRow, JobOutcomes};
use plumb_store::bench::{BenchRow, KEEP_ROWS as BENCH_KEEP_ROWS, decode_row};
use plumb_store::clock::{ClockRow, KEEP_NS};
use plumb_store::health::{HealthRow, KEEP_NS as HEALTH_KEEP_NS, KEEP_ROWS as HEALTH_KEEP_ROWS};
use plumb_store::kit;
use plumb_store::nodes::{ENV_CHANGES_KEEP, EnvChange, NodeRow, PREFLIGHTS_KEEP, PreflightRecord};
use plumb_store::tokens::TokenInfo;
use plumb_store::{
    Alerts, Benches, Health, Leases, NodeHistory, Nodes, Result, StoreError, Throttles, Tokens,
};
use postgres::{GenericClient, Row, Transaction};
use std::time::Duration;

const NODE_COLUMNS: &str =
    "name, state, since_ns, last_seen_ns, report, intervals, fingerprint, software";

fn parse_state(s: &str) -> Result<NodeState> {
    NodeState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown node state `{s}`")))
}

fn node_row(r: &Row) -> Result<NodeRow> {
    let name: String = r.get(0);
    Ok(NodeRow {
        state: parse_state(r.get(1))?,
        since: Timestamp::from_nanos(r.get(2)),
        last_seen: Timestamp::from_nanos(r.get(3)),
        report: json(format!("node {name}"), r.get::<_, &str>(4))?,
        intervals_ms: json(format!("node {name} intervals"), r.get::<_, &str>(5))?,
        fingerprint: r.get(6),
        software: r.get(7),
        name,
    })
}

fn get_node(c: &mut impl GenericClient, name: &str, lock: bool) -> Result<Option<NodeRow>> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.qo(&sql, &[&name])?.as_ref().map(node_row).transpose()
}

fn insert_transition(
    tx: &mut Transaction<'_>,
    node: &str,
    from: Option<NodeState>,
    to: NodeState,
    at: Timestamp,
    phi: f64,
) -> Result<()> {
    tx.x(
        "INSERT INTO node_transitions (node, from_state, to_state, at_ns, phi) VALUES ($1, $2, $3, $4, $5)",
        &[&node, &from.map(|s| s.as_str()), &to.as_str(), &at.as_nanos(), &phi],
    )?;
    Ok(())
}

impl Nodes for PgStore {
    fn put_node_report(
        &self,
        report: &NodeReport,
        received: Timestamp,
        initial: NodeState,
    ) -> Result<NodeRow> {
        self.tx(|tx| {
            let record = serde_json::to_string(report).expect("report serializes");
            if let Some(f) = &report.fingerprint {
                crate::runs::put_fingerprint_tx(tx, &f.hash, &f.fingerprint)?;
            }
            // The first heartbeat of a node creates its row; a concurrent
            // first heartbeat elsewhere then finds it and locks it.
            let inserted = tx.x(
                "INSERT INTO nodes (name, state, since_ns, last_seen_ns, report, intervals, fingerprint, software)
                 VALUES ($1, $2, $3, $3, $4, '[]', $5, $6) ON CONFLICT (name) DO NOTHING",
                &[
                    &report.node,
                    &initial.as_str(),
                    &received.as_nanos(),
                    &record,
                    &report.fingerprint.as_ref().map(|f| f.hash.clone()),
                    &report
                        .fingerprint
                        .as_ref()
                        .map(|f| plumb_model::env::software_hash(&f.fingerprint)),
                ],
            )?;
            if inserted == 1 {
                insert_transition(tx, &report.node, None, initial, received, 0.0)?;
                return Ok(kit::next_node_row(None, report, received, initial));
            }
            let prev = get_node(tx, &report.node, true)?;
            let prev_fp = prev.as_ref().and_then(|p| p.fingerprint.clone());
            let row = kit::next_node_row(prev, report, received, initial);
            if let Some((old, new)) = kit::env_change(prev_fp.as_deref(), row.fingerprint.as_deref())
            {
                tx.x(
                    "INSERT INTO node_env_changes (node, at_ns, old_fp, new_fp)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (node, at_ns) DO UPDATE SET old_fp = $3, new_fp = $4",
                    &[&row.name, &received.as_nanos(), &old, &new],
                )?;
                tx.x(
                    "DELETE FROM node_env_changes WHERE node = $1 AND at_ns <= (
                         SELECT at_ns FROM node_env_changes WHERE node = $1
                         ORDER BY at_ns DESC LIMIT 1 OFFSET $2)",
                    &[&row.name, &(ENV_CHANGES_KEEP as i64)],
                )?;
            }
            tx.x(
                "UPDATE nodes SET last_seen_ns = $2, report = $3, intervals = $4, fingerprint = $5,
                 software = $6 WHERE name = $1",
                &[
                    &row.name,
                    &received.as_nanos(),
                    &record,
                    &serde_json::to_string(&row.intervals_ms).expect("floats serialize"),
                    &row.fingerprint,
                    &row.software,
                ],
            )?;
            Ok(row)
        })
    }

    fn set_node_state(&self, name: &str, to: NodeState, at: Timestamp, phi: f64) -> Result<bool> {
        self.tx(|tx| {
            let Some(row) = get_node(tx, name, true)? else {
                return Err(StoreError::Corrupt(format!("no node named {name}")));
            };
            if row.state == to {
                return Ok(false);
            }
            tx.x(
                "UPDATE nodes SET state = $2, since_ns = $3 WHERE name = $1",
                &[&name, &to.as_str(), &at.as_nanos()],
            )?;
            insert_transition(tx, name, Some(row.state), to, at, phi)?;
            Ok(true)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRow>> {
        self.c()?
            .q(
                &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"),
                &[],
            )?
            .iter()
            .map(node_row)
            .collect()
    }

    fn node(&self, name: &str) -> Result<Option<NodeRow>> {
        get_node(&mut *self.c()?, name, false)
    }

    fn node_transitions_between(
        &self,
        name: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<NodeTransition>> {
        let mut c = self.c()?;
        // Newest first along the node's index; each walk stops at its limit.
        let mut rows = c.q(
            "SELECT from_state, to_state, at_ns, phi FROM node_transitions
             WHERE node = $1 AND at_ns >= $2 AND at_ns < $3 ORDER BY id DESC LIMIT $4",
            &[&name, &from.as_nanos(), &until.as_nanos(), &(limit as i64)],
        )?;
        if rows.len() < limit {
            rows.extend(c.q(
                "SELECT from_state, to_state, at_ns, phi FROM node_transitions
                 WHERE node = $1 AND at_ns < $2 ORDER BY id DESC LIMIT 1",
                &[&name, &from.as_nanos()],
            )?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            out.push(NodeTransition {
                node: name.to_string(),
                from: r.get::<_, Option<&str>>(0).map(parse_state).transpose()?,
                to: parse_state(r.get(1))?,
                at: Timestamp::from_nanos(r.get(2)),
                phi: r.get(3),
            });
        }
        Ok(out)
    }

    fn node_transitions(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeTransition>> {
        let rows = self.c()?.q(
            "SELECT node, from_state, to_state, at_ns, phi FROM node_transitions
             WHERE $1::TEXT IS NULL OR node = $1 ORDER BY id DESC LIMIT $2",
            &[&node, &(limit as i64)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            out.push(NodeTransition {
                node: r.get(0),
                from: r.get::<_, Option<&str>>(1).map(parse_state).transpose()?,
                to: parse_state(r.get(2))?,
                at: Timestamp::from_nanos(r.get(3)),
                phi: r.get(4),
            });
        }
        Ok(out)
    }

    fn put_preflight(&self, p: &PreflightRecord) -> Result<()> {
        let result = serde_json::to_string(&p.result).expect("results serialize");
        self.tx(|tx| {
            tx.x(
                "INSERT INTO preflights (id, at_ns, spec, result) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET at_ns = $2, spec = $3, result = $4",
                &[&p.id.to_string(), &p.at.as_nanos(), &p.spec, &result],
            )?;
            tx.x(
                "DELETE FROM preflights WHERE at_ns < (
                     SELECT at_ns FROM preflights ORDER BY at_ns DESC LIMIT 1 OFFSET $1)",
                &[&(PREFLIGHTS_KEEP as i64 - 1)],
            )?;
            Ok(())
        })
    }

    fn preflights(&self, limit: usize) -> Result<Vec<PreflightRecord>> {
        let rows = self.c()?.q(
            "SELECT id, at_ns, spec, result FROM preflights ORDER BY at_ns DESC, id LIMIT $1",
            &[&(limit as i64)],
        )?;
        rows.iter()
            .map(|r| kit::preflight_record(r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    fn preflight(&self, id: plumb_model::Uuid) -> Result<Option<PreflightRecord>> {
        let row = self.c()?.qo(
            "SELECT id, at_ns, spec, result FROM preflights WHERE id = $1",
            &[&id.to_string()],
        )?;
        row.map(|r| kit::preflight_record(r.get(0), r.get(1), r.get(2), r.get(3)))
            .transpose()
    }

    fn env_changes(
        &self,
        node: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<EnvChange>> {
        let rows = self.c()?.q(
            "SELECT node, at_ns, old_fp, new_fp FROM node_env_changes
             WHERE ($1::TEXT IS NULL OR node = $1) AND at_ns >= $2
             ORDER BY at_ns DESC, node LIMIT $3",
            &[&node, &since.as_nanos(), &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| EnvChange {
                node: r.get(0),
                at: Timestamp::from_nanos(r.get(1)),
                old: r.get(2),
                new: r.get(3),
            })
            .collect())
    }
}

fn alert_row(r: &Row) -> Result<AlertRow> {
    let fp: String = r.get(0);
    let bad = |what: &str, v: &str| StoreError::Corrupt(format!("alert {fp}: {what} `{v}`"));
    let (sev, state): (&str, &str) = (r.get(2), r.get(3));
    let (summary, description): (String, String) =
        json(format!("alert {fp} annotations"), r.get::<_, &str>(5))?;
    let notified: Option<&str> = r.get(10);
    Ok(AlertRow {
        alert: Alert {
            severity: Severity::parse(sev).ok_or_else(|| bad("severity", sev))?,
            state: AlertState::parse(state).ok_or_else(|| bad("state", state))?,
            name: r.get(1),
            labels: json(format!("alert {fp} labels"), r.get::<_, &str>(4))?,
            annotations: Annotations {
                summary,
                description,
            },
            starts_at: Timestamp::from_nanos(r.get(7)),
            ends_at: r.get::<_, Option<i64>>(8).map(Timestamp::from_nanos),
            last_notified: r.get::<_, Option<i64>>(9).map(Timestamp::from_nanos),
            fingerprint: fp.clone(),
        },
        active_since: Timestamp::from_nanos(r.get(6)),
        notified: notified
            .map(|s| AlertState::parse(s).ok_or_else(|| bad("notified state", s)))
            .transpose()?,
    })
}

impl Alerts for PgStore {
    fn alert_rows(&self) -> Result<Vec<AlertRow>> {
        self.c()?
            .q(
                "SELECT fingerprint, name, severity, state, labels, annotations, active_ns,
                        starts_ns, ends_ns, last_notified_ns, notified_state
                 FROM alerts ORDER BY starts_ns DESC",
                &[],
            )?
            .iter()
            .map(alert_row)
            .collect()
    }

    fn put_alert_rows(&self, rows: &[AlertRow], delete: &[String]) -> Result<()> {
        self.tx(|tx| {
            for row in rows {
                let a = &row.alert;
                tx.x(
                    "INSERT INTO alerts (fingerprint, name, severity, state, labels, annotations,
                         active_ns, starts_ns, ends_ns, last_notified_ns, notified_state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (fingerprint) DO UPDATE SET name = EXCLUDED.name,
                         severity = EXCLUDED.severity, state = EXCLUDED.state,
                         labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,
                         active_ns = EXCLUDED.active_ns, starts_ns = EXCLUDED.starts_ns,
                         ends_ns = EXCLUDED.ends_ns, last_notified_ns = EXCLUDED.last_notified_ns,
                         notified_state = EXCLUDED.notified_state",
                    &[
                        &a.fingerprint,
                        &a.name,
                        &a.severity.as_str(),
                        &a.state.as_str(),
                        &serde_json::to_string(&a.labels).expect("labels serialize"),
                        &serde_json::to_string(&(
                            &a.annotations.summary,
                            &a.annotations.description,
                        ))
                        .expect("strings serialize"),
                        &row.active_since.as_nanos(),
                        &a.starts_at.as_nanos(),
                        &a.ends_at.map(|t| t.as_nanos()),
                        &a.last_notified.map(|t| t.as_nanos()),
                        &row.notified.map(|s| s.as_str()),
                    ],
                )?;
            }
            if !delete.is_empty() {
                tx.x(
                    "DELETE FROM alerts WHERE fingerprint = ANY($1)",
                    &[&delete.to_vec()],
                )?;
            }
            Ok(())
        })
    }

    fn prune_resolved_alerts(&self, before: Timestamp, keep: usize) -> Result<usize> {
        Ok(self.c()?.x(
            "DELETE FROM alerts WHERE state = 'resolved' AND (ends_ns < $1 OR fingerprint IN (
                 SELECT fingerprint FROM alerts WHERE state = 'resolved'
                 ORDER BY ends_ns DESC NULLS LAST OFFSET $2))",
            &[&before.as_nanos(), &(keep as i64)],
        )? as usize)
    }

    fn set_alert_rules(&self, json: &str) -> Result<()> {
        self.c()?.x(
            "INSERT INTO alert_rules (id, rules) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET rules = EXCLUDED.rules",
            &[&json],
        )?;
        Ok(())
    }

    fn alert_rules(&self) -> Result<Option<String>> {
        Ok(self
            .c()?
            .qo("SELECT rules FROM alert_rules WHERE id = 1", &[])?
            .map(|r| r.get(0)))
    }

    fn add_disk_sample(
        &self,
        node: &str,
        mount: &str,
        at: Timestamp,
        available: u64,
        total: u64,
        min_gap_ns: i64,
        window_start: Timestamp,
        keep: usize,
    ) -> Result<bool> {
        self.tx(|tx| {
            // Serializes samples of one node and mount across collectors.
            tx.x(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("disk {node} {mount}")],
            )?;
            let last: Option<i64> = tx
                .q1(
                    "SELECT MAX(t_ns) FROM disk_samples WHERE node = $1 AND mount = $2",
                    &[&node, &mount],
                )?
                .get(0);
            if last.is_some_and(|l| at.as_nanos() - l < min_gap_ns) {
                return Ok(false);
            }
            tx.x(
                "INSERT INTO disk_samples (node, mount, t_ns, available, total)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (node, mount, t_ns) DO UPDATE SET available = EXCLUDED.available,
                     total = EXCLUDED.total",
                &[
                    &node,
                    &mount,
                    &at.as_nanos(),
                    &(available as i64),
                    &(total as i64),
                ],
            )?;
            tx.x(
                "DELETE FROM disk_samples WHERE node = $1 AND mount = $2 AND (t_ns < $3 OR t_ns IN (
                     SELECT t_ns FROM disk_samples WHERE node = $1 AND mount = $2
                     ORDER BY t_ns DESC OFFSET $4))",
                &[&node, &mount, &window_start.as_nanos(), &(keep as i64)],
            )?;
            Ok(true)
        })
    }

    fn disk_samples(&self, node: &str, mount: &str) -> Result<Vec<(Timestamp, u64)>> {
        Ok(self
            .c()?
            .q(
                "SELECT t_ns, available FROM disk_samples WHERE node = $1 AND mount = $2 ORDER BY t_ns",
                &[&node, &mount],
            )?
            .iter()
            .map(|r| {
                (
                    Timestamp::from_nanos(r.get(0)),
                    r.get::<_, i64>(1).max(0) as u64,
                )
            })
            .collect())
    }

    fn forget_disk_samples_before(&self, before: Timestamp) -> Result<usize> {
        Ok(self.c()?.x(
            "DELETE FROM disk_samples WHERE t_ns < $1",
            &[&before.as_nanos()],
        )? as usize)
    }

    fn job_outcomes(&self, since: Timestamp, last: u32) -> Result<Vec<JobOutcomes>> {
        let names: Vec<String> = self
            .c()?
            .q(
                "SELECT DISTINCT name FROM runs WHERE started_ns >= $1 ORDER BY name",
                &[&since.as_nanos()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::new();
        for name in names {
            // Finished means ended: a run still running, or waiting for a
            // slot or a retry, has no outcome to count yet.
            let rows = self.c()?.q(
                "SELECT state, host FROM runs WHERE name = $1 AND ended_ns IS NOT NULL
                 ORDER BY started_ns DESC LIMIT $2",
                &[&name, &i64::from(last)],
            )?;
            if rows.is_empty() {
                continue;
            }
            out.push(JobOutcomes {
                runs: rows.len() as u32,
                failed: rows
                    .iter()
                    .filter(|r| r.get::<_, &str>(0) != "succeeded")
                    .count() as u32,
                last_host: rows[0].get(1),
                name,
            });
        }
        Ok(out)
    }
}

fn hashes(rows: &[Row], what: &str) -> Result<Vec<([u8; 32], String)>> {
    rows.iter()
        .map(|r| {
            let hex: &str = r.get(0);
            let hash = kit::parse_hash(hex).ok_or_else(|| {
                StoreError::Corrupt(format!("{what} hash `{hex}` is not 64 hex digits"))
            })?;
            Ok((hash, r.get(1)))
        })
        .collect()
}

impl Tokens for PgStore {
    fn add_token(&self, hash: &[u8; 32], role: &str, name: &str) -> Result<()> {
        self.c()?.x(
            "INSERT INTO tokens (hash, role, name, created_ns) VALUES ($1, $2, $3, $4)",
            &[
                &plumb_model::hex(hash),
                &role,
                &name,
                &Timestamp::now().as_nanos(),
            ],
        )?;
        Ok(())
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = self.c()?.q(
            "SELECT hash, role, name, created_ns FROM tokens ORDER BY created_ns",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let hex: &str = r.get(0);
                Ok(TokenInfo {
                    hash: kit::parse_hash(hex).ok_or_else(|| {
                        StoreError::Corrupt(format!("token hash `{hex}` is not 64 hex digits"))
                    })?,
                    role: r.get(1),
                    name: r.get(2),
                    created: Timestamp::from_nanos(r.get(3)),
                })
            })
            .collect()
    }

    fn delete_token(&self, hash: &[u8; 32]) -> Result<bool> {
        let hex = plumb_model::hex(hash);
        self.tx(|tx| {
            tx.x("DELETE FROM sessions WHERE token_hash = $1", &[&hex])?;
            Ok(tx.x("DELETE FROM tokens WHERE hash = $1", &[&hex])? > 0)
        })
    }

    fn add_session(&self, hash: &[u8; 32], token: &[u8; 32]) -> Result<()> {
        self.c()?.x(
            "INSERT INTO sessions (hash, token_hash, created_ns) VALUES ($1, $2, $3)",
            &[
                &plumb_model::hex(hash),
                &plumb_model::hex(token),
                &Timestamp::now().as_nanos(),
            ],
        )?;
        Ok(())
    }

    fn delete_session(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self.c()?.x(
            "DELETE FROM sessions WHERE hash = $1",
            &[&plumb_model::hex(hash)],
        )? > 0)
    }

    fn session_hashes(&self, since: Timestamp) -> Result<Vec<([u8; 32], String)>> {
        let rows = self.c()?.q(
            "SELECT s.hash, t.role FROM sessions s JOIN tokens t ON t.hash = s.token_hash
             WHERE s.created_ns >= $1",
            &[&since.as_nanos()],
        )?;
        hashes(&rows, "session")
    }

    fn token_hashes(&self) -> Result<Vec<([u8; 32], String)>> {
        let rows = self.c()?.q("SELECT hash, role FROM tokens", &[])?;
        hashes(&rows, "token")
    }
}

const CLOCK_COLUMNS: &str =
    "node, latest_ns, received_ns, at_ns, offset_ns, error_ns, delay_ns, drift_ppm, samples";

fn clock_row(r: &Row) -> ClockRow {
    ClockRow {
        node: r.get(0),
        received: Timestamp::from_nanos(r.get(2)),
        estimate: Estimate {
            latest: Timestamp::from_nanos(r.get(1)),
            at: Timestamp::from_nanos(r.get(3)),
            offset_ns: r.get(4),
            error_ns: r.get(5),
            delay_ns: r.get(6),
            drift_ppm: r.get(7),
            samples: r.get::<_, i64>(8) as u32,
        },
    }
}

impl plumb_store::Clocks for PgStore {
    fn put_clock_estimate(&self, node: &str, e: &Estimate, received: Timestamp) -> Result<()> {
        self.tx(|tx| {
            tx.x(
                &format!(
                    "INSERT INTO clock_estimates ({CLOCK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT DO NOTHING"
                ),
                &[
                    &node,
                    &e.latest.as_nanos(),
                    &received.as_nanos(),
                    &e.at.as_nanos(),
                    &e.offset_ns,
                    &e.error_ns,
                    &e.delay_ns,
                    &e.drift_ppm,
                    &i64::from(e.samples),
                ],
            )?;
            tx.x(
                "DELETE FROM clock_estimates WHERE node = $1 AND received_ns < $2",
                &[&node, &(received.as_nanos() - KEEP_NS)],
            )?;
            Ok(())
        })
    }

    fn clock_latest(&self) -> Result<Vec<ClockRow>> {
        Ok(self
            .c()?
            .q(
                &format!(
                    "SELECT DISTINCT ON (node) {CLOCK_COLUMNS} FROM clock_estimates
                     ORDER BY node, latest_ns DESC"
                ),
                &[],
            )?
            .iter()
            .map(clock_row)
            .collect())
    }

    fn clock_history(&self, node: &str, since: Timestamp, limit: usize) -> Result<Vec<ClockRow>> {
        Ok(self
            .c()?
            .q(
                &format!(
                    "SELECT {CLOCK_COLUMNS} FROM clock_estimates
                     WHERE node = $1 AND received_ns >= $2 ORDER BY received_ns LIMIT $3"
                ),
                &[&node, &since.as_nanos(), &(limit as i64)],
            )?
            .iter()
            .map(clock_row)
            .collect())
    }
}

/// Serializes every change to throttles across collectors: the throttle
/// operations read, decide and write, as SQLite's `BEGIN IMMEDIATE` does.
const THROTTLE_LOCK: i64 = 0x706c_7468;

impl PgStore {
    fn throttled<T>(&self, mut f: impl FnMut(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        self.tx(|tx| {
            tx.x("SELECT pg_advisory_xact_lock($1)", &[&THROTTLE_LOCK])?;
            f(tx)
        })
    }
}

fn sweep(tx: &mut Transaction<'_>, now: Timestamp) -> Result<u64> {
    let names: Vec<String> = tx
        .q(
            "DELETE FROM throttle_leases WHERE expires_ns <= $1 RETURNING name",
            &[&now.as_nanos()],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    for name in &distinct {
        grant(tx, name, now)?;
    }
    forget_idle(tx)?;
    Ok(names.len() as u64)
}

fn forget_idle(tx: &mut Transaction<'_>) -> Result<()> {
    tx.x(
        "DELETE FROM throttles t WHERE NOT EXISTS (SELECT 1 FROM throttle_leases l WHERE l.name = t.name)",
        &[],
    )?;
    Ok(())
}

fn slots_of(tx: &mut Transaction<'_>, name: &str) -> Result<Option<u32>> {
    Ok(tx
        .qo("SELECT slots FROM throttles WHERE name = $1", &[&name])?
        .map(|r| r.get::<_, i64>(0) as u32))
}

fn grant(tx: &mut Transaction<'_>, name: &str, now: Timestamp) -> Result<()> {
    let Some(slots) = slots_of(tx, name)? else {
        return Ok(());
    };
    let held: i64 = tx
        .q1(
            "SELECT COUNT(*) FROM throttle_leases WHERE name = $1 AND granted_ns IS NOT NULL",
            &[&name],
        )?
        .get(0);
    let free = i64::from(slots) - held;
    if free > 0 {
        tx.x(
            "UPDATE throttle_leases SET granted_ns = $2
             WHERE name = $1 AND holder IN (
                 SELECT holder FROM throttle_leases
                 WHERE name = $1 AND granted_ns IS NULL ORDER BY seq LIMIT $3)",
            &[&name, &now.as_nanos(), &free],
        )?;
    }
    Ok(())
}

fn state(tx: &mut Transaction<'_>, name: &str, holder: &str) -> Result<Option<LeaseState>> {
    let Some(r) = tx.qo(
        "SELECT seq, granted_ns, expires_ns FROM throttle_leases WHERE name = $1 AND holder = $2",
        &[&name, &holder],
    )?
    else {
        return Ok(None);
    };
    let (seq, granted, expires): (i64, Option<i64>, i64) = (r.get(0), r.get(1), r.get(2));
    let c = tx.q1(
        "SELECT COUNT(granted_ns), COUNT(*) - COUNT(granted_ns),
                COUNT(*) FILTER (WHERE granted_ns IS NULL AND seq <= $2)
         FROM throttle_leases WHERE name = $1",
        &[&name, &seq],
    )?;
    let (holders, queued, ahead): (i64, i64, i64) = (c.get(0), c.get(1), c.get(2));
    let slots = slots_of(tx, name)?.unwrap_or(0);
    Ok(Some(LeaseState {
        granted: granted.is_some(),
        position: if granted.is_some() { 0 } else { ahead as u32 },
        holders: holders as u32,
        slots,
        queued: queued as u32,
        expires: Timestamp::from_nanos(expires),
    }))
}

impl Throttles for PgStore {
    fn throttle_acquire(
        &self,
        name: &str,
        req: &LeaseRequest,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<LeaseState> {
        let ttl = kit::check_acquire(name, req, ttl)?;
        self.throttled(|tx| {
            sweep(tx, now)?;
            match slots_of(tx, name)? {
                Some(held) if held != req.slots => {
                    return Err(StoreError::ThrottleConflict {
                        name: name.to_string(),
                        held,
                        asked: req.slots,
                    });
                }
                Some(_) => {}
                None => {
                    tx.x(
                        "INSERT INTO throttles (name, slots) VALUES ($1, $2)",
                        &[&name, &i64::from(req.slots)],
                    )?;
                }
            }
            let expires = now.as_nanos().saturating_add(ttl);
            let renewed = tx.x(
                "UPDATE throttle_leases SET expires_ns = $3 WHERE name = $1 AND holder = $2",
                &[&name, &req.holder, &expires],
            )?;
            if renewed == 0 {
                tx.x(
                    "INSERT INTO throttle_leases
                         (name, holder, seq, enqueued_ns, granted_ns, expires_ns, run_id, node, pid)
                     VALUES ($1, $2,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM throttle_leases WHERE name = $1),
                         $3, NULL, $4, $5, $6, $7)",
                    &[
                        &name,
                        &req.holder,
                        &now.as_nanos(),
                        &expires,
                        &req.run_id.map(|u| u.to_string()),
                        &req.node,
                        &req.pid.map(i64::from),
                    ],
                )?;
            }
            grant(tx, name, now)?;
            state(tx, name, &req.holder)?
                .ok_or_else(|| StoreError::Corrupt("a lease just written is gone".into()))
        })
    }

    fn throttle_renew(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<LeaseState> {
        kit::check_throttle_name(name)?;
        kit::check_holder(holder)?;
        let ttl = kit::ttl_ns(ttl)?;
        self.throttled(|tx| {
            sweep(tx, now)?;
            let n = tx.x(
                "UPDATE throttle_leases SET expires_ns = $3 WHERE name = $1 AND holder = $2",
                &[&name, &holder, &now.as_nanos().saturating_add(ttl)],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchLease {
                    name: name.to_string(),
                    holder: holder.to_string(),
                });
            }
            grant(tx, name, now)?;
            state(tx, name, holder)?
                .ok_or_else(|| StoreError::Corrupt("a lease just renewed is gone".into()))
        })
    }

    fn throttle_release(&self, name: &str, holder: &str, now: Timestamp) -> Result<bool> {
        kit::check_throttle_name(name)?;
        kit::check_holder(holder)?;
        self.throttled(|tx| {
            let n = tx.x(
                "DELETE FROM throttle_leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )?;
            sweep(tx, now)?;
            grant(tx, name, now)?;
            forget_idle(tx)?;
            Ok(n > 0)
        })
    }

    fn throttle_expire(&self, now: Timestamp) -> Result<u64> {
        self.throttled(|tx| sweep(tx, now))
    }

    fn throttle_list(&self, now: Timestamp) -> Result<Vec<ThrottleView>> {
        let mut c = self.c()?;
        let mut views: Vec<ThrottleView> = c
            .q("SELECT name, slots FROM throttles ORDER BY name", &[])?
            .iter()
            .map(|r| ThrottleView {
                name: r.get(0),
                slots: r.get::<_, i64>(1) as u32,
                holders: Vec::new(),
                queue: Vec::new(),
            })
            .collect();
        let rows = c.q(
            "SELECT name, holder, run_id, node, pid, enqueued_ns, granted_ns, expires_ns
             FROM throttle_leases WHERE expires_ns > $1
             ORDER BY name, granted_ns IS NULL, COALESCE(granted_ns, 0), seq",
            &[&now.as_nanos()],
        )?;
        for r in &rows {
            let name: &str = r.get(0);
            let lease = Lease {
                holder: r.get(1),
                run_id: r.get::<_, Option<&str>>(2).and_then(|s| s.parse().ok()),
                node: r.get(3),
                pid: r.get::<_, Option<i64>>(4).map(|p| p as u32),
                enqueued: Timestamp::from_nanos(r.get(5)),
                granted: r.get::<_, Option<i64>>(6).map(Timestamp::from_nanos),
                expires: Timestamp::from_nanos(r.get(7)),
            };
            if let Some(v) = views.iter_mut().find(|v| v.name == name) {
                if lease.granted.is_some() {
                    v.holders.push(lease);
                } else {
                    v.queue.push(lease);
                }
            }
        }
        views.retain(|v| !v.holders.is_empty() || !v.queue.is_empty());
        Ok(views)
    }
}

impl Leases for PgStore {
    fn lead(&self, name: &str, holder: &str, ttl: Duration, now: Timestamp) -> Result<bool> {
        let until = now
            .as_nanos()
            .saturating_add(ttl.as_nanos().min(i64::MAX as u128) as i64);
        // The row lock ON CONFLICT takes makes racing collectors take turns:
        // the second sees the first's lease and does not update.
        Ok(self.c()?.x(
            "INSERT INTO leases (name, holder, expires_ns) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_ns = EXCLUDED.expires_ns
             WHERE leases.holder = EXCLUDED.holder OR leases.expires_ns <= $4",
            &[&name, &holder, &until, &now.as_nanos()],
        )? == 1)
    }

    fn step_down(&self, name: &str, holder: &str) -> Result<bool> {
        Ok(self.c()?.x(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )? == 1)
    }

    fn leader(&self, name: &str) -> Result<Option<(String, Timestamp)>> {
        Ok(self
            .c()?
            .qo(
                "SELECT holder, expires_ns FROM leases WHERE name = $1",
                &[&name],
            )?
            .map(|r| (r.get(0), Timestamp::from_nanos(r.get(1)))))
    }
}

fn health_row(r: &Row) -> Result<HealthRow> {
    let (node, at): (String, i64) = (r.get(0), r.get(1));
    Ok(HealthRow {
        health: json(
            format!("health of node {node} at {at}"),
            r.get::<_, &str>(2),
        )?,
        at: Timestamp::from_nanos(at),
        node,
    })
}

impl Health for PgStore {
    fn put_node_health(
        &self,
        node: &str,
        at: Timestamp,
        health: &plumb_model::health::NodeHealth,
    ) -> Result<()> {
        let record = serde_json::to_string(health).expect("health serializes");
        self.tx(|tx| {
            tx.x(
                "INSERT INTO node_health (node, at_ns, health) VALUES ($1, $2, $3)
                 ON CONFLICT (node, at_ns) DO UPDATE SET health = EXCLUDED.health",
                &[&node, &at.as_nanos(), &record],
            )?;
            tx.x(
                "DELETE FROM node_health WHERE node = $1 AND at_ns < $2",
                &[&node, &(at.as_nanos() - HEALTH_KEEP_NS)],
            )?;
            tx.x(
                "DELETE FROM node_health WHERE node = $1 AND at_ns < (
                     SELECT at_ns FROM node_health WHERE node = $1
                     ORDER BY at_ns DESC LIMIT 1 OFFSET $2)",
                &[&node, &((HEALTH_KEEP_ROWS - 1) as i64)],
            )?;
            Ok(())
        })
    }

    fn node_health_history(
        &self,
        node: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<HealthRow>> {
        self.c()?
            .q(
                "SELECT node, at_ns, health FROM node_health
                 WHERE node = $1 AND at_ns >= $2 ORDER BY at_ns LIMIT $3",
                &[&node, &since.as_nanos(), &(limit as i64)],
            )?
            .iter()
            .map(health_row)
            .collect()
    }

    fn node_health_recent(&self, node: &str, limit: usize) -> Result<Vec<HealthRow>> {
        self.c()?
            .q(
                "SELECT node, at_ns, health FROM node_health
                 WHERE node = $1 ORDER BY at_ns DESC LIMIT $2",
                &[&node, &(limit as i64)],
            )?
            .iter()
            .map(health_row)
            .collect()
    }
}

fn bench_row(r: &Row) -> Result<BenchRow> {
    decode_row(r.get(0), r.get(1), r.get::<_, &str>(2))
}

impl Benches for PgStore {
    fn put_node_bench(
        &self,
        node: &str,
        at: Timestamp,
        bench: &plumb_model::bench::NodeBench,
    ) -> Result<()> {
        let record = serde_json::to_string(bench).expect("bench serializes");
        self.tx(|tx| {
            tx.x(
                "INSERT INTO node_bench (node, at_ns, taken_ns, bench) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node, at_ns) DO UPDATE
                 SET taken_ns = EXCLUDED.taken_ns, bench = EXCLUDED.bench",
                &[&node, &at.as_nanos(), &bench.taken_at.as_nanos(), &record],
            )?;
            tx.x(
                "DELETE FROM node_bench WHERE node = $1 AND at_ns < (
                     SELECT at_ns FROM node_bench WHERE node = $1
                     ORDER BY at_ns DESC LIMIT 1 OFFSET $2)",
                &[&node, &((BENCH_KEEP_ROWS - 1) as i64)],
            )?;
            Ok(())
        })
    }

    fn node_bench_history(&self, node: &str, limit: usize) -> Result<Vec<BenchRow>> {
        self.c()?
            .q(
                "SELECT node, at_ns, bench FROM node_bench
                 WHERE node = $1 ORDER BY at_ns DESC LIMIT $2",
                &[&node, &(limit as i64)],
            )?
            .iter()
            .map(bench_row)
            .collect()
    }

    fn latest_node_benches(&self) -> Result<Vec<BenchRow>> {
        self.c()?
            .q(
                "SELECT DISTINCT ON (node) node, at_ns, bench FROM node_bench
                 ORDER BY node, at_ns DESC",
                &[],
            )?
            .iter()
            .map(bench_row)
            .collect()
    }

    fn node_bench_before(&self, node: &str, before: Timestamp) -> Result<Option<BenchRow>> {
        self.c()?
            .qo(
                "SELECT node, at_ns, bench FROM node_bench
                 WHERE node = $1 AND taken_ns <= $2 ORDER BY taken_ns DESC, at_ns DESC LIMIT 1",
                &[&node, &before.as_nanos()],
            )?
            .as_ref()
            .map(bench_row)
            .transpose()
    }
}

fn sample_row(node: &str, r: &Row) -> Result<plumb_model::node::NodeSample> {
    plumb_store::samples::decode(
        node,
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get::<_, &str>(4),
    )
}

impl NodeHistory for PgStore {
    fn put_node_sample(
        &self,
        node: &str,
        at: Timestamp,
        sample: &plumb_model::node::NodeSample,
    ) -> Result<()> {
        use plumb_store::samples::{Step, as_i64, disks_json, folded};
        self.tx(|tx| {
            for step in Step::ALL {
                let start = step.start_of(at);
                // The row of the interval is locked while it is folded, so
                // two collectors never lose each other's figures.
                let old = tx
                    .qo(
                        "SELECT at_ns, load1, mem_used, mem_total, disks FROM node_samples
                         WHERE node = $1 AND step_s = $2 AND at_ns = $3 FOR UPDATE",
                        &[&node, &step.secs(), &start.as_nanos()],
                    )?
                    .map(|r| sample_row(node, &r))
                    .transpose()?;
                let row = folded(old, sample, start);
                tx.x(
                    "INSERT INTO node_samples
                     (node, step_s, at_ns, load1, mem_used, mem_total, disk_pct, disks)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (node, step_s, at_ns) DO UPDATE SET
                       load1 = EXCLUDED.load1, mem_used = EXCLUDED.mem_used,
                       mem_total = EXCLUDED.mem_total, disk_pct = EXCLUDED.disk_pct,
                       disks = EXCLUDED.disks",
                    &[
                        &node,
                        &step.secs(),
                        &start.as_nanos(),
                        &row.load1,
                        &as_i64(row.mem_used),
                        &as_i64(row.mem_total),
                        &row.disk_max_pct(),
                        &disks_json(&row),
                    ],
                )?;
                tx.x(
                    "DELETE FROM node_samples WHERE node = $1 AND step_s = $2 AND at_ns < $3",
                    &[&node, &step.secs(), &(start.as_nanos() - step.keep_ns())],
                )?;
            }
            Ok(())
        })
    }

    fn node_samples(
        &self,
        node: &str,
        step: plumb_store::samples::Step,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<plumb_model::node::NodeSample>> {
        self.c()?
            .q(
                "SELECT at_ns, load1, mem_used, mem_total, disks FROM node_samples
                 WHERE node = $1 AND step_s = $2 AND at_ns >= $3 ORDER BY at_ns LIMIT $4",
                &[&node, &step.secs(), &since.as_nanos(), &(limit as i64)],
            )?
            .iter()
            .map(|r| sample_row(node, r))
            .collect()
    }

    fn node_sparks(
        &self,
        step: plumb_store::samples::Step,
        since: Timestamp,
    ) -> Result<Vec<plumb_store::samples::SparkRow>> {
        Ok(self
            .c()?
            .q(
                "SELECT s.node, s.at_ns, s.load1, s.disk_pct FROM nodes n
                 JOIN node_samples s ON s.node = n.name AND s.step_s = $1 AND s.at_ns >= $2
                 ORDER BY n.name, s.at_ns",
                &[&step.secs(), &since.as_nanos()],
            )?
            .iter()
            .map(|r| plumb_store::samples::SparkRow {
                node: r.get(0),
                at: Timestamp::from_nanos(r.get(1)),
                load1: r.get(2),
                disk_pct: r.get(3),
            })
            .collect())
    }
}
