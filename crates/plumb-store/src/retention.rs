//! [`Retention`](crate::Retention) on SQLite: old chunks, spans, metric
//! points and log dedupe keys are deleted in bounded steps, so that the
//! one writer is never held long; pages freed are reused by later writes
//! (the file does not shrink).

use crate::Store;
use crate::error::Result;
use crate::query::Dropped;
use plumb_model::Timestamp;
use rusqlite::{OptionalExtension, params};

/// The most chunks of each kind one step deletes.
const STEP_CHUNKS: i64 = 500;
/// The most spans, metric points or dedupe keys one step deletes.
const STEP_ROWS: i64 = 20_000;
/// The horizon's key in `store_meta`.
const HORIZON: &str = "retention.output_before_ns";

impl crate::backend::Retention for Store {
    fn drop_output_before(&self, before: Timestamp) -> Result<Dropped> {
        let b = before.as_nanos();
        let tx = self.conn().unchecked_transaction()?;
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value
             WHERE CAST(store_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            params![HORIZON, b.to_string()],
        )?;
        let mut d = Dropped::default();
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS old_ids (id INTEGER PRIMARY KEY); DELETE FROM old_ids;",
        )?;
        let mut chunks = |table: &str, data: &str| -> Result<u64> {
            tx.execute("DELETE FROM old_ids", [])?;
            let n = tx.execute(
                &format!(
                    "INSERT INTO old_ids SELECT id FROM {table} WHERE t_max < ?1 ORDER BY t_max LIMIT ?2"
                ),
                params![b, STEP_CHUNKS],
            )? as u64;
            if n > 0 {
                let bytes: i64 = tx.query_row(
                    &format!(
                        "SELECT COALESCE(SUM(length(data)), 0) FROM {data} WHERE id IN (SELECT id FROM old_ids)"
                    ),
                    [],
                    |r| r.get(0),
                )?;
                d.bytes += bytes as u64;
                for t in [data, table] {
                    tx.execute(
                        &format!("DELETE FROM {t} WHERE id IN (SELECT id FROM old_ids)"),
                        [],
                    )?;
                }
            }
            Ok(n)
        };
        let c = chunks("chunks", "chunk_data")?;
        let l = chunks("log_chunks", "log_chunk_data")?;
        d.chunks = c;
        d.log_chunks = l;
        d.spans = tx.execute(
            "DELETE FROM spans WHERE (trace_id, span_id) IN (
                SELECT trace_id, span_id FROM spans WHERE start_ns < ?1 LIMIT ?2)",
            params![b, STEP_ROWS],
        )? as u64;
        d.metric_points = tx.execute(
            "DELETE FROM metric_points WHERE (name, series, time_ns) IN (
                SELECT name, series, time_ns FROM metric_points WHERE time_ns < ?1 LIMIT ?2)",
            params![b, STEP_ROWS],
        )? as u64;
        tx.execute(
            "DELETE FROM log_seen WHERE (t, h) IN (SELECT t, h FROM log_seen WHERE t < ?1 LIMIT ?2)",
            params![b, STEP_ROWS],
        )?;
        tx.commit()?;
        Ok(d)
    }

    fn output_horizon(&self) -> Result<Option<Timestamp>> {
        let v: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM store_meta WHERE key = ?1",
                [HORIZON],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()).map(Timestamp::from_nanos))
    }
}
