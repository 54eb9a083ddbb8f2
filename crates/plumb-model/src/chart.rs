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

/// One line of a [`LineChart`]: its name (legend, hover) and its points,
/// oldest first. Two points further apart than the chart's step allows
/// leave a gap: an interval with nothing in it is not drawn as a slope.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSeries<'a> {
    /// Name in the legend and hover text.
    pub name: &'a str,
    /// `(time, value)`, oldest first.
    pub points: &'a [(Timestamp, f64)],
}

/// A span of time shaded behind the lines, labelled (a node's state).
#[derive(Debug, Clone, PartialEq)]
pub struct Band<'a> {
    /// Start.
    pub from: Timestamp,
    /// End.
    pub until: Timestamp,
    /// What it is (hover text and its class, `band-<label>`).
    pub label: &'a str,
}

/// A dashed line from a series' last point ahead to a predicted moment and
/// value (a disk filling up), labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast<'a> {
    /// From.
    pub from: (Timestamp, f64),
    /// To (may lie beyond the chart's end: the line is cut at the edge).
    pub to: (Timestamp, f64),
    /// What it says (`/data full 2026-12-09`).
    pub label: &'a str,
}

/// A line chart over time.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart<'a> {
    /// Element id (unique in the page).
    pub id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Unit of the values (`%`, `load`).
    pub unit: &'a str,
    /// The time range drawn.
    pub from: Timestamp,
    /// End of the range.
    pub until: Timestamp,
    /// The spacing of the points: a wider gap between two is a gap.
    pub step_ns: i64,
    /// A fixed top of the value axis (100 for percentages), else from the
    /// values.
    pub top: Option<f64>,
    /// The lines.
    pub series: &'a [LineSeries<'a>],
    /// Shaded spans behind them.
    pub bands: &'a [Band<'a>],
    /// Predictions ahead.
    pub forecasts: &'a [Forecast<'a>],
}

/// Dash patterns telling the lines apart without colour (first solid).
const DASHES: [&str; 5] = ["", "6 3", "2 2", "8 3 2 3", "1 3"];
const LINE_HUES: [&str; 5] = ["#0b5cad", "#b35900", "#1a7f37", "#8250df", "#cf222e"];

/// Points drawn with a hover circle each, at most (beyond, only the lines
/// and each series' summary: a week of ten-minute points stays small).
pub const HOVER_POINTS: usize = 200;

/// A line chart: one polyline per unbroken stretch of a series (class
/// `line`, `data-series` its index), each series with its own dash and hue
/// and a legend entry, hover text per series (latest, lowest, highest) and,
/// for a short series, per point; shaded bands behind, dashed forecasts
/// ahead. Empty series draw nothing but their legend and a note.
pub fn lines_svg(c: &LineChart<'_>) -> String {
    let height = 200.0;
    let n_points: usize = c.series.iter().map(|s| s.points.len()).sum();
    let mut out = String::with_capacity(2048 + n_points * 24);
    let desc = format!(
        "{} from {} to {}: {}",
        c.unit,
        moment(c.from),
        moment(c.until),
        c.series
            .iter()
            .map(|s| format!("{} ({} points)", s.name, s.points.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    open_svg(&mut out, c.id, height, c.title, &desc);
    let (from, until) = (
        c.from.as_nanos(),
        c.until.as_nanos().max(c.from.as_nanos() + 1),
    );
    let span = (until - from) as f64;
    let pw = W - LEFT - RIGHT;
    let y0 = height - BOTTOM;
    let ph = y0 - TOP;
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(c.forecasts.iter().map(|f| f.from.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = c.top.unwrap_or_else(|| nice_max(max));
    let x_of = |t: i64| LEFT + ((t - from) as f64 / span).clamp(0.0, 1.0) * pw;
    let y_of = |v: f64| {
        let v = if v.is_finite() { v } else { 0.0 };
        y0 - (v / top).clamp(0.0, 1.0) * ph
    };
    for b in c.bands {
        let (a, z) = (x_of(b.from.as_nanos()), x_of(b.until.as_nanos()));
        if z <= a {
            continue;
        }
        let _ = write!(
            out,
            "<rect class=\"band band-{cls}\" x=\"{a:.1}\" y=\"{TOP}\" width=\"{w:.1}\" height=\"{ph}\"><title>{l}: {f} to {u}</title></rect>",
            cls = esc(b.label),
            w = z - a,
            l = esc(b.label),
            f = esc(&moment(b.from)),
            u = esc(&moment(b.until)),
        );
    }
    value_axis(&mut out, top, c.unit, height, &|v| fmt_num(v));
    time_axis(&mut out, from, until, c.step_ns.max(1), height);
    let gap = c.step_ns.max(1) * 3 / 2;
    for (i, s) in c.series.iter().enumerate() {
        let (hue, dash) = (LINE_HUES[i % LINE_HUES.len()], DASHES[i % DASHES.len()]);
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let summary = match (s.points.last(), s.points.is_empty()) {
            (Some(last), false) => {
                let lo = s.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                let hi = s
                    .points
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::NEG_INFINITY, f64::max);
                format!(
                    "{}: latest {} {u} at {}, lowest {} {u}, highest {} {u}",
                    s.name,
                    fmt_num(last.1),
                    moment(last.0),
                    fmt_num(lo),
                    fmt_num(hi),
                    u = c.unit
                )
            }
            _ => format!("{}: no data in this range", s.name),
        };
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{i}\"><title>{}</title>",
            esc(&summary)
        );
        let mut k = 0;
        while k < s.points.len() {
            let mut end = k + 1;
            while end < s.points.len()
                && s.points[end].0.as_nanos() - s.points[end - 1].0.as_nanos() <= gap
            {
                end += 1;
            }
            let _ = write!(
                out,
                "<polyline class=\"line\" fill=\"none\" stroke=\"{hue}\" stroke-width=\"1.5\"{dash_attr} points=\""
            );
            for p in &s.points[k..end] {
                let _ = write!(out, "{:.1},{:.1} ", x_of(p.0.as_nanos()), y_of(p.1));
            }
            out.push_str("\"/>");
            k = end;
        }
        if s.points.len() <= HOVER_POINTS {
            for p in s.points {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{hue}\"><title>{}: {} {} at {}</title></circle>",
                    x_of(p.0.as_nanos()),
                    y_of(p.1),
                    esc(s.name),
                    fmt_num(p.1),
                    esc(c.unit),
                    esc(&moment(p.0)),
                );
            }
        }
        out.push_str("</g>");
    }
    for f in c.forecasts {
        let (t0, v0) = (f.from.0.as_nanos(), f.from.1);
        let (t1, v1) = (f.to.0.as_nanos(), f.to.1);
        // Cut at the right edge, on the line between the two.
        let (te, ve) = if t1 > until && t1 > t0 {
            (
                until,
                v0 + (v1 - v0) * (until - t0) as f64 / (t1 - t0) as f64,
            )
        } else {
            (t1, v1)
        };
        let _ = write!(
            out,
            "<g class=\"forecast\"><title>{l}</title><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#cf222e\">{l}</text></g>",
            x_of(t0),
            y_of(v0),
            x_of(te),
            y_of(ve),
            tx = x_of(te).max(LEFT + 80.0),
            ty = (y_of(ve) - 4.0).max(TOP + 10.0),
            l = esc(&shorten(f.label, 60)),
        );
    }
    // The legend: each line's dash and name, under the axis.
    let mut x = LEFT;
    for (i, s) in c.series.iter().enumerate() {
        let (hue, dash) = (LINE_HUES[i % LINE_HUES.len()], DASHES[i % DASHES.len()]);
        let name = shorten(s.name, 24);
        let _ = write!(
            out,
            "<g class=\"legend\"><line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"{hue}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" fill=\"#1b1f24\">{n}</text></g>",
            x2 = x + 18.0,
            y = height - 8.0,
            tx = x + 22.0,
            ty = height - 4.0,
            n = esc(&name),
        );
        x += 30.0 + name.chars().count() as f64 * 6.5;
    }
    if n_points == 0 {
        let _ = write!(
            out,
            "<text class=\"empty\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"#5b6470\">no samples in this range</text>",
            x = LEFT + pw / 2.0,
            y = TOP + ph / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

/// A tiny two-line sparkline for a list row (a thousand of them on one
/// page, so every byte counts): each value one step right, its height a
/// digit 0-9 of the box (relative path moves, unquoted attributes, which
/// HTML allows), the first series solid and the second dashed (class
/// `l2`), the hover text given by the caller. `None` values are gaps; a
/// lone point is a dot. The caller's CSS sizes it (`td.sp svg`).
pub fn mini_spark_svg(title: &str, series: [(&[Option<f64>], f64); 2]) -> String {
    let n = series[0].0.len().max(series[1].0.len()).max(2);
    let mut out = String::with_capacity(64 + n * 8);
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {} 9\"><title>{}</title>",
        n - 1,
        esc(title)
    );
    for (k, (values, top)) in series.iter().enumerate() {
        let top = if *top > 0.0 { *top } else { 1.0 };
        let mut d = String::with_capacity(values.len() * 4);
        // Each stretch without gaps as its first point then relative moves
        // (`M0 7l1-2 3 0`), a level stretch one move.
        let ys: Vec<Option<i64>> = values
            .iter()
            .map(|v| v.map(|v| (9.0 - (v / top).clamp(0.0, 1.0) * 9.0).round() as i64))
            .collect();
        let mut i = 0;
        while i < ys.len() {
            let Some(y0) = ys[i] else {
                i += 1;
                continue;
            };
            let _ = write!(d, "M{i} {y0}");
            let (mut at, mut y) = (i, y0);
            let mut j = i + 1;
            let mut first = true;
            while j < ys.len() {
                let Some(yj) = ys[j] else { break };
                let mut end = j;
                if yj == y {
                    while end + 1 < ys.len() && ys[end + 1] == Some(y) {
                        end += 1;
                    }
                }
                let ye = ys[end].unwrap_or(y);
                let (dx, dy) = (end - at, ye - y);
                d.push(if first { 'l' } else { ' ' });
                let _ = write!(d, "{dx}");
                if dy >= 0 {
                    d.push(' ');
                }
                let _ = write!(d, "{dy}");
                first = false;
                at = end;
                y = ye;
                j = end + 1;
            }
            if first {
                // A lone point: a dot.
                d.push_str("h.1");
            }
            i = j;
        }
        if d.is_empty() {
            continue;
        }
        if k == 1 {
            let _ = write!(out, "<path class=l2 d=\"{d}\"/>");
        } else {
            let _ = write!(out, "<path d=\"{d}\"/>");
        }
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

    fn line_points(svg: &str) -> usize {
        svg.split("<polyline class=\"line\"")
            .skip(1)
            .map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap();
                pts[..pts.find('"').unwrap()].split_whitespace().count()
            })
            .sum()
    }

    #[test]
    fn a_line_chart_breaks_at_gaps_escapes_and_draws_an_empty_or_single_series() {
        let m = 60_000_000_000i64;
        let pts = [
            (ts(0), 1.0),
            (ts(m), 2.0),
            // a gap of two empty minutes
            (ts(4 * m), 3.0),
        ];
        let one = [(ts(2 * m), 5.0)];
        let series = [
            LineSeries {
                name: "<load>",
                points: &pts,
            },
            LineSeries {
                name: "one",
                points: &one,
            },
            LineSeries {
                name: "none",
                points: &[],
            },
        ];
        let bands = [Band {
            from: ts(m),
            until: ts(2 * m),
            label: "down",
        }];
        let forecasts = [Forecast {
            from: (ts(4 * m), 3.0),
            to: (ts(100 * m), 100.0),
            label: "/x\"<b> full",
        }];
        let c = LineChart {
            id: "c1",
            title: "Load of <script>",
            unit: "load",
            from: ts(0),
            until: ts(10 * m),
            step_ns: m,
            top: None,
            series: &series,
            bands: &bands,
            forecasts: &forecasts,
        };
        let svg = lines_svg(&c);
        assert!(
            !svg.contains("<script>") && !svg.contains("<load>") && !svg.contains("<b>"),
            "{svg}"
        );
        assert!(svg.contains("&lt;load&gt;"));
        // Two stretches for the first series, one for the single point.
        assert_eq!(svg.matches("<polyline class=\"line\"").count(), 3, "{svg}");
        assert_eq!(line_points(&svg), 4);
        assert_eq!(svg.matches("<circle").count(), 4, "hover per point");
        assert!(svg.contains("none: no data in this range"));
        assert!(svg.contains("class=\"band band-down\""));
        assert!(svg.contains("class=\"forecast\""));
        assert_eq!(svg.matches("<g class=\"legend\"").count(), 3);
        // Nothing at all: a note, no lines.
        let empty = lines_svg(&LineChart {
            series: &series[2..],
            bands: &[],
            forecasts: &[],
            ..c.clone()
        });
        assert!(empty.contains("no samples in this range"));
        assert_eq!(line_points(&empty), 0);
        // A long series keeps its lines and drops the per-point hover.
        let many: Vec<(Timestamp, f64)> = (0..1000).map(|i| (ts(i * m), i as f64)).collect();
        let long = lines_svg(&LineChart {
            series: &[LineSeries {
                name: "x",
                points: &many,
            }],
            until: ts(1000 * m),
            ..c.clone()
        });
        assert_eq!(line_points(&long), 1000);
        assert_eq!(long.matches("<circle").count(), 0);
    }

    #[test]
    fn a_mini_sparkline_is_small_escaped_and_shows_gaps_and_single_points() {
        let a = [Some(1.0), Some(2.0), None, Some(4.0), Some(3.0), Some(0.0)];
        let b = [None, None, Some(50.0), None, None, None];
        let svg = mini_spark_svg("<x> load 1–4", [(&a, 4.0), (&b, 100.0)]);
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"), "{svg}");
        assert!(svg.starts_with("<svg viewBox=\"0 0 5 9\">"), "{svg}");
        assert_eq!(svg.matches("<path").count(), 2, "{svg}");
        // y = 9 - v/top*9, rounded: 1 -> 7, 2 -> 5 (up 2), then a gap,
        // 4 -> 0, 3 -> 2 (down 2), 0 -> 9 (down 7).
        assert!(svg.contains("<path d=\"M0 7l1-2M3 0l1 2 1 7\"/>"), "{svg}");
        assert!(svg.contains("<path class=l2 d=\"M2 5h.1\"/>"), "{svg}");
        let none = mini_spark_svg("t", [(&[], 1.0), (&[None], 1.0)]);
        assert_eq!(none.matches("<path").count(), 0, "{none}");
        // A level stretch is one move.
        let level = [Some(5.0), Some(5.0), Some(5.0), Some(6.0), Some(6.0)];
        let svg = mini_spark_svg("t", [(&level, 9.0), (&[], 1.0)]);
        assert!(svg.contains("d=\"M0 4l2 0 1-1 1 0\""), "{svg}");
        // Thirteen points of a varying load and a level disk: small enough
        // for a thousand rows.
        let load: Vec<Option<f64>> = (0..13).map(|i| Some(f64::from(i % 7))).collect();
        let disk = vec![Some(62.0); 13];
        let svg = mini_spark_svg("load≤6.0 disk≤62%", [(&load, 6.0), (&disk, 100.0)]);
        assert!(svg.len() < 170, "{} bytes: {svg}", svg.len());
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
