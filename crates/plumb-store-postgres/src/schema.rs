//! The PostgreSQL schema, versioned in `plumb_meta` from its first
//! release. Migrations run under an advisory lock, each in a transaction;
//! never edit one once released: add a new one.
//!
//! Text columns compare byte by byte (`COLLATE "C"`), as SQLite does, so
//! prefix ranges on ids and the order of names are the same on both
//! backends whatever the database's collation. Chunk data and word filters
//! are stored uncompressed by PostgreSQL (`STORAGE EXTERNAL`): they are
//! compressed already, and a search reads one 32-byte block of a filter
//! without fetching the rest.

use crate::{PgStore, Sql};
use plumb_store::{Result, StoreError};

/// The advisory lock key held while migrating ("plmb").
const MIGRATE_LOCK: i64 = 0x706c_6d62;

/// Each migration brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id           TEXT COLLATE "C" PRIMARY KEY,
    hexid        TEXT COLLATE "C" NOT NULL UNIQUE,
    name         TEXT COLLATE "C" NOT NULL,
    host         TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    started_ns   BIGINT NOT NULL,
    ended_ns     BIGINT,
    exit_code    INTEGER,
    signal       INTEGER,
    fingerprint  TEXT COLLATE "C",
    attempt      BIGINT NOT NULL,
    max_attempts BIGINT,
    launch_error TEXT,
    oom_root     BOOLEAN NOT NULL,
    record       TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started_ns, id);
CREATE INDEX runs_name ON runs (name, started_ns, state, ended_ns);
CREATE INDEX runs_host ON runs (host, started_ns);
CREATE INDEX runs_state ON runs (state, started_ns);
CREATE TABLE run_tags (
    run_id TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    value  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_kv ON run_tags (key, value);
CREATE TABLE fingerprints (
    hash   TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE chunks (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id    TEXT COLLATE "C" NOT NULL,
    host      TEXT COLLATE "C" NOT NULL,
    stream    BIGINT NOT NULL,
    part      BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    t_min     BIGINT NOT NULL,
    t_max     BIGINT NOT NULL,
    lines     BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    crc       BIGINT NOT NULL,
    bloom     BYTEA NOT NULL,
    data      BYTEA NOT NULL,
    UNIQUE (run_id, stream, part)
);
ALTER TABLE chunks ALTER COLUMN bloom SET STORAGE EXTERNAL;
ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX chunks_time ON chunks (t_max);
CREATE INDEX chunks_host ON chunks (host, t_max);
CREATE INDEX chunks_unindexed ON chunks (id) WHERE octet_length(bloom) = 0;
CREATE TABLE log_chunks (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source    TEXT COLLATE "C" NOT NULL,
    run_id    TEXT COLLATE "C",
    service   TEXT COLLATE "C" NOT NULL,
    host      TEXT COLLATE "C" NOT NULL,
    t_min     BIGINT NOT NULL,
    t_max     BIGINT NOT NULL,
    lines     BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    crc       BIGINT NOT NULL,
    bloom     BYTEA NOT NULL,
    data      BYTEA NOT NULL,
    resource  TEXT NOT NULL
);
ALTER TABLE log_chunks ALTER COLUMN bloom SET STORAGE EXTERNAL;
ALTER TABLE log_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX log_chunks_run ON log_chunks (run_id, t_min) WHERE run_id IS NOT NULL;
CREATE INDEX log_chunks_source ON log_chunks (source, t_min);
CREATE INDEX log_chunks_host ON log_chunks (host, t_max);
CREATE INDEX log_chunks_time ON log_chunks (t_max);
CREATE TABLE log_seen (
    t BIGINT NOT NULL,
    h BIGINT NOT NULL,
    PRIMARY KEY (t, h)
);
CREATE TABLE spans (
    trace_id       TEXT COLLATE "C" NOT NULL,
    span_id        TEXT COLLATE "C" NOT NULL,
    parent_span_id TEXT COLLATE "C",
    run_id         TEXT COLLATE "C",
    service        TEXT COLLATE "C" NOT NULL,
    host           TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    start_ns       BIGINT NOT NULL,
    end_ns         BIGINT NOT NULL,
    status         BIGINT NOT NULL,
    record         TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_run ON spans (run_id, start_ns) WHERE run_id IS NOT NULL;
CREATE INDEX spans_start ON spans (start_ns);
CREATE TABLE metric_points (
    name    TEXT COLLATE "C" NOT NULL,
    series  BIGINT NOT NULL,
    time_ns BIGINT NOT NULL,
    kind    TEXT COLLATE "C" NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    run_id  TEXT COLLATE "C",
    service TEXT COLLATE "C" NOT NULL,
    host    TEXT COLLATE "C" NOT NULL,
    record  TEXT NOT NULL,
    PRIMARY KEY (name, series, time_ns)
);
CREATE INDEX metric_points_time ON metric_points (time_ns);
CREATE TABLE tokens (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    role       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    created_ns BIGINT NOT NULL
);
CREATE TABLE sessions (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    token_hash TEXT COLLATE "C" NOT NULL,
    created_ns BIGINT NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_hash);
CREATE TABLE nodes (
    name         TEXT COLLATE "C" PRIMARY KEY,
    state        TEXT COLLATE "C" NOT NULL,
    since_ns     BIGINT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    report       TEXT NOT NULL,
    intervals    TEXT NOT NULL,
    fingerprint  TEXT COLLATE "C"
);
CREATE TABLE node_transitions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node       TEXT COLLATE "C" NOT NULL,
    from_state TEXT COLLATE "C",
    to_state   TEXT COLLATE "C" NOT NULL,
    at_ns      BIGINT NOT NULL,
    phi        DOUBLE PRECISION NOT NULL
);
CREATE INDEX node_transitions_node ON node_transitions (node, id);
CREATE TABLE error_groups (
    fingerprint   TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    language      TEXT NOT NULL,
    sample        TEXT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    runs          BIGINT NOT NULL,
    resolved_ns   BIGINT,
    regressed_ns  BIGINT
);
CREATE INDEX error_groups_last ON error_groups (last_seen_ns);
CREATE TABLE error_events (
    key         TEXT COLLATE "C" PRIMARY KEY,
    fingerprint TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C",
    host        TEXT COLLATE "C" NOT NULL,
    at_ns       BIGINT NOT NULL,
    source      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX error_events_group ON error_events (fingerprint, at_ns);
CREATE TABLE error_hosts (
    fingerprint TEXT COLLATE "C" NOT NULL,
    host        TEXT COLLATE "C" NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (fingerprint, host)
);
CREATE TABLE error_runs (
    fingerprint TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (fingerprint, run_id)
);
CREATE TABLE error_queue (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE alerts (
    fingerprint      TEXT COLLATE "C" PRIMARY KEY,
    name             TEXT COLLATE "C" NOT NULL,
    severity         TEXT COLLATE "C" NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    labels           TEXT NOT NULL,
    annotations      TEXT NOT NULL,
    active_ns        BIGINT NOT NULL,
    starts_ns        BIGINT NOT NULL,
    ends_ns          BIGINT,
    last_notified_ns BIGINT,
    notified_state   TEXT COLLATE "C"
);
CREATE INDEX alerts_state ON alerts (state, ends_ns);
CREATE TABLE alert_rules (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    rules TEXT NOT NULL
);
CREATE TABLE disk_samples (
    node      TEXT COLLATE "C" NOT NULL,
    mount     TEXT COLLATE "C" NOT NULL,
    t_ns      BIGINT NOT NULL,
    available BIGINT NOT NULL,
    total     BIGINT NOT NULL,
    PRIMARY KEY (node, mount, t_ns)
);
CREATE INDEX disk_samples_time ON disk_samples (t_ns);
CREATE TABLE clock_estimates (
    node        TEXT COLLATE "C" NOT NULL,
    latest_ns   BIGINT NOT NULL,
    received_ns BIGINT NOT NULL,
    at_ns       BIGINT NOT NULL,
    offset_ns   BIGINT NOT NULL,
    error_ns    BIGINT NOT NULL,
    delay_ns    BIGINT NOT NULL,
    drift_ppm   DOUBLE PRECISION,
    samples     BIGINT NOT NULL,
    PRIMARY KEY (node, latest_ns)
);
CREATE INDEX clock_estimates_received ON clock_estimates (node, received_ns);
CREATE TABLE run_snapshots (
    run_id   TEXT COLLATE "C" NOT NULL,
    taken_ns BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (run_id, taken_ns, seq)
);
CREATE TABLE throttles (
    name  TEXT COLLATE "C" PRIMARY KEY,
    slots BIGINT NOT NULL
);
CREATE TABLE throttle_leases (
    name        TEXT COLLATE "C" NOT NULL,
    holder      TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    enqueued_ns BIGINT NOT NULL,
    granted_ns  BIGINT,
    expires_ns  BIGINT NOT NULL,
    run_id      TEXT COLLATE "C",
    node        TEXT COLLATE "C" NOT NULL,
    pid         BIGINT,
    PRIMARY KEY (name, holder)
);
CREATE INDEX throttle_leases_seq ON throttle_leases (name, seq);
CREATE INDEX throttle_leases_expires ON throttle_leases (expires_ns);
CREATE TABLE node_health (
    node   TEXT COLLATE "C" NOT NULL,
    at_ns  BIGINT NOT NULL,
    health TEXT NOT NULL,
    PRIMARY KEY (node, at_ns)
);
CREATE TABLE leases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT COLLATE "C" NOT NULL,
    expires_ns BIGINT NOT NULL
);
CREATE TABLE run_counts (
    name      TEXT COLLATE "C" NOT NULL,
    bucket_ns BIGINT NOT NULL,
    state     TEXT COLLATE "C" NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (name, bucket_ns, state)
);
CREATE TABLE run_counts_all (
    bucket_ns BIGINT NOT NULL,
    state     TEXT COLLATE "C" NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (bucket_ns, state)
);
-- The runs rollup (run_counts, run_counts_all: runs per 5-minute bucket by
-- state) and the error-grouping queue, kept in the transaction that writes
-- the run, as SQLite's triggers do: a replaced run moves from its old
-- state's count to its new one, and a failed run is queued once.
CREATE FUNCTION plumb_runs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b_old BIGINT;
    b_new BIGINT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        b_old := OLD.started_ns - (((OLD.started_ns % 300000000000) + 300000000000) % 300000000000);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        b_new := NEW.started_ns - (((NEW.started_ns % 300000000000) + 300000000000) % 300000000000);
    END IF;
    IF NOT (TG_OP = 'UPDATE' AND OLD.name = NEW.name AND OLD.state = NEW.state AND b_old = b_new) THEN
        IF TG_OP <> 'INSERT' THEN
            UPDATE run_counts SET n = n - 1
                WHERE name = OLD.name AND bucket_ns = b_old AND state = OLD.state;
            DELETE FROM run_counts
                WHERE name = OLD.name AND bucket_ns = b_old AND state = OLD.state AND n <= 0;
            UPDATE run_counts_all SET n = n - 1 WHERE bucket_ns = b_old AND state = OLD.state;
            DELETE FROM run_counts_all WHERE bucket_ns = b_old AND state = OLD.state AND n <= 0;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO run_counts (name, bucket_ns, state, n) VALUES (NEW.name, b_new, NEW.state, 1)
                ON CONFLICT (name, bucket_ns, state) DO UPDATE SET n = run_counts.n + 1;
            INSERT INTO run_counts_all (bucket_ns, state, n) VALUES (b_new, NEW.state, 1)
                ON CONFLICT (bucket_ns, state) DO UPDATE SET n = run_counts_all.n + 1;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state IN ('failed', 'killed', 'evicted', 'timed-out') THEN
        INSERT INTO error_queue (run_id) VALUES (NEW.id) ON CONFLICT (run_id) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER runs_changed AFTER INSERT OR UPDATE OR DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION plumb_runs_changed();
"#,
    // 1 -> 2: output and log chunks partitioned by UTC day of their last
    // line (t_max), so retention drops a day at once (`retention.rs`). A
    // partition is made on the first row that needs it (`plumb_partition`).
    // Keys include the partition column, as PostgreSQL requires; a chunk sent
    // twice has the same t_max, so it is still stored once.
    r#"
CREATE FUNCTION plumb_partition(parent TEXT, prefix TEXT, t BIGINT) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    day  CONSTANT BIGINT := 86400000000000;
    lo   BIGINT := floor(t::NUMERIC / day)::BIGINT * day;
    name TEXT := prefix || to_char(to_timestamp(lo / 1000000000) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass(quote_ident(name)) IS NULL THEN
        -- Collectors making the same partition at once take turns.
        PERFORM pg_advisory_xact_lock(hashtext(name));
        IF to_regclass(quote_ident(name)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                name, parent, lo, lo + day);
            EXECUTE format('ALTER TABLE %I ALTER COLUMN bloom SET STORAGE EXTERNAL,
                ALTER COLUMN data SET STORAGE EXTERNAL', name);
        END IF;
    END IF;
    RETURN name;
END $$;
CREATE SEQUENCE chunk_ids;
CREATE TABLE chunks_parted (
    id        BIGINT NOT NULL DEFAULT nextval('chunk_ids'),
    run_id    TEXT COLLATE "C" NOT NULL,
    host      TEXT COLLATE "C" NOT NULL,
    stream    BIGINT NOT NULL,
    part      BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    t_min     BIGINT NOT NULL,
    t_max     BIGINT NOT NULL,
    lines     BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    crc       BIGINT NOT NULL,
    bloom     BYTEA NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (id, t_max),
    UNIQUE (run_id, stream, part, t_max)
) PARTITION BY RANGE (t_max);
CREATE SEQUENCE log_chunk_ids;
CREATE TABLE log_chunks_parted (
    id        BIGINT NOT NULL DEFAULT nextval('log_chunk_ids'),
    source    TEXT COLLATE "C" NOT NULL,
    run_id    TEXT COLLATE "C",
    service   TEXT COLLATE "C" NOT NULL,
    host      TEXT COLLATE "C" NOT NULL,
    t_min     BIGINT NOT NULL,
    t_max     BIGINT NOT NULL,
    lines     BIGINT NOT NULL,
    raw_bytes BIGINT NOT NULL,
    crc       BIGINT NOT NULL,
    bloom     BYTEA NOT NULL,
    data      BYTEA NOT NULL,
    resource  TEXT NOT NULL,
    PRIMARY KEY (id, t_max)
) PARTITION BY RANGE (t_max);
SELECT plumb_partition('chunks_parted', 'chunks_', d)
    FROM (SELECT DISTINCT t_max - (((t_max % 86400000000000) + 86400000000000) % 86400000000000) AS d FROM chunks) days;
SELECT plumb_partition('log_chunks_parted', 'log_chunks_', d)
    FROM (SELECT DISTINCT t_max - (((t_max % 86400000000000) + 86400000000000) % 86400000000000) AS d FROM log_chunks) days;
INSERT INTO chunks_parted SELECT * FROM chunks;
INSERT INTO log_chunks_parted SELECT * FROM log_chunks;
SELECT setval('chunk_ids', coalesce((SELECT max(id) FROM chunks), 0) + 1, false);
SELECT setval('log_chunk_ids', coalesce((SELECT max(id) FROM log_chunks), 0) + 1, false);
DROP TABLE chunks;
DROP TABLE log_chunks;
ALTER TABLE chunks_parted RENAME TO chunks;
ALTER TABLE log_chunks_parted RENAME TO log_chunks;
ALTER SEQUENCE chunk_ids OWNED BY chunks.id;
ALTER SEQUENCE log_chunk_ids OWNED BY log_chunks.id;
ALTER TABLE chunks ALTER COLUMN bloom SET STORAGE EXTERNAL, ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE log_chunks ALTER COLUMN bloom SET STORAGE EXTERNAL, ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX chunks_time ON chunks (t_max);
CREATE INDEX chunks_host ON chunks (host, t_max);
CREATE INDEX chunks_unindexed ON chunks (id) WHERE octet_length(bloom) = 0;
CREATE INDEX log_chunks_run ON log_chunks (run_id, t_min) WHERE run_id IS NOT NULL;
CREATE INDEX log_chunks_source ON log_chunks (source, t_min);
CREATE INDEX log_chunks_host ON log_chunks (host, t_max);
CREATE INDEX log_chunks_time ON log_chunks (t_max);
"#,
    // 2 -> 3 (helper "benchnode"): node benchmark results (NodeBench as JSON), a
    // bounded history per node.
    r#"
CREATE TABLE node_bench (
    node     TEXT COLLATE "C" NOT NULL,
    at_ns    BIGINT NOT NULL,
    taken_ns BIGINT NOT NULL,
    bench    TEXT NOT NULL,
    PRIMARY KEY (node, at_ns)
);
CREATE INDEX node_bench_taken ON node_bench (node, taken_ns);
"#,
    // 3 -> 4: each change of a node's software fingerprint, a bounded
    // history per node.
    r#"
CREATE TABLE node_env_changes (
    node   TEXT COLLATE "C" NOT NULL,
    at_ns  BIGINT NOT NULL,
    old_fp TEXT NOT NULL,
    new_fp TEXT NOT NULL,
    PRIMARY KEY (node, at_ns)
);
CREATE INDEX node_env_changes_at ON node_env_changes (at_ns);
"#,
    // 4 -> 5: fleet-wide preflight results, the newest kept.
    r#"
CREATE TABLE preflights (
    id     TEXT COLLATE "C" PRIMARY KEY,
    at_ns  BIGINT NOT NULL,
    spec   TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX preflights_at ON preflights (at_ns);
"#,
    // 5 -> 6 (helper "nodecharts"): each node's use over time, downsampled per
    // minute and per ten minutes (plumb_store::samples).
    r#"
CREATE TABLE node_samples (
    node      TEXT COLLATE "C" NOT NULL,
    step_s    BIGINT NOT NULL,
    at_ns     BIGINT NOT NULL,
    load1     DOUBLE PRECISION NOT NULL,
    mem_used  BIGINT NOT NULL,
    mem_total BIGINT NOT NULL,
    disk_pct  DOUBLE PRECISION NOT NULL,
    disks     TEXT NOT NULL,
    PRIMARY KEY (node, step_s, at_ns)
);
"#,
    // 6 -> 7 (helper "charts"): each error
    // group's occurrences per UTC day (error_days), kept by a trigger on
    // error_events in the transaction that files them, as SQLite's are; the
    // /errors sparklines read these instead of the occurrences.
    r#"
CREATE TABLE error_days (
    fingerprint TEXT COLLATE "C" NOT NULL,
    day_ns      BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (fingerprint, day_ns)
);
INSERT INTO error_days (fingerprint, day_ns, n)
    SELECT fingerprint, at_ns - (((at_ns % 86400000000000) + 86400000000000) % 86400000000000), count(*)
    FROM error_events GROUP BY 1, 2;
CREATE FUNCTION plumb_error_events_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO error_days (fingerprint, day_ns, n)
            VALUES (NEW.fingerprint, (NEW.at_ns - (((NEW.at_ns % 86400000000000) + 86400000000000) % 86400000000000)), 1)
            ON CONFLICT (fingerprint, day_ns) DO UPDATE SET n = error_days.n + 1;
    ELSE
        UPDATE error_days SET n = n - 1
            WHERE fingerprint = OLD.fingerprint AND day_ns = (OLD.at_ns - (((OLD.at_ns % 86400000000000) + 86400000000000) % 86400000000000));
        DELETE FROM error_days
            WHERE fingerprint = OLD.fingerprint AND day_ns = (OLD.at_ns - (((OLD.at_ns % 86400000000000) + 86400000000000) % 86400000000000)) AND n <= 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER error_events_changed AFTER INSERT OR DELETE ON error_events
    FOR EACH ROW EXECUTE FUNCTION plumb_error_events_changed();
"#,
    // 7 -> 8 (helper "rerun"): each node's software-only hash, set as its
    // fingerprint arrives, which the node list compares.
    r#"
ALTER TABLE nodes ADD COLUMN software TEXT;
"#,
];

/// The schema version of the connection's schema, `None` when it holds no
/// plumb store; a schema holding other tables named like plumb's is
/// refused.
fn version(store: &PgStore) -> Result<Option<i64>> {
    let mut c = store.c()?;
    let meta = c.q1(
        "SELECT to_regclass('plumb_meta') IS NOT NULL, to_regclass('runs') IS NOT NULL",
        &[],
    )?;
    let (has_meta, has_runs): (bool, bool) = (meta.get(0), meta.get(1));
    if !has_meta {
        if has_runs {
            return Err(StoreError::Foreign {
                path: store.describe().into(),
                reason: "its schema has a `runs` table but no plumb_meta".into(),
            });
        }
        return Ok(None);
    }
    let row = c.qo(
        "SELECT value FROM plumb_meta WHERE key = 'schema_version'",
        &[],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let v: String = row.get(0);
    v.parse()
        .map(Some)
        .map_err(|_| StoreError::Corrupt(format!("schema version `{v}` is not a number")))
}

fn refuse_newer(store: &PgStore, found: i64) -> Result<()> {
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::TooNew {
            path: store.describe().into(),
            found,
            supported,
        });
    }
    Ok(())
}

/// Checks that the store exists and is not from a newer plumb.
pub(crate) fn check(store: &PgStore) -> Result<()> {
    match version(store)? {
        None => Err(StoreError::Corrupt(format!(
            "{} holds no plumb store yet: start `plumb serve --store` with this URL once to create it",
            store.describe()
        ))),
        Some(v) => refuse_newer(store, v),
    }
}

/// Creates or migrates the schema, once however many collectors start
/// together.
pub(crate) fn migrate(store: &PgStore) -> Result<()> {
    // The common case, an up-to-date store, takes no lock.
    if let Some(v) = version(store)? {
        refuse_newer(store, v)?;
        if v as usize == MIGRATIONS.len() {
            return Ok(());
        }
    }
    store
        .c()?
        .x("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])?;
    let result = (|| -> Result<()> {
        store.c()?.batch_execute(
            "CREATE TABLE IF NOT EXISTS plumb_meta (key TEXT COLLATE \"C\" PRIMARY KEY, value TEXT NOT NULL)",
        ).map_err(crate::db)?;
        loop {
            let v = version(store)?.unwrap_or(0);
            refuse_newer(store, v)?;
            let Some(step) = MIGRATIONS.get(v as usize) else {
                return Ok(());
            };
            store.tx(|tx| {
                tx.batch_execute(step).map_err(crate::db)?;
                tx.x(
                    "INSERT INTO plumb_meta (key, value) VALUES ('schema_version', $1)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&(v + 1).to_string()],
                )?;
                Ok(())
            })?;
        }
    })();
    let unlocked = store
        .c()
        .and_then(|mut c| c.x("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]));
    result?;
    unlocked?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;
    use crate::{PgConnector, Sql};

    /// A store made before chunks were partitioned keeps every chunk, and
    /// new chunks get ids after the old ones.
    #[test]
    fn a_store_made_before_day_partitions_keeps_its_chunks() {
        let url = crate::testing::fresh_store_url();
        let connector = PgConnector::new(&url).unwrap();
        let day = plumb_store::kit::DAY_NS;
        let t0 = 1_764_000_000_000_000_000i64;
        {
            let store = connector.connect(false).unwrap();
            let mut c = store.c().unwrap();
            c.batch_execute(
                "CREATE TABLE plumb_meta (key TEXT COLLATE \"C\" PRIMARY KEY, value TEXT NOT NULL)",
            )
            .unwrap();
            c.batch_execute(MIGRATIONS[0]).unwrap();
            c.batch_execute("INSERT INTO plumb_meta VALUES ('schema_version', '1')")
                .unwrap();
            for (part, t) in [(0i64, t0), (1, t0 + day), (2, t0 + 2 * day)] {
                c.x(
                    "INSERT INTO chunks (run_id, host, stream, part, first_seq, t_min, t_max,
                         lines, raw_bytes, crc, bloom, data)
                     VALUES ('r', 'h', 1, $1, $1, $2, $2, 1, 2, 3, '\\x00', '\\x01')",
                    &[&part, &t],
                )
                .unwrap();
            }
            c.x(
                "INSERT INTO log_chunks (source, service, host, t_min, t_max, lines, raw_bytes,
                     crc, bloom, data, resource)
                 VALUES ('s', 'svc', 'h', $1, $1, 1, 2, 3, '', '\\x01', '{}')",
                &[&t0],
            )
            .unwrap();
        }
        let store = connector.open().unwrap();
        let mut c = store.c().unwrap();
        let n: i64 = c.q1("SELECT count(*) FROM chunks", &[]).unwrap().get(0);
        assert_eq!(n, 3);
        let n: i64 = c.q1("SELECT count(*) FROM log_chunks", &[]).unwrap().get(0);
        assert_eq!(n, 1);
        let parts: i64 = c
            .q1(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('chunks')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(parts, 3, "one partition per day");
        let ids: Vec<i64> = c
            .q(
                "INSERT INTO chunks (run_id, host, stream, part, first_seq, t_min, t_max,
                     lines, raw_bytes, crc, bloom, data)
                 VALUES ('r2', 'h', 1, 0, 0, $1, $1, 1, 2, 3, '', '\\x01') RETURNING id",
                &[&t0],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let max_old: i64 = c
            .q1("SELECT max(id) FROM chunks WHERE run_id = 'r'", &[])
            .unwrap()
            .get(0);
        assert!(ids[0] > max_old, "{ids:?} after {max_old}");
    }
}
