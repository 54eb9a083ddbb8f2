//! Copying a whole store from one backend to another (`plumb store copy`),
//! without SQL: the list of tables and their columns (one declarative
//! place, [`TABLES`]), raw rows as backend-neutral values, the copy loop
//! in batches of bounded size, and the content hash both sides compute the
//! same way.
//!
//! A backend implements [`Raw`](crate::Raw): rows of a table after a key,
//! in key order, and inserting rows with their identity, skipping those
//! already there. Each backend folds its own storage layout into these
//! logical tables (SQLite keeps chunk data in a table of its own;
//! PostgreSQL keeps a run's indexed fields as columns of `runs`).
//!
//! Resuming is idempotence: every row is inserted with its identity (its
//! key), and a row already in the target is skipped, so a copy run again
//! after an interruption reads the source from the start, inserts what is
//! missing and ends equal.

use crate::backend::Raw;
use crate::error::{Result, StoreError};

/// The type of a column's values, as both backends store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Real,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Blob,
}

/// One column of a [`RawTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name in both schemas.
    pub name: &'static str,
    /// Its values' type.
    pub kind: Kind,
}

/// What the copy does with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its rows are copied, then compared.
    Copied,
    /// Kept by the target's own triggers as the rows it derives from are
    /// copied (the runs rollup): compared, never written, so nothing is
    /// counted twice.
    Derived,
}

/// A table as the copy sees it: its columns, the first `key` of which are
/// its identity (rows are read and hashed in that order), and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTable {
    /// The table's name in both schemas.
    pub name: &'static str,
    /// Every column the copy moves, key first.
    pub columns: &'static [Column],
    /// How many leading columns are the key.
    pub key: usize,
    /// Whether the copy writes it.
    pub role: Role,
}

impl RawTable {
    /// The key columns.
    pub fn key_columns(&self) -> &'static [Column] {
        &self.columns[..self.key]
    }
}

const fn i(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
    }
}
const fn r(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Real,
    }
}
const fn t(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}
const fn b(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Blob,
    }
}
const fn copied(name: &'static str, key: usize, columns: &'static [Column]) -> RawTable {
    RawTable {
        name,
        columns,
        key,
        role: Role::Copied,
    }
}

/// Every table a store holds, in the order they are copied: a table
/// before the tables that refer to it (fingerprints before runs, runs
/// before what belongs to a run, tokens before sessions, groups before
/// their occurrences). A table added to the schema is one line here (the
/// conformance suite fails until it is here or in [`SKIPPED`]).
pub const TABLES: &[RawTable] = &[
    // The store's settings (the retention horizon).
    copied("store_meta", 1, &[t("key"), t("value")]),
    copied("fingerprints", 1, &[t("hash"), t("record")]),
    copied(
        "runs",
        1,
        &[
            t("id"),
            t("hexid"),
            t("name"),
            t("host"),
            t("state"),
            i("started_ns"),
            i("ended_ns"),
            i("exit_code"),
            i("signal"),
            t("fingerprint"),
            t("record"),
        ],
    ),
    copied("run_tags", 2, &[t("run_id"), t("key"), t("value")]),
    copied(
        "run_snapshots",
        3,
        &[t("run_id"), i("taken_ns"), i("seq"), t("snapshot")],
    ),
    copied(
        "chunks",
        1,
        &[
            i("id"),
            t("run_id"),
            t("host"),
            i("stream"),
            i("part"),
            i("first_seq"),
            i("t_min"),
            i("t_max"),
            i("lines"),
            i("raw_bytes"),
            i("crc"),
            b("bloom"),
            b("data"),
        ],
    ),
    copied(
        "log_chunks",
        1,
        &[
            i("id"),
            t("source"),
            t("run_id"),
            t("service"),
            t("host"),
            i("t_min"),
            i("t_max"),
            i("lines"),
            i("raw_bytes"),
            i("crc"),
            b("bloom"),
            t("resource"),
            b("data"),
        ],
    ),
    copied("log_seen", 2, &[i("t"), i("h")]),
    copied(
        "spans",
        2,
        &[
            t("trace_id"),
            t("span_id"),
            t("parent_span_id"),
            t("run_id"),
            t("service"),
            t("host"),
            t("name"),
            i("start_ns"),
            i("end_ns"),
            i("status"),
            t("record"),
        ],
    ),
    copied(
        "metric_points",
        3,
        &[
            t("name"),
            i("series"),
            i("time_ns"),
            t("kind"),
            r("value"),
            t("run_id"),
            t("service"),
            t("host"),
            t("record"),
        ],
    ),
    copied(
        "tokens",
        1,
        &[t("hash"), t("role"), t("name"), i("created_ns")],
    ),
    copied(
        "sessions",
        1,
        &[t("hash"), t("token_hash"), i("created_ns")],
    ),
    copied(
        "nodes",
        1,
        &[
            t("name"),
            t("state"),
            i("since_ns"),
            i("last_seen_ns"),
            t("report"),
            t("intervals"),
            t("fingerprint"),
            t("software"),
        ],
    ),
    copied(
        "node_transitions",
        1,
        &[
            i("id"),
            t("node"),
            t("from_state"),
            t("to_state"),
            i("at_ns"),
            r("phi"),
        ],
    ),
    copied(
        "node_env_changes",
        2,
        &[t("node"), i("at_ns"), t("old_fp"), t("new_fp")],
    ),
    copied(
        "preflights",
        1,
        &[t("id"), i("at_ns"), t("spec"), t("result")],
    ),
    copied("node_health", 2, &[t("node"), i("at_ns"), t("health")]),
    copied(
        "node_bench",
        2,
        &[t("node"), i("at_ns"), i("taken_ns"), t("bench")],
    ),
    copied(
        "node_samples",
        3,
        &[
            t("node"),
            i("step_s"),
            i("at_ns"),
            r("load1"),
            i("mem_used"),
            i("mem_total"),
            r("disk_pct"),
            t("disks"),
        ],
    ),
    copied(
        "clock_estimates",
        2,
        &[
            t("node"),
            i("latest_ns"),
            i("received_ns"),
            i("at_ns"),
            i("offset_ns"),
            i("error_ns"),
            i("delay_ns"),
            r("drift_ppm"),
            i("samples"),
        ],
    ),
    copied(
        "disk_samples",
        3,
        &[t("node"), t("mount"), i("t_ns"), i("available"), i("total")],
    ),
    copied(
        "error_groups",
        1,
        &[
            t("fingerprint"),
            t("kind"),
            t("message"),
            t("language"),
            t("sample"),
            i("first_seen_ns"),
            i("last_seen_ns"),
            i("count"),
            i("runs"),
            i("resolved_ns"),
            i("regressed_ns"),
        ],
    ),
    copied(
        "error_events",
        1,
        &[
            t("key"),
            t("fingerprint"),
            t("run_id"),
            t("host"),
            i("at_ns"),
            t("source"),
        ],
    ),
    copied("error_hosts", 2, &[t("fingerprint"), t("host"), i("count")]),
    copied("error_runs", 2, &[t("fingerprint"), t("run_id")]),
    // After runs: inserting a failed run queues it (a trigger); the
    // backends take those entries out again unless the source queued it,
    // so runs grouped at the source are not grouped twice.
    copied("error_queue", 1, &[i("id"), t("run_id")]),
    copied(
        "alerts",
        1,
        &[
            t("fingerprint"),
            t("name"),
            t("severity"),
            t("state"),
            t("labels"),
            t("annotations"),
            i("active_ns"),
            i("starts_ns"),
            i("ends_ns"),
            i("last_notified_ns"),
            t("notified_state"),
        ],
    ),
    copied("alert_rules", 1, &[i("id"), t("rules")]),
    copied("throttles", 1, &[t("name"), i("slots")]),
    copied(
        "throttle_leases",
        2,
        &[
            t("name"),
            t("holder"),
            i("seq"),
            i("enqueued_ns"),
            i("granted_ns"),
            i("expires_ns"),
            t("run_id"),
            t("node"),
            i("pid"),
        ],
    ),
    RawTable {
        name: "run_counts",
        columns: &[t("name"), i("bucket_ns"), t("state"), i("n")],
        key: 3,
        role: Role::Derived,
    },
    RawTable {
        name: "run_counts_all",
        columns: &[i("bucket_ns"), t("state"), i("n")],
        key: 2,
        role: Role::Derived,
    },
    RawTable {
        name: "error_days",
        columns: &[t("fingerprint"), i("day_ns"), i("n")],
        key: 2,
        role: Role::Derived,
    },
];

/// Tables a store holds that the copy leaves out, each with the reason.
pub const SKIPPED: &[(&str, &str)] = &[(
    "leases",
    "the collectors' leader lease: a copy's collectors elect their own at once \
     instead of waiting out a stranger's lease",
)];

/// The table named `name` in [`TABLES`].
pub fn table(name: &str) -> Option<&'static RawTable> {
    TABLES.iter().find(|t| t.name == name)
}

/// One value of a raw row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// The bytes it takes, roughly, for bounding a batch.
    pub fn size(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Int(_) | Value::Real(_) => 8,
            Value::Text(s) => s.len() + 8,
            Value::Blob(b) => b.len() + 8,
        }
    }

    /// The integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One row of a [`RawTable`]: a value per column, in its column order.
pub type RawRow = Vec<Value>;

/// The bytes a row takes, roughly.
pub fn row_size(row: &RawRow) -> usize {
    row.iter().map(Value::size).sum()
}

/// Checks that a row fits its table: one value per column, each of the
/// column's kind or NULL. Backends call this before writing, so a bad row
/// is an error naming the table and column rather than a driver's.
pub fn check_row(table: &RawTable, row: &RawRow) -> Result<()> {
    if row.len() != table.columns.len() {
        return Err(StoreError::BadQuery(format!(
            "a row of {} has {} values for {} columns",
            table.name,
            row.len(),
            table.columns.len()
        )));
    }
    for (c, v) in table.columns.iter().zip(row) {
        let ok = matches!(
            (c.kind, v),
            (_, Value::Null)
                | (Kind::Int, Value::Int(_))
                | (Kind::Real, Value::Real(_))
                | (Kind::Text, Value::Text(_))
                | (Kind::Blob, Value::Blob(_))
        );
        if !ok {
            return Err(StoreError::BadQuery(format!(
                "{}.{}: a {:?} column given {v:?}",
                table.name, c.name, c.kind
            )));
        }
    }
    Ok(())
}

/// A table's row count and content hash: each row's values in key order,
/// each encoded canonically (a tag, then big-endian integers, float bits,
/// or a length and the bytes), through XXH3-128. Both sides of a copy
/// compute it the same way, whatever their backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Rows hashed.
    pub rows: u64,
    /// The hash of their canonical encoding, in key order.
    pub hash: u128,
}

/// Builds a [`Digest`] row by row.
pub struct Hasher {
    rows: u64,
    state: xxhash_rust::xxh3::Xxh3,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            rows: 0,
            state: xxhash_rust::xxh3::Xxh3::new(),
        }
    }
}

impl Hasher {
    /// Adds the next row (rows must come in key order).
    pub fn row(&mut self, row: &RawRow) {
        self.rows += 1;
        let s = &mut self.state;
        s.update(&(row.len() as u64).to_be_bytes());
        for v in row {
            match v {
                Value::Null => s.update(&[0]),
                Value::Int(n) => {
                    s.update(&[1]);
                    s.update(&n.to_be_bytes());
                }
                Value::Real(f) => {
                    s.update(&[2]);
                    s.update(&f.to_bits().to_be_bytes());
                }
                Value::Text(t) => {
                    s.update(&[3]);
                    s.update(&(t.len() as u64).to_be_bytes());
                    s.update(t.as_bytes());
                }
                Value::Blob(b) => {
                    s.update(&[4]);
                    s.update(&(b.len() as u64).to_be_bytes());
                    s.update(b);
                }
            }
        }
    }

    /// The digest of the rows added.
    pub fn finish(&self) -> Digest {
        Digest {
            rows: self.rows,
            hash: self.state.digest128(),
        }
    }
}

/// How much a batch holds at most: rows, and bytes (a batch stops at the
/// row that reaches `bytes`, so chunks of several MB never pile up).
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// Rows per batch at most.
    pub rows: usize,
    /// Bytes per batch, about.
    pub bytes: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            rows: 1000,
            bytes: 16 << 20,
        }
    }
}

/// Reads a table's rows in key order, batch after batch, each handed to
/// `each`; the number of rows asked for adapts to the rows' size so that
/// a batch stays near `batch.bytes`.
pub fn scan(
    store: &dyn Raw,
    table: &RawTable,
    batch: Batch,
    each: &mut dyn FnMut(&[RawRow]) -> Result<()>,
) -> Result<()> {
    let mut after: Option<RawRow> = None;
    // Start small: the first batch tells how big the rows are.
    let mut limit = batch.rows.clamp(1, 64);
    // Bounded by the table's size: each batch moves the key forward.
    loop {
        let rows = store.raw_rows(table, after.as_deref(), limit, batch.bytes)?;
        if rows.is_empty() {
            return Ok(());
        }
        let bytes: usize = rows.iter().map(row_size).sum::<usize>().max(1);
        each(&rows)?;
        let last = rows.last().expect("not empty");
        after = Some(last[..table.key].to_vec());
        let fitting = (batch.bytes as u128 * rows.len() as u128 / bytes as u128) as usize;
        limit = fitting.clamp(1, batch.rows.max(1));
    }
}

/// What copying one table did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// The source's rows, and their digest.
    pub source: Digest,
    /// Rows the target did not hold and now does.
    pub inserted: u64,
    /// The bytes of the rows read, about (see [`row_size`]).
    pub bytes: u64,
}

/// Copies one table from `from` to `to` in batches (a [`Role::Derived`]
/// table is only read, for its digest), calling `progress` with the rows
/// read so far after each batch. Rows the target holds already are
/// skipped, so a copy run again finishes what an interrupted one began.
pub fn copy_table(
    from: &dyn Raw,
    to: &dyn Raw,
    table: &RawTable,
    batch: Batch,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied> {
    let mut hasher = Hasher::default();
    let mut inserted = 0;
    let mut bytes = 0;
    scan(from, table, batch, &mut |rows| {
        for row in rows {
            hasher.row(row);
            bytes += row_size(row) as u64;
        }
        if table.role == Role::Copied {
            inserted += to.put_raw_rows(table, rows)?;
        }
        progress(hasher.rows);
        Ok(())
    })?;
    Ok(Copied {
        source: hasher.finish(),
        inserted,
        bytes,
    })
}

/// A table's digest in `store`, read in batches.
pub fn digest(
    store: &dyn Raw,
    table: &RawTable,
    batch: Batch,
    progress: &mut dyn FnMut(u64),
) -> Result<Digest> {
    let mut hasher = Hasher::default();
    scan(store, table, batch, &mut |rows| {
        for row in rows {
            hasher.row(row);
        }
        progress(hasher.rows);
        Ok(())
    })?;
    Ok(hasher.finish())
}

/// The tables in `found` (a store's own, as [`Raw::raw_schema`] lists
/// them, with their columns) that the copy does not know as they are: a
/// table neither in [`TABLES`] nor in [`SKIPPED`], a column not listed,
/// or a listed table or column the store lacks. Empty when the copy moves
/// everything the store holds.
pub fn schema_mismatches(found: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, columns) in found {
        if SKIPPED.iter().any(|(s, _)| s == name) {
            continue;
        }
        let Some(t) = table(name) else {
            out.push(format!(
                "table {name} is in the schema but neither copied (copy::TABLES) nor skipped (copy::SKIPPED)"
            ));
            continue;
        };
        for c in columns {
            if !t.columns.iter().any(|k| k.name == c) {
                out.push(format!("column {name}.{c} is in the schema but not copied"));
            }
        }
        for k in t.columns {
            if !columns.iter().any(|c| c == k.name) {
                out.push(format!(
                    "column {name}.{} is copied but not in the schema",
                    k.name
                ));
            }
        }
    }
    for t in TABLES {
        if !found.iter().any(|(n, _)| n == t.name) {
            out.push(format!("table {} is copied but not in the schema", t.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_leading_columns_and_names_are_unique() {
        for t in TABLES {
            assert!(t.key >= 1 && t.key <= t.columns.len(), "{}", t.name);
            let mut names: Vec<_> = t.columns.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), t.columns.len(), "{}", t.name);
        }
        let mut names: Vec<_> = TABLES.iter().map(|t| t.name).collect();
        names.extend(SKIPPED.iter().map(|s| s.0));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn the_hash_tells_values_types_and_boundaries_apart() {
        let d = |rows: &[RawRow]| {
            let mut h = Hasher::default();
            rows.iter().for_each(|r| h.row(r));
            h.finish()
        };
        let a = d(&[vec![Value::Text("ab".into()), Value::Text("c".into())]]);
        let b = d(&[vec![Value::Text("a".into()), Value::Text("bc".into())]]);
        let c = d(&[vec![Value::Blob(b"ab".to_vec()), Value::Text("c".into())]]);
        let e = d(&[vec![Value::Null, Value::Text("c".into())]]);
        let f = d(&[vec![Value::Int(1)]]);
        let g = d(&[vec![Value::Real(1.0)]]);
        let all = [a, b, c, e, f, g];
        for (x, p) in all.iter().enumerate() {
            for q in &all[x + 1..] {
                assert_ne!(p.hash, q.hash);
            }
        }
        assert_eq!(
            a,
            d(&[vec![Value::Text("ab".into()), Value::Text("c".into())]])
        );
        assert_eq!(a.rows, 1);
    }

    #[test]
    fn a_row_of_the_wrong_shape_is_named() {
        let t = table("throttles").unwrap();
        let e = check_row(t, &vec![Value::Text("x".into()), Value::Text("2".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("throttles.slots"), "{e}");
        let e = check_row(t, &vec![Value::Null]).unwrap_err().to_string();
        assert!(e.contains("1 values for 2 columns"), "{e}");
        check_row(t, &vec![Value::Text("x".into()), Value::Int(2)]).unwrap();
    }
}
