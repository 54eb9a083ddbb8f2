//! Telemetry from instrumented applications: OTLP log records, spans and
//! metric points.
//!
//! Log records are by far the most numerous, so they are stored the way run
//! output is: one human-readable line per record (see
//! [`LogRecord::write_line`]), packed into compressed, checksummed chunks
//! with a word filter each ([`crate::chunk`] format), in `log_chunks` /
//! `log_chunk_data`. A chunk holds the records of one source from one ingest
//! request; its source is the plumb run when the records carry
//! `plumb.run.id`, else `service@host`. Search scans chunk filters exactly as
//! it does for output, so `plumb search` finds log lines too.
//!
//! Ingest is split in two so that the writer thread does little: [`prepare_logs`]
//! renders, hashes, compresses and filters a request's records (any thread,
//! in parallel), and [`Store::put_prepared_logs`] writes many prepared
//! requests in one transaction. Each record's identity is its time and a hash
//! of its own fields ([`LogRecord::content_hash`]); `log_seen` remembers every
//! identity stored, so a retried request, however re-batched, stores nothing
//! twice. In the common case nothing is a duplicate and the prepared chunk is
//! written as is; otherwise the chunk is rebuilt from the new records only.
//!
//! Spans (fewer, richer) are rows keyed by trace and span id with the whole
//! span as JSON; metric points are rows keyed by name, series and time.

use crate::bloom::{BLOCK_BYTES, block_index, block_may_contain};
use crate::chunk::{self, ReadMark, SealedChunk};
use crate::error::{Result, StoreError};
use crate::matcher::Matcher;
use crate::query::SearchOptions;
use crate::{Store, kit};
use plumb_model::telemetry::{Hit, LogBatch, LogLine, MetricPoint, Source, Span, TimeText, Trace};
use plumb_model::{Stream, Timestamp, Uuid};
use rusqlite::{MAIN_DB, OptionalExtension, params, params_from_iter, types::Value};

/// The stream number written into log chunks' own headers (the chunk
/// format has the field). It has always been 2 and stays so, so chunks
/// stored by any version read alike; it means nothing for log records,
/// which are their own kind ([`Kind::Log`]) wherever they are shown.
const LOG_CHUNK_STREAM: Stream = Stream::Stderr;

/// One source's records from one request, rendered and encoded.
#[derive(Debug, Clone)]
pub struct PreparedGroup {
    /// The source key: the run id, or `service@host`.
    pub source: String,
    /// The plumb run, when the records named one.
    pub run_id: Option<Uuid>,
    /// The service.
    pub service: String,
    /// The host.
    pub host: String,
    /// The sender's resource attributes, JSON.
    pub resource: String,
    /// Identity of each record: (time ns, content hash).
    pub keys: Vec<(i64, i64)>,
    /// One mark per record: where its line starts, and its time.
    pub marks: Vec<ReadMark>,
    /// The rendered lines.
    pub raw: Vec<u8>,
    /// The lines encoded as one chunk.
    pub chunk: SealedChunk,
}

/// Log records rendered and encoded, ready for [`Store::put_prepared_logs`].
#[derive(Debug, Clone, Default)]
pub struct PreparedLogs {
    groups: Vec<PreparedGroup>,
}

impl PreparedLogs {
    /// The groups: one source's records from one request each.
    pub fn groups(&self) -> &[PreparedGroup] {
        &self.groups
    }

    /// Number of records.
    pub fn records(&self) -> usize {
        self.groups.iter().map(|g| g.keys.len()).sum()
    }

    /// How many compressed chunks the records are stored as.
    pub fn chunks(&self) -> usize {
        self.groups.len()
    }

    /// Raw bytes of the rendered lines.
    pub fn raw_bytes(&self) -> usize {
        self.groups.iter().map(|g| g.raw.len()).sum()
    }
}

/// How many records an ingest stored and how many it had already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Newly stored.
    pub stored: usize,
    /// Already stored before (retries), skipped.
    pub duplicates: usize,
}

impl std::ops::AddAssign for Ingested {
    fn add_assign(&mut self, o: Ingested) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
    }
}

/// Renders, hashes and encodes log batches (CPU only, no store access).
/// Records of one source go into chunks of at most about
/// [`chunk::CHUNK_TARGET`] raw bytes.
pub fn prepare_logs(batches: &[LogBatch]) -> PreparedLogs {
    let mut groups = Vec::new();
    let mut times = TimeText::default();
    for batch in batches {
        if batch.records.is_empty() {
            continue;
        }
        let source = &batch.source;
        let source_hash = source.hash();
        let resource = serde_json::to_string(&source.resource).expect("attributes serialize");
        let mut keys = Vec::new();
        let mut marks = Vec::new();
        // Lines are rendered straight into the chunk's text: no copy.
        let mut raw = String::with_capacity(batch.records.len() * 300);
        for r in &batch.records {
            marks.push(ReadMark {
                offset: raw.len() as u32,
                seq: marks.len() as u64,
                time: r.time,
            });
            r.write_line_with(source, &mut times, &mut raw);
            raw.push('\n');
            keys.push((r.time.as_nanos(), r.content_hash(source_hash) as i64));
            if raw.len() >= chunk::CHUNK_TARGET {
                groups.push(group(
                    source,
                    &resource,
                    std::mem::take(&mut keys),
                    std::mem::take(&mut marks),
                    std::mem::take(&mut raw).into_bytes(),
                ));
            }
        }
        if !keys.is_empty() {
            groups.push(group(source, &resource, keys, marks, raw.into_bytes()));
        }
    }
    PreparedLogs { groups }
}

fn group(
    source: &Source,
    resource: &str,
    keys: Vec<(i64, i64)>,
    marks: Vec<ReadMark>,
    raw: Vec<u8>,
) -> PreparedGroup {
    let chunk = chunk::encode(LOG_CHUNK_STREAM, &marks, &raw);
    PreparedGroup {
        source: source.key(),
        run_id: source.run_id,
        service: source.service.clone(),
        host: source.host.clone(),
        resource: resource.to_owned(),
        keys,
        marks,
        raw,
        chunk,
    }
}

impl Store {
    fn logs_where(&self, cond: &str, arg: String, limit: usize) -> Result<Vec<LogLine>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT c.id, c.source, c.run_id, c.crc, d.data, c.service, c.host FROM log_chunks c
             JOIN log_chunk_data d ON d.id = c.id WHERE c.{cond} ORDER BY c.t_min, c.id"
        ))?;
        let mut rows = st.query([arg])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (id, source, run): (i64, String, Option<String>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            let crc = r.get::<_, i64>(3)? as u32;
            let data: Vec<u8> = r.get(4)?;
            let (service, host): (String, String) = (r.get(5)?, r.get(6)?);
            let src = kit::LogSource {
                source,
                run_id: run.and_then(|s| Uuid::parse_str(&s).ok()),
                service,
                host,
            };
            let d = decode_log_chunk(id, &data, crc)?;
            if kit::log_lines(&d, &src, None, limit, &mut out) {
                return Ok(out);
            }
        }
        Ok(out)
    }

    fn spans_where(&self, cond: &str, arg: String) -> Result<Vec<Span>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT trace_id, span_id, record FROM spans WHERE {cond} ORDER BY start_ns, span_id"
        ))?;
        let rows = st.query_map([arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (t, s, json) = row?;
            out.push(
                serde_json::from_str(&json).map_err(|source| StoreError::Json {
                    id: format!("span {t}/{s}"),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Moves everything in the write-ahead log into the database file and
    /// truncates the log (for measuring the store's size on disk).
    pub fn checkpoint_wal(&self) -> Result<()> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Log lines containing `opts.text`, newest chunks first, appended to
    /// `hits` until `opts.limit` hits in all. Called by [`Store::search`].
    pub(crate) fn search_logs(
        &self,
        opts: &SearchOptions,
        matcher: &Matcher,
        hits: &mut Vec<Hit>,
    ) -> Result<()> {
        if opts.limit > 0 && hits.len() >= opts.limit {
            return Ok(());
        }
        let words = matcher.required_words();
        let mut sql = String::from(
            "SELECT id, source, run_id, host, crc, length(bloom), service FROM log_chunks WHERE 1=1",
        );
        let mut args: Vec<Value> = Vec::new();
        crate::query::common_filters(opts, "t_max", "t_min", &mut sql, &mut args);
        sql.push_str(" ORDER BY id DESC");
        let mut st = self.conn().prepare(&sql)?;
        let metas = st.query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)? as u32,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
        let mut block = [0u8; BLOCK_BYTES];
        'chunks: for row in metas {
            let (id, source, run, host, crc, bloom_len, service) = row?;
            let nblocks = bloom_len as usize / BLOCK_BYTES;
            if nblocks > 0 && nblocks.is_power_of_two() {
                // As for output: read only the one block each word selects.
                match blob.as_mut() {
                    Some(b) => b.reopen(id)?,
                    None => {
                        blob = Some(self.conn().blob_open(
                            MAIN_DB,
                            c"log_chunks",
                            c"bloom",
                            id,
                            true,
                        )?);
                    }
                }
                let b = blob.as_ref().expect("opened above");
                for h in words {
                    b.read_at_exact(&mut block, block_index(*h, nblocks) * BLOCK_BYTES)?;
                    if !block_may_contain(&block, *h) {
                        continue 'chunks;
                    }
                }
            }
            let data: Vec<u8> = self.conn().query_row(
                "SELECT data FROM log_chunk_data WHERE id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let d = decode_log_chunk(id, &data, crc)?;
            // Records sent from outside any run belong to none: no made-up
            // run id stands in for their source.
            let src = kit::LogSource {
                source,
                run_id: run.and_then(|s| Uuid::parse_str(&s).ok()),
                service,
                host,
            };
            let full = kit::log_hits(&d, &src, opts, matcher, hits);
            if full {
                break 'chunks;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Spans whose [`Span::search_line`] matches, newest first, appended
    /// to `hits` until `opts.limit` hits in all. Called by
    /// [`Store::search`]. Each candidate span's line is built from its
    /// stored record: spans are far fewer than log lines, and the same
    /// [`Matcher`] then means the same thing for all three kinds.
    pub(crate) fn search_spans(
        &self,
        opts: &SearchOptions,
        matcher: &Matcher,
        hits: &mut Vec<Hit>,
    ) -> Result<()> {
        if opts.limit > 0 && hits.len() >= opts.limit {
            return Ok(());
        }
        let mut sql = String::from("SELECT trace_id, span_id, record FROM spans WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        crate::query::common_filters(opts, "start_ns", "start_ns", &mut sql, &mut args);
        sql.push_str(" ORDER BY start_ns DESC, trace_id, span_id");
        let mut st = self.conn().prepare(&sql)?;
        let mut rows = st.query(params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let (t, s, json): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let span: Span = serde_json::from_str(&json).map_err(|source| StoreError::Json {
                id: format!("span {t}/{s}"),
                source,
            })?;
            if let Some(hit) = kit::span_hit(&span, matcher) {
                hits.push(hit);
                if opts.limit > 0 && hits.len() >= opts.limit {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Rows per `log_seen` insert statement: many rows per statement spare
/// SQLite a bind-step-reset round per record, which was most of the
/// writer's time. The smaller sizes take the rest of a group.
const SEEN_ROWS: [usize; 3] = [256, 16, 1];

/// Records the identities in `log_seen` and says which were new.
///
/// The common case is that none was seen before, and plain multi-row
/// `INSERT OR IGNORE` statements prove it by their change counts alone.
/// `RETURNING` would name the rows inserted, but SQLite buffers returned
/// rows in a temporary table, which doubled the cost of the writer's
/// busiest statement; so it is only used, after rolling the plain inserts
/// back, when some identity was already there (a retry) or repeats.
fn mark_seen(tx: &rusqlite::Transaction<'_>, keys: &[(i64, i64)]) -> Result<Vec<bool>> {
    tx.execute_batch("SAVEPOINT log_seen")?;
    let mut inserted = 0;
    let mut at = 0;
    while at < keys.len() {
        let rows = seen_rows(keys.len() - at);
        let slice = &keys[at..at + rows];
        let mut st = tx.prepare_cached(&seen_sql(rows, false))?;
        inserted += st.execute(params_from_iter(slice.iter().flat_map(|(t, h)| [t, h])))?;
        at += rows;
    }
    if inserted == keys.len() {
        tx.execute_batch("RELEASE log_seen")?;
        return Ok(vec![true; keys.len()]);
    }
    tx.execute_batch("ROLLBACK TO log_seen; RELEASE log_seen")?;
    mark_seen_returning(tx, keys)
}

/// The statement size for the next `left` keys.
fn seen_rows(left: usize) -> usize {
    SEEN_ROWS
        .into_iter()
        .find(|r| *r <= left)
        .expect("the last size is 1")
}

/// `INSERT OR IGNORE INTO log_seen` of `rows` rows, with `RETURNING` or not.
fn seen_sql(rows: usize, returning: bool) -> String {
    let mut sql = String::with_capacity(70 + rows * 6);
    sql.push_str("INSERT OR IGNORE INTO log_seen (t, h) VALUES (?,?)");
    for _ in 1..rows {
        sql.push_str(",(?,?)");
    }
    if returning {
        sql.push_str(" RETURNING t, h");
    }
    sql
}

/// [`mark_seen`] when some identities may be stored already: one multi-row
/// `INSERT OR IGNORE ... RETURNING` per slice, whose returned rows are
/// exactly the ones it inserted.
fn mark_seen_returning(tx: &rusqlite::Transaction<'_>, keys: &[(i64, i64)]) -> Result<Vec<bool>> {
    let mut fresh = vec![false; keys.len()];
    let mut at = 0;
    while at < keys.len() {
        let rows = seen_rows(keys.len() - at);
        let slice = &keys[at..at + rows];
        let mut st = tx.prepare_cached(&seen_sql(rows, true))?;
        let mut returned = st.query(params_from_iter(slice.iter().flat_map(|(t, h)| [t, h])))?;
        let mut inserted = Vec::with_capacity(rows);
        while let Some(r) = returned.next()? {
            inserted.push((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?));
        }
        let marks = &mut fresh[at..at + rows];
        if inserted.len() == rows {
            marks.fill(true);
        } else {
            // Some were stored before (a retry), or repeat within the
            // request: mark the first occurrence of each inserted key.
            for key in inserted {
                if let Some(i) = (0..rows).find(|i| !marks[*i] && slice[*i] == key) {
                    marks[i] = true;
                }
            }
        }
        at += rows;
    }
    Ok(fresh)
}

/// Re-encodes a group with only the records not stored before
/// (`fresh[i]`: record `i` is new).
pub fn rebuild_group(g: &PreparedGroup, fresh: &[bool]) -> SealedChunk {
    let mut marks = Vec::new();
    let mut raw = Vec::new();
    for (i, m) in g.marks.iter().enumerate() {
        if !fresh[i] {
            continue;
        }
        let end = g
            .marks
            .get(i + 1)
            .map_or(g.raw.len(), |n| n.offset as usize);
        marks.push(ReadMark {
            offset: raw.len() as u32,
            seq: marks.len() as u64,
            time: m.time,
        });
        raw.extend_from_slice(&g.raw[m.offset as usize..end]);
    }
    chunk::encode(LOG_CHUNK_STREAM, &marks, &raw)
}

/// Decodes a log chunk, naming it when it is corrupt.
pub fn decode_log_chunk(id: i64, data: &[u8], crc: u32) -> Result<chunk::DecodedChunk> {
    chunk::decode(data, crc).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{m} (log chunk {id})")),
        other => other,
    })
}

/// A line without its newline.
pub fn trim_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

impl crate::backend::Telemetry for Store {
    fn put_logs(&self, batches: &[LogBatch]) -> Result<Ingested> {
        let counts = self.put_prepared_logs(&[prepare_logs(batches)])?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    fn put_prepared_logs(&self, requests: &[PreparedLogs]) -> Result<Vec<Ingested>> {
        let tx = self.conn().unchecked_transaction()?;
        let mut counts = Vec::with_capacity(requests.len());
        {
            let mut meta = tx.prepare_cached(
                "INSERT INTO log_chunks (source, run_id, service, host, t_min, t_max, lines, raw_bytes, crc, bloom, resource)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut data =
                tx.prepare_cached("INSERT INTO log_chunk_data (id, data) VALUES (?1, ?2)")?;
            for req in requests {
                let mut count = Ingested::default();
                for g in &req.groups {
                    let fresh = mark_seen(&tx, &g.keys)?;
                    let new = fresh.iter().filter(|f| **f).count();
                    count.stored += new;
                    count.duplicates += g.keys.len() - new;
                    if new == 0 {
                        continue;
                    }
                    let rebuilt;
                    let c = if new == g.keys.len() {
                        &g.chunk
                    } else {
                        rebuilt = rebuild_group(g, &fresh);
                        &rebuilt
                    };
                    meta.execute(params![
                        g.source,
                        g.run_id.map(|u| u.to_string()),
                        g.service,
                        g.host,
                        c.t_min.as_nanos(),
                        c.t_max.as_nanos(),
                        c.lines as i64,
                        c.raw_bytes as i64,
                        c.crc as i64,
                        c.bloom,
                        g.resource,
                    ])?;
                    data.execute(params![tx.last_insert_rowid(), c.data])?;
                }
                counts.push(count);
            }
        }
        tx.commit()?;
        Ok(counts)
    }

    fn put_spans(&self, spans: &[Span]) -> Result<usize> {
        let tx = self.conn().unchecked_transaction()?;
        let mut stored = 0;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, run_id, service, host, name, start_ns, end_ns, status, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for s in spans {
                let json = serde_json::to_string(s).expect("span serializes");
                stored += st.execute(params![
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    s.source.run_id.map(|u| u.to_string()),
                    s.source.service,
                    s.source.host,
                    s.name,
                    s.start.as_nanos(),
                    s.end.as_nanos(),
                    s.status.as_i32(),
                    json
                ])?;
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn put_metric_points(&self, points: &[MetricPoint]) -> Result<usize> {
        let tx = self.conn().unchecked_transaction()?;
        let mut stored = 0;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO metric_points (name, series, time_ns, kind, value, run_id, service, host, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for p in points {
                let json = serde_json::to_string(p).expect("metric point serializes");
                stored += st.execute(params![
                    p.name,
                    p.series_hash() as i64,
                    p.time.as_nanos(),
                    p.kind.as_str(),
                    p.value,
                    p.source.run_id.map(|u| u.to_string()),
                    p.source.service,
                    p.source.host,
                    json
                ])?;
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn run_logs(&self, run_id: Uuid, limit: usize) -> Result<Vec<LogLine>> {
        self.logs_where("run_id = ?1", run_id.to_string(), limit)
    }

    fn source_logs(&self, source: &str, limit: usize) -> Result<Vec<LogLine>> {
        self.logs_where("source = ?1", source.to_owned(), limit)
    }

    fn run_spans(&self, run_id: Uuid) -> Result<Vec<Span>> {
        self.spans_where("run_id = ?1", run_id.to_string())
    }

    fn trace_spans(&self, trace_id: &str) -> Result<Vec<Span>> {
        self.spans_where("trace_id = ?1", trace_id.to_ascii_lowercase())
    }

    fn metric_points(
        &self,
        name: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<MetricPoint>> {
        let mut st = self.conn().prepare(
            "SELECT record FROM metric_points WHERE name = ?1 AND time_ns >= ?2
             ORDER BY time_ns, series LIMIT ?3",
        )?;
        let limit = if limit == 0 { -1 } else { limit as i64 };
        let rows = st.query_map(
            params![name, since.map_or(i64::MIN, |t| t.as_nanos()), limit],
            |r| r.get::<_, String>(0),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let json = row?;
            out.push(
                serde_json::from_str(&json).map_err(|source| StoreError::Json {
                    id: format!("metric point of {name}"),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    fn count_log_records(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT coalesce(sum(lines), 0) FROM log_chunks", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    fn run_has_telemetry(&self, run_id: Uuid) -> Result<bool> {
        let id = run_id.to_string();
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM log_chunks WHERE run_id = ?1)
                 OR EXISTS (SELECT 1 FROM spans WHERE run_id = ?1)",
                [&id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    fn resolve_trace(&self, reference: &str) -> Result<String> {
        let hex = kit::trace_prefix(reference)?;
        let upper = format!("{hex}g");
        let mut st = self.conn().prepare(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ?1 AND trace_id < ?2 ORDER BY trace_id LIMIT 6",
        )?;
        let ids: Vec<String> = st
            .query_map(params![hex, upper], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        kit::one_trace(reference, hex, ids)
    }

    fn trace(&self, reference: &str) -> Result<Trace> {
        let trace_id = self.resolve_trace(reference)?;
        let spans = self.trace_spans(&trace_id)?;
        let opts = kit::trace_log_search(&trace_id, &spans);
        let matcher = Matcher::new(&opts.text, opts.mode, false)?;
        let mut hits = Vec::new();
        self.search_logs(&opts, &matcher, &mut hits)?;
        kit::assemble_trace(reference, trace_id, spans, hits)
    }
}
