//! What a merged timeline reads beyond runs: every OTLP log record and
//! span in a time window, whichever run or source sent it
//! ([`Timeline`](crate::backend::Timeline)).

use crate::Store;
use crate::error::{Result, StoreError};
use crate::telemetry::decode_log_chunk;
use plumb_model::telemetry::{LogLine, Span};
use plumb_model::{Timestamp, Uuid};
use rusqlite::params;

impl crate::backend::Timeline for Store {
    fn logs_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        let (since, until) = (since.as_nanos(), until.as_nanos());
        // Chunks overlapping the window, oldest first; their records are
        // then kept by their own time.
        let mut st = self.conn().prepare(
            "SELECT c.id, c.source, c.run_id, c.crc, d.data, c.service, c.host FROM log_chunks c
             JOIN log_chunk_data d ON d.id = c.id
             WHERE c.t_max >= ?1 AND c.t_min < ?2 ORDER BY c.t_min, c.id",
        )?;
        let mut rows = st.query(params![since, until])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (id, source, run): (i64, String, Option<String>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            let crc = r.get::<_, i64>(3)? as u32;
            let data: Vec<u8> = r.get(4)?;
            let (service, host): (String, String) = (r.get(5)?, r.get(6)?);
            let src = crate::kit::LogSource {
                source,
                run_id: run.and_then(|s| Uuid::parse_str(&s).ok()),
                service,
                host,
            };
            let d = decode_log_chunk(id, &data, crc)?;
            crate::kit::log_lines(&d, &src, Some((since, until)), 0, &mut out);
        }
        out.sort_by_key(|l| l.time);
        if limit > 0 {
            out.truncate(limit);
        }
        Ok(out)
    }

    fn spans_between(&self, since: Timestamp, until: Timestamp, limit: usize) -> Result<Vec<Span>> {
        let mut st = self.conn().prepare(
            "SELECT trace_id, span_id, record FROM spans
             WHERE start_ns >= ?1 AND start_ns < ?2 ORDER BY start_ns, span_id LIMIT ?3",
        )?;
        let limit = if limit == 0 { -1 } else { limit as i64 };
        let rows = st.query_map(params![since.as_nanos(), until.as_nanos(), limit], |r| {
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
}
