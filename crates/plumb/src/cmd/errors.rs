//! `plumb errors`: failures grouped by exception fingerprint, from the
//! local store or a collector; `plumb errors show FP`, `plumb errors
//! resolve FP`.

use crate::cmd::query::open_store;
use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target, get_json};
use anyhow::{Context, Result, bail};
use plumb_model::Timestamp;
use plumb_model::display::duration as human_duration;
use plumb_model::insights::{ErrorGroup, ErrorGroupDetail, ErrorGroups, ErrorQuery, ErrorStatus};
use plumb_model::text::Cell;
use plumb_store::Store;
use plumb_store::prelude::*;
use std::process::ExitCode;

/// Arguments of `plumb errors`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Sub>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only groups seen within this long ago (`90s`, `2h`, `3d`) or since
    /// this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only groups in this status: new, regressed, ongoing, resolved.
    #[arg(long)]
    pub status: Option<ErrorStatus>,
    /// At most this many groups.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `plumb errors` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// One group: counts per host, recent occurrences, a sample exception.
    Show {
        /// The group's fingerprint.
        fingerprint: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark a group resolved; it is marked regressed if it occurs again.
    Resolve {
        /// The group's fingerprint.
        fingerprint: String,
    },
}

/// Where the groups come from.
enum Source {
    Local(Store, Box<Config>),
    Remote(plumb_http::Client),
}

fn open(args: &SourceArgs) -> Result<Source> {
    let cfg = Config::load()?;
    match args.target(&cfg)? {
        Target::Collector(client) => Ok(Source::Remote(client)),
        Target::Local => {
            let store = open_store(&cfg)?;
            // The local store has no background task: group the failed runs
            // recorded since the last look, and resolve quiet groups, now.
            loop {
                let d = store.drain_error_queue(1000, &plumb_model::exception::fingerprint)?;
                if d.taken < 1000 {
                    break;
                }
            }
            store.auto_resolve_error_groups(Timestamp::now(), cfg.insights.quiet_s)?;
            Ok(Source::Local(store, Box::new(cfg)))
        }
    }
}

fn parse_since(s: &str) -> Result<Timestamp> {
    plumb_model::parse_moment(s, Timestamp::now()).map_err(|e| anyhow::anyhow!("--since: {e}"))
}

/// The groups `args` asks for.
pub fn groups(args: &Args) -> Result<Vec<ErrorGroup>> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    match open(&args.source)? {
        Source::Local(store, cfg) => {
            let q = ErrorQuery {
                since,
                status: args.status,
                new_window_s: cfg.insights.new_window_s,
                limit: args.limit,
                ..ErrorQuery::at(Timestamp::now())
            };
            Ok(store.error_groups(&q)?)
        }
        Source::Remote(client) => {
            let mut path = format!("/api/v1/errors?limit={}", args.limit);
            if let Some(t) = since {
                path.push_str(&format!("&since={}", t.as_nanos()));
            }
            if let Some(s) = args.status {
                path.push_str(&format!("&status={s}"));
            }
            let g: ErrorGroups = get_json(&client, &path)?;
            Ok(g.groups)
        }
    }
}

fn ago(t: Timestamp) -> String {
    let ns = (Timestamp::now().as_nanos() - t.as_nanos()).max(0);
    format!("{} ago", human_duration(ns))
}

fn shorten(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Prints groups as a table: STATUS COUNT HOSTS FIRST LAST TYPE: MESSAGE.
pub fn print_table(groups: &[ErrorGroup], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<9} {:>6} {:>5} {:<12} {:<12} TYPE: MESSAGE",
        "FINGERPRINT", "STATUS", "COUNT", "HOSTS", "FIRST", "LAST"
    )?;
    for g in groups {
        writeln!(
            out,
            "{:<16} {:<9} {:>6} {:>5} {:<12} {:<12} {}: {}",
            g.fingerprint,
            g.status.as_str(),
            g.count,
            g.host_count(),
            ago(g.first_seen),
            ago(g.last_seen),
            Cell(&g.kind),
            Cell(&shorten(&g.message, 80))
        )?;
    }
    if groups.is_empty() {
        writeln!(out, "(no errors)")?;
    }
    Ok(())
}

fn print_detail(d: &ErrorGroupDetail) {
    let g = &d.group;
    outln!("{}: {}", g.kind, g.message);
    outln!("fingerprint {}  language {}", g.fingerprint, g.language);
    outln!(
        "status      {}{}",
        g.status,
        g.regressed_at
            .filter(|_| g.status == ErrorStatus::Regressed)
            .map(|t| format!(" (since {})", t.to_rfc3339_secs()))
            .unwrap_or_default()
    );
    outln!("count       {} in {} runs", g.count, g.runs);
    outln!(
        "first seen  {} ({})",
        g.first_seen.to_rfc3339_secs(),
        ago(g.first_seen)
    );
    outln!(
        "last seen   {} ({})",
        g.last_seen.to_rfc3339_secs(),
        ago(g.last_seen)
    );
    outln!("hosts");
    for h in &d.by_host {
        outln!("  {:<24} {}", Cell(&h.host), h.count);
    }
    outln!("sample");
    for f in &d.sample.frames {
        outln!(
            "  {}:{} in {}",
            f.file.as_deref().unwrap_or("?"),
            f.line.map_or("?".into(), |l| l.to_string()),
            f.function.as_deref().unwrap_or("?")
        );
    }
    outln!("  {}: {}", d.sample.kind, d.sample.message);
    outln!("recent");
    for o in &d.occurrences {
        outln!(
            "  {}  {:<20} {:<5} {}",
            o.at.to_rfc3339_secs(),
            Cell(&o.host),
            o.source.as_str(),
            o.run_id.map(|r| r.to_string()).unwrap_or_default()
        );
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    match &args.command {
        None => {
            let groups = groups(&args)?;
            if args.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&ErrorGroups {
                        groups,
                        sparks: Vec::new()
                    })?
                );
            } else {
                print_table(&groups, &mut crate::out::stdout())?;
            }
        }
        Some(Sub::Show { fingerprint, json }) => {
            let detail: ErrorGroupDetail = match open(&args.source)? {
                Source::Local(store, cfg) => {
                    match store.error_group(
                        fingerprint,
                        Timestamp::now(),
                        cfg.insights.new_window_s,
                        50,
                    )? {
                        Some(d) => d,
                        None => bail!("no error group with fingerprint `{fingerprint}`"),
                    }
                }
                Source::Remote(client) => get_json(
                    &client,
                    &format!("/api/v1/errors/{}", plumb_http::encode_segment(fingerprint)),
                )?,
            };
            if *json {
                outln!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
        }
        Some(Sub::Resolve { fingerprint }) => {
            match open(&args.source)? {
                Source::Local(store, _) => {
                    if !store.resolve_error_group(fingerprint, Timestamp::now())? {
                        bail!("no error group with fingerprint `{fingerprint}`");
                    }
                }
                Source::Remote(client) => {
                    client
                        .post(&format!(
                            "/api/v1/errors/{}/resolve",
                            plumb_http::encode_segment(fingerprint)
                        ))
                        .bytes("application/json", b"{}".to_vec())
                        .send()?;
                }
            }
            outln!("resolved {fingerprint}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The program the demo runs: fails in one of two ways, or succeeds.
const DEMO_APP: &str = r#"import sys
def charge(order):
    raise ValueError(f"card declined for order {order}")
def lookup(key):
    return {}[key]
mode, arg = sys.argv[1], sys.argv[2]
if mode == "charge":
    charge(int(arg))
elif mode == "lookup":
    lookup(arg)
"#;

/// The demo's error and slow-run scene, against the collector at
/// `collector_url`: ships four failing Python runs (two kinds of error) and
/// 20 quick runs of `nightly` recorded in `work_dir`, then starts a
/// `nightly` run that sleeps `slow_secs`, waits until the collector flags
/// it, and prints what `plumb errors` and `plumb slow` show. Returns the
/// sleeping run's process (`plumb run`), still running, for the caller to
/// wait for or kill. Bounded: about ten seconds on a loaded machine.
pub fn demo_scene(
    collector_url: &str,
    work_dir: &std::path::Path,
    slow_secs: u64,
) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let home = work_dir.join("insights-node");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let app = home.join("shop.py");
    std::fs::write(&app, DEMO_APP).with_context(|| format!("cannot write {}", app.display()))?;
    let plumb = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.env("PLUMB_HOME", &home)
            .env("PLUMB_COLLECTOR", collector_url)
            .env_remove("PLUMB_CONFIG")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let app_s = app.to_string_lossy().to_string();
    let mut children = Vec::new();
    for (mode, arg) in [
        ("charge", "17"),
        ("charge", "42"),
        ("charge", "99"),
        ("lookup", "user-7"),
    ] {
        children.push(
            plumb(&["run", "--name", "shop", "--", "python3", &app_s, mode, arg])
                .spawn()
                .context("cannot start plumb run")?,
        );
    }
    for _ in 0..20 {
        children.push(
            plumb(&["run", "--name", "nightly", "--", "sh", "-c", "sleep 0.05"])
                .spawn()
                .context("cannot start plumb run")?,
        );
        // Ten at a time keeps the machine responsive.
        if children.len() >= 10 {
            for mut c in children.drain(..) {
                c.wait()?;
            }
        }
    }
    for mut c in children {
        c.wait()?;
    }
    let cfg = Config::load()?;
    let client = crate::target::client(&cfg, collector_url)?;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut groups: Vec<ErrorGroup> = Vec::new();
    while Instant::now() < deadline {
        groups = get_json::<ErrorGroups>(&client, "/api/v1/errors")?.groups;
        if groups.iter().map(|g| g.count).sum::<u64>() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    outln!("$ plumb errors --collector {collector_url}");
    print_table(&groups, &mut crate::out::stdout())?;
    let slow = plumb(&[
        "run",
        "--name",
        "nightly",
        "--",
        "sleep",
        &slow_secs.to_string(),
    ])
    .spawn()
    .context("cannot start plumb run")?;
    let deadline = Instant::now() + Duration::from_secs(slow_secs.min(8));
    let mut runs = Vec::new();
    while Instant::now() < deadline {
        runs = get_json::<plumb_model::insights::SlowRuns>(&client, "/api/v1/runs/slow")?.runs;
        if !runs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    outln!("$ plumb slow --collector {collector_url}");
    crate::cmd::slow::print_table(&runs, &mut crate::out::stdout())?;
    Ok(slow)
}
