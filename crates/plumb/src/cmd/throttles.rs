//! `plumb throttles`: each throttle, its N, who holds it (node, run, pid,
//! since when, how long its lease has left) and who waits, in order. Reads
//! the collector (fleet-wide throttles are leases there); without one, the
//! slot files of this host's throttles under `<plumb home>/throttle`,
//! which say only how many slots are held.

use crate::config::Config;
use crate::out::outln;
use crate::target::{SourceArgs, Target, get_json};
use anyhow::{Context, Result};
use plumb_model::Timestamp;
use plumb_model::display::duration;
use plumb_model::throttle::{Lease, ThrottleView};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `plumb throttles`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Without a collector (or with --local), this host's slot files.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A host throttle: its slot files and how many are held now.
#[derive(Debug, serde::Serialize)]
struct HostThrottle {
    name: String,
    slot_files: u32,
    held: u32,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    match args.source.target(&cfg)? {
        Target::Collector(client) => {
            let views: Vec<ThrottleView> = get_json(&client, "/api/v1/throttles")?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_fleet(&views, Timestamp::now());
            }
        }
        Target::Local => {
            let dir = cfg.home.join("throttle");
            let host = host_throttles(&dir)?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&host)?);
            } else {
                eprintln!(
                    "plumb: no collector configured: these are this host's throttles (slot files in {}); with a collector, throttles are fleet-wide and listed with their holders and queue",
                    dir.display()
                );
                if host.is_empty() {
                    outln!("(no throttle used on this host yet)");
                }
                for t in &host {
                    outln!(
                        "{}  {} of {} slot{} held",
                        t.name,
                        t.held,
                        t.slot_files,
                        if t.slot_files == 1 { "" } else { "s" }
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short_run(l: &Lease) -> String {
    l.run_id
        .map(|u| u.simple().to_string()[..12].to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_fleet(views: &[ThrottleView], now: Timestamp) {
    if views.is_empty() {
        outln!("(no throttle is held or waited for)");
        return;
    }
    let ago = |t: Timestamp| duration((now.as_nanos() - t.as_nanos()).max(0));
    let left = |t: Timestamp| duration((t.as_nanos() - now.as_nanos()).max(0));
    for (i, v) in views.iter().enumerate() {
        if i > 0 {
            outln!("");
        }
        outln!(
            "throttle {}: {} of {} held, {} waiting",
            v.name,
            v.holders.len(),
            v.slots,
            v.queue.len()
        );
        outln!(
            "  {:<8} {:<20} {:<12} {:>8} {:>10} {:>10}",
            "",
            "NODE",
            "RUN",
            "PID",
            "SINCE",
            "LEASE LEFT"
        );
        for l in &v.holders {
            outln!(
                "  {:<8} {:<20} {:<12} {:>8} {:>10} {:>10}",
                "holds",
                l.node,
                short_run(l),
                l.pid.map_or("-".into(), |p| p.to_string()),
                ago(l.granted.unwrap_or(l.enqueued)),
                left(l.expires)
            );
        }
        for (k, l) in v.queue.iter().enumerate() {
            outln!(
                "  {:<8} {:<20} {:<12} {:>8} {:>10} {:>10}",
                format!("waits {}", k + 1),
                l.node,
                short_run(l),
                l.pid.map_or("-".into(), |p| p.to_string()),
                ago(l.enqueued),
                left(l.expires)
            );
        }
    }
}

/// This host's throttles: each directory of slot files, and how many of
/// its slots are locked now (tried with a non-blocking lock, let go at
/// once).
fn host_throttles(dir: &Path) -> Result<Vec<HostThrottle>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let mut t = HostThrottle {
            name: entry.file_name().to_string_lossy().into_owned(),
            slot_files: 0,
            held: 0,
        };
        let Ok(slots) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for slot in slots.flatten() {
            if !slot.file_name().to_string_lossy().starts_with("slot-") {
                continue;
            }
            t.slot_files += 1;
            let Ok(f) = std::fs::File::open(slot.path()) else {
                continue;
            };
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                t.held += 1;
            }
            // Closing `f` lets go of the lock taken, if any.
        }
        out.push(t);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
