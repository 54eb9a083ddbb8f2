//! Alerts: the state of every alert by fingerprint (so a restarted
//! collector knows what fired and what it already notified), the effective
//! rules (so every reader shows the same ones), disk samples for the
//! disk-fill prediction, and the per-job outcome counts the failure-rate
//! rule reads.
//!
//! The collector decides what fires (`plumb_collector::alerts`); this module
//! only keeps it.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::Timestamp;
use plumb_model::alerts::{Alert, AlertState, Annotations, Severity};
use rusqlite::{OptionalExtension, params};

/// An alert as stored: the listed [`Alert`] plus what evaluation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// The alert; its state may be [`AlertState::Pending`] here.
    pub alert: Alert,
    /// When its condition started to hold (before its `for` passed).
    pub active_since: Timestamp,
    /// The state the last notification about it told (`None`: never
    /// notified).
    pub notified: Option<AlertState>,
}

/// Outcomes of a job name's most recent finished runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcomes {
    /// The run name.
    pub name: String,
    /// Finished runs counted (at most the limit asked for).
    pub runs: u32,
    /// Of those, the ones that did not succeed.
    pub failed: u32,
    /// Host of the most recent one.
    pub last_host: String,
}

impl crate::backend::Alerts for Store {
    fn alert_rows(&self) -> Result<Vec<AlertRow>> {
        let mut st = self.conn().prepare(
            "SELECT fingerprint, name, severity, state, labels, annotations, active_ns,
                    starts_ns, ends_ns, last_notified_ns, notified_state
             FROM alerts ORDER BY starts_ns DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (fp, name, sev, state, labels, ann, active, starts, ends, notified_at, notified) =
                r?;
            let json_err = |what: &str, source| StoreError::Json {
                id: format!("alert {fp} {what}"),
                source,
            };
            let labels = serde_json::from_str(&labels).map_err(|e| json_err("labels", e))?;
            let (summary, description): (String, String) =
                serde_json::from_str(&ann).map_err(|e| json_err("annotations", e))?;
            let bad =
                |what: &str, v: &str| StoreError::Corrupt(format!("alert {fp}: {what} `{v}`"));
            out.push(AlertRow {
                alert: Alert {
                    severity: Severity::parse(&sev).ok_or_else(|| bad("severity", &sev))?,
                    state: AlertState::parse(&state).ok_or_else(|| bad("state", &state))?,
                    fingerprint: fp.clone(),
                    name,
                    labels,
                    annotations: Annotations {
                        summary,
                        description,
                    },
                    starts_at: Timestamp::from_nanos(starts),
                    ends_at: ends.map(Timestamp::from_nanos),
                    last_notified: notified_at.map(Timestamp::from_nanos),
                },
                active_since: Timestamp::from_nanos(active),
                notified: notified
                    .as_deref()
                    .map(|s| AlertState::parse(s).ok_or_else(|| bad("notified state", s)))
                    .transpose()?,
            });
        }
        Ok(out)
    }

    fn put_alert_rows(&self, rows: &[AlertRow], delete: &[String]) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO alerts (fingerprint, name, severity, state, labels,
                    annotations, active_ns, starts_ns, ends_ns, last_notified_ns, notified_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for row in rows {
                let a = &row.alert;
                put.execute(params![
                    a.fingerprint,
                    a.name,
                    a.severity.as_str(),
                    a.state.as_str(),
                    serde_json::to_string(&a.labels).expect("labels serialize"),
                    serde_json::to_string(&(&a.annotations.summary, &a.annotations.description))
                        .expect("strings serialize"),
                    row.active_since.as_nanos(),
                    a.starts_at.as_nanos(),
                    a.ends_at.map(|t| t.as_nanos()),
                    a.last_notified.map(|t| t.as_nanos()),
                    row.notified.map(|s| s.as_str()),
                ])?;
            }
            let mut del = tx.prepare_cached("DELETE FROM alerts WHERE fingerprint = ?1")?;
            for fp in delete {
                del.execute([fp])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prune_resolved_alerts(&self, before: Timestamp, keep: usize) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM alerts WHERE state = 'resolved' AND (ends_ns < ?1 OR fingerprint IN (
                SELECT fingerprint FROM alerts WHERE state = 'resolved'
                ORDER BY ends_ns DESC LIMIT -1 OFFSET ?2))",
            params![before.as_nanos(), keep as i64],
        )?;
        Ok(n)
    }

    fn set_alert_rules(&self, json: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO alert_rules (id, rules) VALUES (1, ?1)",
            [json],
        )?;
        Ok(())
    }

    fn alert_rules(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT rules FROM alert_rules WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    #[allow(clippy::too_many_arguments)]
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
        let tx = self.conn().unchecked_transaction()?;
        let last: Option<i64> = tx.query_row(
            "SELECT MAX(t_ns) FROM disk_samples WHERE node = ?1 AND mount = ?2",
            params![node, mount],
            |r| r.get(0),
        )?;
        if last.is_some_and(|l| at.as_nanos() - l < min_gap_ns) {
            return Ok(false);
        }
        tx.execute(
            "INSERT OR REPLACE INTO disk_samples (node, mount, t_ns, available, total)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![node, mount, at.as_nanos(), available as i64, total as i64],
        )?;
        tx.execute(
            "DELETE FROM disk_samples WHERE node = ?1 AND mount = ?2 AND (t_ns < ?3 OR t_ns IN (
                SELECT t_ns FROM disk_samples WHERE node = ?1 AND mount = ?2
                ORDER BY t_ns DESC LIMIT -1 OFFSET ?4))",
            params![node, mount, window_start.as_nanos(), keep as i64],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn disk_samples(&self, node: &str, mount: &str) -> Result<Vec<(Timestamp, u64)>> {
        let mut st = self.conn().prepare_cached(
            "SELECT t_ns, available FROM disk_samples WHERE node = ?1 AND mount = ?2 ORDER BY t_ns",
        )?;
        let rows = st.query_map(params![node, mount], |r| {
            Ok((
                Timestamp::from_nanos(r.get(0)?),
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn forget_disk_samples_before(&self, before: Timestamp) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM disk_samples WHERE t_ns < ?1",
            [before.as_nanos()],
        )?)
    }

    fn job_outcomes(&self, since: Timestamp, last: u32) -> Result<Vec<JobOutcomes>> {
        let mut names = self
            .conn()
            .prepare_cached("SELECT DISTINCT name FROM runs WHERE started_ns >= ?1")?;
        let names: Vec<String> = names
            .query_map([since.as_nanos()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // Finished means ended: a run still running, or waiting for a
        // slot or a retry, has no outcome to count yet.
        let mut per = self.conn().prepare_cached(
            "SELECT state, host FROM runs WHERE name = ?1 AND ended_ns IS NOT NULL
             ORDER BY started_ns DESC LIMIT ?2",
        )?;
        let mut out = Vec::new();
        for name in names {
            let rows: Vec<(String, String)> = per
                .query_map(params![name, last], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            if rows.is_empty() {
                continue;
            }
            out.push(JobOutcomes {
                runs: rows.len() as u32,
                failed: rows.iter().filter(|(s, _)| s != "succeeded").count() as u32,
                last_host: rows[0].1.clone(),
                name,
            });
        }
        Ok(out)
    }
}
