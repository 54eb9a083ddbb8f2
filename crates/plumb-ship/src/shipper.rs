//! Shipping an outbox to the collector, batch by batch, from the last
//! acknowledged offset of each spool file.

use crate::outbox::{
    Outbox, SETTLE, is_being_written, last_run_frame, lock_sidecar, read_acked, read_batch,
    run_frame_ended, sidecar_path, write_acked,
};
use crate::{Backoff, Client, ShipError};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The collector's spool ingest endpoint: the body is spool frames.
pub const SPOOL_PATH: &str = "/api/v1/ingest/spool";

/// Uncompressed bytes per request (one frame may exceed it).
pub const DEFAULT_BATCH: usize = 4 << 20;

/// The media type of a spool-frame body.
pub const SPOOL_MEDIA_TYPE: &str = "application/x-plumb-spool";

/// What one pass over the outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Requests acknowledged.
    pub batches: u64,
    /// Frames acknowledged.
    pub frames: u64,
    /// Spool file bytes acknowledged.
    pub bytes: u64,
    /// Spool files fully shipped and deleted.
    pub files_done: u64,
    /// Spool files set aside as unreadable or refused by the collector.
    pub files_bad: u64,
    /// Runs dropped by the bound in this pass.
    pub dropped_runs: u64,
    /// The last refusal of the token or of a batch (401, 403, 413), if
    /// any: records refused stay in the outbox (401, 403) or are set aside
    /// (413), and the sender should say why.
    pub refused: Option<crate::Refusal>,
}

/// Ships one outbox; see the crate docs.
#[derive(Debug)]
pub struct Shipper {
    outbox: Outbox,
    client: Client,
    /// The retry schedule.
    pub backoff: Backoff,
    /// Uncompressed bytes per request.
    pub batch_bytes: usize,
    node: String,
    /// The last run-record frame before the acknowledged offset of each
    /// file, so each batch can start with it: chunk frames do not name their
    /// run, and the collector needs to know whose output it is.
    run_frames: HashMap<PathBuf, Vec<u8>>,
    failures: u32,
    /// Refusals (HTTP statuses) the caller reports itself, so the
    /// background thread does not warn of them.
    quiet_refusals: Vec<u16>,
}

enum FileOutcome {
    /// Nothing more to do now.
    Idle,
    /// Shipped and deleted.
    Done,
    /// Set aside.
    Bad,
}

impl Shipper {
    /// A shipper of `outbox` through `client`; `node` names the sending node
    /// in the `X-Plumb-Node` header.
    pub fn new(outbox: Outbox, client: Client, node: &str) -> Shipper {
        Shipper {
            outbox,
            client,
            backoff: Backoff::default(),
            batch_bytes: DEFAULT_BATCH,
            // A header value cannot hold control characters: a host name
            // with one (a hostile or broken node) would fail every request
            // and the outbox would never drain. Escaped, it still names it.
            node: plumb_model::text::escape_cell(node).into_owned(),
            run_frames: HashMap::new(),
            failures: 0,
            quiet_refusals: Vec::new(),
        }
    }

    /// The background thread ([`Shipper::spawn`]) warns when the collector
    /// refuses the token (401, 403) or a batch (413), once per cause until
    /// shipping succeeds again, except for the `statuses` given here, which
    /// the caller says itself: `plumb run` says all three at its end,
    /// naming its run; `plumb agent` says 401 and 403 once for heartbeats
    /// and shipping alike.
    pub fn quiet_refusals(mut self, statuses: &[u16]) -> Shipper {
        self.quiet_refusals = statuses.to_vec();
        self
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Consecutive failed passes.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Enforces the bound, then ships every spool file, oldest first. Stops
    /// at the first error worth retrying and returns it; the caller waits
    /// [`Shipper::retry_delay`] before the next pass.
    pub fn pass(&mut self) -> Result<PassReport, ShipError> {
        let mut report = PassReport {
            dropped_runs: self.outbox.enforce_bound().runs,
            ..Default::default()
        };
        let entries = self.outbox.entries();
        let live: std::collections::HashSet<&PathBuf> = entries.iter().map(|e| &e.path).collect();
        self.run_frames.retain(|p, _| live.contains(p));
        let result = (|| {
            for e in &entries {
                match self.ship_file(&e.path, &mut report)? {
                    FileOutcome::Done => report.files_done += 1,
                    FileOutcome::Bad => report.files_bad += 1,
                    FileOutcome::Idle => {}
                }
            }
            Ok(())
        })();
        self.outbox.remove_orphans();
        match result {
            Ok(()) => {
                self.failures = 0;
                Ok(report)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                Err(e)
            }
        }
    }

    /// How long to wait after a failed pass.
    pub fn retry_delay(&self, err: &ShipError) -> Duration {
        let retry_after = match err {
            ShipError::Http(e) => e.retry_after(),
            ShipError::Io { .. } => None,
        };
        self.backoff
            .next_delay(self.failures.saturating_sub(1), retry_after)
    }

    fn ship_file(
        &mut self,
        path: &Path,
        report: &mut PassReport,
    ) -> Result<FileOutcome, ShipError> {
        let side_path = sidecar_path(path);
        let Ok(side) = lock_sidecar(&side_path) else {
            return Ok(FileOutcome::Idle); // Another shipper has it.
        };
        // Whether the run is going on is read before its length: a file that
        // is unlocked now gets no more bytes, so everything up to `len` is
        // all there will ever be.
        let running = is_being_written(path);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(_) => return Ok(FileOutcome::Idle), // Dropped by the bound meanwhile.
        };
        let meta = file.metadata().map_err(|source| ShipError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        let len = meta.len();
        let mut acked = read_acked(&side);
        if acked > len {
            acked = 0;
        }
        let io = |source| ShipError::Io {
            what: "cannot read spool file",
            path: path.to_path_buf(),
            source,
        };
        if !self.run_frames.contains_key(path)
            && acked > 0
            && let Some(f) = last_run_frame(&file, acked).map_err(io)?
        {
            self.run_frames.insert(path.to_path_buf(), f);
        }
        let mut corrupt;
        loop {
            let batch = read_batch(&file, acked, len, self.batch_bytes).map_err(io)?;
            corrupt = batch.corrupt;
            if batch.frames == 0 {
                break;
            }
            let prefix = self.run_frames.get(path).filter(|_| {
                batch.bytes.get(plumb_model::frame::HEADER) != Some(&plumb_model::frame::KIND_RUN)
            });
            let body = match prefix {
                Some(p) => [p.as_slice(), &batch.bytes].concat(),
                None => batch.bytes.clone(),
            };
            match self.client.post(
                SPOOL_PATH,
                SPOOL_MEDIA_TYPE,
                &body,
                true,
                &[("X-Plumb-Node", self.node.clone())],
            ) {
                Ok(_) => {}
                Err(e)
                    if e.status().is_some_and(|s| {
                        (400..500).contains(&s) && !matches!(s, 401 | 403 | 404 | 408 | 429)
                    }) =>
                {
                    // The collector judged the data itself bad: retrying
                    // cannot help. Keep it aside for a human.
                    // A refusal with advice (413) is said by the background
                    // thread or the caller, with what to do; others here.
                    match e.refusal() {
                        Some(r) => report.refused = Some(r),
                        None => {
                            tracing::error!(path = %path.display(), error = %e, "collector refused a spool batch; setting the file aside as .spool.bad")
                        }
                    }
                    return Ok(self.set_aside(path, &side_path));
                }
                Err(e) => return Err(e),
            }
            write_acked(&side, batch.end).map_err(|source| ShipError::Io {
                what: "cannot record the acknowledged offset in",
                path: side_path.clone(),
                source,
            })?;
            report.batches += 1;
            report.frames += batch.frames as u64;
            report.bytes += batch.end - acked;
            acked = batch.end;
            if let Some(f) = batch.last_run {
                self.run_frames.insert(path.to_path_buf(), f);
            }
        }
        if running {
            return Ok(FileOutcome::Idle);
        }
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= SETTLE);
        let ended = self
            .run_frames
            .get(path)
            .is_some_and(|f| run_frame_ended(f));
        if acked == len && (ended || settled) {
            // Deleted in this order so a crash in between leaves an orphan
            // sidecar (cleaned up), never a spool file with no offset.
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(&side_path);
            self.run_frames.remove(path);
            return Ok(FileOutcome::Done);
        }
        if acked < len && (corrupt || settled) {
            tracing::warn!(path = %path.display(), unreadable = len - acked, "spool file ends in unreadable bytes; shipped what was readable, setting it aside as .spool.bad");
            return Ok(self.set_aside(path, &side_path));
        }
        Ok(FileOutcome::Idle)
    }

    fn set_aside(&mut self, path: &Path, side: &Path) -> FileOutcome {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        let _ = std::fs::rename(path, PathBuf::from(bad));
        let _ = std::fs::remove_file(side);
        self.run_frames.remove(path);
        FileOutcome::Bad
    }

    /// Ships in the background every `idle` (backing off after failures)
    /// until [`BackgroundShipper::finish`].
    pub fn spawn(mut self, idle: Duration) -> BackgroundShipper {
        let (stop_tx, stop_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<PassReport>();
        let thread = std::thread::Builder::new()
            .name("plumb-shipper".into())
            .spawn(move || self.background(idle, stop_rx, done_tx))
            .map_err(|e| tracing::warn!(error = %e, "cannot start the shipper thread"))
            .ok();
        BackgroundShipper {
            stop: Some(stop_tx),
            done: done_rx,
            thread,
        }
    }

    fn background(&mut self, idle: Duration, stop: Receiver<()>, done: Sender<PassReport>) {
        let mut total = PassReport::default();
        let mut wait = Duration::ZERO;
        // The refusal last warned about: the same cause is said once, not
        // at every retry; a success forgets it, so a relapse is said again.
        let mut said: Option<u16> = None;
        loop {
            let last = match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => false,
                // Told to finish (or the handle is gone): one last pass,
                // whatever the backoff says, then report.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            };
            let result = self.pass();
            let refused = match &result {
                Ok(r) => r.refused.clone(),
                Err(e) => e.refusal(),
            };
            if let Some(r) = &refused {
                if !self.quiet_refusals.contains(&r.status) && said != Some(r.status) {
                    tracing::warn!(
                        collector = self.client.base(),
                        outbox = %self.outbox.dir().display(),
                        "the collector {}; {}",
                        r.why,
                        if r.status == 413 {
                            "the refused spool file is set aside as .spool.bad"
                        } else {
                            "runs stay in the outbox and are sent once it is accepted"
                        }
                    );
                }
                said = Some(r.status);
                total.refused = refused;
            } else if result.is_ok() {
                said = None;
            }
            wait = match result {
                Ok(r) => {
                    add(&mut total, &r);
                    idle
                }
                Err(e) => {
                    let d = self.retry_delay(&e);
                    tracing::debug!(error = %e, retry_in = ?d, "shipping failed; will retry");
                    d
                }
            };
            if last {
                let _ = done.send(total);
                return;
            }
        }
    }
}

fn add(total: &mut PassReport, r: &PassReport) {
    total.batches += r.batches;
    total.frames += r.frames;
    total.bytes += r.bytes;
    total.files_done += r.files_done;
    total.files_bad += r.files_bad;
    total.dropped_runs += r.dropped_runs;
    if r.refused.is_some() {
        total.refused = r.refused.clone();
    }
}

/// A shipper running on its own thread.
#[derive(Debug)]
pub struct BackgroundShipper {
    stop: Option<Sender<()>>,
    done: Receiver<PassReport>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundShipper {
    /// Asks for a last pass and waits for it at most `deadline`. `None` when
    /// the deadline passed: what is left stays in the outbox for the agent
    /// or the next run, and the thread is left to die with the process.
    pub fn finish(mut self, deadline: Duration) -> Option<PassReport> {
        let start = Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = self.done.recv_timeout(deadline).ok();
        if r.is_some()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
        tracing::debug!(elapsed = ?start.elapsed(), finished = r.is_some(), "shipper finish");
        r
    }
}
