//! [`Raw`] on SQLite: whole tables as raw rows, for `plumb store copy`
//! (the loop and the hash are [`crate::copy`]'s). Chunk data lives in
//! tables of its own here (`chunk_data`, `log_chunk_data`, one row per
//! chunk, same id), read and written as its chunk's `data` column.

use crate::Store;
use crate::backend::Raw;
use crate::copy::{Kind, RawRow, RawTable, Value, check_row, row_size};
use crate::error::{Result, StoreError};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// Tables that hold the `data` column of another: (table, of table).
const DATA_TABLES: &[(&str, &str)] = &[("chunk_data", "chunks"), ("log_chunk_data", "log_chunks")];

/// The table holding `table`'s `data` column, when it is not `table`.
fn data_table(table: &str) -> Option<&'static str> {
    DATA_TABLES
        .iter()
        .find(|(_, of)| *of == table)
        .map(|(d, _)| *d)
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(n) => SqlValue::Integer(*n),
        Value::Real(f) => SqlValue::Real(*f),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

fn from_sql(table: &str, column: &str, kind: Kind, v: ValueRef<'_>) -> Result<Value> {
    let bad = |found: &str| {
        StoreError::Corrupt(format!(
            "{table}.{column} holds {found} where {kind:?} belongs"
        ))
    };
    Ok(match (kind, v) {
        (_, ValueRef::Null) => Value::Null,
        (Kind::Int, ValueRef::Integer(n)) => Value::Int(n),
        (Kind::Real, ValueRef::Integer(n)) => Value::Real(n as f64),
        (Kind::Real, ValueRef::Real(f)) => Value::Real(f),
        (Kind::Text, ValueRef::Text(t)) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| bad("text that is not UTF-8"))?)
        }
        (Kind::Blob, ValueRef::Blob(b) | ValueRef::Text(b)) => Value::Blob(b.to_vec()),
        (_, ValueRef::Integer(_)) => return Err(bad("an integer")),
        (_, ValueRef::Real(_)) => return Err(bad("a float")),
        (_, ValueRef::Text(_)) => return Err(bad("text")),
        (_, ValueRef::Blob(_)) => return Err(bad("a blob")),
    })
}

impl Raw for Store {
    fn raw_schema(&self) -> Result<Vec<(String, Vec<String>)>> {
        let conn = self.conn();
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for name in &names {
            if DATA_TABLES.iter().any(|(d, _)| d == name) {
                continue;
            }
            let mut columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
                .query_map([name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if data_table(name).is_some_and(|d| names.iter().any(|n| n == d)) {
                columns.push("data".into());
            }
            out.push((name.clone(), columns));
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
        let data = data_table(table.name);
        let select: Vec<String> = table
            .columns
            .iter()
            .map(|c| match data {
                Some(_) if c.name == "data" => "d.data".to_string(),
                _ => format!("t.{}", quote(c.name)),
            })
            .collect();
        let mut sql = format!("SELECT {} FROM {} t", select.join(", "), quote(table.name));
        if let Some(d) = data {
            sql.push_str(&format!(" LEFT JOIN {d} d ON d.id = t.id"));
        }
        let keys: Vec<String> = table
            .key_columns()
            .iter()
            .map(|c| format!("t.{}", quote(c.name)))
            .collect();
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(after) = after {
            if after.len() != table.key {
                return Err(StoreError::BadQuery(format!(
                    "{}: a key of {} values for {} key columns",
                    table.name,
                    after.len(),
                    table.key
                )));
            }
            let marks: Vec<String> = (1..=after.len()).map(|n| format!("?{n}")).collect();
            sql.push_str(&format!(
                " WHERE ({}) > ({})",
                keys.join(", "),
                marks.join(", ")
            ));
            params.extend(after.iter().map(to_sql));
        }
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            keys.join(", "),
            limit.max(1)
        ));
        let conn = self.conn();
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(table.columns.len());
            for (n, c) in table.columns.iter().enumerate() {
                row.push(from_sql(table.name, c.name, c.kind, r.get_ref(n)?)?);
            }
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
        let data = data_table(table.name);
        // The columns of the table itself (without `data` where it lives
        // in a table of its own).
        let own: Vec<usize> = (0..table.columns.len())
            .filter(|&n| data.is_none() || table.columns[n].name != "data")
            .collect();
        let names: Vec<String> = own.iter().map(|&n| quote(table.columns[n].name)).collect();
        let marks: Vec<String> = (1..=own.len()).map(|n| format!("?{n}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            quote(table.name),
            names.join(", "),
            marks.join(", ")
        );
        let data_at = table.columns.iter().position(|c| c.name == "data");
        let tx = self.conn().unchecked_transaction()?;
        let mut inserted = 0;
        {
            let mut st = tx.prepare_cached(&insert)?;
            for row in rows {
                // A run inserted here is queued for grouping by the
                // trigger on runs; the copy brings the source's queue as
                // it is, so that entry goes unless the queue had it.
                let queued_before = if table.name == "runs" {
                    let id = row[0].as_text().unwrap_or_default();
                    tx.query_row(
                        "SELECT count(*) FROM error_queue WHERE run_id = ?1",
                        [id],
                        |r| r.get::<_, i64>(0),
                    )? > 0
                } else {
                    false
                };
                let n = st.execute(rusqlite::params_from_iter(
                    own.iter().map(|&n| to_sql(&row[n])),
                ))?;
                if n == 0 {
                    continue;
                }
                inserted += 1;
                if let (Some(d), Some(at)) = (data, data_at) {
                    tx.prepare_cached(&format!(
                        "INSERT INTO {d} (id, data) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
                    ))?
                    .execute(rusqlite::params![to_sql(&row[0]), to_sql(&row[at])])?;
                }
                if table.name == "runs" && !queued_before {
                    tx.execute(
                        "DELETE FROM error_queue WHERE run_id = ?1",
                        [row[0].as_text().unwrap_or_default()],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    fn raw_ids_advance(&self) -> Result<()> {
        // An INTEGER PRIMARY KEY takes the highest id plus one by itself.
        Ok(())
    }
}
