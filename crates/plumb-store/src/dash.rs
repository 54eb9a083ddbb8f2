//! Queries behind the web dashboard: one page of runs with keyset
//! pagination, the previous run of a name, which run ids exist.
//!
//! Pages walk the `runs_started` index from a `(started_ns, id)` key rather
//! than with `OFFSET`, so page 20,000 of a million runs costs what page 1
//! costs, and nothing counts the whole table.

use crate::error::{Result, StoreError};
use crate::{RunSummary, Store};
use plumb_model::{RunState, Timestamp, Uuid};
use rusqlite::{OptionalExtension, params, params_from_iter, types::Value};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Which runs a dashboard page shows, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Exact run name.
    pub name: Option<String>,
    /// Exact host name.
    pub host: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs with all these tags.
    pub tags: Vec<(String, String)>,
    /// Only runs started at or after this time.
    pub since: Option<Timestamp>,
    /// Words that must all appear in the run name (case-insensitive).
    pub text: Vec<String>,
    /// Start after this key (exclusive): the `next` of the previous page.
    pub after: Option<PageKey>,
    /// Page size.
    pub limit: usize,
}

/// The position of a run in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKey {
    /// Start time of the last run shown, ns.
    pub started_ns: i64,
    /// Its id (ties on start time are broken by id).
    pub id: String,
}

impl PageKey {
    /// The key as it travels in a URL: `<started_ns>_<id>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.started_ns, self.id)
    }

    /// Parses [`PageKey::encode`]'s form.
    pub fn decode(s: &str) -> std::result::Result<PageKey, String> {
        let bad =
            || format!("page key `{s}` is not one this collector gave (expected <ns>_<run id>)");
        let (ns, id) = s.split_once('_').ok_or_else(bad)?;
        let started_ns = ns.parse().map_err(|_| bad())?;
        Uuid::parse_str(id).map_err(|_| bad())?;
        Ok(PageKey {
            started_ns,
            id: id.to_string(),
        })
    }
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// The key of the next page, when there may be one.
    pub next: Option<String>,
}

impl Store {
    /// One page of runs matching `q`, newest first.
    pub fn runs_page(&self, q: &RunQuery) -> Result<RunsPage> {
        let limit = q.limit.clamp(1, 1000);
        let mut sql = String::from(
            "SELECT id, name, host, state, started_ns, ended_ns, exit_code, signal, \
             json_extract(record, '$.attempt'), json_extract(record, '$.max_attempts'), json_extract(record, '$.launch_error') \
             FROM runs WHERE 1=1",
        );
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
        let mut st = self.conn().prepare_cached(&sql)?;
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
                },
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (id, state, mut s) = row?;
            s.id = Uuid::parse_str(&id)
                .map_err(|_| StoreError::Corrupt(format!("bad run id {id}")))?;
            s.state = state
                .parse()
                .map_err(|e: String| StoreError::Corrupt(format!("run {id}: {e}")))?;
            runs.push(s);
        }
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

    /// The run of the same name that started last before `run_id` did.
    pub fn previous_run(&self, run_id: Uuid) -> Result<Option<Uuid>> {
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

    /// Which of `ids` are stored runs (log records of programs outside any
    /// run carry ids that are not).
    pub fn existing_runs(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::Run;

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut runs = Vec::new();
        for i in 0..25i64 {
            // Pairs share a start time, so the id must break ties.
            let mut r = Run::new(
                plumb_model::new_id(),
                if i % 2 == 0 { "Train-A" } else { "eval" }.into(),
                Timestamp::from_nanos(1_000 + i / 2),
            );
            r.host.hostname = "h1".into();
            runs.push(r);
        }
        store.put_runs(&runs).unwrap();
        let mut q = RunQuery {
            limit: 10,
            ..Default::default()
        };
        let mut seen = Vec::new();
        for _ in 0..5 {
            let page = store.runs_page(&q).unwrap();
            seen.extend(page.runs.iter().map(|r| r.id));
            match page.next {
                Some(k) => q.after = Some(PageKey::decode(&k).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 25);
        let filtered = store
            .runs_page(&RunQuery {
                text: vec!["train".into()],
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(filtered.runs.len(), 13);
        assert!(filtered.next.is_none());
        let newest_train = filtered.runs[0].id;
        let prev = store.previous_run(newest_train).unwrap().unwrap();
        assert_eq!(prev, filtered.runs[1].id);
        let oldest = filtered.runs[12].id;
        assert_eq!(store.previous_run(oldest).unwrap(), None);
        let ids = [newest_train, plumb_model::new_id()];
        assert_eq!(
            store.existing_runs(&ids).unwrap(),
            HashSet::from([newest_train])
        );
        assert!(PageKey::decode("banana").unwrap_err().contains("banana"));
    }
}
