//! The processes of this machine, from /proc: finding targets, and
//! signalling a process only while it is the one that was chosen (its
//! start time is checked first, so a reused pid is never hit).

use std::path::Path;

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
    /// Its state letter (R, S, T, Z, ...).
    pub state: char,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

/// Reads one process, or None when it is gone.
pub fn read(pid: u32) -> Option<Proc> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // comm is in parentheses and may hold spaces or parentheses itself.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        comm,
        cmdline,
        state,
        start,
    })
}

/// Every process of this machine.
pub fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

/// This process and its ancestors: never a target.
pub fn own_lineage() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    let mut pid = std::process::id();
    for _ in 0..64 {
        match read(pid) {
            Some(p) if p.ppid > 0 => {
                out.push(p.ppid);
                pid = p.ppid;
            }
            _ => break,
        }
    }
    out
}

/// `root` and every live descendant of it.
pub fn tree(root: u32) -> Vec<Proc> {
    let all = all();
    let mut out: Vec<Proc> = all
        .iter()
        .filter(|p| p.pid == root && p.state != 'Z')
        .cloned()
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        for p in &all {
            if p.ppid == parent && p.state != 'Z' && !out.iter().any(|o| o.pid == p.pid) {
                out.push(p.clone());
            }
        }
        i += 1;
    }
    out
}

/// Sends `sig` to `pid` if it is still the process that started at
/// `start`. Returns whether it was sent.
pub fn signal(pid: u32, start: u64, sig: i32) -> bool {
    match read(pid) {
        Some(p) if p.start == start && p.state != 'Z' => {
            // SAFETY: kill(2) with a pid and signal number.
            unsafe { libc::kill(pid as i32, sig) == 0 }
        }
        _ => false,
    }
}

/// Sends `sig` to the process group led by `pid`, if that leader is still
/// the process that started at `start` (or is gone while its group lives:
/// the group id is not reused while any member lives).
pub fn signal_group(pid: u32, start: u64, sig: i32) -> bool {
    if let Some(p) = read(pid)
        && p.start != start
    {
        return false;
    }
    // SAFETY: kill(2) with a negative pid names a process group.
    unsafe { libc::kill(-(pid as i32), sig) == 0 }
}

/// Whether `pid` is alive and still the process that started at `start`.
pub fn alive(pid: u32, start: u64) -> bool {
    matches!(read(pid), Some(p) if p.start == start && p.state != 'Z')
}
