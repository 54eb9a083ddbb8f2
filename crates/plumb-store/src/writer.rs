//! Writing one run as it happens, off the child's path.
//!
//! [`RunWriter`] takes the recorder's events (start, output reads,
//! fingerprint, end) through a bounded channel to its own thread, which cuts
//! output into chunks and writes them to the store in batches. Once a run
//! fills whole chunks, they are compressed on compressor threads of their
//! own while the writer thread goes on cutting and writing, so a flood of
//! output is compressed on every core that is free rather than on one. If the store
//! cannot be opened or written (read-only, full, locked too long), it says so
//! once through the warning callback and from then on writes everything to a
//! spool file instead, to be imported by a later plumb. Recording never fails
//! the run.

use crate::chunk::{
    BUF_CAPACITY, CHUNK_TARGET, ChunkBuilder, IndexPolicy, READ_HEADROOM, RawChunk, SealedChunk,
};
use crate::spool::SpoolFile;
use crate::{Store, put_chunks_tx, put_fingerprint_conn, put_run_tx};
use plumb_model::{Fingerprint, OutputGap, Run, Stream, Timestamp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Settings of a [`RunWriter`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The store directory.
    pub store_dir: PathBuf,
    /// Spool directories to fall back to, in order.
    pub spool_dirs: Vec<PathBuf>,
    /// Raw output bytes kept per run: the first half of it and the newest
    /// bytes up to the rest; what lies between is dropped, counted and
    /// marked (see the `cap` module).
    pub output_cap: u64,
    /// Partial chunks are written at least this often, so a live run's
    /// output can be followed and searched.
    pub flush_interval: Duration,
    /// How long a write may wait for a locked store before spooling.
    pub busy_timeout: Duration,
}

/// Where the run's records ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// In the store.
    Store,
    /// In a spool file, to be imported later.
    Spool(PathBuf),
    /// Nowhere: both the store and every spool directory failed.
    Lost,
}

enum Msg {
    Started(Box<Run>),
    Output {
        stream: Stream,
        seq: u64,
        time: Timestamp,
        /// The read is `data[start..]`.
        data: Vec<u8>,
        start: usize,
    },
    Fingerprint(String, Box<Fingerprint>),
    Finished(Box<Run>),
}

/// Writes one run's records on a thread of its own; see the module docs.
pub struct RunWriter {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<Destination>>,
    /// Buffers of chunks already written, for [`RunWriter::lend`].
    free: Receiver<Vec<u8>>,
}

/// Reads queued for the writer thread, of up to 256 KiB each.
const QUEUED_READS: usize = 32;

/// Buffers waiting in [`RunWriter`]'s free list.
const FREE_BUFFERS: usize = 8;

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter").finish_non_exhaustive()
    }
}

impl RunWriter {
    /// Starts the writer thread. `warn` is called with one line each time
    /// the records move (store to spool, spool to another spool, nowhere),
    /// saying what failed and where the records go instead.
    pub fn start(config: WriterConfig, warn: WarnFn) -> RunWriter {
        // A bounded buffer between the child and the store, so a slow disk
        // slows the child rather than growing memory.
        let (tx, rx) = sync_channel(QUEUED_READS);
        let (free_tx, free) = sync_channel(FREE_BUFFERS);
        let thread = std::thread::Builder::new()
            .name("plumb-writer".into())
            .spawn(move || Worker::new(config, warn, free_tx).run(rx))
            .expect("spawn writer thread");
        RunWriter {
            tx: Some(tx),
            thread: Some(thread),
            free,
        }
    }

    /// Like [`RunWriter::start`], but records to the spool file of `run_id`
    /// in the first of `config.spool_dirs` that works, not the store: for
    /// runs shipped to a collector (`plumb_ship`). Falls back to the store
    /// when no spool directory works.
    pub fn start_spooled(
        config: WriterConfig,
        run_id: plumb_model::Uuid,
        warn: WarnFn,
    ) -> RunWriter {
        let (tx, rx) = sync_channel(QUEUED_READS);
        let (free_tx, free) = sync_channel(FREE_BUFFERS);
        let thread = std::thread::Builder::new()
            .name("plumb-writer".into())
            .spawn(move || {
                let mut w = Worker::new(config, warn, free_tx);
                w.spool_first = Some(run_id);
                w.run(rx)
            })
            .expect("spawn writer thread");
        RunWriter {
            tx: Some(tx),
            thread: Some(thread),
            free,
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx {
            // The worker only stops after `Finished`; a send error means it
            // panicked, and recording must still not fail the run.
            let _ = tx.send(msg);
        }
    }

    /// The run has started.
    pub fn started(&self, run: &Run) {
        self.send(Msg::Started(Box::new(run.clone())));
    }

    /// One read of output.
    pub fn output(&self, stream: Stream, seq: u64, time: Timestamp, data: &[u8]) {
        self.send(Msg::Output {
            stream,
            seq,
            time,
            data: data.to_vec(),
            start: 0,
        });
    }

    /// A buffer to read output into, for [`RunWriter::output_owned`]: its
    /// length is the room kept in front, and it has room for at least
    /// [`CHUNK_TARGET`] bytes after that. A chunk's buffer once it has been
    /// written, or a new one.
    pub fn lend(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_else(|_| {
            let mut buf = Vec::with_capacity(BUF_CAPACITY + READ_HEADROOM);
            buf.resize(READ_HEADROOM, 0);
            buf
        })
    }

    /// One read of output, `buf[start..]`, in a buffer that is handed over
    /// (normally from [`RunWriter::lend`]): when it has room in front, it
    /// becomes the chunk without its bytes being copied.
    pub fn output_owned(
        &self,
        stream: Stream,
        seq: u64,
        time: Timestamp,
        buf: Vec<u8>,
        start: usize,
    ) {
        self.send(Msg::Output {
            stream,
            seq,
            time,
            data: buf,
            start,
        });
    }

    /// The fingerprint.
    pub fn fingerprint(&self, hash: &str, fp: &Fingerprint) {
        self.send(Msg::Fingerprint(hash.to_string(), Box::new(fp.clone())));
    }

    /// The run has ended: writes what is left and waits for the thread.
    pub fn finish(mut self, run: &Run) -> Destination {
        self.send(Msg::Finished(Box::new(run.clone())));
        drop(self.tx.take());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(Destination::Lost)
    }
}

/// Output is indexed for search as it is written up to 16 MiB/s per stream,
/// which covers nearly every program at a cost of about 2% of one core. A
/// program that floods its output past that (a `cat` of a big file) gets
/// the rest indexed by the first search that reads it, instead of paying
/// twice the CPU of compression on the cores it is running on.
const INDEX_POLICY: IndexPolicy = IndexPolicy::RateLimited {
    bytes_per_sec: 16 << 20,
    burst: 32 << 20,
};

/// Says, once, what failed and where records go instead.
pub type WarnFn = Box<dyn Fn(&str) + Send>;

enum Target {
    Store(Store),
    Spool(SpoolFile),
    Lost,
}

struct Worker {
    config: WriterConfig,
    warn: WarnFn,
    /// Why records left the store, said once the new destination took a
    /// write (so the warning names the file that really holds them).
    moved: Option<String>,
    /// Spool directories where a write failed during this run.
    failed_dirs: Vec<PathBuf>,
    /// Whether the warning that nothing can be written was given.
    told_lost: bool,
    target: Target,
    run: Option<Run>,
    builders: [ChunkBuilder; 3],
    sealed: Vec<SealedChunk>,
    last_write: Instant,
    fingerprint: Option<(String, Box<Fingerprint>)>,
    stored_bytes: u64,
    /// Bytes that could be written nowhere (not those over the cap).
    dropped: u64,
    /// Room left in the head: the first half of the output cap.
    head_left: u64,
    /// Set once the head is full.
    gap: Option<OutputGap>,
    /// Record to this run's spool file rather than the store.
    spool_first: Option<plumb_model::Uuid>,
    /// Started at the first full chunk; short runs never start it.
    compressors: Option<Compressors>,
    /// Started with the compressors, when the run writes to the store.
    checkpointer: Option<Checkpointer>,
    /// Buffers handed back to [`RunWriter::lend`].
    free: SyncSender<Vec<u8>>,
}

impl Worker {
    fn new(config: WriterConfig, warn: WarnFn, free: SyncSender<Vec<u8>>) -> Worker {
        Worker {
            head_left: config.output_cap / 2,
            config,
            warn,
            moved: None,
            failed_dirs: Vec::new(),
            told_lost: false,
            target: Target::Lost,
            run: None,
            builders: [
                ChunkBuilder::with_policy(Stream::Stdout, INDEX_POLICY),
                ChunkBuilder::with_policy(Stream::Stderr, INDEX_POLICY),
                ChunkBuilder::with_policy(Stream::Combined, INDEX_POLICY),
            ],
            sealed: Vec::new(),
            last_write: Instant::now(),
            fingerprint: None,
            stored_bytes: 0,
            dropped: 0,
            gap: None,
            spool_first: None,
            compressors: None,
            checkpointer: None,
            free,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) -> Destination {
        let spooled = self
            .spool_first
            .and_then(|id| SpoolFile::create(&self.config.spool_dirs, id).ok());
        self.target = if let Some(spool) = spooled {
            Target::Spool(spool)
        } else {
            match Store::open(&self.config.store_dir) {
                Ok(store) => {
                    let _ = store.conn().busy_timeout(self.config.busy_timeout);
                    // Checkpoint (and fsync) every 64 MiB of WAL rather than every
                    // 4 MiB: a run writing a lot of output should not wait on the
                    // disk every few megabytes.
                    let _ = store
                        .conn()
                        .pragma_update(None, "wal_autocheckpoint", 16384);
                    Target::Store(store)
                }
                Err(e) => self.fall_back(&format!("cannot open store: {e}")),
            }
        };
        loop {
            match rx.recv_timeout(self.config.flush_interval) {
                Ok(Msg::Started(run)) => {
                    self.run = Some(*run);
                    self.write(true);
                }
                Ok(Msg::Output {
                    stream,
                    seq,
                    time,
                    data,
                    start,
                }) => self.output(stream, seq, time, data, start),
                Ok(Msg::Fingerprint(hash, fp)) => {
                    self.fingerprint = Some((hash, fp));
                }
                Ok(Msg::Finished(run)) => {
                    self.flush_all();
                    let mut run = *run;
                    run.output.gap = self.gap;
                    self.run = Some(run);
                    self.write(true);
                    if let (Some(c), Target::Store(store)) =
                        (self.checkpointer.take(), &self.target)
                    {
                        c.finish(store);
                    }
                    return match &self.target {
                        Target::Store(_) => Destination::Store,
                        Target::Spool(s) => Destination::Spool(s.path().to_path_buf()),
                        Target::Lost => Destination::Lost,
                    };
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.collect(false);
                    self.flush_partial();
                    self.write(false);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The recorder went away without finishing: keep what we have.
                    self.flush_all();
                    self.write(false);
                    return Destination::Lost;
                }
            }
        }
    }

    /// One read: into the head while the head has room (cut there to the
    /// byte), else into the tail, numbered above the head's last read (see
    /// the `cap` module).
    fn output(&mut self, stream: Stream, seq: u64, time: Timestamp, data: Vec<u8>, start: usize) {
        let len = (data.len() - start) as u64;
        match self.gap {
            Some(gap) => self.take_read(stream, seq.max(gap.after_seq) + 1, time, data, start),
            None if len <= self.head_left => {
                self.head_left -= len;
                self.take_read(stream, seq, time, data, start);
            }
            None => {
                // The head fills within this read: once per run.
                let head = self.head_left as usize;
                if head > 0 {
                    let part = data[start..start + head].to_vec();
                    self.take_read(stream, seq, time, part, 0);
                }
                self.head_left = 0;
                // Seal the head's chunks so that no chunk holds bytes of
                // both head and tail, and say where the gap is: a collector
                // or a spool import can drop over the cap as the run goes.
                self.flush_all();
                self.gap = Some(OutputGap {
                    after_seq: seq,
                    cap: self.config.output_cap,
                    dropped: 0,
                });
                if let Some(run) = self.run.as_mut() {
                    run.output.gap = self.gap;
                }
                self.write(true);
                self.take_read(stream, seq + 1, time, data, start + head);
            }
        }
    }

    fn take_read(
        &mut self,
        stream: Stream,
        seq: u64,
        time: Timestamp,
        data: Vec<u8>,
        start: usize,
    ) {
        let mut raws = Vec::new();
        self.builders[(stream.as_u8() - 1) as usize].push_owned(seq, time, data, start, &mut raws);
        self.dispatch(raws);
        self.collect(false);
        if self.sealed.len() >= 4 || self.last_write.elapsed() >= self.config.flush_interval {
            self.flush_partial();
            self.write(false);
        }
    }

    /// Seals partial chunks of a live run once the flush interval passed,
    /// and waits for them, so they are written now.
    fn flush_partial(&mut self) {
        if self.last_write.elapsed() >= self.config.flush_interval {
            self.flush_all();
        }
    }

    /// Seals what every stream has waiting and waits for every chunk still
    /// being compressed.
    fn flush_all(&mut self) {
        let mut raws = Vec::new();
        for b in &mut self.builders {
            b.flush_raw(&mut raws);
        }
        self.dispatch(raws);
        self.collect(true);
    }

    /// Compresses cut chunks: on the compressor threads once a run has
    /// filled a whole chunk (starting them then), else here, in order.
    fn dispatch(&mut self, raws: Vec<RawChunk>) {
        for raw in raws {
            if self.compressors.is_none() && raw.bytes().len() >= CHUNK_TARGET {
                self.compressors = Compressors::start();
                if let Target::Store(store) = &self.target {
                    self.checkpointer = Checkpointer::start(store);
                }
            }
            match &mut self.compressors {
                Some(c) => c.submit(raw),
                None => {
                    self.sealed.push(raw.seal());
                    recycle(&mut self.builders, &self.free, raw.stream, raw.raw);
                }
            }
        }
    }

    /// Takes the chunks the compressors have finished, in the order they
    /// were cut; with `wait`, waits for all of them.
    fn collect(&mut self, wait: bool) {
        if let Some(c) = &mut self.compressors {
            c.collect(wait, &mut self.sealed, &mut self.builders, &self.free);
        }
    }

    /// Writes sealed chunks (and then the run record when `with_run`).
    fn write(&mut self, with_run: bool) {
        if !self.sealed.is_empty() {
            let chunks = std::mem::take(&mut self.sealed);
            if self.write_to_target(false, &chunks) {
                if let Some(c) = &mut self.checkpointer {
                    c.wrote(chunks.iter().map(|c| c.data.len() as u64).sum());
                }
                self.stored_bytes += chunks.iter().map(|c| c.raw_bytes).sum::<u64>();
                self.enforce_cap();
            }
        }
        if with_run {
            // After the cap was enforced, so the record counts what it dropped.
            if let Some(run) = self.run.as_mut() {
                run.output.dropped_bytes = run.output.dropped_bytes.max(self.dropped);
            }
            self.write_to_target(true, &[]);
        }
        self.last_write = Instant::now();
    }

    /// One write to the current target. When it fails, the next spool
    /// directory that works takes everything known (run record,
    /// fingerprint, these chunks); a spool write that fails part way is
    /// rolled back, so every spool file holds whole frames. When nothing
    /// can be written, the chunks are counted as dropped (on the run's
    /// record, if that can still be written somewhere later). Returns
    /// whether the first target took it.
    fn write_to_target(&mut self, with_run: bool, chunks: &[SealedChunk]) -> bool {
        let mut with_run = with_run;
        let mut first = true;
        // Bounded: every failure moves on to another directory or to Lost.
        for _ in 0..self.config.spool_dirs.len() + 3 {
            let result = match &mut self.target {
                Target::Store(store) => write_store(
                    store,
                    self.run.as_ref(),
                    with_run,
                    chunks,
                    self.fingerprint.as_ref(),
                ),
                Target::Spool(spool) => {
                    let mark = spool.len();
                    let r = write_spool(
                        spool,
                        self.run.as_ref(),
                        with_run,
                        chunks,
                        self.fingerprint.as_ref(),
                    );
                    if r.is_err() {
                        spool.roll_back(mark);
                    }
                    r
                }
                Target::Lost if with_run => {
                    // Space may have been freed since: try every directory
                    // again for the run's record.
                    self.failed_dirs.clear();
                    self.target = self.next_spool();
                    if matches!(self.target, Target::Lost) {
                        self.count_lost(chunks);
                        return false;
                    }
                    continue;
                }
                Target::Lost => {
                    self.count_lost(chunks);
                    return false;
                }
            };
            match result {
                Ok(()) => {
                    if let (Some(reason), Target::Spool(s)) = (self.moved.take(), &self.target) {
                        (self.warn)(&format!(
                            "plumb: warning: {reason}; recording to spool {} (imported by the next plumb command)",
                            s.path().display()
                        ));
                    }
                    return first;
                }
                Err(e) => {
                    first = false;
                    let what = match &self.target {
                        Target::Store(_) => "cannot write to store",
                        _ => "cannot write spool",
                    };
                    if let Target::Spool(s) = &self.target
                        && let Some(dir) = s.path().parent()
                    {
                        self.failed_dirs.push(dir.to_path_buf());
                    }
                    if self.moved.is_none() {
                        self.moved = Some(format!("{what}: {e}"));
                    }
                    self.checkpointer = None;
                    self.target = self.next_spool();
                    with_run = true;
                }
            }
        }
        self.count_lost(chunks);
        false
    }

    /// Counts chunks that could be written nowhere as dropped, and says so
    /// once.
    fn count_lost(&mut self, chunks: &[SealedChunk]) {
        let bytes: u64 = chunks.iter().map(|c| c.raw_bytes).sum();
        self.dropped += bytes;
        if let Some(run) = self.run.as_mut() {
            run.output.dropped_bytes = run.output.dropped_bytes.max(self.dropped);
        }
        if !self.told_lost {
            self.told_lost = true;
            let reason = self
                .moved
                .clone()
                .unwrap_or_else(|| "cannot write the store".into());
            (self.warn)(&format!(
                "plumb: warning: {reason}; and no spool directory can be written ({}): output is counted as dropped until one can",
                self.config
                    .spool_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    /// The first spool directory that has not failed during this run and
    /// takes a new spool file, else [`Target::Lost`].
    fn next_spool(&mut self) -> Target {
        let run_id = self
            .run
            .as_ref()
            .map(|r| r.id)
            .unwrap_or_else(plumb_model::new_id);
        let dirs: Vec<PathBuf> = self
            .config
            .spool_dirs
            .iter()
            .filter(|d| !self.failed_dirs.contains(d))
            .cloned()
            .collect();
        match SpoolFile::create(&dirs, run_id) {
            Ok(s) => Target::Spool(s),
            Err(error) => {
                tracing::debug!(%error, "no spool directory works");
                Target::Lost
            }
        }
    }

    /// Drops whole chunks at the old end of the tail while the run goes on;
    /// the final record settles the cap to the byte and counts the drop
    /// (`cap::settle`), so nothing is added to `dropped` here.
    fn enforce_cap(&mut self) {
        if self.stored_bytes <= self.config.output_cap {
            return;
        }
        if let (Target::Store(store), Some(run), Some(gap)) = (&self.target, &self.run, &self.gap)
            && let Ok(dropped) = crate::cap::drop_over_cap(store.conn(), run.id, gap, false)
        {
            self.stored_bytes -= dropped;
        }
    }

    /// Leaves the store for a spool; the warning follows the first write
    /// there.
    fn fall_back(&mut self, reason: &str) -> Target {
        self.moved = Some(reason.to_string());
        self.next_spool()
    }
}

/// Bytes written to the WAL between checkpoints while a run floods its
/// output. Small, so that little is left uncopied when the run ends: the
/// next writer's autocheckpoint copies that, on its own time.
const CHECKPOINT_EVERY: u64 = 16 << 20;

/// Checkpoints the WAL on a thread and connection of its own while a run
/// writes a lot of output.
///
/// A checkpoint copies the WAL into the database and fsyncs both, which
/// takes a few hundred milliseconds per 64 MiB here. Run on the writer
/// thread (as `wal_autocheckpoint` does), it stalls the writer, then the
/// compressors behind it, then the child: a flood spent a third of its time
/// waiting on checkpoints. A passive checkpoint on another connection runs
/// beside the writer's commits instead. It is not waited for when the run
/// ends: a checkpoint cut short by exit is safe (the WAL stays valid), and
/// the next writer's autocheckpoint finishes the job. The price: while the
/// writer keeps appending, the WAL is never fully copied, so it cannot
/// restart from its beginning and grows with the flood; it is cut back to
/// 64 MiB (`journal_size_limit`, set in [`Store::open`]) when it next
/// restarts.
struct Checkpointer {
    nudge: SyncSender<()>,
    since: u64,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the second connection and starts the thread; turns off the
    /// writer connection's own checkpoints only once that worked.
    fn start(store: &Store) -> Option<Checkpointer> {
        let conn = rusqlite::Connection::open(store.dir().join(crate::DB_FILE)).ok()?;
        conn.busy_timeout(Duration::from_secs(5)).ok()?;
        let (nudge, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("plumb-ckpt".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Busy or partial is fine: the next nudge goes on.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        store
            .conn()
            .pragma_update(None, "wal_autocheckpoint", 0)
            .ok()?;
        Some(Checkpointer {
            nudge,
            since: 0,
            thread: Some(thread),
        })
    }

    /// The run is written: waits for the pass under way, then copies what
    /// is left and empties the WAL. A WAL left long would be copied again in
    /// full by the next writer (the next process rebuilds the WAL index, and
    /// with it forgets what was copied already).
    fn finish(self, store: &Store) {
        drop(self.nudge);
        if let Some(t) = self.thread {
            let _ = t.join();
        }
        let _ = store
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// `bytes` more were committed to the WAL.
    fn wrote(&mut self, bytes: u64) {
        self.since += bytes;
        if self.since >= CHECKPOINT_EVERY {
            self.since = 0;
            // Full means a checkpoint is waiting already.
            let _ = self.nudge.try_send(());
        }
    }
}

/// Compressor threads: two, so that a flood of output is compressed on
/// both cores when the program being recorded leaves one idle, and a chunk
/// is never waiting while another is being written.
const COMPRESSORS: usize = 2;

/// Cut chunks waiting for a compressor (each holds up to a read beyond
/// [`CHUNK_TARGET`] bytes). When they are all taken the writer thread
/// waits, and so, through the bounded event channel, does the child.
const QUEUED_CHUNKS: usize = 4;

/// A compressor's answer: the chunk's number, the chunk (None if sealing it
/// panicked), and its byte buffer for reuse.
type Compressed = (u64, Option<SealedChunk>, Vec<u8>);

/// The compressor threads of one run, and the chunks they have finished.
struct Compressors {
    jobs: Option<SyncSender<(u64, RawChunk)>>,
    results: Receiver<Compressed>,
    threads: Vec<JoinHandle<()>>,
    /// Chunks handed over so far; the next one gets this number.
    submitted: u64,
    /// Chunks taken back in order so far.
    taken: u64,
    /// Chunks finished ahead of one cut before them.
    early: BTreeMap<u64, Option<SealedChunk>>,
}

impl Compressors {
    /// Starts the threads; None if not even one could be started, and then
    /// chunks are compressed on the writer thread as before.
    fn start() -> Option<Compressors> {
        let (jobs, job_rx) = sync_channel::<(u64, RawChunk)>(QUEUED_CHUNKS);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (result_tx, results) = channel();
        let threads: Vec<JoinHandle<()>> = (0..COMPRESSORS)
            .filter_map(|i| {
                let job_rx = Arc::clone(&job_rx);
                let result_tx: Sender<Compressed> = result_tx.clone();
                std::thread::Builder::new()
                    .name(format!("plumb-lz4-{i}"))
                    .spawn(move || compress_jobs(&job_rx, &result_tx))
                    .ok()
            })
            .collect();
        if threads.is_empty() {
            return None;
        }
        Some(Compressors {
            jobs: Some(jobs),
            results,
            threads,
            submitted: 0,
            taken: 0,
            early: BTreeMap::new(),
        })
    }

    fn submit(&mut self, raw: RawChunk) {
        let n = self.submitted;
        self.submitted += 1;
        let unsent = match &self.jobs {
            Some(jobs) => jobs.send((n, raw)).err().map(|e| e.0.1),
            None => Some(raw),
        };
        // Every compressor is gone (cannot happen short of a panic outside
        // sealing): seal it here, in its place in the order.
        if let Some(raw) = unsent {
            self.early.insert(n, Some(raw.seal()));
        }
    }

    fn collect(
        &mut self,
        wait: bool,
        sealed: &mut Vec<SealedChunk>,
        builders: &mut [ChunkBuilder; 3],
        free: &SyncSender<Vec<u8>>,
    ) {
        loop {
            while let Some(chunk) = self.early.remove(&self.taken) {
                sealed.extend(chunk);
                self.taken += 1;
            }
            if self.taken == self.submitted {
                return;
            }
            let got = if wait {
                self.results.recv().ok()
            } else {
                self.results.try_recv().ok()
            };
            let Some((n, chunk, buf)) = got else {
                return;
            };
            if let Some(c) = &chunk {
                recycle(builders, free, c.stream, buf);
            }
            self.early.insert(n, chunk);
        }
    }
}

impl Drop for Compressors {
    fn drop(&mut self) {
        // Closing the queue ends the threads once it is empty.
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Gives a written chunk's buffer back: to the builder of its stream while
/// it has fewer than two spare (it needs them for carried-over lines), else
/// to the capture through [`RunWriter::lend`].
fn recycle(
    builders: &mut [ChunkBuilder; 3],
    free: &SyncSender<Vec<u8>>,
    stream: Stream,
    buf: Vec<u8>,
) {
    let b = &mut builders[(stream.as_u8() - 1) as usize];
    if b.spares() < 2 || buf.capacity() < BUF_CAPACITY {
        b.recycle(buf);
        return;
    }
    let mut buf = buf;
    buf.clear();
    buf.resize(READ_HEADROOM, 0);
    if let Err(std::sync::mpsc::TrySendError::Full(buf)) = free.try_send(buf) {
        b.recycle(buf);
    }
}

/// A compressor thread: seals chunks from the queue until it is closed.
fn compress_jobs(jobs: &Mutex<Receiver<(u64, RawChunk)>>, results: &Sender<Compressed>) {
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((n, raw)) = job else {
            return;
        };
        // A panic while sealing loses that chunk, not the run: the writer
        // is told, so it does not wait for it.
        let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raw.seal())).ok();
        if results.send((n, sealed, raw.raw)).is_err() {
            return;
        }
    }
}

fn write_store(
    store: &Store,
    run: Option<&Run>,
    with_run: bool,
    chunks: &[SealedChunk],
    fp: Option<&(String, Box<Fingerprint>)>,
) -> crate::Result<()> {
    let tx = store.conn().unchecked_transaction()?;
    if let Some(run) = run {
        if !chunks.is_empty() {
            put_chunks_tx(&tx, run.id, &run.host.hostname, chunks)?;
        }
        if with_run {
            if let Some((hash, fp)) = fp {
                put_fingerprint_conn(&tx, hash, fp)?;
            }
            put_run_tx(&tx, run)?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn write_spool(
    spool: &mut SpoolFile,
    run: Option<&Run>,
    with_run: bool,
    chunks: &[SealedChunk],
    fp: Option<&(String, Box<Fingerprint>)>,
) -> crate::Result<()> {
    if with_run {
        if let Some(run) = run {
            spool.put_run(run)?;
        }
        if let Some((hash, fp)) = fp {
            spool.put_fingerprint(hash, fp)?;
        }
    }
    spool.put_chunks(chunks)?;
    if with_run {
        spool.sync()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::query::OutputCursor;
    use plumb_model::{RunState, new_id};

    #[test]
    fn a_flood_in_lent_buffers_is_stored_whole_and_leaves_the_wal_empty() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let config = WriterConfig {
            store_dir: dir.path().to_path_buf(),
            spool_dirs: vec![dir.path().join("spool")],
            output_cap: 1 << 40,
            flush_interval: Duration::from_millis(200),
            busy_timeout: Duration::from_secs(5),
        };
        let warned = Arc::new(Mutex::new(Vec::<String>::new()));
        let w2 = Arc::clone(&warned);
        let writer = RunWriter::start(
            config,
            Box::new(move |l| w2.lock().unwrap().push(l.to_string())),
        );
        let mut run = Run::new(new_id(), "flood".into(), Timestamp::now());
        writer.started(&run);
        // 96 MiB in reads of 256 KiB that do not end on a line: enough
        // compressed output for several checkpoints of the WAL.
        let mut all = Vec::new();
        let mut i = 0u64;
        while all.len() < 96 << 20 {
            all.extend_from_slice(
                format!("{i:012} request {} took {} ms\n", i % 7919, i % 997).as_bytes(),
            );
            i += 1;
        }
        for (seq, read) in all.chunks(256 * 1024 - 3).enumerate() {
            let mut buf = writer.lend();
            let start = buf.len();
            assert_eq!(start, READ_HEADROOM);
            buf.extend_from_slice(read);
            writer.output_owned(Stream::Stdout, seq as u64, Timestamp::now(), buf, start);
        }
        run.state = RunState::Succeeded;
        assert_eq!(writer.finish(&run), Destination::Store);
        assert!(
            warned.lock().unwrap().is_empty(),
            "{:?}",
            warned.lock().unwrap()
        );
        let wal = std::fs::metadata(dir.path().join("plumb.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the WAL is emptied when a flood ends");
        let store = Store::open(dir.path()).unwrap();
        let mut got = Vec::new();
        store
            .replay_output(run.id, None, &mut OutputCursor::default(), &mut |p| {
                got.extend_from_slice(p.bytes());
                Ok(())
            })
            .unwrap();
        assert!(
            got == all,
            "stored {} of {} bytes, or different ones",
            got.len(),
            all.len()
        );
    }
}
