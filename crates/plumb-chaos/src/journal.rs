//! The cleanup journal: before each injection (and each process plumb
//! starts), a file under `<home>/chaos/journal` says how to undo it; the
//! file is removed once it is undone. A `plumb chaos` that dies (SIGKILL,
//! a crash, a reboot of plumb alone) leaves its files, and the next
//! `plumb chaos` start replays them ([`replay`]): stopped processes are
//! continued, tmpfs mounts unmounted, started processes stopped, evicted
//! processes whose grace ran out killed. `plumb agent` keeps one under its
//! own plumb home for the faults it carries out for other machines'
//! scenarios, and replays it when it starts.
//!
//! Each scenario run holds an exclusive `flock` on `<run>.lock` for its
//! life, so a replay never undoes the faults of a run that is still going.

use crate::procs;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How to undo one injection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// SIGCONT these processes (pid, start time) that are still themselves.
    Continue {
        /// (pid, start time in ticks).
        pids: Vec<(u32, u64)>,
    },
    /// Unmount plumb's tmpfs from this directory.
    Unmount {
        /// The directory.
        path: PathBuf,
    },
    /// SIGKILL the process group of a process plumb started.
    KillGroup {
        /// The leader's pid.
        pid: u32,
        /// Its start time.
        start: u64,
    },
    /// Delete a network namespace plumb made (`plumb-...`): its veths,
    /// rules and qdiscs go with it.
    DeleteNetns {
        /// Its name under /run/netns.
        name: String,
    },
    /// End an eviction whose grace ran out: SIGKILL this process if it
    /// is still itself.
    Kill {
        /// Its pid.
        pid: u32,
        /// Its start time.
        start: u64,
    },
    /// Nothing outlives plumb (an in-process proxy's toxic, a signal sent).
    Nothing,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    what: String,
    #[serde(flatten)]
    undo: Undo,
}

/// One scenario run's journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    run: String,
    lock: Option<File>,
    next: AtomicU64,
}

/// A journal file, removed by [`Journal::done`].
#[derive(Debug)]
pub struct Written(PathBuf);

/// The journal directory under a plumb home.
pub fn dir(home: &Path) -> PathBuf {
    home.join("chaos").join("journal")
}

fn try_lock(f: &File) -> bool {
    // SAFETY: flock on a file descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl Journal {
    /// Opens a journal for a new run, holding its lock.
    pub fn open(home: &Path, run: &str) -> Result<Journal> {
        let dir = dir(home);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the chaos journal {}", dir.display()))?;
        let lock_path = dir.join(format!("{run}.lock"));
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        if !try_lock(&lock) {
            anyhow::bail!("{} is locked by another plumb chaos", lock_path.display());
        }
        Ok(Journal {
            dir,
            run: run.to_string(),
            lock: Some(lock),
            next: AtomicU64::new(1),
        })
    }

    /// Writes (and syncs) how to undo what is about to be done.
    pub fn write(&self, what: &str, undo: &Undo) -> Result<Written> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}-{n:04}.json", self.run));
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(&Entry {
            what: what.to_string(),
            undo: undo.clone(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("cannot write the chaos journal {}", path.display()))?;
        Ok(Written(path))
    }

    /// The injection was undone: its file goes.
    pub fn done(&self, w: Written) {
        if let Err(e) = std::fs::remove_file(&w.0) {
            tracing::warn!(path = %w.0.display(), error = %e, "cannot remove a chaos journal entry");
        }
    }

    /// The run ended: its lock goes.
    pub fn close(mut self) {
        self.lock.take();
        let _ = std::fs::remove_file(self.dir.join(format!("{}.lock", self.run)));
    }
}

/// Undoes what every dead run's journal lists, removes those files, and
/// returns one line per thing undone.
pub fn replay(home: &Path) -> Result<Vec<String>> {
    let dir = dir(home);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    let mut done = Vec::new();
    let mut dead: std::collections::BTreeMap<String, bool> = Default::default();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Some(run) = name
            .rsplit_once('-')
            .map(|(r, _)| r.to_string())
            .or_else(|| name.strip_suffix(".lock").map(str::to_string))
        else {
            continue;
        };
        let run = run.trim_end_matches(".lock").to_string();
        let is_dead = *dead.entry(run.clone()).or_insert_with(|| {
            let lock = dir.join(format!("{run}.lock"));
            match File::options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
            {
                // Taking the lock means its run is over; the lock is dropped
                // at once (and the file removed below when it is the lock).
                Ok(f) => try_lock(&f),
                Err(_) => false,
            }
        });
        if !is_dead {
            continue;
        }
        if name.ends_with(".lock") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let entry: Entry = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(e) => e,
            None => {
                tracing::warn!(path = %path.display(), "unreadable chaos journal entry removed");
                let _ = std::fs::remove_file(&path);
                continue;
            }
        };
        let how = undo(&entry.undo);
        done.push(format!("{}: {how}", entry.what));
        let _ = std::fs::remove_file(&path);
    }
    // The locks of the dead runs, including any the check above created.
    for (run, is_dead) in dead {
        if is_dead {
            let _ = std::fs::remove_file(dir.join(format!("{run}.lock")));
        }
    }
    Ok(done)
}

/// Does what `u` says; returns what was done, in words.
pub fn undo(u: &Undo) -> String {
    match u {
        Undo::Continue { pids } => {
            let n = pids
                .iter()
                .filter(|(pid, start)| procs::signal(*pid, *start, libc::SIGCONT))
                .count();
            format!("continued {n} of {} stopped processes", pids.len())
        }
        Undo::Unmount { path } => {
            if crate::fault::is_our_mount(path) {
                match crate::fault::unmount(path) {
                    Ok(()) => format!("unmounted the tmpfs over {}", path.display()),
                    Err(e) => format!("could not unmount {}: {e}", path.display()),
                }
            } else {
                format!("{} was no longer mounted", path.display())
            }
        }
        Undo::KillGroup { pid, start } => {
            if procs::signal_group(*pid, *start, libc::SIGKILL) {
                format!("killed the processes of {pid} it had started")
            } else {
                format!("the processes of {pid} it had started were gone")
            }
        }
        Undo::DeleteNetns { name } => {
            if !crate::netns::path_of(name).exists() {
                format!("network namespace {name} was gone")
            } else {
                match crate::netns::delete(name) {
                    Ok(()) => format!("deleted network namespace {name}"),
                    Err(e) => format!("could not delete network namespace {name}: {e}"),
                }
            }
        }
        Undo::Kill { pid, start } => {
            if procs::signal(*pid, *start, libc::SIGKILL) {
                format!("killed pid {pid}, whose eviction's grace had run out")
            } else {
                format!("pid {pid} had exited within its eviction's grace")
            }
        }
        Undo::Nothing => "nothing left to undo".to_string(),
    }
}
