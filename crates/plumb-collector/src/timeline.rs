//! The fleet's merged timeline (`plumb timeline`, `GET /api/v1/timeline`):
//! runs' output lines, OTLP log records and spans, run starts and ends,
//! stack snapshots and eviction warnings, node state changes and alerts,
//! each placed at its host timestamp corrected by that host's measured
//! clock offset at that moment ([`plumb_model::timeline`]).
//!
//! **Which clock stamped what.** Output lines, run starts and ends,
//! snapshots and evictions are stamped by the recording host's clock; log
//! records and spans by the clock of the host that sent them (`host.name`,
//! the run's host when absent); node transitions and alerts by the
//! collector's own clock, which is the reference (offset zero).
//!
//! **Host to node.** A host's offsets are those its agent measured, stored
//! under the agent's node name. A host maps to the node whose name equals
//! its host name; else to the node whose name is the same up to the first
//! dot (`web1` and `web1.example.com`). A host no agent measures is placed
//! uncorrected and marked unmeasured.

use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::telemetry::{LogLine, Span};
use plumb_model::timeline::{ClockPoint, Correction, Event, HostClock, Kind, Placed, place};
use plumb_model::{Timestamp, Uuid};
use plumb_store::{Backend, OutputCursor, Replayed, RunFilter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The host name of events stamped by the collector's clock.
pub const COLLECTOR_HOST: &str = "collector";

/// Runs looked at when no run is named.
pub const MAX_RUNS: usize = 200;

/// How much wider than the asked window events are read: more than any
/// clock is expected to be off.
const WIDE_NS: i64 = 3_600_000_000_000;

/// Log records, and spans, read when no run is named.
pub const MAX_TELEMETRY: usize = 100_000;

/// Estimates read per node: a day at one every 10 s.
const MAX_ESTIMATES: usize = 8_640;

/// What to put on the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineQuery {
    /// Events placed at or after this time.
    pub since: Option<Timestamp>,
    /// Events placed before this time.
    pub until: Option<Timestamp>,
    /// Only these runs (references: ids, prefixes, `last`); empty: every
    /// run started in the window (at most [`MAX_RUNS`]) and the fleet's
    /// node and alert events.
    pub runs: Vec<String>,
    /// Only events of these hosts.
    pub hosts: Vec<String>,
    /// Only events whose text contains this.
    pub grep: Option<String>,
    /// At most this many events, the latest (0: no limit).
    pub limit: usize,
}

impl TimelineQuery {
    /// The query as URL parameters (`runs` and `hosts` repeated).
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(t) = self.since {
            p.push(("since", t.to_rfc3339()));
        }
        if let Some(t) = self.until {
            p.push(("until", t.to_rfc3339()));
        }
        for r in &self.runs {
            p.push(("run", r.clone()));
        }
        for h in &self.hosts {
            p.push(("host", h.clone()));
        }
        if let Some(g) = &self.grep {
            p.push(("grep", g.clone()));
        }
        p.push(("limit", self.limit.to_string()));
        p
    }

    /// Reads URL parameters back; an unknown one or a bad value is an
    /// error naming it.
    pub fn from_params(pairs: &[(String, String)]) -> Result<TimelineQuery, String> {
        let mut q = TimelineQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "since" => q.since = Some(plumb_model::parse_moment(v, Timestamp::now())?),
                "until" => q.until = Some(plumb_model::parse_moment(v, Timestamp::now())?),
                "run" => q.runs.push(v.clone()),
                "host" => q.hosts.push(v.clone()),
                "grep" => q.grep = Some(v.clone()),
                "limit" => {
                    q.limit = v
                        .parse()
                        .map_err(|_| format!("limit `{v}` is not a whole number"))?
                }
                other => {
                    return Err(format!(
                        "unknown parameter `{other}` (expected since, until, run, host, grep, limit)"
                    ));
                }
            }
        }
        Ok(q)
    }
}

/// How one host's timestamps were corrected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMapping {
    /// The host name events carry.
    pub host: String,
    /// The node whose estimates corrected it (`None`: unmeasured).
    pub node: Option<String>,
    /// Estimates used.
    pub estimates: usize,
}

/// The merged timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineView {
    /// The events, by placed time.
    pub events: Vec<Placed>,
    /// How many more matched beyond the limit (the earliest were left out).
    pub left_out: usize,
    /// Each host and the clock that corrected it.
    pub hosts: Vec<HostMapping>,
}

/// Cuts a run's replayed output into lines, each at the time of the read
/// it started in, per stream (a line split across reads is one line).
struct Lines {
    pending: HashMap<u8, (i64, Vec<u8>)>,
    out: Vec<(i64, String)>,
}

impl Lines {
    fn push(&mut self, stream: u8, time: i64, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let entry = self
                .pending
                .entry(stream)
                .or_insert_with(|| (time, Vec::new()));
            if entry.1.is_empty() {
                entry.0 = time;
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    entry.1.extend_from_slice(&bytes[..i]);
                    let (t, line) = std::mem::take(entry);
                    self.out.push((
                        t,
                        String::from_utf8_lossy(&line)
                            .trim_end_matches('\r')
                            .to_string(),
                    ));
                    bytes = &bytes[i + 1..];
                }
                None => {
                    entry.1.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn finish(mut self) -> Vec<(i64, String)> {
        for (_, (t, line)) in self.pending.drain() {
            if !line.is_empty() {
                self.out
                    .push((t, String::from_utf8_lossy(&line).into_owned()));
            }
        }
        self.out
    }
}

/// A log record as an event of `host` (its own `host.name` when it has
/// one).
fn log_event(l: LogLine, host: &str) -> Event {
    let h = if l.host.is_empty() { host } else { &l.host };
    let mut e = Event::new(Kind::Log, h, l.time.as_nanos(), &l.text);
    e.source = Some(l.source);
    e.trace_id = l.trace_id;
    e.span_id = l.span_id;
    e
}

/// A span as an interval event of `host` (its own `host.name` when it has
/// one).
fn span_event(s: Span, host: &str) -> Event {
    let h = if s.source.host.is_empty() {
        host
    } else {
        &s.source.host
    };
    let mut e = Event::new(
        Kind::Span,
        h,
        s.start.as_nanos(),
        &format!("{} ({})", s.name, s.source.service),
    );
    e.source = Some(s.source.service);
    e.end_ns = Some(s.end.as_nanos());
    e.trace_id = Some(s.trace_id);
    e.span_id = Some(s.span_id);
    e.parent_span_id = s.parent_span_id;
    e
}

/// Events of one run; with `telemetry`, its log records and spans too.
fn run_events(
    store: &dyn Backend,
    id: Uuid,
    telemetry: bool,
    ev: &mut Vec<Event>,
) -> plumb_store::Result<()> {
    let run = store.get_run(id)?;
    let host = run.host.hostname.clone();
    let src = Some(format!(
        "run {} {}",
        &id.simple().to_string()[..8],
        run.name
    ));
    let mut push = |mut e: Event| {
        e.source.clone_from(&src);
        ev.push(e);
    };
    push(Event::new(
        Kind::RunStart,
        &host,
        run.started.as_nanos(),
        &format!("started: {}", run.argv.join(" ")),
    ));
    if let Some(end) = run.ended {
        push(Event::new(
            Kind::RunEnd,
            &host,
            end.as_nanos(),
            &format!("ended: {}", run.state.as_str()),
        ));
    }
    for s in &run.snapshots {
        push(Event::new(
            Kind::Snapshot,
            &host,
            s.taken.as_nanos(),
            &format!(
                "stack snapshot of {} processes{}",
                s.processes.len(),
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(t) = &run.timeout {
        push(Event::new(
            Kind::RunEnd,
            &host,
            t.fired.as_nanos(),
            &format!("timeout fired: {} sent", t.signal),
        ));
        if let Some(s) = &t.snapshot {
            push(Event::new(
                Kind::Snapshot,
                &host,
                s.taken.as_nanos(),
                &format!("timeout stack snapshot of {} processes", s.processes.len()),
            ));
        }
    }
    if let Some(e) = &run.eviction {
        push(Event::new(
            Kind::RunEnd,
            &host,
            e.warned.as_nanos(),
            &format!("eviction warning from {}: {} sent", e.source, e.signal),
        ));
    }
    let mut lines = Lines {
        pending: HashMap::new(),
        out: Vec::new(),
    };
    store.replay_output(id, None, &mut OutputCursor::default(), &mut |r| {
        if let Replayed::Read {
            stream,
            time,
            bytes,
        } = r
        {
            lines.push(stream.as_u8(), time.as_nanos(), bytes);
        }
        Ok(())
    })?;
    for (t, line) in lines.finish() {
        push(Event::new(Kind::Output, &host, t, &line));
    }
    if telemetry {
        for l in store.run_logs(id, 0)? {
            ev.push(log_event(l, &host));
        }
        for s in store.run_spans(id)? {
            ev.push(span_event(s, &host));
        }
    }
    Ok(())
}

/// The node whose estimates correct `host` (see the module docs).
fn node_of<'a>(host: &str, nodes: &'a [String]) -> Option<&'a String> {
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_string();
    nodes
        .iter()
        .find(|n| *n == host)
        .or_else(|| nodes.iter().find(|n| short(n) == short(host)))
}

/// The merged timeline of `store` for `q`.
pub fn timeline(store: &dyn Backend, q: &TimelineQuery) -> plumb_store::Result<TimelineView> {
    let mut events = Vec::new();
    let ids: Vec<Uuid> = if q.runs.is_empty() {
        // A run that started a little before the window may still write in
        // it: look an hour further back.
        let filter = RunFilter {
            since: q
                .since
                .map(|t| Timestamp::from_nanos(t.as_nanos().saturating_sub(WIDE_NS))),
            limit: MAX_RUNS,
            ..RunFilter::default()
        };
        store
            .list_runs(&filter)?
            .into_iter()
            .map(|r| r.id)
            .collect()
    } else {
        q.runs
            .iter()
            .map(|r| store.resolve(r))
            .collect::<plumb_store::Result<_>>()?
    };
    for id in ids {
        run_events(store, id, !q.runs.is_empty(), &mut events)?;
    }
    if q.runs.is_empty() {
        // Every log record and span of the window, of runs or not, read
        // an hour wider on each side since host clocks may be that far off.
        let from = Timestamp::from_nanos(
            q.since
                .map_or(i64::MIN, |t| t.as_nanos().saturating_sub(WIDE_NS)),
        );
        let to = Timestamp::from_nanos(
            q.until
                .map_or(i64::MAX, |t| t.as_nanos().saturating_add(WIDE_NS)),
        );
        for l in store.logs_between(from, to, MAX_TELEMETRY)? {
            events.push(log_event(l, ""));
        }
        for s in store.spans_between(from, to, MAX_TELEMETRY)? {
            events.push(span_event(s, ""));
        }
        for t in store.node_transitions(None, 10_000)? {
            let from = t
                .from
                .map_or_else(|| "new".to_string(), |f| f.as_str().to_string());
            let mut e = Event::new(
                Kind::Node,
                COLLECTOR_HOST,
                t.at.as_nanos(),
                &format!(
                    "node {}: {from} -> {} (phi {:.1})",
                    t.node,
                    t.to.as_str(),
                    t.phi
                ),
            );
            e.source = Some(format!("node {}", t.node));
            events.push(e);
        }
        for a in store.alert_rows()? {
            let what = format!("alert {} ({:?})", a.alert.name, a.alert.severity).to_lowercase();
            events.push(Event::new(
                Kind::Alert,
                COLLECTOR_HOST,
                a.alert.starts_at.as_nanos(),
                &format!("{what} started"),
            ));
            if let Some(end) = a.alert.ends_at {
                events.push(Event::new(
                    Kind::Alert,
                    COLLECTOR_HOST,
                    end.as_nanos(),
                    &format!("{what} resolved"),
                ));
            }
        }
    }

    // Events far outside the window (by more than any clock is off) are
    // dropped before placing, so a long run's whole output is not placed
    // to show a minute of it.
    let (lo, hi) = (
        q.since
            .map_or(i64::MIN, |t| t.as_nanos().saturating_sub(WIDE_NS)),
        q.until
            .map_or(i64::MAX, |t| t.as_nanos().saturating_add(WIDE_NS)),
    );
    events.retain(|e| e.raw_ns >= lo && e.raw_ns < hi);

    // Each host's clock, from the estimates of its node.
    let nodes: Vec<String> = store.clock_latest()?.into_iter().map(|r| r.node).collect();
    let since_estimates = q.since.map_or(Timestamp::from_nanos(0), |t| {
        Timestamp::from_nanos(t.as_nanos().saturating_sub(WIDE_NS))
    });
    let mut clocks: HashMap<String, (HostClock, HostMapping)> = HashMap::new();
    for e in &events {
        if clocks.contains_key(&e.host) {
            continue;
        }
        let node = if e.host == COLLECTOR_HOST {
            None
        } else {
            node_of(&e.host, &nodes)
        };
        let points: Vec<ClockPoint> = match node {
            Some(n) => store
                .clock_history(n, since_estimates, MAX_ESTIMATES)?
                .into_iter()
                .map(|r| ClockPoint {
                    at_ns: r.estimate.at.as_nanos(),
                    offset_ns: r.estimate.offset_ns,
                    error_ns: r.estimate.error_ns,
                })
                .collect(),
            None => Vec::new(),
        };
        let mapping = HostMapping {
            host: e.host.clone(),
            node: node.cloned(),
            estimates: points.len(),
        };
        clocks.insert(e.host.clone(), (HostClock::new(points), mapping));
    }
    let corrected: Vec<(Event, Correction)> = events
        .into_iter()
        .map(|e| {
            let c = if e.host == COLLECTOR_HOST {
                Correction::exact(0)
            } else {
                clocks[&e.host].0.at(e.raw_ns)
            };
            (e, c)
        })
        .collect();
    let placed = place(corrected);
    let keep = |p: &Placed| {
        q.since.is_none_or(|t| p.placed_ns >= t.as_nanos())
            && q.until.is_none_or(|t| p.placed_ns < t.as_nanos())
            && (q.hosts.is_empty() || q.hosts.contains(&p.event.host))
            && q.grep.as_deref().is_none_or(|g| p.event.text.contains(g))
    };
    let mut events: Vec<Placed> = placed.into_iter().filter(keep).collect();
    let left_out = if q.limit > 0 {
        events.len().saturating_sub(q.limit)
    } else {
        0
    };
    events.drain(..left_out);
    // The hosts of the events shown, not of every event read.
    let shown: std::collections::HashSet<&str> =
        events.iter().map(|p| p.event.host.as_str()).collect();
    let mut hosts: Vec<HostMapping> = clocks
        .into_values()
        .map(|(_, m)| m)
        .filter(|m| shown.contains(m.host.as_str()))
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(TimelineView {
        events,
        left_out,
        hosts,
    })
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/timeline", get(view))
}

async fn view(
    _: Viewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<TimelineView>, ApiError> {
    let q = TimelineQuery::from_params(&pairs).map_err(ApiError::BadRequest)?;
    Ok(Json(state.db.read(move |store| timeline(store, &q)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_nodes_by_name_then_short_name() {
        let nodes = vec!["web1".to_string(), "db.example.com".to_string()];
        assert_eq!(node_of("web1", &nodes), Some(&nodes[0]));
        assert_eq!(node_of("web1.example.com", &nodes), Some(&nodes[0]));
        assert_eq!(node_of("db", &nodes), Some(&nodes[1]));
        assert_eq!(node_of("cache", &nodes), None);
    }

    #[test]
    fn output_lines_keep_the_time_of_the_read_they_started_in() {
        let mut l = Lines {
            pending: HashMap::new(),
            out: Vec::new(),
        };
        l.push(1, 10, b"one\ntw");
        l.push(2, 11, b"err\n");
        l.push(1, 20, b"o\nthree");
        let mut got = l.finish();
        got.sort();
        assert_eq!(
            got,
            [
                (10, "one".into()),
                (10, "two".into()),
                (11, "err".into()),
                (20, "three".into())
            ]
        );
    }

    #[test]
    fn queries_round_trip_through_parameters_and_unknown_ones_are_named() {
        let q = TimelineQuery {
            since: Some(Timestamp::from_nanos(1_796_331_306_000_000_000)),
            until: None,
            runs: vec!["last".into(), "0193".into()],
            hosts: vec!["a".into()],
            grep: Some("GET /".into()),
            limit: 50,
        };
        let pairs: Vec<(String, String)> = q
            .to_params()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(TimelineQuery::from_params(&pairs).unwrap(), q);
        let e = TimelineQuery::from_params(&[("hots".into(), "a".into())]).unwrap_err();
        assert!(e.contains("`hots`"), "{e}");
    }
}
