//! The local spool: where a run's records wait when the store cannot take
//! them (read-only, disk full, locked too long), to be imported later.
//!
//! One file per run, `<run id>.spool`, a sequence of frames
//! `u32 length (LE) | u32 CRC32C of payload (LE) | payload`. The payload's
//! first byte is its kind: 1 a run record (JSON; the last one wins), 2 a
//! fingerprint (`u16` hash length, hash, JSON), 3 an output chunk (fixed
//! little-endian header, bloom, data). A torn last frame (the recorder died
//! mid-write) is ignored; everything before it is imported. The writer holds
//! an exclusive `flock` on the file while the run is going on, and importers
//! skip locked files.
//!
//! The same frames are the body of the collector's native ingest request;
//! [`Store::import_frames`] checks them strictly (a torn or corrupt frame is
//! an error naming its index, and nothing is stored) because a request body,
//! unlike a file left by a dead recorder, can simply be sent again.

use crate::chunk::SealedChunk;
use crate::error::{Result, StoreError};
use crate::{Store, put_chunks_tx, put_fingerprint_conn, put_run_tx};
use plumb_model::{Fingerprint, OutputGap, Run, Stream, Timestamp};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use plumb_model::frame::{self, KIND_CHUNK, KIND_FINGERPRINT, KIND_RUN};

/// The spool directories to try, in order: `$PLUMB_SPOOL` (as given: a
/// directory the user chose, imported by every store that uses it), then
/// `<store>/spool`, then the fallbacks outside the store,
/// `$XDG_RUNTIME_DIR/plumb-spool/<key>` and `/tmp/plumb-spool-<uid>/<key>`,
/// where `<key>` names the store ([`store_key`]): a fallback spool belongs
/// to one store and only that store imports it.
pub fn candidate_dirs(store_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(s) = std::env::var_os("PLUMB_SPOOL").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(s));
    }
    dirs.push(store_dir.join("spool"));
    let key = store_key(store_dir);
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(x).join("plumb-spool").join(&key));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    dirs.push(PathBuf::from(format!("/tmp/plumb-spool-{uid}")).join(&key));
    dirs
}

/// A short name for the store at `store_dir`, the same for every spelling
/// of its path that resolves alike: the hash of its absolute path (with
/// symbolic links resolved where the path exists).
pub fn store_key(store_dir: &Path) -> String {
    let abs = std::fs::canonicalize(store_dir)
        .or_else(|_| std::path::absolute(store_dir))
        .unwrap_or_else(|_| store_dir.to_path_buf());
    let h = xxhash_rust::xxh3::xxh3_64(abs.as_os_str().as_encoded_bytes());
    format!("store-{h:016x}")
}

/// Creates `dir` (and missing parents) private to this user (0700,
/// whatever the umask). `dir` and a parent named `plumb-spool*` (the
/// per-user directory in /tmp) must be real directories owned by this user
/// that nobody else may write: in a shared place such as /tmp, another user
/// could have created them first to read or replace spooled records. Such
/// a directory is refused, naming it; one of ours that others could merely
/// read is tightened to 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let parent = dir.parent().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("plumb-spool"))
    });
    for d in std::iter::once(dir).chain(parent) {
        let m = std::fs::symlink_metadata(d)?;
        if !m.is_dir() {
            return Err(refused(format!(
                "{} is not a directory (a symbolic link or a file): refusing to spool there",
                d.display()
            )));
        }
        if m.uid() != uid {
            return Err(refused(format!(
                "{} belongs to uid {}, not to this user (uid {uid}): refusing to spool there",
                d.display(),
                m.uid()
            )));
        }
        if m.mode() & 0o022 != 0 {
            return Err(refused(format!(
                "{} may be written by other users (mode {:o}): refusing to spool there",
                d.display(),
                m.mode() & 0o7777
            )));
        }
        if m.mode() & 0o077 != 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
            tracing::warn!(
                "{} was readable by other users (mode {:o}); made it private (0700): spooled records hold environments, command lines and output",
                d.display(),
                m.mode() & 0o777
            );
        }
    }
    Ok(())
}

/// A directory refused for safety (not ours, writable by others, not a
/// directory), as opposed to one that merely cannot be created.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: String) -> std::io::Error {
    std::io::Error::other(Refused(message))
}

/// An open spool file for one run.
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    path: PathBuf,
    /// Bytes of whole frames written so far.
    len: u64,
}

impl SpoolFile {
    /// Creates (or appends to) the spool file of `run_id` in the first of
    /// `dirs` that works, and locks it.
    pub fn create(dirs: &[PathBuf], run_id: plumb_model::Uuid) -> Result<SpoolFile> {
        let mut last_err = None;
        for dir in dirs {
            let attempt = (|| -> std::io::Result<SpoolFile> {
                create_private_dir(dir)?;
                let path = dir.join(format!("{run_id}.spool"));
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?;
                // SAFETY: flock on a valid, owned descriptor.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let len = file.metadata()?.len();
                Ok(SpoolFile { file, path, len })
            })();
            match attempt {
                Ok(f) => return Ok(f),
                Err(e) => {
                    // Said at once, whether or not a later directory works:
                    // someone may have prepared a trap in a shared place.
                    if let Some(r) = e.get_ref().and_then(|x| x.downcast_ref::<Refused>()) {
                        tracing::warn!("{r}");
                    }
                    last_err = Some((dir.clone(), e));
                }
            }
        }
        let (path, source) = last_err.unwrap_or_else(|| {
            (
                PathBuf::from("<none>"),
                std::io::Error::other("no spool directory"),
            )
        });
        Err(StoreError::Io {
            what: "cannot create a spool file in",
            path,
            source,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn frame(&mut self, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::new();
        frame::encode(payload, &mut buf);
        self.file.write_all(&buf).map_err(|source| StoreError::Io {
            what: "cannot write spool file",
            path: self.path.clone(),
            source,
        })?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Bytes of whole frames in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Cuts the file back to `len` bytes, undoing a write that failed part
    /// way (a full disk), so the file holds whole frames only; an empty file
    /// is removed. Returns whether the file is still there.
    pub fn roll_back(&mut self, len: u64) -> bool {
        if len == 0 {
            let _ = std::fs::remove_file(&self.path);
            self.len = 0;
            return false;
        }
        if self.file.set_len(len).is_ok() {
            self.len = len;
        }
        true
    }

    /// Appends a run record.
    pub fn put_run(&mut self, run: &Run) -> Result<()> {
        self.frame(&run_payload(run))
    }

    /// Appends a fingerprint.
    pub fn put_fingerprint(&mut self, hash: &str, fp: &Fingerprint) -> Result<()> {
        self.frame(&fingerprint_payload(hash, fp))
    }

    /// Appends output chunks.
    pub fn put_chunks(&mut self, chunks: &[SealedChunk]) -> Result<()> {
        for c in chunks {
            self.frame(&chunk_payload(c))?;
        }
        Ok(())
    }

    /// Flushes to the file system (data only).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|source| StoreError::Io {
            what: "cannot sync spool file",
            path: self.path.clone(),
            source,
        })
    }
}

fn run_payload(run: &Run) -> Vec<u8> {
    let mut p = vec![KIND_RUN];
    p.extend(serde_json::to_vec(run).expect("run serializes"));
    p
}

fn fingerprint_payload(hash: &str, fp: &Fingerprint) -> Vec<u8> {
    let mut p = vec![KIND_FINGERPRINT];
    p.extend_from_slice(&(hash.len() as u16).to_le_bytes());
    p.extend_from_slice(hash.as_bytes());
    p.extend(serde_json::to_vec(fp).expect("fingerprint serializes"));
    p
}

fn chunk_payload(c: &SealedChunk) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + c.bloom.len() + c.data.len());
    p.push(KIND_CHUNK);
    p.push(c.stream.as_u8());
    for v in [c.part, c.first_seq] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    for v in [c.t_min.as_nanos(), c.t_max.as_nanos()] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    for v in [c.lines, c.raw_bytes] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&c.crc.to_le_bytes());
    p.extend_from_slice(&(c.bloom.len() as u32).to_le_bytes());
    p.extend_from_slice(&c.bloom);
    p.extend_from_slice(&c.data);
    p
}

/// Spool frames built in memory: a request body for the collector's native
/// ingest, byte for byte what a spool file would hold.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    /// The encoded frames.
    pub bytes: Vec<u8>,
}

impl Frames {
    /// Appends a run record.
    pub fn put_run(&mut self, run: &Run) -> &mut Self {
        frame::encode(&run_payload(run), &mut self.bytes);
        self
    }

    /// Appends a fingerprint.
    pub fn put_fingerprint(&mut self, hash: &str, fp: &Fingerprint) -> &mut Self {
        frame::encode(&fingerprint_payload(hash, fp), &mut self.bytes);
        self
    }

    /// Appends output chunks.
    pub fn put_chunks(&mut self, chunks: &[SealedChunk]) -> &mut Self {
        for c in chunks {
            frame::encode(&chunk_payload(c), &mut self.bytes);
        }
        self
    }
}

/// Imports every unlocked spool file in `dir`; returns the runs imported.
pub(crate) fn import_dir(store: &Store, dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(0),
    };
    let mut imported = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "spool") {
            continue;
        }
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // Its run is still going on.
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            continue;
        }
        match import_bytes(store, &bytes) {
            Ok(true) => {
                let _ = std::fs::remove_file(&path);
                imported += 1;
            }
            Ok(false) => {
                // Nothing readable in it: keep it aside for a human, out of
                // the way of later imports.
                let _ = std::fs::rename(&path, path.with_extension("spool.bad"));
                tracing::warn!(path = %path.display(), "spool file holds no readable run; renamed to .spool.bad");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(imported)
}

fn import_bytes(store: &Store, bytes: &[u8]) -> Result<bool> {
    let mut run: Option<Run> = None;
    let mut fps = Vec::new();
    let mut chunks = Vec::new();
    for f in frame::whole(bytes) {
        match f[0] {
            KIND_RUN => {
                if let Ok(r) = serde_json::from_slice::<Run>(&f[1..]) {
                    run = Some(r);
                }
            }
            KIND_FINGERPRINT if f.len() >= 3 => {
                let n = u16::from_le_bytes([f[1], f[2]]) as usize;
                if f.len() >= 3 + n {
                    let hash = String::from_utf8_lossy(&f[3..3 + n]).into_owned();
                    if let Ok(fp) = serde_json::from_slice::<Fingerprint>(&f[3 + n..]) {
                        fps.push((hash, fp));
                    }
                }
            }
            KIND_CHUNK => {
                if let Some(c) = parse_chunk(&f[1..]) {
                    chunks.push(c);
                }
            }
            _ => {}
        }
    }
    let Some(run) = run else {
        return Ok(false);
    };
    let tx = store.conn().unchecked_transaction()?;
    // Chunks before the record: a final record over the output cap
    // settles the cap over the chunks stored (see `cap`).
    put_chunks_tx(&tx, run.id, &run.host.hostname, &chunks)?;
    for (hash, fp) in &fps {
        put_fingerprint_conn(&tx, hash, fp)?;
    }
    put_run_unless_less_final(&tx, &run)?;
    tx.commit()?;
    Ok(true)
}

/// An output chunk frame's payload (after its kind byte), as the spool
/// writes it: stream, part, first seq, times, lines, raw bytes, CRC32C,
/// filter length, filter, data. `None` when it is too short. The data is
/// not checked here: `chunk::decode` does that.
pub fn parse_chunk(p: &[u8]) -> Option<SealedChunk> {
    const FIXED: usize = 1 + 8 * 6 + 4 + 4;
    if p.len() < FIXED {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8"));
    let stream = Stream::from_u8(p[0])?;
    let crc = u32::from_le_bytes(p[49..53].try_into().ok()?);
    let bloom_len = u32::from_le_bytes(p[53..57].try_into().ok()?) as usize;
    if p.len() < FIXED + bloom_len {
        return None;
    }
    Some(SealedChunk {
        stream,
        part: u64_at(1),
        first_seq: u64_at(9),
        t_min: Timestamp::from_nanos(u64_at(17) as i64),
        t_max: Timestamp::from_nanos(u64_at(25) as i64),
        lines: u64_at(33),
        raw_bytes: u64_at(41),
        crc,
        bloom: p[FIXED..FIXED + bloom_len].to_vec(),
        data: p[FIXED + bloom_len..].to_vec(),
    })
}

/// What one [`Store::import_frames`] call stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportStats {
    /// Frames read.
    pub frames: u64,
    /// Run records stored (inserted or replaced).
    pub runs: u64,
    /// Run records not stored because the store already held a more final
    /// record of the same run (a finished run is never made running again).
    pub runs_kept: u64,
    /// Fingerprint frames (stored once by hash).
    pub fingerprints: u64,
    /// Output chunks newly stored.
    pub chunks: u64,
    /// Output chunks already stored (a retry), skipped.
    pub chunks_duplicate: u64,
    /// Output lines in the chunks read, stored or repeated (absent from
    /// an older collector's answer).
    #[serde(default)]
    pub lines: u64,
}

/// Why a body of frames was refused. Nothing from it was stored.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A frame is torn, corrupt or does not make sense.
    #[error("frame {index} (at byte {offset}): {reason}")]
    Frame {
        /// The frame's position, from 0.
        index: usize,
        /// Its byte offset in the body.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The body holds no frames.
    #[error("the body holds no frames")]
    Empty,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One frame of a spool body, parsed.
#[derive(Debug)]
pub enum Item {
    /// A run record.
    Run(Box<Run>),
    /// A fingerprint and its hash.
    Fingerprint(String, Box<Fingerprint>),
    /// An output chunk of the run record before it.
    Chunk(SealedChunk),
}

/// Parses every frame strictly, so a bad body is refused before anything
/// is written.
pub fn parse_frames(bytes: &[u8]) -> std::result::Result<Vec<Item>, ImportError> {
    let mut items = Vec::new();
    let mut off = 0usize;
    let mut index = 0usize;
    let mut have_run = false;
    while off < bytes.len() {
        let bad = |reason: String| ImportError::Frame {
            index,
            offset: off,
            reason,
        };
        let (f, rest) = match frame::next(&bytes[off..]) {
            Ok(Some(found)) => found,
            Ok(None) => break,
            Err(e) => return Err(bad(e.to_string())),
        };
        match f[0] {
            KIND_RUN => {
                let run: Run = serde_json::from_slice(&f[1..])
                    .map_err(|e| bad(format!("run record is not valid: {e}")))?;
                have_run = true;
                items.push(Item::Run(Box::new(run)));
            }
            KIND_FINGERPRINT => {
                if f.len() < 3 {
                    return Err(bad("fingerprint frame too short for its hash length".into()));
                }
                let n = u16::from_le_bytes([f[1], f[2]]) as usize;
                if f.len() < 3 + n {
                    return Err(bad(format!(
                        "fingerprint hash length {n} runs past the frame"
                    )));
                }
                let hash = std::str::from_utf8(&f[3..3 + n])
                    .map_err(|_| bad("fingerprint hash is not UTF-8".into()))?
                    .to_string();
                let fp: Fingerprint = serde_json::from_slice(&f[3 + n..])
                    .map_err(|e| bad(format!("fingerprint is not valid: {e}")))?;
                items.push(Item::Fingerprint(hash, Box::new(fp)));
            }
            KIND_CHUNK => {
                if !have_run {
                    return Err(bad(
                        "an output chunk comes before any run record; chunks belong to the run record before them".into(),
                    ));
                }
                let c = parse_chunk(&f[1..])
                    .ok_or_else(|| bad("output chunk header is malformed".into()))?;
                // The data must decode and match its checksum: a chunk that
                // cannot be read back must not be acknowledged.
                crate::chunk::decode(&c.data, c.crc)
                    .map_err(|e| bad(format!("output chunk does not decode: {e}")))?;
                items.push(Item::Chunk(c));
            }
            k => return Err(bad(format!("unknown frame kind {k}"))),
        }
        off = bytes.len() - rest.len();
        index += 1;
    }
    if items.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(items)
}

/// Stores `run` unless the store holds a more final record of it: a run
/// that has ended is never turned back into a running one by a record that
/// arrives late (retries and several shippers reorder records).
/// Returns whether it was stored.
fn put_run_unless_less_final(tx: &rusqlite::Transaction<'_>, run: &Run) -> Result<bool> {
    use rusqlite::OptionalExtension;
    if !run.state.is_final() {
        let existing: Option<String> = tx
            .query_row(
                "SELECT state FROM runs WHERE id = ?1",
                [run.id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let existing = existing.and_then(|s| s.parse::<plumb_model::RunState>().ok());
        if existing.is_some_and(|s| crate::kit::less_final(s, run.state)) {
            return Ok(false);
        }
    }
    put_run_tx(tx, run)?;
    Ok(true)
}

/// Imports a body of spool frames; see [`Runs::import_frames`](crate::Runs::import_frames).
pub(crate) fn import_frames(
    store: &Store,
    bytes: &[u8],
) -> std::result::Result<ImportStats, ImportError> {
    let items = parse_frames(bytes)?;
    let mut stats = ImportStats {
        frames: items.len() as u64,
        ..Default::default()
    };
    let tx = store
        .conn()
        .unchecked_transaction()
        .map_err(StoreError::from)?;
    let mut current: Option<(plumb_model::Uuid, String, Option<OutputGap>)> = None;
    let mut pending: Vec<SealedChunk> = Vec::new();
    let flush = |tx: &rusqlite::Transaction<'_>,
                 current: &Option<(plumb_model::Uuid, String, Option<OutputGap>)>,
                 pending: &mut Vec<SealedChunk>,
                 stats: &mut ImportStats|
     -> Result<()> {
        let Some((id, host, gap)) = current else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let count = |tx: &rusqlite::Transaction<'_>| -> Result<i64> {
            Ok(tx.query_row(
                "SELECT count(*) FROM chunks WHERE run_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )?)
        };
        let before = count(tx)?;
        put_chunks_tx(tx, *id, host, pending)?;
        let added = (count(tx)? - before) as u64;
        stats.chunks += added;
        stats.chunks_duplicate += pending.len() as u64 - added;
        stats.lines += pending.iter().map(|c| c.lines).sum::<u64>();
        pending.clear();
        // A run over its output cap: keep storage bounded while it goes
        // on; its final record settles the cap to the byte.
        if let Some(gap) = gap {
            crate::cap::drop_over_cap(tx, *id, gap, false)?;
        }
        Ok(())
    };
    for item in items {
        match item {
            Item::Run(run) => {
                flush(&tx, &current, &mut pending, &mut stats)?;
                if put_run_unless_less_final(&tx, &run)? {
                    stats.runs += 1;
                } else {
                    stats.runs_kept += 1;
                }
                current = Some((run.id, run.host.hostname.clone(), run.output.gap));
            }
            Item::Fingerprint(hash, fp) => {
                put_fingerprint_conn(&tx, &hash, &fp)?;
                stats.fingerprints += 1;
            }
            Item::Chunk(c) => pending.push(c),
        }
    }
    flush(&tx, &current, &mut pending, &mut stats)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(stats)
}
