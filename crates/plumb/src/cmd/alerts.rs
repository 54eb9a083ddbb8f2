//! `plumb alerts`: the collector's alerts, and its effective rules; and the
//! demo's fired disk alert.

use crate::config::Config;
use crate::out::outln;
use crate::target::get_json;
use anyhow::{Context, Result, bail};
use plumb_http::Client;
use plumb_model::Timestamp;
use plumb_model::alerts::{AlertList, AlertState};
use plumb_model::text::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `plumb alerts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The collector's URL (default: `collector =` or PLUMB_COLLECTOR).
    #[arg(long, global = true, value_name = "URL")]
    pub collector: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Firing alerts only (resolved ones are listed too by default).
    #[arg(long)]
    pub firing: bool,
    #[command(subcommand)]
    pub what: Option<What>,
}

/// What to show instead of the alerts.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// The effective alert rules.
    Rules,
}

/// The alerts and rules, from the collector.
pub fn fetch(client: &Client) -> Result<AlertList> {
    get_json(client, "/api/v1/alerts")
}

fn ago(t: Timestamp) -> String {
    let ns = (Timestamp::now().as_nanos() - t.as_nanos()).max(0);
    format!("{} ago", plumb_model::display::duration(ns))
}

/// Prints alerts as a table: STATE SEVERITY NAME LABELS SINCE.
pub fn print_table(list: &AlertList, firing_only: bool) {
    outln!(
        "{:<9} {:<9} {:<20} {:<50} SINCE",
        "STATE",
        "SEVERITY",
        "NAME",
        "LABELS"
    );
    let mut n = 0;
    for a in &list.alerts {
        if firing_only && a.state != AlertState::Firing {
            continue;
        }
        n += 1;
        let labels = a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let since = match a.state {
            AlertState::Resolved => format!("resolved {}", a.ends_at.map(ago).unwrap_or_default()),
            _ => ago(a.starts_at),
        };
        outln!(
            "{:<9} {:<9} {:<20} {:<50} {}",
            a.state.as_str(),
            a.severity.as_str(),
            Cell(&a.name),
            Cell(&labels),
            since
        );
        outln!("          {}", Cell(&a.annotations.summary));
    }
    if n == 0 {
        outln!("(no alerts)");
    }
}

/// Prints the rules as a table.
pub fn print_rules(list: &AlertList) {
    outln!(
        "{:<13} {:<19} {:<8} {:<9} {:>6}  CONDITION",
        "RULE",
        "ALERTNAME",
        "ENABLED",
        "SEVERITY",
        "FOR"
    );
    for r in &list.rules {
        outln!(
            "{:<13} {:<19} {:<8} {:<9} {:>6}  {}",
            r.rule,
            r.alertname,
            if r.enabled { "yes" } else { "no" },
            r.severity.as_str(),
            plumb_collector::alerts::human(Duration::from_secs_f64(r.for_s)),
            r.condition
        );
    }
    if list.rules.is_empty() {
        outln!("(the collector has stored no rules yet)");
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let Some(url) = args.collector.clone().or_else(|| cfg.collector.clone()) else {
        bail!(
            "no collector: pass --collector URL, or set PLUMB_COLLECTOR or `collector =` in plumb.toml"
        );
    };
    let client = crate::target::client(&cfg, &url)?;
    let list = fetch(&client)?;
    match (args.what, args.json) {
        (Some(What::Rules), true) => outln!("{}", serde_json::to_string_pretty(&list.rules)?),
        (Some(What::Rules), false) => print_rules(&list),
        (None, true) => {
            let mut l = list;
            if args.firing {
                l.alerts.retain(|a| a.state == AlertState::Firing);
            }
            outln!("{}", serde_json::to_string_pretty(&l.alerts)?)
        }
        (None, false) => print_table(&list, args.firing),
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo's alert receiver and the configuration that points at it.
#[derive(Debug)]
pub struct AlertsDemo {
    /// A plumb.toml with the demo's alert rules and webhook: give it to the
    /// demo's `plumb serve` as `PLUMB_CONFIG`.
    pub config: PathBuf,
    /// The mount the demo rule watches (the demo store's directory).
    pub mount: PathBuf,
    payloads: std::sync::mpsc::Receiver<String>,
}

/// First half of the alerts demo, before the collector starts: starts a
/// webhook receiver on 127.0.0.1 (a thread that prints what it gets) and
/// writes `<store_dir>/alerts-demo.toml` with a demo disk rule. The demo
/// threshold (warn below 100% available) is above any disk's real usage, so
/// it fires without filling anything; its note says so.
pub fn demo_prepare(store_dir: &Path) -> Result<AlertsDemo> {
    std::fs::create_dir_all(store_dir)
        .with_context(|| format!("cannot create {}", store_dir.display()))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot start the demo's webhook receiver")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-webhook".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_post(stream)
                    && tx.send(body).is_err()
                {
                    return;
                }
            }
        })?;
    let mount = std::fs::canonicalize(store_dir)?;
    let config = store_dir.join("alerts-demo.toml");
    let toml = format!(
        r#"# Written by `plumb demo`: alert rules for the demo's collector.
[alerts]
interval = "1s"

[alerts.rules.disk_low]
# Demo threshold: warn when less than 100% of the disk is available, which is
# always, so the alert fires without filling a disk. Real defaults: 10% / 5%.
warning_below = 100
critical_below = 0
mounts = [{mount:?}]
note = "(Demo threshold: warns below 100% available, so it always fires; the default is 10%.)"

[[alerts.webhook]]
url = "http://{addr}/alerts"
"#,
        mount = mount.display().to_string()
    );
    std::fs::write(&config, toml).with_context(|| format!("cannot write {}", config.display()))?;
    Ok(AlertsDemo {
        config,
        mount,
        payloads: rx,
    })
}

/// Reads one HTTP request and answers 200; returns its body.
fn read_post(mut stream: std::net::TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len.min(16 << 20)];
    reader.read_exact(&mut body).ok()?;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    String::from_utf8(body).ok()
}

/// Second half of the alerts demo, once the collector at `collector_url`
/// runs with [`AlertsDemo::config`]: starts an agent (`demo-disk`) that
/// reports the demo store's mount, waits (at most 20 s) for the disk alert
/// to reach the webhook receiver, prints the payload it got and what
/// `plumb alerts` shows. Returns the agent; the caller ends it (kill and
/// wait) when the demo is over.
pub fn demo_scene(
    collector_url: &str,
    demo: &AlertsDemo,
    spool_root: &Path,
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let agent = std::process::Command::new(&exe)
        .args(["agent", "--collector", collector_url, "--interval", "1s"])
        .args(["--name", "demo-disk", "--mount"])
        .arg(&demo.mount)
        .arg("--spool")
        .arg(spool_root.join("demo-disk"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("cannot start the demo's disk agent")?;
    outln!(
        "Started agent demo-disk reporting {} to {collector_url}; the demo disk rule watches it.",
        demo.mount.display()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while Instant::now() < deadline {
        match demo.payloads.recv_timeout(Duration::from_millis(200)) {
            Ok(body) if body.contains("DiskSpaceLow") => {
                got = Some(body);
                break;
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    match got {
        Some(body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            outln!("The webhook receiver got an Alertmanager-style payload:");
            outln!(
                "  status={} alerts={} groupKey={}",
                v["status"],
                v["alerts"].as_array().map_or(0, |a| a.len()),
                v["groupKey"]
            );
            if let Some(a) = v["alerts"].get(0) {
                outln!("  labels={}", a["labels"]);
                outln!("  summary={}", a["annotations"]["summary"]);
                outln!("  description={}", a["annotations"]["description"]);
            }
        }
        None => outln!("The demo disk alert did not reach the webhook receiver within 20 s."),
    }
    let cfg = Config::load()?;
    let client = crate::target::client(&cfg, collector_url)?;
    outln!("$ plumb alerts");
    print_table(&fetch(&client)?, false);
    Ok(agent)
}
