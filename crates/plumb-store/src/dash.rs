//! What a page of the web dashboard's run list asks for and gets back
//! ([`RunQuery`], [`RunsPage`], [`PageKey`]); the queries are
//! [`Runs::runs_page`](crate::Runs::runs_page) and its neighbours.
//!
//! Pages walk the `runs_started` index from a `(started_ns, id)` key rather
//! than with `OFFSET`, so page 20,000 of a million runs costs what page 1
//! costs, and nothing counts the whole table.

use crate::RunSummary;
use plumb_model::{RunState, Timestamp, Uuid};
use serde::{Deserialize, Serialize};

/// Which runs a dashboard page shows, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Exact run name.
    pub name: Option<String>,
    /// Exact host name.
    pub host: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs with all these tags.
    pub tags: Vec<(String, String)>,
    /// Only runs started at or after this time.
    pub since: Option<Timestamp>,
    /// Words that must all appear in the run name (case-insensitive).
    pub text: Vec<String>,
    /// Start after this key (exclusive): the `next` of the previous page.
    pub after: Option<PageKey>,
    /// Page size.
    pub limit: usize,
}

/// The position of a run in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKey {
    /// Start time of the last run shown, ns.
    pub started_ns: i64,
    /// Its id (ties on start time are broken by id).
    pub id: String,
}

impl PageKey {
    /// The key as it travels in a URL: `<started_ns>_<id>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.started_ns, self.id)
    }

    /// Parses [`PageKey::encode`]'s form.
    pub fn decode(s: &str) -> std::result::Result<PageKey, String> {
        let bad =
            || format!("page key `{s}` is not one this collector gave (expected <ns>_<run id>)");
        let (ns, id) = s.split_once('_').ok_or_else(bad)?;
        let started_ns = ns.parse().map_err(|_| bad())?;
        Uuid::parse_str(id).map_err(|_| bad())?;
        Ok(PageKey {
            started_ns,
            id: id.to_string(),
        })
    }
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// The key of the next page, when there may be one.
    pub next: Option<String>,
}
