//! The storage boundary: what the collector and the CLI need from a store,
//! as one trait per concern, so a server database (PostgreSQL) can stand
//! beside the embedded SQLite [`Store`] without anything above this crate
//! changing.
//!
//! Every method returns [`StoreError`], whose [`ErrorKind`](crate::ErrorKind)
//! is backend-neutral; a backend reads the kind from its own codes when it
//! makes the error. [`Backend`] is every concern together: the collector
//! holds `dyn Backend` and never names SQLite. The behaviour each backend
//! must show is one test suite, `plumb-store-conformance`, run against
//! every backend.

use crate::alerts::{AlertRow, JobOutcomes};
use crate::bench::BenchRow;
use crate::chunk::SealedChunk;
use crate::clock::ClockRow;
use crate::dash::{JobRun, RunCounts, RunQuery, RunsPage};
use crate::error::{Result, StoreError};
use crate::health::HealthRow;
use crate::insights::{Drained, NewOccurrence};
use crate::nodes::NodeRow;
use crate::spool::{ImportError, ImportStats};
use crate::telemetry::{Ingested, PreparedLogs, prepare_logs};
use crate::tokens::TokenInfo;
use crate::{OutputCursor, Replayed, RunFilter, RunSummary, SearchOptions, Store};
use plumb_model::chart::RunsChart;
use plumb_model::clock::Estimate;
use plumb_model::insights::{
    DurationStats, ErrorGroup, ErrorGroupDetail, ErrorQuery, ErrorStatus, RunDuration, SlowConfig,
    SlowRun,
};
use plumb_model::node::{NodeReport, NodeState, NodeTransition};
use plumb_model::stack::StackSnapshot;
use plumb_model::telemetry::{Hit, LogBatch, LogLine, MetricPoint, Span, Trace};
use plumb_model::throttle::{LeaseRequest, LeaseState, ThrottleView};
use plumb_model::{Exception, Fingerprint, Run, RunState, Stream, Timestamp, Uuid};
use std::collections::HashSet;

/// Where replayed output goes: each read's stream, time and bytes, and the
/// gap over the output cap in its place.
pub type OutputSink<'a> = dyn FnMut(Replayed<'_>) -> std::io::Result<()> + 'a;

/// Run records, their fingerprints, and finding runs: what `plumb run`
/// records and every run list reads.
pub trait Runs {
    /// Inserts or replaces a run record (by id), with its tags.
    fn put_run(&self, run: &Run) -> Result<()>;

    /// Inserts or replaces many run records in one transaction.
    fn put_runs(&self, runs: &[Run]) -> Result<()>;

    /// Stores a fingerprint under its hash (once).
    fn put_fingerprint(&self, hash: &str, fp: &Fingerprint) -> Result<()>;

    /// The fingerprint with this hash, if stored.
    fn get_fingerprint(&self, hash: &str) -> Result<Option<Fingerprint>>;

    /// The fingerprint a run refers to, if it has one and it is stored.
    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>>;

    /// The run with this id.
    fn get_run(&self, id: Uuid) -> Result<Run>;

    /// Resolves a run reference: a full id, a unique prefix of one (with or
    /// without hyphens, at least 4 hex digits), `last`, or `last~N` (the Nth
    /// run before the last).
    fn resolve(&self, reference: &str) -> Result<Uuid>;

    /// Runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;

    /// How many runs are stored.
    fn count_runs(&self) -> Result<u64>;

    /// How many runs are stored in each state (states with none omitted).
    fn count_runs_by_state(&self) -> Result<Vec<(RunState, u64)>>;

    /// One page of runs matching `q`, newest first.
    fn runs_page(&self, q: &RunQuery) -> Result<RunsPage>;

    /// Runs matching `q` (its `since`, `until`, `after` and `limit` aside)
    /// that started in `[from, until)`, per
    /// [`COUNT_BUCKET_NS`](crate::dash::COUNT_BUCKET_NS) bucket by state,
    /// whole buckets from the one holding `from`. From the rollup kept with
    /// every run write when the filter names no host or tag; else from the
    /// newest [`DIRECT_COUNT_CAP`](crate::dash::DIRECT_COUNT_CAP) runs, the
    /// answer saying where it stopped.
    fn run_counts(&self, q: &RunQuery, from: Timestamp, until: Timestamp) -> Result<RunCounts>;

    /// The newest `limit` runs named `name`, oldest first.
    fn job_runs(&self, name: &str, limit: usize) -> Result<Vec<JobRun>>;

    /// The run of the same name that started last before `run_id` did.
    fn previous_run(&self, run_id: Uuid) -> Result<Option<Uuid>>;

    /// Which of `ids` are stored runs (log records of programs outside any
    /// run carry ids that are not).
    fn existing_runs(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>>;

    /// Attaches a stack snapshot to a stored run, after its record (a
    /// fleet-wide `plumb stack`, the automatic evidence of a slow run).
    /// [`Runs::get_run`] returns it in `Run.snapshots` after the recorder's
    /// own, oldest first, and a later record of the run (the recorder's
    /// final one) keeps it. At most [`crate::MAX_ATTACHED_SNAPSHOTS`] are
    /// kept per run, the oldest dropped first. A run not stored is
    /// `NotFound`.
    fn attach_snapshot(&self, run_id: Uuid, snapshot: &StackSnapshot) -> Result<()>;

    /// Imports a body of spool frames (the format of a spool file) in one
    /// transaction: all of it or, on any bad frame, nothing. Output chunks
    /// and fingerprints belong to the run record before them. Idempotent:
    /// a repeated body stores nothing new.
    fn import_frames(&self, bytes: &[u8]) -> std::result::Result<ImportStats, ImportError>;
}

/// Programs' output: stored as sealed chunks, replayed in order, searched
/// with the per-chunk word filters pushed down.
pub trait Output {
    /// Stores output chunks of a run. Chunks already stored (same run,
    /// stream and part) are skipped, so replays are harmless.
    fn put_chunks(&self, run_id: Uuid, host: &str, chunks: &[SealedChunk]) -> Result<()>;

    /// Replays a run's output in the order it was produced, calling `out`
    /// with each read's stream, time and bytes, and with the gap where
    /// output over the run's cap was dropped (once, in its place). With
    /// `only`, one stream. `cursor` carries the position between calls
    /// (for following a live run); pass `OutputCursor::default()` to start
    /// at the beginning.
    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<()>;

    /// Records matching `opts.text`: lines of recorded output (newest
    /// chunks first), then log records (newest chunks first), then spans
    /// (newest first), of the kinds `opts` wants, at most `opts.limit`.
    fn search(&self, opts: &SearchOptions) -> Result<Vec<Hit>>;

    /// Builds and stores the word filters of up to `max_chunks` chunks that
    /// were stored without one (see [`chunk::IndexPolicy`]); returns how many
    /// it indexed. Search does this on its own for the chunks it scans; this
    /// lets a quiet moment do it ahead of a search.
    fn index_pending(&self, max_chunks: usize) -> Result<usize>;
}

/// What programs send over OTLP: log records, spans and metric points.
pub trait Telemetry {
    /// Stores log batches in one transaction; see [`prepare_logs`].
    fn put_logs(&self, batches: &[LogBatch]) -> Result<Ingested> {
        let counts = self.put_prepared_logs(&[prepare_logs(batches)])?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    /// Stores prepared log records of several requests in one transaction,
    /// skipping records already stored. Returns the counts per request, in
    /// order.
    fn put_prepared_logs(&self, requests: &[PreparedLogs]) -> Result<Vec<Ingested>>;

    /// Stores spans (once each: a retried span is skipped). Returns how many
    /// were new.
    fn put_spans(&self, spans: &[Span]) -> Result<usize>;

    /// Stores metric points (once each per name, series and time). Returns
    /// how many were new.
    fn put_metric_points(&self, points: &[MetricPoint]) -> Result<usize>;

    /// Log lines of a run, oldest first, at most `limit` (0: all).
    fn run_logs(&self, run_id: Uuid, limit: usize) -> Result<Vec<LogLine>>;

    /// Log lines of a source that is not a run (`service@host`), oldest
    /// first, at most `limit` (0: all).
    fn source_logs(&self, source: &str, limit: usize) -> Result<Vec<LogLine>>;

    /// Spans of a run, by start time.
    fn run_spans(&self, run_id: Uuid) -> Result<Vec<Span>>;

    /// Spans of a trace, by start time.
    fn trace_spans(&self, trace_id: &str) -> Result<Vec<Span>>;

    /// Points of a metric at or after `since`, oldest first, at most
    /// `limit` (0: all).
    fn metric_points(
        &self,
        name: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<MetricPoint>>;

    /// Number of log records stored.
    fn count_log_records(&self) -> Result<u64>;

    /// Whether a run has any log records or spans (used to say where to
    /// look for them).
    fn run_has_telemetry(&self, run_id: Uuid) -> Result<bool>;

    /// The trace id a reference names: a trace id, or a unique prefix of
    /// one (at least 4 hex digits), among the stored spans. A full id with
    /// no span stored still names its trace when log records carry it.
    fn resolve_trace(&self, reference: &str) -> Result<String>;

    /// A trace: its spans and the log records made inside it (those whose
    /// line carries its `trace_id=`), found by a word search of the log
    /// chunks around the trace's time, so the word filters skip the rest.
    fn trace(&self, reference: &str) -> Result<Trace>;
}

/// Node agents' heartbeats and the states detected from them.
pub trait Nodes {
    /// Records a heartbeat that arrived at `received`: the report replaces
    /// the previous one and the inter-arrival time joins the window. A
    /// first heartbeat creates the node in `initial` state and records that
    /// transition. Returns the node as now stored.
    fn put_node_report(
        &self,
        report: &NodeReport,
        received: Timestamp,
        initial: NodeState,
    ) -> Result<NodeRow>;

    /// Moves a node to `to` at `at`, recording the transition; does nothing
    /// when it is already in that state. Returns whether it changed.
    fn set_node_state(&self, name: &str, to: NodeState, at: Timestamp, phi: f64) -> Result<bool>;

    /// Every node, by name.
    fn nodes(&self) -> Result<Vec<NodeRow>>;

    /// One node.
    fn node(&self, name: &str) -> Result<Option<NodeRow>>;

    /// State transitions, oldest first: of one node or all, at most `limit`
    /// (the most recent ones).
    fn node_transitions(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeTransition>>;

    /// The transitions of node `name` that a chart of `[from, until)`
    /// shades, oldest first: every one in the range and, before them, the
    /// last one before `from` (the state it was in at `from`). At most
    /// `limit` in the range (the newest); when there are more, the one
    /// before is left out too. Two bounded index walks.
    fn node_transitions_between(
        &self,
        name: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<NodeTransition>>;

    /// Changes of software fingerprints (of one node or all) that arrived
    /// from `since` on, newest first, at most `limit`. A change is kept
    /// when a heartbeat's fingerprint differs from the node's previous
    /// one; [`crate::nodes::ENV_CHANGES_KEEP`] per node.
    fn env_changes(
        &self,
        node: Option<&str>,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::nodes::EnvChange>>;

    /// Records a fleet-wide preflight (replacing one with its id), keeping
    /// the newest [`crate::nodes::PREFLIGHTS_KEEP`].
    fn put_preflight(&self, p: &crate::nodes::PreflightRecord) -> Result<()>;

    /// The newest preflights first, at most `limit`.
    fn preflights(&self, limit: usize) -> Result<Vec<crate::nodes::PreflightRecord>>;

    /// One preflight.
    fn preflight(&self, id: Uuid) -> Result<Option<crate::nodes::PreflightRecord>>;
}

/// Alert rules, the alerts raised from them, and the samples they read.
pub trait Alerts {
    /// Every stored alert (pending, firing and kept resolved ones).
    fn alert_rows(&self) -> Result<Vec<AlertRow>>;

    /// Inserts or replaces alerts (by fingerprint) and deletes others, in
    /// one transaction: one evaluation's outcome is stored whole or not at
    /// all.
    fn put_alert_rows(&self, rows: &[AlertRow], delete: &[String]) -> Result<()>;

    /// Forgets resolved alerts that ended before `before`, and all but the
    /// `keep` most recent resolved ones, so the history stays bounded.
    fn prune_resolved_alerts(&self, before: Timestamp, keep: usize) -> Result<usize>;

    /// Stores the effective rules (JSON), replacing the previous ones.
    fn set_alert_rules(&self, json: &str) -> Result<()>;

    /// The effective rules as last stored (JSON), if any.
    fn alert_rules(&self) -> Result<Option<String>>;

    /// Records a disk sample unless the mount's last one is less than
    /// `min_gap_ns` older, then drops samples older than `window_start` and
    /// all but the `keep` newest of the mount. Returns whether it was
    /// recorded.
    #[allow(clippy::too_many_arguments)]
    fn add_disk_sample(
        &self,
        node: &str,
        mount: &str,
        at: Timestamp,
        available: u64,
        total: u64,
        min_gap_ns: i64,
        window_start: Timestamp,
        keep: usize,
    ) -> Result<bool>;

    /// A mount's samples `(time, available bytes)`, oldest first.
    fn disk_samples(&self, node: &str, mount: &str) -> Result<Vec<(Timestamp, u64)>>;

    /// Drops the samples of mounts no node reports any more.
    fn forget_disk_samples_before(&self, before: Timestamp) -> Result<usize>;

    /// For every run name with a run started since `since`, the outcomes of
    /// its `last` most recent finished runs.
    fn job_outcomes(&self, since: Timestamp, last: u32) -> Result<Vec<JobOutcomes>>;
}

/// API tokens and dashboard sessions, by hash (never the secret).
pub trait Tokens {
    /// Stores a token's hash with its role and label.
    fn add_token(&self, hash: &[u8; 32], role: &str, name: &str) -> Result<()>;

    /// Every stored token, oldest first.
    fn tokens(&self) -> Result<Vec<TokenInfo>>;

    /// Deletes the token with this hash, so it stops working (a running
    /// collector rereads its tokens every second). Returns whether it
    /// existed.
    /// Its dashboard sessions go with it.
    fn delete_token(&self, hash: &[u8; 32]) -> Result<bool>;

    /// Stores a dashboard session (the hash of its id) opened with the
    /// token whose hash is `token`.
    fn add_session(&self, hash: &[u8; 32], token: &[u8; 32]) -> Result<()>;

    /// Deletes a dashboard session (logging out). Returns whether it
    /// existed.
    fn delete_session(&self, hash: &[u8; 32]) -> Result<bool>;

    /// The (session hash, role) of every session opened since `since` whose
    /// token still exists.
    fn session_hashes(&self, since: Timestamp) -> Result<Vec<([u8; 32], String)>>;

    /// The (hash, role) of every stored token.
    fn token_hashes(&self) -> Result<Vec<([u8; 32], String)>>;
}

/// Error groups and run-duration statistics (slow runs).
pub trait Insights {
    /// Files occurrences in one transaction; returns how many were new
    /// (occurrences whose key was stored before are skipped).
    fn record_error_occurrences(&self, occurrences: &[NewOccurrence]) -> Result<usize>;

    /// Takes up to `limit` queued failed runs, files the exception of each
    /// that has one under `fingerprint(exception)`, and removes them from
    /// the queue, in one transaction. The fingerprint function is passed in
    /// so that grouping always uses the current parser's fingerprint, even
    /// for runs recorded by an older plumb.
    fn drain_error_queue(
        &self,
        limit: usize,
        fingerprint: &dyn Fn(&Exception) -> String,
    ) -> Result<Drained>;

    /// Failed runs waiting to be grouped.
    fn error_queue_len(&self) -> Result<u64>;

    /// Resolves groups with no occurrence for `quiet_s` seconds before
    /// `now` (their resolution time is the end of the quiet period);
    /// returns how many.
    fn auto_resolve_error_groups(&self, now: Timestamp, quiet_s: u64) -> Result<usize>;

    /// The full fingerprint of the one error group whose fingerprint starts
    /// with `prefix` (as run ids take unique prefixes); `None` when no group
    /// does, an [`StoreError::Ambiguous`] error naming some when several do.
    fn resolve_error_fingerprint(&self, prefix: &str) -> Result<Option<String>>;

    /// Marks a group resolved at `at`; `fingerprint` may be a unique
    /// prefix. Returns false when there is no such group.
    fn resolve_error_group(&self, fingerprint: &str, at: Timestamp) -> Result<bool>;

    /// Groups matching `q`, most recently seen first.
    fn error_groups(&self, q: &ErrorQuery) -> Result<Vec<ErrorGroup>>;

    /// One group (by fingerprint or a unique prefix of one) with its latest
    /// `recent` occurrences, counts per host and its sample exception;
    /// `None` when there is no such group.
    fn error_group(
        &self,
        fingerprint: &str,
        now: Timestamp,
        new_window_s: u64,
        recent: usize,
    ) -> Result<Option<ErrorGroupDetail>>;

    /// Groups by status and the occurrences of all groups, for `/metrics`.
    fn error_group_counts(
        &self,
        now: Timestamp,
        new_window_s: u64,
    ) -> Result<(Vec<(ErrorStatus, u64)>, u64)>;

    /// When a group's occurrences happened in `[from, until)`, newest
    /// first, at most `limit` of them (an index range, not the group).
    fn error_occurrence_times(
        &self,
        fingerprint: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timestamp>>;

    /// Occurrences per UTC day of each group in `fingerprints` (full
    /// fingerprints) over the `days` days from `from` (the start of a UTC
    /// day), in one query of the per-day rollup kept as occurrences are
    /// filed: (fingerprint, start of the day, count) for each group and day
    /// with any, in no particular order.
    fn error_day_counts(
        &self,
        fingerprints: &[String],
        from: Timestamp,
        days: usize,
    ) -> Result<Vec<(String, Timestamp, u64)>>;

    /// Median and 95th percentile duration of the latest `window`
    /// successful runs named `name`.
    fn duration_stats(&self, name: &str, window: usize) -> Result<DurationStats>;

    /// Runs in progress at `now` that have been running longer than
    /// `config.factor` x the p95 of their name (names with at least
    /// `config.min_history` successful runs), highest factor first.
    fn slow_runs(&self, now: Timestamp, config: &SlowConfig) -> Result<Vec<SlowRun>>;

    /// A run's duration (elapsed so far while it runs) against its name's
    /// statistics.
    fn run_duration(&self, run_id: Uuid, now: Timestamp, window: usize) -> Result<RunDuration>;
}

/// Clock estimates the node agents send: one row per probe, a day kept.
pub trait Clocks {
    /// Stores `node`'s estimate, arrived at `received`, once per probe (a
    /// heartbeat repeating the last estimate adds nothing), and drops that
    /// node's estimates older than [`KEEP_NS`].
    fn put_clock_estimate(&self, node: &str, e: &Estimate, received: Timestamp) -> Result<()>;

    /// The latest estimate of every node that sent one, by node name.
    fn clock_latest(&self) -> Result<Vec<ClockRow>>;

    /// `node`'s estimates that arrived from `since` on, oldest first, at
    /// most `limit`.
    fn clock_history(&self, node: &str, since: Timestamp, limit: usize) -> Result<Vec<ClockRow>>;
}

/// Node hardware health the agents send: a bounded history per node
/// ([`crate::health::KEEP_ROWS`] rows, [`crate::health::KEEP_NS`] of age).
pub trait Health {
    /// Stores `node`'s reading, arrived at `at` (a second reading at the
    /// same time replaces the first), and drops that node's readings beyond
    /// the bounds.
    fn put_node_health(
        &self,
        node: &str,
        at: Timestamp,
        health: &plumb_model::health::NodeHealth,
    ) -> Result<()>;

    /// `node`'s readings that arrived from `since` on, oldest first, at
    /// most `limit`.
    fn node_health_history(
        &self,
        node: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<HealthRow>>;

    /// `node`'s latest `limit` readings, newest first (the first is its
    /// current health).
    fn node_health_recent(&self, node: &str, limit: usize) -> Result<Vec<HealthRow>>;
}

/// Each node's load, memory and disk use over time, downsampled as the
/// heartbeats arrive: one row per node per [`crate::samples::Step`]
/// interval (the highest use of its heartbeats), each step kept for its
/// own span ([`crate::samples::Step::keep_ns`]).
pub trait NodeHistory {
    /// Folds one heartbeat's figures, arrived at `at`, into `node`'s row of
    /// each step's interval holding `at`, and drops that node's rows older
    /// than each step keeps.
    fn put_node_sample(
        &self,
        node: &str,
        at: Timestamp,
        sample: &plumb_model::node::NodeSample,
    ) -> Result<()>;

    /// `node`'s samples of `step` whose interval starts at or after
    /// `since`, oldest first, at most `limit`.
    fn node_samples(
        &self,
        node: &str,
        step: crate::samples::Step,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<plumb_model::node::NodeSample>>;

    /// Every known node's samples of `step` from `since` on, in one query,
    /// by node then time: what the nodes page's sparklines draw (load and
    /// the fullest disk only).
    fn node_sparks(
        &self,
        step: crate::samples::Step,
        since: Timestamp,
    ) -> Result<Vec<crate::samples::SparkRow>>;
}

/// Node benchmark results (`plumb bench-node`, idle agents): a bounded
/// history per node ([`crate::bench::KEEP_ROWS`] rows).
pub trait Benches {
    /// Stores `node`'s result, arrived at `at` (a second result at the same
    /// time replaces the first), and drops that node's oldest results
    /// beyond the bound.
    fn put_node_bench(
        &self,
        node: &str,
        at: Timestamp,
        bench: &plumb_model::bench::NodeBench,
    ) -> Result<()>;

    /// `node`'s latest `limit` results, newest first (by arrival).
    fn node_bench_history(&self, node: &str, limit: usize) -> Result<Vec<BenchRow>>;

    /// Every node's latest result (by arrival), by node name.
    fn latest_node_benches(&self) -> Result<Vec<BenchRow>>;

    /// `node`'s latest result taken (by its own `taken_at`) at or before
    /// `before`: what a run started then ran on.
    fn node_bench_before(&self, node: &str, before: Timestamp) -> Result<Option<BenchRow>>;
}

/// What a merged timeline reads beyond runs (`plumb timeline`).
pub trait Timeline {
    /// Log records whose own time is in `[since, until)`, whichever run or
    /// source sent them, oldest first, at most `limit` (0: all).
    fn logs_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<LogLine>>;

    /// Spans starting in `[since, until)`, by start time, at most `limit`
    /// (0: all).
    fn spans_between(&self, since: Timestamp, until: Timestamp, limit: usize) -> Result<Vec<Span>>;
}

/// Fleet-wide throttle leases (`throttles.rs`): at most N holders of a
/// throttle at once, a first-come-first-served queue of waiters, and
/// leases and places that expire unless renewed. Every method is one
/// transaction that takes the write lock first, drops what expired by
/// `now` and grants freed slots to the first in line, so racing requests
/// (or two collectors on one store) never grant more than N.
pub trait Throttles {
    /// Asks for a slot of `name` for `req.holder`, or keeps its place:
    /// a new holder joins the end of the queue, a known one has its lease
    /// or place renewed to `now + ttl`. Granted at once when a slot is
    /// free and nobody waits before it. Bad names, 0 slots or an empty
    /// holder are `BadInput`; an N other than that of those already there
    /// is a `Conflict` naming both.
    fn throttle_acquire(
        &self,
        name: &str,
        req: &LeaseRequest,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<LeaseState>;

    /// Renews `holder`'s lease or place to `now + ttl`; `NotFound` when it
    /// has none (it expired or was released).
    fn throttle_renew(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<LeaseState>;

    /// Gives up `holder`'s lease or place, granting the slot to the next
    /// in line; true when there was one. Releasing twice is no error.
    fn throttle_release(&self, name: &str, holder: &str, now: Timestamp) -> Result<bool>;

    /// Drops every lease and place expired by `now`, granting the slots
    /// they held; how many were dropped.
    fn throttle_expire(&self, now: Timestamp) -> Result<u64>;

    /// Every throttle someone holds or waits for, by name, with its
    /// holders (earliest grant first) and queue (first in line first);
    /// what expired by `now` is left out.
    fn throttle_list(&self, now: Timestamp) -> Result<Vec<ThrottleView>>;
}

/// Work that must happen on one collector at a time (alert evaluation and
/// notification, error grouping, node states, slow-run evidence), when
/// several collectors share one store: a named lease with an expiry,
/// renewed by its holder, taken over by another once it expires.
pub trait Leases {
    /// Takes the lease `name` for `holder` until `now + ttl` when it is
    /// free, expired by `now`, or already `holder`'s (a renewal); true when
    /// `holder` holds it after the call. One statement, so two collectors
    /// racing for a free lease never both get it.
    fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<bool>;

    /// Gives the lease up if `holder` holds it (a clean shutdown), so
    /// another collector takes over at once; true when it did.
    fn step_down(&self, name: &str, holder: &str) -> Result<bool>;

    /// Who holds the lease `name` and until when, if anyone does (an
    /// expired lease is still shown: it is the last holder).
    fn leader(&self, name: &str) -> Result<Option<(String, Timestamp)>>;
}

/// Whole tables as raw rows, for copying a store to another backend
/// (`plumb store copy`): the copy loop and the content hash are
/// [`crate::copy`]'s, shared; a backend reads and writes its rows here,
/// folding its own layout into the tables of [`crate::copy::TABLES`].
pub trait Raw {
    /// The store's tables as the copy names them, each with its columns:
    /// every table of the backend's schema but its own bookkeeping, with
    /// tables and columns that are one backend's layout of a copied table
    /// folded into it (so a table added to the schema and not to the copy
    /// shows here).
    fn raw_schema(&self) -> Result<Vec<(String, Vec<String>)>>;

    /// At most `limit` rows of `table` whose key comes after `after` (the
    /// key's values; from the first row when `None`), in key order (text
    /// by bytes), stopping early at the row that brings the batch to
    /// `max_bytes`.
    fn raw_rows(
        &self,
        table: &crate::copy::RawTable,
        after: Option<&[crate::copy::Value]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<crate::copy::RawRow>>;

    /// Inserts `rows` of `table` with their identity, in one transaction,
    /// skipping each row whose key (or other unique value) the store holds
    /// already; returns how many were inserted. A run inserted here is not
    /// queued for error grouping unless the queue already names it (the
    /// copy brings the source's queue as it is).
    fn put_raw_rows(
        &self,
        table: &crate::copy::RawTable,
        rows: &[crate::copy::RawRow],
    ) -> Result<u64>;

    /// After rows were put with their ids: the store's own id counters
    /// continue past the highest id of each table, so later inserts never
    /// collide with a copied row.
    fn raw_ids_advance(&self) -> Result<()>;
}

/// Retention: dropping recorded output, logs and spans older than a
/// collector's `[retention] output` horizon, in bounded steps, while runs
/// stay. Times are compared against each record's own time: an output or
/// log chunk goes when its last line is older than the horizon, a span
/// when it started before it, a metric point or a dedupe key when its
/// time is. A backend may drop more coarsely only in whole UTC days
/// (PostgreSQL drops a day's partition), so callers pass a horizon on a
/// day boundary ([`crate::kit::retention_horizon`]).
pub trait Retention {
    /// Drops one bounded step of what is older than `before` and records
    /// `before` as the output horizon (it only moves forward). Returns
    /// what went; nothing (`Dropped::is_empty`) once nothing older is left.
    fn drop_output_before(&self, before: Timestamp) -> Result<crate::query::Dropped>;

    /// Output older than this was dropped by retention; `None` when
    /// retention never ran on this store.
    fn output_horizon(&self) -> Result<Option<Timestamp>>;
}

/// Every concern together: what a collector serves from. Implemented for
/// every type that implements each concern, so a backend implements the
/// concern traits and gets this for free.
pub trait Backend:
    Runs
    + Output
    + Telemetry
    + Nodes
    + Alerts
    + Tokens
    + Insights
    + Clocks
    + Health
    + Benches
    + NodeHistory
    + Timeline
    + Throttles
    + Leases
    + Raw
    + Retention
    + Send
{
}

impl<
    T: Runs
        + Output
        + Telemetry
        + Nodes
        + Alerts
        + Tokens
        + Insights
        + Clocks
        + Health
        + Benches
        + NodeHistory
        + NodeHistory
        + Timeline
        + Throttles
        + Leases
        + Raw
        + Retention
        + Send,
> Backend for T
{
}

/// How a server opens its store: one connection for the writer and as many
/// readers as it wants. The collector takes this, so it never knows which
/// database is behind it.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Where the store is, for messages (a path, or a URL without its
    /// password).
    fn describe(&self) -> String;
    /// A connection that writes.
    fn writer(&self) -> Result<Box<dyn Backend>>;
    /// A connection that only reads; it sees every write committed before
    /// it reads.
    fn reader(&self) -> Result<Box<dyn Backend>>;
}

/// The embedded store in a directory, as a [`Connector`]: the writer opens
/// it read-write (creating it), readers open it read-only, and a write
/// waits up to `busy_timeout` for another process holding the file.
#[derive(Debug, Clone)]
pub struct SqliteConnector {
    /// The store directory.
    pub dir: std::path::PathBuf,
    /// How long a write waits for another connection's lock.
    pub busy_timeout: std::time::Duration,
}

impl SqliteConnector {
    /// The store in `dir`, with writes waiting up to 30 s for another
    /// connection's lock.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> SqliteConnector {
        SqliteConnector {
            dir: dir.into(),
            busy_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl Connector for SqliteConnector {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn writer(&self) -> Result<Box<dyn Backend>> {
        let store = Store::open(&self.dir)?;
        store.set_busy_timeout(self.busy_timeout)?;
        Ok(Box::new(store))
    }
    fn reader(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(Store::open_read_only(&self.dir)?))
    }
}

/// Reading runs, their output and fingerprints, with the error of whoever
/// answers: implemented by every [`Backend`] and by the collector's HTTP
/// client, so the CLI reads a remote collector as it reads the local store.
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
    /// Runs matching `q` per interval by state
    /// ([`runs_chart`](crate::dash::runs_chart)).
    fn runs_chart(&self, q: &RunQuery) -> std::result::Result<RunsChart, Self::Error>;
    /// Output older than this was dropped by retention
    /// ([`Retention::output_horizon`]); `None` when none was.
    fn output_horizon(&self) -> std::result::Result<Option<Timestamp>, Self::Error>;
    /// `node`'s latest benchmark taken at or before `before`
    /// ([`Benches::node_bench_before`]).
    fn node_bench_before(
        &self,
        node: &str,
        before: Timestamp,
    ) -> std::result::Result<Option<BenchRow>, Self::Error>;
}

impl<B: Backend + ?Sized> RunStore for B {
    type Error = StoreError;

    fn node_bench_before(&self, node: &str, before: Timestamp) -> Result<Option<BenchRow>> {
        Benches::node_bench_before(self, node, before)
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        Runs::list_runs(self, filter)
    }
    fn resolve(&self, reference: &str) -> Result<Uuid> {
        Runs::resolve(self, reference)
    }
    fn get_run(&self, id: Uuid) -> Result<Run> {
        Runs::get_run(self, id)
    }
    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>> {
        Runs::run_fingerprint(self, run)
    }
    fn search(&self, opts: &SearchOptions) -> Result<Vec<Hit>> {
        Output::search(self, opts)
    }
    fn trace(&self, reference: &str) -> Result<Trace> {
        Telemetry::trace(self, reference)
    }
    fn run_logs(&self, id: Uuid) -> Result<Vec<LogLine>> {
        Telemetry::run_logs(self, id, 0)
    }
    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<()> {
        Output::replay_output(self, run_id, only, cursor, out)
    }
    fn output_horizon(&self) -> Result<Option<Timestamp>> {
        Retention::output_horizon(self)
    }
    fn runs_chart(&self, q: &RunQuery) -> Result<RunsChart> {
        crate::dash::runs_chart(self, q, Timestamp::now())
    }
}
