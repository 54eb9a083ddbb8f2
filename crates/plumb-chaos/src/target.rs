//! Targets at run time: the commands plumb starts (each in its own process
//! group, its output appended to `<work>/<name>.log`, journaled so a dead
//! plumb's children are stopped by the next start), and the processes a
//! target stands for at the moment a fault needs them.

use crate::journal::{Journal, Undo, Written};
use crate::procs;
use crate::scenario::{Started, Target, TargetKind};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds the pids of a plumb run by name (the CLI gives one that reads the
/// store).
pub type RunResolver = dyn Fn(&str) -> Result<Vec<u32>> + Send + Sync;

/// A command plumb started, running or not.
#[derive(Debug)]
pub struct Running {
    /// Its name.
    pub name: String,
    spec: Started,
    child: Option<Child>,
    start: u64,
    entry: Option<Written>,
    /// Its output file.
    pub log: PathBuf,
    /// Its libfaketime control file, when it runs under libfaketime.
    pub faketime_file: Option<PathBuf>,
    /// Under plumb's ENOSPC injector: (the directory whose writes fail,
    /// the flag file that turns it on).
    pub enospc: Option<(PathBuf, PathBuf)>,
    /// The network namespace it starts in (its file under /run/netns).
    pub netns: Option<PathBuf>,
    /// Every pid it had, in order.
    pub pids: Vec<u32>,
    /// How its processes ended, in words, with UTC times.
    pub exits: Vec<(String, String)>,
    env_now: (BTreeMap<String, String>, Vec<String>),
    /// Start it as this user (uid, gid) instead of plumb's.
    pub as_user: Option<(u32, u32)>,
}

/// libfaketime's library, when installed: its multithreaded build first.
/// That one takes a lock around each faked call; the plain one parses the
/// offset in a static buffer another thread may be rewriting, so a thread of
/// a busy program can read the real time (libfaketime PR 547).
pub fn faketime_lib() -> Option<PathBuf> {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
        "/usr/lib/faketime",
        "/usr/local/lib/faketime",
    ];
    ["libfaketimeMT.so.1", "libfaketime.so.1"]
        .iter()
        .flat_map(|lib| dirs.iter().map(move |d| Path::new(d).join(lib)))
        .find(|p| p.exists())
}

impl Running {
    /// Prepares (does not start) a started target.
    /// `enospc` is the directory of a disk_full fault with `with =
    /// "preload"` on it.
    pub fn new(
        name: &str,
        spec: &Started,
        work: &Path,
        under_faketime: bool,
        enospc: Option<&Path>,
    ) -> Running {
        Running {
            name: name.to_string(),
            spec: spec.clone(),
            child: None,
            start: 0,
            entry: None,
            log: work.join(format!("{name}.log")),
            faketime_file: (under_faketime || spec.faketime.is_some())
                .then(|| work.join(format!("{name}.faketime"))),
            enospc: enospc.map(|d| (d.to_path_buf(), work.join(format!("{name}.enospc")))),
            netns: None,
            pids: Vec::new(),
            exits: Vec::new(),
            env_now: (BTreeMap::new(), Vec::new()),
            as_user: None,
        }
    }

    /// Starts it with extra variables set and removed (beyond its own).
    pub fn start(
        &mut self,
        journal: &Journal,
        base: &Path,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.spec.argv[0]);
        cmd.args(&self.spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(self.spec.cwd.clone().unwrap_or_else(|| base.to_path_buf()))
            .process_group(0);
        for v in &self.spec.env_remove {
            cmd.env_remove(v);
        }
        cmd.envs(&self.spec.env);
        // What is preloaded: libfaketime, the ENOSPC injector, then
        // whatever the target's own environment preloads.
        let mut preload: Vec<String> = Vec::new();
        if let Some(file) = &self.faketime_file {
            let lib = faketime_lib().context(
                "libfaketime is not installed (Debian/Ubuntu: apt install faketime): clock faults need it",
            )?;
            if !file.exists() {
                let spec = self.spec.faketime.clone().unwrap_or_else(|| "+0".into());
                std::fs::write(file, format!("{spec}\n"))?;
            }
            preload.push(lib.to_string_lossy().into_owned());
            cmd.env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_RESET", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        if let Some((dir, flag)) = &self.enospc {
            let work = self.log.parent().unwrap_or(Path::new("."));
            let lib = crate::enospc::install(work)
                .with_context(|| format!("target `{}`: the ENOSPC injector", self.name))?;
            // The injector compares the kernel's names of open files with
            // it: the directory's real, absolute path.
            let dir = base.join(dir);
            let dir = dir
                .canonicalize()
                .with_context(|| format!("target `{}`: {}", self.name, dir.display()))?;
            preload.push(lib.to_string_lossy().into_owned());
            cmd.env(crate::enospc::DIR_VAR, dir)
                .env(crate::enospc::FLAG_VAR, flag);
        }
        if !preload.is_empty() {
            let theirs = self
                .spec
                .env
                .get("LD_PRELOAD")
                .cloned()
                .or_else(|| std::env::var("LD_PRELOAD").ok())
                .filter(|v| !v.trim().is_empty());
            preload.extend(theirs);
            cmd.env("LD_PRELOAD", preload.join(":"));
        }
        for v in remove {
            cmd.env_remove(v);
        }
        cmd.envs(set);
        // Held open until the spawn below, which enters it.
        let _netns_file = match &self.netns {
            Some(ns) => {
                let f = std::fs::File::open(ns)
                    .with_context(|| format!("target `{}`: {}", self.name, ns.display()))?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                // SAFETY: between fork and exec only setns, an
                // async-signal-safe system call, runs on a descriptor that
                // stays open until after the spawn.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                Some(f)
            }
            None => None,
        };
        if let Some((uid, gid)) = self.as_user {
            // std drops root's supplementary groups along with the ids.
            cmd.uid(uid).gid(gid);
        }
        self.env_now = (set.clone(), remove.to_vec());
        let child = cmd.spawn().with_context(|| {
            format!("target `{}`: cannot start {:?}", self.name, self.spec.argv)
        })?;
        let pid = child.id();
        let start = procs::read(pid).map(|p| p.start).unwrap_or(0);
        self.entry = Some(journal.write(
            &format!("target `{}` started as pid {pid}", self.name),
            &Undo::KillGroup { pid, start },
        )?);
        self.child = Some(child);
        self.start = start;
        self.pids.push(pid);
        if let Some(addr) = self.spec.ready.clone() {
            self.wait_ready(&addr, Duration::from_secs(15))?;
        }
        Ok(())
    }

    /// Waits until `addr` accepts a connection, or fails naming the target.
    fn wait_ready(&mut self, addr: &str, limit: Duration) -> Result<()> {
        let until = Instant::now() + limit;
        let sock: std::net::SocketAddr = addr.parse().with_context(|| {
            format!("target `{}`: ready = {addr:?} is not HOST:PORT", self.name)
        })?;
        loop {
            let connect =
                || std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok();
            // From inside its namespace, where it listens.
            let accepted = match &self.netns {
                Some(ns) => crate::netns::within(ns, connect).unwrap_or(false),
                None => connect(),
            };
            if accepted {
                return Ok(());
            }
            if let Some(status) = self.poll_exit() {
                bail!(
                    "target `{}` exited ({status}) before {addr} accepted connections; its output is in {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "target `{}`: nothing accepted connections on {addr} within {}s; its output is in {}",
                    self.name,
                    limit.as_secs(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its main process, when running.
    pub fn pid(&self) -> Option<(u32, u64)> {
        self.child.as_ref().map(|c| (c.id(), self.start))
    }

    /// Reaps it if it exited; returns how, once.
    pub fn poll_exit(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                let pid = child.id();
                self.child = None;
                let how = describe(status);
                self.exits.push((
                    plumb_model::Timestamp::now().to_rfc3339(),
                    format!("pid {pid} {how}"),
                ));
                Some(how)
            }
            _ => None,
        }
    }

    /// Its process group is stopped: SIGTERM, up to 3 s, then SIGKILL.
    pub fn stop(&mut self, journal: &Journal) {
        if let Some((pid, start)) = self.pid() {
            procs::signal_group(pid, start, libc::SIGCONT);
            procs::signal_group(pid, start, libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(3);
            while self.poll_exit().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.child.is_some() {
                procs::signal_group(pid, start, libc::SIGKILL);
                if let Some(c) = self.child.as_mut() {
                    let _ = c.wait();
                }
                self.poll_exit();
                self.child = None;
            }
            // What is left in its group (children that outlived it).
            procs::signal_group(pid, start, libc::SIGKILL);
        }
        if let Some(e) = self.entry.take() {
            journal.done(e);
        }
    }

    /// Ends a process group whose leader already exited (kill, evict) and
    /// drops its journal entry.
    pub fn forget(&mut self, journal: &Journal) {
        if self.child.is_none()
            && let Some(e) = self.entry.take()
        {
            journal.done(e);
        }
    }

    /// The variables it currently runs with beyond its own.
    pub fn env_now(&self) -> (BTreeMap<String, String>, Vec<String>) {
        self.env_now.clone()
    }

    /// Whether to start it again after a fault ended it.
    pub fn restarts(&self) -> bool {
        self.spec.restart
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with {c}"),
        (None, Some(s)) => format!("was killed by {}", crate::scenario::signal_name(s)),
        _ => "ended".into(),
    }
}

/// The processes a target stands for now: (pid, start, command line).
pub fn processes(
    target: &Target,
    started: &BTreeMap<String, Running>,
    runs: &RunResolver,
) -> Result<Vec<procs::Proc>> {
    let lineage = procs::own_lineage();
    let mut out: Vec<procs::Proc> = match &target.kind {
        TargetKind::Command(_) => match started.get(&target.name).and_then(|r| r.pid()) {
            Some((pid, _)) => procs::tree(pid),
            None => Vec::new(),
        },
        TargetKind::Pattern(re) => procs::all()
            .into_iter()
            .filter(|p| p.state != 'Z' && !p.cmdline.is_empty() && re.is_match(&p.cmdline))
            .collect(),
        TargetKind::Name(name) => procs::all()
            .into_iter()
            .filter(|p| p.state != 'Z' && &p.comm == name)
            .collect(),
        TargetKind::Cgroup(dir) => cgroup_procs(dir),
        TargetKind::Run(name) => {
            let mut v = Vec::new();
            for pid in runs(name)? {
                v.extend(procs::tree(pid));
            }
            v
        }
    };
    out.retain(|p| !lineage.contains(&p.pid));
    out.sort_by_key(|p| p.pid);
    out.dedup_by_key(|p| p.pid);
    Ok(out)
}

/// The live processes of a cgroup, from its `cgroup.procs`.
pub fn cgroup_procs(dir: &Path) -> Vec<procs::Proc> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter_map(procs::read)
        .filter(|p| p.state != 'Z')
        .collect()
}
