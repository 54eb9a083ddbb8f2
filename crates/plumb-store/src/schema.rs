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
];
