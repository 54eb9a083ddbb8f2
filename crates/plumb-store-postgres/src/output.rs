//! [`Output`] on PostgreSQL: output chunks, replay and search.
//!
//! A search tests each chunk's word filter inside the database: for every
//! word the query requires, the one 32-byte block of the filter its hash
//! selects is read with `substring` (cheap: the filter is stored
//! uncompressed) and compared with the word's bits as a `bit(256)`. Only
//! chunks whose filter may hold every word are returned, and only those
//! are fetched and decompressed.

use crate::{Params, PgStore, Sql};
use plumb_model::telemetry::Hit;
use plumb_model::{Stream, Uuid};
use plumb_store::bloom::block_mask;
use plumb_store::chunk::{self, DecodedChunk, SealedChunk};
use plumb_store::kit::{self, ChunkMeta};
use plumb_store::{
    Matcher, Output, OutputCursor, OutputSink, Result, Runs, SearchOptions, StoreError,
};
use postgres::{Row, Transaction};

/// Chunks per multi-row insert (13 parameters each, well under the
/// protocol's 65,535).
const CHUNKS_PER_INSERT: usize = 500;

/// Stores chunks, each once (by run, stream and part); returns how many
/// were new.
pub(crate) fn put_chunks_tx(
    tx: &mut Transaction<'_>,
    run_id: Uuid,
    host: &str,
    chunks: &[impl std::borrow::Borrow<SealedChunk>],
) -> Result<u64> {
    let id = run_id.to_string();
    let mut added = 0;
    for batch in chunks.chunks(CHUNKS_PER_INSERT) {
        let mut p = Params::default();
        let mut values = Vec::with_capacity(batch.len());
        for c in batch {
            let c: &SealedChunk = c.borrow();
            let cols = [
                p.add(id.clone()),
                p.add(host.to_string()),
                p.add(i64::from(c.stream.as_u8())),
                p.add(c.part as i64),
                p.add(c.first_seq as i64),
                p.add(c.t_min.as_nanos()),
                p.add(c.t_max.as_nanos()),
                p.add(c.lines as i64),
                p.add(c.raw_bytes as i64),
                p.add(i64::from(c.crc)),
                p.add(c.bloom.clone()),
                p.add(c.data.clone()),
            ];
            values.push(format!("({})", cols.join(", ")));
        }
        added += tx.x(
            &format!(
                "INSERT INTO chunks (run_id, host, stream, part, first_seq, t_min, t_max, lines,
                     raw_bytes, crc, bloom, data) VALUES {}
                 ON CONFLICT (run_id, stream, part, t_max) DO NOTHING",
                values.join(", ")
            ),
            &p.refs(),
        )?;
    }
    Ok(added)
}

pub(crate) fn meta(r: &Row) -> ChunkMeta {
    let stream: i64 = r.get(3);
    ChunkMeta {
        id: r.get(0),
        run_id: r.get(1),
        host: r.get(2),
        stream: Stream::from_u8(stream as u8).unwrap_or(Stream::Stdout),
        part: r.get(4),
        crc: r.get::<_, i64>(5) as u32,
    }
}

/// The condition that a chunk's word filter (column `bloom`) may hold
/// every word of `words` (hashes), or that it has none (not indexed yet).
pub(crate) fn filter_condition(words: &[u64], p: &mut Params) -> String {
    if words.is_empty() {
        return String::new();
    }
    let mut terms = Vec::with_capacity(words.len());
    for &h in words {
        let hi = p.add((h >> 32) as i64);
        let hex: String = block_mask(h).iter().map(|b| format!("{b:02x}")).collect();
        let mask = p.add(format!("x{hex}"));
        terms.push(format!(
            "(('x' || encode(substring(bloom FROM ((({hi}::BIGINT & (octet_length(bloom) / 32 - 1)) * 32) + 1)::INT FOR 32), 'hex'))::BIT(256) & {mask}::TEXT::BIT(256)) = {mask}::TEXT::BIT(256)"
        ));
    }
    format!(
        " AND (octet_length(bloom) = 0 OR ({}))",
        terms.join(" AND ")
    )
}

/// The conditions every kind of search shares: host, run and the time
/// window, on `since_col` (at or after `since`) and `until_col` (before
/// `until`).
pub(crate) fn common_filters(
    opts: &SearchOptions,
    since_col: &str,
    until_col: &str,
    p: &mut Params,
    sql: &mut String,
) {
    if let Some(h) = &opts.host {
        sql.push_str(&format!(" AND host = {}", p.add(h.clone())));
    }
    if let Some(r) = &opts.run {
        sql.push_str(&format!(" AND run_id = {}", p.add(r.to_string())));
    }
    if let Some(t) = opts.since {
        sql.push_str(&format!(" AND {since_col} >= {}", p.add(t.as_nanos())));
    }
    if let Some(t) = opts.until {
        sql.push_str(&format!(" AND {until_col} < {}", p.add(t.as_nanos())));
    }
}

impl PgStore {
    fn chunk_metas(
        &self,
        run_id: Uuid,
        stream: Stream,
        after: Option<i64>,
    ) -> Result<Vec<ChunkMeta>> {
        Ok(self
            .c()?
            .q(
                "SELECT id, run_id, host, stream, part, crc FROM chunks
                 WHERE run_id = $1 AND stream = $2 AND part > $3 ORDER BY part",
                &[
                    &run_id.to_string(),
                    &i64::from(stream.as_u8()),
                    &after.unwrap_or(-1),
                ],
            )?
            .iter()
            .map(meta)
            .collect())
    }

    fn load_chunk(&self, meta: &ChunkMeta) -> Result<DecodedChunk> {
        let r = self
            .c()?
            .qo("SELECT data FROM chunks WHERE id = $1", &[&meta.id])?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "chunk {} of run {} is gone",
                    meta.part, meta.run_id
                ))
            })?;
        kit::decode_chunk(meta, r.get::<_, &[u8]>(0))
    }

    fn search_output(
        &self,
        opts: &SearchOptions,
        matcher: &Matcher,
        hits: &mut Vec<Hit>,
    ) -> Result<()> {
        let mut p = Params::default();
        let mut sql = String::from(
            "SELECT id, run_id, host, stream, part, crc, octet_length(bloom) FROM chunks WHERE true",
        );
        common_filters(opts, "t_max", "t_min", &mut p, &mut sql);
        if let Some(s) = opts.stream {
            // Combined output holds stdout and stderr both, so a search of
            // either looks at it too; its hits say `combined`.
            sql.push_str(&format!(
                " AND stream IN ({}, {})",
                p.add(i64::from(s.as_u8())),
                p.add(i64::from(Stream::Combined.as_u8()))
            ));
        }
        sql.push_str(&filter_condition(matcher.required_words(), &mut p));
        sql.push_str(" ORDER BY id DESC");
        let candidates = self.c()?.q(&sql, &p.refs())?;
        let mut built = Vec::new();
        for r in &candidates {
            let m = meta(r);
            let d = self.load_chunk(&m)?;
            if r.get::<_, i32>(6) == 0 {
                built.push((m.id, chunk::word_filter(&d.raw).to_bytes()));
            }
            if kit::output_hits(&d, &m, opts, matcher, hits)? {
                break;
            }
        }
        if !built.is_empty() && !self.read_only {
            // Best effort: a read-only connection still searches in full.
            if let Err(error) = self.store_filters(&built) {
                tracing::debug!(%error, "cannot store word filters built by search");
            }
        }
        Ok(())
    }

    fn store_filters(&self, filters: &[(i64, Vec<u8>)]) -> Result<()> {
        self.tx(|tx| {
            for (id, bloom) in filters {
                tx.x(
                    "UPDATE chunks SET bloom = $2 WHERE id = $1 AND octet_length(bloom) = 0",
                    &[id, bloom],
                )?;
            }
            Ok(())
        })
    }
}

impl Output for PgStore {
    fn put_chunks(&self, run_id: Uuid, host: &str, chunks: &[SealedChunk]) -> Result<()> {
        self.tx(|tx| put_chunks_tx(tx, run_id, host, chunks).map(|_| ()))
    }

    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<()> {
        // A gap is marked once a run has settled its cap (its final record).
        let gap = if cursor.gap_done() {
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
            &mut |m| self.load_chunk(m),
        )
    }

    fn search(&self, opts: &SearchOptions) -> Result<Vec<Hit>> {
        kit::search_kinds(
            opts,
            &mut |o, m, h| self.search_output(o, m, h),
            &mut |o, m, h| self.search_logs(o, m, h),
            &mut |o, m, h| self.search_spans(o, m, h),
        )
    }

    fn index_pending(&self, max_chunks: usize) -> Result<usize> {
        let metas: Vec<ChunkMeta> = self
            .c()?
            .q(
                "SELECT id, run_id, host, stream, part, crc FROM chunks
                 WHERE octet_length(bloom) = 0 ORDER BY id LIMIT $1",
                &[&(max_chunks as i64)],
            )?
            .iter()
            .map(meta)
            .collect();
        let mut built = Vec::with_capacity(metas.len());
        for m in &metas {
            let d = self.load_chunk(m)?;
            built.push((m.id, chunk::word_filter(&d.raw).to_bytes()));
        }
        self.store_filters(&built)?;
        Ok(built.len())
    }
}
