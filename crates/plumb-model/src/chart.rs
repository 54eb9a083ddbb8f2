//! Charts, pure: the interval a time range is cut into ([`choose_interval`]),
//! counts per state put into those intervals ([`bucket`] → [`RunsChart`]),
//! and their drawings: inline SVG for the dashboard ([`stacked_bars_svg`],
//! [`points_svg`], [`sparkline_svg`]) and Unicode for the terminal
//! ([`spark_text`], [`bar_text`]).
//!
//! Every SVG carries a `<title>` (its accessible name), axes in UTC with
//! units, a `<title>` per bar or point with its values (hover text), and
//! shows state by pattern or shape and a legend with words as well as by
//! hue, so it reads without colour. Every label is escaped here; a caller
//! hands plain text.

use crate::{RunState, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

const MINUTE: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The most bars a chart cuts its range into.
pub const MAX_BARS: i64 = 60;

/// The intervals a chart may use, shortest first: every one a multiple of
/// the store's 5-minute rollup.
pub const INTERVALS: [i64; 11] = [
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
    28 * DAY,
];

/// The shortest interval in [`INTERVALS`] that cuts `range_ns` into at most
/// [`MAX_BARS`] bars (the longest one for a longer range; the shortest for
/// an empty or negative one).
pub fn choose_interval(range_ns: i64) -> i64 {
    let range = range_ns.max(1);
    INTERVALS
        .iter()
        .copied()
        .find(|iv| (range + iv - 1) / iv <= MAX_BARS)
        .unwrap_or(INTERVALS[INTERVALS.len() - 1])
}

/// An interval in words: `5 minutes`, `hour`, `3 hours`, `day`, `week`.
pub fn interval_label(ns: i64) -> String {
    let unit = |n: i64, one: &str| {
        if n == 1 {
            one.to_string()
        } else {
            format!("{n} {one}s")
        }
    };
    if ns >= 7 * DAY && (ns % (7 * DAY)) == 0 {
        unit(ns / (7 * DAY), "week")
    } else if ns >= DAY && ns % DAY == 0 {
        unit(ns / DAY, "day")
    } else if ns >= HOUR && ns % HOUR == 0 {
        unit(ns / HOUR, "hour")
    } else if ns >= MINUTE && ns % MINUTE == 0 {
        unit(ns / MINUTE, "minute")
    } else {
        crate::display::duration(ns)
    }
}

/// `t` rounded down to a multiple of `step` (also before 1970).
pub fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// A count of runs in one state in one bucket of time (what the store's
/// rollup answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// Start of the bucket, ns.
    pub bucket_ns: i64,
    /// The state.
    pub state: RunState,
    /// How many runs that started in the bucket are in the state.
    pub n: u64,
}

/// The runs of one state in a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateN {
    /// The state.
    pub state: RunState,
    /// How many runs.
    pub n: u64,
}

/// One interval of a runs-over-time chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// Its start (inclusive).
    pub start: Timestamp,
    /// Its end (exclusive).
    pub end: Timestamp,
    /// Runs started in it.
    pub total: u64,
    /// Those runs by state, in [`RunState::ALL`]'s order, non-zero only.
    pub counts: Vec<StateN>,
}

/// Runs per interval by state: the data of a runs-over-time chart (also in
/// the page's JSON twin, and what `plumb ls --chart` draws).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsChart {
    /// Start of the first bar.
    pub from: Timestamp,
    /// End of the last bar.
    pub until: Timestamp,
    /// Every bar's length, ns.
    pub interval_ns: i64,
    /// Every interval from `from` to `until`, empty ones included, oldest
    /// first.
    pub bars: Vec<Bar>,
    /// Runs counted in all.
    pub total: u64,
    /// When the filter could not use the rollup and only the newest runs
    /// were counted: the start of the oldest one counted. Bars before it
    /// may be short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_from: Option<Timestamp>,
}

/// Events per interval: the data of a one-series bar chart (an error
/// group's occurrences over time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountChart {
    /// Start of the first interval.
    pub from: Timestamp,
    /// End of the last one.
    pub until: Timestamp,
    /// Every interval's length, ns.
    pub interval_ns: i64,
    /// The count of each interval, oldest first, empty ones included.
    pub counts: Vec<u64>,
    /// Events counted in all.
    pub total: u64,
    /// When only the newest events were counted: the oldest one counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_from: Option<Timestamp>,
}

/// Counts `times` per interval from `from` to `until`, the interval chosen
/// from the range ([`choose_interval`]); times outside are left out.
pub fn count_times(times: &[Timestamp], from: Timestamp, until: Timestamp) -> CountChart {
    let iv = choose_interval(until.as_nanos() - from.as_nanos());
    let start = align_down(from.as_nanos(), iv);
    let end = until.as_nanos().max(start + 1);
    let n = ((end - start + iv - 1) / iv).max(1) as usize;
    let mut counts = vec![0u64; n];
    let mut total = 0;
    for t in times {
        let t = t.as_nanos();
        if t >= start && t < end {
            counts[((t - start) / iv) as usize] += 1;
            total += 1;
        }
    }
    CountChart {
        from: Timestamp::from_nanos(start),
        until: Timestamp::from_nanos(start + n as i64 * iv),
        interval_ns: iv,
        counts,
        total,
        partial_from: None,
    }
}

/// Puts counts into bars of `interval_ns` from `from` (rounded down to the
/// interval) up to `until`: one bar per interval, empty ones included;
/// counts outside the range are left out.
pub fn bucket(
    rows: &[StateCount],
    from: Timestamp,
    until: Timestamp,
    interval_ns: i64,
) -> RunsChart {
    let iv = interval_ns.max(1);
    let start = align_down(from.as_nanos(), iv);
    let end = until.as_nanos().max(start + 1);
    let n = ((end - start + iv - 1) / iv).max(1) as usize;
    let mut counts = vec![[0u64; RunState::ALL.len()]; n];
    for r in rows {
        if r.bucket_ns < start || r.bucket_ns >= end {
            continue;
        }
        let i = ((r.bucket_ns - start) / iv) as usize;
        let s = state_index(r.state);
        if let Some(c) = counts.get_mut(i) {
            c[s] += r.n;
        }
    }
    let mut total = 0;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t = c.iter().sum::<u64>();
            total += t;
            Bar {
                start: Timestamp::from_nanos(start + i as i64 * iv),
                end: Timestamp::from_nanos(start + (i as i64 + 1) * iv),
                total: t,
                counts: RunState::ALL
                    .iter()
                    .zip(c)
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, n)| StateN { state: *s, n: *n })
                    .collect(),
            }
        })
        .collect();
    RunsChart {
        from: Timestamp::from_nanos(start),
        until: Timestamp::from_nanos(start + n as i64 * iv),
        interval_ns: iv,
        bars,
        total,
        partial_from: None,
    }
}

fn state_index(s: RunState) -> usize {
    RunState::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// Escapes text for SVG (XML) content and quoted attributes; control
/// characters become spaces.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with `…` when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How a state is drawn: hue, pattern, and a point's shape.
struct Look {
    fill: &'static str,
    /// The pattern's marks, drawn in white over the hue (empty: solid).
    marks: &'static str,
}

fn look(s: RunState) -> Look {
    match s {
        RunState::Succeeded => Look {
            fill: "#1a7f37",
            marks: "",
        },
        RunState::Failed => Look {
            fill: "#c0262d",
            marks: "<path d=\"M0 6 L6 0\" stroke=\"#fff\" stroke-width=\"1.5\"/>",
        },
        RunState::TimedOut => Look {
            fill: "#8e1b5e",
            marks: "<path d=\"M0 6 L6 0 M0 0 L6 6\" stroke=\"#fff\" stroke-width=\"1\"/>",
        },
        RunState::Killed => Look {
            fill: "#b35900",
            marks: "<path d=\"M0 0 L6 6\" stroke=\"#fff\" stroke-width=\"1.5\"/>",
        },
        RunState::Evicted => Look {
            fill: "#9a6700",
            marks: "<circle cx=\"3\" cy=\"3\" r=\"1.2\" fill=\"#fff\"/>",
        },
        RunState::Running => Look {
            fill: "#0b5cad",
            marks: "<path d=\"M3 0 L3 6\" stroke=\"#fff\" stroke-width=\"1.2\"/>",
        },
        RunState::Waiting => Look {
            fill: "#6b7280",
            marks: "<path d=\"M0 3 L6 3\" stroke=\"#fff\" stroke-width=\"1.2\"/>",
        },
        RunState::Cancelled => Look {
            fill: "#a3a3a3",
            marks: "<path d=\"M0 1 L6 1 M0 4 L6 4\" stroke=\"#fff\" stroke-width=\"1\"/>",
        },
    }
}

/// The fill of a state inside the SVG whose element ids start with `id`.
fn fill(id: &str, s: RunState) -> String {
    if look(s).marks.is_empty() {
        look(s).fill.to_string()
    } else {
        format!("url(#{id}-p-{})", s.as_str())
    }
}

fn patterns(out: &mut String, id: &str) {
    out.push_str("<defs>");
    for s in RunState::ALL {
        let l = look(s);
        if l.marks.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<pattern id=\"{id}-p-{st}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">\
<rect width=\"6\" height=\"6\" fill=\"{f}\"/>{m}</pattern>",
            st = s.as_str(),
            f = l.fill,
            m = l.marks
        );
    }
    out.push_str("</defs>");
}

/// A moment as an axis label, in UTC: the date for intervals of a day or
/// more, else month-day and time.
pub fn tick_label(t: Timestamp, interval_ns: i64) -> String {
    let s = t.to_rfc3339_secs();
    // 2026-12-04T05:00:00Z
    if s.len() < 16 {
        return s;
    }
    if interval_ns >= DAY {
        s[..10].to_string()
    } else {
        format!("{} {}", &s[5..10], &s[11..16])
    }
}

/// A moment for hover text: `2026-12-04 05:00:00 UTC`.
pub fn moment(t: Timestamp) -> String {
    format!(
        "{} UTC",
        t.to_rfc3339_secs().replace('T', " ").trim_end_matches('Z')
    )
}

/// A round upper bound for an axis showing values up to `max`.
pub fn nice_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Geometry shared by the charts: plot area inside margins.
const W: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = 40.0;

fn open_svg(out: &mut String, id: &str, height: f64, title: &str, desc: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height}\" \
width=\"100%\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" font-family=\"system-ui,sans-serif\" font-size=\"11\">\
<title id=\"{id}-t\">{t}</title><desc id=\"{id}-d\">{d}</desc>",
        t = esc(title),
        d = esc(desc),
    );
    let _ = write!(
        out,
        "<text x=\"{LEFT}\" y=\"15\" font-size=\"13\" font-weight=\"600\" fill=\"#1b1f24\">{}</text>",
        esc(&shorten(title, 80))
    );
}

/// The time axis under a plot from `from` to `until`: a few ticks with
/// UTC labels, and the unit.
fn time_axis(out: &mut String, from: i64, until: i64, interval_ns: i64, height: f64) {
    let y = height - BOTTOM;
    let pw = W - LEFT - RIGHT;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#5b6470\"/>",
        x2 = W - RIGHT
    );
    let span = (until - from).max(1);
    // At most seven ticks, on round moments (a multiple of one of the
    // intervals, never shorter than the bars).
    let per = INTERVALS
        .iter()
        .copied()
        .filter(|iv| *iv >= interval_ns)
        .find(|iv| span / iv <= 7)
        .unwrap_or(span.max(1));
    let mut t = align_down(from, per);
    if t < from {
        t += per;
    }
    let mut n = 0;
    while t <= until && n < 12 {
        let x = LEFT + (t - from) as f64 / span as f64 * pw;
        if x > W - RIGHT - 20.0 && n > 0 {
            // Too close to the edge to label.
            break;
        }
        // Labels near the right edge end at their tick, so none is cut.
        let anchor = if x > W - RIGHT - 40.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{y}\" x2=\"{x:.1}\" y2=\"{y2}\" stroke=\"#5b6470\"/>\
<text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"{anchor}\" fill=\"#5b6470\">{}</text>",
            esc(&tick_label(Timestamp::from_nanos(t), interval_ns)),
            y2 = y + 4.0,
            ty = y + 15.0,
        );
        t += per;
        n += 1;
    }
    let _ = write!(
        out,
        "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\" fill=\"#5b6470\">time (UTC)</text>",
        x = W - RIGHT,
        ty = height - 4.0
    );
}

/// The value axis left of a plot: 0, half and the top, with the unit.
fn value_axis(out: &mut String, top: f64, unit: &str, height: f64, fmt: &dyn Fn(f64) -> String) {
    let y0 = height - BOTTOM;
    let ph = y0 - TOP;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{y0}\" stroke=\"#5b6470\"/>"
    );
    for f in [0.0, 0.5, 1.0] {
        // Half of an odd top would be a fraction of a count.
        if f == 0.5 && (top * f).fract() != 0.0 && top <= 10.0 {
            continue;
        }
        let y = y0 - f * ph;
        let _ = write!(
            out,
            "<line x1=\"{x1}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\" stroke=\"#d8dde3\"/>\
<text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#5b6470\">{}</text>",
            esc(&fmt(top * f)),
            x1 = LEFT,
            x2 = W - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 4.0,
        );
    }
    // Above the axis, left of the title.
    let _ = write!(
        out,
        "<text x=\"4\" y=\"15\" fill=\"#5b6470\">{}</text>",
        esc(&shorten(unit, 8))
    );
}

/// One segment of a stacked bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The state it counts (its hue and pattern).
    pub state: RunState,
    /// Its height in the chart's unit.
    pub value: f64,
}

/// One bar of a stacked bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct StackBar {
    /// Start of its interval.
    pub start: Timestamp,
    /// End of its interval.
    pub end: Timestamp,
    /// Its segments, bottom first.
    pub segments: Vec<Segment>,
    /// Hover text (plain text; escaped when drawn).
    pub hover: String,
    /// Where clicking it goes, if anywhere.
    pub href: Option<String>,
}

/// What a stacked bar chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StackedBars<'a> {
    /// Element id, unique in the page (`id-` prefixes its inner ids).
    pub id: &'a str,
    /// Title (plain text).
    pub title: &'a str,
    /// The values' unit, on the value axis ("runs", "% failed").
    pub unit: &'a str,
    /// The time range drawn.
    pub from: Timestamp,
    /// Its end.
    pub until: Timestamp,
    /// Bar length, ns (for the axis labels).
    pub interval_ns: i64,
    /// The bars.
    pub bars: Vec<StackBar>,
    /// A fixed top of the value axis (e.g. 100 for percentages).
    pub max: Option<f64>,
    /// Moments marked with a dashed vertical line and a label (first
    /// seen, resolved...).
    pub markers: Vec<(Timestamp, String)>,
    /// Height in px.
    pub height: f64,
}

/// Draws stacked bars over time as one `<svg>`: a bar per interval (a link
/// when it has an `href`), each segment filled with its state's hue and
/// pattern, a legend naming the states drawn. A chart with no bars says
/// so in its place.
pub fn stacked_bars_svg(c: &StackedBars<'_>) -> String {
    let mut out = String::with_capacity(2048 + c.bars.len() * 400);
    let total: f64 = c
        .bars
        .iter()
        .flat_map(|b| &b.segments)
        .map(|s| s.value)
        .sum();
    let desc = format!(
        "{} bars from {} to {}",
        c.bars.len(),
        moment(c.from),
        moment(c.until)
    );
    open_svg(&mut out, c.id, c.height, c.title, &desc);
    patterns(&mut out, c.id);
    let from = c.from.as_nanos();
    let until = c.until.as_nanos().max(from + 1);
    let span = (until - from) as f64;
    let pw = W - LEFT - RIGHT;
    let y0 = c.height - BOTTOM;
    let ph = y0 - TOP;
    let biggest = c
        .bars
        .iter()
        .map(|b| b.segments.iter().map(|s| s.value).sum::<f64>())
        .fold(0.0, f64::max);
    let top = c.max.unwrap_or_else(|| nice_max(biggest));
    value_axis(&mut out, top, c.unit, c.height, &fmt_num);
    if total <= 0.0 {
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#5b6470\">nothing in this range</text>",
            x = LEFT + pw / 2.0,
            y = TOP + ph / 2.0
        );
    }
    let mut shown = Vec::new();
    for b in &c.bars {
        let x = LEFT + (b.start.as_nanos() - from) as f64 / span * pw;
        let w = ((b.end.as_nanos() - b.start.as_nanos()) as f64 / span * pw - 1.0).max(1.0);
        let sum: f64 = b.segments.iter().map(|s| s.value).sum();
        if let Some(h) = &b.href {
            let _ = write!(out, "<a href=\"{}\" class=\"bar-link\">", esc(h));
        }
        // The bar's group carries the hover text and the whole interval's
        // height as a hit area, so a short bar is still easy to click.
        let _ = write!(
            out,
            "<g class=\"bar\" data-start=\"{}\" data-total=\"{}\"><title>{}</title>\
<rect x=\"{x:.1}\" y=\"{TOP}\" width=\"{w:.1}\" height=\"{ph:.1}\" fill=\"transparent\"/>",
            b.start.as_nanos(),
            fmt_num(sum),
            esc(&b.hover)
        );
        let mut y = y0;
        for s in &b.segments {
            if s.value <= 0.0 {
                continue;
            }
            if !shown.contains(&s.state) {
                shown.push(s.state);
            }
            let h = s.value / top * ph;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{f}\" data-state=\"{st}\"/>",
                f = fill(c.id, s.state),
                st = s.state.as_str()
            );
        }
        out.push_str("</g>");
        if b.href.is_some() {
            out.push_str("</a>");
        }
    }
    for (k, (t, label)) in c.markers.iter().enumerate() {
        let x = LEFT + (t.as_nanos() - from).clamp(0, until - from) as f64 / span * pw;
        let ty = TOP + 10.0 + (k % 3) as f64 * 12.0;
        let right = x > W - 140.0;
        let _ = write!(
            out,
            "<g class=\"marker\"><title>{t}: {m}</title><line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{y0}\" stroke=\"#1b1f24\" stroke-dasharray=\"3 3\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"{a}\" fill=\"#1b1f24\">{t}</text></g>",
            t = esc(label),
            m = esc(&moment(*t)),
            tx = if right { x - 3.0 } else { x + 3.0 },
            a = if right { "end" } else { "start" },
        );
    }
    time_axis(&mut out, from, until, c.interval_ns, c.height);
    legend(&mut out, c.id, &shown, c.height);
    out.push_str("</svg>");
    out
}

/// The legend at the top right: a swatch and the state's name for each
/// state drawn, in [`RunState::ALL`]'s order.
fn legend(out: &mut String, id: &str, states: &[RunState], height: f64) {
    let mut x = LEFT;
    let y = height - 4.0;
    for s in RunState::ALL.iter().filter(|s| states.contains(s)) {
        let label = s.as_str();
        let _ = write!(
            out,
            "<g class=\"legend\"><rect x=\"{x:.1}\" y=\"{ry}\" width=\"10\" height=\"10\" fill=\"{f}\" stroke=\"#1b1f24\" stroke-width=\".5\"/>\
<text x=\"{tx:.1}\" y=\"{y}\" fill=\"#1b1f24\">{label}</text></g>",
            f = fill(id, *s),
            ry = y - 9.0,
            tx = x + 13.0
        );
        x += 22.0 + label.len() as f64 * 6.2;
    }
}

/// The words of a bar's hover text: its interval and its counts by state.
pub fn bar_hover(b: &Bar) -> String {
    let mut s = format!(
        "{} – {}: {} run{}",
        moment(b.start),
        moment(b.end),
        b.total,
        if b.total == 1 { "" } else { "s" }
    );
    for c in &b.counts {
        let _ = write!(s, ", {} {}", c.n, c.state.as_str());
    }
    s
}

/// A [`RunsChart`] as stacked bars, each linking to `href(bar)`.
pub fn runs_chart_svg(
    id: &str,
    title: &str,
    chart: &RunsChart,
    href: &dyn Fn(&Bar) -> Option<String>,
) -> String {
    stacked_bars_svg(&StackedBars {
        id,
        title,
        unit: "runs",
        from: chart.from,
        until: chart.until,
        interval_ns: chart.interval_ns,
        bars: chart
            .bars
            .iter()
            .map(|b| StackBar {
                start: b.start,
                end: b.end,
                segments: b
                    .counts
                    .iter()
                    .map(|c| Segment {
                        state: c.state,
                        value: c.n as f64,
                    })
                    .collect(),
                hover: bar_hover(b),
                href: if b.total > 0 { href(b) } else { None },
            })
            .collect(),
        max: None,
        markers: Vec::new(),
        height: 200.0,
    })
}

/// One point of a points chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Where on the time axis.
    pub t: Timestamp,
    /// Its value, in the chart's unit.
    pub value: f64,
    /// Its state: hue and shape.
    pub state: RunState,
    /// Hover text (plain).
    pub hover: String,
    /// Where clicking it goes.
    pub href: Option<String>,
    /// Drawn larger, ringed and labelled (the run being looked at).
    pub current: bool,
    /// Marked with a diamond outline and named in the legend as longer
    /// than usual.
    pub slow: bool,
}

/// What a points chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Points<'a> {
    /// Element id, unique in the page.
    pub id: &'a str,
    /// Title (plain text).
    pub title: &'a str,
    /// The values' unit ("s").
    pub unit: &'a str,
    /// The time range drawn.
    pub from: Timestamp,
    /// Its end.
    pub until: Timestamp,
    /// The points.
    pub points: Vec<Point>,
    /// A band drawn behind the points: (low, high, its label), e.g. p50..p95.
    pub band: Option<(f64, f64, String)>,
    /// Height in px.
    pub height: f64,
}

/// A point's shape, centred on (x, y): a circle for success, a cross for
/// failures, a triangle for runs stopped from outside, a square otherwise.
fn shape(s: RunState, x: f64, y: f64, r: f64, fill: &str) -> String {
    match s {
        RunState::Succeeded => format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r:.1}\" fill=\"{fill}\" data-state=\"succeeded\"/>"
        ),
        RunState::Failed | RunState::TimedOut => format!(
            "<path d=\"M{a:.1} {b:.1} L{c:.1} {d:.1} M{a:.1} {d:.1} L{c:.1} {b:.1}\" stroke=\"{fill}\" stroke-width=\"2.2\" data-state=\"{st}\"/>",
            a = x - r,
            b = y - r,
            c = x + r,
            d = y + r,
            st = s.as_str()
        ),
        RunState::Killed | RunState::Evicted => format!(
            "<path d=\"M{x:.1} {a:.1} L{b:.1} {c:.1} L{d:.1} {c:.1} Z\" fill=\"{fill}\" data-state=\"{st}\"/>",
            a = y - r,
            b = x + r,
            c = y + r,
            d = x - r,
            st = s.as_str()
        ),
        _ => format!(
            "<rect x=\"{a:.1}\" y=\"{b:.1}\" width=\"{w:.1}\" height=\"{w:.1}\" fill=\"{fill}\" data-state=\"{st}\"/>",
            a = x - r * 0.8,
            b = y - r * 0.8,
            w = r * 1.6,
            st = s.as_str()
        ),
    }
}

/// Draws points over time as one `<svg>`: each a shape by state (circle
/// succeeded, cross failed or timed out, triangle killed or evicted,
/// square otherwise) with its hover text, the band behind them, the
/// current point ringed and labelled, and a legend of the shapes drawn.
pub fn points_svg(c: &Points<'_>) -> String {
    let mut out = String::with_capacity(2048 + c.points.len() * 200);
    let desc = format!(
        "{} points from {} to {}",
        c.points.len(),
        moment(c.from),
        moment(c.until)
    );
    open_svg(&mut out, c.id, c.height, c.title, &desc);
    let from = c.from.as_nanos();
    let until = c.until.as_nanos().max(from + 1);
    let span = (until - from) as f64;
    let pw = W - LEFT - RIGHT;
    let y0 = c.height - BOTTOM;
    let ph = y0 - TOP;
    let biggest = c
        .points
        .iter()
        .map(|p| p.value)
        .chain(c.band.as_ref().map(|b| b.1))
        .fold(0.0, f64::max);
    let top = nice_max(biggest);
    // Durations are labelled in their own units (`2m30s`).
    let unit = if c.unit == "s" { "duration" } else { c.unit };
    value_axis(&mut out, top, unit, c.height, &|v| {
        if c.unit == "s" {
            crate::display::duration((v * 1e9) as i64)
        } else {
            fmt_num(v)
        }
    });
    if let Some((lo, hi, label)) = &c.band {
        let ya = y0 - hi / top * ph;
        let yb = y0 - lo / top * ph;
        let _ = write!(
            out,
            "<g class=\"band\"><title>{t}</title><rect x=\"{LEFT}\" y=\"{ya:.1}\" width=\"{pw:.1}\" height=\"{h:.1}\" fill=\"#0b5cad\" fill-opacity=\".12\" stroke=\"#0b5cad\" stroke-dasharray=\"4 3\" stroke-width=\".8\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#0b5cad\">{t}</text></g>",
            t = esc(label),
            h = (yb - ya).max(1.0),
            tx = W - RIGHT - 4.0,
            ty = ya - 3.0,
        );
    }
    if c.points.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#5b6470\">nothing in this range</text>",
            x = LEFT + pw / 2.0,
            y = TOP + ph / 2.0
        );
    }
    let mut shown = Vec::new();
    let mut current = None;
    let mut any_slow = false;
    for p in &c.points {
        let x = LEFT + (p.t.as_nanos() - from).clamp(0, until - from) as f64 / span * pw;
        let y = y0 - (p.value / top).clamp(0.0, 1.0) * ph;
        if !shown.contains(&p.state) {
            shown.push(p.state);
        }
        if let Some(h) = &p.href {
            let _ = write!(out, "<a href=\"{}\">", esc(h));
        }
        let slow_mark = if p.slow {
            any_slow = true;
            slow_diamond(x, y, 7.0)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<g class=\"point{}\"><title>{}</title>{}{slow_mark}</g>",
            if p.slow { " slow" } else { "" },
            esc(&p.hover),
            shape(p.state, x, y, 3.5, look(p.state).fill)
        );
        if p.href.is_some() {
            out.push_str("</a>");
        }
        if p.current {
            current = Some((x, y, p));
        }
    }
    if let Some((x, y, p)) = current {
        let _ = write!(
            out,
            "<g class=\"current\"><title>{}</title><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"8\" fill=\"none\" stroke=\"#1b1f24\" stroke-width=\"2\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\" font-weight=\"600\" fill=\"#1b1f24\">this run</text></g>",
            esc(&p.hover),
            tx = if x > W - 100.0 { x - 11.0 } else { x + 11.0 },
            anchor = if x > W - 100.0 { "end" } else { "start" },
            ty = (y + 4.0).max(TOP + 8.0),
        );
    }
    time_axis(
        &mut out,
        from,
        until,
        choose_interval(until - from),
        c.height,
    );
    // The legend, bottom left: each shape drawn, with its state's name.
    let mut x = LEFT;
    let y = c.height - 4.0;
    for s in RunState::ALL.iter().filter(|s| shown.contains(s)) {
        let label = s.as_str();
        let _ = write!(
            out,
            "<g class=\"legend\">{}<text x=\"{tx:.1}\" y=\"{y}\" fill=\"#1b1f24\">{label}</text></g>",
            shape(*s, x + 5.0, y - 4.0, 4.0, look(*s).fill),
            tx = x + 13.0
        );
        x += 22.0 + label.len() as f64 * 6.2;
    }
    if any_slow {
        let _ = write!(
            out,
            "<g class=\"legend\">{}<text x=\"{tx:.1}\" y=\"{y}\" fill=\"#1b1f24\">longer than usual</text></g>",
            slow_diamond(x + 5.0, y - 4.0, 5.0),
            tx = x + 13.0
        );
    }
    out.push_str("</svg>");
    out
}

/// The outline marking a point as longer than usual.
fn slow_diamond(x: f64, y: f64, r: f64) -> String {
    format!(
        "<path d=\"M{x:.1} {a:.1} L{b:.1} {y:.1} L{x:.1} {c:.1} L{d:.1} {y:.1} Z\" fill=\"none\" stroke=\"#9a6700\" stroke-width=\"1.5\"/>",
        a = y - r,
        b = x + r,
        c = y + r,
        d = x - r
    )
}

/// A small line of values over time, inline with text: one `<svg>` with
/// its title (name and the latest value) and a hover text per point.
pub fn sparkline_svg(id: &str, title: &str, unit: &str, values: &[(Timestamp, f64)]) -> String {
    let (w, h) = (120.0, 24.0);
    let mut out = String::with_capacity(512 + values.len() * 80);
    let last = values
        .last()
        .map(|(_, v)| format!("{} {unit}", fmt_num(*v)))
        .unwrap_or_else(|| "no data".into());
    let _ = write!(
        out,
        "<svg class=\"spark\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-labelledby=\"{id}-t\">\
<title id=\"{id}-t\">{t}: {l}</title>",
        t = esc(title),
        l = esc(&last),
    );
    if values.is_empty() {
        out.push_str("<line x1=\"0\" y1=\"12\" x2=\"120\" y2=\"12\" stroke=\"#d8dde3\" stroke-dasharray=\"2 2\"/></svg>");
        return out;
    }
    let t0 = values.first().map_or(0, |v| v.0.as_nanos());
    let t1 = values.last().map_or(0, |v| v.0.as_nanos());
    let span = (t1 - t0).max(1) as f64;
    let top = nice_max(values.iter().map(|v| v.1).fold(0.0, f64::max));
    let xy = |(t, v): &(Timestamp, f64)| {
        let x = if values.len() == 1 {
            w / 2.0
        } else {
            2.0 + (t.as_nanos() - t0) as f64 / span * (w - 4.0)
        };
        (x, h - 2.0 - (v / top).clamp(0.0, 1.0) * (h - 4.0))
    };
    out.push_str("<polyline fill=\"none\" stroke=\"#0b5cad\" stroke-width=\"1.5\" points=\"");
    for v in values {
        let (x, y) = xy(v);
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.push_str("\"/>");
    for v in values {
        let (x, y) = xy(v);
        let _ = write!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"1.5\" fill=\"#0b5cad\"><title>{}: {} {}</title></circle>",
            esc(&moment(v.0)),
            fmt_num(v.1),
            esc(unit)
        );
    }
    out.push_str("</svg>");
    out
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Values as a line of Unicode block characters, the highest value a full
/// block; zero is a space, so an empty interval shows as a gap.
pub fn spark_text(values: &[u64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            if v == 0 || max == 0 {
                ' '
            } else {
                let i = ((v as f64 / max as f64) * 7.0).round() as usize;
                SPARKS[i.min(7)]
            }
        })
        .collect()
}

/// A horizontal bar of `width` cells for `v` out of `max`, in eighths of a
/// cell; at least one eighth for a value above zero.
pub fn bar_text(v: u64, max: u64, width: usize) -> String {
    const PARTS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    if v == 0 || max == 0 || width == 0 {
        return String::new();
    }
    let eighths = ((v as f64 / max as f64) * (width * 8) as f64)
        .round()
        .max(1.0) as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8 - 1]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ns: i64) -> Timestamp {
        Timestamp::from_nanos(ns)
    }

    #[test]
    fn the_interval_keeps_a_range_within_sixty_bars() {
        assert_eq!(choose_interval(0), 5 * MINUTE);
        assert_eq!(choose_interval(-5), 5 * MINUTE);
        assert_eq!(choose_interval(2 * HOUR), 5 * MINUTE);
        assert_eq!(choose_interval(5 * HOUR), 5 * MINUTE);
        assert_eq!(choose_interval(5 * HOUR + 1), 10 * MINUTE);
        assert_eq!(choose_interval(DAY), 30 * MINUTE);
        assert_eq!(choose_interval(7 * DAY), 3 * HOUR);
        assert_eq!(choose_interval(30 * DAY), 12 * HOUR);
        assert_eq!(choose_interval(365 * DAY), 7 * DAY);
        assert_eq!(choose_interval(100 * 365 * DAY), 28 * DAY);
        for r in [1, MINUTE, HOUR, 3 * DAY, 59 * DAY, 400 * DAY] {
            let iv = choose_interval(r);
            assert!((r + iv - 1) / iv <= MAX_BARS, "{r}: {iv}");
            assert_eq!(iv % (5 * MINUTE), 0);
        }
    }

    #[test]
    fn intervals_read_as_words() {
        assert_eq!(interval_label(5 * MINUTE), "5 minutes");
        assert_eq!(interval_label(HOUR), "hour");
        assert_eq!(interval_label(3 * HOUR), "3 hours");
        assert_eq!(interval_label(DAY), "day");
        assert_eq!(interval_label(28 * DAY), "4 weeks");
    }

    #[test]
    fn times_are_counted_per_interval() {
        let c = count_times(
            &[ts(MINUTE), ts(2 * MINUTE), ts(HOUR + 1), ts(10 * DAY)],
            ts(0),
            ts(2 * HOUR),
        );
        assert_eq!(c.interval_ns, 5 * MINUTE);
        assert_eq!(c.counts.len(), 24);
        assert_eq!((c.counts[0], c.counts[12], c.total), (2, 1, 3));
        let empty = count_times(&[], ts(0), ts(0));
        assert_eq!((empty.counts.len(), empty.total), (1, 0));
    }

    #[test]
    fn align_down_rounds_towards_minus_infinity() {
        assert_eq!(align_down(7, 5), 5);
        assert_eq!(align_down(-3, 5), -5);
        assert_eq!(align_down(10, 5), 10);
    }

    #[test]
    fn bucketing_sums_by_interval_and_keeps_empty_intervals() {
        let rows = [
            StateCount {
                bucket_ns: 0,
                state: RunState::Succeeded,
                n: 2,
            },
            StateCount {
                bucket_ns: 5 * MINUTE,
                state: RunState::Failed,
                n: 1,
            },
            StateCount {
                bucket_ns: 5 * MINUTE,
                state: RunState::Succeeded,
                n: 3,
            },
            // Two intervals later: the one between stays empty.
            StateCount {
                bucket_ns: 30 * MINUTE,
                state: RunState::Running,
                n: 4,
            },
            // Outside the range: left out.
            StateCount {
                bucket_ns: 10 * HOUR,
                state: RunState::Running,
                n: 9,
            },
        ];
        let c = bucket(&rows, ts(0), ts(45 * MINUTE), 15 * MINUTE);
        assert_eq!(c.bars.len(), 3);
        assert_eq!(c.total, 10);
        assert_eq!(c.bars[0].total, 6);
        assert_eq!(
            c.bars[0].counts,
            vec![
                StateN {
                    state: RunState::Succeeded,
                    n: 5
                },
                StateN {
                    state: RunState::Failed,
                    n: 1
                }
            ]
        );
        assert_eq!(c.bars[1].total, 0);
        assert!(c.bars[1].counts.is_empty());
        assert_eq!(c.bars[2].counts[0].state, RunState::Running);
        assert_eq!(c.bars[2].start, ts(30 * MINUTE));
        assert_eq!(c.bars[2].end, ts(45 * MINUTE));
        assert_eq!(c.until, ts(45 * MINUTE));
    }

    #[test]
    fn an_empty_series_is_one_empty_bar_and_says_so() {
        let c = bucket(&[], ts(HOUR), ts(HOUR), HOUR);
        assert_eq!(c.bars.len(), 1);
        assert_eq!(c.total, 0);
        let svg = runs_chart_svg("c", "Runs", &c, &|_| Some("/x".into()));
        assert!(svg.contains("nothing in this range"), "{svg}");
        assert!(!svg.contains("<a "), "an empty bar links nowhere: {svg}");
        let svg = points_svg(&Points {
            id: "p",
            title: "none",
            unit: "s",
            from: ts(0),
            until: ts(HOUR),
            points: vec![],
            band: None,
            height: 200.0,
        });
        assert!(svg.contains("nothing in this range"));
        assert!(sparkline_svg("s", "load", "", &[]).contains("no data"));
        assert_eq!(spark_text(&[]), "");
        assert_eq!(spark_text(&[0, 0]), "  ");
    }

    #[test]
    fn a_single_point_is_drawn_with_its_values() {
        let c = bucket(
            &[StateCount {
                bucket_ns: 3 * HOUR,
                state: RunState::Failed,
                n: 1,
            }],
            ts(3 * HOUR + 7),
            ts(3 * HOUR + 8),
            5 * MINUTE,
        );
        assert_eq!(c.bars.len(), 1);
        let svg = runs_chart_svg("c", "Runs", &c, &|b| {
            Some(format!("/runs?from={}", b.start.as_nanos()))
        });
        assert_eq!(svg.matches("<g class=\"bar\"").count(), 1);
        assert!(svg.contains("1 run, 1 failed"), "{svg}");
        assert!(svg.contains("1970-01-01 03:00:00 UTC"), "{svg}");
        assert!(svg.contains("url(#c-p-failed)"), "{svg}");
        assert!(svg.contains(">failed</text>"), "a legend names it: {svg}");
        let svg = points_svg(&Points {
            id: "p",
            title: "durations",
            unit: "s",
            from: ts(0),
            until: ts(HOUR),
            points: vec![Point {
                t: ts(MINUTE),
                value: 12.0,
                state: RunState::Succeeded,
                hover: "12s".into(),
                href: None,
                current: true,
                slow: true,
            }],
            band: Some((10.0, 20.0, "p50 10s – p95 20s".into())),
            height: 200.0,
        });
        assert_eq!(svg.matches("<g class=\"point").count(), 1);
        assert!(svg.contains("this run"));
        assert!(svg.contains("class=\"point slow\"") && svg.contains("longer than usual"));
        assert!(svg.contains("p50 10s – p95 20s"));
        let s = sparkline_svg("s", "load", "", &[(ts(0), 2.0)]);
        assert!(s.contains("load: 2"), "{s}");
        assert_eq!(spark_text(&[5]), "█");
    }

    #[test]
    fn hostile_labels_are_escaped_and_long_ones_cut() {
        let name = format!("<script>alert('x')</script>&\"{}", "n".repeat(500));
        let svg = stacked_bars_svg(&StackedBars {
            id: "c",
            title: &name,
            unit: "<u>",
            from: ts(0),
            until: ts(HOUR),
            interval_ns: HOUR,
            bars: vec![StackBar {
                start: ts(0),
                end: ts(HOUR),
                segments: vec![Segment {
                    state: RunState::Succeeded,
                    value: 1.0,
                }],
                hover: name.clone(),
                href: Some("/runs?q=\"><script>".into()),
            }],
            max: None,
            markers: vec![(ts(HOUR / 2), "<first> seen".into())],
            height: 200.0,
        });
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<u>"));
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)"));
        assert!(svg.contains("href=\"/runs?q=&quot;&gt;&lt;script&gt;\""));
        assert!(svg.contains(">&lt;first&gt; seen</text>"), "{svg}");
        // The drawn title is cut; the accessible one is whole.
        assert!(svg.contains(&format!("{}…</text>", "n".repeat(50))));
        assert!(svg.contains(&format!("{}</title>", "n".repeat(500))));
        let p = points_svg(&Points {
            id: "p",
            title: &name,
            unit: "s",
            from: ts(0),
            until: ts(HOUR),
            points: vec![Point {
                t: ts(0),
                value: 1.0,
                state: RunState::Failed,
                hover: name.clone(),
                href: Some("/runs/\"x".into()),
                current: false,
                slow: false,
            }],
            band: Some((0.0, 1.0, name.clone())),
            height: 200.0,
        });
        assert!(!p.contains("<script"));
        assert!(p.contains("/runs/&quot;x"));
        assert!(!sparkline_svg("s", &name, "<b>", &[(ts(0), 1.0)]).contains("<script"));
        assert_eq!(esc("a\u{1b}[31mb"), "a [31mb");
    }

    #[test]
    fn states_read_without_colour() {
        // Every state but success has a pattern, each different.
        let mut marks: Vec<&str> = RunState::ALL.iter().map(|s| look(*s).marks).collect();
        marks.sort();
        marks.dedup();
        assert_eq!(marks.len(), RunState::ALL.len());
        // Points: success, failure and stopped runs have different shapes.
        let a = shape(RunState::Succeeded, 0.0, 0.0, 1.0, "#000");
        let b = shape(RunState::Failed, 0.0, 0.0, 1.0, "#000");
        let c = shape(RunState::Killed, 0.0, 0.0, 1.0, "#000");
        assert!(a.starts_with("<circle") && b.starts_with("<path d=\"M") && c.contains(" Z\""));
        assert_ne!(b.split(' ').count(), c.split(' ').count());
    }

    #[test]
    fn terminal_bars_and_sparklines() {
        assert_eq!(spark_text(&[0, 1, 8]), " ▂█");
        assert_eq!(bar_text(10, 10, 4), "████");
        assert_eq!(bar_text(1, 1000, 4), "▏");
        assert_eq!(bar_text(0, 10, 4), "");
        assert_eq!(bar_text(5, 10, 4), "██");
        assert_eq!(bar_text(3, 16, 2), "▍");
    }

    #[test]
    fn ticks_and_nice_tops() {
        assert_eq!(tick_label(ts(DAY + 5 * HOUR), HOUR), "01-02 05:00");
        assert_eq!(tick_label(ts(DAY + 5 * HOUR), DAY), "1970-01-02");
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(18.0), 20.0);
        assert_eq!(nice_max(230.0), 250.0);
        assert_eq!(nice_max(1.0), 1.0);
    }
}
