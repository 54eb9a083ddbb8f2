//! One timeline out of many clocks: events stamped by their own host's
//! clock, corrected by that host's measured offset, then ordered so that no
//! effect precedes its cause.
//!
//! **Correction.** A host's offset is how far its clock is ahead of the
//! reference (see [`crate::clock`]), so an event stamped `raw` on that host
//! happened at `raw − offset` on the reference clock, within the offset's
//! error bound. [`HostClock`] interpolates a host's stored estimates at the
//! event's own moment, as [`crate::clock::Window::offset_at`] does with
//! samples: the bound of each neighbouring estimate grows with its distance
//! at the drift allowance, and the interpolated bound is their weighted
//! mean.
//!
//! **Causality.** Corrected times can still put a receive before its send
//! when the offsets are uncertain. [`place`] applies the constraints of a
//! hybrid logical clock: each host's events keep their own order, a
//! receive (`plumb.msg.recv=ID`) comes after its send
//! (`plumb.msg.send=ID`), and a span comes no earlier than its parent span
//! on another host. An event is placed at the latest of its corrected time
//! and what those constraints demand, so the shift is zero unless the
//! measured offsets contradict a causal relation. Events of different hosts
//! whose error intervals overlap and that no chain of constraints orders are
//! marked [`Placed::ambiguous`]: their order in the output is a tie broken
//! by corrected time, not a fact.
//!
//! ```
//! use plumb_model::timeline::{Correction, Event, place};
//! // Host b runs 5 s fast and answers a request from a 1 ms later.
//! let send = Event::line("a", 1_000_000_000, "GET /x plumb.msg.send=r1");
//! let recv = Event::line("b", 6_000_500_000, "got it plumb.msg.recv=r1");
//! let placed = place(vec![
//!     (send, Correction::exact(0)),
//!     (recv, Correction { offset_ns: 5_000_000_000, error_ns: 2_000_000 }),
//! ]);
//! assert_eq!(placed[0].event.host, "a");
//! assert!(placed[1].placed_ns > placed[0].placed_ns);
//! ```

pub mod stamp;

use crate::Timestamp;
use crate::clock::Policy;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A line of a plain log file (`plumb timeline --merge`).
    Line,
    /// A line of a recorded run's output.
    Output,
    /// An OTLP log record.
    Log,
    /// An OTLP span: an interval from its start ([`Event::end_ns`]).
    Span,
    /// A run started.
    RunStart,
    /// A run ended.
    RunEnd,
    /// A stack snapshot was taken of a run.
    Snapshot,
    /// A node changed state (up, suspect, down...).
    Node,
    /// An alert started or was resolved.
    Alert,
}

impl Kind {
    /// The word shown in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Line => "line",
            Kind::Output => "output",
            Kind::Log => "log",
            Kind::Span => "span",
            Kind::RunStart => "run-start",
            Kind::RunEnd => "run-end",
            Kind::Snapshot => "snapshot",
            Kind::Node => "node",
            Kind::Alert => "alert",
        }
    }
}

/// A causal mark a log line carries: `plumb.msg.send=ID` where a message
/// leaves, `plumb.msg.recv=ID` where it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Msg {
    /// The message `ID` was sent.
    Send(String),
    /// The message `ID` was received.
    Recv(String),
}

impl Msg {
    /// The mark in `text`, if any: the first `plumb.msg.send=` or
    /// `plumb.msg.recv=` followed by an id (up to whitespace, a comma, a
    /// quote or a closing bracket).
    pub fn find(text: &[u8]) -> Option<Msg> {
        const MARK: &[u8] = b"plumb.msg.";
        let mut from = 0;
        while let Some(i) = find_bytes(&text[from..], MARK) {
            let rest = &text[from + i + MARK.len()..];
            let send = rest.starts_with(b"send=");
            if send || rest.starts_with(b"recv=") {
                let id = &rest[5..];
                let end = id
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || b",;\"')]}".contains(b))
                    .unwrap_or(id.len());
                if end > 0 {
                    let id = String::from_utf8_lossy(&id[..end]).into_owned();
                    return Some(if send { Msg::Send(id) } else { Msg::Recv(id) });
                }
            }
            from += i + MARK.len();
        }
        None
    }
}

/// The first position of `needle` in `hay` (short needles, short lines).
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One thing that happened, stamped by its host's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The host (node) whose clock stamped it.
    pub host: String,
    /// Its timestamp on that host's clock, ns since the epoch.
    pub raw_ns: i64,
    /// What kind of event.
    pub kind: Kind,
    /// What it says.
    pub text: String,
    /// Where it came from (a run id, a file, a service), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a span: its end, on the same clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<i64>,
    /// The OTLP trace it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Its span id (a span), or the span it was logged in (a log record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// A span's parent span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The send or receive mark it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<Msg>,
}

impl Event {
    /// A log line of `host` at `raw_ns`, with the send/receive mark its
    /// text carries.
    pub fn line(host: &str, raw_ns: i64, text: &str) -> Event {
        Event::new(Kind::Line, host, raw_ns, text)
    }

    /// An event of `kind`, with the send/receive mark its text carries.
    pub fn new(kind: Kind, host: &str, raw_ns: i64, text: &str) -> Event {
        Event {
            host: host.to_string(),
            raw_ns,
            kind,
            msg: Msg::find(text.as_bytes()),
            text: text.to_string(),
            source: None,
            end_ns: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
        }
    }
}

/// What is subtracted from a host's timestamp, and how sure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Correction {
    /// The host's offset (its clock minus the reference), ns.
    pub offset_ns: i64,
    /// The true offset lies within `offset_ns ± error_ns`.
    pub error_ns: i64,
    /// No measurement covers this host: the offset is taken as zero and
    /// the error as unknown (the event is never called ambiguous for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmeasured: bool,
}

impl Correction {
    /// An offset known exactly (given by the user).
    pub fn exact(offset_ns: i64) -> Correction {
        Correction {
            offset_ns,
            error_ns: 0,
            unmeasured: false,
        }
    }

    /// No measurement: nothing subtracted.
    pub fn unmeasured() -> Correction {
        Correction {
            offset_ns: 0,
            error_ns: 0,
            unmeasured: true,
        }
    }
}

/// One stored estimate of a host's clock, at a moment of that host's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockPoint {
    /// When the estimate holds (the host's clock), ns.
    pub at_ns: i64,
    /// Offset there, ns.
    pub offset_ns: i64,
    /// Its bound there, ns.
    pub error_ns: i64,
}

/// A host's clock over time, from its stored estimates.
#[derive(Debug, Clone, Default)]
pub struct HostClock {
    /// By `at_ns`.
    points: Vec<ClockPoint>,
}

/// `ppm` parts per million of `ns`, rounded up.
fn grow(ns: i64, ppm: f64) -> i64 {
    (ns.unsigned_abs() as f64 * ppm / 1e6).ceil() as i64
}

impl HostClock {
    /// The estimates, in any order.
    pub fn new(mut points: Vec<ClockPoint>) -> HostClock {
        points.sort_by_key(|p| p.at_ns);
        points.dedup_by_key(|p| p.at_ns);
        HostClock { points }
    }

    /// Whether there is no estimate.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The correction at the host's time `t`: linear between the estimates
    /// on either side, each side's bound grown over its distance to `t` at
    /// the drift allowance and the two bounds weighted as the offsets are
    /// (the true offset is within each side's bound, so within their
    /// weighted mean); outside the estimates' span, the nearest one with its
    /// bound grown. With no estimate, [`Correction::unmeasured`].
    pub fn at(&self, t: i64) -> Correction {
        let ppm = Policy::default().drift_allowance_ppm;
        let bound = |p: &ClockPoint| p.error_ns + grow(t - p.at_ns, ppm);
        let i = self.points.partition_point(|p| p.at_ns <= t);
        match (
            i.checked_sub(1).map(|j| &self.points[j]),
            self.points.get(i),
        ) {
            (Some(a), Some(b)) => {
                let w = (t - a.at_ns) as f64 / (b.at_ns - a.at_ns) as f64;
                let off = a.offset_ns as f64 * (1.0 - w) + b.offset_ns as f64 * w;
                let err = bound(a) as f64 * (1.0 - w) + bound(b) as f64 * w;
                Correction {
                    offset_ns: off.round() as i64,
                    error_ns: err.ceil() as i64,
                    unmeasured: false,
                }
            }
            (Some(p), None) | (None, Some(p)) => Correction {
                offset_ns: p.offset_ns,
                error_ns: bound(p),
                unmeasured: false,
            },
            (None, None) => Correction::unmeasured(),
        }
    }
}

/// An event where the merged timeline puts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// The event, with its raw timestamp.
    pub event: Event,
    /// What was subtracted from its raw timestamp.
    pub correction: Correction,
    /// `raw − offset`: its time on the reference clock.
    pub corrected_ns: i64,
    /// Where it is placed: the corrected time, moved later only as far as
    /// a causal constraint demands.
    pub placed_ns: i64,
    /// `placed − corrected`: how far causality moved it (0 almost always).
    pub shift_ns: i64,
    /// Its order against an event of another host is not known: their
    /// error intervals overlap and no causal chain orders them.
    pub ambiguous: bool,
    /// A receive whose send is not among the events, or a cycle of marks
    /// that no order satisfies: its constraint was dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmatched: bool,
}

impl Placed {
    /// The placed time as a timestamp.
    pub fn at(&self) -> Timestamp {
        Timestamp::from_nanos(self.placed_ns)
    }
}

/// How many later events the ambiguity sweep compares each event with:
/// beyond that, the events overlapping it are so dense that marking more of
/// them tells nobody anything.
const AMBIGUITY_SCAN: usize = 256;

/// Orders events from many hosts into one timeline (see the module docs):
/// each corrected by its [`Correction`], then moved later only as far as
/// the causal constraints demand, and flagged when its order against
/// another host's event is not known. The result is sorted by placed time;
/// ties keep causal order, then corrected time, then input order.
pub fn place(events: Vec<(Event, Correction)>) -> Vec<Placed> {
    let n = events.len();
    let corrected: Vec<i64> = events
        .iter()
        .map(|(e, c)| e.raw_ns.saturating_sub(c.offset_ns))
        .collect();

    // Each host's events in the order of its own clock.
    let mut host_ix: HashMap<&str, usize> = HashMap::new();
    let mut host_of = Vec::with_capacity(n);
    for (e, _) in &events {
        let next = host_ix.len();
        host_of.push(*host_ix.entry(e.host.as_str()).or_insert(next));
    }
    let hosts = host_ix.len();
    let mut chains: Vec<Vec<usize>> = vec![Vec::new(); hosts];
    for i in 0..n {
        chains[host_of[i]].push(i);
    }
    let mut seq = vec![0u32; n];
    let mut host_pred: Vec<Option<usize>> = vec![None; n];
    for chain in &mut chains {
        chain.sort_by_key(|&i| (events[i].0.raw_ns, i));
        for (k, &i) in chain.iter().enumerate() {
            seq[i] = k as u32 + 1;
            host_pred[i] = k.checked_sub(1).map(|p| chain[p]);
        }
    }

    // Causal predecessors on other hosts: the send of a receive, and the
    // parent of a span. `gap` is how much later the successor must be.
    let mut sends: HashMap<&str, usize> = HashMap::new();
    let mut spans: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (e, _)) in events.iter().enumerate() {
        if let Some(Msg::Send(id)) = &e.msg {
            sends.entry(id.as_str()).or_insert(i);
        }
        if e.kind == Kind::Span
            && let (Some(t), Some(s)) = (&e.trace_id, &e.span_id)
        {
            spans.entry((t.as_str(), s.as_str())).or_insert(i);
        }
    }
    let mut cause: Vec<Option<(usize, i64)>> = vec![None; n];
    let mut unmatched = vec![false; n];
    for (i, (e, _)) in events.iter().enumerate() {
        if let Some(Msg::Recv(id)) = &e.msg {
            match sends.get(id.as_str()) {
                Some(&s) if s != i => cause[i] = Some((s, 1)),
                _ => unmatched[i] = true,
            }
        } else if e.kind == Kind::Span
            && let (Some(t), Some(p)) = (&e.trace_id, &e.parent_span_id)
            && let Some(&s) = spans.get(&(t.as_str(), p.as_str()))
            && host_of[s] != host_of[i]
        {
            cause[i] = Some((s, 0));
        }
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0u32; n];
    for i in 0..n {
        if let Some(p) = host_pred[i] {
            succ[p].push(i);
            indeg[i] += 1;
        }
        if let Some((c, _)) = cause[i] {
            succ[c].push(i);
            indeg[i] += 1;
        }
    }

    // Kahn's order, earliest corrected time first; each event's vector
    // clock says which event of every host it is known to come after.
    let mut placed = vec![i64::MIN; n];
    let mut done = vec![false; n];
    let mut vc: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut ready: BinaryHeap<Reverse<(i64, usize)>> = (0..n)
        .filter(|&i| indeg[i] == 0)
        .map(|i| Reverse((corrected[i], i)))
        .collect();
    let mut rank = vec![0usize; n];
    let mut processed = 0;
    while processed < n {
        let i = match ready.pop() {
            Some(Reverse((_, i))) => i,
            None => {
                // A cycle of marks (a receive before its own send on one
                // host, say): drop the causal constraint of the earliest
                // event whose own host's predecessor is done.
                let i = (0..n)
                    .filter(|&i| !done[i] && host_pred[i].is_none_or(|p| done[p]))
                    .min_by_key(|&i| (corrected[i], i))
                    .expect("every host chain has a first event not done");
                cause[i] = None;
                unmatched[i] = true;
                i
            }
        };
        if done[i] {
            continue;
        }
        let mut at = corrected[i];
        let mut clock = match host_pred[i] {
            Some(p) => {
                at = at.max(placed[p]);
                vc[p].clone()
            }
            None => vec![0; hosts],
        };
        if let Some((c, gap)) = cause[i] {
            at = at.max(placed[c].saturating_add(gap));
            for (h, v) in clock.iter_mut().zip(&vc[c]) {
                *h = (*h).max(*v);
            }
        }
        clock[host_of[i]] = seq[i];
        placed[i] = at;
        vc[i] = clock;
        done[i] = true;
        rank[i] = processed;
        processed += 1;
        for &s in &succ[i] {
            indeg[s] = indeg[s].saturating_sub(1);
            if indeg[s] == 0 {
                ready.push(Reverse((corrected[s], s)));
            }
        }
    }

    // Ties go in the order the constraints were satisfied in, which keeps
    // each host's own order and every send before its receive.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (placed[i], rank[i]));

    // Ambiguity: events of different hosts within their combined bounds
    // that no chain of constraints orders.
    let err = |i: usize| {
        let c = &events[i].1;
        if c.unmeasured { 0 } else { c.error_ns }
    };
    let max_err = (0..n).map(err).max().unwrap_or(0);
    let before = |a: usize, b: usize| vc[b][host_of[a]] >= seq[a];
    let mut ambiguous = vec![false; n];
    for (k, &i) in order.iter().enumerate() {
        for &j in order[k + 1..].iter().take(AMBIGUITY_SCAN) {
            let gap = placed[j] - placed[i];
            if gap > err(i) + max_err {
                break;
            }
            if host_of[i] != host_of[j] && gap <= err(i) + err(j) && !before(i, j) && !before(j, i)
            {
                ambiguous[i] = true;
                ambiguous[j] = true;
            }
        }
    }

    let mut slots: Vec<Option<(Event, Correction)>> = events.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| {
            let (event, correction) = slots[i].take().expect("each index once");
            Placed {
                event,
                correction,
                corrected_ns: corrected[i],
                placed_ns: placed[i],
                shift_ns: placed[i] - corrected[i],
                ambiguous: ambiguous[i],
                unmatched: unmatched[i],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: i64 = 1_000_000;
    const SEC: i64 = 1_000_000_000;

    fn c(offset_ns: i64, error_ns: i64) -> Correction {
        Correction {
            offset_ns,
            error_ns,
            unmeasured: false,
        }
    }

    #[test]
    fn marks_are_found_with_their_ids() {
        assert_eq!(
            Msg::find(b"GET /a plumb.msg.send=req-7 took 3ms"),
            Some(Msg::Send("req-7".into()))
        );
        assert_eq!(
            Msg::find(b"{\"m\":\"x plumb.msg.recv=9f\"}"),
            Some(Msg::Recv("9f".into()))
        );
        assert_eq!(
            Msg::find(b"plumb.msg.send= nothing plumb.msg.other=1"),
            None
        );
        assert_eq!(Msg::find(b"plain line"), None);
    }

    #[test]
    fn a_host_clock_interpolates_and_grows_its_bound() {
        let h = HostClock::new(vec![
            ClockPoint {
                at_ns: 100 * SEC,
                offset_ns: 2 * SEC,
                error_ns: MS,
            },
            ClockPoint {
                at_ns: 0,
                offset_ns: 0,
                error_ns: MS,
            },
        ]);
        let mid = h.at(50 * SEC);
        assert_eq!(mid.offset_ns, SEC);
        // 1 ms plus 15 ppm of 50 s (750 us) on both sides.
        assert_eq!(mid.error_ns, MS + 750_000);
        let late = h.at(200 * SEC);
        assert_eq!(late.offset_ns, 2 * SEC);
        assert_eq!(late.error_ns, MS + 1_500_000);
        assert!(HostClock::default().at(5).unmeasured);
    }

    /// Two hosts, b's clock `skew` ahead: a sends requests, b answers each
    /// `lag` later, a receives the answer `lag` after that.
    fn exchange(count: i64, skew: i64, lag: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        for k in 0..count {
            let t = k * 10 * MS;
            ev.push(Event::line("a", t, &format!("request plumb.msg.send=q{k}")));
            ev.push(Event::line(
                "b",
                t + lag + skew,
                &format!("got plumb.msg.recv=q{k}"),
            ));
            ev.push(Event::line(
                "b",
                t + 2 * lag + skew,
                &format!("answer plumb.msg.send=r{k}"),
            ));
            ev.push(Event::line(
                "a",
                t + 3 * lag,
                &format!("reply plumb.msg.recv=r{k}"),
            ));
        }
        ev
    }

    fn receives_follow_sends(p: &[Placed]) -> bool {
        let pos: HashMap<(bool, String), usize> = p
            .iter()
            .enumerate()
            .filter_map(|(i, x)| match &x.event.msg {
                Some(Msg::Send(id)) => Some(((true, id.clone()), i)),
                Some(Msg::Recv(id)) => Some(((false, id.clone()), i)),
                None => None,
            })
            .collect();
        pos.iter()
            .filter(|((send, _), _)| !send)
            .all(|((_, id), &r)| pos[&(true, id.clone())] < r)
    }

    #[test]
    fn corrected_offsets_put_answers_after_requests_and_raw_ones_do_not() {
        let ev = exchange(5, 3 * SEC, MS);
        let with = |off: i64| {
            place(
                ev.iter()
                    .map(|e| (e.clone(), c(if e.host == "b" { off } else { 0 }, 100_000)))
                    .collect(),
            )
        };
        let good = with(3 * SEC);
        assert!(receives_follow_sends(&good));
        assert!(good.iter().all(|p| p.shift_ns == 0 && !p.ambiguous));
        // Raw timestamps with no causal pass: b's lines all come last.
        let mut raw = ev.clone();
        raw.sort_by_key(|e| e.raw_ns);
        let raw: Vec<Placed> = raw
            .into_iter()
            .map(|event| Placed {
                corrected_ns: event.raw_ns,
                placed_ns: event.raw_ns,
                event,
                correction: Correction::default(),
                shift_ns: 0,
                ambiguous: false,
                unmatched: false,
            })
            .collect();
        assert!(!receives_follow_sends(&raw));
    }

    #[test]
    fn a_wrong_offset_is_overruled_by_causality_and_marked() {
        // The estimate says b is 3 s ahead; it is 3.005 s ahead, so its
        // answers would land 3 ms early, before the requests.
        let ev = exchange(3, 3 * SEC + 5 * MS, MS);
        let p = place(
            ev.into_iter()
                .map(|e| {
                    let off = if e.host == "b" { 3 * SEC } else { 0 };
                    (e, c(off, 2 * MS))
                })
                .collect(),
        );
        assert!(receives_follow_sends(&p));
        assert!(p.iter().any(|x| x.shift_ns > 0));
        // Each host's own order survives.
        for h in ["a", "b"] {
            let raws: Vec<i64> = p
                .iter()
                .filter(|x| x.event.host == h)
                .map(|x| x.event.raw_ns)
                .collect();
            assert!(raws.windows(2).all(|w| w[0] <= w[1]), "{h}: {raws:?}");
        }
    }

    #[test]
    fn overlapping_unrelated_events_are_ambiguous_and_related_ones_are_not() {
        let p = place(vec![
            (Event::line("a", 0, "a alone"), c(0, MS)),
            (Event::line("b", 500_000, "b alone"), c(0, MS)),
            (
                Event::line("c", 10 * SEC, "c sends plumb.msg.send=m"),
                c(0, MS),
            ),
            (
                Event::line("d", 10 * SEC + 100_000, "d gets plumb.msg.recv=m"),
                c(0, MS),
            ),
            (Event::line("e", 20 * SEC, "e far away"), c(0, MS)),
        ]);
        let amb: Vec<(&str, bool)> = p
            .iter()
            .map(|x| (x.event.text.as_str(), x.ambiguous))
            .collect();
        assert_eq!(
            amb,
            [
                ("a alone", true),
                ("b alone", true),
                ("c sends plumb.msg.send=m", false),
                ("d gets plumb.msg.recv=m", false),
                ("e far away", false)
            ]
        );
    }

    #[test]
    fn a_child_span_starts_no_earlier_than_its_parent_on_another_host() {
        let span = |host: &str, t: i64, id: &str, parent: Option<&str>| Event {
            trace_id: Some("t1".into()),
            span_id: Some(id.into()),
            parent_span_id: parent.map(String::from),
            end_ns: Some(t + 5 * MS),
            ..Event::new(Kind::Span, host, t, id)
        };
        let p = place(vec![
            (span("b", 10 * MS, "child", Some("root")), c(0, MS)),
            (span("a", 12 * MS, "root", None), c(0, MS)),
        ]);
        assert_eq!(p[0].event.text, "root");
        assert_eq!(p[1].placed_ns, 12 * MS);
        assert_eq!(p[1].shift_ns, 2 * MS);
    }

    #[test]
    fn a_receive_without_its_send_or_in_a_cycle_is_unmatched_not_lost() {
        let p = place(vec![
            (Event::line("a", 5, "x plumb.msg.recv=nobody"), c(0, 0)),
            (Event::line("a", 10, "y plumb.msg.recv=loop"), c(0, 0)),
            (Event::line("a", 20, "z plumb.msg.send=loop"), c(0, 0)),
        ]);
        assert_eq!(p.len(), 3);
        assert!(p[0].unmatched && p[1].unmatched && !p[2].unmatched);
        assert_eq!(
            p.iter().map(|x| x.placed_ns).collect::<Vec<_>>(),
            [5, 10, 20]
        );
    }

    proptest! {
        /// Whatever the skew and the error of its estimate (within the
        /// bound), every receive comes after its send, each host keeps its
        /// own order, and nothing is moved earlier than its corrected time.
        #[test]
        fn causality_and_host_order_always_hold(
            skew in -5_000_000_000i64..5_000_000_000,
            misjudged in -20_000_000i64..20_000_000,
            lag in 1i64..30_000_000,
            count in 1i64..20,
        ) {
            let ev = exchange(count, skew, lag);
            let p = place(
                ev.into_iter()
                    .map(|e| {
                        let off = if e.host == "b" { skew + misjudged } else { 0 };
                        (e, c(off, misjudged.abs()))
                    })
                    .collect(),
            );
            prop_assert!(receives_follow_sends(&p));
            prop_assert!(p.iter().all(|x| x.shift_ns >= 0));
            for h in ["a", "b"] {
                let raws: Vec<i64> = p.iter().filter(|x| x.event.host == h).map(|x| x.event.raw_ns).collect();
                prop_assert!(raws.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
