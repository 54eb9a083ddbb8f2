//! Reading the store: listing runs, replaying output, searching.

use crate::backend::{OutputSink, Runs as _};
use crate::bloom::{BLOCK_BYTES, block_index, block_may_contain};
use crate::chunk::{self, DecodedChunk};
use crate::error::{Result, StoreError};
use crate::kit::{self, ChunkMeta};
use crate::matcher::{Matcher, SearchMode};
use crate::{Store, put_chunks_tx};
use plumb_model::telemetry::{Hit, Kind};
use plumb_model::{RunState, Stream, Timestamp, Uuid};
use rusqlite::{MAIN_DB, params_from_iter, types::Value};
use serde::Serialize;
use std::fmt::Write as _;

/// Which runs `list` returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Exact run name.
    pub name: Option<String>,
    /// Exact host name.
    pub host: Option<String>,
    /// Only runs that did not succeed (and are not running).
    pub failed: bool,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs started at or after this time.
    pub since: Option<Timestamp>,
    /// Only runs with all these tags.
    pub tags: Vec<(String, String)>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// One line of `plumb ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Host name.
    pub host: String,
    /// State.
    pub state: RunState,
    /// Start time.
    pub started: Timestamp,
    /// End time.
    pub ended: Option<Timestamp>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Terminating signal.
    pub signal: Option<i32>,
    /// Attempt number, 1 for the first (`plumb run --retries`).
    pub attempt: u32,
    /// How many attempts the retry policy allowed, when retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Why the command could not be started, when it could not
    /// ([`plumb_model::Run::launch_error`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_error: Option<String>,
    /// Whether the kernel's OOM killer killed the run's own process
    /// ([`plumb_model::OomKill::root`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

/// What `search` looks for and where.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    /// The text, read as `mode` says (see [`crate::matcher`]).
    pub text: String,
    /// Whole words (the default), a literal substring, or a regex.
    pub mode: SearchMode,
    /// Whether substring and regex searches ignore case (word searches
    /// always do).
    pub ignore_case: bool,
    /// Only this host.
    pub host: Option<String>,
    /// Only this run.
    pub run: Option<Uuid>,
    /// Only this stream (output only: log records and spans have none).
    pub stream: Option<Stream>,
    /// Only these kinds of record; empty means every kind (see
    /// [`take_kinds`]).
    pub kinds: Vec<Kind>,
    /// Only lines read at or after this time.
    pub since: Option<Timestamp>,
    /// Only lines read before this time.
    pub until: Option<Timestamp>,
    /// At most this many hits, newest chunks first (0: no limit).
    pub limit: usize,
}

impl SearchOptions {
    /// Whether records of `kind` are searched: those asked for (every kind
    /// when none was), and only output when a stream was asked for.
    pub fn wants(&self, kind: Kind) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.stream.is_none() || kind == Kind::Output)
    }
}

/// Takes the `kind:` qualifiers (`kind:output`, `kind:log`, `kind:span`)
/// off the start and the end of a search text, the one syntax the CLI and
/// the dashboard share; returns the kinds and the text left, which is
/// otherwise untouched (a substring keeps its spaces). Qualifiers elsewhere
/// are searched for as text. An unknown kind is an error naming it.
pub fn take_kinds(text: &str) -> Result<(Vec<Kind>, String)> {
    fn qualifier(token: &str) -> Option<&str> {
        token.strip_prefix("kind:")
    }
    let mut kinds = Vec::new();
    let mut add = |value: &str| -> Result<()> {
        for v in value.split(',') {
            let k: Kind = v.parse().map_err(StoreError::BadQuery)?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Ok(())
    };
    let ws = |c: char| c.is_ascii_whitespace();
    // Only a qualifier and the blanks that separate it are taken: a text
    // without one comes back byte for byte (`--substring "line 1 "`).
    let mut rest = text;
    loop {
        let body = rest.trim_start_matches(ws);
        let end = body.find(ws).unwrap_or(body.len());
        let Some(value) = qualifier(&body[..end]) else {
            break;
        };
        add(value)?;
        rest = body[end..].trim_start_matches(ws);
    }
    loop {
        let body = rest.trim_end_matches(ws);
        let start = body.rfind(ws).map_or(0, |i| i + 1);
        let Some(value) = qualifier(&body[start..]) else {
            break;
        };
        add(value)?;
        rest = body[..start].trim_end_matches(ws);
    }
    kinds.sort_unstable();
    Ok((kinds, rest.to_owned()))
}

impl Store {
    pub(crate) fn chunk_metas(
        &self,
        run_id: Uuid,
        stream: Stream,
        after_part: Option<i64>,
    ) -> Result<Vec<ChunkMeta>> {
        let mut st = self.conn().prepare_cached(
            "SELECT id, run_id, host, stream, part, crc FROM chunks
             WHERE run_id = ?1 AND stream = ?2 AND part > ?3 ORDER BY part",
        )?;
        let rows = st.query_map(
            rusqlite::params![run_id.to_string(), stream.as_u8(), after_part.unwrap_or(-1)],
            meta_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn load_chunk(&self, meta: &ChunkMeta) -> Result<DecodedChunk> {
        let data: Vec<u8> = self.conn().query_row(
            "SELECT data FROM chunk_data WHERE id = ?1",
            [meta.id],
            |r| r.get(0),
        )?;
        kit::decode_chunk(meta, &data)
    }

    /// Lines of recorded output matching, appended to `hits`.
    fn search_output(
        &self,
        opts: &SearchOptions,
        matcher: &Matcher,
        hits: &mut Vec<Hit>,
    ) -> Result<()> {
        let words = matcher.required_words();
        let mut sql = String::from(
            "SELECT id, run_id, host, stream, part, crc, length(bloom) FROM chunks WHERE 1=1",
        );
        let mut args: Vec<Value> = Vec::new();
        common_filters(opts, "t_max", "t_min", &mut sql, &mut args);
        if let Some(s) = opts.stream {
            // Combined output holds stdout and stderr both, so a search of
            // either looks at it too; its hits say `combined`.
            sql.push_str(" AND stream IN (?, ?)");
            args.push(Value::Integer(s.as_u8() as i64));
            args.push(Value::Integer(Stream::Combined.as_u8() as i64));
        }
        sql.push_str(" ORDER BY id DESC");
        let mut st = self.conn().prepare(&sql)?;
        let metas = st.query_map(params_from_iter(args), |r| {
            Ok((meta_from_row(r)?, r.get::<_, i64>(6)?))
        })?;
        let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
        let mut block = [0u8; BLOCK_BYTES];
        // Word filters built here for chunks stored without one, kept for
        // the searches after this one.
        let mut built: Vec<(i64, Vec<u8>)> = Vec::new();
        'chunks: for row in metas {
            let (meta, bloom_len) = row?;
            let nblocks = bloom_len as usize / BLOCK_BYTES;
            if nblocks > 0 && nblocks.is_power_of_two() {
                // Read only the one 32-byte block each word selects.
                match blob.as_mut() {
                    Some(b) => b.reopen(meta.id)?,
                    None => {
                        blob = Some(
                            self.conn()
                                .blob_open(MAIN_DB, c"chunks", c"bloom", meta.id, true)?,
                        );
                    }
                }
                let b = blob.as_ref().expect("opened above");
                for h in words {
                    let i = block_index(*h, nblocks);
                    b.read_at_exact(&mut block, i * BLOCK_BYTES)?;
                    if !block_may_contain(&block, *h) {
                        continue 'chunks;
                    }
                }
            }
            let d = self.load_chunk(&meta)?;
            if nblocks == 0 {
                built.push((meta.id, chunk::word_filter(&d.raw).to_bytes()));
            }
            let full = kit::output_hits(&d, &meta, opts, matcher, hits)?;
            if full {
                break 'chunks;
            }
        }
        drop(blob);
        drop(st);
        if !built.is_empty() {
            // Best effort: a read-only store is still searched in full.
            if let Err(error) = self.store_filters(&built) {
                tracing::debug!(%error, chunks = built.len(), "cannot store word filters built by search");
            }
        }
        Ok(())
    }
}

impl Store {
    /// Stores word filters for chunks that were written without one.
    fn store_filters(&self, filters: &[(i64, Vec<u8>)]) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE chunks SET bloom = ?2 WHERE id = ?1 AND length(bloom) = 0",
            )?;
            for (id, bloom) in filters {
                st.execute(rusqlite::params![id, bloom])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChunkMeta> {
    let stream: u8 = r.get(3)?;
    Ok(ChunkMeta {
        id: r.get(0)?,
        run_id: r.get(1)?,
        host: r.get(2)?,
        stream: Stream::from_u8(stream).unwrap_or(Stream::Stdout),
        part: r.get(4)?,
        crc: r.get::<_, i64>(5)? as u32,
    })
}

/// The terms every kind of search shares, appended to `sql` (which ends in
/// a WHERE clause) with their values: host, run, and the time window, on
/// `since_col` (something at or after `since`) and `until_col` (before
/// `until`).
pub(crate) fn common_filters(
    opts: &SearchOptions,
    since_col: &str,
    until_col: &str,
    sql: &mut String,
    args: &mut Vec<Value>,
) {
    if let Some(h) = &opts.host {
        sql.push_str(" AND host = ?");
        args.push(Value::Text(h.clone()));
    }
    if let Some(r) = &opts.run {
        sql.push_str(" AND run_id = ?");
        args.push(Value::Text(r.to_string()));
    }
    if let Some(t) = opts.since {
        let _ = write!(sql, " AND {since_col} >= ?");
        args.push(Value::Integer(t.as_nanos()));
    }
    if let Some(t) = opts.until {
        let _ = write!(sql, " AND {until_col} < ?");
        args.push(Value::Integer(t.as_nanos()));
    }
}

/// How far `replay_output` has got, per stream. Serializable, so a remote
/// client can hand it back to continue where it stopped.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct OutputCursor {
    pub(crate) stdout: Option<i64>,
    pub(crate) stderr: Option<i64>,
    /// Absent from cursors of older clients, which knew no combined stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) combined: Option<i64>,
    /// Whether the gap over the output cap was replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) gap_done: bool,
    /// The highest sequence number replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
}

/// One piece of a run's output, as [`Store::replay_output`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed<'a> {
    /// One read's bytes, unchanged.
    Read {
        /// Its stream.
        stream: Stream,
        /// When it was read.
        time: Timestamp,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// Output over the run's cap was dropped here (see
    /// [`plumb_model::OutputGap`]).
    Gap {
        /// Bytes dropped.
        dropped: u64,
        /// The cap in force.
        cap: u64,
    },
}

impl Replayed<'_> {
    /// The program's bytes in this piece (none for a gap).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Replayed::Read { bytes, .. } => bytes,
            Replayed::Gap { .. } => &[],
        }
    }
}

impl OutputCursor {
    /// Whether the gap over the output cap was replayed already.
    pub fn gap_done(&self) -> bool {
        self.gap_done
    }

    pub(crate) fn last_part(&self, s: Stream) -> Option<i64> {
        match s {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
            Stream::Combined => self.combined,
        }
    }
    pub(crate) fn set_last_part(&mut self, s: Stream, seq: i64) {
        match s {
            Stream::Stdout => self.stdout = Some(seq),
            Stream::Stderr => self.stderr = Some(seq),
            Stream::Combined => self.combined = Some(seq),
        }
    }
}

impl crate::backend::Output for Store {
    fn put_chunks(&self, run_id: Uuid, host: &str, chunks: &[chunk::SealedChunk]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        put_chunks_tx(&tx, run_id, host, chunks)?;
        tx.commit()?;
        Ok(())
    }

    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<()> {
        // A gap is marked once a run has settled its cap (its final record).
        let gap = if cursor.gap_done {
            None
        } else {
            self.get_run(run_id)?.output.gap
        };
        kit::replay(
            run_id,
            gap,
            only,
            cursor,
            out,
            &mut |s, after| self.chunk_metas(run_id, s, after),
            &mut |meta| self.load_chunk(meta),
        )
    }

    fn search(&self, opts: &SearchOptions) -> Result<Vec<Hit>> {
        // Log records and spans from instrumented applications
        // (crate::telemetry) after the output.
        kit::search_kinds(
            opts,
            &mut |o, m, h| self.search_output(o, m, h),
            &mut |o, m, h| self.search_logs(o, m, h),
            &mut |o, m, h| self.search_spans(o, m, h),
        )
    }

    fn index_pending(&self, max_chunks: usize) -> Result<usize> {
        let metas: Vec<ChunkMeta> = {
            let mut st = self.conn().prepare(
                "SELECT id, run_id, host, stream, part, crc FROM chunks
                 WHERE length(bloom) = 0 ORDER BY id LIMIT ?1",
            )?;
            let rows = st.query_map([max_chunks as i64], meta_from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut built = Vec::with_capacity(metas.len());
        for meta in &metas {
            let d = self.load_chunk(meta)?;
            built.push((meta.id, chunk::word_filter(&d.raw).to_bytes()));
        }
        self.store_filters(&built)?;
        Ok(built.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkBuilder, IndexPolicy};
    use crate::prelude::*;
    use plumb_model::Run;

    /// A run whose output chunks were stored without word filters, as the
    /// recorder does under a flood of output.
    fn store_with_unindexed_run(dir: &std::path::Path) -> (Store, Uuid) {
        let store = Store::open(dir).unwrap();
        let run = Run::new(plumb_model::new_id(), "flood".into(), Timestamp::now());
        store.put_run(&run).unwrap();
        let policy = IndexPolicy::RateLimited {
            bytes_per_sec: 0,
            burst: 0,
        };
        let mut b = ChunkBuilder::with_policy(Stream::Stdout, policy);
        let mut sealed = Vec::new();
        let mut text = Vec::new();
        for i in 0..30_000u32 {
            let word = if i == 21_111 { "needleword" } else { "hay" };
            text.extend_from_slice(format!("line {i} {word} status=ok\n").as_bytes());
        }
        for (i, read) in text.chunks(64 * 1024).enumerate() {
            b.push(i as u64, Timestamp::now(), read, &mut sealed);
        }
        b.flush(&mut sealed);
        assert!(sealed.len() >= 2 && sealed.iter().all(|c| c.bloom.is_empty()));
        store.put_chunks(run.id, "node-1", &sealed).unwrap();
        (store, run.id)
    }

    fn unindexed(store: &Store) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT count(*) FROM chunks WHERE length(bloom) = 0",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn search_finds_words_in_unindexed_chunks_and_indexes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run_id) = store_with_unindexed_run(dir.path());
        let opts = SearchOptions {
            text: "NeedleWord".into(),
            ..Default::default()
        };
        let hits = store.search(&opts).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].text(), "line 21111 needleword status=ok");
        assert_eq!(hits[0].run_id(), Some(run_id));
        assert_eq!(unindexed(&store), 0, "search stored the filters it built");
        // The stored filters find the word, and skip chunks without it.
        assert_eq!(store.search(&opts).unwrap().len(), 1);
        let none = SearchOptions {
            text: "absentword".into(),
            ..Default::default()
        };
        assert!(store.search(&none).unwrap().is_empty());
    }

    #[test]
    fn index_pending_indexes_what_the_recorder_left() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_unindexed_run(dir.path());
        let before = unindexed(&store);
        assert_eq!(store.index_pending(1).unwrap(), 1);
        assert_eq!(unindexed(&store), before - 1);
        assert_eq!(store.index_pending(100).unwrap() as i64, before - 1);
        assert_eq!(unindexed(&store), 0);
        let hits = store
            .search(&SearchOptions {
                text: "needleword".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn kind_qualifiers_come_off_the_start_and_the_end_only() {
        let take = |t: &str| take_kinds(t).unwrap();
        assert_eq!(
            take("kind:span checkout"),
            (vec![Kind::Span], "checkout".into())
        );
        assert_eq!(
            take("disk  full kind:log,output"),
            (vec![Kind::Output, Kind::Log], "disk  full".into())
        );
        assert_eq!(
            take("kind:log a kind:span b kind:log"),
            (vec![Kind::Log], "a kind:span b".into())
        );
        assert_eq!(take("plain words"), (vec![], "plain words".into()));
        assert_eq!(take(" line 1 "), (vec![], " line 1 ".into()));
        let err = take_kinds("kind:metric x").unwrap_err().to_string();
        assert!(err.contains("unknown kind `metric`"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Search finds the same lines whatever the chunking, and whether
        /// chunks were stored with word filters or without: exactly the
        /// lines a naive scan of the text finds, for every mode.
        #[test]
        fn results_never_depend_on_chunking_or_filters(
            lines in proptest::collection::vec("[a-c0-9 _.-]{0,10}", 1..60),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..6),
            indexed in proptest::collection::vec(proptest::prelude::any::<bool>(), 7),
            query in "[a-c0-9][a-c0-9 .-]{0,4}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let run = Run::new(plumb_model::new_id(), "p".into(), Timestamp::now());
            store.put_run(&run).unwrap();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(lines.len())).collect();
            bounds.push(0);
            bounds.push(lines.len());
            bounds.sort_unstable();
            bounds.dedup();
            let mut sealed = Vec::new();
            for (k, w) in bounds.windows(2).enumerate() {
                let raw: String = lines[w[0]..w[1]].iter().map(|l| format!("{l}\n")).collect();
                let marks = [chunk::ReadMark { offset: 0, seq: k as u64, time: Timestamp::from_nanos(1 + k as i64) }];
                let mut c = chunk::encode_with(Stream::Stdout, &marks, raw.as_bytes(), indexed[k % 7]);
                c.part = k as u64;
                c.first_seq = k as u64;
                sealed.push(c);
            }
            store.put_chunks(run.id, "h", &sealed).unwrap();
            for mode in [SearchMode::Words, SearchMode::Substring, SearchMode::Regex] {
                let text = if mode == SearchMode::Regex { regex::escape(&query) } else { query.clone() };
                let Ok(m) = Matcher::new(&text, mode, false) else { continue };
                let mut got: Vec<String> = store
                    .search(&SearchOptions { text: text.clone(), mode, ..Default::default() })
                    .unwrap()
                    .into_iter()
                    .map(|l| l.text().to_owned())
                    .collect();
                let mut want: Vec<String> = lines.iter().filter(|l| naive(mode, &query, l)).cloned().collect();
                got.sort();
                want.sort();
                proptest::prop_assert_eq!(got, want, "mode {:?} query {:?}", mode, query);
                drop(m);
            }
        }
    }

    /// Each mode written the simple way, line by line.
    fn naive(mode: SearchMode, text: &str, line: &str) -> bool {
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        match mode {
            SearchMode::Words => {
                let lw = words(line);
                text.split_whitespace().all(|t| {
                    let tw = words(t);
                    lw.windows(tw.len()).any(|w| w == tw.as_slice())
                })
            }
            SearchMode::Substring | SearchMode::Regex => line.contains(text),
        }
    }
}

/// What one step of retention dropped ([`crate::Retention`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Output chunks.
    pub chunks: u64,
    /// Log chunks (OpenTelemetry log records).
    pub log_chunks: u64,
    /// Spans.
    pub spans: u64,
    /// Metric points.
    pub metric_points: u64,
    /// Bytes of chunk data (as stored, compressed) that went with them.
    pub bytes: u64,
}

impl Dropped {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.chunks == 0 && self.log_chunks == 0 && self.spans == 0 && self.metric_points == 0
    }

    /// Adds another step's figures to these.
    pub fn add(&mut self, o: Dropped) {
        self.chunks += o.chunks;
        self.log_chunks += o.log_chunks;
        self.spans += o.spans;
        self.metric_points += o.metric_points;
        self.bytes += o.bytes;
    }
}
