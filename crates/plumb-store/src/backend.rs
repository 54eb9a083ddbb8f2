//! What the collector and the CLI need from a store, as one trait, so a
//! server database (PostgreSQL) can stand beside the embedded SQLite store,
//! and the CLI can read a remote collector the same way it reads the local
//! store.

use crate::error::{Result, StoreError};
use crate::{OutputCursor, Replayed, RunFilter, RunSummary, SearchOptions, Store};
use plumb_model::telemetry::{Hit, LogLine, Trace};
use plumb_model::{Fingerprint, Run, RunState, Stream, Uuid};

/// Where replayed output goes: each read's stream, time and bytes, and the
/// gap over the output cap in its place.
pub type OutputSink<'a> = dyn FnMut(Replayed<'_>) -> std::io::Result<()> + 'a;

/// Reading runs, their output and fingerprints. Implemented by [`Store`]
/// (SQLite) and by the collector's HTTP client.
pub trait RunStore {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> std::result::Result<Vec<RunSummary>, Self::Error>;
    /// Resolves a run reference (id, unique prefix, `last`, `last~N`).
    fn resolve(&self, reference: &str) -> std::result::Result<Uuid, Self::Error>;
    /// The run with this id.
    fn get_run(&self, id: Uuid) -> std::result::Result<Run, Self::Error>;
    /// The fingerprint a run refers to, if stored.
    fn run_fingerprint(&self, run: &Run) -> std::result::Result<Option<Fingerprint>, Self::Error>;
    /// Output lines, log records and spans matching `opts.text`.
    fn search(&self, opts: &SearchOptions) -> std::result::Result<Vec<Hit>, Self::Error>;
    /// A trace (id or unique prefix) with its spans and log records.
    fn trace(&self, reference: &str) -> std::result::Result<Trace, Self::Error>;
    /// The log records a run's program sent (OTLP), oldest first.
    fn run_logs(&self, id: Uuid) -> std::result::Result<Vec<LogLine>, Self::Error>;
    /// Replays a run's output from `cursor` on, in production order.
    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> std::result::Result<(), Self::Error>;
}

impl RunStore for Store {
    type Error = StoreError;

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        Store::list_runs(self, filter)
    }
    fn resolve(&self, reference: &str) -> Result<Uuid> {
        Store::resolve(self, reference)
    }
    fn get_run(&self, id: Uuid) -> Result<Run> {
        Store::get_run(self, id)
    }
    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>> {
        Store::run_fingerprint(self, run)
    }
    fn search(&self, opts: &SearchOptions) -> Result<Vec<Hit>> {
        Store::search(self, opts)
    }
    fn trace(&self, reference: &str) -> Result<Trace> {
        Store::trace(self, reference)
    }
    fn run_logs(&self, id: Uuid) -> Result<Vec<LogLine>> {
        Store::run_logs(self, id, 0)
    }
    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<()> {
        Store::replay_output(self, run_id, only, cursor, out)
    }
}

impl Store {
    /// How many runs are stored in each state (states with none omitted).
    pub fn count_runs_by_state(&self) -> Result<Vec<(RunState, u64)>> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT state, count(*) FROM runs GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (state, n) = row?;
            if let Ok(s) = state.parse() {
                out.push((s, n as u64));
            }
        }
        Ok(out)
    }
}
