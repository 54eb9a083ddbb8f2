//! Fleet-wide throttle leases ([`crate::Throttles`]): who holds a slot of
//! each throttle and who waits, kept in the store so that a collector
//! restarted while slots are held loses no lease and grants no extra one.
//!
//! Two tables: `throttles` (a throttle's N, kept while anyone holds it or
//! waits for it) and `throttle_leases` (one row per holder or waiter;
//! `granted_ns` NULL while it waits, `seq` its order of arrival). Every
//! operation is one `BEGIN IMMEDIATE` transaction that first drops the
//! expired rows, then grants free slots to the heads of the queue, so two
//! collectors on one store, or racing requests, never grant more than N.

use crate::Store;
use crate::error::{Result, StoreError};
use plumb_model::throttle::{Lease, LeaseRequest, LeaseState, ThrottleView};
use plumb_model::{Timestamp, Uuid};
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

pub use crate::kit::MAX_HOLDER;
use crate::kit::{check_holder, check_throttle_name as check_name, ttl_ns};

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken
/// first, so the reads in `f` see what no other writer can change before
/// the commit.
fn immediate<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(v) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Drops the expired leases and places of every throttle, grants the
/// slots they freed, and forgets throttles nobody holds or waits for.
fn sweep(conn: &Connection, now: Timestamp) -> Result<u64> {
    let names: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT name FROM throttle_leases WHERE expires_ns <= ?1")?
        .query_map([now.as_nanos()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let dropped = conn.execute(
        "DELETE FROM throttle_leases WHERE expires_ns <= ?1",
        [now.as_nanos()],
    )?;
    for name in &names {
        grant(conn, name, now)?;
    }
    forget_idle(conn)?;
    Ok(dropped as u64)
}

fn forget_idle(conn: &Connection) -> Result<()> {
    conn.execute(
        "DELETE FROM throttles WHERE name NOT IN (SELECT name FROM throttle_leases)",
        [],
    )?;
    Ok(())
}

/// Grants the free slots of `name` to the first waiters in line.
fn grant(conn: &Connection, name: &str, now: Timestamp) -> Result<()> {
    let Some(slots) = slots_of(conn, name)? else {
        return Ok(());
    };
    let held: i64 = conn.query_row(
        "SELECT COUNT(*) FROM throttle_leases WHERE name = ?1 AND granted_ns IS NOT NULL",
        [name],
        |r| r.get(0),
    )?;
    let free = i64::from(slots) - held;
    if free > 0 {
        conn.execute(
            "UPDATE throttle_leases SET granted_ns = ?2
             WHERE name = ?1 AND holder IN (
                 SELECT holder FROM throttle_leases
                 WHERE name = ?1 AND granted_ns IS NULL ORDER BY seq LIMIT ?3)",
            params![name, now.as_nanos(), free],
        )?;
    }
    Ok(())
}

fn slots_of(conn: &Connection, name: &str) -> Result<Option<u32>> {
    Ok(conn
        .query_row("SELECT slots FROM throttles WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Where `holder` stands in `name`, or `None` when it has no row.
fn state(conn: &Connection, name: &str, holder: &str) -> Result<Option<LeaseState>> {
    let Some((seq, granted, expires)): Option<(i64, Option<i64>, i64)> = conn
        .query_row(
            "SELECT seq, granted_ns, expires_ns FROM throttle_leases WHERE name = ?1 AND holder = ?2",
            [name, holder],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let (holders, queued, ahead): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(granted_ns), COUNT(*) - COUNT(granted_ns),
                COALESCE(SUM(granted_ns IS NULL AND seq <= ?2), 0)
         FROM throttle_leases WHERE name = ?1",
        params![name, seq],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let slots = slots_of(conn, name)?.unwrap_or(0);
    Ok(Some(LeaseState {
        granted: granted.is_some(),
        position: if granted.is_some() { 0 } else { ahead as u32 },
        holders: holders as u32,
        slots,
        queued: queued as u32,
        expires: Timestamp::from_nanos(expires),
    }))
}

fn lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Lease)> {
    let run: Option<String> = r.get(2)?;
    Ok((
        r.get(0)?,
        Lease {
            holder: r.get(1)?,
            run_id: run.and_then(|s| s.parse::<Uuid>().ok()),
            node: r.get(3)?,
            pid: r.get(4)?,
            enqueued: Timestamp::from_nanos(r.get(5)?),
            granted: r.get::<_, Option<i64>>(6)?.map(Timestamp::from_nanos),
            expires: Timestamp::from_nanos(r.get(7)?),
        },
    ))
}

impl crate::backend::Throttles for Store {
    fn throttle_acquire(
        &self,
        name: &str,
        req: &LeaseRequest,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<LeaseState> {
        let ttl = crate::kit::check_acquire(name, req, ttl)?;
        immediate(self.conn(), |conn| {
            sweep(conn, now)?;
            match slots_of(conn, name)? {
                Some(held) if held != req.slots => {
                    return Err(StoreError::ThrottleConflict {
                        name: name.to_string(),
                        held,
                        asked: req.slots,
                    });
                }
                Some(_) => {}
                None => {
                    conn.execute(
                        "INSERT INTO throttles (name, slots) VALUES (?1, ?2)",
                        params![name, req.slots],
                    )?;
                }
            }
            let expires = now.as_nanos().saturating_add(ttl);
            let renewed = conn.execute(
                "UPDATE throttle_leases SET expires_ns = ?3 WHERE name = ?1 AND holder = ?2",
                params![name, req.holder, expires],
            )?;
            if renewed == 0 {
                conn.execute(
                    "INSERT INTO throttle_leases
                         (name, holder, seq, enqueued_ns, granted_ns, expires_ns, run_id, node, pid)
                     VALUES (?1, ?2,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM throttle_leases WHERE name = ?1),
                         ?3, NULL, ?4, ?5, ?6, ?7)",
                    params![
                        name,
                        req.holder,
                        now.as_nanos(),
                        expires,
                        req.run_id.map(|u| u.to_string()),
                        req.node,
                        req.pid
                    ],
                )?;
            }
            grant(conn, name, now)?;
            state(conn, name, &req.holder)?
                .ok_or_else(|| StoreError::Corrupt("a lease just written is gone".into()))
        })
    }

    fn throttle_renew(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<LeaseState> {
        check_name(name)?;
        check_holder(holder)?;
        let ttl = ttl_ns(ttl)?;
        immediate(self.conn(), |conn| {
            sweep(conn, now)?;
            let n = conn.execute(
                "UPDATE throttle_leases SET expires_ns = ?3 WHERE name = ?1 AND holder = ?2",
                params![name, holder, now.as_nanos().saturating_add(ttl)],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchLease {
                    name: name.to_string(),
                    holder: holder.to_string(),
                });
            }
            grant(conn, name, now)?;
            state(conn, name, holder)?
                .ok_or_else(|| StoreError::Corrupt("a lease just renewed is gone".into()))
        })
    }

    fn throttle_release(&self, name: &str, holder: &str, now: Timestamp) -> Result<bool> {
        check_name(name)?;
        check_holder(holder)?;
        immediate(self.conn(), |conn| {
            let n = conn.execute(
                "DELETE FROM throttle_leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            sweep(conn, now)?;
            grant(conn, name, now)?;
            forget_idle(conn)?;
            Ok(n > 0)
        })
    }

    fn throttle_expire(&self, now: Timestamp) -> Result<u64> {
        immediate(self.conn(), |conn| sweep(conn, now))
    }

    fn throttle_list(&self, now: Timestamp) -> Result<Vec<ThrottleView>> {
        let mut views: Vec<ThrottleView> = self
            .conn()
            .prepare_cached("SELECT name, slots FROM throttles ORDER BY name")?
            .query_map([], |r| {
                Ok(ThrottleView {
                    name: r.get(0)?,
                    slots: r.get(1)?,
                    holders: Vec::new(),
                    queue: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let rows: Vec<(String, Lease)> = self
            .conn()
            .prepare_cached(
                "SELECT name, holder, run_id, node, pid, enqueued_ns, granted_ns, expires_ns
                 FROM throttle_leases WHERE expires_ns > ?1
                 ORDER BY name, granted_ns IS NULL, COALESCE(granted_ns, 0), seq",
            )?
            .query_map([now.as_nanos()], lease)?
            .collect::<rusqlite::Result<_>>()?;
        for (name, l) in rows {
            if let Some(v) = views.iter_mut().find(|v| v.name == name) {
                if l.granted.is_some() {
                    v.holders.push(l);
                } else {
                    v.queue.push(l);
                }
            }
        }
        views.retain(|v| !v.holders.is_empty() || !v.queue.is_empty());
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::backend::Throttles;
    use plumb_model::Timestamp;
    use plumb_model::throttle::LeaseRequest;
    use std::time::Duration;

    /// Four connections to one file (as two collectors on one store
    /// would have), each asking and releasing as fast as it can: no
    /// answer and no listing ever shows more than N holders.
    #[test]
    fn racing_connections_never_grant_more_than_n() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    store.set_busy_timeout(Duration::from_secs(30)).unwrap();
                    let mut granted = 0;
                    for i in 0..40 {
                        let holder = format!("t{t}-{i}");
                        let req = LeaseRequest {
                            holder: holder.clone(),
                            slots: 3,
                            ttl_ms: None,
                            run_id: None,
                            node: format!("n{t}"),
                            pid: None,
                        };
                        let now = Timestamp::now();
                        let s = store
                            .throttle_acquire("x", &req, Duration::from_secs(60), now)
                            .unwrap();
                        assert!(s.holders <= 3, "{s:?}");
                        let listed = store.throttle_list(now).unwrap();
                        let held = listed.first().map_or(0, |v| v.holders.len());
                        assert!(held <= 3, "{listed:?}");
                        if s.granted {
                            granted += 1;
                        }
                        // Every other one leaves at once; the rest stay
                        // queued or holding until the end.
                        if i % 2 == 0 || s.granted {
                            store.throttle_release("x", &holder, now).unwrap();
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(granted >= 3, "some were granted: {granted}");
        let store = Store::open(dir.path()).unwrap();
        let v = store.throttle_list(Timestamp::now()).unwrap();
        assert!(v.first().is_none_or(|t| t.holders.len() <= 3), "{v:?}");
    }
}
