//! [`Insights`] on PostgreSQL: error groups and run-duration statistics,
//! as the SQLite store keeps them (the queue of failed runs is filled by
//! the trigger on `runs`, see the schema).

use crate::{PgStore, Sql, json};
use plumb_model::insights::{
    DurationStats, ErrorGroup, ErrorGroupDetail, ErrorOccurrence, ErrorQuery, ErrorStatus,
    HostCount, OccurrenceSource, RunDuration, SlowConfig, SlowRun,
};
use plumb_model::{Exception, Run, Timestamp, Uuid};
use plumb_store::insights::{Drained, NewOccurrence, run_occurrence};
use plumb_store::kit::{self, SCAN_FACTOR};
use plumb_store::{Insights, Result, StoreError};
use postgres::{Row, Transaction};

/// SQL that maps a group row to its status; `$1` is now and `$2` the new
/// window, in ns.
const STATUS_SQL: &str = "CASE
    WHEN resolved_ns IS NOT NULL THEN 'resolved'
    WHEN regressed_ns IS NOT NULL THEN 'regressed'
    WHEN first_seen_ns >= $1::BIGINT - $2::BIGINT THEN 'new'
    ELSE 'ongoing' END";

const GROUP_COLUMNS: &str = "fingerprint, kind, message, language, count, runs, first_seen_ns,
    last_seen_ns, resolved_ns, regressed_ns";

fn secs_ns(s: u64) -> i64 {
    (s as i64).saturating_mul(1_000_000_000)
}

fn group_row(r: &Row) -> ErrorGroup {
    let status: &str = r.get(10);
    ErrorGroup {
        fingerprint: r.get(0),
        kind: r.get(1),
        message: r.get(2),
        language: r.get(3),
        count: r.get::<_, i64>(4) as u64,
        runs: r.get::<_, i64>(5) as u64,
        first_seen: Timestamp::from_nanos(r.get(6)),
        last_seen: Timestamp::from_nanos(r.get(7)),
        hosts: Vec::new(),
        hosts_total: None,
        status: status.parse().unwrap_or(ErrorStatus::Ongoing),
        resolved_at: r.get::<_, Option<i64>>(8).map(Timestamp::from_nanos),
        regressed_at: r.get::<_, Option<i64>>(9).map(Timestamp::from_nanos),
    }
}

/// Files one occurrence; false when its key was filed before.
fn record_tx(tx: &mut Transaction<'_>, o: &NewOccurrence) -> Result<bool> {
    let fp = &o.exception.fingerprint;
    let at = o.at.as_nanos();
    let run_id = o.run_id.map(|u| u.to_string());
    let inserted = tx.x(
        "INSERT INTO error_events (key, fingerprint, run_id, host, at_ns, source)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
        &[&o.key, fp, &run_id, &o.host, &at, &o.source.as_str()],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    let new_run = match &run_id {
        Some(id) => tx.x(
            "INSERT INTO error_runs (fingerprint, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[fp, id],
        )?,
        None => 0,
    } as i64;
    let sample = serde_json::to_string(&o.exception).expect("exception serializes");
    // One statement whichever comes first: a new group, or one more
    // occurrence of a known one, which reopens it as regressed when it
    // happened after its resolution (a late-arriving older one does not).
    tx.x(
        "INSERT INTO error_groups (fingerprint, kind, message, language, sample,
             first_seen_ns, last_seen_ns, count, runs)
         VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7)
         ON CONFLICT (fingerprint) DO UPDATE SET
             count = error_groups.count + 1,
             runs = error_groups.runs + EXCLUDED.runs,
             first_seen_ns = LEAST(error_groups.first_seen_ns, EXCLUDED.first_seen_ns),
             last_seen_ns = GREATEST(error_groups.last_seen_ns, EXCLUDED.last_seen_ns),
             regressed_ns = CASE WHEN error_groups.resolved_ns IS NOT NULL
                 AND EXCLUDED.last_seen_ns > error_groups.resolved_ns
                 THEN EXCLUDED.last_seen_ns ELSE error_groups.regressed_ns END,
             resolved_ns = CASE WHEN error_groups.resolved_ns IS NOT NULL
                 AND EXCLUDED.last_seen_ns > error_groups.resolved_ns
                 THEN NULL ELSE error_groups.resolved_ns END",
        &[
            fp,
            &o.exception.kind,
            &o.exception.message,
            &o.exception.language,
            &sample,
            &at,
            &new_run,
        ],
    )?;
    tx.x(
        "INSERT INTO error_hosts (fingerprint, host, count) VALUES ($1, $2, 1)
         ON CONFLICT (fingerprint, host) DO UPDATE SET count = error_hosts.count + 1",
        &[fp, &o.host],
    )?;
    Ok(true)
}

impl Insights for PgStore {
    fn record_error_occurrences(&self, occurrences: &[NewOccurrence]) -> Result<usize> {
        if occurrences.is_empty() {
            return Ok(0);
        }
        self.tx(|tx| {
            let mut filed = 0;
            for o in occurrences {
                filed += usize::from(record_tx(tx, o)?);
            }
            Ok(filed)
        })
    }

    fn drain_error_queue(
        &self,
        limit: usize,
        fingerprint: &dyn Fn(&Exception) -> String,
    ) -> Result<Drained> {
        self.tx(|tx| {
            // SKIP LOCKED: two collectors draining at once take different
            // entries instead of waiting for each other.
            let queued = tx.q(
                "DELETE FROM error_queue WHERE id IN (
                     SELECT id FROM error_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, run_id",
                &[&(limit as i64)],
            )?;
            let mut ids: Vec<(i64, String)> =
                queued.iter().map(|r| (r.get(0), r.get(1))).collect();
            ids.sort();
            let mut done = Drained::default();
            for (_, run_id) in &ids {
                done.taken += 1;
                let Some(row) = tx.qo("SELECT record FROM runs WHERE id = $1", &[run_id])? else {
                    continue;
                };
                let run: Run = match serde_json::from_str(row.get::<_, &str>(0)) {
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
                done.filed += usize::from(record_tx(tx, &occ)?);
            }
            Ok(done)
        })
    }

    fn error_queue_len(&self) -> Result<u64> {
        let n: i64 = self
            .c()?
            .q1("SELECT count(*) FROM error_queue", &[])?
            .get(0);
        Ok(n as u64)
    }

    fn auto_resolve_error_groups(&self, now: Timestamp, quiet_s: u64) -> Result<usize> {
        Ok(self.c()?.x(
            "UPDATE error_groups SET resolved_ns = last_seen_ns + $2
             WHERE resolved_ns IS NULL AND last_seen_ns + $2 <= $1",
            &[&now.as_nanos(), &secs_ns(quiet_s)],
        )? as usize)
    }

    fn resolve_error_fingerprint(&self, prefix: &str) -> Result<Option<String>> {
        let prefix = prefix.trim().to_string();
        if prefix.is_empty() {
            return Ok(None);
        }
        let found: Vec<String> = self
            .c()?
            .q(
                "SELECT fingerprint FROM error_groups WHERE starts_with(fingerprint, $1)
                 ORDER BY fingerprint LIMIT 6",
                &[&prefix],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
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
        Ok(self.c()?.x(
            "UPDATE error_groups SET resolved_ns = $2 WHERE fingerprint = $1",
            &[&fingerprint, &at.as_nanos()],
        )? == 1)
    }

    fn error_groups(&self, q: &ErrorQuery) -> Result<Vec<ErrorGroup>> {
        let sql = format!(
            "SELECT * FROM (SELECT {GROUP_COLUMNS}, {STATUS_SQL} AS status FROM error_groups
                            WHERE last_seen_ns >= $3) g
             WHERE ($4::TEXT IS NULL OR status = $4)
             ORDER BY last_seen_ns DESC, fingerprint LIMIT $5"
        );
        let rows = self.c()?.q(
            &sql,
            &[
                &q.now.as_nanos(),
                &secs_ns(q.new_window_s),
                &q.since.map_or(i64::MIN, Timestamp::as_nanos),
                &q.status.map(ErrorStatus::as_str),
                &(q.limit.min(i64::MAX as usize) as i64),
            ],
        )?;
        let mut groups: Vec<ErrorGroup> = rows.iter().map(group_row).collect();
        for g in &mut groups {
            g.hosts = self
                .c()?
                .q(
                    "SELECT host FROM error_hosts WHERE fingerprint = $1 ORDER BY host",
                    &[&g.fingerprint],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
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
        let sql = format!(
            "SELECT {GROUP_COLUMNS}, {STATUS_SQL} AS status, sample FROM error_groups
             WHERE fingerprint = $3"
        );
        let Some(row) = self.c()?.qo(
            &sql,
            &[&now.as_nanos(), &secs_ns(new_window_s), &fingerprint],
        )?
        else {
            return Ok(None);
        };
        let mut group = group_row(&row);
        let sample: Exception = json(format!("error group {fingerprint}"), row.get::<_, &str>(11))?;
        let by_host: Vec<HostCount> = self
            .c()?
            .q(
                "SELECT host, count FROM error_hosts WHERE fingerprint = $1
                 ORDER BY count DESC, host",
                &[&fingerprint],
            )?
            .iter()
            .map(|r| HostCount {
                host: r.get(0),
                count: r.get::<_, i64>(1) as u64,
            })
            .collect();
        group.hosts = by_host.iter().map(|h| h.host.clone()).collect();
        group.hosts.sort();
        let occurrences = self
            .c()?
            .q(
                "SELECT run_id, host, at_ns, source FROM error_events
                 WHERE fingerprint = $1 ORDER BY at_ns DESC LIMIT $2",
                &[&fingerprint, &(recent as i64)],
            )?
            .iter()
            .map(|r| ErrorOccurrence {
                run_id: r
                    .get::<_, Option<String>>(0)
                    .and_then(|s| Uuid::parse_str(&s).ok()),
                host: r.get(1),
                at: Timestamp::from_nanos(r.get(2)),
                source: if r.get::<_, &str>(3) == "otlp" {
                    OccurrenceSource::Otlp
                } else {
                    OccurrenceSource::Run
                },
            })
            .collect();
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
            "SELECT status, count(*), coalesce(sum(count), 0)::BIGINT FROM
                 (SELECT {STATUS_SQL} AS status, count FROM error_groups) g
             GROUP BY status"
        );
        let mut by_status = Vec::new();
        let mut total = 0u64;
        for r in self
            .c()?
            .q(&sql, &[&now.as_nanos(), &secs_ns(new_window_s)])?
        {
            if let Ok(s) = r.get::<_, &str>(0).parse() {
                by_status.push((s, r.get::<_, i64>(1) as u64));
            }
            total += r.get::<_, i64>(2) as u64;
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
        Ok(self
            .c()?
            .q(
                "SELECT at_ns FROM error_events WHERE fingerprint = $1 AND at_ns >= $2 AND at_ns < $3
                 ORDER BY at_ns DESC LIMIT $4",
                &[
                    &fingerprint,
                    &from.as_nanos(),
                    &until.as_nanos(),
                    &(limit as i64),
                ],
            )?
            .iter()
            .map(|r| Timestamp::from_nanos(r.get(0)))
            .collect())
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
        let until = from
            .as_nanos()
            .saturating_add(days as i64 * plumb_store::insights::DAY_NS);
        Ok(self
            .c()?
            .q(
                "SELECT fingerprint, day_ns, n FROM error_days
                 WHERE fingerprint = ANY($1) AND day_ns >= $2 AND day_ns < $3",
                &[&fingerprints, &from.as_nanos(), &until],
            )?
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Timestamp::from_nanos(r.get(1)),
                    r.get::<_, i64>(2) as u64,
                )
            })
            .collect())
    }

    fn duration_stats(&self, name: &str, window: usize) -> Result<DurationStats> {
        // The inner query walks the runs_name index backwards and stops
        // after a bounded number of rows, whatever the size of the table.
        let durations: Vec<i64> = self
            .c()?
            .q(
                "SELECT ended_ns - started_ns FROM (
                     SELECT state, started_ns, ended_ns FROM runs
                     WHERE name = $1 ORDER BY started_ns DESC LIMIT $2) r
                 WHERE state = 'succeeded' AND ended_ns IS NOT NULL LIMIT $3",
                &[
                    &name,
                    &(window.saturating_mul(SCAN_FACTOR) as i64),
                    &(window as i64),
                ],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(kit::duration_stats(name, durations))
    }

    fn slow_runs(&self, now: Timestamp, config: &SlowConfig) -> Result<Vec<SlowRun>> {
        let min_elapsed_ns = (config.min_elapsed_s.max(0.0) * 1e9) as i64;
        let running = self
            .c()?
            .q(
                "SELECT id, name, host, started_ns FROM runs
                 WHERE state = 'running' AND started_ns <= $1",
                &[&now.as_nanos().saturating_sub(min_elapsed_ns)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        kit::slow_runs(now, config, running, &mut |name| {
            self.duration_stats(name, config.window)
        })
    }

    fn run_duration(&self, run_id: Uuid, now: Timestamp, window: usize) -> Result<RunDuration> {
        let row = self
            .c()?
            .qo(
                "SELECT name, started_ns, ended_ns FROM runs WHERE id = $1",
                &[&run_id.to_string()],
            )?
            .ok_or_else(|| StoreError::NoSuchRun(run_id.to_string()))?;
        let (name, started, ended): (String, i64, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
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
