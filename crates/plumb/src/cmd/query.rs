//! `plumb ls`, `show`, `logs`, `search`, `diff`: reading the store, local
//! or a collector's. Each command is written once against
//! [`plumb_store::RunStore`]; only where the data comes from differs.

use crate::config::{Config, parse_key_value};
use crate::target::{SourceArgs, Target};
use anyhow::{Context, Result};
use plumb_collector::client::RemoteStore;
use plumb_model::display::{self, duration as human_duration};
use plumb_model::telemetry::{Hit, LogLine, StatusCode, Trace, TraceRow};
use plumb_model::text::{escape_cell, escape_controls};
use plumb_model::{Run, RunState, Stream, Timestamp};
use plumb_store::{OutputCursor, Replayed, RunFilter, RunStore, SearchMode, SearchOptions, Store};
use std::io::Write;
use std::process::ExitCode;

/// The store a query reads.
enum Source {
    Local(Store),
    Remote(RemoteStore),
}

/// Runs `$body` with `$s` bound to whichever store `$src` is; the body is
/// generic code over [`RunStore`], written once.
macro_rules! with_source {
    ($src:expr, |$s:ident| $body:expr) => {
        match $src {
            Source::Local(ref $s) => $body,
            Source::Remote(ref $s) => $body,
        }
    };
}

fn open_source(args: &SourceArgs) -> Result<Source> {
    let cfg = Config::load()?;
    Ok(match args.target(&cfg)? {
        Target::Local => Source::Local(open_store(&cfg)?),
        Target::Collector(client) => Source::Remote(RemoteStore::new(client.into())),
    })
}

/// Arguments of `plumb ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only runs with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only runs on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only runs that failed, were killed, evicted or timed out.
    #[arg(long)]
    pub failed: bool,
    /// Only runs in this state (waiting, running, succeeded, failed, killed,
    /// evicted, cancelled, timed-out).
    #[arg(long)]
    pub state: Option<RunState>,
    /// Only runs started within this long ago (`90s`, `2h`, `3d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs with this tag, `key=value` (repeatable).
    #[arg(long = "tag", value_parser = parse_key_value)]
    pub tags: Vec<(String, String)>,
    /// At most this many runs, newest first (0: all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw the matching runs per interval by state instead of listing
    /// them: bars and a sparkline on a terminal, one line of numbers per
    /// interval otherwise (or with NO_COLOR). `--limit` does not apply.
    #[arg(long)]
    pub chart: bool,
}

/// Arguments of `plumb show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// A run id, a unique prefix of one, `last` or `last~N`.
    pub run: String,
    /// Print JSON (the run and its fingerprint).
    #[arg(long)]
    pub json: bool,
    /// Show the local variables of every frame of the uncaught exceptions
    /// the run's Python processes died of (recorded unless `plumb run
    /// --no-locals`).
    #[arg(long)]
    pub locals: bool,
}

/// Arguments of `plumb logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// A run id, a unique prefix of one, `last` or `last~N`.
    pub run: String,
    /// Only this stream (stdout or stderr), or `log`: only the log records
    /// the program sent (OpenTelemetry, `plumb.PlumbHandler`). A run whose
    /// stdout and stderr went to the same place was recorded as one
    /// combined stream, which is shown whole (with a note) whichever is
    /// asked for.
    #[arg(long)]
    pub stream: Option<LogsStream>,
    /// Keep printing new output until the run ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Prefix each line with its time and stream, and show the run's log
    /// records among its output by time, labelled `log` with their service
    /// and severity.
    #[arg(long, short = 't')]
    pub timestamps: bool,
}

/// What `plumb logs --stream` shows: one output stream, or the log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsStream {
    /// One output stream.
    Output(Stream),
    /// The log records.
    Log,
}

impl std::str::FromStr for LogsStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "log" | "logs" => Ok(LogsStream::Log),
            other => other.parse().map(LogsStream::Output).map_err(|_| {
                format!(
                    "unknown stream `{other}`: expected `stdout`, `stderr`, `combined` or `log`"
                )
            }),
        }
    }
}

/// Arguments of `plumb search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// What to find, in run output, log records and spans (by name,
    /// service and attributes). By default whole words in any order,
    /// ignoring case; a term with punctuation inside (`widget-5`) or a
    /// "quoted phrase" matches its words in sequence. Starting or ending
    /// TEXT with `kind:output`, `kind:log` or `kind:span` (repeatable, or
    /// `kind:log,span`) finds only those. Several arguments are one text,
    /// joined by single spaces (`plumb search kind:span checkout`).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// Match TEXT literally anywhere in a line, as `grep -F` does
    /// (case-sensitive unless -i).
    #[arg(long, conflicts_with = "regex")]
    pub substring: bool,
    /// TEXT is a regular expression, matched against each line (Rust regex
    /// syntax; case-sensitive unless -i).
    #[arg(long, short = 'e')]
    pub regex: bool,
    /// Ignore case in --substring and --regex searches.
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
    /// Only output from this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only output of this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only this stream (stdout or stderr; combined output, which holds
    /// both, matches either).
    #[arg(long)]
    pub stream: Option<Stream>,
    /// Only output within this long ago (`90s`, `2h`, `3d`).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many hits (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `plumb trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// A trace id (32 hex digits) or a unique prefix of one.
    pub trace: String,
    /// Print JSON (the spans and log records).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `plumb diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The first run (id, prefix, `last`, `last~N`).
    pub a: String,
    /// The second run.
    pub b: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Opens the store for reading, importing waiting spool files first when it
/// is writable.
pub fn open_store(cfg: &Config) -> Result<Store> {
    match Store::open(&cfg.home) {
        Ok(store) => {
            for dir in plumb_store::spool::candidate_dirs(&cfg.home) {
                if let Err(e) = store.import_spool(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "spool import failed");
                }
            }
            Ok(store)
        }
        Err(
            e @ (plumb_store::StoreError::Foreign { .. } | plumb_store::StoreError::TooNew { .. }),
        ) => Err(e.into()),
        Err(rw) => Store::open_read_only(&cfg.home)
            .with_context(|| format!("cannot open the store in {} ({rw})", cfg.home.display())),
    }
}

/// `--since`: a moment, in the one syntax of [`plumb_model::parse_moment`].
pub fn since(s: &Option<String>) -> Result<Option<Timestamp>> {
    s.as_deref()
        .map(|d| {
            plumb_model::parse_moment(d, Timestamp::now())
                .map_err(|e| anyhow::anyhow!("--since: {e}"))
        })
        .transpose()
}

/// A run id as shown in tables: its first 18 characters (time and some
/// randomness), enough to be a unique prefix in practice.
pub fn short_id(id: &plumb_model::Uuid) -> String {
    id.to_string()[..18].to_string()
}

pub fn ls(a: LsArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| ls_on(s, a))
}

fn ls_on<S: RunStore>(store: &S, a: LsArgs) -> Result<ExitCode> {
    if a.chart {
        return ls_chart(store, a);
    }
    // Like grep, filters that match nothing exit 1; a plain `plumb ls` of
    // an empty store is not a failed search.
    let filtered = a.name.is_some()
        || a.host.is_some()
        || a.failed
        || a.state.is_some()
        || a.since.is_some()
        || !a.tags.is_empty();
    let runs = store.list_runs(&RunFilter {
        name: a.name,
        host: a.host,
        failed: a.failed,
        state: a.state,
        since: since(&a.since)?,
        tags: a.tags,
        limit: a.limit,
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &runs)?;
        writeln!(out)?;
        return Ok(found_code(runs.is_empty() && filtered));
    }
    writeln!(
        out,
        "{:<18}  {:<20}  {:<16}  {:<9}  {:<20}  {:>9}  {:>7}  {:>7}",
        "ID", "NAME", "HOST", "STATE", "STARTED", "DURATION", "EXIT", "ATTEMPT"
    )?;
    let now = Timestamp::now().as_nanos();
    for r in &runs {
        let dur = r.ended.map_or(now, |e| e.as_nanos()) - r.started.as_nanos();
        let exit = plumb_model::display::exit_or_oom(r.exit_code, r.signal, r.oom_killed);
        // `2/4` for retried runs; `-` for a run that was never retried.
        let attempt = match r.max_attempts {
            Some(max) => format!("{}/{max}", r.attempt),
            None if r.attempt > 1 => r.attempt.to_string(),
            None => "-".into(),
        };
        // A command that never started says why, after the columns.
        let why = r.launch_error.as_deref().map_or(String::new(), |e| {
            format!("  {}", escape_cell(e.lines().next().unwrap_or("")))
        });
        writeln!(
            out,
            "{:<18}  {:<20}  {:<16}  {:<9}  {:<20}  {:>9}  {:>7}  {:>7}{why}",
            short_id(&r.id),
            truncate(&escape_cell(&r.name), 20),
            truncate(&escape_cell(&r.host), 16),
            r.state.as_str(),
            r.started.to_rfc3339_secs(),
            human_duration(dur),
            exit,
            attempt
        )?;
    }
    Ok(found_code(runs.is_empty() && filtered))
}

/// `plumb ls --chart`: the runs `ls` would list (its `--limit` aside) per
/// interval by state, from the same store query as the dashboard's chart.
fn ls_chart<S: RunStore>(store: &S, a: LsArgs) -> Result<ExitCode> {
    use plumb_model::chart::{bar_text, interval_label, spark_text, tick_label};
    use std::io::IsTerminal;
    let q = plumb_store::dash::RunQuery {
        name: a.name.clone(),
        host: a.host.clone(),
        state: a.state,
        tags: a.tags.clone(),
        since: since(&a.since)?,
        ..Default::default()
    };
    let mut chart = store.runs_chart(&q).context("reading runs per interval")?;
    if a.failed {
        // `--failed` is several states: keep those.
        chart.total = 0;
        for b in &mut chart.bars {
            b.counts.retain(|c| c.state.is_failure());
            b.total = b.counts.iter().map(|c| c.n).sum();
            chart.total += b.total;
        }
    }
    let filtered = a.name.is_some()
        || a.host.is_some()
        || a.failed
        || a.state.is_some()
        || a.since.is_some()
        || !a.tags.is_empty();
    let code = found_code(chart.total == 0 && filtered);
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &chart)?;
        writeln!(out)?;
        return Ok(code);
    }
    let pretty = out.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if let (false, Some(p)) = (pretty, chart.partial_from) {
        tracing::warn!(
            "only the newest runs were counted, back to {} (a host or tag filter reads runs one by one)",
            p.to_rfc3339_secs()
        );
    }
    if !pretty {
        // One line per interval: start, end, total, then each state's count.
        write!(out, "START                 END                   TOTAL")?;
        for s in RunState::ALL {
            write!(out, "  {}", s.as_str().to_uppercase())?;
        }
        writeln!(out)?;
        for b in &chart.bars {
            write!(
                out,
                "{}  {}  {:>5}",
                b.start.to_rfc3339_secs(),
                b.end.to_rfc3339_secs(),
                b.total
            )?;
            for s in RunState::ALL {
                let n = b.counts.iter().find(|c| c.state == s).map_or(0, |c| c.n);
                write!(out, "  {n:>w$}", w = s.as_str().len())?;
            }
            writeln!(out)?;
        }
        return Ok(code);
    }
    writeln!(
        out,
        "{} runs per {} from {} to {} UTC",
        chart.total,
        interval_label(chart.interval_ns),
        chart.from.to_rfc3339_secs(),
        chart.until.to_rfc3339_secs()
    )?;
    let totals: Vec<u64> = chart.bars.iter().map(|b| b.total).collect();
    writeln!(out, "{}", spark_text(&totals))?;
    let max = totals.iter().copied().max().unwrap_or(0);
    for b in &chart.bars {
        let detail = b
            .counts
            .iter()
            .map(|c| format!("{} {}", c.n, c.state.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!(
            "{:<16} {:<30} {:>6}  {detail}",
            tick_label(b.start, chart.interval_ns.min(86_400_000_000_000 - 1)),
            bar_text(b.total, max, 30),
            b.total
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    if let Some(p) = chart.partial_from {
        writeln!(
            out,
            "(only the newest runs were counted, back to {}: a host or tag filter reads runs one by one)",
            p.to_rfc3339_secs()
        )?;
    }
    Ok(code)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn show(a: ShowArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| show_on(s, a))
}

fn show_on<S: RunStore>(store: &S, a: ShowArgs) -> Result<ExitCode> {
    let id = store.resolve(&a.run)?;
    let run = store.get_run(id)?;
    let fp = store.run_fingerprint(&run)?;
    let horizon = store.output_horizon()?.filter(|h| run.started < *h);
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::json!({ "run": run, "fingerprint": fp });
        if let Some(h) = horizon {
            v["output_removed_before"] = h.to_rfc3339_secs().into();
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        // Everything in it came from the run or the node that sent it.
        out.write_all(escape_controls(&render_run(&run, fp.as_ref())).as_bytes())?;
        if let Some(note) = display::output_retention(run.started, horizon) {
            writeln!(out, "retention {note}")?;
        }
        out.write_all(escape_controls(&render_node_bench(store, &run)).as_bytes())?;
        if a.locals {
            out.write_all(escape_controls(&render_locals(&run)).as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's node's latest benchmark taken before the run started (by the
/// run's host name, else its part before the first dot), so a slow run
/// can be explained by a slow node; empty when there is none. A store or
/// collector that cannot say is not an error: this is an aside.
fn render_node_bench<S: RunStore>(store: &S, run: &Run) -> String {
    let host = &run.host.hostname;
    let short = host.split('.').next().unwrap_or(host);
    let mut found = store.node_bench_before(host, run.started).ok().flatten();
    if found.is_none() && short != host {
        found = store.node_bench_before(short, run.started).ok().flatten();
    }
    let Some(row) = found else {
        return String::new();
    };
    let b = &row.bench;
    let before = human_duration((run.started.as_nanos() - b.taken_at.as_nanos()).max(0));
    let mut s = format!(
        "\nnode benchmark    {} at {} ({before} before the run started{})\n",
        row.node,
        b.taken_at.to_rfc3339_secs(),
        if b.quick { "; a quick one" } else { "" }
    );
    for f in b.figures() {
        s.push_str(&format!(
            "  {:<32} {:>12} {:<8} spread {:.1}%\n",
            f.label,
            plumb_collector::alerts::figure(f.figure.value),
            f.unit,
            f.figure.spread_pct
        ));
    }
    s
}

/// The post-mortems of `plumb show --locals`, or why there are none.
fn render_locals(run: &Run) -> String {
    let mut s = String::from("\npost-mortem locals\n");
    if run.postmortem.is_empty() {
        s.push_str(
            "  none recorded: no Python process of this run died of an uncaught exception \
             (or it ran with --no-locals, or Python with -S/-I)\n",
        );
    }
    for pm in &run.postmortem {
        for line in display::postmortem(pm) {
            s.push_str("  ");
            s.push_str(&line);
            s.push('\n');
        }
    }
    s
}

/// Appends `text` indented by two spaces, blank lines left blank.
fn push_indented(s: &mut String, text: &str) {
    use std::fmt::Write as _;
    for line in text.lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "  {line}");
        }
    }
}

/// The readable form of `plumb show`.
/// The `waited` line of `plumb show`: what the run waited for and how long.
fn render_waiting(w: &plumb_model::Waiting) -> String {
    let now = Timestamp::now();
    let how_long = human_duration(w.waited_ns(now));
    match (w.ended, w.until) {
        (Some(_), _) => format!("waited    {how_long} from {}: {}", w.since, w.reason),
        (None, Some(until)) => format!(
            "waiting   {how_long} so far, until {until} ({} left): {}",
            human_duration((until.as_nanos() - now.as_nanos()).max(0)),
            w.reason
        ),
        (None, None) => format!("waiting   {how_long} so far: {}", w.reason),
    }
}

pub fn render_run(run: &Run, fp: Option<&plumb_model::Fingerprint>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "run       {}", run.id);
    let _ = writeln!(s, "name      {}", run.name);
    let _ = writeln!(s, "state     {}", run.state.as_str());
    if let Some(e) = &run.exit {
        let _ = writeln!(s, "exit      {}", display::exit_status(e));
    }
    if let Some(o) = &run.oom {
        let _ = writeln!(s, "cause     {}", display::oom(o));
    }
    if let Some(e) = &run.launch_error {
        // A refusal (`--require-lock`) says so itself; its mismatches
        // follow, one per line.
        let mut lines = e.lines();
        let first = lines.next().unwrap_or("");
        if first.starts_with("refused:") {
            let _ = writeln!(s, "launch    {first}");
        } else {
            let _ = writeln!(s, "launch    failed: {first}");
        }
        for l in lines {
            let _ = writeln!(s, "            {l}");
        }
    }
    let _ = writeln!(s, "started   {}", run.started);
    if let Some(end) = run.ended {
        let _ = writeln!(
            s,
            "ended     {}  ({})",
            end,
            human_duration(end.as_nanos() - run.started.as_nanos())
        );
    }
    if let Some(attempt) = display::attempt(run) {
        let first = run
            .first_attempt
            .map_or(String::new(), |f| format!("  (first attempt {f})"));
        let _ = writeln!(s, "attempt   {attempt}{first}");
    }
    if let Some(w) = &run.waiting {
        let _ = writeln!(s, "{}", render_waiting(w));
    }
    if let Some(e) = &run.eviction {
        for (k, line) in display::eviction(e).iter().enumerate() {
            let label = if k == 0 { "evicted" } else { "" };
            let _ = writeln!(s, "{label:<9} {line}");
        }
    }
    if let Some(t) = &run.timeout {
        let _ = writeln!(s, "timed out {}", display::timeout(t));
    }
    if !run.tags.is_empty() {
        let tags: Vec<String> = run.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "tags      {}", tags.join(" "));
    }
    let _ = writeln!(s, "command   {}", shell_words(&run.argv));
    let _ = writeln!(s, "cwd       {}", run.cwd);
    let _ = writeln!(
        s,
        "host      {} ({}) {}",
        run.host.hostname,
        run.host.fqdn,
        run.host.ips.join(" ")
    );
    let _ = writeln!(
        s,
        "user      {} uid={} gid={} groups={:?}",
        run.user.name, run.user.uid, run.user.gid, run.user.groups
    );
    let _ = writeln!(s, "pid       {}   stdin: {}", run.pid, run.stdin);
    if !run.scheduler.is_empty() {
        let ids: Vec<String> = run
            .scheduler
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "scheduler {}", ids.join(" "));
    }
    if let Some(c) = &run.container {
        let _ = writeln!(s, "container {c}");
    }
    if let Some(ex) = &run.exception {
        let _ = writeln!(s, "\nexception ({})", ex.language);
        render_exception(&mut s, ex, "  ");
    }
    if !run.postmortem.is_empty() {
        let _ = writeln!(
            s,
            "locals    {} post-mortem{} with every frame's locals: plumb show {} --locals",
            run.postmortem.len(),
            if run.postmortem.len() == 1 { "" } else { "s" },
            run.id
        );
    }
    if let Some(snap) = run.timeout.as_ref().and_then(|t| t.snapshot.as_ref()) {
        let _ = writeln!(s, "\nstacks when the timeout fired");
        push_indented(&mut s, &snap.render());
    }
    for snap in &run.snapshots {
        let _ = writeln!(
            s,
            "\nstacks taken by plumb ({})",
            snap.reason.as_deref().unwrap_or("automatically")
        );
        push_indented(&mut s, &snap.render());
    }
    if let Some(r) = &run.rusage {
        let _ = writeln!(
            s,
            "\nresources user {:.3}s  system {:.3}s  max RSS {} KiB  faults {}/{}  blocks in/out {}/{}  ctx switches {}/{}",
            r.user_us as f64 / 1e6,
            r.system_us as f64 / 1e6,
            r.max_rss_kib,
            r.minor_faults,
            r.major_faults,
            r.in_blocks,
            r.out_blocks,
            r.voluntary_switches,
            r.involuntary_switches
        );
    }
    let _ = writeln!(s, "output    {}", display::output_summary(&run.output));
    for f in &run.forwarded {
        let _ = writeln!(
            s,
            "signal    {} at {} passed to {} process{}",
            f.signal,
            f.time,
            f.processes,
            if f.processes == 1 { "" } else { "es" }
        );
    }
    if let Some((heading, lines)) = display::orphans(run) {
        let _ = writeln!(s, "orphans   {heading}");
        for line in lines {
            let _ = writeln!(s, "          {line}");
        }
    }
    for (title, files) in [
        ("config", &run.config_files),
        ("input", &run.inputs),
        ("output", &run.outputs),
    ] {
        for f in files.iter() {
            let _ = writeln!(
                s,
                "{title:<9} {}  {}  {}{}",
                f.path,
                f.size.map_or("-".into(), |n| format!("{n} B")),
                f.sha256.as_deref().map_or("-", |h| &h[..h.len().min(16)]),
                f.error
                    .as_deref()
                    .map_or(String::new(), |e| format!("  ({e})"))
            );
        }
    }
    let node = plumb_model::conditions::notable_lines(run);
    if !node.is_empty() {
        let _ = writeln!(s, "\nnode during the run: {}", run.host.hostname);
        for line in node {
            let _ = writeln!(s, "  {line}");
        }
    }
    if !run.warnings.is_empty() {
        let _ = writeln!(s, "\nwarnings");
        for w in &run.warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    let _ = writeln!(s, "\nenvironment ({} variables)", run.env.len());
    for (k, v) in &run.env {
        let _ = writeln!(s, "  {k}={v}");
    }
    if let Some(fp) = fp {
        let _ = writeln!(
            s,
            "\nsoftware  (fingerprint {})",
            run.fingerprint.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            s,
            "  os        {} ({} {}), kernel {}, {}",
            fp.os.pretty, fp.os.id, fp.os.version, fp.os.kernel, fp.os.arch
        );
        let _ = writeln!(s, "  cpu       {} x {}", fp.cpu_count, fp.cpu_model);
        let _ = writeln!(s, "  memory    {} MiB", fp.memory_bytes >> 20);
        let _ = writeln!(s, "  libc      {}", fp.libc);
        if let Some(e) = &fp.executable {
            let _ = writeln!(
                s,
                "  program   {}  sha256 {}",
                e.path,
                e.sha256.as_deref().unwrap_or("-")
            );
        }
        if let Some(g) = &fp.git {
            let _ = writeln!(
                s,
                "  git       {} {}{} {}",
                g.root,
                g.commit,
                g.branch
                    .as_deref()
                    .map_or(String::new(), |b| format!(" ({b})")),
                if g.dirty { "dirty" } else { "clean" }
            );
        }
        if let Some(py) = &fp.python {
            let _ = writeln!(
                s,
                "  python    {} {} ({} packages)",
                py.executable,
                py.version,
                py.packages.len()
            );
        }
        for (k, v) in &fp.tools {
            let _ = writeln!(s, "  tool      {k}: {v}");
        }
        let _ = writeln!(s, "  libraries ({})", fp.libraries.len());
        for l in &fp.libraries {
            let _ = writeln!(s, "    {} {}", l.path, l.version.as_deref().unwrap_or(""));
        }
    }
    s
}

fn render_exception(s: &mut String, ex: &plumb_model::Exception, indent: &str) {
    use std::fmt::Write as _;
    for cause in &ex.causes {
        render_exception(s, cause, indent);
        let _ = writeln!(s, "{indent}  which led to:");
    }
    let _ = writeln!(s, "{indent}{}: {}", ex.kind, ex.message);
    for f in &ex.frames {
        let _ = writeln!(
            s,
            "{indent}  at {} ({}:{})",
            f.function.as_deref().unwrap_or("?"),
            f.file.as_deref().unwrap_or("?"),
            f.line.map_or("?".into(), |l| l.to_string())
        );
    }
    let _ = writeln!(s, "{indent}fingerprint {}", ex.fingerprint);
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn logs(a: LogsArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| logs_on(s, a))
}

fn logs_on<S: RunStore>(store: &S, a: LogsArgs) -> Result<ExitCode> {
    let id = store.resolve(&a.run)?;
    // Said on stderr, so the output itself stays the program's.
    if let Some(note) =
        display::output_retention(store.get_run(id)?.started, store.output_horizon()?)
    {
        eprintln!("plumb: run {}: {note}", short_id(&id));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.stream == Some(LogsStream::Log) {
        // Only the log records; they are printed as they were stored, less
        // the time unless asked for.
        let mut printed = 0;
        loop {
            let logs = store.run_logs(id)?;
            for l in logs.iter().skip(printed) {
                write_log_line(&mut out, l, a.timestamps)?;
            }
            printed = printed.max(logs.len());
            out.flush()?;
            if !a.follow || store.get_run(id)?.state.is_final() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut only = match a.stream {
        Some(LogsStream::Output(s)) => Some(s),
        _ => None,
    };
    if let Some(asked @ (Stream::Stdout | Stream::Stderr)) = only
        && store.get_run(id)?.output.combined
    {
        // The child had one channel for both streams (plumb's stdout and
        // stderr were the same place), so which bytes were stderr is not
        // known: show all of it rather than nothing, and say so.
        eprintln!(
            "plumb: run {} was recorded with stdout and stderr combined (both went to the same file, pipe or terminal), so its {} cannot be told apart; showing the combined output",
            short_id(&id),
            asked.as_str()
        );
        only = Some(Stream::Combined);
    }
    // With timestamps and every stream, the run's log records are shown
    // among its output, each at its time.
    let with_logs = a.timestamps && a.stream.is_none();
    let mut cursor = OutputCursor::default();
    // The stream whose line is unfinished on the output, if any.
    let mut open_line: Option<Stream> = None;
    // Log records printed so far, in the store's order.
    let mut logs_printed = 0;
    loop {
        let mut pending: std::collections::VecDeque<LogLine> = if with_logs {
            let mut fresh: Vec<LogLine> =
                store.run_logs(id)?.into_iter().skip(logs_printed).collect();
            logs_printed += fresh.len();
            fresh.sort_by_key(|l| l.time);
            fresh.into()
        } else {
            Default::default()
        };
        store.replay_output(id, only, &mut cursor, &mut |piece| {
            let (stream, time, bytes) = match piece {
                Replayed::Read {
                    stream,
                    time,
                    bytes,
                } => (stream, time, bytes),
                Replayed::Gap { dropped, cap } => {
                    // On a line of its own, where the bytes were dropped.
                    if open_line.take().is_some() {
                        out.write_all(b"\n")?;
                    }
                    return writeln!(out, "{}", display::output_gap(dropped, cap));
                }
            };
            if !a.timestamps {
                if let Some(last) = bytes.last() {
                    open_line = (*last != b'\n').then_some(stream);
                }
                return out.write_all(bytes);
            }
            // Log records made before this read come first, each on a
            // line of its own.
            while pending.front().is_some_and(|l| l.time <= time) {
                if open_line.take().is_some() {
                    out.write_all(b"\n")?;
                }
                let l = pending.pop_front().expect("checked above");
                write_log_line(&mut out, &l, true)?;
            }
            // A read of one stream after an unfinished line of the other
            // starts a labelled line of its own: a partial stdout line must
            // never carry stderr's text under stdout's label. The rest of
            // the unfinished line later gets a label of its own too.
            if open_line.is_some_and(|s| s != stream) {
                out.write_all(b"\n")?;
                open_line = None;
            }
            for piece in bytes.split_inclusive(|b| *b == b'\n') {
                if open_line.is_none() {
                    write!(out, "{} {} ", time, stream.as_str())?;
                }
                out.write_all(piece)?;
                open_line = (!piece.ends_with(b"\n")).then_some(stream);
            }
            Ok(())
        })?;
        if !pending.is_empty() && open_line.take().is_some() {
            out.write_all(b"\n")?;
        }
        for l in pending {
            write_log_line(&mut out, &l, true)?;
        }
        out.flush()?;
        if !a.follow || store.get_run(id)?.state.is_final() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Ok(ExitCode::SUCCESS)
}

/// One log record as `plumb logs` prints it: `[TIME log ]SERVICE SEVERITY
/// message`, its text escaped (it came from the network).
fn write_log_line(out: &mut impl Write, l: &LogLine, timestamps: bool) -> std::io::Result<()> {
    if timestamps {
        write!(out, "{} log ", l.time)?;
    }
    writeln!(
        out,
        "{} {} {}",
        escape_cell(&l.service),
        escape_cell(&l.severity),
        escape_cell(l.message())
    )
}

pub fn search(a: SearchArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| search_on(s, a))
}

fn search_on<S: RunStore>(store: &S, a: SearchArgs) -> Result<ExitCode> {
    let run = a.run.as_deref().map(|r| store.resolve(r)).transpose()?;
    let (kinds, text) = plumb_store::take_kinds(&a.text.join(" "))?;
    if a.stream.is_some()
        && !kinds.is_empty()
        && !kinds.contains(&plumb_model::telemetry::Kind::Output)
    {
        anyhow::bail!(
            "--stream applies to program output only, and the search asks for {} records: drop --stream or add kind:output",
            kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    let hits = store.search(&SearchOptions {
        text,
        mode: if a.regex {
            SearchMode::Regex
        } else if a.substring {
            SearchMode::Substring
        } else {
            SearchMode::Words
        },
        ignore_case: a.ignore_case,
        host: a.host,
        run,
        stream: a.stream,
        kinds,
        since: since(&a.since)?,
        until: None,
        limit: a.limit,
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &hits)?;
        writeln!(out)?;
    } else {
        for h in &hits {
            // RUN is empty for records sent from outside any run; KIND is
            // the output stream, `log` or `span`.
            let run = h.run_id().map_or(String::new(), |id| short_id(&id));
            let (kind, text) = match h {
                Hit::Output(o) => (o.stream.as_str(), escape_cell(&o.text).into_owned()),
                Hit::Log(l) => (
                    "log",
                    format!(
                        "{} {} {}",
                        escape_cell(&l.service),
                        escape_cell(&l.severity),
                        escape_cell(l.message())
                    ),
                ),
                Hit::Span(s) => (
                    "span",
                    format!(
                        "{} {} {} {} trace={}",
                        escape_cell(&s.service),
                        escape_cell(&s.name),
                        human_duration(s.duration_ns),
                        s.status.as_str(),
                        escape_cell(&s.trace_id)
                    ),
                ),
            };
            writeln!(
                out,
                "{run:<18}  {}  {}  {kind:<8}  {text}",
                h.time(),
                escape_cell(h.host()),
            )?;
        }
    }
    note_gaps(
        store,
        run.into_iter()
            .chain(hits.iter().filter_map(|h| h.run_id())),
    );
    Ok(found_code(hits.is_empty()))
}

/// Says on stderr, once per run, which runs searched dropped output over
/// their cap: a search covers only what was kept.
fn note_gaps<S: RunStore>(store: &S, runs: impl Iterator<Item = plumb_model::Uuid>) {
    let mut seen = std::collections::HashSet::new();
    for id in runs {
        if !seen.insert(id) || seen.len() > 100 {
            continue;
        }
        if let Ok(run) = store.get_run(id)
            && let Some(gap) = run.output.gap.filter(|g| g.dropped > 0)
        {
            eprintln!(
                "plumb: run {} dropped {} of output over its cap of {} (`plumb logs` marks where); search covers what was kept",
                short_id(&id),
                display::size(gap.dropped),
                display::size(gap.cap)
            );
        }
    }
}

pub fn trace(a: TraceArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| trace_on(s, a))
}

fn trace_on<S: RunStore>(store: &S, a: TraceArgs) -> Result<ExitCode> {
    let t = store.trace(&a.trace)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &t)?;
        writeln!(out)?;
    } else {
        out.write_all(render_trace(&t).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The readable form of `plumb trace`: a header, then one row per span as
/// an indented tree (start offset from the trace's start, duration,
/// service, status, name), each span's log records beneath it by time.
pub fn render_trace(t: &Trace) -> String {
    use std::fmt::Write as _;
    let t0 = t
        .start()
        .into_iter()
        .chain(t.logs.first().map(|l| l.time))
        .min()
        .unwrap_or(Timestamp::from_nanos(0));
    let t1 = t
        .end()
        .into_iter()
        .chain(t.logs.last().map(|l| l.time))
        .max()
        .unwrap_or(t0);
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut s = String::new();
    let _ = writeln!(
        s,
        "trace {}  started {}  took {}  {}  {}",
        t.trace_id,
        t0,
        human_duration(t1.as_nanos() - t0.as_nanos()),
        plural(t.spans.len(), "span"),
        plural(t.logs.len(), "log record"),
    );
    let _ = writeln!(
        s,
        "{:>9}  {:>9}  {:<16}  {:<4}  {:<6}  NAME",
        "START", "DURATION", "SERVICE", "KIND", "STATUS"
    );
    for row in t.rows() {
        let indent = "  ".repeat(row.depth());
        match row {
            TraceRow::Span { index, .. } => {
                let sp = &t.spans[index];
                let msg = if sp.status == StatusCode::Error && !sp.status_message.is_empty() {
                    format!(": {}", escape_cell(&sp.status_message))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "{:>9}  {:>9}  {:<16}  {:<4}  {:<6}  {indent}{}{msg}",
                    format!("+{}", human_duration(sp.start.as_nanos() - t0.as_nanos())),
                    human_duration(sp.duration_ns()),
                    truncate(&escape_cell(&sp.source.service), 16),
                    "span",
                    sp.status.as_str(),
                    escape_cell(&sp.name),
                );
            }
            TraceRow::Log { index, .. } => {
                let l = &t.logs[index];
                let _ = writeln!(
                    s,
                    "{:>9}  {:>9}  {:<16}  {:<4}  {:<6}  {indent}{}",
                    format!("+{}", human_duration(l.time.as_nanos() - t0.as_nanos())),
                    "",
                    truncate(&escape_cell(&l.service), 16),
                    "log",
                    escape_cell(&l.severity),
                    escape_cell(l.message_in_trace()),
                );
            }
        }
    }
    s
}

pub fn diff(a: DiffArgs) -> Result<ExitCode> {
    with_source!(open_source(&a.source)?, |s| diff_on(s, a))
}

fn diff_on<S: RunStore>(store: &S, a: DiffArgs) -> Result<ExitCode> {
    let load = |r: &str| -> Result<(Run, Option<plumb_model::Fingerprint>)> {
        let run = store.get_run(store.resolve(r)?)?;
        let fp = store.run_fingerprint(&run)?;
        Ok((run, fp))
    };
    let (ra, fa) = load(&a.a)?;
    let (rb, fb) = load(&a.b)?;
    let d = plumb_model::diff::diff(&ra, fa.as_ref(), &rb, fb.as_ref());
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        out.write_all(d.render_text().as_bytes())?;
    }
    // As diff(1): 0 when the runs are the same, 1 when they differ.
    Ok(if d.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

/// The exit code of a query by what it found, as grep's: 0 when something
/// matched, 1 when nothing did (see `crate::exit`).
pub fn found_code(nothing: bool) -> ExitCode {
    if nothing {
        ExitCode::from(crate::exit::NOT_FOUND)
    } else {
        ExitCode::SUCCESS
    }
}
