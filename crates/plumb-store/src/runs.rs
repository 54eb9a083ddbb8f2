//! [`Runs`](crate::Runs) on SQLite: run records, fingerprints, finding runs.

use crate::dash::{
    COUNT_BUCKET_NS, DIRECT_COUNT_CAP, JobRun, PageKey, RunCounts, RunQuery, RunsPage,
};
use crate::error::{Result, StoreError};
use crate::spool::{ImportError, ImportStats};
use crate::{RunFilter, RunSummary, Store, kit, put_fingerprint_conn, put_run_tx};
use plumb_model::chart::{StateCount, align_down};
use plumb_model::stack::StackSnapshot;
use plumb_model::{Fingerprint, Run, RunState, Timestamp, Uuid};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};
use std::collections::HashSet;

impl crate::backend::Runs for Store {
    fn put_run(&self, run: &Run) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        put_run_tx(&tx, run)?;
        tx.commit()?;
        Ok(())
    }

    fn put_runs(&self, runs: &[Run]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        for run in runs {
            put_run_tx(&tx, run)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn put_fingerprint(&self, hash: &str, fp: &Fingerprint) -> Result<()> {
        put_fingerprint_conn(&self.conn, hash, fp)
    }

    fn get_fingerprint(&self, hash: &str) -> Result<Option<Fingerprint>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM fingerprints WHERE hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|source| StoreError::Json {
                id: hash.to_string(),
                source,
            })
        })
        .transpose()
    }

    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>> {
        match &run.fingerprint {
            Some(hash) => self.get_fingerprint(hash),
            None => Ok(None),
        }
    }

    fn get_run(&self, id: Uuid) -> Result<Run> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM runs WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let json = json.ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
        let mut run: Run = serde_json::from_str(&json).map_err(|source| StoreError::Json {
            id: id.to_string(),
            source,
        })?;
        run.snapshots.extend(self.attached_snapshots(id)?);
        Ok(run)
    }

    fn resolve(&self, reference: &str) -> Result<Uuid> {
        let hex = match kit::parse_run_ref(reference)? {
            kit::RunRef::Last(n) => {
                let id: Option<String> = self
                    .conn
                    .query_row(
                        "SELECT id FROM runs ORDER BY started_ns DESC, id DESC LIMIT 1 OFFSET ?1",
                        [n],
                        |row| row.get(0),
                    )
                    .optional()?;
                return id
                    .and_then(|s| Uuid::parse_str(&s).ok())
                    .ok_or_else(|| StoreError::NoSuchRun(reference.to_string()));
            }
            kit::RunRef::Prefix(hex) => hex,
        };
        let upper = format!("{hex}g");
        let mut st = self.conn.prepare(
            "SELECT id FROM runs WHERE hexid >= ?1 AND hexid < ?2 ORDER BY hexid LIMIT 6",
        )?;
        let ids: Vec<String> = st
            .query_map(params![hex, upper], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        kit::one_run(reference, &ids)
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let mut sql = String::from(SUMMARY_SELECT);
        let mut args: Vec<Value> = Vec::new();
        if let Some(n) = &filter.name {
            sql.push_str(" AND name = ?");
            args.push(Value::Text(n.clone()));
        }
        if let Some(h) = &filter.host {
            sql.push_str(" AND host = ?");
            args.push(Value::Text(h.clone()));
        }
        if filter.failed {
            sql.push_str(" AND state IN ('failed', 'killed', 'evicted', 'timed-out')");
        }
        if let Some(s) = filter.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(s.as_str().into()));
        }
        if let Some(t) = filter.since {
            sql.push_str(" AND started_ns >= ?");
            args.push(Value::Integer(t.as_nanos()));
        }
        for (k, v) in &filter.tags {
            sql.push_str(" AND id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)");
            args.push(Value::Text(k.clone()));
            args.push(Value::Text(v.clone()));
        }
        sql.push_str(" ORDER BY started_ns DESC, id DESC");
        if filter.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", filter.limit));
        }
        summaries(self, &sql, args)
    }

    fn count_runs(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn count_runs_by_state(&self) -> Result<Vec<(RunState, u64)>> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT state, count(*) FROM runs GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (state, n) = row?;
            if let Ok(s) = state.parse() {
                out.push((s, n as u64));
            }
        }
        Ok(out)
    }

    fn runs_page(&self, q: &RunQuery) -> Result<RunsPage> {
        let limit = q.limit.clamp(1, 1000);
        let mut sql = String::from(SUMMARY_SELECT);
        let mut args: Vec<Value> = Vec::new();
        if let Some(n) = &q.name {
            sql.push_str(" AND name = ?");
            args.push(Value::Text(n.clone()));
        }
        if let Some(h) = &q.host {
            sql.push_str(" AND host = ?");
            args.push(Value::Text(h.clone()));
        }
        if let Some(s) = q.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(s.as_str().into()));
        }
        if let Some(t) = q.since {
            sql.push_str(" AND started_ns >= ?");
            args.push(Value::Integer(t.as_nanos()));
        }
        for (k, v) in &q.tags {
            // A probe per candidate row while walking runs newest first, so a
            // common tag stops at one page instead of collecting every run
            // that has it and sorting them.
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM run_tags WHERE run_id = runs.id AND key = ? AND value = ?)",
            );
            args.push(Value::Text(k.clone()));
            args.push(Value::Text(v.clone()));
        }
        for w in &q.text {
            // instr on lower() rather than LIKE, so `%` and `_` in what a
            // user typed are plain characters.
            sql.push_str(" AND instr(lower(name), ?) > 0");
            args.push(Value::Text(w.to_lowercase()));
        }
        if let Some(t) = q.until {
            sql.push_str(" AND started_ns < ?");
            args.push(Value::Integer(t.as_nanos()));
        }
        if let Some(k) = &q.after {
            sql.push_str(" AND (started_ns, id) < (?, ?)");
            args.push(Value::Integer(k.started_ns));
            args.push(Value::Text(k.id.clone()));
        }
        // One more than a page tells whether there is a next one without
        // counting.
        sql.push_str(&format!(
            " ORDER BY started_ns DESC, id DESC LIMIT {}",
            limit + 1
        ));
        let mut runs = summaries(self, &sql, args)?;
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
        if q.host.is_none() && q.tags.is_empty() {
            let names = match (&q.name, q.text.is_empty()) {
                (Some(n), _) => Some(vec![n.clone()]),
                (None, true) => None,
                (None, false) => self.names_matching(&q.text)?,
            };
            if let Some(names) = names
                && names.iter().all(|n| text_matches(n, &q.text))
            {
                let mut rows = Vec::new();
                let mut st = self.conn().prepare_cached(
                    "SELECT bucket_ns, state, n FROM run_counts \
                     WHERE name = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3 AND (?4 IS NULL OR state = ?4)",
                )?;
                for name in names {
                    let it = st.query_map(
                        params![name, lo, hi, q.state.map(|s| s.as_str())],
                        count_row,
                    )?;
                    for r in it {
                        rows.extend(r?);
                    }
                }
                return Ok(RunCounts {
                    rows,
                    partial_from: None,
                });
            }
            if q.name.is_none() && q.text.is_empty() {
                let mut st = self.conn().prepare_cached(
                    "SELECT bucket_ns, state, n FROM run_counts_all \
                     WHERE bucket_ns >= ?1 AND bucket_ns < ?2 AND (?3 IS NULL OR state = ?3)",
                )?;
                let rows = st
                    .query_map(params![lo, hi, q.state.map(|s| s.as_str())], count_row)?
                    .filter_map(|r| r.transpose())
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                return Ok(RunCounts {
                    rows,
                    partial_from: None,
                });
            }
        }
        // A host or a tag (or too many names to look up one by one): the
        // runs themselves, newest first, at most DIRECT_COUNT_CAP.
        let mut sql = String::from(
            "SELECT started_ns, state FROM runs WHERE started_ns >= ? AND started_ns < ?",
        );
        let mut args: Vec<Value> = vec![Value::Integer(lo), Value::Integer(hi)];
        if let Some(n) = &q.name {
            sql.push_str(" AND name = ?");
            args.push(Value::Text(n.clone()));
        }
        if let Some(h) = &q.host {
            sql.push_str(" AND host = ?");
            args.push(Value::Text(h.clone()));
        }
        if let Some(s) = q.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(s.as_str().into()));
        }
        for (k, v) in &q.tags {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM run_tags WHERE run_id = runs.id AND key = ? AND value = ?)",
            );
            args.push(Value::Text(k.clone()));
            args.push(Value::Text(v.clone()));
        }
        for w in &q.text {
            sql.push_str(" AND instr(lower(name), ?) > 0");
            args.push(Value::Text(w.to_lowercase()));
        }
        sql.push_str(&format!(
            " ORDER BY started_ns DESC LIMIT {}",
            DIRECT_COUNT_CAP + 1
        ));
        let mut st = self.conn().prepare_cached(&sql)?;
        let found = st
            .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        Ok(kit::direct_counts(found.into_iter(), DIRECT_COUNT_CAP))
    }

    fn job_runs(&self, name: &str, limit: usize) -> Result<Vec<JobRun>> {
        let mut st = self.conn().prepare_cached(
            "SELECT id, state, started_ns, ended_ns FROM runs WHERE name = ?1 \
             ORDER BY started_ns DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![name, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, state, started, ended) = row?;
            out.push(JobRun {
                id: Uuid::parse_str(&id)
                    .map_err(|_| StoreError::Corrupt(format!("bad run id {id}")))?,
                state: state
                    .parse()
                    .map_err(|e: String| StoreError::Corrupt(format!("run {id}: {e}")))?,
                started: Timestamp::from_nanos(started),
                ended: ended.map(Timestamp::from_nanos),
            });
        }
        out.reverse();
        Ok(out)
    }

    fn previous_run(&self, run_id: Uuid) -> Result<Option<Uuid>> {
        let id: Option<String> = self
            .conn()
            .query_row(
                "SELECT p.id FROM runs r JOIN runs p ON p.name = r.name
                 AND (p.started_ns, p.id) < (r.started_ns, r.id)
                 WHERE r.id = ?1 ORDER BY p.started_ns DESC, p.id DESC LIMIT 1",
                [run_id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|s| Uuid::parse_str(&s).map_err(|_| StoreError::Corrupt(format!("bad run id {s}"))))
            .transpose()
    }

    fn existing_runs(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?;
        let mut found = HashSet::new();
        for id in ids {
            if found.contains(id) {
                continue;
            }
            if st.exists(params![id.to_string()])? {
                found.insert(*id);
            }
        }
        Ok(found)
    }

    fn attach_snapshot(&self, run_id: Uuid, snapshot: &StackSnapshot) -> Result<()> {
        let id = run_id.to_string();
        let json = serde_json::to_string(snapshot).map_err(|source| StoreError::Json {
            id: id.clone(),
            source,
        })?;
        let tx = self.conn.unchecked_transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [&id], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NoSuchRun(id));
        }
        let taken = snapshot.taken.as_nanos();
        tx.execute(
            "INSERT INTO run_snapshots (run_id, taken_ns, seq, snapshot) \
             VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), -1) + 1 FROM run_snapshots WHERE run_id = ?1 AND taken_ns = ?2), ?3)",
            rusqlite::params![id, taken, json],
        )?;
        tx.execute(
            "DELETE FROM run_snapshots WHERE run_id = ?1 AND (taken_ns, seq) NOT IN \
             (SELECT taken_ns, seq FROM run_snapshots WHERE run_id = ?1 ORDER BY taken_ns DESC, seq DESC LIMIT ?2)",
            rusqlite::params![id, crate::MAX_ATTACHED_SNAPSHOTS as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn import_frames(&self, bytes: &[u8]) -> std::result::Result<ImportStats, ImportError> {
        crate::spool::import_frames(self, bytes)
    }
}

impl Store {
    /// The snapshots attached to a run after its record, oldest first.
    fn attached_snapshots(&self, run_id: Uuid) -> Result<Vec<StackSnapshot>> {
        let id = run_id.to_string();
        let mut stmt = self.conn.prepare_cached(
            "SELECT snapshot FROM run_snapshots WHERE run_id = ?1 ORDER BY taken_ns, seq",
        )?;
        let rows = stmt.query_map([&id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(
                serde_json::from_str(&json?).map_err(|source| StoreError::Json {
                    id: id.clone(),
                    source,
                })?,
            );
        }
        Ok(out)
    }
}

/// Most distinct names [`Store::names_matching`] walks before giving up
/// (the count then reads the runs).
const MAX_NAMES_WALKED: usize = 2_000;

impl Store {
    /// The names in the rollup that contain every word (as the runs page
    /// matches them), walking the distinct names one index probe each;
    /// `None` when there are more than [`MAX_NAMES_WALKED`] names.
    fn names_matching(&self, words: &[String]) -> Result<Option<Vec<String>>> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT name FROM run_counts WHERE name > ?1 ORDER BY name LIMIT 1")?;
        let mut out = Vec::new();
        let mut first = self
            .conn()
            .prepare_cached("SELECT name FROM run_counts ORDER BY name LIMIT 1")?;
        let mut next = first.query_row([], |r| r.get::<_, String>(0)).optional()?;
        let mut walked = 0;
        while let Some(name) = next {
            walked += 1;
            if walked > MAX_NAMES_WALKED {
                return Ok(None);
            }
            if text_matches(&name, words) {
                out.push(name.clone());
            }
            next = st
                .query_row([&name], |r| r.get::<_, String>(0))
                .optional()?;
        }
        Ok(Some(out))
    }
}

/// Whether a name holds every word, as `runs_page` tests it in SQL
/// (`instr(lower(name), lower-cased word)`: SQLite's `lower` folds ASCII
/// only).
fn text_matches(name: &str, words: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    words.iter().all(|w| n.contains(&w.to_lowercase()))
}

/// A rollup row; a state this build does not know is skipped.
fn count_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<StateCount>> {
    let state: String = r.get(1)?;
    let bucket_ns: i64 = r.get(0)?;
    let n: i64 = r.get(2)?;
    Ok(state.parse::<RunState>().ok().map(|state| StateCount {
        bucket_ns,
        state,
        n: n.max(0) as u64,
    }))
}

/// The columns of a [`RunSummary`], for a query to add its conditions to.
const SUMMARY_SELECT: &str = "SELECT id, name, host, state, started_ns, ended_ns, exit_code, signal, \
     json_extract(record, '$.attempt'), json_extract(record, '$.max_attempts'), json_extract(record, '$.launch_error'), \
     coalesce(json_extract(record, '$.oom.root'), 0) \
     FROM runs WHERE 1=1";

/// Runs a query that starts with [`SUMMARY_SELECT`].
fn summaries(store: &Store, sql: &str, args: Vec<Value>) -> Result<Vec<RunSummary>> {
    let mut st = store.conn().prepare_cached(sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(3)?,
            RunSummary {
                id: Uuid::nil(),
                name: r.get(1)?,
                host: r.get(2)?,
                state: RunState::Running,
                started: Timestamp::from_nanos(r.get(4)?),
                ended: r.get::<_, Option<i64>>(5)?.map(Timestamp::from_nanos),
                exit_code: r.get(6)?,
                signal: r.get(7)?,
                attempt: r.get::<_, Option<u32>>(8)?.unwrap_or(1),
                max_attempts: r.get(9)?,
                launch_error: r.get(10)?,
                oom_killed: r.get(11)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, state, mut s) = row?;
        s.id = Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt(format!("bad run id {id}")))?;
        s.state = state
            .parse()
            .map_err(|e: String| StoreError::Corrupt(format!("run {id}: {e}")))?;
        out.push(s);
    }
    Ok(out)
}
