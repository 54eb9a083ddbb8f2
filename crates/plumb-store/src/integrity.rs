//! Same inputs, different outputs, read from any [`RunStore`]: the latest
//! runs compared by [`plumb_model::integrity::findings`], each finding
//! with the software difference between its two largest outcomes. Shared
//! by `plumb integrity` and the collector's job page.

use crate::{RunFilter, RunStore};
use plumb_model::integrity::{Finding, findings};
use serde::Serialize;

/// A finding with the environment difference between its two largest
/// outcomes' newest runs.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    /// The runs, their shared inputs and their outcomes.
    #[serde(flatten)]
    pub finding: Finding,
    /// How the software of the two runs compared differs (empty: the same,
    /// so look at the data, the arguments or nondeterminism).
    pub environment: Vec<plumb_model::diff::Difference>,
}

/// Compares the latest `last` runs (of `name`, or of every name) and
/// returns every group with equal inputs and more than one outcome.
pub fn flagged<S: RunStore + ?Sized>(
    store: &S,
    name: Option<&str>,
    last: usize,
) -> Result<Vec<Flagged>, S::Error> {
    let summaries = store.list_runs(&RunFilter {
        name: name.map(str::to_string),
        limit: last,
        ..Default::default()
    })?;
    let mut runs = Vec::with_capacity(summaries.len());
    for s in summaries {
        runs.push(store.get_run(s.id)?);
    }
    let mut out = Vec::new();
    for finding in findings(&runs) {
        let pick = |i: usize| finding.outcomes[i].runs[0].id;
        let (x, y) = (pick(0), pick(1));
        let run_x = runs.iter().find(|r| r.id == x);
        let run_y = runs.iter().find(|r| r.id == y);
        let environment = match (run_x, run_y) {
            (Some(rx), Some(ry)) => {
                match (store.run_fingerprint(rx)?, store.run_fingerprint(ry)?) {
                    (Some(fx), Some(fy)) => plumb_model::diff::diff_fingerprints(&fx, &fy),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        out.push(Flagged {
            finding,
            environment,
        });
    }
    Ok(out)
}
