//! Injecting one fault and removing it. Every injection that could outlive
//! plumb is journaled first ([`crate::journal`]).

use crate::journal::{Journal, Undo, Written};
use crate::procs;
use crate::scenario::{Fault, FaultKind, Fill, Load, signal_name};
use crate::target::{RunResolver, Running, processes};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The tmpfs source name plumb mounts with, so its mounts are told apart.
pub const MOUNT_SOURCE: &str = "plumb-chaos";

/// Everything a fault can act on.
pub struct World<'a> {
    /// The scenario's targets.
    pub targets: &'a [crate::scenario::Target],
    /// The started ones, by name.
    pub started: &'a mut BTreeMap<String, Running>,
    /// Plumb run names to pids.
    pub runs: &'a RunResolver,
    /// The in-process proxy, when there are links.
    pub proxy: Option<&'a plumb_proxy::Client>,
    /// The scenario's network namespaces, when it has any.
    pub net: Option<&'a crate::netns::Net>,
    /// The journal.
    pub journal: &'a Journal,
    /// Where relative paths start.
    pub base: &'a Path,
    /// The seeded generator.
    pub rng: &'a mut fastrand::Rng,
}

impl std::fmt::Debug for World<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

/// An injected fault, to be removed.
#[derive(Debug)]
pub struct Active {
    entry: Option<Written>,
    undo: Removal,
    /// The processes a kill, an eviction or a pause signalled.
    pub hit: Vec<procs::Proc>,
}

impl Active {
    /// A fault a node's agent carries out and removes itself: removing it
    /// here only says `said`. `end` is the node and the order that remove
    /// it before its time, for a run that stops early.
    pub fn remote(said: String, end: Option<(String, plumb_model::chaos::ChaosOrder)>) -> Active {
        Active {
            entry: None,
            undo: Removal::Remote(said, end),
            hit: Vec::new(),
        }
    }

    /// For a fault a node's agent holds: its node and the order that
    /// removes it now.
    pub fn remote_end(&self) -> Option<(&str, &plumb_model::chaos::ChaosOrder)> {
        match &self.undo {
            Removal::Remote(_, Some((node, order))) => Some((node, order)),
            _ => None,
        }
    }
}

/// Memory held by a memory fault (not printed by Debug).
struct Held(Vec<u8>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} bytes)", self.0.len())
    }
}

#[derive(Debug)]
enum Removal {
    /// Stop the busy threads; report the CPU time they used.
    Cpu(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        Vec<std::thread::JoinHandle<Duration>>,
    ),
    /// Free the memory.
    Memory(Held),
    /// Stop stress-ng (its process group); say what it used.
    Stress(std::process::Child, u64),
    /// Restart the target if it exited and restarts.
    Restart(String),
    /// SIGKILL after the grace if still alive, then restart.
    Evict(u32, u64, String),
    Continue(Vec<(u32, u64)>),
    ClockBack(String),
    EnvBack(
        String,
        BTreeMap<String, String>,
        Vec<String>,
        Option<(u32, u32)>,
    ),
    Unmount(std::path::PathBuf),
    /// Delete the nftables table of this kind in this namespace.
    NetRules(String, &'static str),
    /// Delete this namespace's qdisc.
    NetQdisc(String),
    /// Remove the injector's flag file: the target's writes go through.
    Unflag(std::path::PathBuf, String),
    RemoveToxic(String),
    Enable(String),
    /// A node's agent removes it; this says how (and how to end it
    /// early: the node and the order).
    Remote(String, Option<(String, plumb_model::chaos::ChaosOrder)>),
}

/// Injects `f`; returns what was done, in words, and how to remove it.
pub fn inject(f: &Fault, w: &mut World<'_>) -> Result<(String, Active)> {
    let pick = |w: &mut World<'_>| -> Result<Vec<procs::Proc>> {
        let t = w
            .targets
            .iter()
            .find(|t| t.name == f.on)
            .context("no such target")?;
        let ps = processes(t, w.started, w.runs)?;
        if ps.is_empty() {
            bail!("target `{}` has no process right now", f.on);
        }
        Ok(ps)
    };
    let journal = w.journal;
    match f.kind {
        FaultKind::Kill | FaultKind::Evict => {
            let ps = pick(w)?;
            let main = w.started.get(&f.on).and_then(|r| r.pid()).map(|p| p.0);
            let p = choose(&ps, main, f.any, w.rng).clone();
            let what = format!(
                "{} pid {} ({}) of `{}`",
                signal_name(f.signal),
                p.pid,
                short(&p.cmdline),
                f.on
            );
            let what = if f.kind == FaultKind::Evict {
                format!(
                    "{what}, SIGKILL after {} grace",
                    crate::scenario::human(f.duration)
                )
            } else {
                what
            };
            // An eviction outlives plumb until its grace runs out: the
            // next start ends it should plumb die meanwhile.
            let entry = if f.kind == FaultKind::Evict {
                Some(journal.write(
                    &what,
                    &Undo::Kill {
                        pid: p.pid,
                        start: p.start,
                    },
                )?)
            } else {
                None
            };
            if !procs::signal(p.pid, p.start, f.signal) {
                if let Some(e) = entry {
                    journal.done(e);
                }
                bail!(
                    "pid {} of `{}` was gone before it could be signalled",
                    p.pid,
                    f.on
                );
            }
            let undo = if f.kind == FaultKind::Evict {
                Removal::Evict(p.pid, p.start, f.on.clone())
            } else {
                Removal::Restart(f.on.clone())
            };
            Ok((
                what,
                Active {
                    entry,
                    undo,
                    hit: vec![p],
                },
            ))
        }
        FaultKind::Pause => {
            let ps = pick(w)?;
            let chosen: Vec<procs::Proc> = if f.all {
                ps
            } else {
                vec![ps[w.rng.usize(..ps.len())].clone()]
            };
            let pids: Vec<(u32, u64)> = chosen.iter().map(|p| (p.pid, p.start)).collect();
            let list: Vec<String> = chosen.iter().map(|p| p.pid.to_string()).collect();
            let what = format!("SIGSTOP pid {} of `{}`", list.join(", "), f.on);
            let entry = journal.write(&what, &Undo::Continue { pids: pids.clone() })?;
            for (pid, start) in &pids {
                procs::signal(*pid, *start, libc::SIGSTOP);
            }
            Ok((
                what,
                Active {
                    entry: Some(entry),
                    undo: Removal::Continue(pids),
                    hit: chosen,
                },
            ))
        }
        FaultKind::Clock => {
            let r = w.started.get(&f.on).context("not a started target")?;
            let file = r.faketime_file.clone().context("not under libfaketime")?;
            std::fs::write(&file, format!("{}\n", f.offset))
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok((
                format!("clock of `{}` set {} (libfaketime)", f.on, f.offset),
                Active {
                    entry: None,
                    undo: Removal::ClockBack(f.on.clone()),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Env => {
            let base = w.base;
            let r = w.started.get_mut(&f.on).context("not a started target")?;
            let (set0, remove0) = r.env_now();
            let user0 = r.as_user;
            r.stop(journal);
            if let Some((_, uid, gid)) = &f.user {
                r.as_user = Some((*uid, *gid));
            }
            r.start(journal, base, &f.env_set, &f.env_remove)?;
            let mut parts = Vec::new();
            for (k, v) in &f.env_set {
                parts.push(format!("{k}={v}"));
            }
            for k in &f.env_remove {
                parts.push(format!("-{k}"));
            }
            let mut what = format!("`{}` restarted", f.on);
            if !parts.is_empty() {
                what.push_str(&format!(" with {}", parts.join(" ")));
            }
            if let Some((name, uid, _)) = &f.user {
                what.push_str(&format!(" as user {name} (uid {uid})"));
            }
            Ok((
                what,
                Active {
                    entry: None,
                    undo: Removal::EnvBack(f.on.clone(), set0, remove0, user0),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::DiskFull if f.fill == Fill::Preload => {
            let r = w
                .started
                .get(&f.on)
                .with_context(|| format!("`{}` is not running", f.on))?;
            let (dir, flag) = r
                .enospc
                .clone()
                .with_context(|| format!("`{}` was not started with the injector", f.on))?;
            std::fs::write(&flag, b"full\n")
                .with_context(|| format!("cannot write {}", flag.display()))?;
            Ok((
                format!(
                    "writes of `{}` under {} fail with ENOSPC (LD_PRELOAD)",
                    f.on,
                    dir.display()
                ),
                Active {
                    entry: None,
                    undo: Removal::Unflag(flag, f.on.clone()),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::DiskFull => {
            let what = format!(
                "{} replaced by a full {} tmpfs",
                f.path.display(),
                plumb_model::display::size(f.size)
            );
            let entry = journal.write(
                &what,
                &Undo::Unmount {
                    path: f.path.clone(),
                },
            )?;
            if let Err(e) = mount_full(&f.path, f.size) {
                journal.done(entry);
                return Err(e);
            }
            Ok((
                what,
                Active {
                    entry: Some(entry),
                    undo: Removal::Unmount(f.path.clone()),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Latency => {
            let proxy = w.proxy.context("no proxy")?;
            let name = "chaos_latency";
            proxy
                .add_toxic(
                    &f.on,
                    &serde_json::json!({
                        "name": name,
                        "type": "latency",
                        "stream": "downstream",
                        "attributes": {"latency": f.latency.as_millis() as u64},
                    }),
                )
                .map_err(|e| anyhow::anyhow!("link `{}`: cannot add latency: {e}", f.on))?;
            Ok((
                format!(
                    "link `{}` delayed by {}",
                    f.on,
                    crate::scenario::human(f.latency)
                ),
                Active {
                    entry: None,
                    undo: Removal::RemoveToxic(f.on.clone()),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Cpu | FaultKind::Memory if matches!(f.load, Load::StressNg(_)) => {
            stress(f, journal)
        }
        FaultKind::Cpu => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut threads = Vec::new();
            for i in 0..f.workers {
                let stop = std::sync::Arc::clone(&stop);
                let t = std::thread::Builder::new()
                    .name(format!("chaos-cpu-{i}"))
                    .spawn(move || burn(&stop))
                    .context("cannot start a CPU burner thread")?;
                threads.push(t);
            }
            Ok((
                format!("{} busy thread(s) in plumb", f.workers),
                Active {
                    entry: None,
                    undo: Removal::Cpu(stop, threads),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Memory => {
            let before = rss_bytes();
            let mut v = Vec::new();
            v.try_reserve_exact(f.size as usize).map_err(|e| {
                anyhow::anyhow!(
                    "cannot allocate {}: {e}",
                    plumb_model::display::size(f.size)
                )
            })?;
            v.resize(f.size as usize, 0u8);
            // Touch every page, so it is resident, not just reserved.
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            let grew = rss_bytes().saturating_sub(before);
            Ok((
                format!(
                    "{} allocated and touched in plumb (resident memory grew by {})",
                    plumb_model::display::size(f.size),
                    plumb_model::display::size(grew)
                ),
                Active {
                    entry: None,
                    undo: Removal::Memory(Held(v)),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Down => {
            let proxy = w.proxy.context("no proxy")?;
            proxy
                .update_proxy(&f.on, &serde_json::json!({"enabled": false}))
                .map_err(|e| anyhow::anyhow!("link `{}`: cannot take it down: {e}", f.on))?;
            Ok((
                format!("link `{}` down (not listening, connections closed)", f.on),
                Active {
                    entry: None,
                    undo: Removal::Enable(f.on.clone()),
                    hit: Vec::new(),
                },
            ))
        }
        FaultKind::Partition | FaultKind::Loss | FaultKind::Bandwidth | FaultKind::Delay => {
            let net = w
                .net
                .context("the scenario's network namespaces are not made")?;
            let name = f.on.as_str();
            let (what, undo) = match f.kind {
                FaultKind::Partition => (
                    net.partition(name, &f.from)?,
                    Removal::NetRules(name.into(), "partition"),
                ),
                FaultKind::Loss => (
                    net.loss(name, f.percent)?,
                    Removal::NetRules(name.into(), "loss"),
                ),
                FaultKind::Bandwidth => (
                    net.bandwidth(name, &f.rate)?,
                    Removal::NetQdisc(name.into()),
                ),
                _ => (
                    net.delay(name, f.latency.as_millis())?,
                    Removal::NetQdisc(name.into()),
                ),
            };
            Ok((
                what,
                Active {
                    entry: None,
                    undo,
                    hit: Vec::new(),
                },
            ))
        }
    }
}

/// The process a kill or an eviction hits: a started target's main
/// process (`main`), unless `any`; else one at random (seeded) among `ps`
/// (not empty).
fn choose<'p>(
    ps: &'p [procs::Proc],
    main: Option<u32>,
    any: bool,
    rng: &mut fastrand::Rng,
) -> &'p procs::Proc {
    match main.filter(|_| !any) {
        Some(pid) => ps.iter().find(|p| p.pid == pid).unwrap_or(&ps[0]),
        None => &ps[rng.usize(..ps.len())],
    }
}

/// Removes an injected fault; returns what was done, in words.
pub fn remove(a: Active, w: &mut World<'_>) -> Result<String> {
    let journal = w.journal;
    let base = w.base;
    let said = match a.undo {
        Removal::Restart(ref name) => restart(w, name, journal, base)?,
        Removal::Evict(ref pid, ref start, ref name) => {
            let mut s = if procs::signal(*pid, *start, libc::SIGKILL) {
                format!("pid {pid} still alive after the grace: SIGKILL")
            } else {
                format!("pid {pid} had exited within the grace")
            };
            let r = restart(w, name, journal, base)?;
            if !r.is_empty() {
                s = format!("{s}; {r}");
            }
            s
        }
        Removal::Continue(ref pids) => {
            let n = pids
                .iter()
                .filter(|(pid, start)| procs::signal(*pid, *start, libc::SIGCONT))
                .count();
            format!("SIGCONT {n} process(es)")
        }
        Removal::ClockBack(ref name) => {
            if let Some(file) = w.started.get(name).and_then(|r| r.faketime_file.clone()) {
                std::fs::write(&file, "+0\n")?;
            }
            format!("clock of `{name}` back to the real time")
        }
        Removal::EnvBack(ref name, ref set, ref remove, user0) => {
            let r = w.started.get_mut(name).context("not a started target")?;
            r.stop(journal);
            r.as_user = user0;
            r.start(journal, base, set, remove)?;
            format!("`{name}` restarted with its own environment")
        }
        Removal::Unmount(ref path) => {
            unmount(path)?;
            format!("{} unmounted", path.display())
        }
        Removal::NetRules(ref name, kind) => {
            w.net
                .context("no network namespaces")?
                .remove_rules(name, kind)?;
            format!("`{name}` rules removed")
        }
        Removal::NetQdisc(ref name) => {
            w.net.context("no network namespaces")?.remove_qdisc(name)?;
            format!("`{name}` qdisc removed")
        }
        Removal::Unflag(ref flag, ref on) => {
            match std::fs::remove_file(flag) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => bail!("cannot remove {}: {e}", flag.display()),
            }
            format!("writes of `{on}` go through again")
        }
        Removal::RemoveToxic(ref link) => {
            let proxy = w.proxy.context("no proxy")?;
            proxy
                .remove_toxic(link, "chaos_latency")
                .map_err(|e| anyhow::anyhow!("link `{link}`: cannot remove latency: {e}"))?;
            format!("link `{link}` latency removed")
        }
        Removal::Cpu(stop, threads) => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let n = threads.len();
            let used: Duration = threads.into_iter().filter_map(|t| t.join().ok()).sum();
            format!(
                "{n} busy thread(s) stopped after using {} of CPU",
                crate::scenario::human(used)
            )
        }
        Removal::Memory(ref held) => {
            let n = held.0.len() as u64;
            format!("{} freed", plumb_model::display::size(n))
        }
        Removal::Stress(mut child, start) => {
            let pid = child.id();
            let (cpu, _) = tree_usage(pid);
            // SIGTERM first: stress-ng stops its workers and exits.
            procs::signal_group(pid, start, libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(3);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let forced = procs::signal_group(pid, start, libc::SIGKILL);
            let _ = child.wait();
            format!(
                "stress-ng (pid {pid}) stopped{} after using {} of CPU",
                if forced { " with SIGKILL" } else { "" },
                crate::scenario::human(cpu)
            )
        }
        Removal::Remote(ref said, _) => said.clone(),
        Removal::Enable(ref link) => {
            let proxy = w.proxy.context("no proxy")?;
            proxy
                .update_proxy(link, &serde_json::json!({"enabled": true}))
                .map_err(|e| anyhow::anyhow!("link `{link}`: cannot bring it up: {e}"))?;
            format!("link `{link}` up")
        }
    };
    if let Some(e) = a.entry {
        journal.done(e);
    }
    Ok(said)
}

/// Keeps a core busy until `stop`; returns the CPU time this thread used.
fn burn(stop: &std::sync::atomic::AtomicBool) -> Duration {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// This process's resident memory (VmRSS), in bytes.
fn rss_bytes() -> u64 {
    vm_rss(Path::new("/proc/self/status"))
}

/// Starts stress-ng for a cpu or memory fault, in its own process group,
/// journaled (a plumb killed meanwhile leaves nothing: the next start
/// kills the group) and bounded by stress-ng's own `--timeout`.
fn stress(f: &Fault, journal: &Journal) -> Result<(String, Active)> {
    let Load::StressNg(bin) = &f.load else {
        bail!("not a stress-ng fault");
    };
    // Its own end, should plumb and its journal both be gone: the fault's
    // duration and a margin.
    let timeout = f.duration.as_secs() + 10;
    let mut args: Vec<String> = match f.kind {
        FaultKind::Cpu => vec!["--cpu".into(), f.workers.to_string()],
        // Allocate, write once, then hold it without more CPU.
        _ => vec![
            "--vm".into(),
            "1".into(),
            "--vm-bytes".into(),
            f.size.to_string(),
            "--vm-hang".into(),
            "0".into(),
        ],
    };
    args.extend(["--timeout".into(), format!("{timeout}s"), "--quiet".into()]);
    let child = std::process::Command::new(bin)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let start = procs::read(pid).map(|p| p.start).unwrap_or(0);
    let entry = journal.write(
        &format!("stress-ng started as pid {pid}"),
        &Undo::KillGroup { pid, start },
    )?;
    let shown = format!("stress-ng {}", args[..args.len() - 3].join(" "));
    let said = if f.kind == FaultKind::Memory {
        // Until its worker holds the memory (bounded).
        let until = Instant::now() + Duration::from_secs(5);
        let mut rss = 0;
        while Instant::now() < until {
            rss = tree_usage(pid).1;
            if rss >= f.size / 10 * 9 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        format!(
            "{shown} (pid {pid}; resident memory {})",
            plumb_model::display::size(rss)
        )
    } else {
        format!("{shown} (pid {pid})")
    };
    Ok((
        said,
        Active {
            entry: Some(entry),
            undo: Removal::Stress(child, start),
            hit: Vec::new(),
        },
    ))
}

/// CPU time used and resident memory, summed over a process and every
/// descendant alive now.
fn tree_usage(root: u32) -> (Duration, u64) {
    // SAFETY: sysconf only reads a constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut ticks = 0u64;
    let mut rss = 0u64;
    for p in procs::tree(root) {
        let dir = Path::new("/proc").join(p.pid.to_string());
        if let Ok(stat) = std::fs::read_to_string(dir.join("stat"))
            && let Some(close) = stat.rfind(')')
        {
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // utime and stime: fields 14 and 15 of stat(5).
            ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        rss += vm_rss(&dir.join("status"));
    }
    (Duration::from_millis(ticks * 1000 / tick), rss)
}

/// `VmRSS` of a `/proc/PID/status` file, in bytes (0 when unreadable).
fn vm_rss(status: &Path) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Starts a started target again once it has exited, if it restarts.
fn restart(w: &mut World<'_>, name: &str, journal: &Journal, base: &Path) -> Result<String> {
    let Some(r) = w.started.get_mut(name) else {
        return Ok(String::new());
    };
    let until = Instant::now() + Duration::from_secs(5);
    while r.pid().is_some() && r.poll_exit().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if r.pid().is_some() {
        return Ok(String::new());
    }
    r.forget(journal);
    if !r.restarts() {
        return Ok(format!("`{name}` left down (restart = false)"));
    }
    let (set, remove) = r.env_now();
    r.start(journal, base, &set, &remove)?;
    Ok(format!(
        "`{name}` restarted as pid {}",
        r.pid().map(|p| p.0).unwrap_or(0)
    ))
}

fn short(s: &str) -> String {
    if s.chars().count() > 100 {
        format!("{}…", s.chars().take(100).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Checks, before anything runs, that a disk_full fault can be done here.
pub fn check_disk_full(path: &Path, fill: Fill) -> Result<()> {
    if fill == Fill::Preload {
        if !path.is_dir() {
            bail!(
                "{} is not a directory (create it first: the target's writes under it fail)",
                path.display()
            );
        }
        if !crate::enospc::available() {
            bail!(
                "this plumb was built without a C compiler, so it has no ENOSPC injector: rebuild with gcc or cc on PATH, or run as root for the tmpfs"
            );
        }
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "it mounts a size-limited tmpfs over {}, which needs root (CAP_SYS_ADMIN): run plumb chaos as root, or name a target plumb starts (target = \"NAME\", with = \"preload\") to fail its writes there with ENOSPC without root",
            path.display()
        );
    }
    if !path.is_dir() {
        bail!(
            "{} is not a directory (create it first: the tmpfs is mounted over it)",
            path.display()
        );
    }
    if is_our_mount(path) {
        bail!(
            "{} already has plumb's tmpfs over it (a plumb chaos is running, or run `plumb chaos cleanup`)",
            path.display()
        );
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path has a NUL byte")
}

/// Mounts a tmpfs of `size` bytes over `path` and fills it.
fn mount_full(path: &Path, size: u64) -> Result<()> {
    let src = CString::new(MOUNT_SOURCE)?;
    let fstype = CString::new("tmpfs")?;
    let opts = CString::new(format!("size={size},mode=1777"))?;
    let target = cpath(path)?;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot mount a tmpfs over {}: {e}", path.display());
    }
    // Fill it, so the next write fails with ENOSPC.
    let fill = path.join(".plumb-chaos-fill");
    if let Ok(mut f) = std::fs::File::create(&fill) {
        let block = vec![0u8; 4096];
        for _ in 0..(size / 4096 + 16) {
            if std::io::Write::write_all(&mut f, &block).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }
    Ok(())
}

/// Unmounts plumb's tmpfs from `path` (lazily, if something holds it).
pub fn unmount(path: &Path) -> Result<()> {
    let target = cpath(path)?;
    // SAFETY: umount2(2) with a NUL-terminated path.
    let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
    if rc != 0 {
        // SAFETY: as above; MNT_DETACH leaves it to go when last used.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            bail!("cannot unmount {}: {e}", path.display());
        }
    }
    Ok(())
}

/// Whether plumb's tmpfs is mounted on `path` (per /proc/self/mountinfo).
pub fn is_our_mount(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        f.get(4)
            .map(|m| Path::new(&plumb_model::text::unescape_octal(m)) == want)
            .unwrap_or(false)
            && f.get(dash + 1) == Some(&"tmpfs")
            && f.get(dash + 2) == Some(&MOUNT_SOURCE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32) -> procs::Proc {
        procs::Proc {
            pid,
            ppid: 1,
            comm: "x".into(),
            cmdline: "x".into(),
            state: 'S',
            start: 0,
        }
    }

    #[test]
    fn a_kill_hits_the_main_process_unless_any_then_each_of_the_tree_in_turn() {
        let ps = [proc(10), proc(11), proc(12)];
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..20 {
            assert_eq!(choose(&ps, Some(11), false, &mut rng).pid, 11);
        }
        let hit: std::collections::BTreeSet<u32> = (0..60)
            .map(|_| choose(&ps, Some(11), true, &mut rng).pid)
            .collect();
        assert_eq!(hit.into_iter().collect::<Vec<_>>(), [10, 11, 12]);
        // The same seed, the same choices.
        let picks = |seed| {
            let mut r = fastrand::Rng::with_seed(seed);
            (0..10)
                .map(|_| choose(&ps, None, false, &mut r).pid)
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
    }
}
