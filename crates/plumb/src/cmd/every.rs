//! `plumb every`: run a command periodically, each run recorded as
//! `plumb run --name NAME -- CMD` records it, with starts spread over a
//! splay window and overlapping starts skipped (and recorded), never
//! stacked.
//!
//! Each tick spawns this executable as `plumb run`, so every recording
//! path (local store, spool, outbox and collector) is the one `plumb run`
//! uses. The schedule itself is `plumb_model::schedule`, pure.

use crate::cmd::run;
use anyhow::{Context, Result, bail};
use clap::Parser;
use plumb_model::schedule::{Cron, Schedule, parse_interval, stable_splay};
use plumb_model::{Timestamp, Uuid, WaitKind, Waiting};
use std::ffi::OsString;
use std::process::{Child, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

/// Arguments of `plumb every`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  plumb every 10m -- ./backup.sh
  plumb every 1h --splay 10m --stable-splay -- ./report.sh
  plumb every --at '30 2 * * mon-fri' --name nightly -- make -C /srv/app check")]
pub struct Args {
    /// How often: `30s`, `10m`, `1h30m` (at least 1s). Ticks fall on
    /// multiples of the interval since the Unix epoch (UTC), so `10m`
    /// ticks at :00, :10, :20 on every host; the first is the next one.
    #[arg(value_name = "INTERVAL")]
    pub interval: Option<String>,
    /// Start at the minutes this 5-field cron expression names, in UTC
    /// (`*/5 * * * *`, `30 2 * * mon-fri`), instead of an INTERVAL.
    #[arg(long, value_name = "CRON")]
    pub at: Option<String>,
    /// Run name (default: as `plumb run`'s, the script or program run).
    #[arg(long)]
    pub name: Option<String>,
    /// Delay each start by a random amount in [0, D), drawn anew each
    /// time (as systemd's RandomizedDelaySec).
    #[arg(long, value_name = "D")]
    pub splay: Option<String>,
    /// Make the delay a fixed offset in [0, D) derived from the host id
    /// and the run name, so a fleet spreads evenly and each host starts
    /// at the same offset every time (as systemd's FixedRandomDelay). D
    /// is --splay's, else the INTERVAL (with --at, --splay is needed).
    #[arg(long)]
    pub stable_splay: bool,
    /// A further random delay in [0, D) per start, on top of any splay.
    #[arg(long, value_name = "D")]
    pub jitter: Option<String>,
    /// Stop after N ticks (a skipped start counts), once the last run has
    /// ended.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// The host id --stable-splay hashes (default: /etc/machine-id, else
    /// the host name).
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// Ship the runs to this collector (`http://host:7700`), as `plumb run
    /// --collector`.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// Record to the local store even when a collector is configured.
    #[arg(long, conflicts_with = "collector")]
    pub local: bool,
    /// Words before `--` that are not options: a mistake, said as such.
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
    pub stray: Vec<OsString>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The parsed form of `plumb run`'s arguments, to build the records of
/// skipped starts exactly as a `plumb run` with the same arguments would.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct RunArgv {
    #[command(flatten)]
    args: run::Args,
}

/// How each start is moved from its tick.
#[derive(Debug, Clone, Copy)]
struct Delays {
    /// A fixed offset (--stable-splay), nanoseconds.
    fixed: i64,
    /// The random splay's window (--splay without --stable-splay).
    random: i64,
    /// The jitter's window.
    jitter: i64,
}

impl Delays {
    /// This start's delay and how it is made up, in words.
    fn draw(&self) -> (i64, String) {
        let pick = |w: i64| {
            if w > 0 { fastrand::i64(0..w) } else { 0 }
        };
        let (splay, what) = if self.fixed > 0 {
            (self.fixed, "stable splay")
        } else {
            (pick(self.random), "splay")
        };
        let jitter = pick(self.jitter);
        let mut words = Vec::new();
        if self.fixed > 0 || self.random > 0 {
            words.push(format!("{what} {}", plumb_model::display::duration(splay)));
        }
        if self.jitter > 0 {
            words.push(format!("jitter {}", plumb_model::display::duration(jitter)));
        }
        (splay + jitter, words.join(" + "))
    }
}

/// Everything `plumb every` needs, checked before anything runs.
#[derive(Debug)]
struct Plan {
    schedule: Schedule,
    name: String,
    delays: Delays,
    count: Option<u64>,
    /// `plumb run`'s arguments before the run id and the command.
    run_args: Vec<OsString>,
    command: Vec<OsString>,
}

fn duration_flag(flag: &str, s: &str) -> Result<i64> {
    plumb_model::parse_duration_ns(s).map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))
}

fn plan(args: &Args) -> Result<Plan> {
    if let Some(first) = args.stray.first() {
        let words: Vec<String> = args
            .stray
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        let hint = if first.to_string_lossy().starts_with('-') {
            format!(
                "`{}` is not an option of `plumb every` (see `plumb every --help`)",
                first.to_string_lossy()
            )
        } else {
            format!("`{}` follows the INTERVAL without `--`", words.join(" "))
        };
        bail!("{hint}; the command to run goes after `--`, as in `plumb every 10m -- ./job.sh`");
    }
    let schedule = match (&args.interval, &args.at) {
        (Some(_), Some(_)) => {
            bail!("give an INTERVAL or --at CRON, not both")
        }
        (None, None) => bail!(
            "`plumb every` needs an INTERVAL (like `10m`) or --at CRON (like `--at '*/5 * * * *'`)"
        ),
        (Some(i), None) => Schedule::Every(parse_interval(i).map_err(anyhow::Error::msg)?),
        (None, Some(c)) => Schedule::Cron(Cron::parse(c).map_err(anyhow::Error::msg)?),
    };
    if args.command.is_empty() {
        bail!("no command to run: it goes after `--`, as in `plumb every 10m -- ./job.sh`");
    }
    if schedule.next_after(Timestamp::now()).is_none() {
        bail!(
            "--at `{}`: the expression matches no day (such as the 30th of February), so the command would never run",
            args.at.as_deref().unwrap_or_default()
        );
    }
    let splay = args
        .splay
        .as_deref()
        .map(|s| duration_flag("--splay", s))
        .transpose()?;
    let jitter = args
        .jitter
        .as_deref()
        .map(|s| duration_flag("--jitter", s))
        .transpose()?
        .unwrap_or(0);
    if let Schedule::Every(interval) = schedule {
        let total = splay.unwrap_or(0) + jitter;
        if total > interval {
            bail!(
                "--splay and --jitter add up to {}, more than the interval {}: a start would fall after the next tick",
                plumb_model::display::duration(total),
                plumb_model::display::duration(interval)
            );
        }
    }
    if let Schedule::Cron(cron) = &schedule {
        let total = splay.unwrap_or(0) + jitter;
        if total > 0 {
            let gap = shortest_gap(cron);
            if total > gap {
                bail!(
                    "--splay and --jitter add up to {}, more than the {} between two starts of `{cron}`: a start would fall after the next one",
                    plumb_model::display::duration(total),
                    plumb_model::display::duration(gap)
                );
            }
        }
    }
    if args.count == Some(0) {
        bail!("--count 0 would run nothing: give 1 or more (or leave it out to run until stopped)");
    }
    let name = match &args.name {
        Some(n) if n.trim().is_empty() => bail!("--name is empty: give the job a name"),
        Some(n) => n.clone(),
        None => plumb_record::name::default_name(&args.command),
    };
    let delays = if args.stable_splay {
        let window = match (splay, &schedule) {
            (Some(w), _) => w,
            (None, Schedule::Every(i)) => *i,
            (None, Schedule::Cron(_)) => bail!(
                "--stable-splay with --at needs --splay D: the window to spread the starts over"
            ),
        };
        let host = host_id(args.host_id.as_deref())?;
        Delays {
            fixed: stable_splay(&host, &name, window),
            random: 0,
            jitter,
        }
    } else {
        if args.host_id.is_some() {
            bail!("--host-id is used only by --stable-splay");
        }
        Delays {
            fixed: 0,
            random: splay.unwrap_or(0),
            jitter,
        }
    };
    check_program(&args.command[0])?;
    let mut run_args: Vec<OsString> = vec!["--name".into(), name.clone().into()];
    if let Some(url) = &args.collector {
        run_args.push("--collector".into());
        run_args.push(url.into());
    }
    if args.local {
        run_args.push("--local".into());
    }
    Ok(Plan {
        schedule,
        name,
        delays,
        count: args.count,
        run_args,
        command: args.command.clone(),
    })
}

/// The shortest time between two of the next 500 starts of `cron`.
fn shortest_gap(cron: &Cron) -> i64 {
    let mut gap = i64::MAX;
    let Some(mut prev) = cron.next_after(Timestamp::now()) else {
        return gap;
    };
    for _ in 0..500 {
        let Some(next) = cron.next_after(prev) else {
            break;
        };
        gap = gap.min(next.as_nanos() - prev.as_nanos());
        prev = next;
    }
    gap
}

/// The host id --stable-splay hashes: the flag, else /etc/machine-id,
/// else the host name.
fn host_id(flag: Option<&str>) -> Result<String> {
    if let Some(id) = flag {
        if id.trim().is_empty() {
            bail!("--host-id is empty: give the id to derive the offset from");
        }
        return Ok(id.to_string());
    }
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id")
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let host = plumb_record::host::hostname();
    if host.is_empty() {
        bail!("--stable-splay: no /etc/machine-id and no host name; give --host-id ID");
    }
    Ok(host)
}

/// A program that cannot be found would fail at every tick, forever: say
/// so once, before anything is scheduled.
fn check_program(program: &OsString) -> Result<()> {
    let p = std::path::Path::new(program);
    if p.components().count() > 1 {
        if !p.exists() {
            bail!("`{}` does not exist", p.display());
        }
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(p).is_file()) {
        return Ok(());
    }
    bail!(
        "`{}` is not found on PATH, so every run would fail",
        p.display()
    )
}

/// The last signal received, and whether a process sent it (rather than
/// the terminal, whose Ctrl-C already reached the child in our group).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SENT_BY_PROCESS: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    // SI_USER (0), SI_QUEUE (-1), SI_TKILL (-6): sent by a process.
    SENT_BY_PROCESS.store(code <= 0, Ordering::SeqCst);
    SIGNAL.store(sig, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn install_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler; the handler only
        // stores to atomics, which is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("installing signal handlers");
        }
    }
    Ok(())
}

/// The run in progress.
#[derive(Debug)]
struct Current {
    child: Child,
    id: Uuid,
    started: Timestamp,
}

/// What the loop keeps between ticks.
#[derive(Debug, Default)]
struct Outcomes {
    started: u64,
    skipped: u64,
    failed: u64,
}

/// Reaps the run if it ended.
fn reap(current: &mut Option<Current>, out: &mut Outcomes) -> Result<()> {
    if let Some(c) = current
        && let Some(status) = c.child.try_wait().context("waiting for `plumb run`")?
    {
        if !status.success() {
            out.failed += 1;
        }
        *current = None;
    }
    Ok(())
}

/// How often the loop looks at the child and at signals while waiting.
const POLL: Duration = Duration::from_millis(50);

pub fn main(args: Args) -> Result<ExitCode> {
    let plan = plan(&args)?;
    let run_cfg_args = RunArgv::try_parse_from(
        plan.run_args
            .iter()
            .cloned()
            .chain(["--".into()])
            .chain(plan.command.iter().cloned()),
    )
    .context("building the arguments of `plumb run`")?
    .args;
    let cfg = run::config(&run_cfg_args)?;
    let exe = std::env::current_exe().context("finding the plumb executable to run each tick")?;
    install_handlers()?;
    let mut current: Option<Current> = None;
    let mut out = Outcomes::default();
    let mut ticks = 0u64;
    let mut prev_tick: Option<Timestamp> = None;
    let mut seen_signals = 0u32;
    let interrupted = 'ticks: loop {
        if plan.count.is_some_and(|n| ticks >= n) {
            break None;
        }
        let now = Timestamp::now();
        let from_now = Timestamp::from_nanos(now.as_nanos() - plan.delays.fixed);
        // After a tick, the next one; but after a stall (a suspended
        // machine) that left it behind by more than a second, the next one
        // from now rather than a burst of the missed ones.
        let next = match prev_tick.and_then(|p| plan.schedule.next_after(p)) {
            Some(t) if t.as_nanos() >= from_now.as_nanos() - 1_000_000_000 => Some(t),
            _ => plan.schedule.next_after(from_now),
        };
        let Some(tick) = next else {
            bail!("the schedule has no further start (past the year 2262)");
        };
        let (delay, words) = plan.delays.draw();
        let start = Timestamp::from_nanos(tick.as_nanos() + delay);
        let shown = Timestamp::from_nanos(start.as_nanos() / 1_000_000 * 1_000_000);
        if words.is_empty() {
            eprintln!("plumb: next `{}` at {shown}", plan.name);
        } else {
            eprintln!("plumb: next `{}` at {shown} ({words})", plan.name);
        }
        // Wait for the start, reaping the run in progress meanwhile.
        loop {
            reap(&mut current, &mut out)?;
            if SIGNALS.load(Ordering::SeqCst) != seen_signals {
                break 'ticks Some(SIGNAL.load(Ordering::SeqCst));
            }
            let left = start.as_nanos() - Timestamp::now().as_nanos();
            if left <= 0 {
                break;
            }
            std::thread::sleep(POLL.min(Duration::from_nanos(left as u64)));
        }
        ticks += 1;
        prev_tick = Some(tick);
        if let Some(c) = &current {
            let reason = format!(
                "skipped: previous run {} still running (started {})",
                c.id,
                c.started.to_rfc3339_secs()
            );
            out.skipped += 1;
            let waiting = Waiting {
                kind: WaitKind::Overlap,
                reason: reason.clone(),
                since: start,
                until: None,
                ended: None,
            };
            let id = run::record_not_started(&cfg, &run_cfg_args, waiting)
                .context("recording a skipped start")?;
            eprintln!("plumb: `{}` {reason}; recorded as run {id}", plan.name);
            continue;
        }
        let id = plumb_model::new_id();
        let child = std::process::Command::new(&exe)
            .arg("run")
            .args(&plan.run_args)
            .arg("--run-id")
            .arg(id.to_string())
            .arg("--")
            .args(&plan.command)
            .spawn()
            .with_context(|| format!("starting {} run", exe.display()))?;
        out.started += 1;
        current = Some(Current {
            child,
            id,
            started: Timestamp::now(),
        });
    };
    // Stopping: no more starts; the run in progress ends on its own (or on
    // the signal, forwarded when a process sent it, since the terminal's
    // already reached it).
    let mut stop_signal = interrupted;
    if let Some(c) = &current
        && stop_signal.is_some()
    {
        eprintln!(
            "plumb: stopping `{}`: no more starts; waiting for run {}",
            plan.name, c.id
        );
    }
    loop {
        let n = SIGNALS.load(Ordering::SeqCst);
        if n != seen_signals {
            seen_signals = n;
            let sig = SIGNAL.load(Ordering::SeqCst);
            stop_signal = Some(sig);
            if let Some(c) = &current
                && SENT_BY_PROCESS.load(Ordering::SeqCst)
            {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(c.child.id() as libc::pid_t, sig) };
            }
        }
        reap(&mut current, &mut out)?;
        if current.is_none() {
            break;
        }
        std::thread::sleep(POLL);
    }
    if out.skipped > 0 {
        eprintln!(
            "plumb: `{}`: {} run{} started, {} start{} skipped (overlap)",
            plan.name,
            out.started,
            if out.started == 1 { "" } else { "s" },
            out.skipped,
            if out.skipped == 1 { "" } else { "s" }
        );
    }
    Ok(match stop_signal {
        Some(libc::SIGTERM) => ExitCode::from(crate::exit::TERMINATED),
        Some(_) => ExitCode::from(crate::exit::INTERRUPTED),
        None if out.failed > 0 => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    })
}
