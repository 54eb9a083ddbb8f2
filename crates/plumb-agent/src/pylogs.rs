//! Log records that Python processes spooled and never sent.
//!
//! `plumb.PlumbHandler` (python/plumb/log.py) spools the OTLP/JSON requests
//! it cannot send to `<outbox>/logs/logs-<pid>.jsonl`, one request per
//! line, and holds the lock `logs-<pid>.lock` while its process lives. A
//! short pipeline stage often ends before the collector is back; its file
//! then waits for another handler to take it over, which may never come.
//! The agent takes such files over the same way a handler does, so they
//! reach the collector: it holds a lock of its own pid, takes a dead
//! process's lock (the kernel drops a flock when its holder dies, so a live
//! process or a reused pid is never mistaken for a dead one), renames its
//! files to names of its own (atomic, so each file goes to exactly one
//! taker, and a taker that dies leaves them to the next), then posts them
//! line by line to `/v1/logs`, oldest first.

use plumb_ship::{Client, ShipError};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The OTLP/HTTP logs path.
const LOGS_PATH: &str = "/v1/logs";

/// Takes over and sends the spool files of dead Python processes in one
/// directory.
#[derive(Debug)]
pub struct PythonLogSpool {
    dir: PathBuf,
    /// This process's lock, held for its life once the directory exists.
    lock: Option<File>,
    /// Numbers the files taken over.
    taken: u64,
    /// Whether the last send failed (said once until one succeeds).
    failing: bool,
}

/// What one [`PythonLogSpool::drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Files taken over from dead processes.
    pub adopted: usize,
    /// Requests the collector took.
    pub sent: usize,
    /// Requests it refused as malformed (400) or too large (413): dropped,
    /// as the handler drops them.
    pub rejected: usize,
}

impl PythonLogSpool {
    /// The spool directory `dir` (`<outbox>/logs` by default).
    pub fn new(dir: PathBuf) -> PythonLogSpool {
        PythonLogSpool {
            dir,
            lock: None,
            taken: 0,
            failing: false,
        }
    }

    /// Takes over the files of dead processes and sends every file of its
    /// own, stopping at the first request the collector should get again
    /// later (unreachable, busy, refused token). What was sent is removed.
    pub fn drain(&mut self, client: &Client) -> Drained {
        let mut done = Drained::default();
        if !self.dir.is_dir() {
            return done;
        }
        if self.lock.is_none() {
            self.lock = lock(&self.dir.join(format!("logs-{}.lock", std::process::id())));
            if self.lock.is_none() {
                return done;
            }
        }
        done.adopted = self.adopt();
        for path in self.own_files() {
            if !self.send_file(client, &path, &mut done) {
                break;
            }
        }
        done
    }

    fn adopt(&mut self) -> usize {
        let me = std::process::id().to_string();
        let mut owners: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for name in names(&self.dir) {
            if let Some(pid) = owner(&name)
                && pid != me
            {
                owners.entry(pid.to_string()).or_default().push(name);
            }
        }
        let mut adopted = 0;
        for (pid, files) in owners {
            let lock_path = self.dir.join(format!("logs-{pid}.lock"));
            // Not taken: its process is alive (or another taker is at it).
            let Some(_held) = lock(&lock_path) else {
                continue;
            };
            for name in files {
                let target = loop {
                    self.taken += 1;
                    let t = self.dir.join(format!("logs-{me}-{}.jsonl", self.taken));
                    if !t.exists() {
                        break t;
                    }
                };
                match std::fs::rename(self.dir.join(&name), &target) {
                    Ok(()) => adopted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(file = %name, %error, "cannot take over a Python log spool file")
                    }
                }
            }
            // Removed while held: a taker that opened it meanwhile finds
            // nothing left to take.
            let _ = std::fs::remove_file(&lock_path);
        }
        adopted
    }

    /// This process's files, oldest first.
    fn own_files(&self) -> Vec<PathBuf> {
        let me = std::process::id().to_string();
        let mut own: Vec<(u64, PathBuf)> = names(&self.dir)
            .into_iter()
            .filter(|n| owner(n) == Some(me.as_str()))
            .map(|n| {
                let k = n
                    .trim_end_matches(".jsonl")
                    .rsplit_once('-')
                    .and_then(|(_, k)| k.parse().ok())
                    .unwrap_or(0);
                (k, self.dir.join(n))
            })
            .collect();
        own.sort();
        own.into_iter().map(|(_, p)| p).collect()
    }

    /// Sends one file's requests; true when all are gone.
    fn send_file(&mut self, client: &Client, path: &Path, done: &mut Drained) -> bool {
        let Ok(text) = std::fs::read(path) else {
            return true;
        };
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        let mut sent = 0;
        for line in &lines {
            match client.post(LOGS_PATH, "application/json", line, false, &[]) {
                Ok(_) => done.sent += 1,
                Err(ShipError::Http(e)) if matches!(e.status(), Some(400 | 413)) => {
                    let message = e.message().unwrap_or_default();
                    tracing::warn!(file = %path.display(), %message, "the collector refused a spooled Python log request; dropped");
                    done.rejected += 1;
                }
                Err(error) => {
                    if !self.failing {
                        tracing::warn!(%error, file = %path.display(), "spooled Python log records wait for the collector");
                        self.failing = true;
                    }
                    break;
                }
            }
            self.failing = false;
            sent += 1;
        }
        let result = if sent == lines.len() {
            std::fs::remove_file(path)
        } else if sent > 0 {
            // Keep what is left; the rename makes the rewrite atomic.
            let tmp = path.with_extension("jsonl.tmp");
            let mut rest = Vec::new();
            for l in &lines[sent..] {
                rest.extend_from_slice(l);
                rest.push(b'\n');
            }
            std::fs::write(&tmp, rest).and_then(|()| std::fs::rename(&tmp, path))
        } else {
            Ok(())
        };
        if let Err(error) = result {
            tracing::warn!(file = %path.display(), %error, "cannot rewrite a Python log spool file");
        }
        sent == lines.len()
    }
}

/// The file names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// The pid owning a spool file `logs-<pid>.jsonl` or `logs-<pid>-<n>.jsonl`.
fn owner(name: &str) -> Option<&str> {
    let stem = name.strip_prefix("logs-")?.strip_suffix(".jsonl")?;
    let (pid, n) = stem.split_once('-').unwrap_or((stem, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then_some(pid)
}

/// An exclusive flock on `path` (created 0600 if missing, as the handler
/// does), without waiting.
fn lock(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    // SAFETY: flock on a descriptor this function owns.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn spool_file_names_name_their_owner() {
        assert_eq!(owner("logs-123.jsonl"), Some("123"));
        assert_eq!(owner("logs-123-7.jsonl"), Some("123"));
        for bad in [
            "logs-.jsonl",
            "logs-12a.jsonl",
            "logs-1-x.jsonl",
            "logs-1.lock",
            "x-1.jsonl",
        ] {
            assert_eq!(owner(bad), None, "{bad}");
        }
    }
}
