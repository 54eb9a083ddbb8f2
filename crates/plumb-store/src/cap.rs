//! The per-run output cap: keep the head and the tail, drop the middle.
//!
//! A run may write more output than anyone wants stored. Beyond its cap a
//! run keeps the first half of the cap (the head: how it started, its
//! configuration banner, its first error) and the newest bytes up to the
//! rest of the cap (the tail: how it ended). Everything between is dropped,
//! counted, and marked where it was (an [`OutputGap`] in the run record),
//! so `plumb logs`, search and the dashboard can say so at that place.
//!
//! The writer cuts the head exactly (see `writer.rs`): it seals the head's
//! chunks when the head is full and numbers later reads above the head's
//! last, so chunks of the head and of the tail never mix. While the run
//! goes on, whole chunks at the old end of the tail are dropped as new ones
//! arrive ([`drop_over_cap`] without `exact`); when the final run record is
//! stored, the oldest chunk left in the tail is cut at the front so that
//! head and tail hold exactly the cap ([`settle`]). Settling happens
//! wherever a final record lands: the recorder's own store, a spool
//! imported later, or a collector's store, so the cap holds on every path.

use crate::chunk;
use crate::error::{Result, StoreError};
use crate::kit;
use plumb_model::{OutputGap, Run, Uuid};
use rusqlite::{Connection, params};

/// Drops chunks of the tail of `run_id` (chunks whose reads come after
/// `gap.after_seq`), oldest first, until head and tail together hold at
/// most `gap.cap` bytes. Without `exact`, only whole chunks are dropped,
/// so up to one chunk more than the cap may remain; with it, the oldest
/// chunk kept is cut at the front so the total is the cap to the byte.
/// Returns the bytes dropped.
pub(crate) fn drop_over_cap(
    conn: &Connection,
    run_id: Uuid,
    gap: &OutputGap,
    exact: bool,
) -> Result<u64> {
    let id = run_id.to_string();
    let head: i64 = conn.query_row(
        "SELECT coalesce(sum(raw_bytes), 0) FROM chunks WHERE run_id = ?1 AND first_seq <= ?2",
        params![id, gap.after_seq as i64],
        |r| r.get(0),
    )?;
    // Newest first: what is kept is counted from the end.
    let tail: Vec<(i64, u64)> = {
        let mut st = conn.prepare_cached(
            "SELECT id, raw_bytes FROM chunks WHERE run_id = ?1 AND first_seq > ?2
             ORDER BY first_seq DESC, id DESC",
        )?;
        let rows = st.query_map(params![id, gap.after_seq as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let plan = kit::plan_over_cap(gap, head as u64, &tail, exact);
    for cid in &plan.delete {
        conn.execute("DELETE FROM chunks WHERE id = ?1", [cid])?;
        conn.execute("DELETE FROM chunk_data WHERE id = ?1", [cid])?;
    }
    if let Some((cid, n)) = plan.cut {
        cut_front(conn, cid, n)?;
    }
    Ok(plan.dropped)
}

/// Cuts the first `n` bytes off a stored chunk (fewer than it holds).
fn cut_front(conn: &Connection, cid: i64, n: usize) -> Result<()> {
    let (data, stream, part, crc): (Vec<u8>, u8, i64, i64) = conn.query_row(
        "SELECT d.data, c.stream, c.part, c.crc FROM chunk_data d JOIN chunks c ON c.id = d.id
         WHERE d.id = ?1",
        [cid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let decoded = chunk::decode(&data, crc as u32)?;
    let stream = plumb_model::Stream::from_u8(stream)
        .ok_or_else(|| StoreError::Corrupt(format!("chunk {cid} has unknown stream {stream}")))?;
    let sealed = kit::cut_front(&decoded, stream, part as u64, n);
    conn.execute(
        "UPDATE chunks SET first_seq = ?2, t_min = ?3, t_max = ?4, lines = ?5, raw_bytes = ?6,
           crc = ?7, bloom = ?8 WHERE id = ?1",
        params![
            cid,
            sealed.first_seq as i64,
            sealed.t_min.as_nanos(),
            sealed.t_max.as_nanos(),
            sealed.lines as i64,
            sealed.raw_bytes as i64,
            sealed.crc as i64,
            sealed.bloom,
        ],
    )?;
    conn.execute(
        "UPDATE chunk_data SET data = ?2 WHERE id = ?1",
        params![cid, sealed.data],
    )?;
    Ok(())
}

/// For a final run with a gap: drops what is over the cap, to the byte,
/// and returns the record with what was dropped counted (`None` when the
/// record needs no change). Idempotent: storing the same final record
/// again drops nothing more and counts the same.
///
/// Bytes dropped at the gap are those the program wrote (stdout and
/// stderr bytes in the record) that are neither stored nor lost otherwise
/// (`dropped_bytes` without the gap's share: bytes nothing could be
/// written to), so the count stays right when a record is stored again.
pub(crate) fn settle(conn: &Connection, run: &Run) -> Result<Option<Run>> {
    let Some(gap) = run.output.gap else {
        return Ok(None);
    };
    if !run.state.is_final() {
        return Ok(None);
    }
    drop_over_cap(conn, run.id, &gap, true)?;
    let stored: i64 = conn.query_row(
        "SELECT coalesce(sum(raw_bytes), 0) FROM chunks WHERE run_id = ?1",
        [run.id.to_string()],
        |r| r.get(0),
    )?;
    Ok(kit::settled_record(run, &gap, stored as u64))
}
