//! `plumb env`: this host's software as the recorder captures it, a node's
//! from the collector, the drift across nodes, the difference between two
//! environments, and checks against a lock file.

use crate::config::Config;
use crate::out::{out, outln, stdout};
use crate::target::{SourceArgs, Target, get_json};
use anyhow::{Context, Result, anyhow, bail};
use plumb_collector::env::DriftView;
use plumb_model::Fingerprint;
use plumb_model::env::components;
use plumb_model::node::NodeStatus;
use plumb_model::text::Cell;
use plumb_record::lock::{self, Checked};
use plumb_store::prelude::*;
use plumb_store::{RunStore, Store};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `plumb env`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// The Python interpreter whose packages to list (default: `python` in
    /// plumb.toml or PLUMB_PYTHON, else `python3` on PATH).
    #[arg(long, global = true, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Another node's environment, as its agent last sent it to the
    /// collector.
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
    #[command(subcommand)]
    pub what: Option<What>,
}

/// `plumb env` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Every component whose version differs between the collector's nodes
    /// (those with all the given labels), which nodes have which version,
    /// and which version most have. Exits 1 when something differs.
    Drift {
        /// Only nodes with this label (`--label role=worker`; repeat for
        /// several).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Name at most this many nodes per version.
        #[arg(long, default_value_t = 8)]
        max_nodes: usize,
    },
    /// How two environments differ: each of A and B is `here` (this host,
    /// now), a node's name (with a collector) or a run reference. Exits 1
    /// when they differ.
    Diff {
        /// First environment.
        a: String,
        /// Second environment.
        b: String,
    },
    /// Prints plumb's own lock of this host's environment, to save as
    /// plumb.lock for `plumb env check --lock` and `plumb run
    /// --require-lock`.
    Lock,
    /// Compares this host's environment (or a node's, with `--node`) with a
    /// lock: pip requirements or `pip freeze` output (== pins), uv.lock,
    /// poetry.lock, Cargo.lock (installed Rust tools) or plumb.lock. Exits
    /// 1 with every mismatch listed.
    Check {
        /// The lock file.
        #[arg(long, value_name = "FILE")]
        lock: PathBuf,
    },
}

/// The environment of this host, captured now as `plumb run` captures a
/// run's (for the program `argv`, when given): the content hash and the
/// fingerprint. Cheap when nothing changed: every part is cached.
pub fn capture_here(
    cfg: &Config,
    python: Option<&Path>,
    argv: &[OsString],
) -> (String, Fingerprint) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    capture_in(cfg, python, argv, &cwd, Vec::new())
}

/// [`capture_here`] for a program started in `cwd` with the environment
/// `env` (empty: plumb's own).
pub fn capture_in(
    cfg: &Config,
    python: Option<&Path>,
    argv: &[OsString],
    cwd: &Path,
    env: Vec<(OsString, OsString)>,
) -> (String, Fingerprint) {
    let python = python
        .map(Path::to_path_buf)
        .or_else(|| cfg.python.clone())
        .or_else(|| argv.is_empty().then(|| PathBuf::from("python3")));
    let opts = plumb_record::fingerprint::CaptureOptions {
        cache_dir: cfg.home.join("cache"),
        argv: argv.to_vec(),
        cwd: cwd.to_path_buf(),
        env,
        python,
        tools: cfg.tools.clone(),
    };
    plumb_record::fingerprint::Capture::start(&opts, std::process::id()).finish()
}

/// The components to check a lock against: the fingerprint's, plus the
/// Rust tools installed with `cargo install`.
pub fn checkable(fp: &Fingerprint) -> BTreeMap<String, String> {
    let mut c = components(fp);
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    c.extend(lock::cargo_tools(cargo_home.as_deref(), home.as_deref()));
    c
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    match &a.what {
        None => show(&a, &cfg),
        Some(What::Lock) => {
            if a.node.is_some() {
                bail!("`plumb env lock` locks this host's environment; --node is not for it");
            }
            let (_, fp) = capture_here(&cfg, a.python.as_deref(), &[]);
            let taken = format!(
                "{} on {}",
                plumb_model::Timestamp::now(),
                plumb_record::host::hostname()
            );
            let mut o = stdout();
            o.write_all(lock::write_plumb_lock(&components(&fp), &taken).as_bytes())?;
            o.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(What::Check { lock: path }) => check(&a, &cfg, path),
        Some(What::Drift { labels, max_nodes }) => drift(&a, &cfg, labels, *max_nodes),
        Some(What::Diff { a: x, b: y }) => diff(&a, &cfg, x, y),
    }
}

/// A node's fingerprint from the collector (or, on the collector's
/// machine, its store).
pub(crate) fn node_fingerprint(
    cfg: &Config,
    target: &Target,
    name: &str,
) -> Result<Option<(String, Fingerprint)>> {
    match target {
        Target::Collector(client) => {
            let nodes: Vec<NodeStatus> = crate::cmd::nodes::fetch(client)?;
            let Some(n) = nodes.into_iter().find(|n| n.node == name) else {
                return Ok(None);
            };
            let hash = n.fingerprint.ok_or_else(|| {
                anyhow!("node {name} has not sent its fingerprint yet (its agent sends one within seconds of starting)")
            })?;
            let fp: Fingerprint = get_json(client, &format!("/api/v1/fingerprints/{hash}"))?;
            Ok(Some((hash, fp)))
        }
        Target::Local => {
            let store = Store::open_read_only(&cfg.home)?;
            let Some(row) = store.node(name)? else {
                return Ok(None);
            };
            let hash = row
                .fingerprint
                .ok_or_else(|| anyhow!("node {name} has not sent its fingerprint yet"))?;
            let fp = store
                .get_fingerprint(&hash)?
                .ok_or_else(|| anyhow!("node {name}'s fingerprint {hash} is not stored"))?;
            Ok(Some((hash, fp)))
        }
    }
}

fn no_such_node(name: &str, target: &Target) -> anyhow::Error {
    let where_ = match target {
        Target::Collector(c) => format!("the collector at {}", c.base()),
        Target::Local => "the local store (give --collector URL to ask a collector)".into(),
    };
    crate::exit::NotFound(format!("no node named {name} is known to {where_}")).into()
}

fn environment(a: &Args, cfg: &Config) -> Result<(String, String, Fingerprint)> {
    match &a.node {
        Some(name) => {
            let target = a.source.target(cfg)?;
            let (hash, fp) =
                node_fingerprint(cfg, &target, name)?.ok_or_else(|| no_such_node(name, &target))?;
            Ok((format!("node {name}"), hash, fp))
        }
        None => {
            let (hash, fp) = capture_here(cfg, a.python.as_deref(), &[]);
            Ok((
                format!("this host ({})", plumb_record::host::hostname()),
                hash,
                fp,
            ))
        }
    }
}

fn show(a: &Args, cfg: &Config) -> Result<ExitCode> {
    let (label, hash, fp) = environment(a, cfg)?;
    let comps = components(&fp);
    if a.json {
        let v = serde_json::json!({
            "environment": label,
            "hash": hash,
            "components": comps,
            "fingerprint": fp,
        });
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &v)?;
        writeln!(o)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{}  fingerprint {}",
        Cell(&label),
        &hash[..hash.len().min(12)]
    );
    outln!(
        "hardware  {} x {}, {}",
        Cell(&fp.cpu_model),
        fp.cpu_count,
        plumb_model::display::size(fp.memory_bytes)
    );
    if let Some(py) = &fp.python {
        outln!(
            "python    {} ({}, prefix {})",
            Cell(&py.version),
            Cell(&py.executable),
            Cell(&py.prefix)
        );
    }
    let width = comps.keys().map(|k| k.len()).max().unwrap_or(0).min(32);
    // Plain components first, then one block per kind (`python:`,
    // `tool:`, `library:`).
    let section = |k: &str| k.split_once(':').map(|(p, _)| p.to_string());
    let mut sorted: Vec<(&String, &String)> = comps.iter().collect();
    sorted.sort_by_key(|(k, _)| (section(k), k.to_string()));
    let mut current = None;
    for (k, v) in sorted {
        let s = section(k);
        if s != current {
            current = s;
            outln!();
        }
        outln!("  {:<width$}  {}", Cell(k), Cell(v));
    }
    if fp.python.is_none() {
        outln!("\n(no Python found: give --python PATH or set PLUMB_PYTHON to list packages)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_checked(c: &Checked, what: &str) {
    if c.mismatches.is_empty() {
        outln!(
            "{what} matches {} ({}): {} pins checked{}",
            c.lock.display(),
            c.kind.as_str(),
            c.checked,
            if c.skipped > 0 {
                format!(", {} not installed and optional", c.skipped)
            } else {
                String::new()
            }
        );
    } else {
        outln!(
            "{what} does not match {} ({}): {} of {} differ",
            c.lock.display(),
            c.kind.as_str(),
            c.mismatches.len(),
            c.checked.max(c.mismatches.len())
        );
        for m in &c.mismatches {
            outln!("  {}", Cell(&m.to_string()));
        }
    }
    if !c.not_checked.is_empty() {
        outln!("not checked (not pinned with ==):");
        for n in c.not_checked.iter().take(20) {
            outln!("  {}", Cell(n));
        }
        if c.not_checked.len() > 20 {
            outln!("  ... and {} more", c.not_checked.len() - 20);
        }
    }
}

fn check(a: &Args, cfg: &Config, path: &Path) -> Result<ExitCode> {
    let lock = lock::read(path)?;
    let (label, _, fp) = environment(a, cfg)?;
    let current = if a.node.is_some() {
        components(&fp)
    } else {
        checkable(&fp)
    };
    let checked = lock::check(&lock, &current);
    if a.json {
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &checked)?;
        writeln!(o)?;
    } else {
        print_checked(&checked, &label);
    }
    Ok(if checked.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

fn need_collector(a: &Args, cfg: &Config, what: &str) -> Result<Target> {
    let target = a.source.target(cfg)?;
    if matches!(target, Target::Local) && !cfg.home.join(plumb_store::DB_FILE).exists() {
        bail!(
            "{what} compares the nodes a collector knows: give --collector URL (or set `collector` in plumb.toml), with `plumb agent` running on the nodes"
        );
    }
    Ok(target)
}

fn drift(a: &Args, cfg: &Config, labels: &[String], max_nodes: usize) -> Result<ExitCode> {
    let joined = labels.join(",");
    let parsed =
        plumb_collector::env::parse_labels(&joined).map_err(|e| anyhow!("--label: {e}"))?;
    let target = need_collector(a, cfg, "`plumb env drift`")?;
    let view: DriftView = match &target {
        Target::Collector(client) => {
            let mut path = "/api/v1/env/drift".to_string();
            if !joined.is_empty() {
                path.push_str(&format!("?label={}", plumb_http::encode_segment(&joined)));
            }
            get_json(client, &path)?
        }
        Target::Local => {
            let store = Store::open_read_only(&cfg.home)?;
            plumb_collector::env::fleet_drift(&store, &parsed)?
        }
    };
    if a.json {
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &view)?;
        writeln!(o)?;
    } else {
        if view.drift.nodes.is_empty() && view.without_fingerprint.is_empty() {
            let which = if parsed.is_empty() {
                String::new()
            } else {
                format!(" with labels {joined}")
            };
            return Err(crate::exit::NotFound(format!("no nodes{which} are known")).into());
        }
        out!(
            "{}",
            plumb_model::env::render_drift(&view.drift, max_nodes.max(1))
        );
        if !view.without_fingerprint.is_empty() {
            outln!(
                "\nnot compared (no fingerprint sent yet): {}",
                Cell(&view.without_fingerprint.join(", "))
            );
        }
    }
    Ok(if view.drift.items.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

/// An environment named on the command line: `here`, a node, or a run.
fn named(a: &Args, cfg: &Config, target: &Target, name: &str) -> Result<(String, Fingerprint)> {
    if name == "here" {
        let (_, fp) = capture_here(cfg, a.python.as_deref(), &[]);
        return Ok((format!("here ({})", plumb_record::host::hostname()), fp));
    }
    if let Target::Collector(_) = target
        && let Some((_, fp)) = node_fingerprint(cfg, target, name)?
    {
        return Ok((format!("node {name}"), fp));
    }
    let found = match target {
        Target::Collector(client) => {
            let store = plumb_collector::client::RemoteStore::new(client.clone().into());
            run_fingerprint(&store, name)
        }
        Target::Local => {
            let store = crate::cmd::query::open_store(cfg)?;
            run_fingerprint(&store, name)
        }
    };
    found.with_context(|| format!("`{name}` is not `here`, a node or a run"))
}

fn run_fingerprint<S: RunStore>(store: &S, reference: &str) -> Result<(String, Fingerprint)> {
    let run = store.get_run(store.resolve(reference)?)?;
    let fp = store.run_fingerprint(&run)?.ok_or_else(|| {
        anyhow!(
            "run {} has no stored fingerprint (recorded with --no-fingerprint, or not yet shipped)",
            run.id
        )
    })?;
    Ok((format!("run {} ({})", run.id, run.name), fp))
}

fn diff(a: &Args, cfg: &Config, x: &str, y: &str) -> Result<ExitCode> {
    let target = a.source.target(cfg)?;
    let (la, fa) = named(a, cfg, &target, x)?;
    let (lb, fb) = named(a, cfg, &target, y)?;
    let differences = plumb_model::diff::diff_fingerprints(&fa, &fb);
    if a.json {
        let v = serde_json::json!({"a": la, "b": lb, "differences": differences});
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &v)?;
        writeln!(o)?;
    } else {
        let mut s = String::new();
        if differences.is_empty() {
            s.push_str("environments are the same\n");
        } else {
            s.push_str(&format!(
                "environments differ in {} component{}\n",
                differences.len(),
                if differences.len() == 1 { "" } else { "s" }
            ));
        }
        s.push_str(&format!("  A = {la}\n  B = {lb}\n"));
        plumb_model::diff::render_differences(&mut s, &differences);
        out!("{}", plumb_model::text::escape_controls(&s));
    }
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}
