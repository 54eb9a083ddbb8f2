//! OTLP export (`[export] otlp = "http://host:4318"` in plumb.toml):
//! forwards what the collector accepted to an OpenTelemetry pipeline.
//!
//! The ingest handlers call [`Exporter::enqueue`] after their data is
//! committed to the store; it only puts the request's bytes (spool frames,
//! the OTLP body as received, a node report) on an in-memory list and
//! returns. Two threads do the rest:
//!
//! - the **appender** writes the list to segment files in the queue
//!   directory (`<seq>.seg`, each entry a checksummed frame of
//!   [`plumb_model::frame`] whose first byte is its [`Kind`]), fsyncs, and
//!   keeps the files within `queue_max` bytes by deleting the oldest
//!   segment, counting every entry not yet sent as dropped (`queue_full`);
//! - the **sender** reads entries from where the `cursor` file says, turns
//!   them into OTLP requests ([`plumb_otlp::export`]: runs as spans, output
//!   lines as log records, heartbeats as gauges, OTLP bodies as they came)
//!   and POSTs them as protobuf to `/v1/traces`, `/v1/logs` and
//!   `/v1/metrics`. Connection errors, 408, 429 and 5xx are retried with
//!   backoff (a `Retry-After` is honoured); any other 4xx drops that
//!   signal's part of the batch, counted and logged. The cursor moves (and
//!   is synced) only after a batch is through, so a restarted collector
//!   resumes where it was; a batch sent just before a crash is sent again
//!   (log records carry `plumb.record.id`, spans their own ids, for
//!   receivers that deduplicate).
//!
//! Counts are in `/metrics` (`plumb_export_*`) and, when anything was
//! dropped in the last minute, in the log.

use axum::body::Bytes;
use plumb_model::Secret;
use plumb_otlp::export::{Batch, OutputLine, output_logs, runs_request};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::VecDeque;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The default bound of the queue on disk: 1 GiB.
pub const DEFAULT_QUEUE_MAX: u64 = 1 << 30;

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The OTLP/HTTP base URL (`http://otel-collector:4318`); requests go
    /// to `/v1/traces`, `/v1/logs` and `/v1/metrics` under it.
    pub url: String,
    /// Headers sent with every request (`authorization`, an API key, ...).
    pub headers: Vec<(String, Secret)>,
    /// Bytes of queue files kept at most; past it the oldest are dropped.
    pub queue_max: u64,
    /// The queue's directory (`<store>/export` by default).
    pub dir: PathBuf,
}

impl ExportConfig {
    /// Checks the URL (http:// or https:// with a host) and header names,
    /// naming what is wrong.
    pub fn check(&self) -> Result<(), String> {
        check_url(&self.url)?;
        for (name, _) in &self.headers {
            check_header_name(name)?;
        }
        if self.queue_max < 1 << 20 {
            return Err(format!(
                "the export queue bound {} bytes is below 1 MiB",
                self.queue_max
            ));
        }
        Ok(())
    }
}

/// Checks an OTLP/HTTP base URL: `http://` or `https://`, a host, no
/// spaces.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!(
            "`{url}` is not an OTLP/HTTP URL like http://otel-collector:4318"
        )),
    }
}

/// Checks an HTTP header name (RFC 9110 token characters).
pub fn check_header_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid HTTP header name"))
    }
}

/// What a queue entry holds (its first byte on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A native ingest body: spool frames.
    Spool = 1,
    /// An OTLP logs request, protobuf (as for all OTLP kinds: a `u32`
    /// record count, then the body as received).
    LogsProtobuf = 2,
    /// An OTLP logs request, JSON.
    LogsJson = 3,
    /// An OTLP traces request, protobuf.
    TracesProtobuf = 4,
    /// An OTLP traces request, JSON.
    TracesJson = 5,
    /// An OTLP metrics request, protobuf.
    MetricsProtobuf = 6,
    /// An OTLP metrics request, JSON.
    MetricsJson = 7,
    /// A node report (JSON).
    Node = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Spool,
            2 => Kind::LogsProtobuf,
            3 => Kind::LogsJson,
            4 => Kind::TracesProtobuf,
            5 => Kind::TracesJson,
            6 => Kind::MetricsProtobuf,
            7 => Kind::MetricsJson,
            8 => Kind::Node,
            _ => return None,
        })
    }

    /// The kind of an OTLP request body of `signal` in `format`.
    pub fn otlp(signal: plumb_otlp::Signal, format: plumb_otlp::Format) -> Kind {
        use plumb_otlp::{Format, Signal};
        match (signal, format) {
            (Signal::Logs, Format::Protobuf) => Kind::LogsProtobuf,
            (Signal::Logs, Format::Json) => Kind::LogsJson,
            (Signal::Traces, Format::Protobuf) => Kind::TracesProtobuf,
            (Signal::Traces, Format::Json) => Kind::TracesJson,
            (Signal::Metrics, Format::Protobuf) => Kind::MetricsProtobuf,
            (Signal::Metrics, Format::Json) => Kind::MetricsJson,
        }
    }
}

/// Labels of drop counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Labels of per-signal counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: String,
}

#[derive(Clone, Default)]
struct Counts {
    queue_bytes: Gauge,
    queue_entries: Gauge,
    sent: Family<SignalLabels, Counter>,
    retries: Counter,
    dropped_entries: Family<ReasonLabels, Counter>,
    rejected: Family<SignalLabels, Counter>,
}

impl Counts {
    fn register(&self, m: &crate::Metrics) {
        m.register(
            "export_queue_bytes",
            "Bytes of the OTLP export queue's segment files on disk (sent entries included until their segment is removed)",
            self.queue_bytes.clone(),
        );
        m.register(
            "export_queue_entries",
            "Accepted requests waiting in the OTLP export queue",
            self.queue_entries.clone(),
        );
        m.register(
            "export_sent",
            "Records exported over OTLP by signal (spans, log records, data points)",
            self.sent.clone(),
        );
        m.register(
            "export_retries",
            "OTLP export requests sent again after a connection error, 408, 429 or 5xx",
            self.retries.clone(),
        );
        m.register(
            "export_dropped_entries",
            "Accepted requests never exported: queue_full (the oldest dropped past queue_max_mib), unreadable",
            self.dropped_entries.clone(),
        );
        m.register(
            "export_rejected",
            "Records the OTLP receiver refused with a 4xx other than 408 and 429 (dropped), by signal",
            self.rejected.clone(),
        );
    }

    fn drop_entries(&self, reason: &str, n: u64) {
        if n > 0 {
            self.dropped_entries
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
    }

    fn dropped_total(&self) -> u64 {
        let mut n = 0;
        for r in ["queue_full", "unreadable"] {
            n += self
                .dropped_entries
                .get_or_create(&ReasonLabels { reason: r.into() })
                .get();
        }
        for s in ["traces", "logs", "metrics"] {
            n += self
                .rejected
                .get_or_create(&SignalLabels { signal: s.into() })
                .get();
        }
        n
    }
}

/// The in-memory list between the handlers and the appender.
#[derive(Default)]
struct Pending {
    entries: VecDeque<(Kind, Bytes)>,
    bytes: u64,
}

/// One segment file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    /// Bytes written and synced.
    len: u64,
    /// Entries in it.
    entries: u64,
}

/// The files: segments oldest first, the last one being written.
struct Disk {
    segments: VecDeque<Segment>,
    /// The sender's position: segment and byte offset in it.
    cursor: (u64, u64),
    /// Entries before the cursor in its segment.
    cursor_entries: u64,
    /// No more appends (the appender ended).
    closed: bool,
}

impl Disk {
    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
    fn unsent_entries(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| {
                if s.seq == self.cursor.0 {
                    s.entries.saturating_sub(self.cursor_entries)
                } else if s.seq > self.cursor.0 {
                    s.entries
                } else {
                    0
                }
            })
            .sum()
    }
}

struct Inner {
    config: ExportConfig,
    pending: Mutex<Pending>,
    pending_cv: Condvar,
    disk: Mutex<Disk>,
    disk_cv: Condvar,
    stop: AtomicBool,
    counts: Counts,
}

/// The exporter: cheap to clone, shared by the ingest handlers.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("url", &self.inner.config.url)
            .finish_non_exhaustive()
    }
}

/// A segment is closed past this size (or an eighth of the bound).
const SEGMENT_MAX: u64 = 16 << 20;
/// Bytes waiting in memory for the appender at most.
const PENDING_MAX: u64 = 256 << 20;
/// Raw entry bytes read for one batch at most.
const BATCH_READ: u64 = 4 << 20;
/// A batch is cut after the entry that takes its OTLP requests past this
/// size (receivers limit request bodies; the OpenTelemetry Collector's
/// default is 20 MiB).
const BATCH_SEND: usize = 4 << 20;

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.seg"))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Counts the whole frames of `bytes` (a torn tail is not one).
fn count_frames(mut bytes: &[u8]) -> (u64, u64) {
    let (mut n, mut len) = (0, 0);
    while let Ok(Some((_, rest))) = plumb_model::frame::next(bytes) {
        n += 1;
        len += (bytes.len() - rest.len()) as u64;
        bytes = rest;
    }
    (n, len)
}

impl Exporter {
    /// Opens (or creates) the queue directory, resumes from its cursor,
    /// registers the metrics and starts the appender and sender threads.
    pub fn start(config: ExportConfig, metrics: &crate::Metrics) -> Result<Exporter, String> {
        config.check()?;
        let dir = config.dir.clone();
        plumb_store::spool::create_private_dir(&dir)
            .map_err(|e| io_err("cannot create the export queue directory", &dir, e))?;
        let mut seqs = Vec::new();
        for e in std::fs::read_dir(&dir)
            .map_err(|e| io_err("cannot read the export queue directory", &dir, e))?
        {
            let e = e.map_err(|e| io_err("cannot read the export queue directory", &dir, e))?;
            let name = e.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut segments = VecDeque::new();
        for seq in &seqs {
            let path = seg_path(&dir, *seq);
            let bytes = std::fs::read(&path)
                .map_err(|e| io_err("cannot read export queue segment", &path, e))?;
            let (entries, len) = count_frames(&bytes);
            segments.push_back(Segment {
                seq: *seq,
                len,
                entries,
            });
        }
        let cursor = read_cursor(&dir);
        let first = segments.front().map(|s| s.seq);
        let (cursor, cursor_entries) = match (cursor, first) {
            (Some((seq, off)), Some(f)) if seq >= f => {
                let path = seg_path(&dir, seq);
                let n = std::fs::read(&path)
                    .map(|b| count_frames(&b[..(off as usize).min(b.len())]).0)
                    .unwrap_or(0);
                ((seq, off), n)
            }
            (_, Some(f)) => ((f, 0), 0),
            (_, None) => ((seqs.last().map_or(0, |s| s + 1), 0), 0),
        };
        // New entries go to a new segment: an old one may end torn.
        let next = seqs.last().map_or(cursor.0.max(1), |s| s + 1).max(1);
        segments.push_back(Segment {
            seq: next,
            len: 0,
            entries: 0,
        });
        let counts = Counts::default();
        counts.register(metrics);
        let disk = Disk {
            segments,
            cursor,
            cursor_entries,
            closed: false,
        };
        counts.queue_bytes.set(disk.bytes() as i64);
        counts.queue_entries.set(disk.unsent_entries() as i64);
        let inner = Arc::new(Inner {
            config,
            pending: Mutex::new(Pending::default()),
            pending_cv: Condvar::new(),
            disk: Mutex::new(disk),
            disk_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            counts,
        });
        let client = plumb_http::Client::new(&plumb_http::Config {
            timeout: Duration::from_secs(30),
            env_proxy: true,
            ..plumb_http::Config::new(inner.config.url.clone()).service("OTLP receiver")
        })
        .map_err(|e| format!("[export] otlp: {e}"))?;
        let a = inner.clone();
        let appender = std::thread::Builder::new()
            .name("plumb-export-append".into())
            .spawn(move || append_loop(&a))
            .map_err(|e| format!("cannot start the export thread: {e}"))?;
        let s = inner.clone();
        let sender = std::thread::Builder::new()
            .name("plumb-export-send".into())
            .spawn(move || send_loop(&s, &client))
            .map_err(|e| format!("cannot start the export thread: {e}"))?;
        tracing::info!(url = %inner.config.url, queue = %inner.config.dir.display(), "exporting over OTLP/HTTP");
        Ok(Exporter {
            inner,
            threads: Arc::new(Mutex::new(vec![appender, sender])),
        })
    }

    /// Queues an OTLP request body holding `records` records.
    pub fn enqueue_otlp(
        &self,
        signal: plumb_otlp::Signal,
        format: plumb_otlp::Format,
        records: usize,
        body: &[u8],
    ) {
        let mut data = Vec::with_capacity(body.len() + 4);
        data.extend_from_slice(&(records.min(u32::MAX as usize) as u32).to_le_bytes());
        data.extend_from_slice(body);
        self.enqueue(Kind::otlp(signal, format), Bytes::from(data));
    }

    /// Queues what a request put in the store. Never waits on the disk or
    /// the network; when the in-memory list is over the bound (the disk
    /// cannot keep up), its oldest entries are dropped and counted.
    pub fn enqueue(&self, kind: Kind, data: Bytes) {
        let n = data.len() as u64;
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.entries.push_back((kind, data));
        p.bytes += n;
        let mut dropped = 0;
        let bound = self.inner.config.queue_max.min(PENDING_MAX);
        while p.bytes > bound && p.entries.len() > 1 {
            if let Some((_, d)) = p.entries.pop_front() {
                p.bytes -= d.len() as u64;
                dropped += 1;
            }
        }
        drop(p);
        self.inner.counts.drop_entries("queue_full", dropped);
        self.inner.pending_cv.notify_one();
    }

    /// Writes what is pending to the queue's files and stops. The sender
    /// stops at its next step without waiting for a request in flight (up
    /// to its 30 s timeout); what it was sending is sent again at the next
    /// start.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.pending_cv.notify_all();
        self.inner.disk_cv.notify_all();
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // The appender is first: wait for it to finish writing.
        if let Some(appender) = threads.into_iter().next() {
            let _ = appender.join();
        }
    }
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join("cursor")).ok()?;
    let (a, b) = text.trim().split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn write_cursor(dir: &Path, cursor: (u64, u64)) -> std::io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{} {}", cursor.0, cursor.1)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join("cursor"))
}

fn append_loop(inner: &Inner) {
    let dir = inner.config.dir.clone();
    let seg_max = SEGMENT_MAX.min(inner.config.queue_max / 8).max(64 << 10);
    let mut file: Option<(u64, std::fs::File)> = None;
    let mut buf = Vec::new();
    loop {
        let taken: Vec<(Kind, Bytes)> = {
            let mut p = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            while p.entries.is_empty() && !inner.stop.load(Ordering::SeqCst) {
                p = inner
                    .pending_cv
                    .wait_timeout(p, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if p.entries.is_empty() {
                break;
            }
            p.bytes = 0;
            p.entries.drain(..).collect()
        };
        let mut i = 0;
        while i < taken.len() {
            // Fill the current segment, then sync once.
            let seq = {
                let d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
                d.segments.back().map_or(1, |s| s.seq)
            };
            if file.as_ref().is_none_or(|(s, _)| *s != seq) {
                let path = seg_path(&dir, seq);
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                {
                    Ok(f) => file = Some((seq, f)),
                    Err(e) => {
                        tracing::warn!(error = %io_err("cannot open export queue segment", &path, e), "export entries dropped");
                        inner
                            .counts
                            .drop_entries("unreadable", (taken.len() - i) as u64);
                        break;
                    }
                }
            }
            let seg_len = {
                let d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
                d.segments.back().map_or(0, |s| s.len)
            };
            buf.clear();
            let mut n = 0u64;
            while i < taken.len() && (seg_len + buf.len() as u64) < seg_max {
                let (kind, data) = &taken[i];
                i += 1;
                if data.len() + 1 > plumb_model::frame::MAX_PAYLOAD as usize {
                    inner.counts.drop_entries("unreadable", 1);
                    continue;
                }
                let mut payload = Vec::with_capacity(data.len() + 1);
                payload.push(*kind as u8);
                payload.extend_from_slice(data);
                plumb_model::frame::encode(&payload, &mut buf);
                n += 1;
            }
            let Some((_, f)) = file.as_mut() else { break };
            let written = f.write_all(&buf).and_then(|()| f.sync_data());
            let mut d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
            match written {
                Ok(()) => {
                    if let Some(s) = d.segments.back_mut() {
                        s.len += buf.len() as u64;
                        s.entries += n;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot write the export queue; entries dropped");
                    inner.counts.drop_entries("unreadable", n);
                    // Start a new segment: this one may end torn.
                    file = None;
                    let next = d.segments.back().map_or(1, |s| s.seq + 1);
                    d.segments.push_back(Segment {
                        seq: next,
                        len: 0,
                        entries: 0,
                    });
                }
            }
            if d.segments.back().is_some_and(|s| s.len >= seg_max) {
                let next = d.segments.back().map_or(1, |s| s.seq + 1);
                d.segments.push_back(Segment {
                    seq: next,
                    len: 0,
                    entries: 0,
                });
            }
            enforce_bound(inner, &mut d);
            inner.counts.queue_bytes.set(d.bytes() as i64);
            inner.counts.queue_entries.set(d.unsent_entries() as i64);
            drop(d);
            inner.disk_cv.notify_all();
        }
    }
    let mut d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
    d.closed = true;
    inner.disk_cv.notify_all();
}

/// Deletes the oldest segments while the files are over the bound,
/// counting their unsent entries as dropped.
fn enforce_bound(inner: &Inner, d: &mut Disk) {
    while d.bytes() > inner.config.queue_max && d.segments.len() > 1 {
        let Some(old) = d.segments.pop_front() else {
            break;
        };
        let unsent = if old.seq == d.cursor.0 {
            old.entries.saturating_sub(d.cursor_entries)
        } else if old.seq > d.cursor.0 {
            old.entries
        } else {
            0
        };
        inner.counts.drop_entries("queue_full", unsent);
        let path = seg_path(&inner.config.dir, old.seq);
        let _ = std::fs::remove_file(&path);
        if d.cursor.0 <= old.seq {
            let next = d.segments.front().map_or(old.seq + 1, |s| s.seq);
            d.cursor = (next, 0);
            d.cursor_entries = 0;
        }
        tracing::warn!(
            dropped = unsent,
            segment = %path.display(),
            "export queue full (queue_max_mib): dropped its oldest segment"
        );
    }
}

/// Entries read for one batch: payloads and where they end.
struct ReadBatch {
    seq: u64,
    /// Payloads, each with the offset where its frame ends.
    entries: Vec<(Vec<u8>, u64)>,
    /// The segment's synced length when read.
    seg_len: u64,
    /// The segment is not the one being written.
    closed: bool,
    end: u64,
    /// The segment is finished (not the one being written) and read to its
    /// end.
    seg_done: bool,
}

/// Reads entries from the cursor: at most about [`BATCH_READ`] bytes,
/// never past what the appender synced.
fn read_batch(inner: &Inner) -> Option<ReadBatch> {
    let d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
    let (seq, off) = d.cursor;
    let seg = d.segments.iter().find(|s| s.seq >= seq).copied()?;
    let last = d.segments.back().map(|s| s.seq) == Some(seg.seq);
    drop(d);
    let off = if seg.seq == seq { off } else { 0 };
    if off >= seg.len {
        return if last {
            None
        } else {
            Some(ReadBatch {
                seq: seg.seq,
                entries: Vec::new(),
                end: seg.len,
                seg_done: true,
                seg_len: seg.len,
                closed: true,
            })
        };
    }
    let path = seg_path(&inner.config.dir, seg.seq);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            // Deleted as the queue overflowed: move on.
            return Some(ReadBatch {
                seq: seg.seq,
                entries: Vec::new(),
                end: seg.len,
                seg_done: !last,
                seg_len: seg.len,
                closed: !last,
            });
        }
    };
    let want = (seg.len - off).min(BATCH_READ);
    let mut bytes = Vec::with_capacity(want as usize);
    let read = f
        .seek(std::io::SeekFrom::Start(off))
        .and_then(|_| (&mut f).take(want).read_to_end(&mut bytes));
    if read.is_err() {
        return Some(ReadBatch {
            seq: seg.seq,
            entries: Vec::new(),
            end: seg.len,
            seg_done: !last,
            seg_len: seg.len,
            closed: !last,
        });
    }
    // A first frame larger than the window: read it whole.
    if bytes.len() >= plumb_model::frame::HEADER {
        let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap_or([0; 4])) as u64;
        let whole = len + plumb_model::frame::HEADER as u64;
        if whole > bytes.len() as u64 && off + whole <= seg.len {
            bytes.clear();
            let _ = f
                .seek(std::io::SeekFrom::Start(off))
                .and_then(|_| (&mut f).take(whole).read_to_end(&mut bytes));
        }
    }
    let mut entries = Vec::new();
    let mut rest: &[u8] = &bytes;
    let mut end = off;
    loop {
        match plumb_model::frame::next(rest) {
            Ok(Some((payload, after))) => {
                end += (rest.len() - after.len()) as u64;
                entries.push((payload.to_vec(), end));
                rest = after;
            }
            Ok(None) => break,
            Err(_) if entries.is_empty() && off + (bytes.len() as u64) >= seg.len => {
                // A corrupt frame at this point: skip the rest of the segment.
                inner.counts.drop_entries("unreadable", 1);
                end = seg.len;
                break;
            }
            Err(_) => break,
        }
    }
    Some(ReadBatch {
        seq: seg.seq,
        entries,
        end,
        seg_done: !last && end >= seg.len,
        seg_len: seg.len,
        closed: !last,
    })
}

fn send_loop(inner: &Inner, client: &plumb_http::Client) {
    let mut last_report = Instant::now();
    let mut reported = 0u64;
    loop {
        if last_report.elapsed() >= Duration::from_secs(60) {
            let total = inner.counts.dropped_total();
            if total > reported {
                tracing::warn!(
                    dropped_total = total,
                    since_last_report = total - reported,
                    "OTLP export dropped records (see plumb_export_dropped_entries and plumb_export_rejected in /metrics)"
                );
                reported = total;
            }
            last_report = Instant::now();
        }
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(read) = read_batch(inner) else {
            let d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
            if d.closed {
                return;
            }
            let _ = inner
                .disk_cv
                .wait_timeout(d, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let mut read = read;
        let mut batch = Batch::default();
        let mut size = 0;
        let mut taken = 0;
        for (e, end) in &read.entries {
            let mut one = Batch::default();
            match convert(e, &mut one) {
                Ok(()) => {
                    size += one.encoded_len();
                    batch.append(one);
                }
                Err(msg) => {
                    tracing::warn!(error = %msg, "an export queue entry is unreadable; dropped");
                    inner.counts.drop_entries("unreadable", 1);
                }
            }
            taken += 1;
            if size > BATCH_SEND {
                read.end = *end;
                read.seg_done = read.closed && *end >= read.seg_len;
                break;
            }
        }
        read.entries.truncate(taken);
        match send_batch(inner, client, &batch, read.seq) {
            Sent::Through => {}
            Sent::Stopping => return,
            // Its segment was dropped (queue full) while it was being
            // retried; those entries are counted as dropped already.
            Sent::Abandoned => continue,
        }
        // Through: move the cursor.
        let mut d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
        // The segment may have been dropped meanwhile (queue full).
        if d.segments.front().is_some_and(|s| s.seq <= read.seq) && d.cursor.0 <= read.seq {
            if read.seg_done {
                let _ = std::fs::remove_file(seg_path(&inner.config.dir, read.seq));
                d.segments.retain(|s| s.seq != read.seq);
                let next = d.segments.front().map_or(read.seq + 1, |s| s.seq);
                d.cursor = (next, 0);
                d.cursor_entries = 0;
            } else {
                if d.cursor.0 != read.seq {
                    d.cursor_entries = 0;
                }
                d.cursor = (read.seq, read.end);
                d.cursor_entries += read.entries.len() as u64;
            }
        }
        let cursor = d.cursor;
        inner.counts.queue_bytes.set(d.bytes() as i64);
        inner.counts.queue_entries.set(d.unsent_entries() as i64);
        drop(d);
        if let Err(e) = write_cursor(&inner.config.dir, cursor) {
            tracing::warn!(error = %e, "cannot save the export queue's position; a restart sends some records again");
        }
    }
}

/// How a batch's sending ended.
enum Sent {
    /// Sent, or refused for good (counted).
    Through,
    /// The collector is stopping.
    Stopping,
    /// Its segment was dropped to make room while it waited.
    Abandoned,
}

/// Sends the batch's three requests, retrying transient failures, as
/// long as segment `seq` is still queued.
fn send_batch(inner: &Inner, client: &plumb_http::Client, batch: &Batch, seq: u64) -> Sent {
    let dropped = || {
        let d = inner.disk.lock().unwrap_or_else(|e| e.into_inner());
        d.cursor.0 > seq
    };
    for (signal, n, body) in batch.requests(BATCH_SEND) {
        let (signal, path) = match signal {
            plumb_otlp::Signal::Traces => ("traces", "/v1/traces"),
            plumb_otlp::Signal::Logs => ("logs", "/v1/logs"),
            plumb_otlp::Signal::Metrics => ("metrics", "/v1/metrics"),
        };
        if n == 0 {
            continue;
        }
        let mut failures = 0u32;
        loop {
            if inner.stop.load(Ordering::SeqCst) {
                return Sent::Stopping;
            }
            if dropped() {
                return Sent::Abandoned;
            }
            let mut req = client
                .post(path)
                .bytes("application/x-protobuf", body.clone());
            for (k, v) in &inner.config.headers {
                req = req.header(k, v.expose());
            }
            let (retry, after, why) = match req.send_any() {
                Ok(r) if (200..300).contains(&r.status) => {
                    inner
                        .counts
                        .sent
                        .get_or_create(&SignalLabels {
                            signal: signal.into(),
                        })
                        .inc_by(n as u64);
                    break;
                }
                Ok(r) if r.status >= 500 || r.status == 429 || r.status == 408 => {
                    let after = r
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (
                        true,
                        after,
                        format!("{} answered {}", client.url(path), r.status),
                    )
                }
                Ok(r) => {
                    let hint = match r.status {
                        401 | 403 => "; check the credentials in [export] headers",
                        404 => "; check [export] otlp: it is the base URL, without /v1/...",
                        413 => "; the receiver's request size limit is below this batch",
                        _ => "",
                    };
                    tracing::warn!(
                        url = %client.url(path),
                        status = r.status,
                        records = n,
                        answer = %r.text().chars().take(300).collect::<String>(),
                        "the OTLP receiver refused a batch; dropped{hint}"
                    );
                    inner
                        .counts
                        .rejected
                        .get_or_create(&SignalLabels {
                            signal: signal.into(),
                        })
                        .inc_by(n as u64);
                    (false, None, String::new())
                }
                Err(e) => (true, None, e.to_string()),
            };
            if !retry {
                break;
            }
            inner.counts.retries.inc();
            let backoff = plumb_http::Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(30),
            };
            let mut wait = backoff.next_delay(failures, None);
            if let Some(a) = after {
                wait = wait.max(a.min(Duration::from_secs(300)));
            }
            if failures == 0 || failures % 10 == 9 {
                tracing::warn!(error = %why, retry_in = ?wait, "OTLP export failed; retrying");
            }
            failures = failures.saturating_add(1);
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if inner.stop.load(Ordering::SeqCst) {
                    return Sent::Stopping;
                }
                std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
            }
        }
    }
    Sent::Through
}

/// Adds a queue entry's records to `batch`.
fn convert(entry: &[u8], batch: &mut Batch) -> Result<(), String> {
    let (&k, data) = entry.split_first().ok_or("empty entry")?;
    let kind = Kind::from_u8(k).ok_or_else(|| format!("unknown entry kind {k}"))?;
    use plumb_otlp::Signal;
    // OTLP entries: u32 record count, then the body as received.
    let otlp = |batch: &mut Batch, signal, json: bool| -> Result<(), String> {
        let (count, body) = data.split_at_checked(4).ok_or("OTLP entry too short")?;
        if json {
            batch
                .add_otlp(signal, body, true)
                .map_err(|e| e.to_string())
        } else {
            let n = u32::from_le_bytes(count.try_into().unwrap_or([0; 4]));
            batch.add_protobuf(signal, body, n as usize);
            Ok(())
        }
    };
    match kind {
        Kind::Spool => spool(data, batch),
        Kind::LogsProtobuf => otlp(batch, Signal::Logs, false),
        Kind::LogsJson => otlp(batch, Signal::Logs, true),
        Kind::TracesProtobuf => otlp(batch, Signal::Traces, false),
        Kind::TracesJson => otlp(batch, Signal::Traces, true),
        Kind::MetricsProtobuf => otlp(batch, Signal::Metrics, false),
        Kind::MetricsJson => otlp(batch, Signal::Metrics, true),
        Kind::Node => {
            let r: plumb_model::node::NodeReport =
                serde_json::from_slice(data).map_err(|e| format!("node report: {e}"))?;
            batch
                .metrics
                .resource_metrics
                .push(plumb_otlp::export::node_metrics(&r));
            Ok(())
        }
    }
}

/// Spool frames: finished runs as spans, output chunks' lines as log
/// records of the run record before them.
fn spool(mut bytes: &[u8], batch: &mut Batch) -> Result<(), String> {
    use plumb_model::frame::{KIND_CHUNK, KIND_RUN};
    let mut run: Option<plumb_model::Run> = None;
    let mut finished = Vec::new();
    while let Some((f, rest)) = plumb_model::frame::next(bytes).map_err(|e| e.to_string())? {
        bytes = rest;
        match f[0] {
            KIND_RUN => {
                let r: plumb_model::Run =
                    serde_json::from_slice(&f[1..]).map_err(|e| format!("run record: {e}"))?;
                if plumb_otlp::export::run_is_exported(&r) {
                    finished.push(r.clone());
                }
                run = Some(r);
            }
            KIND_CHUNK => {
                let Some(r) = &run else { continue };
                let c = plumb_store::kit::parse_chunk(&f[1..])
                    .ok_or("output chunk header is malformed")?;
                let decoded = plumb_store::chunk::decode(&c.data, c.crc)
                    .map_err(|e| format!("output chunk: {e}"))?;
                let raw = &decoded.raw;
                let mut lines = Vec::new();
                let mut start = 0usize;
                let mut index = 0u64;
                while start < raw.len() {
                    let end = raw[start..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(raw.len(), |p| start + p);
                    let text = String::from_utf8_lossy(&raw[start..end]);
                    let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
                    lines.push((decoded.time_at(start), text, index));
                    index += 1;
                    start = end + 1;
                }
                batch.logs.resource_logs.push(output_logs(
                    r,
                    lines.iter().map(|(time, text, index)| OutputLine {
                        time: *time,
                        stream: c.stream,
                        text,
                        part: c.part,
                        index: *index,
                    }),
                ));
            }
            _ => {}
        }
    }
    let req = runs_request(&finished);
    batch.traces.resource_spans.extend(req.resource_spans);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::{Run, RunState, Stream, Timestamp, Uuid};

    /// Spool frames as `plumb_store::spool` writes them: a finished run and
    /// its stdout and stderr chunks.
    fn frames() -> (Run, Vec<u8>) {
        let mut run = Run::new(
            Uuid::parse_str("0193a0f4-5b2c-7d3e-8f10-123456789abc").unwrap(),
            "job".into(),
            Timestamp::from_nanos(1_000),
        );
        run.state = RunState::Succeeded;
        run.ended = Some(Timestamp::from_nanos(9_000));
        let mut chunks = Vec::new();
        let mut out = plumb_store::chunk::ChunkBuilder::new(Stream::Stdout);
        out.push(0, Timestamp::from_nanos(2_000), b"one\ntwo\n", &mut chunks);
        out.flush(&mut chunks);
        let mut err = plumb_store::chunk::ChunkBuilder::new(Stream::Stderr);
        err.push(
            1,
            Timestamp::from_nanos(3_000),
            b"oops\r\nno newline",
            &mut chunks,
        );
        err.flush(&mut chunks);
        let mut f = plumb_store::spool::Frames::default();
        f.put_run(&run).put_chunks(&chunks);
        (run, f.bytes)
    }

    #[test]
    fn spool_frames_become_a_span_and_one_log_record_per_line() {
        let (run, bytes) = frames();
        let mut batch = Batch::default();
        convert(&[&[Kind::Spool as u8][..], &bytes].concat(), &mut batch).unwrap();
        assert_eq!(batch.counts(), (1, 4, 0));
        let span = &batch.traces.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, run.id.as_bytes().to_vec());
        let bodies: Vec<String> = batch
            .logs
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| format!("{:?}", r.body))
            .collect();
        let want = ["one", "two", "oops", "no newline"]
            .map(|s| format!("Some(AnyValue {{ value: Some(StringValue({s:?})) }})"));
        assert_eq!(bodies, want);
    }

    #[test]
    fn a_torn_or_unknown_entry_is_an_error_not_a_panic() {
        let (_, bytes) = frames();
        let mut batch = Batch::default();
        let entry = [&[Kind::Spool as u8][..], &bytes[..bytes.len() - 3]].concat();
        assert!(convert(&entry, &mut batch).is_err());
        assert!(convert(&[42, 1, 2], &mut batch).is_err());
        assert!(convert(&[], &mut batch).is_err());
        assert!(convert(&[Kind::LogsProtobuf as u8, 1], &mut batch).is_err());
    }
}
