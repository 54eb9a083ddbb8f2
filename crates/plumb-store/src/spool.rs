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

use crate::chunk::SealedChunk;
use crate::error::{Result, StoreError};
use crate::{Store, put_chunks_tx, put_fingerprint_conn, put_run_tx};
use plumb_model::{Fingerprint, Run, Stream, Timestamp};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const KIND_RUN: u8 = 1;
const KIND_FINGERPRINT: u8 = 2;
const KIND_CHUNK: u8 = 3;
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// The spool directories to try, in order: `$PLUMB_SPOOL`, then
/// `<store>/spool`, `$XDG_RUNTIME_DIR/plumb-spool`, `/tmp/plumb-spool-<uid>`.
pub fn candidate_dirs(store_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(s) = std::env::var_os("PLUMB_SPOOL").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(s));
    }
    dirs.push(store_dir.join("spool"));
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(x).join("plumb-spool"));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    dirs.push(PathBuf::from(format!("/tmp/plumb-spool-{uid}")));
    dirs
}

/// An open spool file for one run.
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    path: PathBuf,
}

impl SpoolFile {
    /// Creates (or appends to) the spool file of `run_id` in the first of
    /// `dirs` that works, and locks it.
    pub fn create(dirs: &[PathBuf], run_id: plumb_model::Uuid) -> Result<SpoolFile> {
        let mut last_err = None;
        for dir in dirs {
            let attempt = (|| -> std::io::Result<SpoolFile> {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{run_id}.spool"));
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                // SAFETY: flock on a valid, owned descriptor.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(SpoolFile { file, path })
            })();
            match attempt {
                Ok(f) => return Ok(f),
                Err(e) => last_err = Some((dir.clone(), e)),
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
        let mut buf = Vec::with_capacity(payload.len() + 8);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        self.file.write_all(&buf).map_err(|source| StoreError::Io {
            what: "cannot write spool file",
            path: self.path.clone(),
            source,
        })
    }

    /// Appends a run record.
    pub fn put_run(&mut self, run: &Run) -> Result<()> {
        let mut p = vec![KIND_RUN];
        p.extend(serde_json::to_vec(run).expect("run serializes"));
        self.frame(&p)
    }

    /// Appends a fingerprint.
    pub fn put_fingerprint(&mut self, hash: &str, fp: &Fingerprint) -> Result<()> {
        let mut p = vec![KIND_FINGERPRINT];
        p.extend_from_slice(&(hash.len() as u16).to_le_bytes());
        p.extend_from_slice(hash.as_bytes());
        p.extend(serde_json::to_vec(fp).expect("fingerprint serializes"));
        self.frame(&p)
    }

    /// Appends output chunks.
    pub fn put_chunks(&mut self, chunks: &[SealedChunk]) -> Result<()> {
        for c in chunks {
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
            self.frame(&p)?;
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

/// Parses the frames of a spool file; stops at the first torn or corrupt one.
pub fn read_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut p = bytes;
    while p.len() >= 8 {
        let len = u32::from_le_bytes(p[..4].try_into().expect("4"));
        let crc = u32::from_le_bytes(p[4..8].try_into().expect("4"));
        if len > MAX_FRAME || p.len() < 8 + len as usize {
            break;
        }
        let payload = &p[8..8 + len as usize];
        if crc32c::crc32c(payload) != crc || payload.is_empty() {
            break;
        }
        frames.push(payload);
        p = &p[8 + len as usize..];
    }
    frames
}

fn import_bytes(store: &Store, bytes: &[u8]) -> Result<bool> {
    let mut run: Option<Run> = None;
    let mut fps = Vec::new();
    let mut chunks = Vec::new();
    for f in read_frames(bytes) {
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
    put_run_tx(&tx, &run)?;
    for (hash, fp) in &fps {
        put_fingerprint_conn(&tx, hash, fp)?;
    }
    put_chunks_tx(&tx, run.id, &run.host.hostname, &chunks)?;
    tx.commit()?;
    Ok(true)
}

fn parse_chunk(p: &[u8]) -> Option<SealedChunk> {
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
