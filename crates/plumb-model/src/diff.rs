//! Why two runs differ: `plumb diff`.
//!
//! [`diff`] compares two recorded [`Run`]s (and, when the caller has them,
//! their software [`Fingerprint`]s) and returns a [`RunDiff`]: a list of
//! [`Difference`]s ordered most telling first. The order follows the
//! question a user asks when two runs disagree: did they end the same way,
//! were they started the same way (arguments, directory, user, host,
//! environment, configuration), did they see the same data, did they run the
//! same software, and only then how much they cost. Identifiers, timestamps
//! and pids always differ between runs and are never reported; resource use
//! is reported only beyond [`RESOURCE_FACTOR`], so that ordinary noise does
//! not drown what matters.
//!
//! ```
//! use plumb_model::{Run, Timestamp, new_id, diff::{diff, Category}};
//! let mut a = Run::new(new_id(), "train".into(), Timestamp::from_nanos(0));
//! a.argv = vec!["python".into(), "train.py".into()];
//! let mut b = a.clone();
//! b.id = new_id();
//! assert!(diff(&a, None, &b, None).is_empty());
//!
//! b.env.insert("OMP_NUM_THREADS".into(), "8".into());
//! let d = diff(&a, None, &b, None);
//! assert_eq!(d.differences[0].category, Category::Environment);
//! assert!(d.render_text().starts_with("runs differ in: environment"));
//! ```

use crate::{
    Exception, ExitStatus, FileRecord, Fingerprint, GitState, Library, PythonEnv, Run, Uuid,
    is_redacted,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Resource use (CPU time, peak memory, duration) is reported only when the
/// larger value exceeds the smaller by more than this factor. Run-to-run
/// noise on a loaded machine easily reaches 20-30%; a 1.5x change is rarely
/// noise.
pub const RESOURCE_FACTOR: f64 = 1.5;

/// Below these absolute differences a resource change is noise whatever the
/// factor: a 10 ms job taking 25 ms says nothing about the program.
const TIME_FLOOR_NS: u64 = 50_000_000;
const RSS_FLOOR_KIB: u64 = 4 * 1024;

/// Longest line diff kept in a [`Difference::detail`]; the rest is counted.
const MAX_DETAIL_LINES: usize = 100;

/// Largest dynamic-programming table (cells) the line diff will build. Past
/// this the changed region is shown as wholly removed and wholly added,
/// which is still correct, only less precise.
const MAX_LCS_CELLS: usize = 4_000_000;

/// Longest value shown in full by [`RunDiff::render_text`]; the JSON form
/// always carries values in full.
const MAX_SHOWN_VALUE: usize = 400;

/// What part of a run a [`Difference`] is about. The declaration order is
/// the reporting order: most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Run state, exit code, signal, core dump.
    Exit,
    /// The exception or panic: type, message, grouping fingerprint.
    Exception,
    /// The command line.
    Args,
    /// The working directory.
    Cwd,
    /// User name, uid, gid, groups.
    User,
    /// Host name, FQDN, IP addresses, container.
    Host,
    /// Environment variables.
    Environment,
    /// Configuration files.
    Config,
    /// Input and output files, by content hash.
    Data,
    /// The executed program's path and hash. Ahead of packages because a
    /// different program or different code explains more than any library.
    Executable,
    /// Git commit, branch, remote, dirty state of the working directory.
    Git,
    /// The Python interpreter and its installed distributions.
    Packages,
    /// Shared libraries the program had loaded.
    Libraries,
    /// OS, kernel, architecture, libc, CPU, memory.
    Platform,
    /// Versions of extra tools listed in plumb.toml.
    Tools,
    /// The fingerprint hash, when its details are not available.
    Fingerprint,
    /// The run's name.
    Name,
    /// User tags.
    Tags,
    /// What stdin was and whether stdout/stderr were terminals.
    Stdio,
    /// What the node went through during the run (pressure, throttling,
    /// I/O errors), notable during one run and not the other. Next to
    /// resources, which it often explains.
    Node,
    /// CPU time, peak memory, duration (beyond [`RESOURCE_FACTOR`]).
    Resources,
    /// Bytes and lines of output.
    OutputSize,
}

impl Category {
    /// The category's name as shown in reports (`environment`, `output size`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Exit => "exit",
            Category::Exception => "exception",
            Category::Args => "args",
            Category::Cwd => "cwd",
            Category::User => "user",
            Category::Host => "host",
            Category::Environment => "environment",
            Category::Config => "config",
            Category::Data => "data",
            Category::Executable => "executable",
            Category::Git => "git",
            Category::Packages => "packages",
            Category::Libraries => "libraries",
            Category::Platform => "platform",
            Category::Tools => "tools",
            Category::Fingerprint => "fingerprint",
            Category::Name => "name",
            Category::Tags => "tags",
            Category::Stdio => "stdio",
            Category::Node => "node",
            Category::Resources => "resources",
            Category::OutputSize => "output size",
        }
    }

    /// Place in the report; lower is more telling.
    fn order(self) -> u32 {
        self as u32
    }
}

/// One way in which run A and run B differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What part of the run.
    pub category: Category,
    /// Which item within the category: a variable name, a file path, a
    /// package name, or a field such as `uid` or `kernel`.
    pub key: String,
    /// The value in run A; `None` when A does not have the item at all. A
    /// secret is only ever shown as its redaction marker.
    pub a: Option<String>,
    /// The value in run B; `None` when B does not have the item at all.
    pub b: Option<String>,
    /// Extra lines: a line diff of two configuration files, the path
    /// entries that changed, the ratio of two resource figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
    /// Sort key, lower is more telling: ten times the category's place,
    /// plus less for a headline (such as "same inputs, different outputs")
    /// than for an ordinary item.
    pub rank: u32,
}

/// Everything that differs between run A and run B, most telling first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDiff {
    /// Run A's id.
    pub a: Uuid,
    /// Run B's id.
    pub b: Uuid,
    /// The differences, sorted by [`Difference::rank`].
    pub differences: Vec<Difference>,
}

impl RunDiff {
    /// True when nothing but ids, times, pids and resource noise differ.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// One line naming the categories that differ, most telling first, with
    /// a count where more than one item differs: `runs differ in: exit,
    /// environment (3), packages (2)`; `no differences` when there are none.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no differences".to_string();
        }
        let parts: Vec<String> = self
            .categories()
            .into_iter()
            .map(|(cat, n)| {
                if n > 1 {
                    format!("{} ({n})", cat.as_str())
                } else {
                    cat.as_str().to_string()
                }
            })
            .collect();
        format!("runs differ in: {}", parts.join(", "))
    }

    /// A readable report: the [`summary`](Self::summary) line, which run is
    /// A and which is B, then one section per category, most telling first.
    /// Control characters in values are escaped so that a recorded value
    /// cannot drive the terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.summary());
        let _ = writeln!(out, "  A = {}", self.a);
        let _ = writeln!(out, "  B = {}", self.b);
        render_differences(&mut out, &self.differences);
        out
    }

    /// The categories that differ, in report order, with their item counts.
    fn categories(&self) -> Vec<(Category, usize)> {
        let mut counts: Vec<(Category, usize)> = Vec::new();
        for d in &self.differences {
            match counts.iter_mut().find(|(c, _)| *c == d.category) {
                Some((_, n)) => *n += 1,
                None => counts.push((d.category, 1)),
            }
        }
        counts.sort_by_key(|(c, _)| c.order());
        counts
    }
}

/// Differences grouped under their category's name, one per line.
pub fn render_differences(out: &mut String, differences: &[Difference]) {
    let mut current = None;
    for d in differences {
        if current != Some(d.category) {
            current = Some(d.category);
            let _ = writeln!(out, "\n{}", d.category.as_str());
        }
        render_one(out, d);
    }
}

fn render_one(out: &mut String, d: &Difference) {
    let a =
        d.a.as_deref()
            .map(shown)
            .unwrap_or_else(|| "(absent)".into());
    let b =
        d.b.as_deref()
            .map(shown)
            .unwrap_or_else(|| "(absent)".into());
    let key = shown(&d.key);
    // A single remark ("changed (secret)", a ratio) reads best on the same
    // line; line diffs and longer notes go below.
    let remark = match d.detail.as_slice() {
        [one] if one.len() <= 30 && !one.starts_with("- ") && !one.starts_with("+ ") => {
            Some(shown(one))
        }
        _ => None,
    };
    let compact = a.len() + b.len() + key.len() <= 90;
    match (&remark, compact) {
        (Some(r), true) => {
            let _ = writeln!(out, "  {key}: {a} -> {b}  ({r})");
        }
        (None, true) => {
            let _ = writeln!(out, "  {key}: {a} -> {b}");
        }
        (_, false) => {
            let _ = writeln!(out, "  {key}");
            let _ = writeln!(out, "    A: {a}");
            let _ = writeln!(out, "    B: {b}");
        }
    }
    if remark.is_some() && compact {
        return;
    }
    for line in &d.detail {
        let _ = writeln!(out, "    {}", shown(line));
    }
}

/// A value as shown in the text report: control characters escaped, very
/// long values cut (the JSON form has them whole).
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SHOWN_VALUE + 32));
    for (shown_chars, c) in s.chars().enumerate() {
        if shown_chars == MAX_SHOWN_VALUE {
            let rest = s.chars().count() - shown_chars;
            let _ = write!(out, "... ({rest} more characters, see --json)");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Compares run `a` with run `b`.
///
/// `fa` and `fb` are the runs' software fingerprints when the caller could
/// load them (runs store only the fingerprint's hash). When the hashes are
/// equal the software is the same and nothing is compared; when they differ
/// and both fingerprints are given, the packages, libraries, platform,
/// executable, git state and tools are compared item by item; otherwise the
/// differing hash alone is reported.
///
/// Never reported: ids, start and end times, pids, schema version, attempt
/// numbers and limits, eviction timings (the state and exit already say a
/// run was evicted), scheduler job ids (they differ by construction). Resource use
/// is reported only beyond [`RESOURCE_FACTOR`] and a small absolute floor.
///
/// Redacted values (see [`is_redacted`]) are compared by their markers,
/// which carry a keyed hash, and reported as "changed (secret)" with
/// nothing but the markers; a value stored in the clear under a name the
/// other run redacted is hidden too, since it is probably a secret.
///
/// The result is symmetric: `diff(a, b)` and `diff(b, a)` report the same
/// keys, with A and B swapped.
pub fn diff(a: &Run, fa: Option<&Fingerprint>, b: &Run, fb: Option<&Fingerprint>) -> RunDiff {
    let mut c = Collector::default();
    exit(&mut c, a, b);
    exception(&mut c, a.exception.as_ref(), b.exception.as_ref());
    args(&mut c, &a.argv, &b.argv);
    c.value(Category::Cwd, "cwd", &a.cwd, &b.cwd);
    user(&mut c, a, b);
    host(&mut c, a, b);
    environment(&mut c, &a.env, &b.env);
    config_files(&mut c, &a.config_files, &b.config_files);
    data(&mut c, a, b);
    software(&mut c, a, fa, b, fb);
    c.value(Category::Name, "name", &a.name, &b.name);
    c.maps(Category::Tags, &a.tags, &b.tags);
    stdio(&mut c, a, b);
    node(&mut c, a, b);
    resources(&mut c, a, b);
    output_size(&mut c, a, b);

    let mut differences = c.out;
    // Stable: within a rank, items keep the order they were found in,
    // which is sorted by key for every map-like part of a run.
    differences.sort_by_key(|d| d.rank);
    RunDiff {
        a: a.id,
        b: b.id,
        differences,
    }
}

/// How two software environments differ (`plumb env diff`): the
/// executable, git state, Python and its packages, libraries, platform and
/// tools, most telling first, as [`diff`] reports them for two runs.
pub fn diff_fingerprints(x: &Fingerprint, y: &Fingerprint) -> Vec<Difference> {
    let mut c = Collector::default();
    fingerprints(&mut c, x, y);
    let mut differences = c.out;
    differences.sort_by_key(|d| d.rank);
    differences
}

/// Accumulates differences; each helper compares one kind of value.
#[derive(Default)]
struct Collector {
    out: Vec<Difference>,
}

impl Collector {
    fn push(
        &mut self,
        category: Category,
        key: impl Into<String>,
        a: Option<String>,
        b: Option<String>,
        detail: Vec<String>,
    ) {
        self.out.push(Difference {
            category,
            key: key.into(),
            a,
            b,
            detail,
            rank: category.order() * 10 + 5,
        });
    }

    /// A headline ranks ahead of everything else in its category.
    fn headline(
        &mut self,
        category: Category,
        key: impl Into<String>,
        a: Option<String>,
        b: Option<String>,
        detail: Vec<String>,
    ) {
        self.push(category, key, a, b, detail);
        if let Some(last) = self.out.last_mut() {
            last.rank = category.order() * 10;
        }
    }

    fn value(&mut self, category: Category, key: &str, a: &str, b: &str) {
        if a != b {
            self.push(category, key, Some(a.into()), Some(b.into()), Vec::new());
        }
    }

    fn option(&mut self, category: Category, key: &str, a: Option<String>, b: Option<String>) {
        if a != b {
            self.push(category, key, a, b, Vec::new());
        }
    }

    /// Items added, removed or changed between two maps, keyed by name.
    fn maps(
        &mut self,
        category: Category,
        a: &BTreeMap<String, String>,
        b: &BTreeMap<String, String>,
    ) {
        for key in union_keys(a, b) {
            let (va, vb) = (a.get(key), b.get(key));
            if va != vb {
                self.push(category, key.as_str(), va.cloned(), vb.cloned(), Vec::new());
            }
        }
    }

    fn len(&self) -> usize {
        self.out.len()
    }
}

fn union_keys<'m, V>(
    a: &'m BTreeMap<String, V>,
    b: &'m BTreeMap<String, V>,
) -> BTreeSet<&'m String> {
    a.keys().chain(b.keys()).collect()
}

fn exit(c: &mut Collector, a: &Run, b: &Run) {
    let describe = |run: &Run| {
        let mut s = run.state.as_str().to_string();
        if let Some(e) = &run.exit {
            let _ = write!(s, " ({})", describe_exit(e));
        }
        s
    };
    c.value(Category::Exit, "status", &describe(a), &describe(b));
}

fn describe_exit(e: &ExitStatus) -> String {
    let mut s = match (e.code, e.signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => match &e.signal_name {
            Some(name) => format!("signal {sig} {name}"),
            None => format!("signal {sig}"),
        },
        (None, None) => "no status".to_string(),
    };
    if e.core_dumped {
        s.push_str(", core dumped");
    }
    s
}

fn exception(c: &mut Collector, a: Option<&Exception>, b: Option<&Exception>) {
    let brief = |e: &Exception| format!("{}: {}", e.kind, e.message);
    match (a, b) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            let cat = Category::Exception;
            c.value(cat, "language", &x.language, &y.language);
            c.value(cat, "type", &x.kind, &y.kind);
            c.value(cat, "message", &x.message, &y.message);
            if x.fingerprint != y.fingerprint {
                // The fingerprint changes with the frames; say where each
                // one was raised so the reader need not open both runs.
                let detail = [("A", x), ("B", y)]
                    .into_iter()
                    .filter_map(|(side, e)| raised_at(e).map(|at| format!("{side} raised at {at}")))
                    .collect();
                c.push(
                    cat,
                    "fingerprint",
                    Some(x.fingerprint.clone()),
                    Some(y.fingerprint.clone()),
                    detail,
                );
            }
        }
        (x, y) => {
            let detail = [("A", x), ("B", y)]
                .into_iter()
                .filter_map(|(side, e)| {
                    e.and_then(raised_at)
                        .map(|at| format!("{side} raised at {at}"))
                })
                .collect();
            c.push(
                Category::Exception,
                "exception",
                x.map(brief),
                y.map(brief),
                detail,
            )
        }
    }
}

/// The innermost frame (frames are stored outermost first).
fn raised_at(e: &Exception) -> Option<String> {
    let f = e.frames.last()?;
    let mut s = f.file.clone().unwrap_or_else(|| "?".into());
    if let Some(line) = f.line {
        let _ = write!(s, ":{line}");
    }
    if let Some(func) = &f.function {
        let _ = write!(s, " in {func}");
    }
    Some(s)
}

fn args(c: &mut Collector, a: &[String], b: &[String]) {
    if a == b {
        return;
    }
    let ra: Vec<&str> = a.iter().map(String::as_str).collect();
    let rb: Vec<&str> = b.iter().map(String::as_str).collect();
    let detail = edits_to_lines(&line_edits(&ra, &rb), |n| format!("[{}]", n - 1));
    c.push(
        Category::Args,
        "argv",
        Some(shell_join(a)),
        Some(shell_join(b)),
        detail,
    );
}

/// The command line as a shell would need it typed.
fn shell_join(argv: &[String]) -> String {
    let quote = |s: &String| {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            s.clone()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

fn user(c: &mut Collector, a: &Run, b: &Run) {
    let (x, y) = (&a.user, &b.user);
    let cat = Category::User;
    c.value(cat, "name", &x.name, &y.name);
    c.value(cat, "uid", &x.uid.to_string(), &y.uid.to_string());
    c.value(cat, "gid", &x.gid.to_string(), &y.gid.to_string());
    let groups = |g: &[u32]| {
        let set: BTreeSet<u32> = g.iter().copied().collect();
        set.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    };
    c.value(cat, "groups", &groups(&x.groups), &groups(&y.groups));
}

fn host(c: &mut Collector, a: &Run, b: &Run) {
    let cat = Category::Host;
    c.value(cat, "hostname", &a.host.hostname, &b.host.hostname);
    c.value(cat, "fqdn", &a.host.fqdn, &b.host.fqdn);
    let ips = |v: &[String]| {
        let set: BTreeSet<&String> = v.iter().collect();
        set.into_iter().cloned().collect::<Vec<_>>().join(", ")
    };
    c.value(cat, "ips", &ips(&a.host.ips), &ips(&b.host.ips));
    c.option(cat, "container", a.container.clone(), b.container.clone());
}

/// Shown in place of a value stored in the clear under a name that the
/// other run redacted.
const HIDDEN: &str = "[hidden: redacted in the other run]";

fn environment(c: &mut Collector, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
    for name in union_keys(a, b) {
        let (va, vb) = (a.get(name), b.get(name));
        if va == vb {
            continue;
        }
        let cat = Category::Environment;
        match (va, vb) {
            (Some(x), Some(y)) if is_redacted(x) || is_redacted(y) => {
                let mask = |v: &String| {
                    if is_redacted(v) {
                        v.clone()
                    } else {
                        HIDDEN.into()
                    }
                };
                c.push(
                    cat,
                    name.as_str(),
                    Some(mask(x)),
                    Some(mask(y)),
                    vec!["changed (secret)".into()],
                );
            }
            (Some(x), Some(y)) => {
                // Search paths (PATH, PYTHONPATH, LD_LIBRARY_PATH...) are long
                // and differ by one entry: name the entries.
                let detail = if x.contains(':') && y.contains(':') && x.len().max(y.len()) > 40 {
                    let ex: Vec<&str> = x.split(':').collect();
                    let ey: Vec<&str> = y.split(':').collect();
                    edits_to_lines(&line_edits(&ex, &ey), |n| format!("entry {n}"))
                } else {
                    Vec::new()
                };
                c.push(cat, name.as_str(), Some(x.clone()), Some(y.clone()), detail);
            }
            // Present on one side only: a redacted value is its marker
            // already, so it can be shown as it is.
            (x, y) => c.push(cat, name.as_str(), x.cloned(), y.cloned(), Vec::new()),
        }
    }
}

/// A file record as one comparable string: short hash and size, or why it
/// could not be read.
fn describe_file(f: &FileRecord) -> String {
    if let Some(err) = &f.error {
        return format!("unreadable: {err}");
    }
    let hash = f
        .sha256
        .as_deref()
        .map(|h| format!("sha256 {}", short_hash(h)))
        .unwrap_or_else(|| "no hash".into());
    match f.size {
        Some(size) => format!("{hash}, {}", fmt_bytes(size)),
        None => hash,
    }
}

/// Enough of a hex hash to tell two apart at a glance.
fn short_hash(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

fn files_by_path(files: &[FileRecord]) -> BTreeMap<String, &FileRecord> {
    files.iter().map(|f| (f.path.clone(), f)).collect()
}

fn config_files(c: &mut Collector, a: &[FileRecord], b: &[FileRecord]) {
    let (ma, mb) = (files_by_path(a), files_by_path(b));
    for path in union_keys(&ma, &mb) {
        let (fa, fb) = (ma.get(path), mb.get(path));
        let (da, db) = (fa.map(|f| describe_file(f)), fb.map(|f| describe_file(f)));
        let content_differs = match (fa, fb) {
            (Some(x), Some(y)) => x.content != y.content,
            _ => false,
        };
        if da == db && !content_differs {
            continue;
        }
        let detail = match (
            fa.and_then(|f| f.content.as_deref()),
            fb.and_then(|f| f.content.as_deref()),
        ) {
            (Some(x), Some(y)) if x != y => {
                let lx: Vec<&str> = x.lines().collect();
                let ly: Vec<&str> = y.lines().collect();
                edits_to_lines(&line_edits(&lx, &ly), |n| format!("{n}:"))
            }
            _ => Vec::new(),
        };
        c.push(Category::Config, path.as_str(), da, db, detail);
    }
}

fn data(c: &mut Collector, a: &Run, b: &Run) {
    let (ia, ib) = (files_by_path(&a.inputs), files_by_path(&b.inputs));
    let (oa, ob) = (files_by_path(&a.outputs), files_by_path(&b.outputs));
    let changed = |ma: &BTreeMap<String, &FileRecord>, mb: &BTreeMap<String, &FileRecord>| {
        union_keys(ma, mb)
            .into_iter()
            .filter(|p| {
                ma.get(*p).map(|f| describe_file(f)) != mb.get(*p).map(|f| describe_file(f))
            })
            .cloned()
            .collect::<Vec<String>>()
    };
    let changed_inputs = changed(&ia, &ib);
    let changed_outputs = changed(&oa, &ob);

    // The most telling data difference: the program was given exactly the
    // same data and produced different results, so the cause is in the
    // code, the environment or nondeterminism.
    if !ia.is_empty() && changed_inputs.is_empty() && !changed_outputs.is_empty() {
        let side = |m: &BTreeMap<String, &FileRecord>| {
            changed_outputs
                .iter()
                .map(|p| match m.get(p) {
                    Some(f) => format!("{p} {}", describe_file(f)),
                    None => format!("{p} absent"),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        c.headline(
            Category::Data,
            "same inputs, different outputs",
            Some(side(&oa)),
            Some(side(&ob)),
            vec![if ia.len() == 1 {
                "the input file has the same content in both runs".to_string()
            } else {
                format!(
                    "all {} input files have the same content in both runs",
                    ia.len()
                )
            }],
        );
        // The headline names every changed output already; listing them
        // again would only inflate the count in the summary.
        return;
    }
    for (label, ma, mb, paths) in [
        ("input", &ia, &ib, &changed_inputs),
        ("output", &oa, &ob, &changed_outputs),
    ] {
        for p in paths {
            c.push(
                Category::Data,
                format!("{label} {p}"),
                ma.get(p).map(|f| describe_file(f)),
                mb.get(p).map(|f| describe_file(f)),
                Vec::new(),
            );
        }
    }
}

fn software(
    c: &mut Collector,
    a: &Run,
    fa: Option<&Fingerprint>,
    b: &Run,
    fb: Option<&Fingerprint>,
) {
    if a.fingerprint.is_some() && a.fingerprint == b.fingerprint {
        return;
    }
    let before = c.len();
    if let (Some(x), Some(y)) = (fa, fb) {
        fingerprints(c, x, y);
    }
    // Either the details are not available, or they hash differently in a
    // way the comparison above does not show (duplicate libraries, say):
    // the hash is still a fact worth reporting.
    if c.len() == before && a.fingerprint != b.fingerprint {
        let detail = if fa.is_some() && fb.is_some() {
            Vec::new()
        } else {
            vec!["fingerprint details not available".to_string()]
        };
        c.push(
            Category::Fingerprint,
            "hash",
            a.fingerprint.as_deref().map(|h| short_hash(h).to_string()),
            b.fingerprint.as_deref().map(|h| short_hash(h).to_string()),
            detail,
        );
    }
}

fn fingerprints(c: &mut Collector, x: &Fingerprint, y: &Fingerprint) {
    executable(c, x.executable.as_ref(), y.executable.as_ref());
    git(c, x.git.as_ref(), y.git.as_ref());
    python(c, x.python.as_ref(), y.python.as_ref());
    // Libraries are sampled from the program's memory maps while it runs;
    // a program that exits within a millisecond may leave none sampled,
    // which says nothing about the libraries it used.
    if !x.libraries.is_empty() && !y.libraries.is_empty() {
        libraries(c, &x.libraries, &y.libraries);
    }

    let cat = Category::Platform;
    let os = |f: &Fingerprint| {
        if f.os.pretty.is_empty() {
            format!("{} {}", f.os.id, f.os.version).trim().to_string()
        } else {
            f.os.pretty.clone()
        }
    };
    c.value(cat, "os", &os(x), &os(y));
    c.value(cat, "kernel", &x.os.kernel, &y.os.kernel);
    c.value(cat, "arch", &x.os.arch, &y.os.arch);
    c.value(cat, "libc", &x.libc, &y.libc);
    c.value(cat, "cpu model", &x.cpu_model, &y.cpu_model);
    c.value(
        cat,
        "cpu count",
        &x.cpu_count.to_string(),
        &y.cpu_count.to_string(),
    );
    c.value(
        cat,
        "memory",
        &fmt_bytes(x.memory_bytes),
        &fmt_bytes(y.memory_bytes),
    );

    c.maps(Category::Tools, &x.tools, &y.tools);
    c.maps(Category::Environment, &x.variables, &y.variables);
}

fn executable(c: &mut Collector, x: Option<&FileRecord>, y: Option<&FileRecord>) {
    let cat = Category::Executable;
    match (x, y) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            c.value(cat, "path", &x.path, &y.path);
            c.value(cat, "content", &describe_file(x), &describe_file(y));
        }
        (x, y) => c.option(
            cat,
            "executable",
            x.map(|f| format!("{} ({})", f.path, describe_file(f))),
            y.map(|f| format!("{} ({})", f.path, describe_file(f))),
        ),
    }
}

fn git(c: &mut Collector, x: Option<&GitState>, y: Option<&GitState>) {
    let cat = Category::Git;
    match (x, y) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            c.value(cat, "root", &x.root, &y.root);
            c.value(cat, "commit", &x.commit, &y.commit);
            c.option(cat, "branch", x.branch.clone(), y.branch.clone());
            c.option(cat, "remote", x.remote.clone(), y.remote.clone());
            c.value(cat, "dirty", &x.dirty.to_string(), &y.dirty.to_string());
            c.option(
                cat,
                "diff sha256",
                x.diff_sha256.as_deref().map(|h| short_hash(h).to_string()),
                y.diff_sha256.as_deref().map(|h| short_hash(h).to_string()),
            );
        }
        (x, y) => {
            let describe = |g: &GitState| {
                let dirty = if g.dirty { ", dirty" } else { "" };
                format!("{} at {}{dirty}", g.root, g.commit)
            };
            c.option(cat, "repository", x.map(describe), y.map(describe));
        }
    }
}

fn python(c: &mut Collector, x: Option<&PythonEnv>, y: Option<&PythonEnv>) {
    let cat = Category::Packages;
    match (x, y) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            c.value(cat, "python", &x.version, &y.version);
            c.value(cat, "python executable", &x.executable, &y.executable);
            c.value(cat, "python prefix", &x.prefix, &y.prefix);
            c.maps(cat, &x.packages, &y.packages);
        }
        // One run is not a Python program: listing every package of the
        // other as "removed" would bury the one line that matters.
        (x, y) => c.option(
            cat,
            "python",
            x.map(|p| format!("{} ({} packages)", p.version, p.packages.len())),
            y.map(|p| format!("{} ({} packages)", p.version, p.packages.len())),
        ),
    }
}

/// Libraries are matched by file name rather than full path, so that the
/// same library found in another directory shows as a change, not as one
/// library removed and another added.
fn libraries(c: &mut Collector, x: &[Library], y: &[Library]) {
    let by_name = |libs: &[Library]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for lib in libs {
            let name = lib.path.rsplit('/').next().unwrap_or(&lib.path).to_string();
            let value = match &lib.version {
                Some(v) => format!("{v} ({})", lib.path),
                None => lib.path.clone(),
            };
            m.entry(name).or_default().insert(value);
        }
        m.into_iter()
            .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join("; ")))
            .collect::<BTreeMap<String, String>>()
    };
    c.maps(Category::Libraries, &by_name(x), &by_name(y));
}

fn stdio(c: &mut Collector, a: &Run, b: &Run) {
    let cat = Category::Stdio;
    c.value(cat, "stdin", &a.stdin, &b.stdin);
    let tty = |t: bool| if t { "terminal" } else { "not a terminal" };
    c.value(
        cat,
        "stdout",
        tty(a.output.stdout_tty),
        tty(b.output.stdout_tty),
    );
    c.value(
        cat,
        "stderr",
        tty(a.output.stderr_tty),
        tty(b.output.stderr_tty),
    );
}

/// Node conditions notable during one run and not the other, each with a
/// sentence naming the node: `node-7 was under memory pressure during B
/// (12.3 s stalled), not during A`. A run without conditions recorded (an
/// older plumb, or none could be read) is compared only when the other has
/// notable ones, and the sentence then says A's were not recorded.
fn node(c: &mut Collector, a: &Run, b: &Run) {
    use crate::conditions::{Fact, contrast};
    let facts = |r: &Run| -> Option<Vec<Fact>> {
        let own = r.oom.as_ref().map_or(0, |o| o.kills);
        r.node.as_ref().map(|n| n.notable(own))
    };
    let (fa, fb) = (facts(a), facts(b));
    let mut kinds: Vec<&str> = Vec::new();
    for f in fa.iter().flatten().chain(fb.iter().flatten()) {
        if !kinds.contains(&f.kind.as_str()) {
            kinds.push(&f.kind);
        }
    }
    let find = |fs: &Option<Vec<Fact>>, kind: &str| -> Option<Fact> {
        fs.as_ref()?.iter().find(|f| f.kind == kind).cloned()
    };
    let not_recorded = |r: &Run| -> String {
        if r.node.is_some() {
            "nothing notable".into()
        } else {
            "not recorded".into()
        }
    };
    for kind in kinds {
        let (x, y) = (find(&fa, kind), find(&fb, kind));
        let (during, fact, host) = match (&x, &y) {
            (Some(f), None) => ("A", f, &a.host.hostname),
            (None, Some(f)) => ("B", f, &b.host.hostname),
            _ => continue,
        };
        let mut sentence = contrast(kind, host, during, &fact.figure);
        let quiet = if during == "A" { b } else { a };
        if quiet.node.is_none() {
            sentence.push_str(&format!(
                " (not recorded for {})",
                if during == "A" { "B" } else { "A" }
            ));
        }
        c.push(
            Category::Node,
            kind.replace('_', " "),
            Some(x.map_or_else(|| not_recorded(a), |f| f.text)),
            Some(y.map_or_else(|| not_recorded(b), |f| f.text)),
            vec![sentence],
        );
    }
}

/// Whether two resource figures differ by more than [`RESOURCE_FACTOR`]
/// and by at least `floor`.
fn beyond_noise(x: u64, y: u64, floor: u64) -> bool {
    let (lo, hi) = (x.min(y), x.max(y));
    hi - lo >= floor && (hi as f64) > (lo as f64) * RESOURCE_FACTOR
}

fn ratio_line(x: u64, y: u64) -> Vec<String> {
    if x == 0 {
        return Vec::new();
    }
    vec![format!("B/A = {:.2}x", y as f64 / x as f64)]
}

fn resources(c: &mut Collector, a: &Run, b: &Run) {
    let cat = Category::Resources;
    if let (Some(x), Some(y)) = (a.duration_ns(), b.duration_ns()) {
        let (x, y) = (x.max(0) as u64, y.max(0) as u64);
        if beyond_noise(x, y, TIME_FLOOR_NS) {
            c.push(
                cat,
                "duration",
                Some(fmt_ns(x)),
                Some(fmt_ns(y)),
                ratio_line(x, y),
            );
        }
    }
    if let (Some(x), Some(y)) = (&a.rusage, &b.rusage) {
        let cpu = |r: &crate::Rusage| (r.user_us + r.system_us).saturating_mul(1000);
        let (cx, cy) = (cpu(x), cpu(y));
        if beyond_noise(cx, cy, TIME_FLOOR_NS) {
            c.push(
                cat,
                "cpu time",
                Some(fmt_ns(cx)),
                Some(fmt_ns(cy)),
                ratio_line(cx, cy),
            );
        }
        let (mx, my) = (x.max_rss_kib, y.max_rss_kib);
        if beyond_noise(mx, my, RSS_FLOOR_KIB) {
            c.push(
                cat,
                "max rss",
                Some(fmt_bytes(mx.saturating_mul(1024))),
                Some(fmt_bytes(my.saturating_mul(1024))),
                ratio_line(mx, my),
            );
        }
    }
}

fn output_size(c: &mut Collector, a: &Run, b: &Run) {
    let cat = Category::OutputSize;
    let (x, y) = (&a.output, &b.output);
    for (key, vx, vy) in [
        ("stdout bytes", x.stdout_bytes, y.stdout_bytes),
        ("stderr bytes", x.stderr_bytes, y.stderr_bytes),
        ("lines", x.lines, y.lines),
        ("dropped bytes", x.dropped_bytes, y.dropped_bytes),
    ] {
        c.value(cat, key, &vx.to_string(), &vy.to_string());
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// One line removed from A or added in B, with its 1-based position in its
/// own sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit<'s> {
    Removed(usize, &'s str),
    Added(usize, &'s str),
}

/// The lines removed from `a` and added in `b`, in reading order, by the
/// longest common subsequence of the part between the common prefix and
/// suffix.
fn line_edits<'s>(a: &[&'s str], b: &[&'s str]) -> Vec<Edit<'s>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let ma = &a[prefix..a.len() - suffix];
    let mb = &b[prefix..b.len() - suffix];
    let (n, m) = (ma.len(), mb.len());
    let mut edits = Vec::new();
    if n.saturating_mul(m) > MAX_LCS_CELLS {
        edits.extend(
            ma.iter()
                .enumerate()
                .map(|(i, s)| Edit::Removed(prefix + i + 1, s)),
        );
        edits.extend(
            mb.iter()
                .enumerate()
                .map(|(j, s)| Edit::Added(prefix + j + 1, s)),
        );
        return edits;
    }
    // lcs[i * (m + 1) + j]: length of the longest common subsequence of
    // ma[i..] and mb[j..].
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if ma[i] == mb[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && ma[i] == mb[j] {
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            edits.push(Edit::Removed(prefix + i + 1, ma[i]));
            i += 1;
        } else {
            edits.push(Edit::Added(prefix + j + 1, mb[j]));
            j += 1;
        }
    }
    edits
}

/// Edits as `- <where> text` / `+ <where> text` lines, capped at
/// [`MAX_DETAIL_LINES`].
fn edits_to_lines(edits: &[Edit<'_>], position: impl Fn(usize) -> String) -> Vec<String> {
    let mut lines: Vec<String> = edits
        .iter()
        .take(MAX_DETAIL_LINES)
        .map(|e| match *e {
            Edit::Removed(n, s) => format!("- {} {s}", position(n)),
            Edit::Added(n, s) => format!("+ {} {s}", position(n)),
        })
        .collect();
    if edits.len() > MAX_DETAIL_LINES {
        lines.push(format!(
            "... {} more changed lines",
            edits.len() - MAX_DETAIL_LINES
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        HostInfo, OsInfo, OutputSummary, RunState, Rusage, Timestamp, UserInfo, redacted_marker,
    };

    const SEC: i64 = 1_000_000_000;

    /// A finished, fully populated run: every part that `diff` compares has
    /// a value, so that changing any one of them is visible.
    fn base_run() -> Run {
        let mut r = Run::new(
            Uuid::now_v7(),
            "train".into(),
            Timestamp::from_nanos(1_800_000_000 * SEC),
        );
        r.state = RunState::Succeeded;
        r.ended = Some(Timestamp::from_nanos(1_800_000_010 * SEC));
        r.exit = Some(ExitStatus {
            code: Some(0),
            ..Default::default()
        });
        r.argv = vec!["python3".into(), "train.py".into(), "--lr=0.1".into()];
        r.cwd = "/home/ada/proj".into();
        r.pid = 4242;
        r.stdin = "tty".into();
        r.host = HostInfo {
            hostname: "node1".into(),
            fqdn: "node1.cluster".into(),
            ips: vec!["10.0.0.1".into()],
        };
        r.user = UserInfo {
            name: "ada".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
        };
        r.env = BTreeMap::from([
            ("HOME".into(), "/home/ada".into()),
            (
                "PATH".into(),
                "/usr/local/bin:/usr/bin:/bin:/home/ada/.local/bin".into(),
            ),
            ("API_TOKEN".into(), redacted_marker("aaaa1111")),
        ]);
        r.config_files = vec![FileRecord {
            path: "conf.toml".into(),
            size: Some(20),
            sha256: Some("c0".repeat(32)),
            content: Some("[train]\nlr = 0.1\nepochs = 3\n".into()),
            error: None,
        }];
        r.inputs = vec![file("data.csv", "d1")];
        r.outputs = vec![file("model.bin", "e1")];
        r.fingerprint = Some("f1".repeat(32));
        r.rusage = Some(Rusage {
            user_us: 2_000_000,
            system_us: 500_000,
            max_rss_kib: 100_000,
            ..Default::default()
        });
        r.output = OutputSummary {
            stdout_bytes: 100,
            stderr_bytes: 0,
            lines: 4,
            ..Default::default()
        };
        r
    }

    fn file(path: &str, hash_byte: &str) -> FileRecord {
        FileRecord {
            path: path.into(),
            size: Some(1000),
            sha256: Some(hash_byte.repeat(32)),
            content: None,
            error: None,
        }
    }

    fn base_fingerprint() -> Fingerprint {
        Fingerprint {
            os: OsInfo {
                id: "debian".into(),
                version: "12".into(),
                pretty: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-27-amd64".into(),
                arch: "x86_64".into(),
            },
            cpu_model: "AMD EPYC 7B13".into(),
            cpu_count: 2,
            memory_bytes: 8 << 30,
            libc: "glibc 2.36".into(),
            executable: Some(file("/usr/bin/python3.11", "ab")),
            libraries: vec![Library {
                path: "/lib/x86_64-linux-gnu/libssl.so.3".into(),
                version: Some("3.0.15".into()),
            }],
            python: Some(PythonEnv {
                executable: "/usr/bin/python3.11".into(),
                version: "3.11.2".into(),
                prefix: "/usr".into(),
                packages: BTreeMap::from([
                    ("numpy".into(), "1.26.4".into()),
                    ("requests".into(), "2.31.0".into()),
                ]),
            }),
            tools: BTreeMap::from([("gcc".into(), "gcc 12.2.0".into())]),
            git: Some(GitState {
                root: "/home/ada/proj".into(),
                commit: "1".repeat(40),
                branch: Some("main".into()),
                remote: None,
                dirty: false,
                diff_sha256: None,
            }),
            variables: BTreeMap::new(),
        }
    }

    /// `b` is `a` recorded again: other id, times and pid, same everything.
    fn rerun(a: &Run) -> Run {
        let mut b = a.clone();
        b.id = Uuid::now_v7();
        b.started = Timestamp::from_nanos(a.started.as_nanos() + 3600 * SEC);
        b.ended = a
            .ended
            .map(|e| Timestamp::from_nanos(e.as_nanos() + 3600 * SEC));
        b.pid = 9999;
        b
    }

    fn keys(d: &RunDiff) -> BTreeSet<(Category, String)> {
        d.differences
            .iter()
            .map(|x| (x.category, x.key.clone()))
            .collect()
    }

    fn find<'d>(d: &'d RunDiff, cat: Category, key: &str) -> &'d Difference {
        d.differences
            .iter()
            .find(|x| x.category == cat && x.key == key)
            .unwrap_or_else(|| panic!("no {cat:?} difference `{key}` in {d:#?}"))
    }

    #[test]
    fn node_conditions_notable_in_one_run_only_are_told_with_the_node() {
        use crate::conditions::{NodeConditions, Stall};
        use crate::health::Reading;
        let quiet = NodeConditions {
            window_ns: 100 * SEC as u64,
            stalls: Reading::Ok {
                value: vec![Stall {
                    resource: "memory".into(),
                    some_us: 0,
                    full_us: None,
                }],
            },
            throttle_events: Reading::Ok { value: 0 },
            io_errors: Reading::Ok { value: vec![] },
            oom_kills: Reading::Ok { value: 0 },
            cpu_freq: Reading::unavailable("no cpufreq"),
        };
        let mut sick = quiet.clone();
        sick.stalls = Reading::Ok {
            value: vec![Stall {
                resource: "memory".into(),
                some_us: 12_300_000,
                full_us: None,
            }],
        };
        sick.throttle_events = Reading::Ok { value: 37 };
        let mut a = base_run();
        a.host.hostname = "node-7".into();
        a.node = Some(quiet);
        let mut b = rerun(&a);
        b.node = Some(sick);
        let d = diff(&a, None, &b, None);
        let mem = find(&d, Category::Node, "memory pressure");
        assert_eq!(mem.a.as_deref(), Some("nothing notable"));
        assert_eq!(
            mem.detail,
            ["node-7 was under memory pressure during B (12.3 s stalled), not during A"]
        );
        let t = find(&d, Category::Node, "throttling");
        assert_eq!(
            t.detail,
            ["CPU throttled during B (37 times on node-7), not during A"]
        );
        assert!(d.summary().contains("node (2)"), "{}", d.summary());
        // Symmetric: the other way round, A is the sick one.
        let r = diff(&b, None, &a, None);
        assert!(
            find(&r, Category::Node, "throttling").detail[0].contains("during A (37 times"),
            "{r:#?}"
        );
        // Without conditions recorded for A, the sentence says so.
        a.node = None;
        let d = diff(&a, None, &b, None);
        let t = find(&d, Category::Node, "throttling");
        assert_eq!(t.a.as_deref(), Some("not recorded"));
        assert!(t.detail[0].ends_with("(not recorded for A)"), "{t:?}");
        // Notable in both (or neither): nothing to tell.
        a.node = b.node.clone();
        assert!(diff(&a, None, &b, None).is_empty());
    }

    #[test]
    fn identical_runs_and_reruns_have_no_differences() {
        let a = base_run();
        let fp = base_fingerprint();
        assert!(diff(&a, Some(&fp), &a, Some(&fp)).is_empty());
        let d = diff(&a, Some(&fp), &rerun(&a), Some(&fp));
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.summary(), "no differences");
        assert!(d.render_text().starts_with("no differences\n"));
    }

    #[test]
    fn small_resource_changes_are_noise() {
        let a = base_run();
        let mut b = rerun(&a);
        // 10 s -> 13 s, CPU 2.5 s -> 3.5 s, RSS 100 MB -> 140 MB: all < 1.5x.
        b.ended = Some(Timestamp::from_nanos(b.started.as_nanos() + 13 * SEC));
        let r = b.rusage.as_mut().unwrap();
        r.user_us = 3_000_000;
        r.max_rss_kib = 140_000;
        assert!(diff(&a, None, &b, None).is_empty());
        // 2x, but tiny in absolute terms: a 20 ms job taking 40 ms.
        let mut small_a = a.clone();
        small_a.ended = Some(Timestamp::from_nanos(a.started.as_nanos() + 20_000_000));
        let mut small_b = small_a.clone();
        small_b.ended = Some(Timestamp::from_nanos(a.started.as_nanos() + 40_000_000));
        assert!(diff(&small_a, None, &small_b, None).is_empty());
    }

    /// One mutation per category; each must be reported under that category.
    #[test]
    fn every_category_is_detected() {
        type Mutation = (Category, &'static str, fn(&mut Run, &mut Fingerprint));
        let cases: Vec<Mutation> = vec![
            (Category::Exit, "status", |r, _| {
                r.state = RunState::Killed;
                r.exit = Some(ExitStatus {
                    code: None,
                    signal: Some(9),
                    signal_name: Some("SIGKILL".into()),
                    core_dumped: false,
                });
            }),
            (Category::Exception, "exception", |r, _| {
                r.exception = Some(Exception {
                    language: "python".into(),
                    kind: "ValueError".into(),
                    message: "bad lr".into(),
                    frames: Vec::new(),
                    causes: Vec::new(),
                    fingerprint: "x1".into(),
                });
            }),
            (Category::Args, "argv", |r, _| r.argv[2] = "--lr=0.2".into()),
            (Category::Cwd, "cwd", |r, _| r.cwd = "/tmp".into()),
            (Category::User, "uid", |r, _| r.user.uid = 0),
            (Category::User, "groups", |r, _| r.user.groups.push(4)),
            (Category::Host, "hostname", |r, _| {
                r.host.hostname = "node2".into()
            }),
            (Category::Host, "ips", |r, _| {
                r.host.ips = vec!["10.0.0.2".into()]
            }),
            (Category::Environment, "HOME", |r, _| {
                r.env.insert("HOME".into(), "/root".into());
            }),
            (Category::Environment, "NEW", |r, _| {
                r.env.insert("NEW".into(), "1".into());
            }),
            (Category::Config, "conf.toml", |r, _| {
                r.config_files[0].sha256 = Some("c1".repeat(32));
                r.config_files[0].content = Some("[train]\nlr = 0.2\nepochs = 3\n".into());
            }),
            (Category::Data, "input data.csv", |r, _| {
                r.inputs[0] = file("data.csv", "d2")
            }),
            (Category::Data, "same inputs, different outputs", |r, _| {
                r.outputs[0] = file("model.bin", "e2")
            }),
            (Category::Executable, "content", |_, f| {
                f.executable = Some(file("/usr/bin/python3.11", "cd"))
            }),
            (Category::Git, "commit", |_, f| {
                f.git.as_mut().unwrap().commit = "2".repeat(40)
            }),
            (Category::Git, "dirty", |_, f| {
                let g = f.git.as_mut().unwrap();
                g.dirty = true;
                g.diff_sha256 = Some("99".repeat(32));
            }),
            (Category::Git, "branch", |_, f| {
                f.git.as_mut().unwrap().branch = None
            }),
            (Category::Packages, "numpy", |_, f| {
                let p = f.python.as_mut().unwrap();
                p.packages.insert("numpy".into(), "2.0.0".into());
            }),
            (Category::Packages, "torch", |_, f| {
                let p = f.python.as_mut().unwrap();
                p.packages.insert("torch".into(), "2.5.1".into());
            }),
            (Category::Packages, "python", |_, f| {
                f.python.as_mut().unwrap().version = "3.12.1".into()
            }),
            (Category::Libraries, "libssl.so.3", |_, f| {
                f.libraries[0].version = Some("3.0.16".into())
            }),
            (Category::Libraries, "libz.so.1", |_, f| {
                f.libraries.push(Library {
                    path: "/lib/libz.so.1".into(),
                    version: None,
                })
            }),
            (Category::Platform, "kernel", |_, f| {
                f.os.kernel = "6.12.0".into()
            }),
            (Category::Platform, "arch", |_, f| {
                f.os.arch = "aarch64".into()
            }),
            (Category::Platform, "libc", |_, f| {
                f.libc = "musl 1.2.4".into()
            }),
            (Category::Platform, "cpu model", |_, f| {
                f.cpu_model = "Xeon".into()
            }),
            (Category::Platform, "cpu count", |_, f| f.cpu_count = 64),
            (Category::Tools, "gcc", |_, f| {
                f.tools.insert("gcc".into(), "gcc 14.2.0".into());
            }),
            (Category::Name, "name", |r, _| r.name = "train-v2".into()),
            (Category::Tags, "seed", |r, _| {
                r.tags.insert("seed".into(), "7".into());
            }),
            (Category::Stdio, "stdin", |r, _| r.stdin = "pipe".into()),
            (Category::Resources, "duration", |r, _| {
                r.ended = Some(Timestamp::from_nanos(r.started.as_nanos() + 60 * SEC))
            }),
            (Category::Resources, "cpu time", |r, _| {
                r.rusage.as_mut().unwrap().user_us = 20_000_000
            }),
            (Category::Resources, "max rss", |r, _| {
                r.rusage.as_mut().unwrap().max_rss_kib = 1_000_000
            }),
            (Category::OutputSize, "stderr bytes", |r, _| {
                r.output.stderr_bytes = 512
            }),
        ];
        let a = base_run();
        let fa = base_fingerprint();
        for (cat, key, mutate) in cases {
            let mut b = rerun(&a);
            let mut fb = fa.clone();
            mutate(&mut b, &mut fb);
            if fb != fa {
                b.fingerprint = Some(fb.content_hash());
            }
            let d = diff(&a, Some(&fa), &b, Some(&fb));
            let found = find(&d, cat, key);
            assert_ne!(found.a, found.b, "{cat:?} {key}");
            // Nothing else leaks in: each mutation touches one item, except
            // the dirty flag, which brings its diff hash along.
            let expected = if key == "dirty" { 2 } else { 1 };
            assert_eq!(d.differences.len(), expected, "{cat:?} {key}: {d:#?}");
            assert!(d.summary().contains(cat.as_str()), "{}", d.summary());
            assert!(d.render_text().contains(key), "{}", d.render_text());
        }
    }

    #[test]
    fn fingerprint_hash_alone_is_reported_without_details() {
        let a = base_run();
        let mut b = rerun(&a);
        b.fingerprint = Some("f2".repeat(32));
        let d = diff(&a, None, &b, None);
        let f = find(&d, Category::Fingerprint, "hash");
        assert_eq!(f.a.as_deref(), Some("f1f1f1f1f1f1f1f1"));
        assert_eq!(f.b.as_deref(), Some("f2f2f2f2f2f2f2f2"));
        // Equal hashes mean the same software, whatever the caller passes.
        let mut other = base_fingerprint();
        other.libc = "glibc 2.40".into();
        let d = diff(&a, Some(&base_fingerprint()), &rerun(&a), Some(&other));
        assert!(d.is_empty(), "{d:#?}");
    }

    #[test]
    fn ordering_puts_exit_before_environment_before_packages_before_resources() {
        let a = base_run();
        let fa = base_fingerprint();
        let mut b = rerun(&a);
        let mut fb = fa.clone();
        // Mutations applied in the reverse of the expected order.
        b.rusage.as_mut().unwrap().max_rss_kib = 900_000;
        fb.python
            .as_mut()
            .unwrap()
            .packages
            .insert("numpy".into(), "2.1.0".into());
        b.fingerprint = Some(fb.content_hash());
        b.env.insert("OMP_NUM_THREADS".into(), "1".into());
        b.exception = Some(Exception {
            kind: "MemoryError".into(),
            ..Default::default()
        });
        b.state = RunState::Failed;
        b.exit = Some(ExitStatus {
            code: Some(1),
            ..Default::default()
        });
        let d = diff(&a, Some(&fa), &b, Some(&fb));
        let cats: Vec<Category> = d.differences.iter().map(|x| x.category).collect();
        assert_eq!(
            cats,
            [
                Category::Exit,
                Category::Exception,
                Category::Environment,
                Category::Packages,
                Category::Resources
            ]
        );
        let ranks: Vec<u32> = d.differences.iter().map(|x| x.rank).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert_eq!(
            d.summary(),
            "runs differ in: exit, exception, environment, packages, resources"
        );
        let text = d.render_text();
        let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} not in {text}"));
        assert!(pos("\nexit\n") < pos("\nexception\n"));
        assert!(pos("\nexception\n") < pos("\nenvironment\n"));
        assert!(pos("\nenvironment\n") < pos("\npackages\n"));
        assert!(pos("\npackages\n") < pos("\nresources\n"));
        assert!(
            text.contains("status: succeeded (exit 0) -> failed (exit 1)"),
            "{text}"
        );
        assert!(text.contains("numpy: 1.26.4 -> 2.1.0"), "{text}");
    }

    #[test]
    fn summary_counts_items_per_category() {
        let a = base_run();
        let mut b = rerun(&a);
        b.state = RunState::Failed;
        for (k, v) in [("X", "1"), ("Y", "2"), ("HOME", "/root")] {
            b.env.insert(k.into(), v.into());
        }
        let d = diff(&a, None, &b, None);
        assert_eq!(d.summary(), "runs differ in: exit, environment (3)");
    }

    #[test]
    fn redacted_values_show_only_their_markers() {
        let a = base_run();
        let mut b = rerun(&a);
        b.env
            .insert("API_TOKEN".into(), redacted_marker("bbbb2222"));
        let d = diff(&a, None, &b, None);
        let t = find(&d, Category::Environment, "API_TOKEN");
        assert_eq!(t.a.as_deref(), Some("[redacted:aaaa1111]"));
        assert_eq!(t.b.as_deref(), Some("[redacted:bbbb2222]"));
        assert_eq!(t.detail, ["changed (secret)"]);
        let text = d.render_text();
        assert!(
            text.contains(
                "API_TOKEN: [redacted:aaaa1111] -> [redacted:bbbb2222]  (changed (secret))"
            ),
            "{text}"
        );
        assert!(text.contains("changed (secret)"));

        // Equal markers are equal secrets: no difference.
        assert!(diff(&a, None, &rerun(&a), None).is_empty());

        // One run stored the value in the clear (another redaction rule):
        // it is hidden, in the text and in the JSON alike.
        let mut c = rerun(&a);
        c.env.insert("API_TOKEN".into(), "hunter2-plaintext".into());
        for d in [diff(&a, None, &c, None), diff(&c, None, &a, None)] {
            let text = d.render_text();
            let json = serde_json::to_string(&d).unwrap();
            for out in [&text, &json] {
                assert!(!out.contains("hunter2"), "{out}");
                assert!(out.contains("[redacted:aaaa1111]"), "{out}");
                assert!(out.contains("changed (secret)"), "{out}");
            }
        }
    }

    #[test]
    fn same_inputs_different_outputs_is_the_headline_data_difference() {
        let mut a = base_run();
        a.inputs.push(file("labels.csv", "d9"));
        a.outputs.push(file("metrics.json", "e8"));
        let mut b = rerun(&a);
        b.outputs[0] = file("model.bin", "e2");
        b.env.insert("HOME".into(), "/root".into());
        let d = diff(&a, None, &b, None);
        let data: Vec<&Difference> = d
            .differences
            .iter()
            .filter(|x| x.category == Category::Data)
            .collect();
        assert_eq!(data.len(), 1, "{d:#?}");
        assert_eq!(data[0].key, "same inputs, different outputs");
        assert!(
            data[0]
                .a
                .as_deref()
                .unwrap()
                .contains("model.bin sha256 e1e1")
        );
        assert!(
            data[0]
                .b
                .as_deref()
                .unwrap()
                .contains("model.bin sha256 e2e2")
        );
        assert!(!data[0].a.as_deref().unwrap().contains("metrics.json"));
        let data_headline_rank = data[0].rank;
        assert!(d.render_text().contains("same inputs, different outputs"));

        // Different inputs: no such claim.
        b.inputs[1] = file("labels.csv", "da");
        let d = diff(&a, None, &b, None);
        assert!(
            d.differences
                .iter()
                .all(|x| x.key != "same inputs, different outputs")
        );
        let input = find(&d, Category::Data, "input labels.csv");
        // Ordinary data items rank after the headline would have.
        assert!(input.rank > data_headline_rank);
        find(&d, Category::Data, "output model.bin");

        // No inputs declared at all: "same inputs" would be unfounded.
        let mut a2 = base_run();
        a2.inputs.clear();
        let mut b2 = rerun(&a2);
        b2.outputs[0] = file("model.bin", "e2");
        let d = diff(&a2, None, &b2, None);
        assert_eq!(keys(&d).len(), 1);
        find(&d, Category::Data, "output model.bin");
    }

    #[test]
    fn config_files_get_a_line_diff() {
        let a = base_run();
        let mut b = rerun(&a);
        b.config_files[0] = FileRecord {
            sha256: Some("c1".repeat(32)),
            content: Some("[train]\nlr = 0.2\nepochs = 3\nseed = 1\n".into()),
            size: Some(29),
            ..b.config_files[0].clone()
        };
        b.config_files.push(file("extra.yaml", "aa"));
        let d = diff(&a, None, &b, None);
        let c = find(&d, Category::Config, "conf.toml");
        assert_eq!(
            c.detail,
            ["- 2: lr = 0.1", "+ 2: lr = 0.2", "+ 4: seed = 1"]
        );
        let added = find(&d, Category::Config, "extra.yaml");
        assert_eq!(added.a, None);
        assert!(added.b.as_deref().unwrap().starts_with("sha256 aaaa"));
        let text = d.render_text();
        assert!(
            text.contains("    - 2: lr = 0.1\n    + 2: lr = 0.2\n"),
            "{text}"
        );
        assert!(
            text.contains("extra.yaml: (absent) -> sha256 aaaa"),
            "{text}"
        );
    }

    #[test]
    fn args_and_search_paths_name_what_changed() {
        let a = base_run();
        let mut b = rerun(&a);
        b.argv.insert(2, "--seed=1".into());
        b.argv.push("it's".into());
        b.env.insert(
            "PATH".into(),
            "/opt/conda/bin:/usr/local/bin:/usr/bin:/bin:/home/ada/.local/bin".into(),
        );
        let d = diff(&a, None, &b, None);
        let argv = find(&d, Category::Args, "argv");
        assert_eq!(
            argv.b.as_deref(),
            Some(r"python3 train.py --seed=1 --lr=0.1 'it'\''s'")
        );
        assert_eq!(argv.detail, ["+ [2] --seed=1", "+ [4] it's"]);
        let path = find(&d, Category::Environment, "PATH");
        assert_eq!(path.detail, ["+ entry 1 /opt/conda/bin"]);
    }

    #[test]
    fn text_report_escapes_control_characters_and_cuts_long_values() {
        let a = base_run();
        let mut b = rerun(&a);
        b.env.insert("EVIL".into(), "\x1b[2Jgone\nnext".into());
        b.env.insert("BIG".into(), "x".repeat(10_000));
        let d = diff(&a, None, &b, None);
        let text = d.render_text();
        assert!(!text.contains('\x1b'));
        assert!(text.contains(r"\u{1b}[2Jgone\nnext"), "{text}");
        assert!(
            text.contains("(9600 more characters, see --json)"),
            "{text}"
        );
        assert!(text.len() < 2000);
        let json = serde_json::to_value(&d).unwrap();
        let big = &json["differences"][0];
        assert_eq!(big["key"], "BIG");
        assert_eq!(big["category"], "environment");
        assert_eq!(big["a"], serde_json::Value::Null);
        assert_eq!(big["b"].as_str().unwrap().len(), 10_000);
    }

    #[test]
    fn line_edits_find_a_minimal_script() {
        let a = ["a", "b", "c", "d", "e"];
        let b = ["a", "x", "c", "e", "f"];
        let e = line_edits(&a, &b);
        assert_eq!(
            e,
            [
                Edit::Removed(2, "b"),
                Edit::Added(2, "x"),
                Edit::Removed(4, "d"),
                Edit::Added(5, "f")
            ]
        );
        assert!(line_edits(&a, &a).is_empty());
        assert_eq!(line_edits(&[], &["z"]), [Edit::Added(1, "z")]);
    }

    mod prop {
        use super::*;
        use proptest::collection::{btree_map, vec};
        use proptest::prelude::*;

        fn env_value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z/:]{0,12}",
                "[0-9a-f]{4}".prop_map(|h| redacted_marker(&h)),
            ]
        }

        fn files() -> impl Strategy<Value = Vec<FileRecord>> {
            vec(
                (
                    "[ab]\\.txt",
                    "[0-9a]{1,2}",
                    proptest::option::of("[xy\n]{0,6}"),
                )
                    .prop_map(|(path, h, content)| FileRecord {
                        path,
                        size: Some(h.len() as u64),
                        sha256: Some(h),
                        content,
                        error: None,
                    }),
                0..3,
            )
        }

        prop_compose! {
            fn arb_run()(
                name in "[a-c]{1,3}",
                argv in vec("[a-z=-]{0,4}", 0..5),
                cwd in "/[a-b]{0,2}",
                env in btree_map("[A-D]", env_value(), 0..5),
                tags in btree_map("[k-m]", "[0-2]", 0..3),
                code in proptest::option::of(0i32..3),
                exc in proptest::option::of(("[A-C]", "[a-c ]{0,5}")),
                config_files in files(),
                inputs in files(),
                outputs in files(),
                fp in proptest::option::of("[0-9]{2}"),
                dur in 0i64..400_000_000,
                cpu in 0u64..400_000,
                rss in 0u64..20_000,
                stderr_bytes in 0u64..3,
                host in "[n-o]{1,2}",
            ) -> Run {
                let mut r = Run::new(Uuid::now_v7(), name, Timestamp::from_nanos(0));
                r.argv = argv;
                r.cwd = cwd;
                r.env = env;
                r.tags = tags;
                r.state = if code == Some(0) { RunState::Succeeded } else { RunState::Failed };
                r.exit = code.map(|c| ExitStatus { code: Some(c), ..Default::default() });
                r.exception = exc.map(|(kind, message)| Exception {
                    fingerprint: format!("{kind}{message}"),
                    kind,
                    message,
                    ..Default::default()
                });
                r.config_files = config_files;
                r.inputs = inputs;
                r.outputs = outputs;
                r.fingerprint = fp;
                r.ended = Some(Timestamp::from_nanos(dur));
                r.rusage = Some(Rusage { user_us: cpu, max_rss_kib: rss, ..Default::default() });
                r.output.stderr_bytes = stderr_bytes;
                r.host.hostname = host;
                r
            }
        }

        fn arb_fingerprint() -> impl Strategy<Value = Option<Fingerprint>> {
            proptest::option::of(
                (
                    btree_map("[p-r]", "[0-2]", 0..3),
                    vec("/lib/[a-b]\\.so", 0..3),
                    "[0-9]{1,2}",
                    any::<bool>(),
                )
                    .prop_map(|(packages, libs, commit, dirty)| Fingerprint {
                        python: Some(PythonEnv {
                            packages,
                            ..Default::default()
                        }),
                        libraries: libs
                            .into_iter()
                            .map(|path| Library {
                                path,
                                version: None,
                            })
                            .collect(),
                        git: Some(GitState {
                            commit,
                            dirty,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn a_run_does_not_differ_from_itself(a in arb_run(), fa in arb_fingerprint()) {
                let d = diff(&a, fa.as_ref(), &a, fa.as_ref());
                prop_assert!(d.is_empty(), "{:#?}", d);
                prop_assert!(d.render_text().starts_with("no differences\n"));
            }

            #[test]
            fn diff_is_symmetric_in_keys(
                a in arb_run(), fa in arb_fingerprint(),
                b in arb_run(), fb in arb_fingerprint(),
            ) {
                let ab = diff(&a, fa.as_ref(), &b, fb.as_ref());
                let ba = diff(&b, fb.as_ref(), &a, fa.as_ref());
                prop_assert_eq!(keys(&ab), keys(&ba));
                prop_assert_eq!(ab.differences.len(), ba.differences.len());
                for d in &ab.differences {
                    let twin = ba.differences.iter()
                        .find(|x| x.category == d.category && x.key == d.key)
                        .unwrap();
                    prop_assert_eq!(&d.a, &twin.b);
                    prop_assert_eq!(&d.b, &twin.a);
                }
                let ranks: Vec<u32> = ab.differences.iter().map(|x| x.rank).collect();
                prop_assert!(ranks.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
