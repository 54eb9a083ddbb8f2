//! The report of one scenario run: per fault, when it was injected and
//! removed (UTC), what the probes saw before, during and after, and the
//! verdict; as text, JSON ([`Report`] is its schema) and one
//! self-contained HTML file.

use crate::probe::Check;
use serde::Serialize;
use std::fmt::Write as _;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's title.
    pub title: String,
    /// The scenario file.
    pub scenario: String,
    /// The seed every random choice came from.
    pub seed: u64,
    /// When the run started (UTC).
    pub started: String,
    /// When it ended (UTC).
    pub ended: String,
    /// `held`, `deviated`, or `not steady before` (nothing was injected).
    pub verdict: String,
    /// Whether the hypothesis held.
    pub held: bool,
    /// The first deviation anywhere.
    pub first_deviation: Option<Check>,
    /// The checks before anything was injected.
    pub before: Vec<Check>,
    /// Every check during the method, in order.
    pub during: Vec<Check>,
    /// The checks after every fault was removed.
    pub after: Vec<Check>,
    /// One entry per injection.
    pub faults: Vec<FaultReport>,
    /// The targets plumb started: pids and how they ended.
    pub targets: Vec<TargetReport>,
    /// The links plumb proxied.
    pub links: Vec<LinkReport>,
    /// What the rollbacks did.
    pub rollbacks: Vec<String>,
    /// What was undone at the end.
    pub cleanup: Vec<String>,
    /// Where the run's files (targets' output) are.
    pub work_dir: String,
}

/// One injection.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// The kind.
    pub kind: String,
    /// The target or link.
    pub on: String,
    /// The node whose agent carried it out, for a target with `node`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// The pids the node's agent signalled there.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pids: Vec<u32>,
    /// The fault's line in the scenario.
    pub line: usize,
    /// When it was planned, after the method's start, in milliseconds.
    pub planned_ms: u64,
    /// When it was injected (UTC), if it was.
    pub injected: Option<String>,
    /// When it was removed (UTC).
    pub removed: Option<String>,
    /// What was done.
    pub action: String,
    /// What removing it did.
    pub removal: String,
    /// Why it could not be injected or removed.
    pub error: Option<String>,
    /// The last check of each probe before it.
    pub before: Vec<Check>,
    /// Each probe's checks while it was on (until the next fault, or the
    /// settle time after its removal).
    pub during: Vec<ProbeSummary>,
    /// The first check of each probe after it.
    pub after: Vec<Check>,
    /// `held`, `deviated` or `not injected`.
    pub verdict: String,
    /// The first failed check while it was on.
    pub first_deviation: Option<Check>,
    /// With a collector: (what, URL) of its dashboard pages for this
    /// fault's window (the timeline, the search of plumb-chaos's events).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub links: Vec<(String, String)>,
    #[serde(skip)]
    pub(crate) injected_ns: i64,
    #[serde(skip)]
    pub(crate) removed_ns: i64,
}

/// One probe's checks during a fault.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    /// The probe.
    pub probe: String,
    /// How many checks.
    pub checks: usize,
    /// How many failed.
    pub failed: usize,
    /// The slowest check, in milliseconds.
    pub max_latency_ms: f64,
}

/// A started target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Its name.
    pub name: String,
    /// Every pid it had.
    pub pids: Vec<u32>,
    /// How they ended: (UTC, words).
    pub exits: Vec<(String, String)>,
    /// Its output file.
    pub log: String,
}

/// A link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    /// Its name.
    pub name: String,
    /// Where plumb listened.
    pub listen: String,
    /// Where it forwarded.
    pub upstream: String,
}

impl FaultReport {
    /// ` on node NAME (pids 1, 2)` for a fault a node's agent carried
    /// out; empty otherwise.
    pub fn node_words(&self) -> String {
        let Some(node) = &self.node else {
            return String::new();
        };
        if self.pids.is_empty() {
            format!(" on node {node}")
        } else {
            let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            format!(
                " on node {node} (pid{} {})",
                if pids.len() == 1 { "" } else { "s" },
                pids.join(", ")
            )
        }
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "FAIL" }
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "chaos: {} (seed {})", self.title, self.seed);
        let _ = writeln!(s, "  {} .. {}", self.started, self.ended);
        let _ = writeln!(s, "steady state before:");
        for c in &self.before {
            let _ = writeln!(s, "  {} {}: {}", mark(c.ok), c.probe, c.detail);
        }
        for f in &self.faults {
            let _ = if f.line == 0 {
                // A chaostoolkit method activity.
                writeln!(s, "{} `{}`", f.kind, f.on)
            } else {
                writeln!(
                    s,
                    "fault {} on `{}`{} (line {}, planned at +{} ms): {}",
                    f.kind,
                    f.on,
                    f.node_words(),
                    f.line,
                    f.planned_ms,
                    f.verdict
                )
            };
            if let Some(at) = &f.injected {
                let _ = writeln!(s, "  injected {at}: {}", f.action);
            }
            if let Some(at) = &f.removed {
                let _ = writeln!(s, "  removed  {at}: {}", f.removal);
            }
            if let Some(e) = &f.error {
                let _ = writeln!(s, "  error: {e}");
            }
            for b in &f.before {
                let _ = writeln!(s, "  before  {} {}: {}", mark(b.ok), b.probe, b.detail);
            }
            for d in &f.during {
                let _ = writeln!(
                    s,
                    "  during  {} {}: {} checks, {} failed, slowest {:.0} ms",
                    mark(d.failed == 0),
                    d.probe,
                    d.checks,
                    d.failed,
                    d.max_latency_ms
                );
            }
            for a in &f.after {
                let _ = writeln!(s, "  after   {} {}: {}", mark(a.ok), a.probe, a.detail);
            }
            if let Some(d) = &f.first_deviation {
                let _ = writeln!(s, "  first deviation {}: {}: {}", d.at, d.probe, d.detail);
            }
            for (what, url) in &f.links {
                let _ = writeln!(s, "  {what}: {url}");
            }
        }
        let _ = writeln!(s, "steady state after:");
        for c in &self.after {
            let _ = writeln!(s, "  {} {}: {}", mark(c.ok), c.probe, c.detail);
        }
        for t in &self.targets {
            for (at, how) in &t.exits {
                let _ = writeln!(s, "target `{}`: {at} {how}", t.name);
            }
        }
        for r in &self.rollbacks {
            let _ = writeln!(s, "rollback: {r}");
        }
        for c in &self.cleanup {
            let _ = writeln!(s, "cleanup: {c}");
        }
        let _ = match &self.first_deviation {
            Some(d) => writeln!(
                s,
                "verdict: {} (first deviation {}: {}: {})",
                self.verdict, d.at, d.probe, d.detail
            ),
            None => writeln!(s, "verdict: {}", self.verdict),
        };
        s
    }

    /// One HTML page with everything inline (no scripts, no fetches).
    pub fn html(&self) -> String {
        let e = escape;
        let mut s = String::new();
        let colour = if self.held { "#1a7f37" } else { "#cf222e" };
        let _ = write!(
            s,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>chaos: {}</title><style>\
body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em}}\
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}}\
.ok{{color:#1a7f37}}.fail{{color:#cf222e;font-weight:bold}}.verdict{{font-size:1.4em;color:{colour}}}\
</style></head><body>",
            e(&self.title)
        );
        let _ = write!(
            s,
            "<h1>{}</h1><p class=\"verdict\">hypothesis {}</p><p>{} .. {} UTC · seed {} · scenario {}</p>",
            e(&self.title),
            e(&self.verdict),
            e(&self.started),
            e(&self.ended),
            self.seed,
            e(&self.scenario)
        );
        if let Some(d) = &self.first_deviation {
            let _ = write!(
                s,
                "<p class=\"fail\">first deviation {}: {}: {}</p>",
                e(&d.at),
                e(&d.probe),
                e(&d.detail)
            );
        }
        let checks = |s: &mut String, title: &str, cs: &[Check]| {
            let _ = write!(
                s,
                "<h2>{}</h2><table><tr><th>probe</th><th>at</th><th></th><th>saw</th></tr>",
                e(title)
            );
            for c in cs {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                    e(&c.probe),
                    e(&c.at),
                    if c.ok { "ok" } else { "fail" },
                    if c.ok { "ok" } else { "FAIL" },
                    e(&c.detail)
                );
            }
            s.push_str("</table>");
        };
        checks(&mut s, "Steady state before", &self.before);
        s.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>injected (UTC)</th><th>removed (UTC)</th><th>before</th><th>during</th><th>after</th><th>verdict</th></tr>");
        for f in &self.faults {
            let list = |cs: &[Check]| {
                cs.iter()
                    .map(|c| {
                        format!(
                            "<span class=\"{}\">{}</span>: {}",
                            if c.ok { "ok" } else { "fail" },
                            e(&c.probe),
                            e(&c.detail)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let during = f
                .during
                .iter()
                .map(|d| {
                    format!(
                        "<span class=\"{}\">{}</span>: {}/{} failed, slowest {:.0} ms",
                        if d.failed == 0 { "ok" } else { "fail" },
                        e(&d.probe),
                        d.failed,
                        d.checks,
                        d.max_latency_ms
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>");
            let verdict = match &f.first_deviation {
                Some(d) => format!(
                    "<span class=\"fail\">{}</span><br>{} {}: {}",
                    e(&f.verdict),
                    e(&d.at),
                    e(&d.probe),
                    e(&d.detail)
                ),
                None => format!(
                    "<span class=\"{}\">{}</span>{}",
                    if f.verdict == "held" { "ok" } else { "fail" },
                    e(&f.verdict),
                    f.error
                        .as_ref()
                        .map(|x| format!("<br>{}", e(x)))
                        .unwrap_or_default()
                ),
            };
            let verdict = f.links.iter().fold(verdict, |v, (what, url)| {
                format!("{v}<br><a href=\"{}\">{}</a>", e(url), e(what))
            });
            let _ = write!(
                s,
                "<tr><td>{} on {}{} (line {})<br>{}</td><td>{}</td><td>{}<br>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(&f.kind),
                e(&f.on),
                e(&f.node_words()),
                f.line,
                e(&f.action),
                e(f.injected.as_deref().unwrap_or("-")),
                e(f.removed.as_deref().unwrap_or("-")),
                e(&f.removal),
                list(&f.before),
                during,
                list(&f.after),
                verdict
            );
        }
        s.push_str("</table>");
        checks(&mut s, "Steady state after", &self.after);
        checks(&mut s, "Every check during the method", &self.during);
        if !self.cleanup.is_empty() || !self.rollbacks.is_empty() {
            s.push_str("<h2>Rollbacks and cleanup</h2><ul>");
            for c in self.rollbacks.iter().chain(&self.cleanup) {
                let _ = write!(s, "<li>{}</li>", e(c));
            }
            s.push_str("</ul>");
        }
        s.push_str("</body></html>\n");
        s
    }
}

/// Text made safe inside HTML.
fn escape(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
