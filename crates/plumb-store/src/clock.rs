//! Clock estimates: what each node's agent measured of its clock against
//! the collector's ([`plumb_model::clock::Estimate`]), one row per probe,
//! kept for [`KEEP_NS`] per node. The collector decides nothing here; the
//! latest row of each node is what `plumb clock` shows, and the rows over
//! time are what a merged timeline will correct host timestamps with.

use crate::Store;
use crate::error::Result;
use plumb_model::Timestamp;
use plumb_model::clock::Estimate;
use rusqlite::params;

/// How long estimates are kept per node (by arrival time, collector
/// clock): a day, 8,640 rows per node at one probe every 10 s.
pub const KEEP_NS: i64 = 24 * 3600 * 1_000_000_000;

/// One stored estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockRow {
    /// The node.
    pub node: String,
    /// When it arrived (the collector's clock).
    pub received: Timestamp,
    /// What the node said.
    pub estimate: Estimate,
}

const COLUMNS: &str =
    "node, latest_ns, received_ns, at_ns, offset_ns, error_ns, delay_ns, drift_ppm, samples";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClockRow> {
    Ok(ClockRow {
        node: r.get(0)?,
        received: Timestamp::from_nanos(r.get(2)?),
        estimate: Estimate {
            latest: Timestamp::from_nanos(r.get(1)?),
            at: Timestamp::from_nanos(r.get(3)?),
            offset_ns: r.get(4)?,
            error_ns: r.get(5)?,
            delay_ns: r.get(6)?,
            drift_ppm: r.get(7)?,
            samples: r.get(8)?,
        },
    })
}

impl crate::backend::Clocks for Store {
    fn put_clock_estimate(&self, node: &str, e: &Estimate, received: Timestamp) -> Result<()> {
        let tx = self.conn().unchecked_transaction()?;
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO clock_estimates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                node,
                e.latest.as_nanos(),
                received.as_nanos(),
                e.at.as_nanos(),
                e.offset_ns,
                e.error_ns,
                e.delay_ns,
                e.drift_ppm,
                e.samples
            ],
        )?;
        tx.execute(
            "DELETE FROM clock_estimates WHERE node = ?1 AND received_ns < ?2",
            params![node, received.as_nanos() - KEEP_NS],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn clock_latest(&self) -> Result<Vec<ClockRow>> {
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM clock_estimates c
             WHERE latest_ns = (SELECT MAX(latest_ns) FROM clock_estimates WHERE node = c.node)
             ORDER BY node"
        ))?;
        let rows = st
            .query_map([], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn clock_history(&self, node: &str, since: Timestamp, limit: usize) -> Result<Vec<ClockRow>> {
        let mut st = self.conn().prepare_cached(&format!(
            "SELECT {COLUMNS} FROM clock_estimates
             WHERE node = ?1 AND received_ns >= ?2 ORDER BY received_ns LIMIT ?3"
        ))?;
        let rows = st
            .query_map(params![node, since.as_nanos(), limit as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
