//! Schema migrations, versioned from the first release.
//!
//! `PRAGMA application_id` marks the file as plumb's; `PRAGMA user_version`
//! holds the schema version. Migrations run in one transaction each and are
//! never edited once released: add a new one instead.

/// `PRAGMA application_id` of a plumb store ("plmb").
pub const APPLICATION_ID: i32 = 0x706c_6d62;

/// Each migration brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 0 -> 1: runs, tags, fingerprints, output chunks.
    r#"
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,      -- UUIDv7, hyphenated lowercase
        hexid       TEXT NOT NULL UNIQUE,  -- the same without hyphens, for prefixes
        name        TEXT NOT NULL,
        host        TEXT NOT NULL,
        state       TEXT NOT NULL,
        started_ns  INTEGER NOT NULL,
        ended_ns    INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        fingerprint TEXT,
        record      TEXT NOT NULL          -- the whole Run as JSON
    );
    CREATE INDEX runs_started ON runs(started_ns);
    CREATE INDEX runs_name ON runs(name, started_ns);
    CREATE INDEX runs_host ON runs(host, started_ns);
    CREATE INDEX runs_state ON runs(state, started_ns);
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX run_tags_kv ON run_tags(key, value);
    CREATE TABLE fingerprints (
        hash   TEXT PRIMARY KEY,
        record TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE chunks (
        id        INTEGER PRIMARY KEY,
        run_id    TEXT NOT NULL,
        host      TEXT NOT NULL,
        stream    INTEGER NOT NULL,
        part      INTEGER NOT NULL,        -- position among the stream's chunks
        first_seq INTEGER NOT NULL,
        t_min     INTEGER NOT NULL,
        t_max     INTEGER NOT NULL,
        lines     INTEGER NOT NULL,
        raw_bytes INTEGER NOT NULL,
        crc       INTEGER NOT NULL,
        bloom     BLOB NOT NULL,
        UNIQUE (run_id, stream, part)
    );
        CREATE INDEX chunks_time ON chunks(t_max);
    CREATE INDEX chunks_host ON chunks(host, t_max);
    CREATE TABLE chunk_data (
        id   INTEGER PRIMARY KEY,          -- = chunks.id
        data BLOB NOT NULL
    );
    "#,
    // 1 -> 2 (helper "otlp"): OpenTelemetry telemetry: log_chunks,
    // log_chunk_data, log_seen, spans, metric_points.
    r#"
    CREATE TABLE log_chunks (
        id        INTEGER PRIMARY KEY,
        source    TEXT NOT NULL,           -- the run id, or service@host
        run_id    TEXT,                    -- the plumb run, when plumb.run.id was given
        service   TEXT NOT NULL,
        host      TEXT NOT NULL,
        t_min     INTEGER NOT NULL,
        t_max     INTEGER NOT NULL,
        lines     INTEGER NOT NULL,
        raw_bytes INTEGER NOT NULL,
        crc       INTEGER NOT NULL,
        bloom     BLOB NOT NULL,
        resource  TEXT NOT NULL            -- the sender's resource attributes, JSON
    );
    CREATE INDEX log_chunks_run ON log_chunks(run_id, t_min) WHERE run_id IS NOT NULL;
    CREATE INDEX log_chunks_source ON log_chunks(source, t_min);
    CREATE INDEX log_chunks_host ON log_chunks(host, t_max);
    CREATE TABLE log_chunk_data (
        id   INTEGER PRIMARY KEY,          -- = log_chunks.id
        data BLOB NOT NULL
    );
    CREATE TABLE log_seen (
        t INTEGER NOT NULL,                -- record time, ns
        h INTEGER NOT NULL,                -- hash of the record's fields
        PRIMARY KEY (t, h)
    ) WITHOUT ROWID;
    CREATE TABLE spans (
        trace_id       TEXT NOT NULL,
        span_id        TEXT NOT NULL,
        parent_span_id TEXT,
        run_id         TEXT,
        service        TEXT NOT NULL,
        host           TEXT NOT NULL,
        name           TEXT NOT NULL,
        start_ns       INTEGER NOT NULL,
        end_ns         INTEGER NOT NULL,
        status         INTEGER NOT NULL,   -- 0 unset, 1 ok, 2 error
        record         TEXT NOT NULL,      -- the whole span as JSON
        PRIMARY KEY (trace_id, span_id)
    ) WITHOUT ROWID;
    CREATE INDEX spans_run ON spans(run_id, start_ns) WHERE run_id IS NOT NULL;
    CREATE INDEX spans_start ON spans(start_ns);
    CREATE TABLE metric_points (
        name    TEXT NOT NULL,
        series  INTEGER NOT NULL,          -- hash of attributes and resource
        time_ns INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        value   REAL NOT NULL,
        run_id  TEXT,
        service TEXT NOT NULL,
        host    TEXT NOT NULL,
        record  TEXT NOT NULL,             -- the whole point as JSON
        PRIMARY KEY (name, series, time_ns)
    ) WITHOUT ROWID;
    CREATE INDEX metric_points_time ON metric_points(time_ns);
    "#,
    // 2 -> 3 (helper "collector"): collector access tokens (tokens),
    // stored as SHA-256 hashes only.
    r#"
    CREATE TABLE tokens (
        hash       TEXT PRIMARY KEY,       -- SHA-256 of the token, lowercase hex
        role       TEXT NOT NULL,          -- agent, viewer or admin
        name       TEXT NOT NULL,          -- a label for humans
        created_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3 -> 4 (helper "ship"): nodes (last report, failure-detector window,
    // state) and node_transitions (every state change with its time).
    r#"
    CREATE TABLE nodes (
        name         TEXT PRIMARY KEY,
        state        TEXT NOT NULL,        -- up, busy, suspect, down
        since_ns     INTEGER NOT NULL,     -- when it entered that state
        last_seen_ns INTEGER NOT NULL,     -- last heartbeat, collector clock
        report       TEXT NOT NULL,        -- the last NodeReport as JSON
        intervals    TEXT NOT NULL,        -- recent inter-arrival ms, JSON array
        fingerprint  TEXT                  -- hash of the last fingerprint
    ) WITHOUT ROWID;
    CREATE TABLE node_transitions (
        id         INTEGER PRIMARY KEY,
        node       TEXT NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        at_ns      INTEGER NOT NULL,
        phi        REAL NOT NULL
    );
    CREATE INDEX node_transitions_node ON node_transitions(node, id);
    "#,
    // 4 -> 5 (helper "insights"): error groups (error_groups, error_events,
    // error_hosts, error_runs) and the queue of failed runs to group
    // (error_queue, filled by triggers on runs, drained in the background).
    r#"
    CREATE TABLE error_groups (
        fingerprint   TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        message       TEXT NOT NULL,       -- of the first occurrence
        language      TEXT NOT NULL,
        sample        TEXT NOT NULL,       -- an Exception as JSON, frames included
        first_seen_ns INTEGER NOT NULL,
        last_seen_ns  INTEGER NOT NULL,
        count         INTEGER NOT NULL,
        runs          INTEGER NOT NULL,    -- distinct runs
        resolved_ns   INTEGER,             -- set while resolved
        regressed_ns  INTEGER              -- the last occurrence after a resolution
    ) WITHOUT ROWID;
    CREATE INDEX error_groups_last ON error_groups(last_seen_ns);
    CREATE TABLE error_events (
        key         TEXT PRIMARY KEY,      -- run:<id> or otlp:<time>:<hash>, filed once
        fingerprint TEXT NOT NULL,
        run_id      TEXT,
        host        TEXT NOT NULL,
        at_ns       INTEGER NOT NULL,
        source      TEXT NOT NULL          -- run or otlp
    ) WITHOUT ROWID;
    CREATE INDEX error_events_group ON error_events(fingerprint, at_ns);
    CREATE TABLE error_hosts (
        fingerprint TEXT NOT NULL,
        host        TEXT NOT NULL,
        count       INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, host)
    ) WITHOUT ROWID;
    CREATE TABLE error_runs (
        fingerprint TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        PRIMARY KEY (fingerprint, run_id)
    ) WITHOUT ROWID;
    CREATE TABLE error_queue (
        id     INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE
    );
    CREATE TRIGGER runs_error_queue_insert AFTER INSERT ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted')
        BEGIN INSERT OR IGNORE INTO error_queue (run_id) VALUES (new.id); END;
    CREATE TRIGGER runs_error_queue_update AFTER UPDATE OF state, record ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted')
        BEGIN INSERT OR IGNORE INTO error_queue (run_id) VALUES (new.id); END;
    INSERT OR IGNORE INTO error_queue (run_id)
        SELECT id FROM runs WHERE state IN ('failed', 'killed', 'evicted');
    "#,
    // (helper "alerts"): alerts (every alert's state by fingerprint: since,
    // fired, resolved, last notified), alert_rules (the effective rules as
    // JSON), disk_samples (per node and mount, for the disk-fill prediction).
    r#"
    CREATE TABLE alerts (
        fingerprint      TEXT PRIMARY KEY,  -- hash of the sorted labels
        name             TEXT NOT NULL,     -- alertname
        severity         TEXT NOT NULL,
        state            TEXT NOT NULL,     -- pending, firing, resolved
        labels           TEXT NOT NULL,     -- JSON object
        annotations      TEXT NOT NULL,     -- JSON [summary, description]
        active_ns        INTEGER NOT NULL,  -- condition holds since
        starts_ns        INTEGER NOT NULL,  -- fired at (active_ns while pending)
        ends_ns          INTEGER,           -- resolved at
        last_notified_ns INTEGER,
        notified_state   TEXT               -- what the last notification said
    ) WITHOUT ROWID;
    CREATE INDEX alerts_state ON alerts(state, ends_ns);
    CREATE TABLE alert_rules (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        rules TEXT NOT NULL
    );
    CREATE TABLE disk_samples (
        node      TEXT NOT NULL,
        mount     TEXT NOT NULL,
        t_ns      INTEGER NOT NULL,         -- collector clock at arrival
        available INTEGER NOT NULL,
        total     INTEGER NOT NULL,
        PRIMARY KEY (node, mount, t_ns)
    ) WITHOUT ROWID;
    CREATE INDEX disk_samples_time ON disk_samples(t_ns);
    "#,
    // 6 -> 7: runs_name also covers state and ended_ns, so a name's duration
    // statistics (p50/p95, slow runs) are read from the index alone instead
    // of one table row, with its whole JSON record, per past run.
    r#"
    DROP INDEX runs_name;
    CREATE INDEX runs_name ON runs(name, started_ns, state, ended_ns);
    "#,
    // 7 -> 8 (helper "sec"): dashboard login sessions, stored as SHA-256
    // hashes of their ids, each bound to the token it was opened with and
    // deleted with it.
    r#"
    CREATE TABLE sessions (
        hash       TEXT PRIMARY KEY,       -- SHA-256 of the session id, lowercase hex
        token_hash TEXT NOT NULL,          -- tokens.hash of the token that opened it
        created_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_token ON sessions(token_hash);
    "#,
    // 8 -> 9 (helper "clock"): clock_estimates, what each node's agent
    // measured of its clock against the collector's, one row per probe,
    // kept for a day per node (clock.rs).
    r#"
    CREATE TABLE clock_estimates (
        node        TEXT NOT NULL,
        latest_ns   INTEGER NOT NULL,      -- the probe's time, node clock
        received_ns INTEGER NOT NULL,      -- arrival, collector clock
        at_ns       INTEGER NOT NULL,      -- the chosen sample's time, node clock
        offset_ns   INTEGER NOT NULL,      -- node clock minus collector clock
        error_ns    INTEGER NOT NULL,
        delay_ns    INTEGER NOT NULL,
        drift_ppm   REAL,
        samples     INTEGER NOT NULL,
        PRIMARY KEY (node, latest_ns)
    ) WITHOUT ROWID;
    CREATE INDEX clock_estimates_received ON clock_estimates(node, received_ns);
    "#,
    // 9 -> 10: a timed-out run is a failure like a killed one, so it is
    // queued for error grouping too (the triggers of 4 -> 5, widened).
    r#"
    DROP TRIGGER runs_error_queue_insert;
    DROP TRIGGER runs_error_queue_update;
    CREATE TRIGGER runs_error_queue_insert AFTER INSERT ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted', 'timed-out')
        BEGIN INSERT OR IGNORE INTO error_queue (run_id) VALUES (new.id); END;
    CREATE TRIGGER runs_error_queue_update AFTER UPDATE OF state, record ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted', 'timed-out')
        BEGIN INSERT OR IGNORE INTO error_queue (run_id) VALUES (new.id); END;
    INSERT OR IGNORE INTO error_queue (run_id)
        SELECT id FROM runs WHERE state = 'timed-out';
    "#,
    // 10 -> 11 (helper "fleetstack"): stack snapshots attached to a run
    // after it was recorded (`plumb stack` through the collector, the
    // automatic evidence of a slow run). They live beside the run's record,
    // not in it, because the recorder's final record replaces the record
    // whole and would drop them.
    r#"
    CREATE TABLE run_snapshots (
        run_id   TEXT NOT NULL,
        taken_ns INTEGER NOT NULL,
        seq      INTEGER NOT NULL,         -- tie-breaker among equal times
        snapshot TEXT NOT NULL,            -- StackSnapshot as JSON
        PRIMARY KEY (run_id, taken_ns, seq)
    ) WITHOUT ROWID;
    "#,
    // 11 -> 12 (helper "throttle"): fleet-wide throttle leases
    // (throttles.rs): a throttle's N while anyone holds it or waits, and
    // one row per holder or waiter, which expires unless renewed.
    r#"
    CREATE TABLE throttles (
        name  TEXT PRIMARY KEY,
        slots INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE throttle_leases (
        name        TEXT NOT NULL,
        holder      TEXT NOT NULL,
        seq         INTEGER NOT NULL,      -- order of arrival in the throttle (FIFO)
        enqueued_ns INTEGER NOT NULL,      -- collector clock
        granted_ns  INTEGER,               -- NULL while waiting
        expires_ns  INTEGER NOT NULL,
        run_id      TEXT,
        node        TEXT NOT NULL,
        pid         INTEGER,
        PRIMARY KEY (name, holder)
    ) WITHOUT ROWID;
    CREATE INDEX throttle_leases_seq ON throttle_leases(name, seq);
    CREATE INDEX throttle_leases_expires ON throttle_leases(expires_ns);
    "#,
    // 12 -> 13 (helper "charts"): runs per 5-minute bucket by state, per
    // name (run_counts) and for every name (run_counts_all), kept by
    // triggers in the transaction that writes the run, so a replaced run
    // moves from its old state's count to its new one. The dashboard's
    // runs-over-time chart reads these instead of the runs. Also: the
    // error-queue triggers no longer fail a failed run written twice.
    r#"
    CREATE TABLE run_counts (
        name      TEXT NOT NULL,
        bucket_ns INTEGER NOT NULL,        -- started_ns rounded down to 5 minutes
        state     TEXT NOT NULL,
        n         INTEGER NOT NULL,
        PRIMARY KEY (name, bucket_ns, state)
    ) WITHOUT ROWID;
    CREATE TABLE run_counts_all (
        bucket_ns INTEGER NOT NULL,
        state     TEXT NOT NULL,
        n         INTEGER NOT NULL,
        PRIMARY KEY (bucket_ns, state)
    ) WITHOUT ROWID;
    INSERT INTO run_counts (name, bucket_ns, state, n)
        SELECT name, (started_ns - (((started_ns % 300000000000) + 300000000000) % 300000000000)), state, count(*) FROM runs GROUP BY 1, 2, 3;
    INSERT INTO run_counts_all (bucket_ns, state, n)
        SELECT bucket_ns, state, sum(n) FROM run_counts GROUP BY 1, 2;
    -- The error-queue triggers of 9 -> 10 used INSERT OR IGNORE, but the
    -- outer statement's conflict policy (the upsert of a run: ABORT)
    -- overrides a trigger's, so a failed run written twice before the
    -- queue drained failed with a UNIQUE error. NOT EXISTS instead.
    DROP TRIGGER runs_error_queue_insert;
    DROP TRIGGER runs_error_queue_update;
    CREATE TRIGGER runs_error_queue_insert AFTER INSERT ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted', 'timed-out')
        BEGIN INSERT INTO error_queue (run_id) SELECT new.id
            WHERE NOT EXISTS (SELECT 1 FROM error_queue WHERE run_id = new.id); END;
    CREATE TRIGGER runs_error_queue_update AFTER UPDATE OF state, record ON runs
        WHEN new.state IN ('failed', 'killed', 'evicted', 'timed-out')
        BEGIN INSERT INTO error_queue (run_id) SELECT new.id
            WHERE NOT EXISTS (SELECT 1 FROM error_queue WHERE run_id = new.id); END;
    CREATE TRIGGER runs_counts_insert AFTER INSERT ON runs BEGIN
        INSERT INTO run_counts (name, bucket_ns, state, n)
            VALUES (new.name, (new.started_ns - (((new.started_ns % 300000000000) + 300000000000) % 300000000000)), new.state, 1)
            ON CONFLICT (name, bucket_ns, state) DO UPDATE SET n = n + 1;
        INSERT INTO run_counts_all (bucket_ns, state, n)
            VALUES ((new.started_ns - (((new.started_ns % 300000000000) + 300000000000) % 300000000000)), new.state, 1)
            ON CONFLICT (bucket_ns, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER runs_counts_update AFTER UPDATE OF name, state, started_ns ON runs
        WHEN old.name IS NOT new.name OR old.state IS NOT new.state
          OR (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) IS NOT (new.started_ns - (((new.started_ns % 300000000000) + 300000000000) % 300000000000))
    BEGIN
        UPDATE run_counts SET n = n - 1
            WHERE name = old.name AND bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state;
        DELETE FROM run_counts
            WHERE name = old.name AND bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state AND n <= 0;
        UPDATE run_counts_all SET n = n - 1
            WHERE bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state;
        DELETE FROM run_counts_all
            WHERE bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state AND n <= 0;
        INSERT INTO run_counts (name, bucket_ns, state, n)
            VALUES (new.name, (new.started_ns - (((new.started_ns % 300000000000) + 300000000000) % 300000000000)), new.state, 1)
            ON CONFLICT (name, bucket_ns, state) DO UPDATE SET n = n + 1;
        INSERT INTO run_counts_all (bucket_ns, state, n)
            VALUES ((new.started_ns - (((new.started_ns % 300000000000) + 300000000000) % 300000000000)), new.state, 1)
            ON CONFLICT (bucket_ns, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER runs_counts_delete AFTER DELETE ON runs BEGIN
        UPDATE run_counts SET n = n - 1
            WHERE name = old.name AND bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state;
        DELETE FROM run_counts
            WHERE name = old.name AND bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state AND n <= 0;
        UPDATE run_counts_all SET n = n - 1
            WHERE bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state;
        DELETE FROM run_counts_all
            WHERE bucket_ns = (old.started_ns - (((old.started_ns % 300000000000) + 300000000000) % 300000000000)) AND state = old.state AND n <= 0;
    END;
    "#,
    // 13 -> 14: leases (one row per named lease: work that one collector
    // at a time does when several share the store).
    r#"
    CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 14 -> 15 (helper "health"): node hardware health as the agents send
    // it (NodeHealth as JSON), a bounded history per node (health.rs).
    r#"
    CREATE TABLE node_health (
        node   TEXT NOT NULL,
        at_ns  INTEGER NOT NULL,           -- arrival, collector clock
        health TEXT NOT NULL,              -- NodeHealth as JSON
        PRIMARY KEY (node, at_ns)
    ) WITHOUT ROWID;
    "#,
    // 15 -> 16: retention. Log chunks by time (to find the old ones
    // without reading every row), and store_meta for the output horizon
    // (`retention.output_before_ns`: what is older was dropped).
    r#"
    CREATE INDEX log_chunks_time ON log_chunks(t_max);
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 16 -> 17 (helper "benchnode"): node benchmark results (NodeBench as
    // JSON), a bounded history per node (bench.rs).
    r#"
    CREATE TABLE node_bench (
        node     TEXT NOT NULL,
        at_ns    INTEGER NOT NULL,         -- arrival, collector clock
        taken_ns INTEGER NOT NULL,         -- when it started, node clock
        bench    TEXT NOT NULL,            -- NodeBench as JSON
        PRIMARY KEY (node, at_ns)
    ) WITHOUT ROWID;
    CREATE INDEX node_bench_taken ON node_bench (node, taken_ns);
    "#,
    // 17 -> 18: each change of a node's software fingerprint (the hashes
    // before and after), a bounded history per node (nodes.rs), for the
    // EnvironmentChanged alert and the node page.
    r#"
    CREATE TABLE node_env_changes (
        node   TEXT NOT NULL,
        at_ns  INTEGER NOT NULL,           -- arrival of the heartbeat
        old_fp TEXT NOT NULL,
        new_fp TEXT NOT NULL,
        PRIMARY KEY (node, at_ns)
    ) WITHOUT ROWID;
    "#,
    // 18 -> 19: fleet-wide preflight results (`POST /api/v1/preflight`),
    // the spec and every node's outcomes as JSON, the newest kept.
    r#"
    CREATE TABLE preflights (
        id     TEXT PRIMARY KEY,
        at_ns  INTEGER NOT NULL,
        spec   TEXT NOT NULL,
        result TEXT NOT NULL               -- FleetPreflight as JSON
    );
    CREATE INDEX preflights_at ON preflights (at_ns);
    "#,
    // 19 -> 20 (helper "nodecharts"): each node's use over time,
    // downsampled per minute and per ten minutes (samples.rs).
    r#"
    CREATE TABLE node_samples (
        node      TEXT NOT NULL,
        step_s    INTEGER NOT NULL,        -- 60 or 600
        at_ns     INTEGER NOT NULL,        -- interval start, collector clock
        load1     REAL NOT NULL,           -- highest 1-minute load
        mem_used  INTEGER NOT NULL,        -- highest memory in use, bytes
        mem_total INTEGER NOT NULL,
        disk_pct  REAL NOT NULL,           -- the fullest disk's use, percent
        disks     TEXT NOT NULL,           -- [DiskUse] as JSON
        PRIMARY KEY (node, step_s, at_ns)
    ) WITHOUT ROWID;
    "#,
    // 20 -> 21 (helper "charts"): each
    // error group's occurrences per UTC day (error_days), kept by triggers
    // on error_events in the transaction that files them; the /errors
    // sparklines read these instead of the occurrences. Plain UPDATE and
    // INSERT ... WHERE NOT EXISTS, never an upsert: the outer statement
    // (INSERT OR IGNORE) would impose its conflict policy on the trigger's.
    r#"
    CREATE TABLE error_days (
        fingerprint TEXT NOT NULL,
        day_ns      INTEGER NOT NULL,      -- start of the UTC day
        n           INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, day_ns)
    ) WITHOUT ROWID;
    INSERT INTO error_days (fingerprint, day_ns, n)
        SELECT fingerprint, (at_ns - (((at_ns % 86400000000000) + 86400000000000) % 86400000000000)), count(*)
        FROM error_events GROUP BY 1, 2;
    CREATE TRIGGER error_days_insert AFTER INSERT ON error_events BEGIN
        INSERT INTO error_days (fingerprint, day_ns, n)
            SELECT new.fingerprint, (new.at_ns - (((new.at_ns % 86400000000000) + 86400000000000) % 86400000000000)), 0
            WHERE NOT EXISTS (SELECT 1 FROM error_days
                WHERE fingerprint = new.fingerprint AND day_ns = (new.at_ns - (((new.at_ns % 86400000000000) + 86400000000000) % 86400000000000)));
        UPDATE error_days SET n = n + 1
            WHERE fingerprint = new.fingerprint AND day_ns = (new.at_ns - (((new.at_ns % 86400000000000) + 86400000000000) % 86400000000000));
    END;
    CREATE TRIGGER error_days_delete AFTER DELETE ON error_events BEGIN
        UPDATE error_days SET n = n - 1
            WHERE fingerprint = old.fingerprint AND day_ns = (old.at_ns - (((old.at_ns % 86400000000000) + 86400000000000) % 86400000000000));
        DELETE FROM error_days
            WHERE fingerprint = old.fingerprint AND day_ns = (old.at_ns - (((old.at_ns % 86400000000000) + 86400000000000) % 86400000000000)) AND n <= 0;
    END;
    "#,
    // 21 -> 22 (helper "rerun"): each node's software-only hash
    // (plumb_model::env::software_hash), set as its fingerprint arrives,
    // which the node list compares (hardware is not drift).
    r#"
    ALTER TABLE nodes ADD COLUMN software TEXT;
    "#,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Runs;
    use crate::dash::RunQuery;
    use plumb_model::Timestamp;

    /// A store made before the runs rollup (schema 12) gets it filled from
    /// its runs when it is opened, and keeps it from then on.
    #[test]
    fn an_older_store_gets_its_counts_from_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            for m in &MIGRATIONS[..12] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 12).unwrap();
            let b = 300_000_000_000i64;
            for (i, (name, state, at)) in [
                ("a", "succeeded", 10 * b + 1),
                ("a", "succeeded", 10 * b + 2),
                ("a", "failed", 10 * b + 3),
                ("b", "running", 11 * b),
                ("b", "succeeded", 40 * b + 7),
            ]
            .iter()
            .enumerate()
            {
                conn.execute(
                    "INSERT INTO runs (id, hexid, name, host, state, started_ns, record) VALUES (?1, ?2, ?3, 'h', ?4, ?5, '{}')",
                    rusqlite::params![format!("id-{i}"), format!("{i:032x}"), name, state, at],
                )
                .unwrap();
            }
        }
        let store = crate::Store::open(dir.path()).unwrap();
        let b = 300_000_000_000i64;
        let counts = store
            .run_counts(
                &RunQuery::default(),
                Timestamp::from_nanos(0),
                Timestamp::from_nanos(100 * b),
            )
            .unwrap();
        let mut got: Vec<(i64, &str, u64)> = counts
            .rows
            .iter()
            .map(|r| (r.bucket_ns, r.state.as_str(), r.n))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (10 * b, "failed", 1),
                (10 * b, "succeeded", 2),
                (11 * b, "running", 1),
                (40 * b, "succeeded", 1),
            ]
        );
        let a = store
            .run_counts(
                &RunQuery {
                    name: Some("a".into()),
                    ..Default::default()
                },
                Timestamp::from_nanos(0),
                Timestamp::from_nanos(100 * b),
            )
            .unwrap();
        assert_eq!(a.rows.iter().map(|r| r.n).sum::<u64>(), 3);
    }

    /// A store made before the error rollup (schema 20) gets its per-day
    /// counts from its occurrences when it is opened (negative times too).
    #[test]
    fn an_older_store_gets_its_error_days_from_its_occurrences() {
        use crate::backend::Insights;
        const DAY: i64 = 86_400_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            for m in &MIGRATIONS[..20] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 20).unwrap();
            for (k, fp, at) in [
                ("a", "f1", 3 * DAY + 1),
                ("b", "f1", 3 * DAY + 2),
                ("c", "f1", 5 * DAY),
                ("d", "f2", -1),
            ] {
                conn.execute(
                    "INSERT INTO error_events (key, fingerprint, run_id, host, at_ns, source) VALUES (?1, ?2, NULL, 'h', ?3, 'otlp')",
                    rusqlite::params![k, fp, at],
                )
                .unwrap();
            }
        }
        let store = crate::Store::open(dir.path()).unwrap();
        let mut got = store
            .error_day_counts(
                &["f1".to_string(), "f2".to_string()],
                Timestamp::from_nanos(-DAY),
                10,
            )
            .unwrap();
        got.sort();
        let day = |d: i64| Timestamp::from_nanos(d * DAY);
        assert_eq!(
            got,
            vec![
                ("f1".to_string(), day(3), 2),
                ("f1".to_string(), day(5), 1),
                ("f2".to_string(), day(-1), 1),
            ]
        );
    }
}
