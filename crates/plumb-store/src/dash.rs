//! What a page of the web dashboard's run list asks for and gets back
//! ([`RunQuery`], [`RunsPage`], [`PageKey`]); the queries are
//! [`Runs::runs_page`](crate::Runs::runs_page) and its neighbours.
//!
//! Pages walk the `runs_started` index from a `(started_ns, id)` key rather
//! than with `OFFSET`, so page 20,000 of a million runs costs what page 1
//! costs, and nothing counts the whole table.

use crate::RunSummary;
use crate::backend::Runs;
use crate::error::Result;
use plumb_model::chart::{self, RunsChart, StateCount};
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
    /// Only runs started before this time.
    #[serde(default)]
    pub until: Option<Timestamp>,
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

/// The store's runs-per-state rollup buckets: 5 minutes, so every interval
/// of [`chart::INTERVALS`] is made of whole buckets.
pub const COUNT_BUCKET_NS: i64 = 300_000_000_000;

/// How many runs a count reads one by one when the filter cannot use the
/// rollup (a host or a tag); past it the count is partial.
pub const DIRECT_COUNT_CAP: usize = 100_000;

/// How far back a runs chart looks when the filter sets no `since`.
pub const CHART_LOOKBACK_NS: i64 = 30 * 86_400_000_000_000;

/// What [`Runs::run_counts`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunCounts {
    /// Runs per [`COUNT_BUCKET_NS`] bucket by state (a bucket and state
    /// may appear more than once: add them up).
    pub rows: Vec<StateCount>,
    /// Set when only the newest runs were counted (see
    /// [`DIRECT_COUNT_CAP`]): the start of the oldest one counted.
    pub partial_from: Option<Timestamp>,
}

/// The runs-over-time chart of a filter: the runs `q` matches (its
/// `since`, `until`, `after` and `limit` aside) per interval by state,
/// from `q.since` (else from the first bucket with a run in the last 30
/// days) to `q.until` (else `now`), the interval chosen from that range
/// ([`chart::choose_interval`]). Reads the store's rollup, not the runs,
/// unless the filter names a host or a tag.
pub fn runs_chart<B: Runs + ?Sized>(store: &B, q: &RunQuery, now: Timestamp) -> Result<RunsChart> {
    let until = q.until.unwrap_or(now);
    let from = q
        .since
        .unwrap_or(Timestamp::from_nanos(until.as_nanos() - CHART_LOOKBACK_NS));
    let counts = store.run_counts(q, from, until)?;
    let from = match q.since {
        Some(s) => s,
        None => counts
            .rows
            .iter()
            .filter(|r| r.n > 0)
            .map(|r| r.bucket_ns)
            .min()
            .map(Timestamp::from_nanos)
            // Nothing: the last day, empty.
            .unwrap_or(Timestamp::from_nanos(until.as_nanos() - 86_400_000_000_000))
            // At least an hour, so a first run a minute ago is not one
            // bar filling the chart.
            .min(Timestamp::from_nanos(until.as_nanos() - 3_600_000_000_000)),
    };
    let interval = chart::choose_interval(until.as_nanos() - from.as_nanos());
    let mut c = chart::bucket(&counts.rows, from, until, interval);
    c.partial_from = counts.partial_from;
    Ok(c)
}

/// A run of a name as a job's history draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// The run.
    pub id: Uuid,
    /// Its state.
    pub state: RunState,
    /// When it started.
    pub started: Timestamp,
    /// When it ended, if it has.
    pub ended: Option<Timestamp>,
}
