//! What every backend shares: the halves of the store's operations that
//! hold no SQL. A backend reads and writes rows its own way and hands them
//! to these, so replay order, search matching, the output cap, spool
//! import, trace assembly and the statistics mean the same on SQLite and
//! PostgreSQL, and a third backend needs nothing outside its own crate.

use crate::backend::OutputSink;
use crate::chunk::{self, DecodedChunk, ReadMark, SealedChunk};
use crate::error::{Result, StoreError};
use crate::matcher::{Matcher, SearchMode};
use crate::query::{OutputCursor, Replayed, SearchOptions};
use plumb_model::insights::{DurationStats, SlowConfig, SlowRun};
use plumb_model::telemetry::{Hit, Kind, LogLine, Span};
use plumb_model::throttle::{LeaseRequest, MAX_SLOTS, name_ok};
use plumb_model::{OutputGap, OutputLine, Run, RunState, Stream, Timestamp, Uuid};
use std::collections::{HashMap, VecDeque};

pub use crate::spool::{Item, parse_chunk, parse_frames};
pub use crate::telemetry::{PreparedGroup, decode_log_chunk, rebuild_group, trim_newline};

/// One UTC day in nanoseconds: retention's unit (PostgreSQL keeps a
/// partition per day of output and of logs).
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The output horizon for keeping `keep` at `now`: the start of the UTC
/// day that `now - keep` falls in, so every backend drops the same records
/// (whole days). What is older than the horizon goes; at most one day
/// more than `keep` is kept.
pub fn retention_horizon(now: Timestamp, keep: std::time::Duration) -> Timestamp {
    let keep = keep.as_nanos().min(i64::MAX as u128) as i64;
    let t = now.as_nanos().saturating_sub(keep);
    Timestamp::from_nanos(t.div_euclid(DAY_NS) * DAY_NS)
}

/// Metadata of a stored output chunk, as replay and search need it.
#[derive(Debug, Clone)]
pub struct ChunkMeta {
    /// The backend's id of the chunk.
    pub id: i64,
    /// The run it belongs to (hyphenated).
    pub run_id: String,
    /// The host that recorded it.
    pub host: String,
    /// Its stream.
    pub stream: Stream,
    /// Its position among the stream's chunks.
    pub part: i64,
    /// CRC32C of its stored data.
    pub crc: u32,
}

/// Decodes a chunk's stored data, naming the chunk when it is corrupt.
pub fn decode_chunk(meta: &ChunkMeta, data: &[u8]) -> Result<DecodedChunk> {
    chunk::decode(data, meta.crc).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!(
            "{m} (run {}, {} chunk {})",
            meta.run_id,
            meta.stream.as_str(),
            meta.part
        )),
        other => other,
    })
}

/// A run reference, parsed: see [`crate::Runs::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    /// `last` (0) or `last~N`: the Nth run before the newest.
    Last(i64),
    /// A prefix of a run id, lowercase hex without hyphens: look up ids in
    /// `[prefix, prefix + "g")`.
    Prefix(String),
}

/// Parses a run reference; a malformed one is [`StoreError::BadReference`].
pub fn parse_run_ref(reference: &str) -> Result<RunRef> {
    let r = reference.trim();
    if r == "last" {
        return Ok(RunRef::Last(0));
    }
    if let Some(n) = r.strip_prefix("last~") {
        return n
            .parse()
            .map(RunRef::Last)
            .map_err(|_| StoreError::BadReference(reference.to_string()));
    }
    let hex: String = r
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() < 4 || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StoreError::BadReference(reference.to_string()));
    }
    Ok(RunRef::Prefix(hex))
}

/// The one run among the (at most six) ids a prefix found, or why not.
pub fn one_run(reference: &str, ids: &[String]) -> Result<Uuid> {
    match ids {
        [] => Err(StoreError::NoSuchRun(reference.to_string())),
        [one] => Uuid::parse_str(one).map_err(|_| StoreError::Corrupt(format!("bad run id {one}"))),
        many => Err(StoreError::Ambiguous {
            prefix: reference.to_string(),
            candidates: many.iter().take(5).cloned().collect(),
            more: many.len() > 5,
        }),
    }
}

/// Whether a record in state `incoming` would move a run stored in state
/// `existing` backwards (waiting, then running, then any final state):
/// such a late record is not stored.
pub fn less_final(existing: RunState, incoming: RunState) -> bool {
    fn stage(state: RunState) -> u8 {
        match state {
            RunState::Waiting => 0,
            RunState::Running => 1,
            _ => 2,
        }
    }
    !incoming.is_final() && stage(existing) > stage(incoming)
}

/// What to do to keep a run's output within its cap (see `cap`): chunks to
/// delete, and the chunk to cut at the front by some bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapPlan {
    /// Chunks of the tail to delete, whole.
    pub delete: Vec<i64>,
    /// The oldest chunk kept and how many bytes to cut off its front.
    pub cut: Option<(i64, usize)>,
    /// Bytes dropped by the plan.
    pub dropped: u64,
}

/// Plans [`CapPlan`] for a run whose head holds `head` bytes and whose tail
/// chunks are `tail` (id, raw bytes), newest first. Without `exact` only
/// whole chunks go, so up to one chunk more than the cap may remain.
pub fn plan_over_cap(gap: &OutputGap, head: u64, tail: &[(i64, u64)], exact: bool) -> CapPlan {
    let keep = gap.cap.saturating_sub(head);
    let mut plan = CapPlan::default();
    let mut kept = 0u64;
    for &(cid, bytes) in tail {
        if kept >= keep {
            plan.delete.push(cid);
            plan.dropped += bytes;
            continue;
        }
        let over = (kept + bytes).saturating_sub(keep);
        if exact && over > 0 {
            plan.cut = Some((cid, over as usize));
            plan.dropped += over;
            kept = keep;
        } else {
            kept += bytes;
        }
    }
    plan
}

/// A stored chunk with its first `n` bytes cut off (fewer than it holds),
/// keeping the reads after them with their sequence numbers and times.
pub fn cut_front(decoded: &DecodedChunk, stream: Stream, part: u64, n: usize) -> SealedChunk {
    let marks = cut_marks(&decoded.marks, decoded.raw.len(), n);
    let mut sealed = chunk::encode(stream, &marks, &decoded.raw[n..]);
    sealed.part = part;
    sealed
}

/// The read marks of a chunk of `len` bytes after its first `n` bytes are
/// cut: reads wholly inside them go, the read they end in starts at 0.
pub(crate) fn cut_marks(marks: &[ReadMark], len: usize, n: usize) -> Vec<ReadMark> {
    let mut out = Vec::with_capacity(marks.len());
    for (i, m) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(len, |next| next.offset as usize);
        if end <= n {
            continue;
        }
        out.push(ReadMark {
            offset: (m.offset as usize).saturating_sub(n) as u32,
            ..*m
        });
    }
    out
}

/// The final record of a run over its cap with what was dropped counted,
/// given the raw bytes its chunks hold once the cap is settled (`None`
/// when the record needs no change). See `cap::settle`.
pub fn settled_record(run: &Run, gap: &OutputGap, stored: u64) -> Option<Run> {
    let written = run.output.stdout_bytes + run.output.stderr_bytes;
    let lost_elsewhere = run.output.dropped_bytes.saturating_sub(gap.dropped);
    let at_gap = written
        .saturating_sub(stored)
        .saturating_sub(lost_elsewhere);
    if at_gap == gap.dropped {
        return None;
    }
    let mut settled = run.clone();
    settled.output.dropped_bytes = lost_elsewhere + at_gap;
    settled.output.gap = Some(OutputGap {
        dropped: at_gap,
        ..*gap
    });
    Some(settled)
}

/// Replays a run's output in production order: `metas(stream, after)`
/// lists the stream's chunks after part `after`, `load` reads one. `gap`
/// is the run's output gap, if it has one. See
/// [`crate::Output::replay_output`].
pub fn replay(
    run_id: Uuid,
    gap: Option<OutputGap>,
    only: Option<Stream>,
    cursor: &mut OutputCursor,
    out: &mut OutputSink<'_>,
    metas: &mut dyn FnMut(Stream, Option<i64>) -> Result<Vec<ChunkMeta>>,
    load: &mut dyn FnMut(&ChunkMeta) -> Result<DecodedChunk>,
) -> Result<()> {
    let io = |source| StoreError::Io {
        what: "cannot write output of run",
        path: run_id.to_string().into(),
        source,
    };
    // A gap is marked once a run has settled its cap (its final record),
    // for readers that had not passed it: a live follower that had saw the
    // bytes dropped since as they came.
    let mut gap = if cursor.gap_done {
        None
    } else {
        gap.filter(|g| g.dropped > 0 && cursor.seq.is_none_or(|s| s <= g.after_seq))
    };
    let streams: Vec<Stream> = match only {
        Some(s) => vec![s],
        None => Stream::ALL.to_vec(),
    };
    // Per stream: the chunks not yet replayed, decoded one at a time.
    let mut pending: Vec<(Stream, VecDeque<ChunkMeta>)> = Vec::new();
    for s in &streams {
        let after = cursor.last_part(*s);
        pending.push((*s, metas(*s, after)?.into()));
    }
    let mut current: Vec<Option<(DecodedChunk, usize)>> = vec![None; pending.len()];
    loop {
        // Make sure each stream has a decoded chunk with segments left.
        for (i, (_, queue)) in pending.iter_mut().enumerate() {
            while current[i]
                .as_ref()
                .is_none_or(|(d, pos)| *pos >= d.marks.len())
            {
                match queue.pop_front() {
                    Some(meta) => {
                        current[i] = Some((load(&meta)?, 0));
                        cursor.set_last_part(meta.stream, meta.part);
                    }
                    None => {
                        current[i] = None;
                        break;
                    }
                }
            }
        }
        // Emit the segment with the smallest sequence number.
        let next = current
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|(d, pos)| (d.marks[*pos].seq, i)))
            .min();
        if let Some(g) = gap
            && next.is_none_or(|(seq, _)| seq > g.after_seq)
        {
            out(Replayed::Gap {
                dropped: g.dropped,
                cap: g.cap,
            })
            .map_err(io)?;
            cursor.gap_done = true;
            gap = None;
        }
        let Some((seq, i)) = next else {
            return Ok(());
        };
        let (d, pos) = current[i].as_mut().expect("chosen above");
        let (_, range) = d.segments().nth(*pos).expect("in range");
        out(Replayed::Read {
            stream: pending[i].0,
            time: d.marks[*pos].time,
            bytes: &d.raw[range],
        })
        .map_err(io)?;
        cursor.seq = Some(cursor.seq.map_or(seq, |s| s.max(seq)));
        *pos += 1;
    }
}

/// Appends the lines of a decoded output chunk that match to `hits`;
/// returns true when `opts.limit` hits are reached.
pub fn output_hits(
    d: &DecodedChunk,
    meta: &ChunkMeta,
    opts: &SearchOptions,
    matcher: &Matcher,
    hits: &mut Vec<Hit>,
) -> Result<bool> {
    let run_id = Uuid::parse_str(&meta.run_id)
        .map_err(|_| StoreError::Corrupt(format!("bad run id {}", meta.run_id)))?;
    let mut full = false;
    matcher.for_each_match(&d.raw, |start, end| {
        let time = d.time_at(start);
        if opts.since.is_some_and(|t| time < t) || opts.until.is_some_and(|t| time >= t) {
            return true;
        }
        hits.push(Hit::Output(OutputLine {
            run_id,
            host: meta.host.clone(),
            stream: meta.stream,
            time,
            text: String::from_utf8_lossy(&d.raw[start..end]).into_owned(),
        }));
        full = opts.limit > 0 && hits.len() >= opts.limit;
        !full
    });
    Ok(full)
}

/// Where a log chunk came from, as its row says.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// The source key (run id or service@host).
    pub source: String,
    /// The plumb run, when the records named one.
    pub run_id: Option<Uuid>,
    /// The service.
    pub service: String,
    /// The host.
    pub host: String,
}

/// Appends the log lines of a decoded log chunk that match to `hits`;
/// returns true when `opts.limit` hits are reached.
pub fn log_hits(
    d: &DecodedChunk,
    src: &LogSource,
    opts: &SearchOptions,
    matcher: &Matcher,
    hits: &mut Vec<Hit>,
) -> bool {
    let mut full = false;
    matcher.for_each_match(&d.raw, |start, end| {
        let time = d.time_at(start);
        if opts.since.is_some_and(|t| time < t) || opts.until.is_some_and(|t| time >= t) {
            return true;
        }
        hits.push(Hit::Log(LogLine::parse(
            time,
            src.source.clone(),
            src.run_id,
            src.service.clone(),
            src.host.clone(),
            String::from_utf8_lossy(&d.raw[start..end]).into_owned(),
        )));
        full = opts.limit > 0 && hits.len() >= opts.limit;
        !full
    });
    full
}

/// Every record of a decoded log chunk whose time is in `[since, until)`
/// (any time when `None`), appended to `out` until `limit` (0: no limit);
/// returns true when the limit is reached.
pub fn log_lines(
    d: &DecodedChunk,
    src: &LogSource,
    window: Option<(i64, i64)>,
    limit: usize,
    out: &mut Vec<LogLine>,
) -> bool {
    for (_, range) in d.segments() {
        let time = d.time_at(range.start);
        if let Some((since, until)) = window
            && (time.as_nanos() < since || time.as_nanos() >= until)
        {
            continue;
        }
        let text = trim_newline(&d.raw[range]);
        out.push(LogLine::parse(
            time,
            src.source.clone(),
            src.run_id,
            src.service.clone(),
            src.host.clone(),
            String::from_utf8_lossy(text).into_owned(),
        ));
        if limit > 0 && out.len() >= limit {
            return true;
        }
    }
    false
}

/// Whether a span matches a search, and its hit.
pub fn span_hit(span: &Span, matcher: &Matcher) -> Option<Hit> {
    let line = span.search_line();
    matcher
        .line_matches(line.as_bytes())
        .then(|| Hit::Span(plumb_model::telemetry::SpanHit::new(span, line)))
}

/// Records of a span are made while it runs; a minute either side allows
/// for clocks of different hosts that disagree.
const TRACE_SLACK_NS: i64 = 60_000_000_000;

/// The log search that finds a trace's records: its id as words, in the
/// window of its spans.
pub fn trace_log_search(trace_id: &str, spans: &[Span]) -> SearchOptions {
    let start = spans.iter().map(|s| s.start.as_nanos()).min();
    let end = spans.iter().map(|s| s.end.as_nanos()).max();
    SearchOptions {
        text: format!("trace_id={trace_id}"),
        mode: SearchMode::Words,
        kinds: vec![Kind::Log],
        since: start.map(|t| Timestamp::from_nanos(t.saturating_sub(TRACE_SLACK_NS))),
        until: end.map(|t| Timestamp::from_nanos(t.saturating_add(TRACE_SLACK_NS))),
        ..Default::default()
    }
}

/// A trace from its spans and the hits of [`trace_log_search`]; no trace
/// when there is neither.
pub fn assemble_trace(
    reference: &str,
    trace_id: String,
    spans: Vec<Span>,
    hits: Vec<Hit>,
) -> Result<plumb_model::telemetry::Trace> {
    let mut logs: Vec<LogLine> = hits
        .into_iter()
        .filter_map(|h| match h {
            // The words matched; the line must also carry the id as its
            // own trace, not as some attribute's value.
            Hit::Log(l) if l.trace_id.as_deref() == Some(trace_id.as_str()) => Some(l),
            _ => None,
        })
        .collect();
    if spans.is_empty() && logs.is_empty() {
        return Err(StoreError::NoSuchTrace(reference.to_owned()));
    }
    logs.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.text.cmp(&b.text)));
    Ok(plumb_model::telemetry::Trace {
        trace_id,
        spans,
        logs,
    })
}

/// Checks a trace reference: lowercase hex, 4 to 32 digits.
pub fn trace_prefix(reference: &str) -> Result<String> {
    let hex = reference.trim().to_ascii_lowercase();
    if hex.len() < 4 || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::BadQuery(format!(
            "`{reference}` is not a trace reference: use a trace id (32 hex digits) or a unique prefix of one (at least 4)"
        )));
    }
    Ok(hex)
}

/// The one trace among the (at most six) ids a prefix found, or why not.
pub fn one_trace(reference: &str, hex: String, ids: Vec<String>) -> Result<String> {
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] if hex.len() == 32 => Ok(hex),
        [] => Err(StoreError::NoSuchTrace(reference.to_owned())),
        many => Err(StoreError::Ambiguous {
            prefix: reference.to_owned(),
            candidates: many.iter().take(5).cloned().collect(),
            more: many.len() > 5,
        }),
    }
}

/// Runs counted one by one (newest first, `(started ns, state)`), at
/// most `cap` of them: per 5-minute bucket and state, and where the count
/// stopped when there were more (see [`crate::Runs::run_counts`]).
pub fn direct_counts(
    runs: impl Iterator<Item = (i64, String)>,
    cap: usize,
) -> crate::dash::RunCounts {
    use plumb_model::chart::{StateCount, align_down};
    let mut rows: Vec<StateCount> = Vec::new();
    let mut oldest = None;
    let mut partial = false;
    for (seen, (started, state)) in runs.enumerate() {
        if seen == cap {
            partial = true;
            break;
        }
        let Ok(state) = state.parse::<RunState>() else {
            continue;
        };
        oldest = Some(started);
        let bucket_ns = align_down(started, crate::dash::COUNT_BUCKET_NS);
        match rows.last_mut() {
            Some(l) if l.bucket_ns == bucket_ns && l.state == state => l.n += 1,
            _ => rows.push(StateCount {
                bucket_ns,
                state,
                n: 1,
            }),
        }
    }
    crate::dash::RunCounts {
        rows,
        partial_from: if partial {
            oldest.map(Timestamp::from_nanos)
        } else {
            None
        },
    }
}

/// A backend's search of one kind of record, appending its hits.
pub type SearchKind<'a> = dyn FnMut(&SearchOptions, &Matcher, &mut Vec<Hit>) -> Result<()> + 'a;

/// A search over the three kinds of record, each kind searched by its
/// function in turn (output, log records, spans) until the limit.
pub fn search_kinds(
    opts: &SearchOptions,
    output: &mut SearchKind<'_>,
    logs: &mut SearchKind<'_>,
    spans: &mut SearchKind<'_>,
) -> Result<Vec<Hit>> {
    let matcher = Matcher::new(&opts.text, opts.mode, opts.ignore_case)?;
    let mut hits = Vec::new();
    if opts.wants(Kind::Output) {
        output(opts, &matcher, &mut hits)?;
    }
    if opts.wants(Kind::Log) {
        logs(opts, &matcher, &mut hits)?;
    }
    if opts.wants(Kind::Span) {
        spans(opts, &matcher, &mut hits)?;
    }
    Ok(hits)
}

/// How many rows of one name duration statistics read at most to find its
/// successful runs: a bound on the work when a name mostly fails.
pub const SCAN_FACTOR: usize = 4;

/// Nearest-rank percentile of sorted nanosecond durations, in seconds.
fn percentile_s(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e9
}

/// Duration statistics of a name from its successful runs' durations (ns).
pub fn duration_stats(name: &str, mut durations: Vec<i64>) -> DurationStats {
    durations.sort_unstable();
    DurationStats {
        name: name.to_string(),
        n: durations.len(),
        p50_s: percentile_s(&durations, 0.50),
        p95_s: percentile_s(&durations, 0.95),
    }
}

/// The slow runs among `running` (id, name, host, started ns), each name's
/// statistics from `stats`, slowest first.
pub fn slow_runs(
    now: Timestamp,
    config: &SlowConfig,
    running: Vec<(String, String, String, i64)>,
    stats_of: &mut dyn FnMut(&str) -> Result<DurationStats>,
) -> Result<Vec<SlowRun>> {
    let mut stats: HashMap<String, DurationStats> = HashMap::new();
    let mut slow = Vec::new();
    for (id, name, host, started_ns) in running {
        if !stats.contains_key(&name) {
            let s = stats_of(&name)?;
            stats.insert(name.clone(), s);
        }
        let s = &stats[&name];
        if s.n < config.min_history.max(1) || s.p95_s <= 0.0 {
            continue;
        }
        let elapsed_s = (now.as_nanos() - started_ns) as f64 / 1e9;
        if elapsed_s <= config.factor * s.p95_s {
            continue;
        }
        let Ok(run_id) = Uuid::parse_str(&id) else {
            continue;
        };
        slow.push(SlowRun {
            run_id,
            name,
            host,
            started: Timestamp::from_nanos(started_ns),
            elapsed_s,
            p50_s: s.p50_s,
            p95_s: s.p95_s,
            factor: elapsed_s / s.p95_s,
        });
    }
    slow.sort_by(|a, b| b.factor.total_cmp(&a.factor));
    Ok(slow)
}

/// Longest throttle holder name accepted.
pub const MAX_HOLDER: usize = 200;

/// Checks a throttle name.
pub fn check_throttle_name(name: &str) -> Result<()> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(StoreError::BadThrottle(format!(
            "throttle name `{name}`: it must be 1 to 64 letters, digits, `-`, `_` or `.`, and not start with `.`"
        )))
    }
}

/// Checks a throttle holder.
pub fn check_holder(holder: &str) -> Result<()> {
    if holder.is_empty() || holder.len() > MAX_HOLDER {
        return Err(StoreError::BadThrottle(format!(
            "holder `{holder}`: it must be 1 to {MAX_HOLDER} bytes"
        )));
    }
    Ok(())
}

/// A lease TTL in nanoseconds; 0 is refused.
pub fn ttl_ns(ttl: std::time::Duration) -> Result<i64> {
    if ttl.is_zero() {
        return Err(StoreError::BadThrottle("the lease TTL is 0".into()));
    }
    Ok(ttl.as_nanos().min(i64::MAX as u128) as i64)
}

/// Checks an acquire request: name, holder, slots and TTL; returns the TTL
/// in nanoseconds.
pub fn check_acquire(name: &str, req: &LeaseRequest, ttl: std::time::Duration) -> Result<i64> {
    check_throttle_name(name)?;
    check_holder(&req.holder)?;
    if req.slots == 0 || req.slots > MAX_SLOTS {
        return Err(StoreError::BadThrottle(format!(
            "throttle `{name}`: {} slots; the number of slots must be from 1 to {MAX_SLOTS}",
            req.slots
        )));
    }
    ttl_ns(ttl)
}

/// A 32-byte hash from 64 lowercase hex digits.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A stored preflight from its columns (id, time, spec, results JSON).
pub fn preflight_record(
    id: &str,
    at_ns: i64,
    spec: String,
    result: &str,
) -> crate::Result<crate::nodes::PreflightRecord> {
    let bad = |what: &str| crate::StoreError::Corrupt(format!("preflight {id}: {what}"));
    Ok(crate::nodes::PreflightRecord {
        id: plumb_model::Uuid::parse_str(id).map_err(|_| bad("its id is not a UUID"))?,
        at: Timestamp::from_nanos(at_ns),
        spec,
        result: serde_json::from_str(result).map_err(|source| crate::StoreError::Json {
            id: format!("preflight {id}"),
            source,
        })?,
    })
}

/// The fingerprint change a heartbeat brings, `(old, new)`: only when the
/// node had one and reports a different one (a heartbeat without a
/// fingerprint changes nothing).
pub fn env_change<'a>(old: Option<&'a str>, new: Option<&'a str>) -> Option<(&'a str, &'a str)> {
    match (old, new) {
        (Some(o), Some(n)) if o != n => Some((o, n)),
        _ => None,
    }
}

/// A node's row after a heartbeat: its window of inter-arrival times
/// grows (a new boot restarts it), its report and fingerprint are the
/// latest. `prev` is the stored row, `None` for a node seen first.
pub fn next_node_row(
    prev: Option<crate::nodes::NodeRow>,
    report: &plumb_model::node::NodeReport,
    received: Timestamp,
    initial: plumb_model::node::NodeState,
) -> crate::nodes::NodeRow {
    let fp_hash = report.fingerprint.as_ref().map(|f| f.hash.clone());
    let software = report
        .fingerprint
        .as_ref()
        .map(|f| plumb_model::env::software_hash(&f.fingerprint));
    let Some(mut row) = prev else {
        return crate::nodes::NodeRow {
            name: report.node.clone(),
            state: initial,
            since: received,
            last_seen: received,
            report: report.clone(),
            intervals_ms: Vec::new(),
            fingerprint: fp_hash,
            software,
        };
    };
    // A new boot restarts the node's rhythm: the time it was away is not
    // an inter-arrival time.
    let rebooted = row.report.boot_id != report.boot_id;
    let gap_ms = (received.as_nanos() - row.last_seen.as_nanos()) as f64 / 1e6;
    if !rebooted && gap_ms > 0.0 {
        row.intervals_ms.push(gap_ms);
        let excess = row
            .intervals_ms
            .len()
            .saturating_sub(plumb_model::node::PHI_WINDOW);
        row.intervals_ms.drain(..excess);
    } else if rebooted {
        row.intervals_ms.clear();
    }
    row.last_seen = received;
    row.report = report.clone();
    if fp_hash.is_some() {
        row.fingerprint = fp_hash;
        row.software = software;
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(offset: u32, seq: u64) -> ReadMark {
        ReadMark {
            offset,
            seq,
            time: Timestamp::from_nanos(seq as i64),
        }
    }

    #[test]
    fn cutting_the_front_keeps_the_reads_after_the_cut() {
        let marks = [mark(0, 1), mark(10, 2), mark(20, 3)];
        assert_eq!(cut_marks(&marks, 30, 0), marks.to_vec());
        assert_eq!(
            cut_marks(&marks, 30, 5),
            [mark(0, 1), mark(5, 2), mark(15, 3)]
        );
        assert_eq!(cut_marks(&marks, 30, 10), [mark(0, 2), mark(10, 3)]);
        assert_eq!(cut_marks(&marks, 30, 29), [mark(0, 3)]);
    }

    #[test]
    fn run_references_parse_or_say_what_is_wrong() {
        assert_eq!(parse_run_ref("last").unwrap(), RunRef::Last(0));
        assert_eq!(parse_run_ref("last~3").unwrap(), RunRef::Last(3));
        assert_eq!(
            parse_run_ref("01AB-cd").unwrap(),
            RunRef::Prefix("01abcd".into())
        );
        for bad in ["last~x", "abc", "zzzz", &"a".repeat(33)] {
            assert!(matches!(
                parse_run_ref(bad),
                Err(StoreError::BadReference(_))
            ));
        }
    }

    #[test]
    fn a_cap_plan_keeps_the_newest_bytes() {
        let gap = OutputGap {
            after_seq: 0,
            cap: 100,
            dropped: 0,
        };
        // Head 40: 60 of the tail kept, newest first.
        let tail = [(5, 30), (4, 20), (3, 30), (2, 50)];
        let whole = plan_over_cap(&gap, 40, &tail, false);
        assert_eq!(whole.delete, vec![2]);
        assert_eq!(whole.cut, None);
        let exact = plan_over_cap(&gap, 40, &tail, true);
        assert_eq!(exact.delete, vec![2]);
        assert_eq!(exact.cut, Some((3, 20)));
        assert_eq!(exact.dropped, 70);
    }
}
