//! [`Retention`] on PostgreSQL, and the day partitions it drops.
//!
//! `chunks` and `log_chunks` are partitioned by the UTC day of each
//! chunk's last line (`t_max`), one partition per day named
//! `chunks_YYYYMMDD`, made by the first row that needs it (see
//! [`PgStore::tx`](crate::PgStore)). Retention drops a whole day's
//! partition in one statement instead of deleting its rows, so the table
//! neither bloats nor needs a vacuum; rows older than a horizon inside a
//! day (a horizon not on a day boundary) are deleted, and spans, metric
//! points and log dedupe keys are deleted in bounded batches.

use crate::{PgStore, Sql, db};
use plumb_model::Timestamp;
use plumb_store::{Dropped, Result, Retention, StoreError};
use postgres::Client;

/// The most rows of each kind one step deletes.
const STEP_ROWS: i64 = 20_000;
/// The horizon's key in `plumb_meta`.
const HORIZON: &str = "retention.output_before_ns";
/// The partitioned tables and their partitions' name prefixes.
pub(crate) const PARTED: [&str; 2] = ["chunks", "log_chunks"];

/// When `e` says a row had no partition to go to: the table and the
/// row's partition key, read from the server's message and detail.
pub(crate) fn missing_partition(e: &StoreError) -> Option<(String, i64)> {
    let StoreError::Database { source, .. } = e else {
        return None;
    };
    let d = source.downcast_ref::<postgres::Error>()?.as_db_error()?;
    if d.code().code() != "23514" || !d.message().starts_with("no partition of relation") {
        return None;
    }
    let table = d.message().split('"').nth(1)?.to_string();
    if !PARTED.contains(&table.as_str()) {
        return None;
    }
    // "Partition key of the failing row contains (t_max) = (123)."
    let detail = d.detail()?;
    let value = detail.rsplit("= (").next()?.split(')').next()?;
    Some((table, value.trim().parse().ok()?))
}

/// Makes `table`'s partition for the day holding `t`, unless it exists.
pub(crate) fn make_partition(c: &mut Client, table: &str, t: i64) -> Result<()> {
    let prefix = format!("{table}_");
    c.x(
        "SELECT plumb_partition($1, $2, $3)::TEXT",
        &[&table, &prefix, &t],
    )?;
    Ok(())
}

/// A partition of `parent` and the upper bound of its range.
fn partitions(c: &mut Client, parent: &str) -> Result<Vec<(String, i64)>> {
    let rows = c.q(
        "SELECT c.relname::TEXT, pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = to_regclass($1)",
        &[&parent],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (name, bound): (String, String) = (r.get(0), r.get(1));
        // "FOR VALUES FROM ('0') TO ('86400000000000')"
        let hi = bound
            .rsplit("TO (")
            .next()
            .map(|s| s.trim_matches(|c: char| !(c.is_ascii_digit() || c == '-')))
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "partition {name} has a bound plumb did not make: {bound}"
                ))
            })?;
        out.push((name, hi));
    }
    out.sort_by_key(|p| p.1);
    Ok(out)
}

impl Retention for PgStore {
    fn drop_output_before(&self, before: Timestamp) -> Result<Dropped> {
        let b = before.as_nanos();
        let mut c = self.c()?;
        c.x(
            "INSERT INTO plumb_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
             WHERE plumb_meta.value::BIGINT < EXCLUDED.value::BIGINT",
            &[&HORIZON, &b.to_string()],
        )?;
        let mut d = Dropped::default();
        for parent in PARTED {
            let (n, bytes) = match partitions(&mut c, parent)?.into_iter().find(|p| p.1 <= b) {
                // A whole day older than the horizon: dropped at once.
                Some((name, _)) => {
                    let r = c.q1(
                        &format!(
                            "SELECT count(*), coalesce(sum(octet_length(data)), 0)::BIGINT FROM {name}"
                        ),
                        &[],
                    )?;
                    let counts: (i64, i64) = (r.get(0), r.get(1));
                    let mut tx = c.transaction().map_err(db)?;
                    tx.batch_execute(&format!("SET LOCAL lock_timeout = '5s'; DROP TABLE {name}"))
                        .map_err(db)?;
                    tx.commit().map_err(db)?;
                    counts
                }
                // Rows older than a horizon inside a day.
                None => {
                    let r = c.q1(
                        &format!(
                            "WITH gone AS (
                                 DELETE FROM {parent} WHERE (id, t_max) IN (
                                     SELECT id, t_max FROM {parent} WHERE t_max < $1 LIMIT $2)
                                 RETURNING octet_length(data) AS n)
                             SELECT count(*), coalesce(sum(n), 0)::BIGINT FROM gone"
                        ),
                        &[&b, &STEP_ROWS],
                    )?;
                    (r.get(0), r.get(1))
                }
            };
            d.bytes += bytes as u64;
            if parent == "chunks" {
                d.chunks = n as u64;
            } else {
                d.log_chunks = n as u64;
            }
        }
        let mut batch = |table: &str, key: &str, time: &str| -> Result<u64> {
            c.x(
                &format!(
                    "DELETE FROM {table} WHERE ({key}) IN (
                         SELECT {key} FROM {table} WHERE {time} < $1 LIMIT $2)"
                ),
                &[&b, &STEP_ROWS],
            )
        };
        d.spans = batch("spans", "trace_id, span_id", "start_ns")?;
        d.metric_points = batch("metric_points", "name, series, time_ns", "time_ns")?;
        batch("log_seen", "t, h", "t")?;
        Ok(d)
    }

    fn output_horizon(&self) -> Result<Option<Timestamp>> {
        Ok(self
            .c()?
            .qo("SELECT value FROM plumb_meta WHERE key = $1", &[&HORIZON])?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .map(Timestamp::from_nanos))
    }
}
