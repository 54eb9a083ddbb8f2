//! The shared libraries the child actually loaded, sampled from
//! `/proc/PID/maps` while it runs: the file is empty once the child has
//! exited, and libraries loaded later (`dlopen`, Python extension modules)
//! only appear later, so it is read right away and then at growing
//! intervals, and the union of all samples is kept.

use plumb_model::Library;
use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Pauses between samples: early ones catch short programs, later ones
/// libraries loaded along the way; after these, one sample a second. When
/// the child executes another program (a wrapper or a pyenv shim running
/// the real interpreter), the schedule starts over, since the new program
/// maps its libraries in its first milliseconds.
const SCHEDULE_MS: &[u64] = &[2, 8, 40, 200, 250, 500];
const STEADY_MS: u64 = 1000;

/// What the sampler saw.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    pub(crate) paths: BTreeSet<String>,
    pub(crate) count: u32,
}

/// Samples the maps of `pid` until `stop` receives or is dropped, or the
/// process is gone.
pub(crate) fn sample_until(pid: u32, stop: Receiver<()>) -> Samples {
    let mut samples = Samples::default();
    let maps_path = format!("/proc/{pid}/maps");
    let stat_path = format!("/proc/{pid}/stat");
    // The process's start time guards against reading another process that
    // was given the same pid after the child was reaped.
    let started = start_time(&stat_path);
    let exe_path = format!("/proc/{pid}/exe");
    let mut exe = std::fs::read_link(&exe_path).ok();
    let mut step = 0;
    loop {
        match std::fs::read(&maps_path) {
            Ok(bytes) if start_time(&stat_path) == started => {
                samples.count += 1;
                parse_maps(&String::from_utf8_lossy(&bytes), &mut samples.paths);
            }
            // Gone, reused or not ours to read: nothing more to learn.
            _ => break,
        }
        let now = std::fs::read_link(&exe_path).ok();
        if now.is_some() && now != exe {
            exe = now;
            step = 0;
        }
        let pause = SCHEDULE_MS.get(step).copied().unwrap_or(STEADY_MS);
        step += 1;
        match stop.recv_timeout(Duration::from_millis(pause)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    samples
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks.
fn start_time(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after its closing parenthesis are plain.
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Adds the shared objects mapped in a maps file to `into`.
pub(crate) fn parse_maps(text: &str, into: &mut BTreeSet<String>) {
    for line in text.lines() {
        // address perms offset dev inode pathname; the pathname may contain
        // spaces, so it is whatever follows the fifth field.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            match rest.find(' ') {
                Some(i) => rest = &rest[i..],
                None => {
                    rest = "";
                    break;
                }
            }
        }
        let path = rest.trim();
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if path.starts_with('/') && is_shared_object(path) {
            into.insert(path.to_string());
        }
    }
}

/// `*.so` or `*.so.<version>`; not `/etc/ld.so.cache`, which the loader
/// maps too.
fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so")
        || name.find(".so.").is_some_and(|i| {
            let v = &name[i + 4..];
            !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

/// The version in a library's file name: `libssl.so.3` -> `3`,
/// `libfoo-1.2.3.so` -> `1.2.3`, `libpython3.11.so.1.0` -> `1.0`.
pub(crate) fn version_from_name(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let is_version = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_digit() || c == '.')
            && !s.ends_with('.')
    };
    if let Some(i) = name.find(".so.") {
        let v = &name[i + 4..];
        if is_version(v) {
            return Some(v.to_string());
        }
    }
    let stem = name.strip_suffix(".so")?;
    let (_, v) = stem.rsplit_once('-')?;
    is_version(v).then(|| v.to_string())
}

/// The sampled paths as model libraries, with versions where the name has one.
pub(crate) fn libraries(paths: &BTreeSet<String>) -> Vec<Library> {
    paths
        .iter()
        .map(|p| Library {
            path: p.clone(),
            version: version_from_name(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names() {
        let v = |p: &str| version_from_name(p);
        assert_eq!(
            v("/usr/lib/x86_64-linux-gnu/libssl.so.3").as_deref(),
            Some("3")
        );
        assert_eq!(v("/opt/lib/libfoo-1.2.3.so").as_deref(), Some("1.2.3"));
        assert_eq!(v("/usr/lib/libpython3.11.so.1.0").as_deref(), Some("1.0"));
        assert_eq!(v("/usr/lib/libstdc++.so.6.0.30").as_deref(), Some("6.0.30"));
        assert_eq!(v("/lib64/ld-linux-x86-64.so.2").as_deref(), Some("2"));
        assert_eq!(v("/x/_ssl.cpython-311-x86_64-linux-gnu.so"), None);
        assert_eq!(v("/x/libplain.so"), None);
    }

    #[test]
    fn maps_lines_are_parsed() {
        let maps = "\
55d0c6d4e000-55d0c6d50000 r--p 00000000 08:01 1234 /usr/bin/python3.11
7f77854e8000-7f778550e000 r--p 00000000 08:01 5678 /usr/lib/x86_64-linux-gnu/libc.so.6
7f77854e8000-7f778550e000 r-xp 00026000 08:01 5678 /usr/lib/x86_64-linux-gnu/libc.so.6
7f7785600000-7f7785601000 r--p 00000000 08:01 99 /home/a b/lib/libspace-2.0.so (deleted)
7ffd5a1f0000-7ffd5a211000 rw-p 00000000 00:00 0                          [stack]
7f7785700000-7f7785701000 rw-p 00000000 00:00 0
7f7785800000-7f7785801000 r--p 00000000 08:01 77 /etc/ld.so.cache
";
        let mut set = BTreeSet::new();
        parse_maps(maps, &mut set);
        let got: Vec<&str> = set.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "/home/a b/lib/libspace-2.0.so",
                "/usr/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
    }

    #[test]
    fn own_process_maps_show_libc() {
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        // Our own pid: sampling stops when the sender is dropped below.
        let handle = std::thread::spawn(move || sample_until(std::process::id(), rx));
        std::thread::sleep(Duration::from_millis(20));
        drop(_tx);
        let samples = handle.join().unwrap();
        assert!(samples.count >= 2, "{}", samples.count);
        assert!(
            samples.paths.iter().any(|p| p.contains("libc.so")),
            "{:?}",
            samples.paths
        );
    }
}
