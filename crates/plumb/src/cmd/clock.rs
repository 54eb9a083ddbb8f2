//! `plumb clock`: each node's clock against the collector's, as its agent
//! measured it, and the collector's own sync status, read from the
//! collector (or with `--local` its store, on its machine) by the rule in
//! target.rs; `plumb clock probe`: this host's clock against a collector,
//! measured now. plumb measures clocks and says how far off they are;
//! setting them is chrony's (or ntpd's) job, and the output says so.

use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target, get_json};
use anyhow::{Context, Result};
use plumb_agent::clock::{Prober, probe_address};
use plumb_collector::clock::ClockView;
use plumb_model::Timestamp;
use plumb_model::clock::{Estimate, KernelSync, Policy, Sample, Window};
use plumb_model::text::Cell;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `plumb clock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Without a collector, the local store is read (a collector's own
    /// store, on its machine).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub what: Option<What>,
}

/// `plumb clock` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Measure this host's clock against a collector now, with a few UDP
    /// exchanges (NTP's four timestamps), and say how this host's kernel
    /// sees its own synchronization.
    Probe {
        /// The collector: its URL (probes go to the same port number over
        /// UDP) or HOST:PORT of its clock probe port (`--clock-port`).
        target: String,
        /// Exchanges to make, a few milliseconds apart.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        /// How long to wait for each answer.
        #[arg(long, default_value = "1s", value_parser = positive_duration)]
        timeout: Duration,
    },
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns <= 0 {
        return Err(format!("`{s}` is not a positive duration"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Time between the exchanges of one probe: 5 ms, so the default 8 take a
/// few tens of ms; 20 ms past 48 exchanges, so a long probe stays under the
/// server's limit of 64 replies a second per source
/// (`plumb_collector::clock::REPLIES_PER_SECOND`).
fn gap(count: u32) -> Duration {
    if count <= 48 {
        Duration::from_millis(5)
    } else {
        Duration::from_secs(1) / (plumb_collector::clock::REPLIES_PER_SECOND - 14)
    }
}

/// What `plumb clock probe --json` prints.
#[derive(Debug, Serialize)]
struct ProbeReport {
    /// The UDP address probed.
    address: String,
    /// Exchanges answered, of those sent.
    answered: usize,
    sent: u32,
    /// The window's estimate at the last exchange.
    estimate: Estimate,
    /// The sample chosen (lowest bound).
    best: Sample,
    /// Median round trip.
    median_delay_ns: i64,
    /// Every sample.
    samples: Vec<Sample>,
    /// This host's kernel on its own clock; absent when adjtimex failed.
    local_clock: Option<KernelSync>,
}

/// A signed offset in the unit that reads best: `+5.000012 s`,
/// `-0.042 ms`.
pub fn signed(ns: i64) -> String {
    let sign = if ns < 0 { '-' } else { '+' };
    let a = ns.unsigned_abs();
    if a >= 1_000_000_000 {
        format!("{sign}{:.6} s", a as f64 / 1e9)
    } else {
        format!("{sign}{:.3} ms", a as f64 / 1e6)
    }
}

/// An unsigned amount of time in milliseconds, to the microsecond.
pub fn millis(ns: i64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// The kernel's view in words.
pub fn sync_words(k: &KernelSync) -> String {
    if k.synchronized {
        format!(
            "synchronized (kernel state {}, estimated error {} us, maximum error {} us, frequency correction {:+.3} ppm)",
            k.state, k.est_error_us, k.max_error_us, k.freq_ppm
        )
    } else {
        format!(
            "NOT synchronized (the kernel's STA_UNSYNC is set: no time daemon disciplines this clock; maximum error {} us)",
            k.max_error_us
        )
    }
}

/// The closing line of every clock report.
pub const WHO_SETS_CLOCKS: &str = "plumb measures clocks; setting them is chrony's job (see `chronyc tracking` and `chronyc sources`).";

pub fn main(args: Args) -> Result<ExitCode> {
    match args.what {
        Some(What::Probe {
            target,
            count,
            timeout,
        }) => probe(&target, count, timeout, args.json),
        None => fleet(&args.source, args.json),
    }
}

/// `plumb clock`: the fleet's clocks.
fn fleet(source: &SourceArgs, json: bool) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let target = source.target(&cfg)?;
    let whose = match target {
        Target::Collector(_) => "collector clock",
        // The local store is a collector's on the collector's own host;
        // anywhere else, the clock read is this host's.
        Target::Local => "this host's clock",
    };
    let view: ClockView = match target {
        Target::Collector(client) => get_json(&client, "/api/v1/clock")?,
        Target::Local => {
            let max = cfg.alerts.rules.clock_offset.max_offset.as_nanos();
            if cfg.home.join(plumb_store::DB_FILE).exists() {
                let store = plumb_store::Store::open_read_only(&cfg.home)
                    .with_context(|| format!("cannot open the store in {}", cfg.home.display()))?;
                plumb_collector::clock::clock_view(&store, max, Timestamp::now())?
            } else {
                // No store yet: no node has reported here; the host's own
                // clock is still worth saying.
                let (collector, collector_error) = match plumb_collector::clock::kernel_sync() {
                    Ok(k) => (Some(k), None),
                    Err(e) => (None, Some(format!("adjtimex failed: {e}"))),
                };
                ClockView {
                    collector,
                    collector_error,
                    max_offset_ns: max,
                    nodes: Vec::new(),
                }
            }
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<20} {:>16} {:>12} {:>11} {:>10} {:>12}  ",
        "NODE",
        "OFFSET",
        "ERROR",
        "DRIFT",
        "DELAY",
        "MEASURED"
    );
    for n in &view.nodes {
        outln!(
            "{:<20} {:>16} {:>12} {:>11} {:>10} {:>12}  {}",
            Cell(&n.node),
            signed(n.offset_ns),
            format!("±{}", millis(n.error_ns)),
            n.drift_ppm
                .map_or_else(|| "-".into(), |d| format!("{d:+.2} ppm")),
            millis(n.delay_ns),
            format!("{} ago", plumb_model::display::duration(n.age_ns)),
            if n.beyond {
                format!(
                    "BEYOND {}",
                    millis(view.max_offset_ns)
                        .trim_end_matches(".000 ms")
                        .to_string()
                        + " ms"
                )
            } else {
                String::new()
            }
        );
    }
    if view.nodes.is_empty() {
        outln!(
            "(no clock measured yet: agents measure theirs against the collector every 10 s; `plumb clock probe URL` measures this host now)"
        );
    }
    outln!(
        "\n{whose}: {}",
        match (&view.collector, &view.collector_error) {
            (Some(k), _) => sync_words(k),
            (None, Some(e)) => format!("unknown ({e})"),
            (None, None) => "unknown".into(),
        }
    );
    outln!("offsets are each node's clock minus the collector's; {WHO_SETS_CLOCKS}");
    Ok(ExitCode::SUCCESS)
}

/// This host's clock against the collector at `target` (URL or
/// HOST:PORT), measured now with `count` exchanges: the samples, the
/// estimate, and the sample it chose.
pub(crate) fn measure_now(
    target: &str,
    count: u32,
    timeout: Duration,
) -> Result<(Vec<Sample>, plumb_model::clock::Estimate, Sample)> {
    let addr = probe_address(target)?;
    let prober = Prober::new(addr, timeout)?;
    let samples = prober
        .measure(count as usize, gap(count))
        .with_context(|| format!("cannot measure the clock against {target}"))?;
    let mut window = Window::new(Policy {
        capacity: samples.len(),
        ..Policy::default()
    });
    for s in &samples {
        window.push(*s);
    }
    let last = samples
        .last()
        .expect("measure returns a sample or an error");
    let estimate = window.estimate(last.at()).expect("a sample was pushed");
    let best = *window
        .samples()
        .find(|s| s.at() == estimate.at.as_nanos())
        .unwrap_or(last);
    Ok((samples, estimate, best))
}

fn probe(target: &str, count: u32, timeout: Duration, json: bool) -> Result<ExitCode> {
    let addr = probe_address(target)?;
    let (samples, estimate, best) = measure_now(target, count, timeout)?;
    let mut delays: Vec<i64> = samples.iter().map(Sample::delay_ns).collect();
    delays.sort_unstable();
    let median_delay_ns = delays[delays.len() / 2];
    let local_clock = match plumb_collector::clock::kernel_sync() {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the kernel's clock status (adjtimex)");
            None
        }
    };
    if json {
        let r = ProbeReport {
            address: addr.to_string(),
            answered: samples.len(),
            sent: count,
            estimate,
            best,
            median_delay_ns,
            samples,
            local_clock,
        };
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let kv = |k: &str, v: String| outln!("{k:<13} {v}");
    kv("collector", format!("udp {addr}"));
    kv(
        "offset",
        format!(
            "{}  (this clock minus the collector's: {})",
            signed(estimate.offset_ns),
            if estimate.offset_ns >= 0 {
                "this host is ahead"
            } else {
                "this host is behind"
            }
        ),
    );
    kv(
        "error bound",
        format!(
            "±{}  (the true offset lies within it whatever way the delay splits)",
            millis(estimate.error_ns)
        ),
    );
    kv(
        "delay",
        format!(
            "{} best, {} median",
            millis(estimate.delay_ns),
            millis(median_delay_ns)
        ),
    );
    kv(
        "best sample",
        format!(
            "T1 {}  T2 {}  T3 {}  T4 {}",
            best.t1, best.t2, best.t3, best.t4
        ),
    );
    kv(
        "exchanges",
        format!("{} answered of {count}", samples.len()),
    );
    kv(
        "local clock",
        local_clock
            .as_ref()
            .map_or_else(|| "unknown (adjtimex failed)".into(), sync_words),
    );
    outln!("{WHO_SETS_CLOCKS}");
    Ok(ExitCode::SUCCESS)
}

/// How far ahead the demo's skewed node runs.
const DEMO_SKEW: &str = "+2.5s";
const DEMO_SKEW_NS: i64 = 2_500_000_000;

/// `plumb demo`'s skewed clock: an agent `demo-skewed` whose clock runs
/// 2.5 s ahead (libfaketime when installed, else a simulated offset, said
/// so), `plumb clock` showing it, and a request/response exchange between
/// demo-node-2 and the skewed node, each side logging on its own clock
/// through OTLP, put in order by `plumb timeline`. Returns the agent.
pub fn demo_scene(
    collector: &str,
    otlp: &str,
    home: &std::path::Path,
    spool: &std::path::Path,
) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let mut cmd = Command::new(&exe);
    cmd.env("PLUMB_HOME", home)
        .args(["agent", "--collector", collector, "--name", "demo-skewed"])
        .args(["--interval", "1s", "--clock-every", "250ms", "--spool"])
        .arg(spool)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let how = match plumb_chaos::target::faketime_lib() {
        Some(lib) => {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME", DEMO_SKEW)
                .env("FAKETIME_DONT_RESET", "1");
            "its clock runs 2.5 s ahead (libfaketime)"
        }
        None => {
            cmd.args(["--simulate-clock-offset", DEMO_SKEW]);
            "a simulated clock 2.5 s ahead (libfaketime is not installed: apt install faketime for a real one)"
        }
    };
    let agent = cmd.spawn().context("cannot start the skewed agent")?;
    outln!("   started demo-skewed: {how}");
    let cfg = Config::load()?;
    let client = crate::target::client(&cfg, collector)?;
    // Bounded: the first estimate comes with a heartbeat a second or two in.
    for _ in 0..40 {
        let v: ClockView = get_json(&client, "/api/v1/clock")?;
        if v.nodes.iter().any(|n| n.node == "demo-skewed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let show = |args: &[&str]| -> Result<()> {
        outln!("── $ plumb {}", args.join(" "));
        let status = Command::new(&exe)
            .env("PLUMB_HOME", home)
            .args(args)
            .args(["--collector", collector])
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run plumb {}", args.join(" ")))?;
        if !status.success() {
            anyhow::bail!("`plumb {}` failed with {status}", args.join(" "));
        }
        Ok(())
    };
    show(&["clock"])?;
    if otlp.is_empty() {
        outln!("   (the collector's OTLP port is off, so no exchange is logged for the timeline)");
        return Ok(agent);
    }
    // demo-node-2 asks demo-skewed for prices; each logs its side on its
    // own clock, demo-skewed's 2.5 s ahead, so on raw timestamps every
    // answer comes before its question.
    let logs = plumb_http::Client::new(&plumb_http::Config::new(otlp))?;
    let now = Timestamp::now().as_nanos();
    const MS: i64 = 1_000_000;
    let mut records = Vec::new();
    for k in 0..3i64 {
        let t = now - 400 * MS + k * 100 * MS;
        records.push((
            "demo-node-2",
            t,
            format!("GET /price/{k} plumb.msg.send=q{k}"),
        ));
        records.push((
            "demo-skewed",
            t + 4 * MS + DEMO_SKEW_NS,
            format!("pricing item {k} plumb.msg.recv=q{k}"),
        ));
        records.push((
            "demo-skewed",
            t + 9 * MS + DEMO_SKEW_NS,
            format!("200 price={} plumb.msg.send=r{k}", 10 + k),
        ));
        records.push((
            "demo-node-2",
            t + 12 * MS,
            format!("got 200 plumb.msg.recv=r{k}"),
        ));
    }
    for (host, ns, body) in &records {
        let req = serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "shop"}},
            {"key": "host.name", "value": {"stringValue": host}}]},
            "scopeLogs": [{"logRecords": [{"timeUnixNano": ns.to_string(),
                "severityNumber": 9, "body": {"stringValue": body}}]}]}]});
        logs.post("/v1/logs")
            .json(&req)
            .send()
            .with_context(|| format!("cannot send the demo's logs to {otlp}"))?;
    }
    outln!(
        "   demo-node-2 asked demo-skewed for three prices; each logged its side on its own clock"
    );
    show(&["timeline", "--grep", "plumb.msg.", "--raw"])?;
    outln!(
        "   each of demo-skewed's lines is placed at its own time minus its measured offset (the CORRECTION column), so every answer follows its question; by raw time every answer would come first."
    );
    Ok(agent)
}
