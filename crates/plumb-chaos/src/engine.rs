//! Running a scenario: preflight, start targets and links, check the
//! steady state, run the method while the probes run on their own threads,
//! remove every fault, check again, roll back, clean up, report.

use crate::fault::{self, Active, World};
use crate::journal::{self, Journal};
use crate::probe::{self, Check, LogPlace};
use crate::report::{FaultReport, LinkReport, ProbeSummary, Report, TargetReport};
use crate::scenario::{FaultKind, Fill, LogSource, ProbeKind, Scenario, Schedule, TargetKind};
use crate::target::{RunResolver, Running, faketime_lib};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One planned injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Which fault of the scenario.
    pub fault: usize,
    /// When, after the method starts.
    pub at: Duration,
}

/// Every injection of the method, in time order; the same seed gives the
/// same plan.
pub fn plan(s: &Scenario) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for (i, f) in s.faults.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(
            s.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)),
        );
        match &f.schedule {
            Schedule::At(t) => out.push(Planned { fault: i, at: *t }),
            Schedule::Every { every, jitter } => {
                let mut k = 1u32;
                loop {
                    let base = *every * k;
                    if base + *jitter >= s.duration {
                        break;
                    }
                    let j = jitter.as_nanos() as i128;
                    let off = if j > 0 {
                        rng.i64(-(j as i64)..=j as i64)
                    } else {
                        0
                    };
                    let at = Duration::from_nanos((base.as_nanos() as i128 + off as i128) as u64);
                    out.push(Planned { fault: i, at });
                    k += 1;
                }
            }
            Schedule::Random(n) => {
                // One injection in each of n equal slots, so they never overlap.
                let slot = s.duration / *n;
                if slot <= f.duration {
                    bail!(
                        "{}: fault {}: random = {n} injections of {} each do not fit in the scenario's duration ({})",
                        f.line,
                        f.kind.as_str(),
                        crate::scenario::human(f.duration),
                        crate::scenario::human(s.duration)
                    );
                }
                let room = (slot - f.duration).as_nanos() as u64;
                for k in 0..*n {
                    let at = slot * k + Duration::from_nanos(rng.u64(..room.max(1)));
                    out.push(Planned { fault: i, at });
                }
            }
        }
    }
    out.sort_by_key(|p| (p.at, p.fault));
    Ok(out)
}

/// Checks what can be checked before anything runs: the plan, root for
/// disk_full, libfaketime for clock faults, the links' addresses.
pub fn preflight(s: &Scenario) -> Result<Vec<Planned>> {
    let p = plan(s)?;
    if let Some(first) = s.netns.first() {
        crate::netns::check()
            .map_err(|e| anyhow::anyhow!("{}: netns `{}`: {e:#}", first.line, first.name))?;
    }
    for f in &s.faults {
        let at = |e: anyhow::Error| anyhow::anyhow!("{}: fault {}: {e:#}", f.line, f.kind.as_str());
        match f.kind {
            FaultKind::DiskFull => fault::check_disk_full(&f.path, f.fill).map_err(at)?,
            // SAFETY: geteuid has no preconditions.
            FaultKind::Env if f.user.is_some() && unsafe { libc::geteuid() } != 0 => {
                return Err(at(anyhow::anyhow!(
                    "starting a target as another user needs root: run plumb chaos as root, or leave user out"
                )));
            }
            FaultKind::Delay if !crate::netns::netem_available() => {
                return Err(at(anyhow::anyhow!(
                    "this kernel has no tc netem (sch_netem), which delay needs: use a [[link]] and a latency fault through plumb's proxy instead"
                )));
            }
            FaultKind::Clock if faketime_lib().is_none() => {
                return Err(at(anyhow::anyhow!(
                    "libfaketime is not installed (Debian/Ubuntu: apt install faketime)"
                )));
            }
            _ => {}
        }
    }
    Ok(p)
}

/// How a run is set up by its caller.
pub struct Options<'a> {
    /// The plumb home: the journal and the run's files go under `chaos/`.
    pub home: PathBuf,
    /// Plumb run names to pids.
    pub runs: &'a RunResolver,
    /// Progress lines, as they happen.
    pub progress: &'a mut dyn FnMut(&str),
    /// Each fault's report as it is injected (`injected` set) and again as
    /// it is removed (`removed` set), as it happens: the CLI sends these
    /// to the collector live.
    pub on_fault: &'a mut dyn FnMut(&FaultReport),
    /// Hands a fault on a target with `node` to that node's agent (the
    /// CLI's goes through the collector); `None` when there is no
    /// collector, and then a scenario with such a target is refused
    /// before anything runs.
    pub remote: Option<&'a crate::remote::Dispatch>,
    /// Set (by a signal handler) to stop early; everything is still undone.
    pub stop: Arc<AtomicBool>,
    /// The scenario file's name, for the report.
    pub scenario: String,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

/// What the journal of dead runs had left, undone now.
pub fn cleanup_leftovers(home: &Path) -> Result<Vec<String>> {
    journal::replay(home)
}

struct Probes {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Check>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

/// Where a probe looks: its log, and the network namespace it checks from.
#[derive(Debug, Clone, Default)]
struct Place {
    log: Option<LogPlace>,
    netns: Option<PathBuf>,
}

/// One check of `p`, from its namespace. Called on a thread of its own,
/// which it moves into that namespace.
fn check_from(p: &crate::scenario::Probe, place: &Place, base: &Path) -> Check {
    if let Some(ns) = &place.netns
        && let Err(e) = crate::netns::enter(ns)
    {
        let now = plumb_model::Timestamp::now();
        return Check {
            probe: p.name.clone(),
            at: now.to_rfc3339(),
            at_ns: now.as_nanos(),
            ok: false,
            detail: format!("cannot enter {}: {e}", ns.display()),
            latency_ms: 0.0,
        };
    }
    probe::check(p, place.log.as_ref(), base)
}

/// Where a log probe reads, from the byte it starts at.
fn log_place(p: &crate::scenario::Probe, started: &BTreeMap<String, Running>) -> Option<LogPlace> {
    match &p.kind {
        ProbeKind::Log {
            source: LogSource::File(f),
            ..
        } => Some(LogPlace {
            path: f.clone(),
            from: Arc::new(AtomicU64::new(
                std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
            )),
        }),
        ProbeKind::Log {
            source: LogSource::Target(t),
            ..
        } => started.get(t).map(|r| LogPlace {
            path: r.log.clone(),
            from: Arc::new(AtomicU64::new(0)),
        }),
        _ => None,
    }
}

fn start_probes(s: &Scenario, places: &[Place]) -> Probes {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for (p, place) in s.probes.iter().zip(places) {
        let (p, place, stop, samples, base, every) = (
            p.clone(),
            place.clone(),
            Arc::clone(&stop),
            Arc::clone(&samples),
            s.base.clone(),
            s.interval,
        );
        let t = std::thread::Builder::new()
            .name(format!("chaos-probe-{}", p.name))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let c = check_from(&p, &place, &base);
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    let next = t0 + every;
                    while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10).min(every));
                    }
                }
            });
        if let Ok(t) = t {
            threads.push(t);
        }
    }
    Probes {
        stop,
        samples,
        threads,
    }
}

impl Probes {
    fn finish(self) -> Vec<Check> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let mut v = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by_key(|c| c.at_ns);
        v
    }
}

fn check_all(s: &Scenario, places: &[Place]) -> Vec<Check> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = s
            .probes
            .iter()
            .zip(places)
            .map(|(p, place)| sc.spawn(move || check_from(p, place, &s.base)))
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// The checks before, during and after, and whether the method ran to
/// its end (not stopped).
type Phases = (Vec<Check>, Vec<Check>, Vec<Check>, bool);

/// Runs the scenario and returns its report. Whatever happens (an error, a
/// stop), every fault injected is removed and every started process
/// stopped before this returns.
pub fn run(s: &Scenario, o: Options<'_>) -> Result<Report> {
    let plan = preflight(s)?;
    if o.remote.is_none() {
        if let Some(t) = s.targets.iter().find(|t| t.node.is_some()) {
            bail!(
                "{}: target `{}` is on node {}: its faults go through a collector to that node's agent, and none is configured (set PLUMB_COLLECTOR or `collector =` in plumb.toml)",
                t.line,
                t.name,
                t.node.as_deref().unwrap_or_default()
            );
        }
        if let Some(f) = s.faults.iter().find(|f| f.node.is_some()) {
            bail!(
                "{}: fault {} is on node {}: it goes through a collector to that node's agent, and none is configured (set PLUMB_COLLECTOR or `collector =` in plumb.toml)",
                f.line,
                f.kind.as_str(),
                f.node.as_deref().unwrap_or_default()
            );
        }
    }
    let run_id = plumb_model::new_id().simple().to_string();
    let work = o.home.join("chaos").join("runs").join(&run_id);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let journal = Journal::open(&o.home, &run_id)?;
    let started_at = plumb_model::Timestamp::now();
    let progress = o.progress;
    let mut started: BTreeMap<String, Running> = BTreeMap::new();
    let mut proxy: Option<plumb_proxy::ServerHandle> = None;
    let mut net: Option<crate::netns::Net> = None;
    let mut links = Vec::new();
    let mut active: Vec<(usize, Active)> = Vec::new();
    let mut reports: Vec<FaultReport> = Vec::new();
    let mut cleanup = Vec::new();
    let mut rng = fastrand::Rng::with_seed(s.seed);

    let result = (|| -> Result<Phases> {
        // Links first: targets may connect through them as they start.
        if !s.links.is_empty() {
            let server = plumb_proxy::spawn("127.0.0.1:0").context("cannot start plumb's proxy")?;
            let api = server.client();
            for l in &s.links {
                let made = api
                    .create_proxy(&l.name, &l.listen, &l.upstream)
                    .map_err(|e| {
                        anyhow::anyhow!("link `{}`: cannot listen on {}: {e}", l.name, l.listen)
                    })?;
                let listen = made["listen"].as_str().unwrap_or(&l.listen).to_string();
                progress(&format!("link `{}`: {listen} -> {}", l.name, l.upstream));
                links.push(LinkReport {
                    name: l.name.clone(),
                    listen,
                    upstream: l.upstream.clone(),
                });
            }
            proxy = Some(server);
        }
        if !s.netns.is_empty() {
            let made = crate::netns::Net::create(&run_id, &s.netns, &journal)?;
            progress(&format!("network namespaces: {}", made.names().join(", ")));
            net = Some(made);
        }
        for t in &s.targets {
            if let TargetKind::Command(spec) = &t.kind {
                let clocked = s
                    .faults
                    .iter()
                    .any(|f| f.kind == FaultKind::Clock && f.on == t.name);
                let enospc = s.faults.iter().find(|f| {
                    f.kind == FaultKind::DiskFull && f.fill == Fill::Preload && f.on == t.name
                });
                let mut r = Running::new(
                    &t.name,
                    spec,
                    &work,
                    clocked,
                    enospc.map(|f| f.path.as_path()),
                );
                if let (Some(n), Some(net)) = (&spec.netns, &net) {
                    r.netns = Some(net.path(n)?);
                }
                r.start(&journal, &s.base, &BTreeMap::new(), &[])?;
                progress(&format!(
                    "target `{}` started: pid {}",
                    t.name,
                    r.pid().map(|p| p.0).unwrap_or(0)
                ));
                started.insert(t.name.clone(), r);
            }
        }
        let places: Vec<Place> = s
            .probes
            .iter()
            .map(|p| Place {
                log: log_place(p, &started),
                netns: p
                    .netns
                    .as_ref()
                    .and_then(|n| net.as_ref().and_then(|net| net.path(n).ok())),
            })
            .collect();

        let before = check_all(s, &places);
        for c in &before {
            progress(&format!(
                "before: {} {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.probe,
                c.detail
            ));
        }
        if before.iter().any(|c| !c.ok) {
            progress("the steady state does not hold before any fault: nothing injected");
            return Ok((before, Vec::new(), Vec::new(), false));
        }

        let probes = start_probes(s, &places);
        let t0 = Instant::now();
        // (when, inject?, index into plan)
        let mut actions: Vec<(Duration, bool, usize)> = Vec::new();
        for (k, p) in plan.iter().enumerate() {
            actions.push((p.at, true, k));
            // A removal comes after its own injection even when instant.
            let d = s.faults[p.fault].duration.max(Duration::from_nanos(1));
            actions.push((p.at + d, false, k));
        }
        actions.sort_by_key(|a| (a.0, a.1, a.2));
        let mut by_plan: BTreeMap<usize, (usize, Active)> = BTreeMap::new();
        let mut report_of: BTreeMap<usize, usize> = BTreeMap::new();
        let end = actions
            .iter()
            .map(|a| a.0)
            .max()
            .unwrap_or_default()
            .max(s.duration);
        let mut stopped = false;
        for (when, inject, k) in actions {
            if !sleep_until(t0 + when, &o.stop, &mut started, progress) {
                stopped = true;
                break;
            }
            let p = &plan[k];
            let f = &s.faults[p.fault];
            let mut world = World {
                targets: &s.targets,
                started: &mut started,
                runs: o.runs,
                proxy: None,
                net: net.as_ref(),
                journal: &journal,
                base: &s.base,
                rng: &mut rng,
            };
            let client = proxy.as_ref().map(|p| p.client());
            world.proxy = client.as_ref();
            if inject {
                let now = plumb_model::Timestamp::now();
                let target = s.targets.iter().find(|t| t.name == f.on);
                let mut fr = FaultReport {
                    kind: f.kind.as_str().to_string(),
                    on: f.on.clone(),
                    node: f
                        .node
                        .clone()
                        .or_else(|| target.and_then(|t| t.node.clone())),
                    pids: Vec::new(),
                    line: f.line,
                    planned_ms: p.at.as_millis() as u64,
                    injected: None,
                    removed: None,
                    action: String::new(),
                    removal: String::new(),
                    error: None,
                    before: Vec::new(),
                    during: Vec::new(),
                    after: Vec::new(),
                    verdict: "not injected".into(),
                    first_deviation: None,
                    links: Vec::new(),
                    injected_ns: now.as_nanos(),
                    removed_ns: now.as_nanos(),
                };
                let done = match fr.node.clone() {
                    Some(node) => {
                        // The node's agent does it, its removal included.
                        let seed = world.rng.u64(..);
                        (|| -> Result<_> {
                            let t = target.filter(|t| t.node.is_some());
                            let order = crate::remote::order(f, t, seed, &s.title)?;
                            let dispatch = o.remote.context("no collector to reach the node")?;
                            let d = dispatch(&node, &order)?;
                            fr.pids = d.hit.iter().map(|h| h.pid).collect();
                            let (removal, end) = if d.removal.is_empty() {
                                (String::new(), None)
                            } else {
                                (
                                    format!("by node {}'s agent: {}", d.node, d.removal),
                                    Some((node.clone(), order.ending())),
                                )
                            };
                            Ok((
                                d.what,
                                fault::Active::remote(removal, end),
                                Some(d.injected.to_rfc3339()),
                            ))
                        })()
                    }
                    _ => fault::inject(f, &mut world).map(|(what, a)| (what, a, None)),
                };
                let on = fr.node_words();
                match done {
                    Ok((what, a, at)) => {
                        fr.injected = Some(at.unwrap_or_else(|| now.to_rfc3339()));
                        fr.action = what.clone();
                        progress(&format!("injected {}{on}: {what}", f.kind.as_str()));
                        (o.on_fault)(&fr);
                        by_plan.insert(k, (p.fault, a));
                    }
                    Err(e) => {
                        progress(&format!("could not inject {}{on}: {e:#}", f.kind.as_str()));
                        fr.error = Some(format!("{e:#}"));
                    }
                }
                report_of.insert(k, reports.len());
                reports.push(fr);
            } else if let Some((_, a)) = by_plan.remove(&k) {
                let r = fault::remove(a, &mut world);
                let now = plumb_model::Timestamp::now();
                let fr = &mut reports[report_of[&k]];
                fr.removed = Some(now.to_rfc3339());
                fr.removed_ns = now.as_nanos();
                match r {
                    Ok(said) => {
                        progress(&format!("removed {}: {said}", f.kind.as_str()));
                        fr.removal = said;
                        (o.on_fault)(fr);
                    }
                    Err(e) => {
                        progress(&format!("could not remove {}: {e:#}", f.kind.as_str()));
                        fr.error = Some(format!("removing: {e:#}"));
                    }
                }
            }
        }
        active.extend(by_plan.into_values());
        if !stopped {
            stopped = !sleep_until(t0 + end + s.settle, &o.stop, &mut started, progress);
        }
        let during = probes.finish();
        if stopped {
            progress("stopped: removing every fault");
        }
        let after = if active.is_empty() {
            check_all(s, &places)
        } else {
            Vec::new()
        };
        Ok((before, during, after, !stopped))
    })();

    // Whatever happened: remove what is still injected, stop what we started.
    {
        let client = proxy.as_ref().map(|p| p.client());
        let mut world = World {
            targets: &s.targets,
            started: &mut started,
            runs: o.runs,
            proxy: client.as_ref(),
            net: net.as_ref(),
            journal: &journal,
            base: &s.base,
            rng: &mut rng,
        };
        for (i, a) in active.drain(..) {
            // A node's agent holds it: it is told to remove it now.
            let end = a.remote_end().map(|(n, e)| (n.to_string(), e.clone()));
            let removed = match (end, o.remote) {
                (Some((node, order)), Some(dispatch)) => dispatch(&node, &order)
                    .map(|d| format!("ended early by node {node}'s agent: {}", d.what)),
                _ => fault::remove(a, &mut world),
            };
            match removed {
                Ok(said) => cleanup.push(format!("{}: {said}", s.faults[i].kind.as_str())),
                Err(e) => cleanup.push(format!(
                    "{}: could not remove: {e:#}",
                    s.faults[i].kind.as_str()
                )),
            }
        }
    }
    let mut rollbacks = Vec::new();
    for r in &s.rollbacks {
        let out = std::process::Command::new(&r.argv[0])
            .args(&r.argv[1..])
            .current_dir(&s.base)
            .stdin(std::process::Stdio::null())
            .output();
        rollbacks.push(match out {
            Ok(o) => format!("{:?}: {}", r.argv, o.status),
            Err(e) => format!("{:?}: cannot run: {e}", r.argv),
        });
    }
    let mut targets = Vec::new();
    for (name, mut r) in std::mem::take(&mut started) {
        r.stop(&journal);
        cleanup.push(format!("target `{name}` stopped"));
        targets.push(TargetReport {
            name,
            pids: r.pids.clone(),
            exits: r.exits.clone(),
            log: r.log.display().to_string(),
        });
    }
    if let Some(p) = proxy.take() {
        let api = p.client();
        for l in &links {
            let _ = api.delete_proxy(&l.name);
        }
        p.shutdown();
        cleanup.push(format!("{} link(s) closed", links.len()));
    }
    if let Some(mut n) = net.take() {
        let names = n.names();
        n.destroy(&journal);
        cleanup.push(format!("network namespaces deleted: {}", names.join(", ")));
    }
    journal.close();
    let (before, during, after, completed) = result?;
    let ended = plumb_model::Timestamp::now();
    Ok(build(
        s, o.scenario, started_at, ended, before, during, after, reports, targets, links,
        rollbacks, cleanup, completed, work,
    ))
}

/// Sleeps until `until`, reaping started targets meanwhile; false when
/// asked to stop.
fn sleep_until(
    until: Instant,
    stop: &AtomicBool,
    started: &mut BTreeMap<String, Running>,
    progress: &mut dyn FnMut(&str),
) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        for r in started.values_mut() {
            if let Some(how) = r.poll_exit() {
                progress(&format!("target `{}` {how}", r.name));
            }
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    s: &Scenario,
    scenario: String,
    started: plumb_model::Timestamp,
    ended: plumb_model::Timestamp,
    before: Vec<Check>,
    during: Vec<Check>,
    after: Vec<Check>,
    mut faults: Vec<FaultReport>,
    targets: Vec<TargetReport>,
    links: Vec<LinkReport>,
    rollbacks: Vec<String>,
    cleanup: Vec<String>,
    completed: bool,
    work: PathBuf,
) -> Report {
    let steady_before = !before.is_empty() && before.iter().all(|c| c.ok) || s.probes.is_empty();
    let settle = s.settle.as_nanos() as i64;
    let starts: Vec<i64> = faults
        .iter()
        .filter(|f| f.injected.is_some())
        .map(|f| f.injected_ns)
        .collect();
    for f in faults.iter_mut() {
        if f.injected.is_none() {
            continue;
        }
        let next = starts
            .iter()
            .copied()
            .filter(|t| *t > f.injected_ns)
            .min()
            .unwrap_or(i64::MAX);
        let end = (f.removed_ns + settle).min(next);
        let window: Vec<&Check> = during
            .iter()
            .filter(|c| c.at_ns >= f.injected_ns && c.at_ns < end)
            .collect();
        for p in &s.probes {
            if let Some(c) = before
                .iter()
                .chain(&during)
                .filter(|c| c.probe == p.name && c.at_ns < f.injected_ns)
                .max_by_key(|c| c.at_ns)
            {
                f.before.push(c.clone());
            }
            let mine: Vec<&&Check> = window.iter().filter(|c| c.probe == p.name).collect();
            f.during.push(ProbeSummary {
                probe: p.name.clone(),
                checks: mine.len(),
                failed: mine.iter().filter(|c| !c.ok).count(),
                max_latency_ms: mine.iter().map(|c| c.latency_ms).fold(0.0, f64::max),
            });
            if let Some(c) = during
                .iter()
                .chain(&after)
                .find(|c| c.probe == p.name && c.at_ns >= end)
            {
                f.after.push(c.clone());
            }
        }
        f.first_deviation = window.iter().find(|c| !c.ok).map(|c| (*c).clone());
        f.verdict = if f.first_deviation.is_some() || f.error.is_some() {
            "deviated".into()
        } else {
            "held".into()
        };
    }
    let first_deviation = before
        .iter()
        .chain(&during)
        .chain(&after)
        .find(|c| !c.ok)
        .cloned();
    let errors = faults.iter().any(|f| f.error.is_some());
    let held = steady_before && completed && first_deviation.is_none() && !errors;
    let verdict = if !steady_before {
        "not steady before"
    } else if !completed {
        "stopped"
    } else if held {
        "held"
    } else {
        "deviated"
    };
    Report {
        title: s.title.clone(),
        scenario,
        seed: s.seed,
        started: started.to_rfc3339(),
        ended: ended.to_rfc3339(),
        verdict: verdict.into(),
        held,
        first_deviation,
        before,
        during,
        after,
        faults,
        targets,
        links,
        rollbacks,
        cleanup,
        work_dir: work.display().to_string(),
    }
}
