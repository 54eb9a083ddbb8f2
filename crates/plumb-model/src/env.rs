//! Environments as flat lists of components, and drift across a fleet.
//!
//! A [`Fingerprint`] is a tree (the OS, the Python packages, the tools,
//! the libraries, ...); comparing many of them is easiest on a flat map
//! from a component's name to its version: [`components`]. The names read
//! as a user would say them: `kernel`, `libc`, `python`,
//! `python:numpy`, `tool:gcc`, `library:libssl.so.3`, and the variables a
//! node's agent reports, `env:OMP_NUM_THREADS`. Hardware (CPU
//! model and count, memory) is not a component: machines of one group may
//! differ there on purpose, and the software is what drifts.
//!
//! [`drift`] takes the components of many nodes and lists every component
//! whose version is not the same on all of them, with which nodes have
//! which version and which version most have (the majority, which is what
//! the others probably should have).
//!
//! ```
//! use plumb_model::env::drift;
//! use std::collections::BTreeMap;
//! let mk = |v: &str| BTreeMap::from([("python:numpy".to_string(), v.to_string())]);
//! let (old, new) = (mk("1.26.0"), mk("2.0.1"));
//! let d = drift(&[("a", &old), ("b", &old), ("c", &new)]);
//! assert_eq!(d.items.len(), 1);
//! assert_eq!(d.items[0].majority.as_deref(), Some("1.26.0"));
//! assert_eq!(d.drifted_nodes(), vec!["c"]);
//! ```

use crate::Fingerprint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Prefix of a Python distribution's component name.
pub const PYTHON_PACKAGE: &str = "python:";
/// Prefix of an extra tool's component name.
pub const TOOL: &str = "tool:";
/// Prefix of a shared library's component name.
pub const LIBRARY: &str = "library:";
/// Prefix of a reported environment variable's component name.
pub const VARIABLE: &str = "env:";

/// The software of a fingerprint as component name -> version.
pub fn components(fp: &Fingerprint) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: String, v: &str| {
        if !v.trim().is_empty() {
            m.insert(k, v.trim().to_string());
        }
    };
    let os = if fp.os.pretty.is_empty() {
        format!("{} {}", fp.os.id, fp.os.version)
    } else {
        fp.os.pretty.clone()
    };
    put("os".into(), &os);
    put("kernel".into(), &fp.os.kernel);
    put("arch".into(), &fp.os.arch);
    put("libc".into(), &fp.libc);
    if let Some(exe) = &fp.executable {
        let v = exe.sha256.as_deref().map(|h| &h[..h.len().min(12)]);
        put(format!("executable:{}", exe.path), v.unwrap_or("?"));
    }
    if let Some(py) = &fp.python {
        put("python".into(), &py.version);
        for (name, version) in &py.packages {
            put(
                format!("{PYTHON_PACKAGE}{}", normalize_package(name)),
                version,
            );
        }
    }
    for (name, version) in &fp.tools {
        put(format!("{TOOL}{name}"), version);
    }
    for lib in &fp.libraries {
        let file = lib.path.rsplit('/').next().unwrap_or(&lib.path);
        put(
            format!("{LIBRARY}{file}"),
            lib.version.as_deref().unwrap_or(&lib.path),
        );
    }
    if let Some(g) = &fp.git {
        let dirty = if g.dirty { " (dirty)" } else { "" };
        put("git".into(), &format!("{}{dirty}", g.commit));
    }
    for (name, value) in &fp.variables {
        // An empty value is a value: kept as `""` so it differs from unset.
        let v = if value.trim().is_empty() {
            format!("{value:?}")
        } else {
            value.clone()
        };
        put(format!("{VARIABLE}{name}"), &v);
    }
    m
}

/// A hash of a fingerprint's software only ([`components`]: no hardware),
/// so two nodes that differ only in CPU or memory hash equal. The node
/// list compares nodes by it; stored per node as its fingerprint arrives.
pub fn software_hash(fp: &Fingerprint) -> String {
    let json = serde_json::to_vec(&components(fp)).expect("components serialize");
    crate::sha256_hex(&json)
}

/// A Python distribution's name as PEP 503 compares them: lowercase, with
/// every run of `-`, `_` and `.` one `-`.
pub fn normalize_package(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Whether two versions are the same release: equal after dropping a
/// leading `v`, case, and trailing `.0` parts of the release number
/// (`1.26` is `1.26.0`, as PEP 440 says).
pub fn same_version(a: &str, b: &str) -> bool {
    fn norm(v: &str) -> String {
        let v = v.trim().to_ascii_lowercase();
        let v = v.strip_prefix('v').unwrap_or(&v).to_string();
        let end = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        let (release, rest) = v.split_at(end);
        let mut parts: Vec<&str> = release.split('.').collect();
        while parts.len() > 1 && parts.last().is_some_and(|p| p.chars().all(|c| c == '0')) {
            parts.pop();
        }
        format!("{}{rest}", parts.join("."))
    }
    a == b || norm(a) == norm(b)
}

/// A component whose version changed between two environments of one
/// node (or any two), as [`changes`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The component.
    pub component: String,
    /// Its version before (`None`: it was absent).
    pub before: Option<String>,
    /// Its version after (`None`: it is gone).
    pub after: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => write!(f, "{} {b} -> {a}", self.component),
            (None, Some(a)) => write!(f, "{} added ({a})", self.component),
            (Some(b), None) => write!(f, "{} removed (was {b})", self.component),
            (None, None) => write!(f, "{}", self.component),
        }
    }
}

/// The components that differ between `before` and `after`, by name:
/// versions that are the same release ([`same_version`]) are not a change.
pub fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<Change> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter_map(|c| {
            let (b, a) = (before.get(c), after.get(c));
            let same = match (b, a) {
                (Some(b), Some(a)) => same_version(b, a),
                _ => false,
            };
            (!same).then(|| Change {
                component: c.clone(),
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}

/// The nodes that have one version of a component (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The version; `None` for the nodes that lack the component.
    pub version: Option<String>,
    /// The nodes with it, by name.
    pub nodes: Vec<String>,
}

/// A component whose version is not the same on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftItem {
    /// The component's name.
    pub component: String,
    /// Whether one version (the first of `versions`) has more nodes than
    /// any other.
    pub has_majority: bool,
    /// That version (`None` on a tie, or when most nodes lack the
    /// component).
    pub majority: Option<String>,
    /// Every version seen, most nodes first.
    pub versions: Vec<Version>,
}

impl DriftItem {
    /// The nodes that do not have the majority version (all of them on a
    /// tie).
    pub fn outliers(&self) -> impl Iterator<Item = &str> {
        let skip = usize::from(self.has_majority);
        self.versions
            .iter()
            .skip(skip)
            .flat_map(|v| v.nodes.iter().map(String::as_str))
    }
}

/// One component where a node differs from most of its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The component.
    pub component: String,
    /// The node's version (`None`: it lacks it).
    pub version: Option<String>,
    /// The version most nodes of the group have (`None`: they lack it, or
    /// there is no majority).
    pub majority: Option<String>,
}

/// What [`drift`] found over a group of nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The nodes compared, by name.
    pub nodes: Vec<String>,
    /// Components that differ, by name.
    pub items: Vec<DriftItem>,
}

impl Drift {
    /// The nodes that differ from the majority in at least one component,
    /// by name.
    pub fn drifted_nodes(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.items.iter().flat_map(|i| i.outliers()).collect();
        set.into_iter().collect()
    }

    /// [`Drift::of_node`] as owned values.
    pub fn differences(&self, node: &str) -> Vec<Difference> {
        self.of_node(node)
            .into_iter()
            .map(|(c, v, m)| Difference {
                component: c.to_string(),
                version: v.map(str::to_string),
                majority: m.map(str::to_string),
            })
            .collect()
    }

    /// For one node: the components where it differs from the majority,
    /// with its version and the majority's.
    pub fn of_node(&self, node: &str) -> Vec<(&str, Option<&str>, Option<&str>)> {
        self.items
            .iter()
            .filter(|i| i.outliers().any(|n| n == node))
            .map(|i| {
                let mine = i
                    .versions
                    .iter()
                    .find(|v| v.nodes.iter().any(|n| n == node))
                    .and_then(|v| v.version.as_deref());
                (i.component.as_str(), mine, i.majority.as_deref())
            })
            .collect()
    }
}

/// Every component whose version differs between `nodes` (name and
/// components; a node lacking a component others have counts as a version
/// of its own). Nodes with equal components are grouped first (by a hash
/// of their components, then compared once), so the work is in the
/// distinct environments, not in the number of nodes.
pub fn drift(nodes: &[(&str, &BTreeMap<String, String>)]) -> Drift {
    use std::hash::{Hash, Hasher};
    type Group<'a> = (u64, &'a BTreeMap<String, String>, Vec<&'a str>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (name, c) in nodes {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        c.hash(&mut h);
        let h = h.finish();
        match groups
            .iter_mut()
            .find(|(gh, gc, _)| *gh == h && (std::ptr::eq(*gc, *c) || *gc == *c))
        {
            Some((_, _, names)) => names.push(name),
            None => groups.push((h, c, vec![name])),
        }
    }
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for (_, c, _) in &groups {
        keys.extend(c.keys().map(String::as_str));
    }
    let mut items = Vec::new();
    for key in keys {
        let mut by_version: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
        for (_, c, names) in &groups {
            by_version
                .entry(c.get(key).map(String::as_str))
                .or_default()
                .extend(names.iter().copied());
        }
        if by_version.len() < 2 {
            continue;
        }
        let mut versions: Vec<Version> = by_version
            .into_iter()
            .map(|(v, mut names)| {
                names.sort_unstable();
                Version {
                    version: v.map(str::to_string),
                    nodes: names.into_iter().map(str::to_string).collect(),
                }
            })
            .collect();
        versions.sort_by(|a, b| {
            b.nodes
                .len()
                .cmp(&a.nodes.len())
                .then_with(|| a.version.cmp(&b.version))
        });
        let has_majority = versions[0].nodes.len() > versions[1].nodes.len();
        items.push(DriftItem {
            component: key.to_string(),
            has_majority,
            majority: versions[0].version.clone().filter(|_| has_majority),
            versions,
        });
    }
    let mut names: Vec<String> = nodes.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    Drift {
        nodes: names,
        items,
    }
}

/// Renders a drift report as text: one block per component, its versions
/// with their nodes (at most `max_nodes` named per version).
pub fn render_drift(d: &Drift, max_nodes: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if d.items.is_empty() {
        let _ = writeln!(
            out,
            "no drift: {} node{} with the same software",
            d.nodes.len(),
            if d.nodes.len() == 1 { "" } else { "s" }
        );
        return out;
    }
    let drifted = d.drifted_nodes();
    let _ = writeln!(
        out,
        "{} component{} across {} nodes; {} node{} from the majority: {}",
        d.items.len(),
        if d.items.len() == 1 {
            " differs"
        } else {
            "s differ"
        },
        d.nodes.len(),
        drifted.len(),
        if drifted.len() == 1 {
            " differs"
        } else {
            "s differ"
        },
        list(&drifted, max_nodes),
    );
    for item in &d.items {
        let _ = writeln!(out, "\n{}", crate::text::escape_controls(&item.component));
        for v in &item.versions {
            let label = v.version.as_deref().unwrap_or("(absent)");
            let mark = if item.has_majority && v.version == item.versions[0].version {
                "  (majority)"
            } else {
                ""
            };
            let names: Vec<&str> = v.nodes.iter().map(String::as_str).collect();
            let _ = writeln!(
                out,
                "  {:<24} {:>4} node{}: {}{mark}",
                crate::text::escape_controls(label),
                v.nodes.len(),
                if v.nodes.len() == 1 { " " } else { "s" },
                list(&names, max_nodes),
            );
        }
    }
    out
}

fn list(names: &[&str], max: usize) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(max)
        .map(|n| crate::text::escape_controls(n).into_owned())
        .collect();
    let more = names.len().saturating_sub(max);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reported_variables_are_components_and_drift_like_packages() {
        let with = |pairs: &[(&str, &str)]| {
            let fp = crate::Fingerprint {
                variables: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            super::components(&fp)
        };
        let a = with(&[("OMP_NUM_THREADS", "4"), ("EMPTY", "")]);
        assert_eq!(a["env:OMP_NUM_THREADS"], "4");
        assert_eq!(a["env:EMPTY"], "\"\"", "empty is not unset");
        let b = with(&[("OMP_NUM_THREADS", "8"), ("EMPTY", crate::VARIABLE_UNSET)]);
        let d = super::drift(&[("n1", &a), ("n2", &a), ("n3", &b)]);
        let names: Vec<&str> = d.items.iter().map(|i| i.component.as_str()).collect();
        assert_eq!(names, vec!["env:EMPTY", "env:OMP_NUM_THREADS"]);
        assert_eq!(d.items[1].majority.as_deref(), Some("4"));
        assert_eq!(d.drifted_nodes(), vec!["n3"]);
    }

    #[test]
    fn changes_name_upgrades_additions_and_removals_and_skip_equal_releases() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = m(&[
            ("python", "3.11.2"),
            ("python:numpy", "1.26"),
            ("tool:app", "1.0"),
        ]);
        let after = m(&[
            ("python", "3.11.2"),
            ("python:numpy", "2.0.1"),
            ("git", "2.39"),
            ("tool:app", "1.0.0"),
        ]);
        let found: Vec<String> = changes(&before, &after)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            found,
            vec!["git added (2.39)", "python:numpy 1.26 -> 2.0.1"]
        );
        let back: Vec<String> = changes(&after, &before)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            back,
            vec!["git removed (was 2.39)", "python:numpy 2.0.1 -> 1.26"]
        );
        assert!(changes(&before, &before).is_empty());
    }

    use super::*;
    use crate::{Library, PythonEnv};

    fn node(
        name: &'static str,
        pairs: &[(&str, &str)],
    ) -> (&'static str, BTreeMap<String, String>) {
        (
            name,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn drift_of(nodes: &[(&'static str, BTreeMap<String, String>)]) -> Drift {
        let refs: Vec<(&str, &BTreeMap<String, String>)> =
            nodes.iter().map(|(n, c)| (*n, c)).collect();
        drift(&refs)
    }

    #[test]
    fn components_flatten_a_fingerprint() {
        let mut fp = Fingerprint::default();
        fp.os.kernel = "6.1.0".into();
        fp.libc = "glibc 2.36".into();
        fp.cpu_count = 8;
        fp.python = Some(PythonEnv {
            version: "3.11.2".into(),
            packages: BTreeMap::from([("Typing_Extensions".into(), "4.8.0".into())]),
            ..Default::default()
        });
        fp.tools.insert("gcc".into(), "gcc 12.2".into());
        fp.libraries.push(Library {
            path: "/usr/lib/libssl.so.3".into(),
            version: Some("3.0.11".into()),
        });
        let c = components(&fp);
        assert_eq!(c["kernel"], "6.1.0");
        assert_eq!(c["libc"], "glibc 2.36");
        assert_eq!(c["python"], "3.11.2");
        assert_eq!(c["python:typing-extensions"], "4.8.0");
        assert_eq!(c["tool:gcc"], "gcc 12.2");
        assert_eq!(c["library:libssl.so.3"], "3.0.11");
        assert!(!c.keys().any(|k| k.contains("cpu")), "{c:?}");
    }

    #[test]
    fn names_and_versions_compare_as_pep_503_and_440_say() {
        assert_eq!(normalize_package("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize_package("-x"), "x");
        assert!(same_version("1.26", "1.26.0"));
        assert!(same_version("v2.0", "2"));
        assert!(same_version("1.0rc1", "1.0.0rc1"));
        assert!(!same_version("1.26.1", "1.26.0"));
        assert!(!same_version("10", "1"));
        assert!(!same_version("1.0", "1.0.post1"));
    }

    #[test]
    fn drift_names_versions_nodes_and_the_majority() {
        let nodes = vec![
            node("a", &[("python:numpy", "1.26.0"), ("kernel", "6.1")]),
            node("b", &[("python:numpy", "1.26.0"), ("kernel", "6.1")]),
            node(
                "c",
                &[
                    ("python:numpy", "2.0.1"),
                    ("kernel", "6.1"),
                    ("python:x", "1"),
                ],
            ),
        ];
        let d = drift_of(&nodes);
        let names: Vec<&str> = d.items.iter().map(|i| i.component.as_str()).collect();
        assert_eq!(names, ["python:numpy", "python:x"]);
        assert_eq!(d.items[0].majority.as_deref(), Some("1.26.0"));
        assert_eq!(d.items[0].versions[0].nodes, ["a", "b"]);
        assert_eq!(d.items[0].versions[1].nodes, ["c"]);
        // Most nodes lack python:x: the majority is its absence.
        assert!(d.items[1].has_majority);
        assert_eq!(d.items[1].majority, None);
        assert_eq!(d.items[1].versions[0].version, None);
        assert_eq!(d.drifted_nodes(), ["c"]);
        assert_eq!(
            d.of_node("c"),
            vec![
                ("python:numpy", Some("2.0.1"), Some("1.26.0")),
                ("python:x", Some("1"), None)
            ]
        );
        assert!(d.of_node("a").is_empty());
        let text = render_drift(&d, 5);
        assert!(text.contains("python:numpy"), "{text}");
        assert!(text.contains("(majority)"), "{text}");
        assert!(
            text.contains(
                "2 components differ across 3 nodes; 1 node differs from the majority: c"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_tie_has_no_majority_and_equal_nodes_no_drift() {
        let d = drift_of(&[node("a", &[("k", "1")]), node("b", &[("k", "2")])]);
        assert!(!d.items[0].has_majority);
        assert_eq!(d.drifted_nodes(), ["a", "b"]);
        let same = drift_of(&[node("a", &[("k", "1")]), node("b", &[("k", "1")])]);
        assert!(same.items.is_empty());
        assert!(render_drift(&same, 5).starts_with("no drift: 2 nodes"));
        assert!(drift(&[]).items.is_empty());
    }
}
