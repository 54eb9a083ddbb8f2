//! [`Runs`] on PostgreSQL: run records, fingerprints, finding runs, and
//! the spool frames the collector's native ingest takes.

use crate::{Params, PgStore, Sql, json, uuid};
use plumb_model::chart::{StateCount, align_down};
use plumb_model::stack::StackSnapshot;
use plumb_model::{Fingerprint, OutputGap, Run, RunState, Timestamp, Uuid};
use plumb_store::dash::{
    COUNT_BUCKET_NS, DIRECT_COUNT_CAP, JobRun, PageKey, RunCounts, RunQuery, RunsPage,
};
use plumb_store::kit::{self, Item};
use plumb_store::spool::{ImportError, ImportStats};
use plumb_store::{Result, RunFilter, RunSummary, Runs, StoreError};
use postgres::{GenericClient, Row, Transaction};
use std::collections::HashSet;

/// The columns of a [`RunSummary`], for a query to add its conditions to.
const SUMMARY_SELECT: &str = "SELECT id, name, host, state, started_ns, ended_ns, exit_code, signal, \
     attempt, max_attempts, launch_error, oom_root FROM runs WHERE true";

fn summary(r: &Row) -> Result<RunSummary> {
    let id: String = r.get(0);
    let state: String = r.get(3);
    Ok(RunSummary {
        id: uuid(&id)?,
        name: r.get(1),
        host: r.get(2),
        state: state
            .parse()
            .map_err(|e: String| StoreError::Corrupt(format!("run {id}: {e}")))?,
        started: Timestamp::from_nanos(r.get(4)),
        ended: r.get::<_, Option<i64>>(5).map(Timestamp::from_nanos),
        exit_code: r.get(6),
        signal: r.get(7),
        attempt: r.get::<_, i64>(8) as u32,
        max_attempts: r.get::<_, Option<i64>>(9).map(|n| n as u32),
        launch_error: r.get(10),
        oom_killed: r.get(11),
    })
}

/// Stores a run record (and its tags), settling its output cap first when
/// it is final and over it.
pub(crate) fn put_run_tx(tx: &mut Transaction<'_>, run: &Run) -> Result<()> {
    let settled = settle(tx, run)?;
    let run = settled.as_ref().unwrap_or(run);
    let record = serde_json::to_string(run).expect("run serializes");
    let id = run.id.to_string();
    let exit = run.exit.as_ref();
    tx.x(
        "INSERT INTO runs (id, hexid, name, host, state, started_ns, ended_ns, exit_code, signal,
             fingerprint, attempt, max_attempts, launch_error, oom_root, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, host = EXCLUDED.host,
             state = EXCLUDED.state, started_ns = EXCLUDED.started_ns, ended_ns = EXCLUDED.ended_ns,
             exit_code = EXCLUDED.exit_code, signal = EXCLUDED.signal,
             fingerprint = EXCLUDED.fingerprint, attempt = EXCLUDED.attempt,
             max_attempts = EXCLUDED.max_attempts, launch_error = EXCLUDED.launch_error,
             oom_root = EXCLUDED.oom_root, record = EXCLUDED.record",
        &[
            &id,
            &run.id.simple().to_string(),
            &run.name,
            &run.host.hostname,
            &run.state.as_str(),
            &run.started.as_nanos(),
            &run.ended.map(|t| t.as_nanos()),
            &exit.and_then(|e| e.code),
            &exit.and_then(|e| e.signal),
            &run.fingerprint,
            &i64::from(run.attempt),
            &run.max_attempts.map(i64::from),
            &run.launch_error,
            &run.oom.as_ref().is_some_and(|o| o.root),
            &record,
        ],
    )?;
    tx.x("DELETE FROM run_tags WHERE run_id = $1", &[&id])?;
    if !run.tags.is_empty() {
        let mut p = Params::default();
        let mut values = Vec::new();
        for (k, v) in &run.tags {
            values.push(format!(
                "({}, {}, {})",
                p.add(id.clone()),
                p.add(k.clone()),
                p.add(v.clone())
            ));
        }
        tx.x(
            &format!(
                "INSERT INTO run_tags (run_id, key, value) VALUES {}",
                values.join(", ")
            ),
            &p.refs(),
        )?;
    }
    Ok(())
}

/// Stores a run unless the store holds a more final record of it (see
/// [`kit::less_final`]); returns whether it was stored.
pub(crate) fn put_run_unless_less_final(tx: &mut Transaction<'_>, run: &Run) -> Result<bool> {
    if !run.state.is_final() {
        let existing = tx.qo(
            "SELECT state FROM runs WHERE id = $1 FOR UPDATE",
            &[&run.id.to_string()],
        )?;
        let existing = existing.and_then(|r| r.get::<_, String>(0).parse::<RunState>().ok());
        if existing.is_some_and(|s| kit::less_final(s, run.state)) {
            return Ok(false);
        }
    }
    put_run_tx(tx, run)?;
    Ok(true)
}

pub(crate) fn put_fingerprint_tx(
    c: &mut impl GenericClient,
    hash: &str,
    fp: &Fingerprint,
) -> Result<()> {
    let record = serde_json::to_string(fp).expect("fingerprint serializes");
    c.x(
        "INSERT INTO fingerprints (hash, record) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
        &[&hash, &record],
    )?;
    Ok(())
}

/// Drops what is over a run's output cap (see `plumb_store::kit::plan_over_cap`).
pub(crate) fn drop_over_cap(
    tx: &mut Transaction<'_>,
    run_id: Uuid,
    gap: &OutputGap,
    exact: bool,
) -> Result<u64> {
    let id = run_id.to_string();
    let after = gap.after_seq as i64;
    let head: i64 = tx
        .q1(
            "SELECT coalesce(sum(raw_bytes), 0)::BIGINT FROM chunks WHERE run_id = $1 AND first_seq <= $2",
            &[&id, &after],
        )?
        .get(0);
    let tail: Vec<(i64, u64)> = tx
        .q(
            "SELECT id, raw_bytes FROM chunks WHERE run_id = $1 AND first_seq > $2
             ORDER BY first_seq DESC, id DESC",
            &[&id, &after],
        )?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect();
    let plan = kit::plan_over_cap(gap, head as u64, &tail, exact);
    if !plan.delete.is_empty() {
        tx.x("DELETE FROM chunks WHERE id = ANY($1)", &[&plan.delete])?;
    }
    if let Some((cid, n)) = plan.cut {
        let r = tx.q1(
            "SELECT data, stream, part, crc FROM chunks WHERE id = $1",
            &[&cid],
        )?;
        let data: Vec<u8> = r.get(0);
        let stream: i64 = r.get(1);
        let part: i64 = r.get(2);
        let crc: i64 = r.get(3);
        let decoded = plumb_store::chunk::decode(&data, crc as u32)?;
        let stream = plumb_model::Stream::from_u8(stream as u8).ok_or_else(|| {
            StoreError::Corrupt(format!("chunk {cid} has unknown stream {stream}"))
        })?;
        let s = kit::cut_front(&decoded, stream, part as u64, n);
        tx.x(
            "UPDATE chunks SET first_seq = $2, t_min = $3, t_max = $4, lines = $5, raw_bytes = $6,
                 crc = $7, bloom = $8, data = $9 WHERE id = $1",
            &[
                &cid,
                &(s.first_seq as i64),
                &s.t_min.as_nanos(),
                &s.t_max.as_nanos(),
                &(s.lines as i64),
                &(s.raw_bytes as i64),
                &i64::from(s.crc),
                &s.bloom,
                &s.data,
            ],
        )?;
    }
    Ok(plan.dropped)
}

/// A final record of a run over its cap, settled: see `cap::settle` in
/// plumb-store.
fn settle(tx: &mut Transaction<'_>, run: &Run) -> Result<Option<Run>> {
    let Some(gap) = run.output.gap else {
        return Ok(None);
    };
    if !run.state.is_final() {
        return Ok(None);
    }
    drop_over_cap(tx, run.id, &gap, true)?;
    let stored: i64 = tx
        .q1(
            "SELECT coalesce(sum(raw_bytes), 0)::BIGINT FROM chunks WHERE run_id = $1",
            &[&run.id.to_string()],
        )?
        .get(0);
    Ok(kit::settled_record(run, &gap, stored as u64))
}

/// Appends the conditions a [`RunQuery`] shares with counting.
fn query_filters(q: &RunQuery, p: &mut Params, sql: &mut String) {
    if let Some(n) = &q.name {
        sql.push_str(&format!(" AND name = {}", p.add(n.clone())));
    }
    if let Some(h) = &q.host {
        sql.push_str(&format!(" AND host = {}", p.add(h.clone())));
    }
    if let Some(s) = q.state {
        sql.push_str(&format!(" AND state = {}", p.add(s.as_str())));
    }
    for (k, v) in &q.tags {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM run_tags WHERE run_id = runs.id AND key = {} AND value = {})",
            p.add(k.clone()),
            p.add(v.clone())
        ));
    }
    for w in &q.text {
        // strpos on lower() rather than LIKE, so `%` and `_` in what a user
        // typed are plain characters.
        sql.push_str(&format!(
            " AND strpos(lower(name), {}) > 0",
            p.add(w.to_lowercase())
        ));
    }
}

impl PgStore {
    fn summaries(&self, sql: &str, p: &Params) -> Result<Vec<RunSummary>> {
        self.c()?.q(sql, &p.refs())?.iter().map(summary).collect()
    }

    fn attached_snapshots(&self, run_id: Uuid) -> Result<Vec<StackSnapshot>> {
        let id = run_id.to_string();
        self.c()?
            .q(
                "SELECT snapshot FROM run_snapshots WHERE run_id = $1 ORDER BY taken_ns, seq",
                &[&id],
            )?
            .iter()
            .map(|r| json(id.clone(), r.get::<_, &str>(0)))
            .collect()
    }
}

impl Runs for PgStore {
    fn put_run(&self, run: &Run) -> Result<()> {
        self.tx(|tx| put_run_tx(tx, run))
    }

    fn put_runs(&self, runs: &[Run]) -> Result<()> {
        self.tx(|tx| runs.iter().try_for_each(|r| put_run_tx(tx, r)))
    }

    fn put_fingerprint(&self, hash: &str, fp: &Fingerprint) -> Result<()> {
        put_fingerprint_tx(&mut *self.c()?, hash, fp)
    }

    fn get_fingerprint(&self, hash: &str) -> Result<Option<Fingerprint>> {
        self.c()?
            .qo("SELECT record FROM fingerprints WHERE hash = $1", &[&hash])?
            .map(|r| json(hash, r.get::<_, &str>(0)))
            .transpose()
    }

    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>> {
        match &run.fingerprint {
            Some(hash) => self.get_fingerprint(hash),
            None => Ok(None),
        }
    }

    fn get_run(&self, id: Uuid) -> Result<Run> {
        let row = self
            .c()?
            .qo("SELECT record FROM runs WHERE id = $1", &[&id.to_string()])?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        let mut run: Run = json(id.to_string(), row.get::<_, &str>(0))?;
        run.snapshots.extend(self.attached_snapshots(id)?);
        Ok(run)
    }

    fn resolve(&self, reference: &str) -> Result<Uuid> {
        match kit::parse_run_ref(reference)? {
            kit::RunRef::Last(n) => {
                let row = self.c()?.qo(
                    "SELECT id FROM runs ORDER BY started_ns DESC, id DESC LIMIT 1 OFFSET $1",
                    &[&n],
                )?;
                row.and_then(|r| Uuid::parse_str(r.get::<_, &str>(0)).ok())
                    .ok_or_else(|| StoreError::NoSuchRun(reference.to_string()))
            }
            kit::RunRef::Prefix(hex) => {
                let upper = format!("{hex}g");
                let ids: Vec<String> = self
                    .c()?
                    .q(
                        "SELECT id FROM runs WHERE hexid >= $1 AND hexid < $2 ORDER BY hexid LIMIT 6",
                        &[&hex, &upper],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                kit::one_run(reference, &ids)
            }
        }
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let mut sql = String::from(SUMMARY_SELECT);
        let mut p = Params::default();
        if let Some(n) = &filter.name {
            sql.push_str(&format!(" AND name = {}", p.add(n.clone())));
        }
        if let Some(h) = &filter.host {
            sql.push_str(&format!(" AND host = {}", p.add(h.clone())));
        }
        if filter.failed {
            sql.push_str(" AND state IN ('failed', 'killed', 'evicted', 'timed-out')");
        }
        if let Some(s) = filter.state {
            sql.push_str(&format!(" AND state = {}", p.add(s.as_str())));
        }
        if let Some(t) = filter.since {
            sql.push_str(&format!(" AND started_ns >= {}", p.add(t.as_nanos())));
        }
        for (k, v) in &filter.tags {
            sql.push_str(&format!(
                " AND id IN (SELECT run_id FROM run_tags WHERE key = {} AND value = {})",
                p.add(k.clone()),
                p.add(v.clone())
            ));
        }
        sql.push_str(" ORDER BY started_ns DESC, id DESC");
        if filter.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", filter.limit));
        }
        self.summaries(&sql, &p)
    }

    fn count_runs(&self) -> Result<u64> {
        let n: i64 = self.c()?.q1("SELECT count(*) FROM runs", &[])?.get(0);
        Ok(n as u64)
    }

    fn count_runs_by_state(&self) -> Result<Vec<(RunState, u64)>> {
        Ok(self
            .c()?
            .q("SELECT state, count(*) FROM runs GROUP BY state", &[])?
            .iter()
            .filter_map(|r| {
                let s: String = r.get(0);
                s.parse().ok().map(|s| (s, r.get::<_, i64>(1) as u64))
            })
            .collect())
    }

    fn runs_page(&self, q: &RunQuery) -> Result<RunsPage> {
        let limit = q.limit.clamp(1, 1000);
        let mut sql = String::from(SUMMARY_SELECT);
        let mut p = Params::default();
        query_filters(q, &mut p, &mut sql);
        if let Some(t) = q.since {
            sql.push_str(&format!(" AND started_ns >= {}", p.add(t.as_nanos())));
        }
        if let Some(t) = q.until {
            sql.push_str(&format!(" AND started_ns < {}", p.add(t.as_nanos())));
        }
        if let Some(k) = &q.after {
            sql.push_str(&format!(
                " AND (started_ns, id) < ({}, {})",
                p.add(k.started_ns),
                p.add(k.id.clone())
            ));
        }
        // One more than a page tells whether there is a next one without
        // counting.
        sql.push_str(&format!(
            " ORDER BY started_ns DESC, id DESC LIMIT {}",
            limit + 1
        ));
        let mut runs = self.summaries(&sql, &p)?;
        let next = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(|r| {
                PageKey {
                    started_ns: r.started.as_nanos(),
                    id: r.id.to_string(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(RunsPage { runs, next })
    }

    fn run_counts(&self, q: &RunQuery, from: Timestamp, until: Timestamp) -> Result<RunCounts> {
        let lo = align_down(from.as_nanos(), COUNT_BUCKET_NS);
        let hi = until.as_nanos();
        let state = q.state.map(|s| s.as_str().to_string());
        let rollup = |r: &Row| -> Option<StateCount> {
            let s: String = r.get(1);
            s.parse::<RunState>().ok().map(|state| StateCount {
                bucket_ns: r.get(0),
                state,
                n: r.get::<_, i64>(2).max(0) as u64,
            })
        };
        if q.host.is_none() && q.tags.is_empty() {
            if q.name.is_none() && q.text.is_empty() {
                let rows = self.c()?.q(
                    "SELECT bucket_ns, state, n FROM run_counts_all
                     WHERE bucket_ns >= $1 AND bucket_ns < $2 AND ($3::TEXT IS NULL OR state = $3)
                     ORDER BY bucket_ns, state",
                    &[&lo, &hi, &state],
                )?;
                return Ok(RunCounts {
                    rows: rows.iter().filter_map(rollup).collect(),
                    partial_from: None,
                });
            }
            // A name, or words in names: the rollup rows of every name
            // that matches, summed per bucket and state.
            let mut p = Params::default();
            let mut sql = format!(
                "SELECT bucket_ns, state, sum(n)::BIGINT FROM run_counts
                 WHERE bucket_ns >= {} AND bucket_ns < {}",
                p.add(lo),
                p.add(hi)
            );
            if let Some(s) = &state {
                sql.push_str(&format!(" AND state = {}", p.add(s.clone())));
            }
            if let Some(n) = &q.name {
                sql.push_str(&format!(" AND name = {}", p.add(n.clone())));
            }
            for w in &q.text {
                sql.push_str(&format!(
                    " AND strpos(lower(name), {}) > 0",
                    p.add(w.to_lowercase())
                ));
            }
            sql.push_str(" GROUP BY bucket_ns, state ORDER BY bucket_ns, state");
            let rows = self.c()?.q(&sql, &p.refs())?;
            return Ok(RunCounts {
                rows: rows.iter().filter_map(rollup).collect(),
                partial_from: None,
            });
        }
        // A host or a tag: the runs themselves, newest first, at most
        // DIRECT_COUNT_CAP.
        let mut p = Params::default();
        let mut sql = format!(
            "SELECT started_ns, state FROM runs WHERE started_ns >= {} AND started_ns < {}",
            p.add(lo),
            p.add(hi)
        );
        query_filters(q, &mut p, &mut sql);
        sql.push_str(&format!(
            " ORDER BY started_ns DESC LIMIT {}",
            DIRECT_COUNT_CAP + 1
        ));
        let found = self.c()?.q(&sql, &p.refs())?;
        Ok(kit::direct_counts(
            found.iter().map(|r| (r.get(0), r.get(1))),
            DIRECT_COUNT_CAP,
        ))
    }

    fn job_runs(&self, name: &str, limit: usize) -> Result<Vec<JobRun>> {
        let rows = self.c()?.q(
            "SELECT id, state, started_ns, ended_ns FROM runs WHERE name = $1
             ORDER BY started_ns DESC LIMIT $2",
            &[&name, &(limit as i64)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            let id: String = r.get(0);
            out.push(JobRun {
                id: uuid(&id)?,
                state: r
                    .get::<_, &str>(1)
                    .parse()
                    .map_err(|e: String| StoreError::Corrupt(format!("run {id}: {e}")))?,
                started: Timestamp::from_nanos(r.get(2)),
                ended: r.get::<_, Option<i64>>(3).map(Timestamp::from_nanos),
            });
        }
        Ok(out)
    }

    fn previous_run(&self, run_id: Uuid) -> Result<Option<Uuid>> {
        self.c()?
            .qo(
                "SELECT p.id FROM runs r JOIN runs p ON p.name = r.name
                     AND (p.started_ns, p.id) < (r.started_ns, r.id)
                 WHERE r.id = $1 ORDER BY p.started_ns DESC, p.id DESC LIMIT 1",
                &[&run_id.to_string()],
            )?
            .map(|r| uuid(r.get::<_, &str>(0)))
            .transpose()
    }

    fn existing_runs(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let wanted: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.c()?
            .q("SELECT id FROM runs WHERE id = ANY($1)", &[&wanted])?
            .iter()
            .map(|r| uuid(r.get::<_, &str>(0)))
            .collect()
    }

    fn attach_snapshot(&self, run_id: Uuid, snapshot: &StackSnapshot) -> Result<()> {
        let id = run_id.to_string();
        let record = serde_json::to_string(snapshot).map_err(|source| StoreError::Json {
            id: id.clone(),
            source,
        })?;
        self.tx(|tx| {
            if tx
                .qo("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", &[&id])?
                .is_none()
            {
                return Err(StoreError::NoSuchRun(id.clone()));
            }
            let taken = snapshot.taken.as_nanos();
            tx.x(
                "INSERT INTO run_snapshots (run_id, taken_ns, seq, snapshot)
                 VALUES ($1, $2, (SELECT COALESCE(MAX(seq), -1) + 1 FROM run_snapshots
                                  WHERE run_id = $1 AND taken_ns = $2), $3)",
                &[&id, &taken, &record],
            )?;
            tx.x(
                "DELETE FROM run_snapshots WHERE run_id = $1 AND (taken_ns, seq) NOT IN
                 (SELECT taken_ns, seq FROM run_snapshots WHERE run_id = $1
                  ORDER BY taken_ns DESC, seq DESC LIMIT $2)",
                &[&id, &(plumb_store::MAX_ATTACHED_SNAPSHOTS as i64)],
            )?;
            Ok(())
        })
    }

    fn import_frames(&self, bytes: &[u8]) -> std::result::Result<ImportStats, ImportError> {
        let items = kit::parse_frames(bytes)?;
        self.tx(|tx| {
            // Counted afresh by each attempt (see `PgStore::tx`).
            let mut stats = ImportStats {
                frames: items.len() as u64,
                ..Default::default()
            };
            let mut current: Option<(Uuid, String, Option<OutputGap>)> = None;
            let mut pending = Vec::new();
            for item in &items {
                match item {
                    Item::Run(run) => {
                        flush(tx, &current, &mut pending, &mut stats)?;
                        if put_run_unless_less_final(tx, run)? {
                            stats.runs += 1;
                        } else {
                            stats.runs_kept += 1;
                        }
                        current = Some((run.id, run.host.hostname.clone(), run.output.gap));
                    }
                    Item::Fingerprint(hash, fp) => {
                        put_fingerprint_tx(tx, hash, fp)?;
                        stats.fingerprints += 1;
                    }
                    Item::Chunk(c) => pending.push(c),
                }
            }
            flush(tx, &current, &mut pending, &mut stats)?;
            Ok(stats)
        })
        .map_err(ImportError::from)
    }
}

/// Stores the chunks read after a run record, counting new and repeated.
fn flush(
    tx: &mut Transaction<'_>,
    current: &Option<(Uuid, String, Option<OutputGap>)>,
    pending: &mut Vec<&plumb_store::chunk::SealedChunk>,
    stats: &mut ImportStats,
) -> Result<()> {
    let Some((id, host, gap)) = current else {
        return Ok(());
    };
    if pending.is_empty() {
        return Ok(());
    }
    let added = crate::output::put_chunks_tx(tx, *id, host, pending)?;
    stats.chunks += added;
    stats.chunks_duplicate += pending.len() as u64 - added;
    stats.lines += pending.iter().map(|c| c.lines).sum::<u64>();
    pending.clear();
    // A run over its output cap: keep storage bounded while it goes on;
    // its final record settles the cap to the byte.
    if let Some(gap) = gap {
        drop_over_cap(tx, *id, gap, false)?;
    }
    Ok(())
}
