//! [`Raw`] on PostgreSQL: whole tables as raw rows, for `plumb store copy`
//! (the loop and the hash are `plumb_store::copy`'s). Values are read and
//! bound as the copy's kinds (`bigint`, `float8`, `text`, `bytea`) and
//! assigned to the columns' own types; ids go in with
//! `OVERRIDING SYSTEM VALUE`, and `raw_ids_advance` moves each identity
//! sequence past them. A run's indexed fields that SQLite does not keep as
//! columns (attempt, max_attempts, launch_error, oom_root) are made from
//! its record as it is inserted.

use crate::{Params, PgStore, Sql, db, json};
use plumb_model::Run;
use plumb_store::copy::{Kind, RawRow, RawTable, Value, check_row, row_size};
use plumb_store::{Raw, Result, StoreError};
use postgres::Row;
use postgres::fallible_iterator::FallibleIterator;
use std::collections::HashSet;

/// Columns of `runs` made from the record, not copied.
const RUN_COLUMNS_FROM_RECORD: &[&str] = &["attempt", "max_attempts", "launch_error", "oom_root"];

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn pg_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "bigint",
        Kind::Real => "float8",
        Kind::Text => "text",
        Kind::Blob => "bytea",
    }
}

/// Adds column `n` of `rows` as one array parameter of the column's
/// kind; its placeholder, cast.
fn column_array(p: &mut Params, kind: Kind, rows: &[RawRow], n: usize) -> String {
    let mark = match kind {
        Kind::Int => p.add(rows.iter().map(|r| r[n].as_int()).collect::<Vec<_>>()),
        Kind::Real => p.add(
            rows.iter()
                .map(|r| match r[n] {
                    Value::Real(f) => Some(f),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Text => p.add(
            rows.iter()
                .map(|r| r[n].as_text().map(String::from))
                .collect::<Vec<_>>(),
        ),
        Kind::Blob => p.add(
            rows.iter()
                .map(|r| match &r[n] {
                    Value::Blob(b) => Some(b.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    };
    format!("{mark}::{}[]", pg_type(kind))
}

/// Adds `v` as a parameter of the column's kind; its placeholder, cast.
fn bind(p: &mut Params, kind: Kind, v: &Value) -> String {
    let mark = match (kind, v) {
        (Kind::Int, Value::Null) => p.add(None::<i64>),
        (Kind::Real, Value::Null) => p.add(None::<f64>),
        (Kind::Text, Value::Null) => p.add(None::<String>),
        (Kind::Blob, Value::Null) => p.add(None::<Vec<u8>>),
        (_, Value::Int(n)) => p.add(*n),
        (_, Value::Real(f)) => p.add(*f),
        (_, Value::Text(s)) => p.add(s.clone()),
        (_, Value::Blob(b)) => p.add(b.clone()),
    };
    format!("{mark}::{}", pg_type(kind))
}

fn value(r: &Row, n: usize, kind: Kind) -> Value {
    let v = match kind {
        Kind::Int => r.get::<_, Option<i64>>(n).map(Value::Int),
        Kind::Real => r.get::<_, Option<f64>>(n).map(Value::Real),
        Kind::Text => r.get::<_, Option<String>>(n).map(Value::Text),
        Kind::Blob => r.get::<_, Option<Vec<u8>>>(n).map(Value::Blob),
    };
    v.unwrap_or(Value::Null)
}

/// The key columns for comparing and ordering: text by bytes.
fn key_exprs(table: &RawTable) -> Vec<String> {
    table
        .key_columns()
        .iter()
        .map(|c| match c.kind {
            Kind::Text => format!("{} COLLATE \"C\"", quote(c.name)),
            _ => quote(c.name),
        })
        .collect()
}

impl Raw for PgStore {
    fn raw_schema(&self) -> Result<Vec<(String, Vec<String>)>> {
        let rows = self.c()?.q(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'plumb_meta'
             ORDER BY table_name, ordinal_position",
            &[],
        )?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let (table, column): (String, String) = (r.get(0), r.get(1));
            if table == "runs" && RUN_COLUMNS_FROM_RECORD.contains(&column.as_str()) {
                continue;
            }
            match out.last_mut() {
                Some((t, cols)) if *t == table => cols.push(column),
                _ => out.push((table, vec![column])),
            }
        }
        Ok(out)
    }

    fn raw_rows(
        &self,
        table: &RawTable,
        after: Option<&[Value]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<RawRow>> {
        let select: Vec<String> = table
            .columns
            .iter()
            .map(|c| match c.kind {
                Kind::Int | Kind::Real => format!("{}::{}", quote(c.name), pg_type(c.kind)),
                Kind::Text | Kind::Blob => quote(c.name),
            })
            .collect();
        let keys = key_exprs(table);
        let mut p = Params::default();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), quote(table.name));
        if let Some(after) = after {
            if after.len() != table.key {
                return Err(StoreError::BadQuery(format!(
                    "{}: a key of {} values for {} key columns",
                    table.name,
                    after.len(),
                    table.key
                )));
            }
            let marks: Vec<String> = table
                .key_columns()
                .iter()
                .zip(after)
                .map(|(c, v)| bind(&mut p, c.kind, v))
                .collect();
            sql.push_str(&format!(
                " WHERE ({}) > ({})",
                keys.join(", "),
                marks.join(", ")
            ));
        }
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            keys.join(", "),
            limit.max(1)
        ));
        let mut c = self.c()?;
        // Rows stream in as they are read, so a batch of big chunks stops
        // at `max_bytes` without holding the rest.
        let mut rows = c.query_raw(&sql, p.refs()).map_err(db)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(r) = rows.next().map_err(db)? {
            let row: RawRow = table
                .columns
                .iter()
                .enumerate()
                .map(|(n, col)| value(&r, n, col.kind))
                .collect();
            bytes += row_size(&row);
            out.push(row);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn put_raw_rows(&self, table: &RawTable, rows: &[RawRow]) -> Result<u64> {
        for row in rows {
            check_row(table, row)?;
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let runs = table.name == "runs";
        let mut names: Vec<String> = table.columns.iter().map(|c| quote(c.name)).collect();
        if runs {
            names.extend(RUN_COLUMNS_FROM_RECORD.iter().map(|c| quote(c)));
        }
        self.tx(|tx| {
            let ids: Vec<String> = if runs {
                rows.iter()
                    .filter_map(|r| r[0].as_text().map(String::from))
                    .collect()
            } else {
                Vec::new()
            };
            let queued: HashSet<String> = if runs {
                tx.q(
                    "SELECT run_id FROM error_queue WHERE run_id = ANY($1)",
                    &[&ids],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect()
            } else {
                HashSet::new()
            };
            // One array per column, unnested into rows: a statement of
            // as many parameters as columns, whatever the batch's size.
            let mut p = Params::default();
            let mut arrays: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(n, c)| column_array(&mut p, c.kind, rows, n))
                .collect();
            if runs {
                let record_at = table.columns.len() - 1;
                let mut attempt = Vec::with_capacity(rows.len());
                let mut max_attempts = Vec::with_capacity(rows.len());
                let mut launch_error = Vec::with_capacity(rows.len());
                let mut oom_root = Vec::with_capacity(rows.len());
                for row in rows {
                    let id = row[0].as_text().unwrap_or_default();
                    let record = row[record_at].as_text().unwrap_or_default();
                    let run: Run = json(id, record)?;
                    attempt.push(i64::from(run.attempt));
                    max_attempts.push(run.max_attempts.map(i64::from));
                    launch_error.push(run.launch_error);
                    oom_root.push(run.oom.as_ref().is_some_and(|o| o.root));
                }
                arrays.push(format!("{}::bigint[]", p.add(attempt)));
                arrays.push(format!("{}::bigint[]", p.add(max_attempts)));
                arrays.push(format!("{}::text[]", p.add(launch_error)));
                arrays.push(format!("{}::boolean[]", p.add(oom_root)));
            }
            let sql = format!(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT * FROM unnest({}) ON CONFLICT DO NOTHING",
                quote(table.name),
                names.join(", "),
                arrays.join(", ")
            );
            if !runs {
                return tx.x(&sql, &p.refs());
            }
            // Each run inserted was queued for grouping by the trigger;
            // the copy brings the source's queue as it is, so those
            // entries go unless the queue had them.
            let new: Vec<String> = tx
                .q(&format!("{sql} RETURNING id"), &p.refs())?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            let inserted = new.len() as u64;
            let unqueue: Vec<String> = new.into_iter().filter(|id| !queued.contains(id)).collect();
            if !unqueue.is_empty() {
                tx.x(
                    "DELETE FROM error_queue WHERE run_id = ANY($1)",
                    &[&unqueue],
                )?;
            }
            Ok(inserted)
        })
    }

    fn raw_ids_advance(&self) -> Result<()> {
        let identities = self.c()?.q(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )?;
        for r in identities {
            let (table, column): (String, String) = (r.get(0), r.get(1));
            self.c()?.x(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2),
                         COALESCE((SELECT max({c}) FROM {t}), 0) + 1, false)",
                    c = quote(&column),
                    t = quote(&table)
                ),
                &[&quote(&table), &column],
            )?;
        }
        Ok(())
    }
}
