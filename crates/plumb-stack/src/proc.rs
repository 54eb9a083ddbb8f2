//! What /proc says about a process: state, wait channel, threads, CPU
//! time, memory, open files and sockets. Needs no tool and no ptrace.

use plumb_model::stack::{Missing, MissingReason, ProcessSnapshot, Sockets};
use std::collections::HashSet;
use std::io;

/// Whether `/proc/PID` exists.
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The children of `pid`, from its tasks' `children` files, else from
/// every process's parent pid.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
                any = true;
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    if any {
        return out;
    }
    // Kernels without CONFIG_PROC_CHILDREN: scan every process's parent.
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if stat(child).is_some_and(|s| s.ppid == pid) {
            out.push(child);
        }
    }
    out
}

/// The fields of /proc/PID/stat used here.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// State letter (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: u8,
    /// Parent pid.
    pub ppid: u32,
    /// User CPU time, clock ticks.
    pub utime: u64,
    /// System CPU time, clock ticks.
    pub stime: u64,
    /// Threads.
    pub threads: u32,
    /// Resident pages.
    pub rss_pages: u64,
    /// When the process started, clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses /proc/PID/stat.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

fn parse_stat(s: &str) -> Option<Stat> {
    // The command name is in parentheses and may hold anything, so the
    // fields are counted from the last ')': rest[0] is field 3.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).copied();
    Some(Stat {
        state: *field(3)?.as_bytes().first()?,
        ppid: field(4)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        threads: field(20)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// When `pid` started, nanoseconds since the Unix epoch (the boot time
/// from /proc/stat plus its start in clock ticks; good to about a
/// second), or `None` when it is gone or unreadable.
pub fn started_unix_ns(pid: u32) -> Option<i64> {
    let ticks = stat(pid)?.start_ticks;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as i64 } else { 100 };
    Some(boot * 1_000_000_000 + ticks as i64 * (1_000_000_000 / hz))
}

/// Whether `pid` is alive and can be the process a run recorded as its
/// own, the run having started at `started_ns`: not older than the run
/// (10 s of margin for the boot time's one-second grain), and started
/// within 5 minutes of it (the recorder hashes input files between its
/// record and the spawn). A pid the kernel gave to another process after
/// the run's recorder died, its record still saying running, fails one or
/// the other, as the kernel hands pids out in rising order up to
/// `pid_max` before it wraps.
pub fn is_run_process(pid: u32, started_ns: i64) -> bool {
    const BEFORE_NS: i64 = 10_000_000_000;
    const AFTER_NS: i64 = 300_000_000_000;
    pid != 0
        && started_unix_ns(pid)
            .is_some_and(|at| at >= started_ns - BEFORE_NS && at <= started_ns + AFTER_NS)
}

/// The state letter in words, as `ps` documents them.
pub fn state_name(letter: u8) -> &'static str {
    match letter {
        b'R' => "running",
        b'S' => "sleeping",
        b'D' => "disk sleep",
        b'Z' => "zombie",
        b'T' => "stopped",
        b't' => "tracing stop",
        b'X' | b'x' => "dead",
        b'I' => "idle",
        b'P' => "parked",
        b'W' => "waking",
        b'K' => "wakekill",
        _ => "unknown",
    }
}

/// A process's command line, arguments joined by spaces, or its name.
pub fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !args.is_empty() {
        return args.join(" ");
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Whether the process is a Python interpreter: its executable is named
/// `python*`, or it has libpython mapped (an embedding program). Another
/// user's process hides both; its command line's program name decides
/// then, so the report names py-spy's refusal rather than a native tool's.
pub fn is_python(pid: u32) -> bool {
    let named_python = |p: &std::path::Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python"))
    };
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) if named_python(&exe) => return true,
        Ok(_) => {}
        Err(_) => {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            return named_python(std::path::Path::new(&*String::from_utf8_lossy(argv0)));
        }
    }
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.contains("/libpython"))
        .unwrap_or(false)
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 { v as u64 } else { fallback }
}

/// The /proc facts of one process. A process that does not exist comes
/// back with a [`MissingReason::Gone`] entry and nothing else.
pub fn facts(pid: u32) -> ProcessSnapshot {
    let mut p = ProcessSnapshot {
        pid,
        ..ProcessSnapshot::default()
    };
    let Some(st) = stat(pid) else {
        p.state = "gone".into();
        p.missing.push(Missing {
            what: "process".into(),
            reason: MissingReason::Gone,
            detail: format!("process {pid} does not exist (it ended)"),
        });
        return p;
    };
    let tick = sysconf(libc::_SC_CLK_TCK, 100);
    let page = sysconf(libc::_SC_PAGESIZE, 4096);
    p.ppid = st.ppid;
    p.state = state_name(st.state).to_string();
    p.threads = st.threads;
    p.cpu_user_ms = st.utime * 1000 / tick;
    p.cpu_system_ms = st.stime * 1000 / tick;
    p.rss_kib = st.rss_pages * page / 1024;
    p.command = command_line(pid);
    p.wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "0");
    p.python = is_python(pid);
    match descriptors(pid) {
        Ok((count, sockets)) => {
            p.open_files = Some(count);
            p.sockets = Some(socket_kinds(pid, &sockets));
        }
        Err(e) => p.missing.push(Missing {
            what: "open files".into(),
            reason: if e.kind() == io::ErrorKind::PermissionDenied {
                MissingReason::PermissionDenied
            } else if e.kind() == io::ErrorKind::NotFound {
                MissingReason::Gone
            } else {
                MissingReason::Failed
            },
            detail: format!("cannot read /proc/{pid}/fd: {e}"),
        }),
    }
    p
}

/// How many descriptors the process has open, and the inodes of its
/// sockets.
fn descriptors(pid: u32) -> io::Result<(u32, HashSet<u64>)> {
    let mut count = 0;
    let mut sockets = HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(e) = e else { continue };
        count += 1;
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        {
            sockets.insert(inode);
        }
    }
    Ok((count, sockets))
}

/// Sorts the socket inodes into kinds by the process's network
/// namespace's tables (/proc/PID/net/...).
fn socket_kinds(pid: u32, inodes: &HashSet<u64>) -> Sockets {
    let mut s = Sockets::default();
    if inodes.is_empty() {
        return s;
    }
    let mut seen = HashSet::new();
    for table in ["tcp", "tcp6"] {
        for (inode, st) in inet_table(pid, table) {
            if inodes.contains(&inode) && seen.insert(inode) {
                s.tcp += 1;
                // 0A is TCP_LISTEN in the kernel's table.
                if st == "0A" {
                    s.tcp_listening += 1;
                }
            }
        }
    }
    for table in ["udp", "udp6"] {
        for (inode, _) in inet_table(pid, table) {
            if inodes.contains(&inode) && seen.insert(inode) {
                s.udp += 1;
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
        for line in text.lines().skip(1) {
            // Num RefCount Protocol Flags Type St Inode [Path]
            if let Some(inode) = line.split_whitespace().nth(6).and_then(|i| i.parse().ok())
                && inodes.contains(&inode)
                && seen.insert(inode)
            {
                s.unix += 1;
            }
        }
    }
    s.other = (inodes.len() - seen.len()) as u32;
    s
}

/// (inode, state) of each row of /proc/PID/net/{tcp,tcp6,udp,udp6}.
fn inet_table(pid: u32, table: &str) -> Vec<(u64, String)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            Some((f.get(9)?.parse().ok()?, f.get(3)?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_the_runs_only_when_it_started_with_the_run() {
        let me = std::process::id();
        let at = started_unix_ns(me).expect("this process's start time");
        let now = plumb_model::Timestamp::now().as_nanos();
        assert!(at <= now && now - at < 3_600_000_000_000, "{at} vs {now}");
        assert!(is_run_process(me, at));
        assert!(
            is_run_process(me, at - 60_000_000_000),
            "spawned a minute after the record"
        );
        // A run recorded an hour after this process started, or an hour
        // before: the pid belongs to something else.
        assert!(!is_run_process(me, at + 3_600_000_000_000));
        assert!(!is_run_process(me, at - 3_600_000_000_000));
        assert!(!is_run_process(0, at));
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "42 (a) b) c) S 7 42 42 0 -1 4194560 100 0 0 0 25 5 0 0 20 0 3 0 \
                    1000 10000000 250 18446744073709551615";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, b'S');
        assert_eq!(st.ppid, 7);
        assert_eq!((st.utime, st.stime), (25, 5));
        assert_eq!(st.threads, 3);
        assert_eq!(st.rss_pages, 250);
    }

    #[test]
    fn this_process_is_seen_with_its_threads_files_and_a_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pid = std::process::id();
        let p = facts(pid);
        assert!(p.missing.is_empty(), "{:?}", p.missing);
        assert!(p.threads >= 1);
        assert!(p.rss_kib > 0);
        assert!(p.open_files.unwrap() >= 1);
        let s = p.sockets.unwrap();
        assert!(s.tcp_listening >= 1, "{s:?}");
        drop(listener);
    }

    #[test]
    fn a_process_that_does_not_exist_is_gone() {
        // Pid numbers stop at pid_max (at most 2^22), so this one is free.
        let p = facts(u32::MAX - 1);
        assert_eq!(p.missing[0].reason, MissingReason::Gone);
    }
}
