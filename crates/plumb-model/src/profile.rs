//! Sampled CPU profiles of every process of a job, merged.
//!
//! A [`Profile`] holds one [`ProcessProfile`] per process: its samples as
//! folded stacks (frames root first, joined by `;`, with a count, the
//! format py-spy's `raw` output and Brendan Gregg's stackcollapse scripts
//! share), or what was missing and why. [`Profile::folded`] merges them,
//! for the whole job or one host, so identical stacks of different
//! processes add up; [`top`] ranks functions by the samples in which they
//! were running; [`flame_svg`] draws a self-contained flame graph and
//! [`compare_html`] two of them side by side with a table of where the
//! time went on each. Pure: no I/O, so the CLI, the collector and the
//! dashboard draw the same picture.

use crate::Timestamp;
use crate::stack::{Missing, StackKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Every sampled process of a job over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// When sampling began (UTC).
    pub taken: Timestamp,
    /// How long each process was sampled, milliseconds.
    pub duration_ms: u64,
    /// Samples a second asked of each tool.
    pub rate_hz: u32,
    /// One entry per process, in the order of the tree walk.
    pub processes: Vec<ProcessProfile>,
}

/// One process's samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessProfile {
    /// The host (or node) it runs on.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Command line.
    pub command: String,
    /// Python frames (py-spy) or native ones (perf), when sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StackKind>,
    /// Folded stacks, root first, with their sample counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<Folded>,
    /// Why samples are missing, when they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Missing>,
}

/// One distinct stack and how many samples found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    /// Frames from the outermost to the innermost, joined by `;`.
    pub stack: String,
    /// Samples.
    pub count: u64,
}

impl ProcessProfile {
    /// All samples of the process.
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|f| f.count).sum()
    }
}

impl Profile {
    /// One profile of several (the nodes' parts of a fleet-wide profile):
    /// every process of each, in the order given; begun when the first
    /// began, over the longest window. `None` when there are no parts.
    pub fn merge(parts: Vec<Profile>) -> Option<Profile> {
        let taken = parts.iter().map(|p| p.taken).min()?;
        Some(Profile {
            taken,
            duration_ms: parts.iter().map(|p| p.duration_ms).max().unwrap_or(0),
            rate_hz: parts.iter().map(|p| p.rate_hz).max().unwrap_or(0),
            processes: parts.into_iter().flat_map(|p| p.processes).collect(),
        })
    }

    /// The hosts present, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.processes.iter().map(|p| p.host.clone()).collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Every process's stacks added up (only those of `host`, when given).
    pub fn folded(&self, host: Option<&str>) -> BTreeMap<String, u64> {
        let mut merged = BTreeMap::new();
        for p in self
            .processes
            .iter()
            .filter(|p| host.is_none_or(|h| p.host == h))
        {
            for f in &p.stacks {
                *merged.entry(f.stack.clone()).or_insert(0) += f.count;
            }
        }
        merged
    }

    /// All samples of all processes.
    pub fn samples(&self) -> u64 {
        self.processes.iter().map(ProcessProfile::samples).sum()
    }
}

/// Parses folded lines (`a;b;c 12`), as py-spy's raw format and the
/// stackcollapse scripts write them; lines that do not end in a count are
/// skipped.
pub fn parse_folded(text: &str) -> Vec<Folded> {
    let mut merged: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let (Ok(count), false) = (count.parse::<u64>(), stack.is_empty()) else {
            continue;
        };
        *merged.entry(stack).or_insert(0) += count;
    }
    merged
        .into_iter()
        .map(|(stack, count)| Folded {
            stack: stack.to_string(),
            count,
        })
        .collect()
}

/// One function's share of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hot {
    /// The frame as shown (`hot (work.py:4)`).
    pub frame: String,
    /// Samples in which it was the innermost frame (running itself).
    pub own: u64,
    /// Samples in which it was anywhere on the stack.
    pub total: u64,
}

/// The `n` frames with the most samples of their own, most first (ties by
/// total, then name, so the order is stable).
pub fn top(folded: &BTreeMap<String, u64>, n: usize) -> Vec<Hot> {
    let mut own: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for (stack, &count) in folded {
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            *own.entry(leaf).or_insert(0) += count;
        }
        // A recursive function counts once per sample in its total.
        let mut seen: Vec<&str> = Vec::with_capacity(frames.len());
        for f in frames {
            if !seen.contains(&f) {
                seen.push(f);
                *total.entry(f).or_insert(0) += count;
            }
        }
    }
    let mut hot: Vec<Hot> = total
        .iter()
        .map(|(frame, &total)| Hot {
            frame: (*frame).to_string(),
            own: own.get(frame).copied().unwrap_or(0),
            total,
        })
        .collect();
    hot.sort_by(|a, b| {
        b.own
            .cmp(&a.own)
            .then(b.total.cmp(&a.total))
            .then(a.frame.cmp(&b.frame))
    });
    hot.truncate(n);
    hot
}

/// A call tree built from folded stacks: each node's count is the samples
/// whose stack passes through it.
struct Tree {
    name: String,
    count: u64,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn build(folded: &BTreeMap<String, u64>) -> Tree {
        let mut root = Tree {
            name: "all".into(),
            count: 0,
            children: BTreeMap::new(),
        };
        for (stack, &count) in folded {
            root.count += count;
            let mut node = &mut root;
            for frame in stack.split(';') {
                node = node
                    .children
                    .entry(frame.to_string())
                    .or_insert_with(|| Tree {
                        name: frame.to_string(),
                        count: 0,
                        children: BTreeMap::new(),
                    });
                node.count += count;
            }
        }
        root
    }

    fn depth(&self) -> usize {
        1 + self.children.values().map(Tree::depth).max().unwrap_or(0)
    }
}

const WIDTH: f64 = 1200.0;
const ROW: f64 = 17.0;
const PAD_TOP: f64 = 34.0;
const CHAR_PX: f64 = 7.0;

/// A flame graph as one self-contained SVG: the outermost frame at the
/// bottom, each frame as wide as its share of the samples, children in
/// name order (as flamegraph.pl lays them out), a tooltip on each with its
/// samples and share. Frames narrower than a tenth of a pixel are left out.
pub fn flame_svg(title: &str, folded: &BTreeMap<String, u64>) -> String {
    let tree = Tree::build(folded);
    let depth = tree.depth();
    let height = PAD_TOP + ROW * depth as f64 + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="12"><rect width="100%" height="100%" fill="#fdfdf6"/><text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"##,
        WIDTH / 2.0,
        escape(title)
    );
    if tree.count == 0 {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle">no samples</text></svg>"##,
            WIDTH / 2.0,
            PAD_TOP + ROW
        );
        return svg;
    }
    let scale = WIDTH / tree.count as f64;
    draw(&mut svg, &tree, 0.0, 0, depth, scale, tree.count);
    svg.push_str("</svg>\n");
    svg
}

fn draw(svg: &mut String, node: &Tree, x: f64, level: usize, depth: usize, scale: f64, all: u64) {
    let w = node.count as f64 * scale;
    if w < 0.1 {
        return;
    }
    let y = PAD_TOP + ROW * (depth - 1 - level) as f64;
    let share = 100.0 * node.count as f64 / all as f64;
    let name = escape(&node.name);
    let _ = write!(
        svg,
        r##"<g><title>{name} ({} samples, {share:.2}%)</title><rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{}" fill="{}" rx="2"/>"##,
        node.count,
        ROW - 1.0,
        color(&node.name)
    );
    let fits = ((w - 6.0) / CHAR_PX).floor();
    if fits >= 3.0 {
        let fits = fits as usize;
        let label: String = if node.name.chars().count() <= fits {
            node.name.clone()
        } else {
            let mut s: String = node.name.chars().take(fits.saturating_sub(2)).collect();
            s.push_str("..");
            s
        };
        let _ = write!(
            svg,
            r##"<text x="{:.2}" y="{:.1}">{}</text>"##,
            x + 3.0,
            y + ROW - 5.0,
            escape(&label)
        );
    }
    svg.push_str("</g>");
    let mut cx = x;
    for child in node.children.values() {
        draw(svg, child, cx, level + 1, depth, scale, all);
        cx += child.count as f64 * scale;
    }
}

/// A warm colour fixed by the name, so a function keeps its colour across
/// graphs (which is what makes two graphs comparable side by side).
fn color(name: &str) -> String {
    let mut h: u32 = 2_166_136_261;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    let r = 205 + (h % 50);
    let g = 80 + ((h >> 8) % 130);
    let b = 40 + ((h >> 16) % 40);
    format!("rgb({r},{g},{b})")
}

fn escape(s: &str) -> String {
    crate::chart::esc(s)
}

/// Two profiles side by side in one self-contained HTML page (why is node
/// 7 slower than node 3?): a table of the frames with the most samples of
/// their own in either, with each one's share on both sides and the
/// difference, then both flame graphs, one above the other at full width
/// (same colours for the same function).
pub fn compare_html(
    title: &str,
    left: (&str, &BTreeMap<String, u64>),
    right: (&str, &BTreeMap<String, u64>),
) -> String {
    let share = |folded: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        let all: u64 = folded.values().sum();
        top(folded, usize::MAX)
            .into_iter()
            .map(|h| (h.frame, 100.0 * h.own as f64 / all.max(1) as f64))
            .collect()
    };
    let (l, r) = (share(left.1), share(right.1));
    let mut frames: Vec<(&String, f64, f64)> = l
        .keys()
        .chain(r.keys())
        .map(|f| {
            (
                f,
                l.get(f).copied().unwrap_or(0.0),
                r.get(f).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, a, b)| *a > 0.0 || *b > 0.0)
        .collect();
    frames.sort_by(|a, b| {
        let (da, db) = ((a.2 - a.1).abs(), (b.2 - b.1).abs());
        db.total_cmp(&da).then(a.0.cmp(b.0))
    });
    frames.dedup_by(|a, b| a.0 == b.0);
    frames.truncate(25);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left;font-family:monospace}}</style></head><body><h1>{t}</h1><h2>Where the time goes (share of samples running in the frame itself)</h2><table><tr><th>frame</th><th>{a}</th><th>{b}</th><th>{b} &minus; {a}</th></tr>",
        t = escape(title),
        a = escape(left.0),
        b = escape(right.0)
    );
    for (frame, a, b) in &frames {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{a:.1}%</td><td>{b:.1}%</td><td>{:+.1}</td></tr>",
            escape(frame),
            b - a
        );
    }
    let _ = writeln!(
        html,
        "</table><h2>{}</h2>{}<h2>{}</h2>{}</body></html>",
        escape(left.0),
        flame_svg(left.0, left.1),
        escape(right.0),
        flame_svg(right.0, right.1)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(lines: &str) -> BTreeMap<String, u64> {
        parse_folded(lines)
            .into_iter()
            .map(|f| (f.stack, f.count))
            .collect()
    }

    #[test]
    fn folded_lines_parse_and_repeat_stacks_add_up() {
        let f = parse_folded("main;work 3\nmain;work 2\nmain 1\nnot a count\n\n;x\n");
        assert_eq!(
            f,
            vec![
                Folded {
                    stack: "main".into(),
                    count: 1
                },
                Folded {
                    stack: "main;work".into(),
                    count: 5
                }
            ]
        );
    }

    #[test]
    fn the_hot_function_ranks_first_and_recursion_counts_once() {
        let f = folded("main;a;hot 90\nmain;a;a;a 5\nmain;cold 5\n");
        let t = top(&f, 3);
        assert_eq!(t[0].frame, "hot");
        assert_eq!((t[0].own, t[0].total), (90, 90));
        let a = top(&f, 10).into_iter().find(|h| h.frame == "a").unwrap();
        assert_eq!((a.own, a.total), (5, 95));
    }

    #[test]
    fn a_profile_merges_processes_per_host_and_for_the_job() {
        let p = |host: &str, pid, text: &str| ProcessProfile {
            host: host.into(),
            pid,
            stacks: parse_folded(text),
            ..ProcessProfile::default()
        };
        let profile = Profile {
            taken: Timestamp::from_nanos(0),
            duration_ms: 1000,
            rate_hz: 100,
            processes: vec![
                p("n1", 1, "main;hot 10\n"),
                p("n2", 2, "main;hot 30\nmain;slow 60\n"),
            ],
        };
        assert_eq!(profile.hosts(), vec!["n1", "n2"]);
        assert_eq!(profile.folded(None)["main;hot"], 40);
        assert_eq!(profile.folded(Some("n1")).len(), 1);
        assert_eq!(profile.samples(), 100);

        // The nodes' parts of a fleet profile merge into one: the earliest
        // start, the longest window, every process.
        let part = |host: &str, at, ms| Profile {
            taken: Timestamp::from_nanos(at),
            duration_ms: ms,
            rate_hz: 100,
            processes: vec![p(host, 7, "main;hot 5\n")],
        };
        let merged = Profile::merge(vec![part("n2", 20, 2000), part("n1", 10, 1000)]).unwrap();
        assert_eq!(merged.taken, Timestamp::from_nanos(10));
        assert_eq!(merged.duration_ms, 2000);
        assert_eq!(merged.hosts(), vec!["n1", "n2"]);
        assert_eq!(merged.folded(None)["main;hot"], 10);
        assert!(Profile::merge(Vec::new()).is_none());
    }

    #[test]
    fn the_flame_graph_is_one_escaped_svg_with_a_frame_per_function() {
        let f = folded("main;work<T> 3\nmain;idle 1\n");
        let svg = flame_svg("job & co", &f);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("job &amp; co"));
        assert!(svg.contains("work&lt;T&gt; (3 samples, 75.00%)"), "{svg}");
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 4,
            "background + all, main, work, idle"
        );
        assert!(flame_svg("none", &BTreeMap::new()).contains("no samples"));
    }

    #[test]
    fn the_comparison_leads_with_the_frame_whose_share_differs_most() {
        let a = folded("main;hot 50\nmain;io 50\n");
        let b = folded("main;hot 90\nmain;io 10\n");
        let html = compare_html("n3 vs n7", ("n3", &a), ("n7", &b));
        let row = html.find("<tr><td>").unwrap();
        assert!(
            html[row..].starts_with("<tr><td>hot</td><td>50.0%</td><td>90.0%</td><td>+40.0</td>")
        );
        assert_eq!(html.matches("<svg").count(), 2);
    }
}
