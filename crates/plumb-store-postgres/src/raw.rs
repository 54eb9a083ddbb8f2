//! [`Raw`] on PostgreSQL: whole tables as raw rows, for `plumb store copy`
//! (the loop and the hash are `plumb_store::copy`'s). Values are read and
//! bound as the copy's kinds (`bigint`, `float8`, `text`, `bytea`) and
//! assigned to the columns' own types; ids go in with
//! `OVERRIDING SYSTEM VALUE`, and `raw_ids_advance` moves each identity
//! sequence past them. A run's indexed fields that SQLite does not keep as
//! columns (attempt, max_attempts, launch_error, oom_root) are made from
//! its record as it is inserted.

use crate::retention::{PARTED, make_partition};
use crate::{Params, PgStore, Sql, db, json};
use plumb_model::Run;
use plumb_store::copy::{Kind, RawRow, RawTable, Value, check_row, row_size};
use plumb_store::kit::DAY_NS;
use plumb_store::{Raw, Result, StoreError};
use postgres::Row;
use postgres::fallible_iterator::FallibleIterator;
use std::collections::HashSet;

/// The copy's `store_meta` (SQLite's table of the store's settings, such
/// as the retention horizon) is `plumb_meta` here, without the schema
/// version, which belongs to this database.
const STORE_META: &str = "store_meta";

/// The table that holds `table`'s rows, and the condition on them.
fn physical(table: &RawTable) -> (&'static str, &'static str) {
    if table.name == STORE_META {
        ("plumb_meta", "\"key\" <> 'schema_version'")
    } else {
        (table.name, "true")
    }
}

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
        // Tables of the schema, not their partitions (a day of chunks).
        let rows = self.c()?.q(
            "SELECT c.table_name::text, c.column_name::text
             FROM information_schema.columns c
             JOIN pg_class k ON k.oid = to_regclass(quote_ident(c.table_name))
             WHERE c.table_schema = current_schema() AND NOT k.relispartition
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let (table, column): (String, String) = (r.get(0), r.get(1));
            if table == "runs" && RUN_COLUMNS_FROM_RECORD.contains(&column.as_str()) {
                continue;
            }
            let table = if table == "plumb_meta" {
                STORE_META.to_string()
            } else {
                table
            };
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
        let (name, condition) = physical(table);
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            select.join(", "),
            quote(name)
        );
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
                " AND ({}) > ({})",
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
        let (name, _) = physical(table);
        let kept: Vec<RawRow>;
        let rows = if table.name == STORE_META {
            kept = rows
                .iter()
                .filter(|r| r[0].as_text() != Some("schema_version"))
                .cloned()
                .collect();
            &kept[..]
        } else {
            rows
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if PARTED.contains(&table.name) {
            // Each day's partition made before the insert, however many
            // days one batch spans.
            let at = table
                .columns
                .iter()
                .position(|c| c.name == "t_max")
                .expect("a partitioned table has t_max");
            let days: std::collections::BTreeSet<i64> = rows
                .iter()
                .filter_map(|r| r[at].as_int())
                .map(|t| t.div_euclid(DAY_NS) * DAY_NS)
                .collect();
            for day in days {
                make_partition(&mut *self.c()?, table.name, day)?;
            }
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
                quote(name),
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
        // Every column whose default takes from a sequence it owns
        // (identity columns, and the chunk ids shared by a day's
        // partitions).
        let owned = self.c()?.q(
            "SELECT c.table_name::text, c.column_name::text,
                    pg_get_serial_sequence(quote_ident(c.table_name), c.column_name)
             FROM information_schema.columns c
             JOIN pg_class k ON k.oid = to_regclass(quote_ident(c.table_name))
             WHERE c.table_schema = current_schema() AND NOT k.relispartition
               AND pg_get_serial_sequence(quote_ident(c.table_name), c.column_name) IS NOT NULL",
            &[],
        )?;
        for r in owned {
            let (table, column, sequence): (String, String, String) =
                (r.get(0), r.get(1), r.get(2));
            self.c()?.x(
                &format!(
                    "SELECT setval($1::text::regclass, GREATEST(COALESCE((SELECT max({c}) FROM {t}), 0) + 1,
                         (SELECT last_value + 1 FROM {sequence})), false)",
                    c = quote(&column),
                    t = quote(&table)
                ),
                &[&sequence],
            )?;
        }
        Ok(())
    }
}
