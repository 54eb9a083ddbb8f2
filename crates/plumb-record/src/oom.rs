//! Whether the kernel's OOM killer killed a run's processes.
//!
//! [`Watch::start`] runs once the child is spawned: it finds the child's
//! memory cgroup (`/proc/PID/cgroup`, the mounts in `/proc/self/mountinfo`;
//! cgroup v1's memory controller or v2's `memory.events`), reads its
//! `oom_kill` count and `/proc/vmstat`'s, and opens the kernel log
//! (`/dev/kmsg`) positioned at its end. [`Watch::finish`] reads them again
//! once the child is reaped and drains the kernel log's new records,
//! non-blocking. Nothing polls while the run runs.
//!
//! A rise of the cgroup's count is an OOM kill in the run's cgroup: of the
//! run's own process when the kernel log names its pid (or, the log being
//! unreadable, when it died by SIGKILL), else of another process of it (a
//! worker). Workers are known by their cgroup, not their parentage (they
//! are dead by then): in a cgroup shared with programs outside the run, an
//! OOM kill of one of those is taken for a worker's. Without a countable cgroup, the kernel log naming the run's
//! pid is the evidence. What cannot be read is reported once, with the
//! reason, as a warning on the run and only when it mattered (the run died
//! by SIGKILL, or the host counted OOM kills it cannot attribute); never as
//! zero and never as an error.

use plumb_model::{OomKill, OomSource};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the kernel's files are: `/proc` and `/dev/kmsg` on a real system,
/// a directory laid out the same way in tests.
#[derive(Debug, Clone)]
pub struct Sys {
    /// The proc file system (`/proc`).
    pub proc: PathBuf,
    /// The kernel log device (`/dev/kmsg`).
    pub kmsg: PathBuf,
}

impl Default for Sys {
    fn default() -> Self {
        Sys {
            proc: "/proc".into(),
            kmsg: "/dev/kmsg".into(),
        }
    }
}

/// A memory cgroup: its directory and its path inside the hierarchy.
#[derive(Debug, Clone)]
struct Cgroup {
    dir: PathBuf,
    path: String,
    v2: bool,
}

impl Cgroup {
    fn source(&self) -> OomSource {
        if self.v2 {
            OomSource::CgroupV2
        } else {
            OomSource::CgroupV1
        }
    }

    /// The cgroup's count of OOM kills.
    fn kills(&self) -> Result<u64, String> {
        // v2's memory.events counts the cgroups below too; its .local file
        // (Linux 5.7+) only this one, as v1's count does.
        let file = if !self.v2 {
            "memory.oom_control"
        } else if self.dir.join("memory.events.local").exists() {
            "memory.events.local"
        } else {
            "memory.events"
        };
        let p = self.dir.join(file);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        keyed(&text, "oom_kill")
            .ok_or_else(|| format!("{} has no oom_kill count (kernel too old)", p.display()))
    }

    /// The memory limit in bytes; `None` when unlimited or unreadable.
    fn limit(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        let n: u64 = text.trim().parse().ok()?;
        // v1 says "unlimited" with the largest page-aligned i64.
        (n < 1 << 62).then_some(n)
    }

    /// The peak memory use in bytes, when the kernel keeps one.
    fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// The value of `key N` in a `memory.events`-style file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Finds the memory cgroup of `pid`: cgroup v1's memory controller if it
/// is mounted, else cgroup v2 where its memory controller is enabled.
fn find_cgroup(sys: &Sys, pid: u32) -> Result<Cgroup, String> {
    let p = sys.proc.join(pid.to_string()).join("cgroup");
    let membership = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let p = sys.proc.join("self/mountinfo");
    let mounts = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    // mountinfo: id parent major:minor root mountpoint options [tags] - fstype source super
    let mount = |v2: bool| {
        mounts.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (root, point) = (*left.get(3)?, *left.get(4)?);
            let (fstype, sup) = (*right.first()?, right.get(2).copied().unwrap_or(""));
            let fits = if v2 {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup" && sup.split(',').any(|o| o == "memory")
            };
            fits.then(|| (root.to_string(), PathBuf::from(point)))
        })
    };
    let inside = |root: &str, point: &Path, path: &str| {
        let rel = path.strip_prefix(root).unwrap_or(path);
        point.join(rel.trim_start_matches('/'))
    };
    for line in membership.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if controllers.split(',').any(|c| c == "memory")
            && let Some((root, point)) = mount(false)
        {
            return Ok(Cgroup {
                dir: inside(&root, &point, path),
                path: path.to_string(),
                v2: false,
            });
        }
    }
    let v2 = membership
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string);
    match (v2, mount(true)) {
        (Some(path), Some((root, point))) => {
            let dir = inside(&root, &point, &path);
            if dir.join("memory.events").exists() {
                Ok(Cgroup {
                    dir,
                    path,
                    v2: true,
                })
            } else {
                Err(format!(
                    "no memory cgroup: the v1 memory controller is not mounted and v2's is not \
                     enabled for {} ({} has no memory.events)",
                    path,
                    dir.display()
                ))
            }
        }
        _ => Err(
            "no memory cgroup: neither the v1 memory controller nor cgroup v2 is mounted".into(),
        ),
    }
}

/// `/proc/vmstat`'s count of OOM kills on the host.
fn vmstat_kills(sys: &Sys) -> Result<u64, String> {
    let p = sys.proc.join("vmstat");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    keyed(&text, "oom_kill").ok_or_else(|| format!("{} has no oom_kill count", p.display()))
}

/// A process the kernel log says the OOM killer killed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Victim {
    pid: u32,
    command: Option<String>,
    memcg: Option<String>,
}

/// Reads the OOM kills out of kernel log records (`/dev/kmsg` format:
/// `prio,seq,usec,flags;message`, or bare messages).
fn victims(records: &[String]) -> Vec<Victim> {
    let mut out: Vec<Victim> = Vec::new();
    let mut add = |v: Victim| match out.iter_mut().find(|o| o.pid == v.pid) {
        Some(o) => {
            o.command = o.command.take().or(v.command);
            o.memcg = o.memcg.take().or(v.memcg);
        }
        None => out.push(v),
    };
    for r in records {
        let msg = r.split_once(';').map_or(r.as_str(), |(_, m)| m);
        let msg = msg.lines().next().unwrap_or("");
        if let Some(rest) = msg.split_once("Killed process ").map(|(_, r)| r) {
            // "Killed process 123 (python3) total-vm:..."
            let (pid, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let Ok(pid) = pid.parse() else { continue };
            let command = rest
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .map(|(c, _)| c.to_string());
            add(Victim {
                pid,
                command,
                memcg: None,
            });
        } else if let Some(rest) = msg.strip_prefix("oom-kill:") {
            // "oom-kill:constraint=...,task_memcg=/x,task=python3,pid=123,uid=0"
            let field = |k: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .map(str::to_string)
            };
            let Some(Ok(pid)) = field("pid").map(|p| p.parse()) else {
                continue;
            };
            add(Victim {
                pid,
                command: field("task"),
                memcg: field("task_memcg"),
            });
        }
    }
    out
}

/// The kernel log opened at its end, so that only what comes after is read.
#[derive(Debug)]
struct Kmsg(File);

/// Records read from the kernel log at the end of a run, at most this many.
const KMSG_MAX_RECORDS: usize = 100_000;

impl Kmsg {
    fn open(path: &Path) -> Result<Kmsg, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // /dev/kmsg seeks to the end of the log with SEEK_END.
        // SAFETY: lseek on a descriptor this function owns.
        unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&f), 0, libc::SEEK_END) };
        Ok(Kmsg(f))
    }

    /// Every record written since, without waiting for more. A plain file
    /// (in tests) is read to its end, one record a line.
    fn drain(mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        while out.len() < KMSG_MAX_RECORDS {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_string),
                ),
                // EPIPE: records were overwritten before we read them; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// The counters read when the child started.
#[derive(Debug)]
pub struct Watch {
    pid: u32,
    sys: Sys,
    cgroup: Result<Cgroup, String>,
    cgroup_before: Result<u64, String>,
    vmstat_before: Result<u64, String>,
    kmsg: Result<Kmsg, String>,
}

impl Watch {
    /// Reads the counters for the child `pid`, which must still be alive.
    pub fn start(pid: u32) -> Watch {
        Watch::start_in(Sys::default(), pid)
    }

    /// [`Watch::start`] over the given kernel files.
    pub fn start_in(sys: Sys, pid: u32) -> Watch {
        let kmsg = Kmsg::open(&sys.kmsg);
        let cgroup = find_cgroup(&sys, pid);
        let cgroup_before = match &cgroup {
            Ok(c) => c.kills(),
            Err(e) => Err(e.clone()),
        };
        let vmstat_before = vmstat_kills(&sys);
        Watch {
            pid,
            sys,
            cgroup,
            cgroup_before,
            vmstat_before,
            kmsg,
        }
    }

    /// Reads the counters again once the child is reaped. `sigkilled`:
    /// whether the child died by SIGKILL. Returns the OOM kill, if any, and
    /// a warning when the cause could not be checked and it mattered.
    pub fn finish(self, sigkilled: bool) -> (Option<OomKill>, Option<String>) {
        let records = match self.kmsg {
            Ok(k) => Ok(k.drain()),
            Err(e) => Err(e),
        };
        let victims = records.as_deref().map(victims);
        let cgroup_kills = match (&self.cgroup, &self.cgroup_before) {
            (Ok(c), Ok(before)) => c.kills().map(|after| after.saturating_sub(*before)),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        let vmstat_kills = match &self.vmstat_before {
            Ok(before) => vmstat_kills(&self.sys).map(|after| after.saturating_sub(*before)),
            Err(e) => Err(e.clone()),
        };
        let (limit, peak) = match &self.cgroup {
            Ok(c) => (c.limit(), c.peak()),
            Err(_) => (None, None),
        };
        let root_named = victims
            .as_ref()
            .is_ok_and(|v| v.iter().any(|v| v.pid == self.pid));

        if let (Ok(cg), Ok(kills @ 1..)) = (&self.cgroup, &cgroup_kills) {
            // Victims the log places in this cgroup (or the run's own
            // process, whatever the log says of its cgroup).
            let ours: Vec<&Victim> = victims
                .as_ref()
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.pid == self.pid || v.memcg.as_deref() == Some(&cg.path))
                        .collect()
                })
                .unwrap_or_default();
            let root = match &victims {
                Ok(_) => root_named,
                // Without the log, a SIGKILL in a cgroup that just
                // OOM-killed is taken for the OOM killer's.
                Err(_) => sigkilled,
            };
            let named = ours
                .iter()
                .find(|v| v.pid == self.pid)
                .or(ours.first())
                .copied();
            return (
                Some(OomKill {
                    root,
                    pids: ours.iter().map(|v| v.pid).collect(),
                    command: named.and_then(|v| v.command.clone()),
                    kills: *kills,
                    limit,
                    peak,
                    cgroup: Some(cg.path.clone()),
                    source: cg.source(),
                }),
                None,
            );
        }
        if root_named {
            let vs = victims.as_ref().map(Vec::as_slice).unwrap_or_default();
            let me = vs.iter().find(|v| v.pid == self.pid);
            return (
                Some(OomKill {
                    root: true,
                    pids: vec![self.pid],
                    command: me.and_then(|v| v.command.clone()),
                    kills: 1,
                    limit,
                    peak,
                    cgroup: self.cgroup.as_ref().ok().map(|c| c.path.clone()),
                    source: OomSource::KernelLog,
                }),
                None,
            );
        }
        // No OOM kill found. Say why not, when the answer was not known.
        let log_unread = records.as_ref().err();
        let warning = match (&cgroup_kills, log_unread) {
            (Err(cg), Some(log)) if sigkilled => Some(format!(
                "whether the OOM killer killed the run is unknown: {cg}; kernel log: {log}"
            )),
            // A cgroup count that stayed put rules the run out (it counts
            // every OOM kill of its processes, global ones too).
            (Err(_), Some(log)) if matches!(vmstat_kills, Ok(1..)) => Some(format!(
                "the OOM killer killed {} process(es) on this host during the run; which is \
                 unknown: kernel log: {log}",
                vmstat_kills.as_ref().copied().unwrap_or(0)
            )),
            _ => None,
        };
        (None, warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc, cgroup mounts and kernel log in a temporary directory.
    struct Fake {
        dir: tempfile::TempDir,
    }

    const PID: u32 = 4242;

    impl Fake {
        fn new(v2: bool) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join(format!("proc/{PID}"))).unwrap();
            std::fs::create_dir_all(root.join("proc/self")).unwrap();
            let (membership, mounts, cg) = if v2 {
                (
                    "0::/jobs/train\n".to_string(),
                    format!(
                        "38 31 0:38 / {}/cg2 rw,relatime - cgroup2 cgroup2 rw\n",
                        root.display()
                    ),
                    root.join("cg2/jobs/train"),
                )
            } else {
                (
                    "9:name=systemd:/\n4:memory:/jobs/train\n0::/\n".to_string(),
                    format!(
                        "32 31 0:29 / {}/cpu rw - cgroup cgroup rw,cpu\n\
                         35 31 0:32 / {}/memory rw,relatime - cgroup cgroup rw,memory\n\
                         40 31 0:38 / {}/cg2 rw,relatime - cgroup2 cgroup2 rw\n",
                        root.display(),
                        root.display(),
                        root.display()
                    ),
                    root.join("memory/jobs/train"),
                )
            };
            std::fs::write(root.join(format!("proc/{PID}/cgroup")), membership).unwrap();
            std::fs::write(root.join("proc/self/mountinfo"), mounts).unwrap();
            std::fs::write(root.join("proc/vmstat"), "pgfault 1\noom_kill 3\n").unwrap();
            std::fs::create_dir_all(&cg).unwrap();
            if v2 {
                std::fs::write(
                    cg.join("memory.events"),
                    "low 0\nhigh 0\nmax 9\noom 1\noom_kill 0\noom_group_kill 0\n",
                )
                .unwrap();
                std::fs::write(cg.join("memory.max"), "67108864\n").unwrap();
                std::fs::write(cg.join("memory.peak"), "67100000\n").unwrap();
            } else {
                std::fs::write(
                    cg.join("memory.oom_control"),
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                )
                .unwrap();
                std::fs::write(cg.join("memory.limit_in_bytes"), "67108864\n").unwrap();
                std::fs::write(cg.join("memory.max_usage_in_bytes"), "67108864\n").unwrap();
            }
            std::fs::write(root.join("kmsg"), "").unwrap();
            Fake { dir }
        }

        fn sys(&self) -> Sys {
            Sys {
                proc: self.dir.path().join("proc"),
                kmsg: self.dir.path().join("kmsg"),
            }
        }

        fn cg(&self) -> PathBuf {
            let v1 = self.dir.path().join("memory/jobs/train");
            if v1.exists() {
                v1
            } else {
                self.dir.path().join("cg2/jobs/train")
            }
        }

        /// What the kernel does on an OOM kill of `pid` in the cgroup.
        fn oom_kill(&self, pid: u32) {
            let cg = self.cg();
            if cg.join("memory.events").exists() {
                std::fs::write(
                    cg.join("memory.events"),
                    "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
                )
                .unwrap();
            } else {
                std::fs::write(
                    cg.join("memory.oom_control"),
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                )
                .unwrap();
            }
            std::fs::write(self.dir.path().join("proc/vmstat"), "oom_kill 4\n").unwrap();
            std::fs::write(
                self.dir.path().join("kmsg"),
                format!(
                    "6,420,5201756514,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/jobs/train,task_memcg=/jobs/train,task=python3,pid={pid},uid=0\n\
                     3,421,5201756545,-;Memory cgroup out of memory: Killed process {pid} (python3) total-vm:540856kB, anon-rss:65152kB\n"
                ),
            )
            .unwrap();
        }
    }

    #[test]
    fn an_oom_kill_in_a_v1_memory_cgroup_is_found_with_limit_and_peak() {
        let f = Fake::new(false);
        let w = Watch::start_in(f.sys(), PID);
        f.oom_kill(PID);
        let (oom, warning) = w.finish(true);
        let oom = oom.expect("an OOM kill");
        assert_eq!(warning, None);
        assert_eq!(oom.source, OomSource::CgroupV1);
        assert!(oom.root);
        assert_eq!(oom.pids, vec![PID]);
        assert_eq!(oom.command.as_deref(), Some("python3"));
        assert_eq!(oom.limit, Some(64 << 20));
        assert_eq!(oom.peak, Some(64 << 20));
        assert_eq!(oom.kills, 1);
        assert_eq!(oom.cgroup.as_deref(), Some("/jobs/train"));
    }

    #[test]
    fn an_oom_kill_in_a_v2_memory_cgroup_is_found_with_limit_and_peak() {
        let f = Fake::new(true);
        let w = Watch::start_in(f.sys(), PID);
        f.oom_kill(PID);
        let (oom, warning) = w.finish(true);
        let oom = oom.expect("an OOM kill");
        assert_eq!(warning, None);
        assert_eq!(oom.source, OomSource::CgroupV2);
        assert!(oom.root);
        assert_eq!(oom.limit, Some(64 << 20));
        assert_eq!(oom.peak, Some(67_100_000));
    }

    #[test]
    fn a_v2_kill_in_a_cgroup_below_the_runs_is_not_the_runs() {
        let f = Fake::new(true);
        let events = "oom 0\noom_kill 0\n";
        std::fs::write(f.cg().join("memory.events.local"), events).unwrap();
        let w = Watch::start_in(f.sys(), PID);
        // memory.events counts the kill below; memory.events.local does not.
        f.oom_kill(PID + 1);
        std::fs::write(f.cg().join("memory.events.local"), events).unwrap();
        assert_eq!(w.finish(false), (None, None));
    }

    #[test]
    fn a_v2_cgroup_without_a_limit_has_none_rather_than_a_number() {
        let f = Fake::new(true);
        std::fs::write(f.cg().join("memory.max"), "max\n").unwrap();
        std::fs::remove_file(f.cg().join("memory.peak")).unwrap();
        let w = Watch::start_in(f.sys(), PID);
        f.oom_kill(PID);
        let oom = w.finish(true).0.expect("an OOM kill");
        assert_eq!((oom.limit, oom.peak), (None, None));
    }

    #[test]
    fn a_worker_killed_while_the_root_survived_is_recorded_as_not_the_root() {
        let f = Fake::new(false);
        let w = Watch::start_in(f.sys(), PID);
        f.oom_kill(PID + 1);
        let oom = w.finish(false).0.expect("an OOM kill");
        assert!(!oom.root);
        assert_eq!(oom.pids, vec![PID + 1]);
    }

    #[test]
    fn a_sigkill_without_an_oom_kill_is_not_reported_as_one() {
        let f = Fake::new(false);
        let w = Watch::start_in(f.sys(), PID);
        let (oom, warning) = w.finish(true);
        assert_eq!(oom, None);
        assert_eq!(warning, None, "the cgroup's count answered the question");
    }

    #[test]
    fn without_a_cgroup_the_kernel_log_naming_the_pid_is_the_evidence() {
        let f = Fake::new(false);
        std::fs::write(f.sys().proc.join(format!("{PID}/cgroup")), "0::/\n").unwrap();
        std::fs::write(f.sys().proc.join("self/mountinfo"), "").unwrap();
        let w = Watch::start_in(f.sys(), PID);
        f.oom_kill(PID);
        let oom = w.finish(true).0.expect("an OOM kill");
        assert_eq!(oom.source, OomSource::KernelLog);
        assert!(oom.root);
        assert_eq!((oom.limit, oom.peak), (None, None));
    }

    #[test]
    fn nothing_readable_gives_one_warning_with_the_reasons_and_no_oom() {
        let f = Fake::new(false);
        let mut sys = f.sys();
        sys.proc = f.dir.path().join("no-proc");
        sys.kmsg = f.dir.path().join("no-kmsg");
        let w = Watch::start_in(sys, PID);
        let (oom, warning) = w.finish(true);
        assert_eq!(oom, None);
        let warning = warning.expect("a warning");
        assert!(warning.contains("unknown"), "{warning}");
        assert!(warning.contains("no-proc"), "{warning}");
        assert!(warning.contains("no-kmsg"), "{warning}");
        // A run that exited by itself needs no such warning.
        let mut sys = f.sys();
        sys.proc = f.dir.path().join("no-proc");
        sys.kmsg = f.dir.path().join("no-kmsg");
        assert_eq!(Watch::start_in(sys, PID).finish(false), (None, None));
    }

    #[test]
    fn host_oom_kills_warn_only_when_neither_cgroup_nor_log_could_tell() {
        let f = Fake::new(false);
        let mut sys = f.sys();
        sys.kmsg = f.dir.path().join("no-kmsg");
        // The cgroup's count stayed put: not the run's, no warning.
        let w = Watch::start_in(sys.clone(), PID);
        std::fs::write(sys.proc.join("vmstat"), "oom_kill 9\n").unwrap();
        assert_eq!(w.finish(false), (None, None));
        // Without the cgroup either, the host's kills are worth a warning.
        std::fs::write(sys.proc.join("self/mountinfo"), "").unwrap();
        let w = Watch::start_in(sys.clone(), PID);
        std::fs::write(sys.proc.join("vmstat"), "oom_kill 10\n").unwrap();
        let (oom, warning) = w.finish(false);
        assert_eq!(oom, None);
        assert!(
            warning
                .expect("a warning")
                .contains("killed 1 process(es) on this host")
        );
    }

    #[test]
    fn kernel_log_records_are_parsed_for_pid_command_and_cgroup() {
        let v = victims(&[
            "4,343,5201752309,-;python3 invoked oom-killer: gfp_mask=0xcc0".into(),
            "6,420,1,-;oom-kill:constraint=CONSTRAINT_NONE,task_memcg=/a,task=x y,pid=7,uid=0"
                .into(),
            "3,421,2,-;Out of memory: Killed process 7 (x y) total-vm:1kB".into(),
            "3,422,3,-;Killed process 9 (z)".into(),
            "3,423,4,-;Killed process notapid (z)".into(),
        ]);
        assert_eq!(
            v,
            vec![
                Victim {
                    pid: 7,
                    command: Some("x y".into()),
                    memcg: Some("/a".into())
                },
                Victim {
                    pid: 9,
                    command: Some("z".into()),
                    memcg: None
                },
            ]
        );
    }
}
