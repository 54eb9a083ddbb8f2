//! Error groups and run-duration statistics.
//!
//! **Error groups.** Failed runs are queued for grouping by a trigger on the
//! `runs` table (see the schema), so the ingest path pays one indexed insert
//! per failed run and nothing for successful ones. A background task (the
//! collector's, or `plumb errors` on the local store) drains the queue with
//! [`Store::drain_error_queue`], which parses each run's exception into an
//! occurrence and files it under its fingerprint. OTLP log records with
//! `exception.*` attributes are filed directly with
//! [`Store::record_error_occurrences`]. Every occurrence has a key (`run:`
//! and the run id, or `otlp:` and the log record's identity), stored once,
//! so re-ingesting or re-draining never counts twice.
//!
//! A group is resolved by hand ([`Store::resolve_error_group`]) or after a
//! quiet period ([`Store::auto_resolve_error_groups`]); an occurrence after
//! its resolution marks it regressed.
//!
//! **Durations.** [`Store::duration_stats`] reads the latest successful runs
//! of one name through the `runs_name` index (a bounded number of rows);
//! [`Store::slow_runs`] computes them only for names that have a run in
//! progress.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::insights::{
    DurationStats, ErrorGroup, ErrorGroupDetail, ErrorOccurrence, ErrorQuery, ErrorStatus,
    HostCount, OccurrenceSource, RunDuration, SlowConfig, SlowRun,
};
use plumb_model::{Exception, Run, RunState, Timestamp, Uuid};
use rusqlite::{OptionalExtension, params};

use crate::kit::SCAN_FACTOR;

/// An occurrence to file: what happened, where, and the key that makes
/// filing it idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOccurrence {
    /// Unique per occurrence: `run:<id>` or `otlp:<time>:<hash>`.
    pub key: String,
    /// The exception, its fingerprint set.
    pub exception: Exception,
    /// The run it happened in, when known.
    pub run_id: Option<Uuid>,
    /// The host.
    pub host: String,
    /// When.
    pub at: Timestamp,
    /// Where it came from.
    pub source: OccurrenceSource,
}

/// What a drain of the error queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Queue entries taken (and removed).
    pub taken: usize,
    /// New occurrences filed (runs with an exception, not seen before).
    pub filed: usize,
}

/// A UTC day, ns: the bucket of [`crate::backend::Insights::error_day_counts`].
pub const DAY_NS: i64 = 86_400_000_000_000;

/// SQL that maps a group row to its status; `?now` and `?window` are the
/// first two parameters of every query that uses it.
const STATUS_SQL: &str = "CASE
    WHEN resolved_ns IS NOT NULL THEN 'resolved'
    WHEN regressed_ns IS NOT NULL THEN 'regressed'
    WHEN first_seen_ns >= ?1 - ?2 THEN 'new'
    ELSE 'ongoing' END";

/// The occurrence a finished run makes: its exception, filed under the
/// fingerprint `fingerprint` computes, at the time it ended.
pub fn run_occurrence(
    run: &Run,
    fingerprint: &dyn Fn(&Exception) -> String,
) -> Option<NewOccurrence> {
    if matches!(run.state, RunState::Running | RunState::Succeeded) {
        return None;
    }
    let mut exception = run.exception.clone()?;
    exception.fingerprint = fingerprint(&exception);
    Some(NewOccurrence {
        key: format!("run:{}", run.id),
        exception,
        run_id: Some(run.id),
        host: run.host.hostname.clone(),
        at: run.ended.unwrap_or(run.started),
        source: OccurrenceSource::Run,
    })
}

fn secs_ns(s: u64) -> i64 {
    (s as i64).saturating_mul(1_000_000_000)
}

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ErrorGroup> {
    let status: String = r.get(10)?;
    Ok(ErrorGroup {
        fingerprint: r.get(0)?,
        kind: r.get(1)?,
        message: r.get(2)?,
        language: r.get(3)?,
        count: r.get::<_, i64>(4)? as u64,
        runs: r.get::<_, i64>(5)? as u64,
        first_seen: Timestamp::from_nanos(r.get(6)?),
        last_seen: Timestamp::from_nanos(r.get(7)?),
        hosts: Vec::new(),
        hosts_total: None,
        status: status.parse().unwrap_or(ErrorStatus::Ongoing),
        resolved_at: r.get::<_, Option<i64>>(8)?.map(Timestamp::from_nanos),
        regressed_at: r.get::<_, Option<i64>>(9)?.map(Timestamp::from_nanos),
    })
}

/// Files one occurrence; false when its key was filed before.
fn record_tx(tx: &rusqlite::Transaction<'_>, o: &NewOccurrence) -> Result<bool> {
    let fp = &o.exception.fingerprint;
    let at = o.at.as_nanos();
    let run_id = o.run_id.map(|u| u.to_string());
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO error_events (key, fingerprint, run_id, host, at_ns, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![o.key, fp, run_id, o.host, at, o.source.as_str()])?;
    if inserted == 0 {
        return Ok(false);
    }
    let new_run = match &run_id {
        Some(id) => tx
            .prepare_cached(
                "INSERT OR IGNORE INTO error_runs (fingerprint, run_id) VALUES (?1, ?2)",
            )?
            .execute(params![fp, id])?,
        None => 0,
    } as i64;
    let existing: Option<Option<i64>> = tx
        .prepare_cached("SELECT resolved_ns FROM error_groups WHERE fingerprint = ?1")?
        .query_row([fp], |r| r.get(0))
        .optional()?;
    match existing {
        None => {
            let sample = serde_json::to_string(&o.exception).expect("exception serializes");
            tx.prepare_cached(
                "INSERT INTO error_groups (fingerprint, kind, message, language, sample,
                     first_seen_ns, last_seen_ns, count, runs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7)",
            )?
            .execute(params![
                fp,
                o.exception.kind,
                o.exception.message,
                o.exception.language,
                sample,
                at,
                new_run
            ])?;
        }
        Some(resolved) => {
            // An occurrence after the resolution reopens the group as
            // regressed; a late-arriving older one does not.
            let regressed = resolved.is_some_and(|r| at > r);
            tx.prepare_cached(
                "UPDATE error_groups SET count = count + 1, runs = runs + ?2,
                     first_seen_ns = min(first_seen_ns, ?3), last_seen_ns = max(last_seen_ns, ?3),
                     resolved_ns = CASE WHEN ?4 THEN NULL ELSE resolved_ns END,
                     regressed_ns = CASE WHEN ?4 THEN ?3 ELSE regressed_ns END
                 WHERE fingerprint = ?1",
            )?
            .execute(params![fp, new_run, at, regressed])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO error_hosts (fingerprint, host, count) VALUES (?1, ?2, 1)
         ON CONFLICT (fingerprint, host) DO UPDATE SET count = count + 1",
    )?
    .execute(params![fp, o.host])?;
    Ok(true)
}

impl crate::backend::Insights for Store {
    fn record_error_occurrences(&self, occurrences: &[NewOccurrence]) -> Result<usize> {
        if occurrences.is_empty() {
            return Ok(0);
        }
        let tx = self.conn().unchecked_transaction()?;
        let mut filed = 0;
        for o in occurrences {
            filed += usize::from(record_tx(&tx, o)?);
        }
        tx.commit()?;
        Ok(filed)
    }

    fn drain_error_queue(
        &self,
        limit: usize,
        fingerprint: &dyn Fn(&Exception) -> String,
    ) -> Result<Drained> {
        let tx = self.conn().unchecked_transaction()?;
        let queued: Vec<(i64, String)> = {
            let mut st =
                tx.prepare_cached("SELECT id, run_id FROM error_queue ORDER BY id LIMIT ?1")?;
            st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut done = Drained::default();
        for (qid, run_id) in &queued {
            done.taken += 1;
            tx.execute("DELETE FROM error_queue WHERE id = ?1", [qid])?;
            let record: Option<String> = tx
                .query_row("SELECT record FROM runs WHERE id = ?1", [run_id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(record) = record else { continue };
            let run: Run = match serde_json::from_str(&record) {
                Ok(r) => r,
                Err(e) => {
                    // One unreadable record must not block the queue.
                    tracing::warn!(run = %run_id, error = %e, "cannot read a queued run; not grouped");
                    continue;
                }
            };
            let Some(occ) = run_occurrence(&run, fingerprint) else {
                continue;
            };
            done.filed += usize::from(record_tx(&tx, &occ)?);
        }
        tx.commit()?;
        Ok(done)
    }

    fn error_queue_len(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM error_queue", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn auto_resolve_error_groups(&self, now: Timestamp, quiet_s: u64) -> Result<usize> {
        let quiet = secs_ns(quiet_s);
        let n = self.conn().execute(
            "UPDATE error_groups SET resolved_ns = last_seen_ns + ?2
             WHERE resolved_ns IS NULL AND last_seen_ns + ?2 <= ?1",
            params![now.as_nanos(), quiet],
        )?;
        Ok(n)
    }

    fn resolve_error_fingerprint(&self, prefix: &str) -> Result<Option<String>> {
        let prefix = prefix.trim().to_string();
        if prefix.is_empty() {
            return Ok(None);
        }
        // A range on the primary key: every string starting with the prefix.
        let mut st = self.conn().prepare_cached(
            "SELECT fingerprint FROM error_groups WHERE fingerprint >= ?1 AND fingerprint < ?1 || char(1114111)
             ORDER BY fingerprint LIMIT 6",
        )?;
        let found: Vec<String> = st
            .query_map([&prefix], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            n => Err(StoreError::Ambiguous {
                prefix,
                more: n > 5,
                candidates: found.into_iter().take(5).collect(),
            }),
        }
    }

    fn resolve_error_group(&self, fingerprint: &str, at: Timestamp) -> Result<bool> {
        let Some(fingerprint) = self.resolve_error_fingerprint(fingerprint)? else {
            return Ok(false);
        };
        let n = self.conn().execute(
            "UPDATE error_groups SET resolved_ns = ?2 WHERE fingerprint = ?1",
            params![fingerprint, at.as_nanos()],
        )?;
        Ok(n == 1)
    }

    fn error_groups(&self, q: &ErrorQuery) -> Result<Vec<ErrorGroup>> {
        let sql = format!(
            "SELECT fingerprint, kind, message, language, count, runs, first_seen_ns,
                    last_seen_ns, resolved_ns, regressed_ns, {STATUS_SQL} AS status
             FROM error_groups
             WHERE last_seen_ns >= ?3 AND (?4 IS NULL OR status = ?4)
             ORDER BY last_seen_ns DESC, fingerprint LIMIT ?5"
        );
        let mut st = self.conn().prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                q.now.as_nanos(),
                secs_ns(q.new_window_s),
                q.since.map_or(i64::MIN, Timestamp::as_nanos),
                q.status.map(ErrorStatus::as_str),
                q.limit.min(i64::MAX as usize) as i64,
            ],
            group_row,
        )?;
        let mut groups = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut hosts = self
            .conn()
            .prepare_cached("SELECT host FROM error_hosts WHERE fingerprint = ?1 ORDER BY host")?;
        for g in &mut groups {
            g.hosts = hosts
                .query_map([&g.fingerprint], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
        }
        Ok(groups)
    }

    fn error_group(
        &self,
        fingerprint: &str,
        now: Timestamp,
        new_window_s: u64,
        recent: usize,
    ) -> Result<Option<ErrorGroupDetail>> {
        let Some(fingerprint) = self.resolve_error_fingerprint(fingerprint)? else {
            return Ok(None);
        };
        let fingerprint = fingerprint.as_str();
        let sql = format!(
            "SELECT fingerprint, kind, message, language, count, runs, first_seen_ns,
                    last_seen_ns, resolved_ns, regressed_ns, {STATUS_SQL} AS status, sample
             FROM error_groups WHERE fingerprint = ?3"
        );
        let found = self
            .conn()
            .query_row(
                &sql,
                params![now.as_nanos(), secs_ns(new_window_s), fingerprint],
                |r| Ok((group_row(r)?, r.get::<_, String>(11)?)),
            )
            .optional()?;
        let Some((mut group, sample)) = found else {
            return Ok(None);
        };
        let sample: Exception =
            serde_json::from_str(&sample).map_err(|source| StoreError::Json {
                id: format!("error group {fingerprint}"),
                source,
            })?;
        let by_host: Vec<HostCount> = {
            let mut st = self.conn().prepare_cached(
                "SELECT host, count FROM error_hosts WHERE fingerprint = ?1
                 ORDER BY count DESC, host",
            )?;
            st.query_map([fingerprint], |r| {
                Ok(HostCount {
                    host: r.get(0)?,
                    count: r.get::<_, i64>(1)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        group.hosts = by_host.iter().map(|h| h.host.clone()).collect();
        group.hosts.sort();
        let occurrences = {
            let mut st = self.conn().prepare_cached(
                "SELECT run_id, host, at_ns, source FROM error_events
                 WHERE fingerprint = ?1 ORDER BY at_ns DESC LIMIT ?2",
            )?;
            st.query_map(params![fingerprint, recent as i64], |r| {
                let run: Option<String> = r.get(0)?;
                let source: String = r.get(3)?;
                Ok(ErrorOccurrence {
                    run_id: run.and_then(|s| Uuid::parse_str(&s).ok()),
                    host: r.get(1)?,
                    at: Timestamp::from_nanos(r.get(2)?),
                    source: if source == "otlp" {
                        OccurrenceSource::Otlp
                    } else {
                        OccurrenceSource::Run
                    },
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        Ok(Some(ErrorGroupDetail {
            group,
            occurrences,
            by_host,
            sample,
            over_time: None,
        }))
    }

    fn error_group_counts(
        &self,
        now: Timestamp,
        new_window_s: u64,
    ) -> Result<(Vec<(ErrorStatus, u64)>, u64)> {
        let sql = format!(
            "SELECT {STATUS_SQL} AS status, count(*), coalesce(sum(count), 0)
             FROM error_groups GROUP BY status"
        );
        let mut st = self.conn().prepare_cached(&sql)?;
        let mut by_status = Vec::new();
        let mut total = 0u64;
        let rows = st.query_map(params![now.as_nanos(), secs_ns(new_window_s)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (status, groups, occurrences) = row?;
            if let Ok(s) = status.parse() {
                by_status.push((s, groups as u64));
            }
            total += occurrences as u64;
        }
        Ok((by_status, total))
    }

    fn error_occurrence_times(
        &self,
        fingerprint: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>> {
        let mut st = self.conn().prepare_cached(
            "SELECT at_ns FROM error_events WHERE fingerprint = ?1 AND at_ns >= ?2 AND at_ns < ?3 \
             ORDER BY at_ns DESC LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![fingerprint, from.as_nanos(), until.as_nanos(), limit as i64],
            |r| r.get::<_, i64>(0).map(Timestamp::from_nanos),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn error_day_counts(
        &self,
        fingerprints: &[String],
        from: Timestamp,
        days: usize,
    ) -> Result<Vec<(String, Timestamp, u64)>> {
        if fingerprints.is_empty() || days == 0 {
            return Ok(Vec::new());
        }
        let until = from.as_nanos().saturating_add(days as i64 * DAY_NS);
        let marks = vec!["?"; fingerprints.len()].join(", ");
        let mut st = self.conn().prepare(&format!(
            "SELECT fingerprint, day_ns, n FROM error_days \
             WHERE fingerprint IN ({marks}) AND day_ns >= ? AND day_ns < ?"
        ))?;
        let mut args: Vec<&dyn rusqlite::ToSql> = fingerprints
            .iter()
            .map(|f| f as &dyn rusqlite::ToSql)
            .collect();
        let (a, b) = (from.as_nanos(), until);
        args.push(&a);
        args.push(&b);
        let rows = st.query_map(args.as_slice(), |r| {
            Ok((
                r.get::<_, String>(0)?,
                Timestamp::from_nanos(r.get(1)?),
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn duration_stats(&self, name: &str, window: usize) -> Result<DurationStats> {
        // The inner query walks the runs_name index backwards and stops after
        // a bounded number of rows, whatever the size of the table.
        let mut st = self.conn().prepare_cached(
            "SELECT ended_ns - started_ns FROM (
                 SELECT state, started_ns, ended_ns FROM runs
                 WHERE name = ?1 ORDER BY started_ns DESC LIMIT ?2)
             WHERE state = 'succeeded' AND ended_ns IS NOT NULL LIMIT ?3",
        )?;
        let durations: Vec<i64> = st
            .query_map(
                params![
                    name,
                    (window.saturating_mul(SCAN_FACTOR)) as i64,
                    window as i64
                ],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(crate::kit::duration_stats(name, durations))
    }

    fn slow_runs(&self, now: Timestamp, config: &SlowConfig) -> Result<Vec<SlowRun>> {
        let min_elapsed_ns = (config.min_elapsed_s.max(0.0) * 1e9) as i64;
        let running: Vec<(String, String, String, i64)> = {
            let mut st = self.conn().prepare_cached(
                "SELECT id, name, host, started_ns FROM runs
                 WHERE state = 'running' AND started_ns <= ?1",
            )?;
            st.query_map([now.as_nanos().saturating_sub(min_elapsed_ns)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        crate::kit::slow_runs(now, config, running, &mut |name| {
            self.duration_stats(name, config.window)
        })
    }

    fn run_duration(&self, run_id: Uuid, now: Timestamp, window: usize) -> Result<RunDuration> {
        let row: Option<(String, i64, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT name, started_ns, ended_ns FROM runs WHERE id = ?1",
                [run_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (name, started, ended) =
            row.ok_or_else(|| StoreError::NoSuchRun(run_id.to_string()))?;
        let stats = self.duration_stats(&name, window)?;
        let duration_s = (ended.unwrap_or(now.as_nanos()) - started).max(0) as f64 / 1e9;
        let factor = (stats.p95_s > 0.0).then(|| duration_s / stats.p95_s);
        Ok(RunDuration {
            run_id,
            duration_s,
            stats,
            factor,
        })
    }
}
