//! What the collector and the CLI need from a store, as traits, so that a
//! server database (PostgreSQL) can stand beside the embedded SQLite store.

use crate::Store;
use crate::error::Result;
use plumb_model::RunState;

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
