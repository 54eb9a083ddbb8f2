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

use crate::Store;
use crate::bloom::{BLOCK_BYTES, block_index, block_may_contain};
use crate::chunk::{self, ReadMark, SealedChunk};
use crate::error::{Result, StoreError};
use crate::matcher::Matcher;
use crate::matcher::SearchMode;
use crate::query::SearchOptions;
use plumb_model::telemetry::{
    Hit, Kind, LogBatch, LogLine, MetricPoint, Source, Span, SpanHit, TimeText, Trace,
};
use plumb_model::{Stream, Timestamp, Uuid};
use rusqlite::{MAIN_DB, OptionalExtension, params, params_from_iter, types::Value};

/// The stream number written into log chunks' own headers (the chunk
/// format has the field). It has always been 2 and stays so, so chunks
/// stored by any version read alike; it means nothing for log records,
/// which are their own kind ([`Kind::Log`]) wherever they are shown.
const LOG_CHUNK_STREAM: Stream = Stream::Stderr;

/// One source's records from one request, rendered and encoded.
#[derive(Debug, Clone)]
struct PreparedGroup {
    source: String,
    run_id: Option<Uuid>,
    service: String,
    host: String,
    resource: String,
    /// Identity of each record: (time ns, content hash).
    keys: Vec<(i64, i64)>,
    /// One mark per record: where its line starts, and its time.
    marks: Vec<ReadMark>,
    raw: Vec<u8>,
    chunk: SealedChunk,
}

/// Log records rendered and encoded, ready for [`Store::put_prepared_logs`].
#[derive(Debug, Clone, Default)]
pub struct PreparedLogs {
    groups: Vec<PreparedGroup>,
}

impl PreparedLogs {
    /// Number of records.
    pub fn records(&self) -> usize {
        self.groups.iter().map(|g| g.keys.len()).sum()
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
    /// Stores log batches in one transaction; see [`prepare_logs`].
    pub fn put_logs(&self, batches: &[LogBatch]) -> Result<Ingested> {
        let counts = self.put_prepared_logs(&[prepare_logs(batches)])?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    /// Stores prepared log records of several requests in one transaction,
    /// skipping records already stored. Returns the counts per request, in
    /// order.
    pub fn put_prepared_logs(&self, requests: &[PreparedLogs]) -> Result<Vec<Ingested>> {
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
                        rebuilt = rebuild(g, &fresh);
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

    /// Stores spans (once each: a retried span is skipped). Returns how many
    /// were new.
    pub fn put_spans(&self, spans: &[Span]) -> Result<usize> {
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

    /// Stores metric points (once each per name, series and time). Returns
    /// how many were new.
    pub fn put_metric_points(&self, points: &[MetricPoint]) -> Result<usize> {
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

    /// Log lines of a run, oldest first, at most `limit` (0: all).
    pub fn run_logs(&self, run_id: Uuid, limit: usize) -> Result<Vec<LogLine>> {
        self.logs_where("run_id = ?1", run_id.to_string(), limit)
    }

    /// Log lines of a source that is not a run (`service@host`), oldest
    /// first, at most `limit` (0: all).
    pub fn source_logs(&self, source: &str, limit: usize) -> Result<Vec<LogLine>> {
        self.logs_where("source = ?1", source.to_owned(), limit)
    }

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
            let run_id = run.and_then(|s| Uuid::parse_str(&s).ok());
            let d = decode_log_chunk(id, &data, crc)?;
            for (_, range) in d.segments() {
                let start = range.start;
                let text = trim_newline(&d.raw[range]);
                out.push(LogLine::parse(
                    d.time_at(start),
                    source.clone(),
                    run_id,
                    service.clone(),
                    host.clone(),
                    String::from_utf8_lossy(text).into_owned(),
                ));
                if limit > 0 && out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Spans of a run, by start time.
    pub fn run_spans(&self, run_id: Uuid) -> Result<Vec<Span>> {
        self.spans_where("run_id = ?1", run_id.to_string())
    }

    /// Spans of a trace, by start time.
    pub fn trace_spans(&self, trace_id: &str) -> Result<Vec<Span>> {
        self.spans_where("trace_id = ?1", trace_id.to_ascii_lowercase())
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

    /// Points of a metric at or after `since`, oldest first, at most
    /// `limit` (0: all).
    pub fn metric_points(
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

    /// Moves everything in the write-ahead log into the database file and
    /// truncates the log (for measuring the store's size on disk).
    pub fn checkpoint_wal(&self) -> Result<()> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Number of log records stored.
    pub fn count_log_records(&self) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT coalesce(sum(lines), 0) FROM log_chunks", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Whether a run has any log records or spans (used to say where to
    /// look for them).
    pub fn run_has_telemetry(&self, run_id: Uuid) -> Result<bool> {
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
            let run_id = run.and_then(|s| Uuid::parse_str(&s).ok());
            let mut full = false;
            matcher.for_each_match(&d.raw, |start, end| {
                let time = d.time_at(start);
                if opts.since.is_some_and(|t| time < t) || opts.until.is_some_and(|t| time >= t) {
                    return true;
                }
                hits.push(Hit::Log(LogLine::parse(
                    time,
                    source.clone(),
                    run_id,
                    service.clone(),
                    host.clone(),
                    String::from_utf8_lossy(&d.raw[start..end]).into_owned(),
                )));
                full = opts.limit > 0 && hits.len() >= opts.limit;
                !full
            });
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
            let line = span.search_line();
            if matcher.line_matches(line.as_bytes()) {
                hits.push(Hit::Span(SpanHit::new(&span, line)));
                if opts.limit > 0 && hits.len() >= opts.limit {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The trace id a reference names: a trace id, or a unique prefix of
    /// one (at least 4 hex digits), among the stored spans. A full id with
    /// no span stored still names its trace when log records carry it.
    pub fn resolve_trace(&self, reference: &str) -> Result<String> {
        let hex = reference.trim().to_ascii_lowercase();
        if hex.len() < 4 || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadQuery(format!(
                "`{reference}` is not a trace reference: use a trace id (32 hex digits) or a unique prefix of one (at least 4)"
            )));
        }
        let upper = format!("{hex}g");
        let mut st = self.conn().prepare(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ?1 AND trace_id < ?2 ORDER BY trace_id LIMIT 6",
        )?;
        let ids: Vec<String> = st
            .query_map(params![hex, upper], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] if hex.len() == 32 => Ok(hex),
            [] => Err(StoreError::NoSuchTrace(reference.to_owned())),
            many => Err(StoreError::Ambiguous {
                prefix: reference.to_owned(),
                candidates: many.iter().take(5).cloned().collect(),
                more: many.len() > 5,
            }),
        }
    }

    /// A trace: its spans and the log records made inside it (those whose
    /// line carries its `trace_id=`), found by a word search of the log
    /// chunks around the trace's time, so the word filters skip the rest.
    pub fn trace(&self, reference: &str) -> Result<Trace> {
        let trace_id = self.resolve_trace(reference)?;
        let spans = self.trace_spans(&trace_id)?;
        // Records of a span are made while it runs; a minute either side
        // allows for clocks of different hosts that disagree.
        const SLACK_NS: i64 = 60_000_000_000;
        let start = spans.iter().map(|s| s.start.as_nanos()).min();
        let end = spans.iter().map(|s| s.end.as_nanos()).max();
        let opts = SearchOptions {
            text: format!("trace_id={trace_id}"),
            mode: SearchMode::Words,
            kinds: vec![Kind::Log],
            since: start.map(|t| Timestamp::from_nanos(t.saturating_sub(SLACK_NS))),
            until: end.map(|t| Timestamp::from_nanos(t.saturating_add(SLACK_NS))),
            ..Default::default()
        };
        let matcher = Matcher::new(&opts.text, opts.mode, false)?;
        let mut hits = Vec::new();
        self.search_logs(&opts, &matcher, &mut hits)?;
        let mut logs: Vec<LogLine> = hits
            .into_iter()
            .filter_map(|h| match h {
                // The words matched; the line must also carry the id as
                // its own trace, not as some attribute's value.
                Hit::Log(l) if l.trace_id.as_deref() == Some(trace_id.as_str()) => Some(l),
                _ => None,
            })
            .collect();
        if spans.is_empty() && logs.is_empty() {
            return Err(StoreError::NoSuchTrace(reference.to_owned()));
        }
        logs.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.text.cmp(&b.text)));
        Ok(Trace {
            trace_id,
            spans,
            logs,
        })
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

/// Re-encodes a group with only the records not stored before.
fn rebuild(g: &PreparedGroup, fresh: &[bool]) -> SealedChunk {
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

fn decode_log_chunk(id: i64, data: &[u8], crc: u32) -> Result<chunk::DecodedChunk> {
    chunk::decode(data, crc).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{m} (log chunk {id})")),
        other => other,
    })
}

fn trim_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::telemetry::{
        Attributes, LogBody, LogRecord, MetricKind, RUN_ID_ATTRIBUTE, SpanEvent, SpanKind,
        StatusCode,
    };
    use serde_json::json;

    fn source(run: Option<Uuid>, host: &str) -> Source {
        let mut r = Attributes::new();
        r.insert("service.name".into(), json!("shop"));
        r.insert("host.name".into(), json!(host));
        if let Some(id) = run {
            r.insert(RUN_ID_ATTRIBUTE.into(), json!(id.to_string()));
        }
        Source::from_resource(r)
    }

    fn record(i: i64, body: &str) -> LogRecord {
        LogRecord {
            time: Timestamp::from_nanos(1_764_000_000_000_000_000 + i * 1_000_000),
            observed: Timestamp::from_nanos(1_764_000_000_000_000_000 + i * 1_000_000),
            severity_number: 9,
            severity_text: "INFO".into(),
            body: LogBody::Text(body.into()),
            attributes: Attributes::new(),
            trace_id: None,
            span_id: None,
            scope: "test".into(),
        }
    }

    fn batch(source: &Source, range: std::ops::Range<i64>) -> LogBatch {
        LogBatch {
            source: source.clone(),
            records: range
                .map(|i| record(i, &format!("order {i} shipped")))
                .collect(),
        }
    }

    #[test]
    fn retried_records_are_stored_once_however_batched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = plumb_model::new_id();
        let s = source(Some(run), "web-1");
        let first = store.put_logs(&[batch(&s, 0..100)]).unwrap();
        assert_eq!(
            first,
            Ingested {
                stored: 100,
                duplicates: 0
            }
        );
        // A retry of the same request, then a re-batched one overlapping it.
        let again = store.put_logs(&[batch(&s, 0..100)]).unwrap();
        assert_eq!(
            again,
            Ingested {
                stored: 0,
                duplicates: 100
            }
        );
        let overlap = store
            .put_logs(&[batch(&s, 50..120), batch(&s, 120..130)])
            .unwrap();
        assert_eq!(
            overlap,
            Ingested {
                stored: 30,
                duplicates: 50
            }
        );
        let lines = store.run_logs(run, 0).unwrap();
        assert_eq!(lines.len(), 130);
        let mut bodies: Vec<String> = lines
            .iter()
            .map(|l| l.text.split("@web-1 ").nth(1).unwrap().to_string())
            .collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 130, "every record exactly once");
        assert!(
            lines[0].text.starts_with("2025-11-24T"),
            "{}",
            lines[0].text
        );
        assert!(lines[0].text.contains(" INFO shop@web-1 order 0 shipped"));
        assert_eq!(store.count_log_records().unwrap(), 130);
    }

    #[test]
    fn overlaps_across_statement_sizes_and_repeats_within_a_request_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = source(None, "web-1");
        assert_eq!(store.put_logs(&[batch(&s, 0..600)]).unwrap().stored, 600);
        // 300..900 overlaps by 300 records, spread over 256-, 16- and 1-row
        // statements; record 700 is sent twice in the same request.
        let mut b = batch(&s, 300..900);
        b.records.push(record(700, "order 700 shipped"));
        let counts = store.put_logs(&[b]).unwrap();
        assert_eq!(
            counts,
            Ingested {
                stored: 300,
                duplicates: 301
            }
        );
        let lines = store.source_logs("shop@web-1", 0).unwrap();
        assert_eq!(lines.len(), 900);
        let mut texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 900, "every record exactly once");
    }

    #[test]
    fn search_finds_log_lines_by_run_and_by_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = plumb_model::new_id();
        let with_run = source(Some(run), "web-1");
        let no_run = source(None, "db-2");
        let mut b = batch(&with_run, 0..500);
        b.records[250].body = LogBody::Text("disk quota zanzibar exceeded".into());
        store.put_logs(&[b, batch(&no_run, 1000..1200)]).unwrap();
        let hits = store
            .search(&SearchOptions {
                text: "Zanzibar".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 1);
        let Hit::Log(l) = &hits[0] else {
            panic!("a log record is a log hit: {hits:?}")
        };
        assert_eq!(l.run_id, Some(run));
        assert_eq!(l.host, "web-1");
        assert_eq!(l.service, "shop");
        assert_eq!(l.severity, "INFO");
        assert_eq!(l.message(), "disk quota zanzibar exceeded");
        assert_eq!(l.time, record(250, "").time);
        // Records without a run are filed under their source, and belong
        // to no run.
        let hits = store
            .search(&SearchOptions {
                text: "order 1100 shipped".into(),
                host: Some("db-2".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind(), Kind::Log);
        assert_eq!(hits[0].run_id(), None);
        assert_eq!(store.source_logs("shop@db-2", 0).unwrap().len(), 200);
        // Filters exclude what they should: log records are neither output
        // nor on any stream.
        for opts in [
            SearchOptions {
                text: "zanzibar".into(),
                host: Some("db-2".into()),
                ..Default::default()
            },
            SearchOptions {
                text: "zanzibar".into(),
                stream: Some(Stream::Stderr),
                ..Default::default()
            },
            SearchOptions {
                text: "zanzibar".into(),
                kinds: vec![Kind::Output, Kind::Span],
                ..Default::default()
            },
        ] {
            let none = store.search(&opts).unwrap();
            assert!(none.is_empty(), "{opts:?}: {none:?}");
        }
    }

    fn span_of(trace: &str, id: &str, parent: Option<&str>, name: &str, start: i64) -> Span {
        let mut attributes = Attributes::new();
        attributes.insert("order.id".into(), json!(42));
        Span {
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: name.into(),
            kind: SpanKind::Internal,
            start: Timestamp::from_nanos(1_764_000_000_000_000_000 + start),
            end: Timestamp::from_nanos(1_764_000_000_000_000_000 + start + 1_000_000),
            status: StatusCode::Unset,
            status_message: String::new(),
            attributes,
            events: Vec::new(),
            scope: "t".into(),
            source: source(None, "web-1"),
        }
    }

    #[test]
    fn spans_are_found_by_name_service_and_attributes_and_traces_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t1 = "0af7651916cd43dd8448eb211c80319c";
        let t2 = "0af7000016cd43dd8448eb211c80319d";
        store
            .put_spans(&[
                span_of(t1, "b7ad6b7169203331", None, "checkout", 0),
                span_of(
                    t1,
                    "00f067aa0ba902b7",
                    Some("b7ad6b7169203331"),
                    "charge-card",
                    100,
                ),
                span_of(t2, "1111111111111111", None, "refund", 50),
            ])
            .unwrap();
        let find = |text: &str| -> Vec<String> {
            store
                .search(&SearchOptions {
                    text: text.into(),
                    kinds: vec![Kind::Span],
                    ..Default::default()
                })
                .unwrap()
                .into_iter()
                .map(|h| match h {
                    Hit::Span(s) => s.name,
                    other => panic!("not a span: {other:?}"),
                })
                .collect()
        };
        assert_eq!(find("checkout"), ["checkout"]);
        // Words in sequence, as for output: `charge` finds `charge-card`.
        assert_eq!(find("charge"), ["charge-card"]);
        assert_eq!(find("shop"), ["charge-card", "refund", "checkout"]);
        assert_eq!(find("order.id=42 refund"), ["refund"]);
        assert!(find("nosuchspan").is_empty());
        // A span hit names its trace and no run.
        let hits = store
            .search(&SearchOptions {
                text: "refund".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].trace_id(), Some(t2));
        assert_eq!(hits[0].run_id(), None);

        // Traces by a unique prefix; an ambiguous one is refused.
        assert_eq!(store.resolve_trace("0af76519").unwrap(), t1);
        assert!(matches!(
            store.resolve_trace("0af7"),
            Err(StoreError::Ambiguous { .. })
        ));
        assert!(matches!(
            store.resolve_trace("ffff"),
            Err(StoreError::NoSuchTrace(_))
        ));
        assert!(matches!(
            store.resolve_trace("zz!"),
            Err(StoreError::BadQuery(_))
        ));
    }

    #[test]
    fn a_trace_holds_its_spans_as_a_tree_and_the_logs_made_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        store
            .put_spans(&[
                span_of(t, "00000000000000a1", None, "checkout", 0),
                span_of(
                    t,
                    "00000000000000b2",
                    Some("00000000000000a1"),
                    "charge",
                    200,
                ),
                span_of(
                    t,
                    "00000000000000c3",
                    Some("00000000000000a1"),
                    "reserve",
                    100,
                ),
                span_of(t, "00000000000000d4", Some("00000000000000c3"), "lock", 150),
            ])
            .unwrap();
        let s = source(None, "web-1");
        let mut inside = record(0, "card declined");
        inside.trace_id = Some(t.into());
        inside.span_id = Some("00000000000000b2".into());
        let mut other = record(1, "another trace");
        other.trace_id = Some("ffffffffffffffffffffffffffffffff".into());
        // Naming the trace as an attribute does not put a record in it.
        let mut mention = record(2, "mentions it");
        mention.attributes.insert("trace_id".into(), json!(t));
        store
            .put_logs(&[LogBatch {
                source: s,
                records: vec![inside, other, mention, record(3, "no trace")],
            }])
            .unwrap();
        let trace = store.trace("4bf92f").unwrap();
        assert_eq!(trace.trace_id, t);
        let order: Vec<(&str, usize)> = trace
            .tree()
            .into_iter()
            .map(|(i, depth)| (trace.spans[i].name.as_str(), depth))
            .collect();
        assert_eq!(
            order,
            [("checkout", 0), ("reserve", 1), ("lock", 2), ("charge", 1)]
        );
        assert_eq!(trace.logs.len(), 1, "{:?}", trace.logs);
        assert_eq!(
            trace.logs[0].message(),
            format!("card declined trace_id={t} span_id=00000000000000b2")
        );
        assert_eq!(trace.logs[0].trace_id.as_deref(), Some(t));
        assert!(matches!(
            store.trace("abcdef"),
            Err(StoreError::NoSuchTrace(_))
        ));
    }

    #[test]
    fn spans_and_metric_points_are_stored_once_and_found_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = plumb_model::new_id();
        let s = source(Some(run), "web-1");
        let mut exc = Attributes::new();
        exc.insert("exception.type".into(), json!("ValueError"));
        let span = |id: &str, parent: Option<&str>, start: i64| Span {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: format!("op-{id}"),
            kind: SpanKind::Server,
            start: Timestamp::from_nanos(start),
            end: Timestamp::from_nanos(start + 10),
            status: StatusCode::Error,
            status_message: "boom".into(),
            attributes: Attributes::new(),
            events: vec![SpanEvent {
                time: Timestamp::from_nanos(start + 5),
                name: "exception".into(),
                attributes: exc.clone(),
            }],
            scope: "t".into(),
            source: s.clone(),
        };
        let spans = vec![
            span("b7ad6b7169203331", None, 100),
            span("00f067aa0ba902b7", Some("b7ad6b7169203331"), 200),
        ];
        assert_eq!(store.put_spans(&spans).unwrap(), 2);
        assert_eq!(
            store.put_spans(&spans).unwrap(),
            0,
            "a retry stores nothing"
        );
        let got = store.run_spans(run).unwrap();
        assert_eq!(got, spans);
        assert_eq!(got[1].exceptions().count(), 1);
        assert_eq!(
            store
                .trace_spans("0AF7651916CD43DD8448EB211C80319C")
                .unwrap()
                .len(),
            2
        );
        assert!(store.run_has_telemetry(run).unwrap());
        assert!(!store.run_has_telemetry(plumb_model::new_id()).unwrap());

        let point = |t: i64, v: f64| MetricPoint {
            name: "queue.depth".into(),
            kind: MetricKind::Gauge,
            unit: "1".into(),
            time: Timestamp::from_nanos(t),
            start: None,
            value: v,
            count: None,
            buckets: None,
            attributes: Attributes::new(),
            source: s.clone(),
        };
        let points = vec![point(10, 1.0), point(20, 3.5)];
        assert_eq!(store.put_metric_points(&points).unwrap(), 2);
        assert_eq!(store.put_metric_points(&points).unwrap(), 0);
        assert_eq!(store.metric_points("queue.depth", None, 0).unwrap(), points);
        assert_eq!(
            store
                .metric_points("queue.depth", Some(Timestamp::from_nanos(15)), 0)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn big_batches_are_cut_into_several_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = source(None, "web-1");
        let prepared = prepare_logs(&[batch(&s, 0..20_000)]);
        assert!(
            prepared.groups.len() > 1,
            "{} groups",
            prepared.groups.len()
        );
        assert_eq!(prepared.records(), 20_000);
        let counts = store.put_prepared_logs(&[prepared]).unwrap();
        assert_eq!(counts[0].stored, 20_000);
        assert_eq!(store.source_logs("shop@web-1", 0).unwrap().len(), 20_000);
    }
}
