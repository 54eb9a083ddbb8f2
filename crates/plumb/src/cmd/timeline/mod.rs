//! `plumb timeline`: one merged timeline, each event at its host timestamp
//! corrected by that host's measured clock offset, with causal order kept
//! (see `plumb_model::timeline`). Over the store, local or a collector's
//! by the rule in target.rs (`plumb_collector::timeline` gathers the
//! events); with `--merge`, over plain log files (merge.rs).

mod merge;

use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target};
use anyhow::{Context, Result, bail};
use plumb_collector::timeline::{TimelineQuery, TimelineView};
use plumb_model::Timestamp;
use plumb_model::timeline::{Kind, Placed};
use std::process::ExitCode;

/// Arguments of `plumb timeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Without a collector, the local store is read.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Merge plain log files instead of reading the store:
    /// `[LABEL=]FILE[@OFFSET]`, where OFFSET is how far that host's clock
    /// is ahead (`+1.25s`, `-300ms`), subtracted from its timestamps; the
    /// label (the host) is the file's stem unless given.
    #[arg(long, num_args = 1.., value_name = "[LABEL=]FILE[@OFFSET]")]
    pub merge: Vec<String>,
    /// A host's offset for --merge, by label: `web=+1.25s`.
    #[arg(long = "offset", value_name = "LABEL=OFFSET", requires = "merge")]
    pub offsets: Vec<String>,
    /// The format of the timestamp lines start with, for --merge (jiff's
    /// strftime: `[%d/%b/%Y:%H:%M:%S %z]`), when it is none of epoch
    /// seconds, RFC 3339 / ISO 8601 and syslog.
    #[arg(long, requires = "merge")]
    pub pattern: Option<String>,
    /// The year of syslog timestamps (and of --pattern without %Y);
    /// default: this year.
    #[arg(long, requires = "merge")]
    pub year: Option<i32>,
    /// With --merge, how long (in merged time) a `plumb.msg.recv=ID` line
    /// waits for its `plumb.msg.send=ID`; 0 turns the causal pass off.
    #[arg(long, default_value = "10s", value_parser = plumb_model::parse_duration_ns, requires = "merge")]
    pub causal_window: i64,
    /// With --merge, estimate the offsets not given from matched
    /// `plumb.msg.send=ID` / `plumb.msg.recv=ID` pairs between the files
    /// (a first pass over them), relative to the first file with an
    /// offset, else the first file. The estimates go to standard error.
    #[arg(long, requires = "merge")]
    pub estimate_offsets: bool,
    /// Also show each event's raw timestamp and the correction applied.
    #[arg(long)]
    pub raw: bool,
    /// Print JSON (one object per line with --merge).
    #[arg(long)]
    pub json: bool,
    /// Events from this time on (RFC 3339, or a duration ago: `15m`).
    #[arg(long, conflicts_with = "merge")]
    pub since: Option<String>,
    /// Events before this time.
    #[arg(long, conflicts_with = "merge")]
    pub until: Option<String>,
    /// Only this run's events (repeatable; an id, a prefix or `last`).
    #[arg(long = "run", value_name = "ID", conflicts_with = "merge")]
    pub runs: Vec<String>,
    /// Only this host's events (repeatable).
    #[arg(long = "host", value_name = "HOST", conflicts_with = "merge")]
    pub hosts: Vec<String>,
    /// Only events whose text contains TEXT.
    #[arg(long, value_name = "TEXT", conflicts_with = "merge")]
    pub grep: Option<String>,
    /// At most this many events, the latest (0: all).
    #[arg(long, default_value_t = 1000, conflicts_with = "merge")]
    pub limit: usize,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Text,
    /// JSON.
    Json,
}

/// The mark before an event's host in text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Nothing to say.
    None,
    /// `~`: its order against another host's event is within the error
    /// bounds.
    Ambiguous,
    /// `>`: moved later than its corrected time by a causal constraint.
    Moved,
    /// `?`: a receive whose send was not found.
    Unmatched,
}

impl Flag {
    /// The character shown.
    pub fn char(self) -> char {
        match self {
            Flag::None => ' ',
            Flag::Ambiguous => '~',
            Flag::Moved => '>',
            Flag::Unmatched => '?',
        }
    }

    fn of(p: &Placed) -> Flag {
        if p.ambiguous {
            Flag::Ambiguous
        } else if p.unmatched {
            Flag::Unmatched
        } else if p.shift_ns > 0 {
            Flag::Moved
        } else {
            Flag::None
        }
    }
}

/// The correction in words: what was added to the raw time (`-1.250000
/// s`), and a causal move after it (`+0.001 ms causal`).
pub fn correction_words(added_ns: i64, shift_ns: i64) -> String {
    let mut s = crate::cmd::clock::signed(added_ns).replace(' ', "");
    if shift_ns > 0 {
        s.push_str(&format!(
            " {}causal",
            crate::cmd::clock::signed(shift_ns).replace(' ', "")
        ));
    }
    s
}

pub fn main(args: Args) -> Result<ExitCode> {
    if !args.merge.is_empty() {
        return merge_files(&args);
    }
    let now = Timestamp::now();
    let moment = |s: &Option<String>, flag: &str| -> Result<Option<Timestamp>> {
        s.as_deref()
            .map(|v| {
                plumb_model::parse_moment(v, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
            })
            .transpose()
    };
    let q = TimelineQuery {
        since: moment(&args.since, "since")?,
        until: moment(&args.until, "until")?,
        runs: args.runs.clone(),
        hosts: args.hosts.clone(),
        grep: args.grep.clone(),
        limit: args.limit,
    };
    let cfg = Config::load()?;
    let view: TimelineView = match args.source.target(&cfg)? {
        Target::Collector(client) => {
            let mut req = client.get("/api/v1/timeline");
            for (k, v) in q.to_params() {
                req = req.query(k, v);
            }
            let resp = req.send()?;
            serde_json::from_slice(&resp.body).map_err(|e| {
                anyhow::Error::from(resp.decode_error(format!("{e} (is it a plumb collector?)")))
            })?
        }
        Target::Local => {
            if !cfg.home.join(plumb_store::DB_FILE).exists() {
                bail!(
                    "no store in {} yet: nothing recorded here",
                    cfg.home.display()
                );
            }
            let store = plumb_store::Store::open_read_only(&cfg.home)
                .with_context(|| format!("cannot open the store in {}", cfg.home.display()))?;
            plumb_collector::timeline::timeline(&store, &q)?
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_view(&view, args.raw);
    Ok(ExitCode::SUCCESS)
}

fn print_view(view: &TimelineView, raw: bool) {
    if view.left_out > 0 {
        outln!(
            "({} earlier events left out; raise --limit or narrow --since)",
            view.left_out
        );
    }
    let width = view
        .events
        .iter()
        .map(|p| p.event.host.chars().count())
        .max()
        .unwrap_or(4);
    let mut time = plumb_model::timeline::stamp::Rfc3339::default();
    let mut raw_time = plumb_model::timeline::stamp::Rfc3339::default();
    for p in &view.events {
        let e = &p.event;
        let at = String::from_utf8_lossy(time.format(p.placed_ns)).into_owned();
        let raw_cols = if raw {
            let c = if p.correction.unmeasured {
                "unmeasured".to_string()
            } else {
                format!(
                    "{}±{}",
                    correction_words(-p.correction.offset_ns, p.shift_ns),
                    crate::cmd::clock::millis(p.correction.error_ns).replace(' ', "")
                )
            };
            format!(
                "{} {c:>22}  ",
                String::from_utf8_lossy(raw_time.format(e.raw_ns))
            )
        } else {
            String::new()
        };
        let text = match (e.kind, e.end_ns) {
            (Kind::Span, Some(end)) => format!(
                "{} [{}] trace {}",
                e.text,
                plumb_model::display::duration(end - e.raw_ns),
                e.trace_id.as_deref().unwrap_or("-")
            ),
            _ => e.text.clone(),
        };
        outln!(
            "{at} {} {:<width$}  {raw_cols}{:<9} {text}",
            Flag::of(p).char(),
            e.host,
            e.kind.as_str()
        );
    }
    let unmeasured: Vec<&str> = view
        .hosts
        .iter()
        .filter(|h| h.node.is_none() && h.host != plumb_collector::timeline::COLLECTOR_HOST)
        .map(|h| {
            if h.host.is_empty() {
                "(no host name)"
            } else {
                h.host.as_str()
            }
        })
        .collect();
    if !unmeasured.is_empty() {
        outln!(
            "(not corrected, no agent measures their clock: {})",
            unmeasured.join(", ")
        );
    }
    if view.events.iter().any(|p| p.ambiguous) {
        outln!("(~: order against another host's event is within the clocks' error bounds)");
    }
}

fn merge_files(args: &Args) -> Result<ExitCode> {
    let mut inputs = Vec::with_capacity(args.merge.len());
    for spec in &args.merge {
        inputs.push(merge::Input::parse(spec).map_err(anyhow::Error::msg)?);
    }
    for o in &args.offsets {
        let (name, off) = o
            .split_once('=')
            .with_context(|| format!("--offset `{o}`: expected LABEL=OFFSET, like web=+1.25s"))?;
        let ns = merge::parse_offset(off).map_err(|e| anyhow::anyhow!("--offset `{o}`: {e}"))?;
        let mut found = false;
        for i in inputs
            .iter_mut()
            .filter(|i| i.label == name || i.path == name)
        {
            i.offset_ns = Some(ns);
            found = true;
        }
        if !found {
            let labels: Vec<&str> = inputs.iter().map(|i| i.label.as_str()).collect();
            bail!(
                "--offset `{o}`: no file is labelled `{name}` (labels: {})",
                labels.join(", ")
            );
        }
    }
    let year = match args.year {
        Some(y) => y,
        None => Timestamp::now().to_rfc3339()[..4]
            .parse()
            .context("the system clock's year")?,
    };
    if args.estimate_offsets {
        let found = merge::estimate_offsets(&inputs, args.pattern.as_deref(), year)?;
        for e in &found {
            let input = &mut inputs[e.input];
            input.offset_ns = Some(e.offset_ns);
            eprintln!(
                "plumb: {} offset estimated from send/receive pairs: {} ±{}{}",
                plumb_model::text::escape_controls(&input.label),
                crate::cmd::clock::signed(e.offset_ns),
                crate::cmd::clock::millis(e.error_ns),
                if e.inconsistent {
                    " (the pairs contradict each other: that clock moved during the logs)"
                } else {
                    ""
                }
            );
        }
        for i in inputs.iter().filter(|i| i.offset_ns.is_none()) {
            eprintln!(
                "plumb: warning: no offset for {}: no send/receive pairs both ways link it to the others",
                plumb_model::text::escape_controls(&i.label)
            );
        }
    }
    merge::run(&merge::Options {
        inputs,
        pattern: args.pattern.clone(),
        year,
        causal_window_ns: args.causal_window,
        raw: args.raw,
        format: if args.json {
            Format::Json
        } else {
            Format::Text
        },
    })?;
    Ok(ExitCode::SUCCESS)
}
