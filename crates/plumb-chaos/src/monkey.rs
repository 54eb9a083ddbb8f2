//! `plumb chaos monkey`: long-running random kills, as Chaos Monkey does,
//! with safety limits: never more than `max_down` targets with no process
//! left, a stop file that ends it, and allowed UTC time windows.

use crate::procs::{self, Proc};
use crate::scenario::{TargetKind, signal_name};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the monkey acts on and how.
#[derive(Debug)]
pub struct Monkey {
    /// Named targets (pattern or process name).
    pub targets: Vec<(String, TargetKind)>,
    /// Mean time between kills.
    pub every: Duration,
    /// Each kill moves by up to ± this (seeded).
    pub jitter: Duration,
    /// SIGKILL or SIGTERM.
    pub signal: i32,
    /// At most this many targets with no process at once.
    pub max_down: usize,
    /// When this file exists, the monkey stops.
    pub stop_file: Option<PathBuf>,
    /// Allowed UTC windows, minutes of the day (start, end); empty: always.
    pub windows: Vec<(u32, u32)>,
    /// The seed of the schedule and of every choice.
    pub seed: u64,
    /// Stop after this many ticks (None: until stopped).
    pub ticks: Option<u64>,
    /// Decide and say, but send nothing.
    pub dry_run: bool,
}

/// What one tick did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tick {
    /// When (UTC).
    pub at: String,
    /// `killed`, `skipped` or `stopped`.
    pub what: String,
    /// The target hit, if any.
    pub target: Option<String>,
    /// The pid hit, if any.
    pub pid: Option<u32>,
    /// In words.
    pub detail: String,
}

/// Parses `HH:MM-HH:MM` (UTC) into minutes of the day.
pub fn parse_window(s: &str) -> Result<(u32, u32)> {
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    match s.split_once('-').and_then(|(a, b)| Some((hm(a)?, hm(b)?))) {
        Some(w) => Ok(w),
        None => bail!("window {s:?}: give HH:MM-HH:MM in UTC, e.g. 09:00-17:00"),
    }
}

fn in_windows(windows: &[(u32, u32)], minute: u32) -> bool {
    windows.is_empty()
        || windows.iter().any(|&(a, b)| {
            if a <= b {
                (a..b).contains(&minute)
            } else {
                minute >= a || minute < b
            }
        })
}

fn minute_of_day_utc() -> u32 {
    let secs = plumb_model::Timestamp::now().as_nanos() / 1_000_000_000;
    ((secs % 86_400) / 60) as u32
}

fn processes_of(kind: &TargetKind, lineage: &[u32]) -> Vec<Proc> {
    if let TargetKind::Cgroup(dir) = kind {
        let mut v = crate::target::cgroup_procs(dir);
        v.retain(|p| !lineage.contains(&p.pid));
        return v;
    }
    procs::all()
        .into_iter()
        .filter(|p| p.state != 'Z' && !lineage.contains(&p.pid))
        .filter(|p| match kind {
            TargetKind::Pattern(re) => !p.cmdline.is_empty() && re.is_match(&p.cmdline),
            TargetKind::Name(n) => &p.comm == n,
            _ => false,
        })
        .collect()
}

/// One decision: which process to kill now, or why none.
fn choose(m: &Monkey, rng: &mut fastrand::Rng) -> Result<(String, Proc), String> {
    let lineage = procs::own_lineage();
    let found: Vec<(String, Vec<Proc>)> = m
        .targets
        .iter()
        .map(|(name, kind)| (name.clone(), processes_of(kind, &lineage)))
        .collect();
    let down = found.iter().filter(|(_, ps)| ps.is_empty()).count();
    if down > m.max_down {
        return Err(format!(
            "{down} target(s) have no process, over --max-down {}: waiting",
            m.max_down
        ));
    }
    // A target with one process left goes down if hit: only while the
    // limit allows one more.
    let candidates: Vec<&(String, Vec<Proc>)> = found
        .iter()
        .filter(|(_, ps)| !ps.is_empty() && (ps.len() > 1 || down < m.max_down))
        .collect();
    if candidates.is_empty() {
        return Err(if found.iter().all(|(_, ps)| ps.is_empty()) {
            "no target has a process".to_string()
        } else {
            format!(
                "every kill would take a target down, and {down} already are (--max-down {})",
                m.max_down
            )
        });
    }
    let (name, ps) = candidates[rng.usize(..candidates.len())];
    Ok((name.clone(), ps[rng.usize(..ps.len())].clone()))
}

/// Runs until the stop file appears, `ticks` ticks passed, or `stop` is
/// set; calls `each` with every tick.
pub fn run(m: &Monkey, stop: &AtomicBool, each: &mut dyn FnMut(&Tick)) -> Vec<Tick> {
    let mut rng = fastrand::Rng::with_seed(m.seed);
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut say = |t: Tick, out: &mut Vec<Tick>| {
        each(&t);
        out.push(t);
    };
    let now = || plumb_model::Timestamp::now().to_rfc3339();
    loop {
        if m.ticks.is_some_and(|t| n >= t) {
            break;
        }
        let j = m.jitter.as_nanos() as i64;
        let off = if j > 0 { rng.i64(-j..=j) } else { 0 };
        let wait = Duration::from_nanos((m.every.as_nanos() as i64 + off).max(0) as u64);
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(wait));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        n += 1;
        if let Some(f) = &m.stop_file
            && f.exists()
        {
            say(
                Tick {
                    at: now(),
                    what: "stopped".into(),
                    target: None,
                    pid: None,
                    detail: format!("stop file {} exists", f.display()),
                },
                &mut out,
            );
            break;
        }
        if !in_windows(&m.windows, minute_of_day_utc()) {
            say(
                Tick {
                    at: now(),
                    what: "skipped".into(),
                    target: None,
                    pid: None,
                    detail: "outside the allowed time windows".into(),
                },
                &mut out,
            );
            continue;
        }
        let t = match choose(m, &mut rng) {
            Err(why) => Tick {
                at: now(),
                what: "skipped".into(),
                target: None,
                pid: None,
                detail: why,
            },
            Ok((name, p)) => {
                let sent = m.dry_run || procs::signal(p.pid, p.start, m.signal);
                Tick {
                    at: now(),
                    what: if !sent {
                        "skipped".into()
                    } else if m.dry_run {
                        "would kill".into()
                    } else {
                        "killed".into()
                    },
                    target: Some(name.clone()),
                    pid: Some(p.pid),
                    detail: if sent {
                        format!(
                            "{} pid {} ({}) of `{name}`",
                            signal_name(m.signal),
                            p.pid,
                            p.cmdline
                        )
                    } else {
                        format!("pid {} of `{name}` was gone", p.pid)
                    },
                }
            }
        };
        say(t, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_midnight() {
        let w = parse_window("22:00-06:00").unwrap();
        assert!(in_windows(&[w], 23 * 60));
        assert!(in_windows(&[w], 60));
        assert!(!in_windows(&[w], 12 * 60));
        assert!(in_windows(&[], 12 * 60));
        assert!(parse_window("25:00-01:00").is_err());
    }
}
