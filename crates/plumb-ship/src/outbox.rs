//! The outbox: a directory of spool files waiting to be shipped, bounded in
//! size, with how far each was acknowledged.
//!
//! Spool files hold `plumb_model::frame` frames, as the recorder writes them (one
//! `<run id>.spool` per run, self-delimiting frames). Beside each, a sidecar
//! `<run id>.spool.acked` holds the byte offset up to which the collector
//! acknowledged it (16 bytes: the offset and its complement, so a torn write
//! reads as "nothing acknowledged" and is merely shipped again, which ingest
//! deduplicates). The sidecar is also the shipping lock: whoever holds its
//! `flock` ships that file, so `plumb run` and `plumb agent` never ship the
//! same file at once. The recorder holds an exclusive `flock` on a spool file
//! while its run goes on; an unlocked file is finished.
//!
//! The directory is bounded: when its spool files exceed the bound, the
//! oldest finished files are deleted whole, and the runs and bytes dropped
//! are added to `dropped.json`, which the agent reports to the collector.

use crate::ShipError;
use plumb_model::node::SpoolStats;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_model::frame::{HEADER, Header, KIND_RUN};

/// The default bound of an outbox: 1 GiB.
pub const DEFAULT_SPOOL_MAX: u64 = 1 << 30;

/// A finished spool file that was never fully readable is left alone this
/// long before being set aside, in case its writer is still starting up.
pub(crate) const SETTLE: Duration = Duration::from_secs(60);

/// The default outbox directory of a store directory: `<home>/outbox`, or
/// `$PLUMB_OUTBOX`. It is separate from the local-import spool directories so
/// that a local `plumb ls` never takes runs meant for the collector.
pub fn default_dir(home: &Path) -> PathBuf {
    match std::env::var_os("PLUMB_OUTBOX").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => home.join("outbox"),
    }
}

/// Cumulative drop counters, persisted in `dropped.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Spool files (runs) deleted because the outbox was full.
    pub runs: u64,
    /// Unshipped bytes deleted with them.
    pub bytes: u64,
}

/// One spool file in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub len: u64,
}

/// A bounded outbox directory; see the module docs.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Outbox, ShipError> {
        // Private whatever the umask: it holds runs waiting to be shipped.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ShipError::Io {
                what: "cannot create the outbox directory",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bound in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Spool files, oldest first. Run ids are UUIDv7, so file names sort by
    /// the time their run started.
    pub fn entries(&self) -> Vec<SpoolEntry> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<SpoolEntry> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
            .filter_map(|e| {
                let len = e.metadata().ok()?.len();
                Some(SpoolEntry {
                    path: e.path(),
                    len,
                })
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Files and bytes waiting, and the drop counters.
    pub fn stats(&self) -> SpoolStats {
        let entries = self.entries();
        let d = self.dropped();
        SpoolStats {
            files: entries.len() as u64,
            bytes: entries.iter().map(|e| e.len).sum(),
            dropped_runs: d.runs,
            dropped_bytes: d.bytes,
        }
    }

    /// Spool files whose recorder is still running (they are locked).
    pub fn runs_in_progress(&self) -> u32 {
        self.entries()
            .iter()
            .filter(|e| is_being_written(&e.path))
            .count() as u32
    }

    /// The cumulative drop counters.
    pub fn dropped(&self) -> Dropped {
        std::fs::read(self.dir.join("dropped.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Deletes the oldest finished spool files until the outbox fits its
    /// bound; returns what was dropped now (also added to `dropped.json`).
    /// Files whose run is going on are never deleted: their recorder would
    /// go on writing into a deleted file.
    pub fn enforce_bound(&self) -> Dropped {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        let mut now = Dropped::default();
        if total <= self.max_bytes {
            return now;
        }
        let Ok(_dir_lock) = self.lock_dir() else {
            return now;
        };
        for e in entries {
            if total <= self.max_bytes {
                break;
            }
            if e.len == 0 || is_being_written(&e.path) {
                continue;
            }
            let sidecar = sidecar_path(&e.path);
            // Someone shipping it right now: it is on its way out anyway.
            let Ok(side) = lock_sidecar(&sidecar) else {
                continue;
            };
            let acked = read_acked(&side).min(e.len);
            if std::fs::remove_file(&e.path).is_ok() {
                let _ = std::fs::remove_file(&sidecar);
                total -= e.len;
                now.runs += 1;
                now.bytes += e.len - acked;
                tracing::warn!(
                    path = %e.path.display(),
                    bytes = e.len - acked,
                    bound = self.max_bytes,
                    "outbox full: dropped the oldest spool file"
                );
            }
        }
        if now.runs > 0 {
            let mut d = self.dropped();
            d.runs += now.runs;
            d.bytes += now.bytes;
            if let Err(e) = write_atomic(
                &self.dir.join("dropped.json"),
                &serde_json::to_vec(&d).expect("counters serialize"),
            ) {
                tracing::warn!(error = %e, "cannot persist the outbox drop counters");
            }
        }
        now
    }

    /// Removes sidecars whose spool file is gone (a shipper died between
    /// deleting the two).
    pub fn remove_orphans(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "acked") && !p.with_extension("").exists() {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    fn lock_dir(&self) -> Result<File, ShipError> {
        let path = self.dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ShipError::Io {
                what: "cannot open",
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ShipError::Io {
                what: "cannot lock",
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(f)
    }
}

/// Whether a recorder holds the spool file's lock (its run is going on).
pub fn is_being_written(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    // SAFETY: flock on a valid, owned descriptor; the shared lock is
    // released when `f` is closed at the end of this function.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

pub(crate) fn sidecar_path(spool: &Path) -> PathBuf {
    let mut s = spool.as_os_str().to_owned();
    s.push(".acked");
    PathBuf::from(s)
}

/// Opens and locks a sidecar without waiting; `Err` when another shipper
/// holds it.
pub(crate) fn lock_sidecar(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: flock on a valid, owned descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

/// The acknowledged offset in a sidecar; 0 when empty or torn.
pub(crate) fn read_acked(mut f: &File) -> u64 {
    let mut b = [0u8; 16];
    if f.rewind().is_err() || f.read_exact(&mut b).is_err() {
        return 0;
    }
    let off = u64::from_le_bytes(b[..8].try_into().expect("8"));
    let check = u64::from_le_bytes(b[8..].try_into().expect("8"));
    if check == !off { off } else { 0 }
}

/// Writes the acknowledged offset in place and syncs it: it is 16 bytes in
/// one block, and a torn write reads as 0 (see [`read_acked`]).
pub(crate) fn write_acked(f: &File, off: u64) -> std::io::Result<()> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&off.to_le_bytes());
    b[8..].copy_from_slice(&(!off).to_le_bytes());
    f.write_all_at(&b, 0)?;
    f.sync_data()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
    };
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent()
        && let Ok(d) = File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Complete, checksummed frames read from a spool file.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The frames' bytes, headers included, exactly as in the file.
    pub bytes: Vec<u8>,
    /// Offset just past the last frame.
    pub end: u64,
    /// Frames.
    pub frames: usize,
    /// The last run-record frame among them (header included).
    pub last_run: Option<Vec<u8>>,
    /// Whether reading stopped at a frame that is corrupt (as opposed to
    /// incomplete, which a live writer produces all the time).
    pub corrupt: bool,
}

/// Reads whole frames from `start` (up to `len`) until about `max` bytes.
pub(crate) fn read_batch(file: &File, start: u64, len: u64, max: usize) -> std::io::Result<Batch> {
    let mut b = Batch {
        end: start,
        ..Default::default()
    };
    let mut pos = start;
    let mut header = [0u8; HEADER];
    while pos + HEADER as u64 <= len {
        file.read_exact_at(&mut header, pos)?;
        let Ok(h) = Header::parse(&header) else {
            b.corrupt = true;
            break;
        };
        if pos + h.frame_len() as u64 > len {
            break;
        }
        if b.frames > 0 && b.bytes.len() + h.frame_len() > max {
            break;
        }
        let at = b.bytes.len();
        b.bytes.extend_from_slice(&header);
        b.bytes.resize(at + h.frame_len(), 0);
        file.read_exact_at(&mut b.bytes[at + HEADER..], pos + HEADER as u64)?;
        if h.check(&b.bytes[at + HEADER..]).is_err() {
            b.bytes.truncate(at);
            b.corrupt = true;
            break;
        }
        if b.bytes[at + HEADER] == KIND_RUN {
            b.last_run = Some(b.bytes[at..].to_vec());
        }
        b.frames += 1;
        pos += h.frame_len() as u64;
        b.end = pos;
    }
    Ok(b)
}

/// The last run-record frame before `until`, reading only frame headers and
/// kinds of other frames.
pub(crate) fn last_run_frame(file: &File, until: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut pos = 0u64;
    let mut last = None;
    // The header and the kind byte after it.
    let mut header = [0u8; HEADER + 1];
    while pos + (HEADER as u64) < until {
        file.read_exact_at(&mut header, pos)?;
        let Ok(h) = Header::parse(header.first_chunk().expect("a header")) else {
            break;
        };
        if pos + h.frame_len() as u64 > until {
            break;
        }
        if header[HEADER] == KIND_RUN {
            let mut frame = vec![0u8; h.frame_len()];
            file.read_exact_at(&mut frame, pos)?;
            last = Some(frame);
        }
        pos += h.frame_len() as u64;
    }
    Ok(last)
}

/// Whether a run-record frame says the run has ended.
pub(crate) fn run_frame_ended(frame: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Ended {
        ended: Option<i64>,
    }
    frame.len() > 9
        && serde_json::from_slice::<Ended>(&frame[9..])
            .map(|e| e.ended.is_some())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        p.extend_from_slice(body);
        let mut f = Vec::new();
        plumb_model::frame::encode(&p, &mut f);
        f
    }

    #[test]
    fn batches_stop_at_torn_frames_and_find_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.spool");
        let mut bytes = frame(KIND_RUN, br#"{"ended":null}"#);
        bytes.extend(frame(3, &[7u8; 100]));
        bytes.extend(frame(KIND_RUN, br#"{"ended":5}"#));
        let whole = bytes.len() as u64;
        bytes.extend(&frame(3, &[1u8; 50])[..20]); // torn
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let b = read_batch(&f, 0, bytes.len() as u64, 1 << 20).unwrap();
        assert_eq!(b.frames, 3);
        assert_eq!(b.end, whole);
        assert!(!b.corrupt);
        assert!(run_frame_ended(b.last_run.as_ref().unwrap()));
        // A small batch limit still makes progress, one frame at a time.
        let b1 = read_batch(&f, 0, whole, 1).unwrap();
        assert_eq!(b1.frames, 1);
        assert!(!run_frame_ended(b1.last_run.as_ref().unwrap()));
        let last = last_run_frame(&f, whole).unwrap().unwrap();
        assert!(run_frame_ended(&last));
    }

    #[test]
    fn corrupt_frames_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.spool");
        let mut bytes = frame(KIND_RUN, b"{}");
        let mut bad = frame(3, b"abc");
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        bytes.extend(bad);
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let b = read_batch(&f, 0, bytes.len() as u64, 1 << 20).unwrap();
        assert_eq!(b.frames, 1);
        assert!(b.corrupt);
    }

    #[test]
    fn acked_offsets_round_trip_and_torn_ones_read_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.spool.acked");
        let f = lock_sidecar(&p).unwrap();
        assert_eq!(read_acked(&f), 0);
        write_acked(&f, 12345).unwrap();
        assert_eq!(read_acked(&f), 12345);
        // A second shipper cannot take it while the first holds it.
        assert!(lock_sidecar(&p).is_err());
        f.write_all_at(&[9u8; 3], 0).unwrap();
        assert_eq!(read_acked(&f), 0);
    }

    #[test]
    fn the_bound_drops_the_oldest_finished_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path(), 2500).unwrap();
        for name in ["01", "02", "03"] {
            std::fs::write(dir.path().join(format!("{name}.spool")), vec![0u8; 1000]).unwrap();
        }
        // The oldest is being written: it must survive.
        let live = File::open(dir.path().join("01.spool")).unwrap();
        // SAFETY: flock on a valid descriptor.
        assert_eq!(unsafe { libc::flock(live.as_raw_fd(), libc::LOCK_EX) }, 0);
        let d = ob.enforce_bound();
        assert_eq!(
            d,
            Dropped {
                runs: 1,
                bytes: 1000
            }
        );
        assert!(dir.path().join("01.spool").exists());
        assert!(!dir.path().join("02.spool").exists());
        assert!(dir.path().join("03.spool").exists());
        assert_eq!(
            ob.dropped(),
            Dropped {
                runs: 1,
                bytes: 1000
            }
        );
        assert_eq!(ob.runs_in_progress(), 1);
        let s = ob.stats();
        assert_eq!((s.files, s.bytes, s.dropped_runs), (2, 2000, 1));
    }
}
