//! Throttles: at most N runs holding the same throttle at once.
//!
//! A throttle is a directory of N slot files; a run holds a slot by holding
//! an exclusive `flock(2)` on its file for as long as the command runs. The
//! kernel drops the lock when the holder exits, however it exits, so a
//! recorder killed with SIGKILL never leaves a slot taken. The lock's file
//! descriptor is close-on-exec: the command itself never holds the slot, so
//! a daemon it leaves behind does not keep it either. The directory is
//! `<plumb home>/throttle/<name>` by default; pointing several machines at
//! one directory on a shared file system with working `flock` (NFSv4, for
//! one) makes the throttle span them. With a collector configured, `plumb
//! run` makes throttles fleet-wide with leases at the collector instead
//! (`plumb_model::throttle`); this module is then only the `--throttle`
//! flag's parser.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The most slots a throttle may have (the same here and fleet-wide).
pub const MAX_SLOTS: u32 = plumb_model::throttle::MAX_SLOTS;

/// `--throttle NAME=N`: a throttle's name and how many runs may hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSpec {
    /// Letters, digits, `-`, `_` and `.`, at most 64 of them.
    pub name: String,
    /// How many runs may hold the throttle at once.
    pub slots: u32,
}

/// A bad `--throttle`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThrottleError {
    /// Not `NAME=N`.
    #[error("throttle `{0}`: expected NAME=N, like gpu=2")]
    Syntax(String),
    /// The name has characters that do not belong in a file name.
    #[error(
        "throttle `{0}`: the name must be 1 to 64 letters, digits, `-`, `_` or `.`, and not start with `.`"
    )]
    Name(String),
    /// The count is not a number from 1 to [`MAX_SLOTS`].
    #[error("throttle `{0}`: the number of slots must be a whole number from 1 to 4096")]
    Slots(String),
}

impl std::str::FromStr for ThrottleSpec {
    type Err = ThrottleError;
    fn from_str(s: &str) -> Result<Self, ThrottleError> {
        let (name, n) = s
            .split_once('=')
            .ok_or_else(|| ThrottleError::Syntax(s.to_string()))?;
        if !plumb_model::throttle::name_ok(name) {
            return Err(ThrottleError::Name(s.to_string()));
        }
        let slots: u32 = n
            .trim()
            .parse()
            .map_err(|_| ThrottleError::Slots(s.to_string()))?;
        if slots == 0 || slots > MAX_SLOTS {
            return Err(ThrottleError::Slots(s.to_string()));
        }
        Ok(ThrottleSpec {
            name: name.to_string(),
            slots,
        })
    }
}

impl std::fmt::Display for ThrottleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.slots)
    }
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _file: File,
    /// Which slot, from 0.
    pub index: u32,
    /// The slot's lock file.
    pub path: PathBuf,
}

/// Takes a free slot of `spec` in `dir` without waiting: `Ok(None)` when
/// every slot is held.
pub fn try_acquire(dir: &Path, spec: &ThrottleSpec) -> std::io::Result<Option<Slot>> {
    std::fs::create_dir_all(dir)?;
    // Start at a different slot for each caller so that many waiting runs
    // do not all queue on slot 0's file first.
    let start = fastrand::u32(..spec.slots);
    for k in 0..spec.slots {
        let index = (start + k) % spec.slots;
        let path = dir.join(format!("slot-{index}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(Slot {
                _file: file,
                index,
                path,
            }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_what_is_wrong() {
        let s: ThrottleSpec = "gpu=2".parse().unwrap();
        assert_eq!((s.name.as_str(), s.slots), ("gpu", 2));
        assert_eq!(s.to_string(), "gpu=2");
        assert!(matches!(
            "gpu".parse::<ThrottleSpec>(),
            Err(ThrottleError::Syntax(_))
        ));
        assert!(matches!(
            "../etc=2".parse::<ThrottleSpec>(),
            Err(ThrottleError::Name(_))
        ));
        assert!(matches!(
            "a/b=2".parse::<ThrottleSpec>(),
            Err(ThrottleError::Name(_))
        ));
        for bad in ["gpu=0", "gpu=-1", "gpu=x", "gpu=5000"] {
            let e = bad.parse::<ThrottleSpec>().unwrap_err();
            assert!(matches!(e, ThrottleError::Slots(_)), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn slots_are_exclusive_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let spec: ThrottleSpec = "db=2".parse().unwrap();
        let a = try_acquire(dir.path(), &spec).unwrap().expect("first slot");
        let b = try_acquire(dir.path(), &spec)
            .unwrap()
            .expect("second slot");
        assert_ne!(a.index, b.index);
        assert!(try_acquire(dir.path(), &spec).unwrap().is_none());
        drop(a);
        let c = try_acquire(dir.path(), &spec).unwrap().expect("freed slot");
        assert_ne!(c.index, b.index);
    }
}
