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

impl Store {
    /// Stores `node`'s estimate, arrived at `received`, once per probe (a
    /// heartbeat repeating the last estimate adds nothing), and drops that
    /// node's estimates older than [`KEEP_NS`].
    pub fn put_clock_estimate(&self, node: &str, e: &Estimate, received: Timestamp) -> Result<()> {
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

    /// The latest estimate of every node that sent one, by node name.
    pub fn clock_latest(&self) -> Result<Vec<ClockRow>> {
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

    /// `node`'s estimates that arrived from `since` on, oldest first, at
    /// most `limit`.
    pub fn clock_history(
        &self,
        node: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClockRow>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(latest: i64, offset_ns: i64) -> Estimate {
        Estimate {
            offset_ns,
            error_ns: 50_000,
            delay_ns: 90_000,
            at: Timestamp::from_nanos(latest - 1_000),
            latest: Timestamp::from_nanos(latest),
            drift_ppm: Some(1.5),
            samples: 3,
        }
    }

    #[test]
    fn one_row_per_probe_latest_per_node_and_a_day_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let day = KEEP_NS;
        let t0 = 1_700_000_000_000_000_000i64;
        store
            .put_clock_estimate("a", &estimate(t0, 5), Timestamp::from_nanos(t0))
            .unwrap();
        // The same probe again, as the next heartbeat repeats it.
        store
            .put_clock_estimate("a", &estimate(t0, 5), Timestamp::from_nanos(t0 + 10))
            .unwrap();
        store
            .put_clock_estimate("b", &estimate(t0, -7), Timestamp::from_nanos(t0))
            .unwrap();
        assert_eq!(
            store
                .clock_history("a", Timestamp::from_nanos(0), 100)
                .unwrap()
                .len(),
            1
        );
        store
            .put_clock_estimate(
                "a",
                &estimate(t0 + day + 1, 9),
                Timestamp::from_nanos(t0 + day + 1),
            )
            .unwrap();
        let a = store
            .clock_history("a", Timestamp::from_nanos(0), 100)
            .unwrap();
        assert_eq!(a.len(), 1, "the day-old one is gone: {a:?}");
        let latest = store.clock_latest().unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(
            (latest[0].node.as_str(), latest[0].estimate.offset_ns),
            ("a", 9)
        );
        assert_eq!(latest[1].estimate, estimate(t0, -7));
    }
}
