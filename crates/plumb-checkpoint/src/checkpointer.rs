//! The [`Checkpointer`]: one writer of one checkpoint directory.

use crate::dir::{self, CheckpointInfo, LOCK_FILE, file_name, is_temp_name, temp_name};
use crate::error::CheckpointError;
use crate::format::{HEADER_LEN, TRAILER_LEN, check_encoding, checksum, encode_header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The exit code of a program that saved its state after an eviction signal
/// and exited on purpose: 75, `EX_TEMPFAIL` in `sysexits.h` ("temporary
/// failure; the user is invited to retry"). A supervisor that sees it should
/// restart the program, which then resumes from its checkpoint. The Python
/// package uses the same code.
pub const EXIT_EVICTED: i32 = 75;

/// The signals caught by default: SIGTERM (Kubernetes, Slurm, HTCondor,
/// systemd), SIGQUIT, and SIGUSR1 (Slurm `--signal`, Lightning's requeue).
pub const DEFAULT_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGQUIT, libc::SIGUSR1];

/// The number of checkpoints kept by default.
pub const DEFAULT_KEEP: usize = 3;

/// Settings for [`Checkpointer`]; start with [`Checkpointer::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    dir: PathBuf,
    keep: usize,
    every_steps: Option<u64>,
    every: Option<Duration>,
    signals: Vec<i32>,
    exit_code: i32,
}

impl Builder {
    /// Keep the newest `keep` checkpoint files (at least 1; default 3).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }

    /// Make [`Checkpointer::should_save`] true every `steps` calls of
    /// [`Checkpointer::step`].
    pub fn every_steps(mut self, steps: u64) -> Self {
        self.every_steps = Some(steps);
        self
    }

    /// Make [`Checkpointer::should_save`] true once `interval` has passed
    /// since the last save (or since opening).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = Some(interval);
        self
    }

    /// The signals that request a save-and-exit (default: [`DEFAULT_SIGNALS`]).
    /// An empty list installs no handler at all.
    pub fn signals(mut self, signals: &[i32]) -> Self {
        self.signals = signals.to_vec();
        self
    }

    /// The exit code used by [`Checkpointer::exit_if_evicted`] (default
    /// [`EXIT_EVICTED`]).
    pub fn exit_code(mut self, code: i32) -> Self {
        self.exit_code = code;
        self
    }

    /// Opens the directory (creating it if needed), takes its lock, deletes
    /// temporary files left by a killed writer, finds the newest valid
    /// checkpoint, and installs the signal handlers.
    ///
    /// # Errors
    /// [`CheckpointError::Locked`] when another process writes the directory,
    /// [`CheckpointError::Dir`] when it cannot be created or read,
    /// [`CheckpointError::Config`] for invalid settings,
    /// [`CheckpointError::Signal`] when a handler cannot be installed.
    pub fn open(self) -> Result<Checkpointer, CheckpointError> {
        if self.keep == 0 {
            return Err(CheckpointError::Config(
                "keep must be at least 1: keeping no checkpoint would delete the one just saved"
                    .into(),
            ));
        }
        if self.every_steps == Some(0) {
            return Err(CheckpointError::Config(
                "every_steps must be at least 1".into(),
            ));
        }
        for &sig in &self.signals {
            if signal_hook::consts::FORBIDDEN.contains(&sig) {
                return Err(CheckpointError::Config(format!(
                    "signal {sig} cannot be caught (SIGKILL, SIGSTOP, SIGILL, SIGFPE and SIGSEGV are not allowed)"
                )));
            }
        }
        let dir = self.dir;
        let dir_err = |source| CheckpointError::Dir {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(dir_err)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(dir_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(CheckpointError::Locked {
                    dir,
                    lock: lock_path,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(dir_err(e)),
        }
        // Opened once so that every save can fsync the directory entry it
        // renamed without reopening it.
        let dir_file = File::open(&dir).map_err(dir_err)?;
        remove_stale_temps(&dir)?;
        let files = dir::list(&dir)?;
        let next_seq = files.last().map_or(1, |(seq, _)| seq.saturating_add(1));
        let restored = dir::newest_valid(&files);
        let eviction = Eviction::install(&self.signals)?;
        Ok(Checkpointer {
            dir,
            dir_file,
            lock,
            keep: self.keep,
            files: files.into_iter().map(|(seq, _)| seq).collect(),
            next_seq,
            restored,
            last_saved: None,
            every_steps: self.every_steps,
            every: self.every,
            steps: 0,
            last_save: Instant::now(),
            eviction,
            exit_code: self.exit_code,
        })
    }
}

fn remove_stale_temps(dir: &Path) -> Result<(), CheckpointError> {
    let dir_err = |source| CheckpointError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            // A leftover of a writer killed mid-save; we hold the lock, so no
            // live writer owns it.
            tracing::debug!(file = %entry.path().display(), "removing leftover temporary checkpoint");
            if let Err(error) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), %error, "cannot remove leftover temporary checkpoint");
            }
        }
    }
    Ok(())
}

/// The signal handlers: each sets `signal` to its own number. The flag is an
/// atomic because it is written from the signal handler and polled by the
/// program at its safe points; nothing else happens inside the handler.
#[derive(Debug)]
struct Eviction {
    signal: Arc<AtomicUsize>,
    ids: Vec<(i32, signal_hook::SigId)>,
}

impl Eviction {
    fn install(signals: &[i32]) -> Result<Eviction, CheckpointError> {
        let signal = Arc::new(AtomicUsize::new(0));
        let mut eviction = Eviction {
            signal,
            ids: Vec::new(),
        };
        for &sig in signals {
            let id = signal_hook::flag::register_usize(sig, eviction.signal.clone(), sig as usize)
                .map_err(|source| CheckpointError::Signal {
                    signal: sig,
                    source,
                })?;
            eviction.ids.push((sig, id));
        }
        Ok(eviction)
    }
}

impl Drop for Eviction {
    fn drop(&mut self) {
        for (sig, id) in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
            // Unregistering leaves signal-hook's handler in place with no
            // action, which would make the signal ignored: give it back its
            // default behaviour (terminate) instead.
            let always = Arc::new(AtomicBool::new(true));
            if let Err(error) = signal_hook::flag::register_conditional_default(sig, always) {
                tracing::warn!(signal = sig, %error, "cannot restore the default action of signal");
            }
        }
    }
}

/// The one writer of a checkpoint directory.
///
/// See the crate documentation for the file format and the save protocol.
#[derive(Debug)]
pub struct Checkpointer {
    dir: PathBuf,
    dir_file: File,
    lock: File,
    keep: usize,
    /// Sequence numbers of the checkpoint files in the directory, oldest
    /// first, valid or not; tracked here so a save need not list the
    /// directory.
    files: VecDeque<u64>,
    next_seq: u64,
    restored: Option<(CheckpointInfo, Vec<u8>)>,
    last_saved: Option<CheckpointInfo>,
    every_steps: Option<u64>,
    every: Option<Duration>,
    steps: u64,
    last_save: Instant,
    eviction: Eviction,
    exit_code: i32,
}

impl Checkpointer {
    /// Settings for a checkpointer of `dir`; finish with [`Builder::open`].
    pub fn builder(dir: impl Into<PathBuf>) -> Builder {
        Builder {
            dir: dir.into(),
            keep: DEFAULT_KEEP,
            every_steps: None,
            every: None,
            signals: DEFAULT_SIGNALS.to_vec(),
            exit_code: EXIT_EVICTED,
        }
    }

    /// Opens `dir` with the default settings: keep 3, no periodic saving,
    /// handlers for SIGTERM, SIGQUIT and SIGUSR1. See [`Builder::open`].
    ///
    /// # Errors
    /// As [`Builder::open`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Checkpointer, CheckpointError> {
        Self::builder(dir).open()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest valid checkpoint found by `open`, if any.
    pub fn restored(&self) -> Option<&CheckpointInfo> {
        self.restored.as_ref().map(|(info, _)| info)
    }

    /// The payload of the newest valid checkpoint found by `open`, in
    /// whatever encoding it was saved (see [`CheckpointInfo::encoding`]).
    pub fn restored_bytes(&self) -> Option<&[u8]> {
        self.restored
            .as_ref()
            .map(|(_, payload)| payload.as_slice())
    }

    /// Takes the restored checkpoint out of the checkpointer, freeing its
    /// memory.
    pub fn take_restored(&mut self) -> Option<(CheckpointInfo, Vec<u8>)> {
        self.restored.take()
    }

    /// Deserializes the newest valid checkpoint found by `open` from JSON.
    /// `Ok(None)` when there was none: a first start.
    ///
    /// # Errors
    /// [`CheckpointError::WrongEncoding`] when it was saved in another
    /// encoding, [`CheckpointError::Deserialize`] when the JSON does not fit `T`.
    pub fn restore<T: DeserializeOwned>(&self) -> Result<Option<T>, CheckpointError> {
        let Some((info, payload)) = &self.restored else {
            return Ok(None);
        };
        if info.encoding != "json" {
            return Err(CheckpointError::WrongEncoding {
                path: info.path.clone(),
                found: info.encoding.clone(),
                expected: "json".into(),
            });
        }
        serde_json::from_slice(payload)
            .map(Some)
            .map_err(|e| CheckpointError::Deserialize {
                path: info.path.clone(),
                encoding: info.encoding.clone(),
                message: e.to_string(),
            })
    }

    /// The last checkpoint saved by this checkpointer.
    pub fn last_saved(&self) -> Option<&CheckpointInfo> {
        self.last_saved.as_ref()
    }

    /// Saves `state` as JSON. See [`Checkpointer::save_bytes`].
    ///
    /// # Errors
    /// [`CheckpointError::Serialize`], or as [`Checkpointer::save_bytes`].
    pub fn save<T: Serialize + ?Sized>(
        &mut self,
        state: &T,
    ) -> Result<CheckpointInfo, CheckpointError> {
        let payload = serde_json::to_vec(state).map_err(|e| CheckpointError::Serialize {
            encoding: "json".into(),
            message: e.to_string(),
        })?;
        self.save_bytes("json", &payload)
    }

    /// Saves `payload`, already encoded by the caller in any format, under
    /// the encoding name `encoding` (1 to 8 printable ASCII characters, such
    /// as `raw`, `cbor` or `bincode`).
    ///
    /// The save is atomic: the bytes go to a temporary file in the same
    /// directory, which is fsynced, renamed to its final name, and then the
    /// directory is fsynced. Older checkpoints beyond the newest `keep` are
    /// deleted only after that.
    ///
    /// # Errors
    /// [`CheckpointError::StorageFull`] or [`CheckpointError::Write`]; the
    /// temporary file is removed and the previous checkpoints are untouched.
    /// [`CheckpointError::Config`] for an invalid encoding name.
    pub fn save_bytes(
        &mut self,
        encoding: &str,
        payload: &[u8],
    ) -> Result<CheckpointInfo, CheckpointError> {
        check_encoding(encoding).map_err(CheckpointError::Config)?;
        // Every attempt consumes a sequence number, so a failed save can
        // never leave a file whose number a later save would reuse.
        let seq = self.next_seq;
        self.next_seq = seq.saturating_add(1);
        let time_ns = now_ns();
        let header = encode_header(seq, time_ns, payload.len() as u64, encoding);
        let crc = checksum(&header, payload);
        let temp = self.dir.join(temp_name(seq));
        let path = self.dir.join(file_name(seq));
        if let Err(source) = write_synced(&temp, &header, payload, crc) {
            remove_quietly(&temp);
            return Err(CheckpointError::write(path, source));
        }
        if let Err(source) = fs::rename(&temp, &path) {
            remove_quietly(&temp);
            return Err(CheckpointError::write(path, source));
        }
        self.files.push_back(seq);
        // Without this the rename may be lost in a power failure even though
        // the file's contents were synced.
        self.dir_file
            .sync_all()
            .map_err(|source| CheckpointError::write(path.clone(), source))?;
        let info = CheckpointInfo {
            path,
            seq,
            time_ns,
            size: (HEADER_LEN + payload.len() + TRAILER_LEN) as u64,
            payload_len: payload.len() as u64,
            encoding: encoding.to_string(),
        };
        self.prune();
        self.steps = 0;
        self.last_save = Instant::now();
        self.last_saved = Some(info.clone());
        tracing::debug!(file = %info.path.display(), seq, bytes = info.size, "checkpoint saved");
        Ok(info)
    }

    /// Deletes the oldest files beyond the newest `keep`. Failing to delete
    /// does not fail the save that came before: the new checkpoint is safe.
    fn prune(&mut self) {
        while self.files.len() > self.keep {
            let Some(old) = self.files.pop_front() else {
                break;
            };
            let path = self.dir.join(file_name(old));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "cannot delete old checkpoint");
                }
            }
        }
    }

    /// Counts one unit of work for `every_steps`.
    pub fn step(&mut self) {
        self.steps = self.steps.saturating_add(1);
    }

    /// True when a save is due: an eviction signal arrived, or `every_steps`
    /// steps or the `every` interval have passed since the last save.
    pub fn should_save(&self) -> bool {
        self.eviction_signal().is_some()
            || self.every_steps.is_some_and(|n| self.steps >= n)
            || self.every.is_some_and(|d| self.last_save.elapsed() >= d)
    }

    /// The signal that requested eviction, if one arrived.
    pub fn eviction_signal(&self) -> Option<i32> {
        match self.eviction.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }

    /// Exits the process with the eviction exit code ([`EXIT_EVICTED`] unless
    /// configured otherwise) if an eviction signal arrived. Call it right
    /// after a successful save.
    pub fn exit_if_evicted(&self) {
        if let Some(signal) = self.eviction_signal() {
            tracing::warn!(
                signal,
                code = self.exit_code,
                "state saved after eviction signal; exiting"
            );
            // Flushing is best effort: the checkpoint itself is already synced.
            let _ = io::stdout().flush();
            std::process::exit(self.exit_code);
        }
    }

    /// The usual call at a safe point of the work loop: counts a step, saves
    /// `state` if a save is due, and exits with the eviction code if an
    /// eviction signal arrived. Returns the checkpoint when one was saved.
    ///
    /// # Errors
    /// As [`Checkpointer::save`]. The process does not exit when the save
    /// failed, so the caller can decide what to do.
    pub fn at_safe_point<T: Serialize + ?Sized>(
        &mut self,
        state: &T,
    ) -> Result<Option<CheckpointInfo>, CheckpointError> {
        self.step();
        if !self.should_save() {
            return Ok(None);
        }
        let info = self.save(state)?;
        self.exit_if_evicted();
        Ok(Some(info))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing our descriptor is not enough to release the lock when a
        // child process forked meanwhile still holds a copy of it (between
        // fork and exec, or for good without exec); unlocking releases it
        // for every copy.
        if let Err(error) = self.lock.unlock() {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot release the checkpoint lock");
        }
    }
}

fn write_synced(temp: &Path, header: &[u8], payload: &[u8], crc: u32) -> io::Result<()> {
    // A leftover from an earlier failed attempt with the same number would
    // make create_new fail; it is ours (we hold the lock), so remove it.
    remove_quietly(temp);
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    file.write_all(header)?;
    let mut written = header.len();
    for chunk in payload.chunks(WRITEBACK_CHUNK) {
        file.write_all(chunk)?;
        if payload.len() > WRITEBACK_CHUNK {
            start_writeback(&file, written, chunk.len());
        }
        written += chunk.len();
    }
    file.write_all(&crc.to_le_bytes())?;
    file.sync_all()
}

/// Large payloads are written in chunks of this size, each handed to the
/// kernel for writeback as soon as it is written.
const WRITEBACK_CHUNK: usize = 8 << 20;

/// Starts writing `len` bytes at `offset` back to the disk without waiting.
/// Left alone, the kernel would keep a large state in the page cache until
/// the final fsync and only then write it all; starting early overlaps the
/// disk's work with ours. Only a hint: errors surface at the fsync.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is valid for the duration of the borrow of `file`.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: usize, _len: usize) {}

fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot remove temporary checkpoint")
        }
    }
}

fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
