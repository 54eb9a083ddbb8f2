//! [`Leases`](crate::Leases) on SQLite.

use crate::Store;
use crate::error::Result;
use plumb_model::Timestamp;
use rusqlite::{OptionalExtension, params};

impl crate::backend::Leases for Store {
    fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<bool> {
        let until = now
            .as_nanos()
            .saturating_add(ttl.as_nanos().min(i64::MAX as u128) as i64);
        let n = self.conn().execute(
            "INSERT INTO leases (name, holder, expires_ns) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
             WHERE leases.holder = excluded.holder OR leases.expires_ns <= ?4",
            params![name, holder, until, now.as_nanos()],
        )?;
        Ok(n == 1)
    }

    fn step_down(&self, name: &str, holder: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            params![name, holder],
        )? == 1)
    }

    fn leader(&self, name: &str) -> Result<Option<(String, Timestamp)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT holder, expires_ns FROM leases WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, Timestamp::from_nanos(r.get(1)?))),
            )
            .optional()?)
    }
}
