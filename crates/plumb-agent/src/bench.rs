//! Node benchmarks (`plumb bench-node`, and the agent when its node is
//! idle): CPU on one core and on every online CPU, integer and floating
//! point; memory bandwidth with a STREAM-triad-like kernel on arrays well
//! past the last-level cache; sequential write (fsync'd) and read, and
//! 4 KiB random reads, at a chosen directory, around the page cache
//! (O_DIRECT, or the file's cache dropped where the file system refuses
//! it); and, with a collector, round trips and upload
//! throughput to it.
//!
//! Each figure is the median of several short, time-bounded repetitions
//! with its spread ([`plumb_model::bench::Figure`]). The default run takes
//! about 10 s; [`BenchOptions::quick`] about 1 s (for tests). Every kernel's
//! result goes through [`std::hint::black_box`], so the optimizer cannot
//! drop the work.

use plumb_model::Timestamp;
use plumb_model::bench::{BENCH_VERSION, DiskBench, Figure, NetBench, NodeBench};
use plumb_ship::{Client, ShipError};
use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the agent posts a result (agent token).
pub const INGEST_PATH: &str = "/api/v1/ingest/bench";
/// The round-trip endpoint (agent token; answers an empty 204).
pub const PING_PATH: &str = "/api/v1/agent/bench/ping";
/// The throughput endpoint (agent token; reads the body and answers its
/// length).
pub const SINK_PATH: &str = "/api/v1/agent/bench/sink";

/// How often an agent benchmarks its node by default (as HTCondor does).
pub const BENCH_EVERY: Duration = Duration::from_secs(4 * 3600);
/// An agent's first benchmark is no sooner than this after its start.
pub const FIRST_DELAY: Duration = Duration::from_secs(120);
/// Idle: the 1-minute load average per online CPU below this.
pub const IDLE_LOAD_PER_CPU: f64 = 0.5;
/// A busy node is looked at again after this long.
const BUSY_RETRY: Duration = Duration::from_secs(60);

/// Whether the node is idle: its 1-minute load average per online CPU
/// below `below` ([`IDLE_LOAD_PER_CPU`] by default; `/proc/loadavg`); the
/// load when it is not.
pub fn idle(below: f64) -> Result<(), f64> {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let per_cpu = load / online_cpus() as f64;
    if per_cpu < below { Ok(()) } else { Err(load) }
}

/// The agent's benchmark thread: after `delay`, whenever the node is idle
/// and `every` has passed since the last result, runs the benchmark and
/// sends it; a busy node is looked at again each minute. Stops when
/// `stop` is set (checked at least every second while it waits).
pub fn spawn_idle(
    opts: BenchOptions,
    idle_below: f64,
    every: Duration,
    delay: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let wait = move |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_secs(1)));
        }
        !stop.load(Ordering::Relaxed)
    };
    let spawned = std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            if !wait(delay) {
                return;
            }
            loop {
                if let Err(load) = idle(idle_below) {
                    tracing::debug!(load, "node busy; benchmark postponed");
                    if !wait(BUSY_RETRY.min(every)) {
                        return;
                    }
                    continue;
                }
                let Some(client) = opts.collector.clone() else {
                    return;
                };
                match run(&opts) {
                    Ok(b) => match send(&client, &b) {
                        Ok(()) => tracing::info!(
                            wall_s = b.wall_s,
                            cpu_int_mops = b.cpu_int_mops.value,
                            mem_mbs = b.mem_triad_mbs.value,
                            "node benchmark sent"
                        ),
                        Err(e) => tracing::warn!(error = %e, "the collector did not take the node benchmark"),
                    },
                    Err(e) => tracing::warn!(error = %e, "node benchmark failed"),
                }
                if !wait(every) {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "node benchmarks are not run on this node");
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The node name the result carries.
    pub node: String,
    /// The directory to measure disk I/O in (`None`: no disk figures).
    pub path: Option<PathBuf>,
    /// The collector to measure the network to (`None`: no network figures).
    pub collector: Option<Client>,
    /// About 1 s instead of about 10 s, with fewer, shorter repetitions.
    pub quick: bool,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The disk test file could not be made, written or read.
    #[error("cannot measure disk I/O at {path}: {what}")]
    Disk {
        /// The directory.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The collector could not be reached or refused the request.
    #[error("cannot measure the network to the collector {collector}")]
    Collector {
        /// The collector's URL.
        collector: String,
        /// What went wrong.
        source: ShipError,
    },
}

/// Repetitions and the length of each.
#[derive(Debug, Clone, Copy)]
struct Plan {
    reps: usize,
    cpu_rep: Duration,
    all_rep: Duration,
    mem_rep: Duration,
    /// Each triad array is this many times the last-level cache.
    mem_llc_times: usize,
    disk_reps: usize,
    disk_file: usize,
    /// How long each sequential and random read repetition reads for.
    seq_rep: Duration,
    rand_rep: Duration,
    pings: usize,
    upload: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                reps: 3,
                cpu_rep: Duration::from_millis(25),
                all_rep: Duration::from_millis(30),
                mem_rep: Duration::from_millis(40),
                mem_llc_times: 2,
                disk_reps: 3,
                disk_file: 4 << 20,
                seq_rep: Duration::from_millis(20),
                rand_rep: Duration::from_millis(20),
                pings: 5,
                upload: 256 << 10,
            }
        } else {
            Plan {
                reps: 5,
                cpu_rep: Duration::from_millis(200),
                all_rep: Duration::from_millis(250),
                mem_rep: Duration::from_millis(250),
                mem_llc_times: 4,
                disk_reps: 5,
                disk_file: 64 << 20,
                seq_rep: Duration::from_millis(200),
                // Random reads vary most from one window to the next.
                rand_rep: Duration::from_millis(400),
                pings: 20,
                upload: 4 << 20,
            }
        }
    }
}

/// Runs the benchmark. The disk path and the collector are checked first,
/// so a bad one fails at once rather than after the CPU figures.
pub fn run(opts: &BenchOptions) -> Result<NodeBench, BenchError> {
    let plan = Plan::new(opts.quick);
    let taken_at = Timestamp::now();
    let started = Instant::now();
    let disk_file = match &opts.path {
        Some(p) => Some(TestFile::create(p)?),
        None => None,
    };
    if let Some(c) = &opts.collector {
        c.get(PING_PATH).map_err(|source| BenchError::Collector {
            collector: c.base().to_string(),
            source,
        })?;
    }
    let cpus = online_cpus();
    let cpu_int_mops = Figure::of(&repeat(plan.reps, || int_rate(plan.cpu_rep)));
    let cpu_float_mflops = Figure::of(&repeat(plan.reps, || float_rate(plan.cpu_rep)));
    let cpu_all_int_mops = Figure::of(&repeat(plan.reps, || {
        all_cores(cpus, plan.all_rep, int_rate)
    }));
    let cpu_all_float_mflops = Figure::of(&repeat(plan.reps, || {
        all_cores(cpus, plan.all_rep, float_rate)
    }));
    let (mem_triad_mbs, mem_bytes) = triad(&plan);
    let disk = match disk_file {
        Some(f) => Some(f.measure(&plan)?),
        None => None,
    };
    let net = match &opts.collector {
        Some(c) => Some(network(c, &plan).map_err(|source| BenchError::Collector {
            collector: c.base().to_string(),
            source,
        })?),
        None => None,
    };
    Ok(NodeBench {
        version: BENCH_VERSION,
        node: opts.node.clone(),
        taken_at,
        wall_s: started.elapsed().as_secs_f64(),
        quick: opts.quick,
        cpus: cpus as u32,
        cpu_int_mops,
        cpu_float_mflops,
        cpu_all_int_mops,
        cpu_all_float_mflops,
        mem_triad_mbs,
        mem_bytes,
        disk,
        net,
    })
}

/// Posts a result to the collector ([`INGEST_PATH`]).
pub fn send(client: &Client, bench: &NodeBench) -> Result<(), ShipError> {
    let body = serde_json::to_vec(bench).expect("bench serializes");
    client.post(INGEST_PATH, "application/json", &body, false, &[])?;
    Ok(())
}

fn repeat(n: usize, mut f: impl FnMut() -> f64) -> Vec<f64> {
    (0..n).map(|_| f()).collect()
}

/// Online CPUs (at least 1).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n >= 1 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

const CHUNK: u64 = 1 << 14;
/// Integer operations in one iteration of [`int_kernel`].
const INT_OPS: f64 = 6.0;
/// Floating-point operations in one iteration of [`float_kernel`].
const FLOAT_OPS: f64 = 16.0;

/// A dependent chain of multiplies, adds, shifts, xors and rotates (an LCG
/// stirred into a second word): six integer operations an iteration.
fn int_kernel(seed: u64, n: u64) -> u64 {
    let (mut a, mut b) = (seed, seed ^ 0x9e37_79b9_7f4a_7c15);
    for _ in 0..n {
        a = a
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        b ^= a >> 29;
        b = b.rotate_left(7).wrapping_add(a);
    }
    a ^ b
}

/// Eight independent multiply-add chains converging to a fixed point (so
/// values stay finite): sixteen floating-point operations an iteration.
fn float_kernel(seed: f64, n: u64) -> f64 {
    let mut x = [seed; 8];
    for (i, v) in x.iter_mut().enumerate() {
        *v += i as f64;
    }
    let (m, c) = (0.999_999_f64, 1e-3_f64);
    for _ in 0..n {
        for v in x.iter_mut() {
            *v = *v * m + c;
        }
    }
    x.iter().sum()
}

/// Millions of integer operations a second on this thread for `rep`.
fn int_rate(rep: Duration) -> f64 {
    let start = Instant::now();
    let mut iters = 0u64;
    let mut acc = 1u64;
    while start.elapsed() < rep {
        acc = black_box(int_kernel(black_box(acc), black_box(CHUNK)));
        iters += CHUNK;
    }
    black_box(acc);
    iters as f64 * INT_OPS / start.elapsed().as_secs_f64() / 1e6
}

/// Millions of floating-point operations a second on this thread for `rep`.
fn float_rate(rep: Duration) -> f64 {
    let start = Instant::now();
    let mut iters = 0u64;
    let mut acc = 1.0f64;
    while start.elapsed() < rep {
        acc = black_box(float_kernel(black_box(acc % 7.0), black_box(CHUNK)));
        iters += CHUNK;
    }
    black_box(acc);
    iters as f64 * FLOAT_OPS / start.elapsed().as_secs_f64() / 1e6
}

/// `rate` on one thread per CPU at once, summed.
fn all_cores(cpus: usize, rep: Duration, rate: fn(Duration) -> f64) -> f64 {
    let barrier = std::sync::Barrier::new(cpus);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    rate(rep)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

/// The largest CPU cache of cpu0, bytes (32 MiB when sysfs does not say).
pub fn last_level_cache() -> usize {
    let mut best = 0usize;
    for i in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(s) = std::fs::read_to_string(p) else {
            continue;
        };
        let s = s.trim();
        let (num, mult) = match s.as_bytes().last() {
            Some(b'K') => (&s[..s.len() - 1], 1 << 10),
            Some(b'M') => (&s[..s.len() - 1], 1 << 20),
            _ => (s, 1),
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(n * mult);
        }
    }
    if best == 0 { 32 << 20 } else { best }
}

/// The triad `a[i] = b[i] + s * c[i]` over arrays each several times the
/// last-level cache: MB/s counting 24 bytes an element, and the arrays'
/// total size.
fn triad(plan: &Plan) -> (Figure, u64) {
    let each = (last_level_cache() * plan.mem_llc_times).clamp(16 << 20, 512 << 20);
    let n = each / 8;
    let mut a = vec![0.0f64; n];
    let b = vec![1.0f64; n];
    let c = vec![2.0f64; n];
    let s = black_box(3.0f64);
    let pass = |a: &mut [f64]| {
        for ((x, y), z) in a.iter_mut().zip(&b).zip(&c) {
            *x = y + s * z;
        }
        black_box(&mut *a);
    };
    pass(&mut a); // fault every page in before timing
    let samples = repeat(plan.reps, || {
        let start = Instant::now();
        let mut passes = 0u64;
        while passes == 0 || start.elapsed() < plan.mem_rep {
            pass(&mut a);
            passes += 1;
        }
        (24 * n) as f64 * passes as f64 / start.elapsed().as_secs_f64() / 1e6
    });
    black_box(&a);
    (Figure::of(&samples), (3 * each) as u64)
}

/// The disk test file, removed when dropped.
struct TestFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TestFile {
    fn create(dir: &Path) -> Result<TestFile, BenchError> {
        let err = |what, source| BenchError::Disk {
            path: dir.to_path_buf(),
            what,
            source,
        };
        let meta = std::fs::metadata(dir).map_err(|e| err("cannot read the directory", e))?;
        if !meta.is_dir() {
            return Err(err(
                "not a directory",
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        let path = dir.join(format!(".plumb-bench-{}.tmp", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err("cannot create a test file there", e))?;
        Ok(TestFile {
            dir: dir.to_path_buf(),
            path,
        })
    }

    fn measure(&self, plan: &Plan) -> Result<DiskBench, BenchError> {
        let err = |what, source| BenchError::Disk {
            path: self.dir.clone(),
            what,
            source,
        };
        let mut buf = Aligned::new(1 << 20);
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        rng.fill(buf.get());
        let (mut writes, mut reads, mut rands) = (vec![], vec![], vec![]);
        let mut dropped = true;
        let mut notes: Vec<String> = Vec::new();
        // Reads go around the page cache with O_DIRECT where the file
        // system takes it (steadier than buffered reads: nothing is read
        // ahead, a pass can be repeated); where it does not, buffered
        // reads after dropping the file's cache, said so.
        let direct = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)
        {
            Ok(_) => true,
            Err(e) => {
                notes.push(format!(
                    "the file system refused O_DIRECT ({e}): reads were buffered, after dropping the file's page cache"
                ));
                false
            }
        };
        let pages = (plan.disk_file / 4096).max(1) as u64;
        for _ in 0..plan.disk_reps {
            // Sequential write, fsync included.
            let start = Instant::now();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.path)
                .map_err(|e| err("cannot open the test file", e))?;
            let mut left = plan.disk_file;
            while left > 0 {
                let n = left.min(buf.len());
                buf.get()[0] = buf.get()[0].wrapping_add(1);
                f.write_all(&buf.get()[..n])
                    .map_err(|e| err("cannot write the test file", e))?;
                left -= n;
            }
            f.sync_all()
                .map_err(|e| err("cannot fsync the test file", e))?;
            writes.push(plan.disk_file as f64 / start.elapsed().as_secs_f64() / 1e6);
            drop(f);

            let mut open = std::fs::OpenOptions::new();
            open.read(true);
            if direct {
                open.custom_flags(libc::O_DIRECT);
            }
            let f = open
                .open(&self.path)
                .map_err(|e| err("cannot open the test file", e))?;
            // Dropped with O_DIRECT too: the written pages leave, and a file
            // that cannot leave memory (a tmpfs, which may take O_DIRECT)
            // is named.
            let mut cache = |f: &std::fs::File| {
                if let Err(why) = drop_cache(f, plan.disk_file) {
                    dropped = false;
                    if !notes.contains(&why) {
                        notes.push(why);
                    }
                }
            };

            // Sequential reads of 1 MiB, around the file for the window
            // (once through at least).
            cache(&f);
            advise(&f, libc::POSIX_FADV_SEQUENTIAL);
            let start = Instant::now();
            let (mut total, mut off) = (0usize, 0u64);
            while total < plan.disk_file || start.elapsed() < plan.seq_rep {
                let want = buf.len().min(plan.disk_file - off as usize);
                let n = f
                    .read_at(&mut buf.get()[..want], off)
                    .map_err(|e| err("cannot read the test file", e))?;
                if n == 0 {
                    break;
                }
                total += n;
                off += n as u64;
                if off as usize >= plan.disk_file {
                    if !direct {
                        // Another pass would come from memory.
                        break;
                    }
                    off = 0;
                }
            }
            black_box(buf.get());
            reads.push(total as f64 / start.elapsed().as_secs_f64() / 1e6);

            // 4 KiB reads at random aligned offsets.
            cache(&f);
            advise(&f, libc::POSIX_FADV_RANDOM);
            let start = Instant::now();
            let mut n = 0u64;
            while n == 0 || start.elapsed() < plan.rand_rep {
                let off = rng.u64(0..pages) * 4096;
                f.read_exact_at(&mut buf.get()[..4096], off)
                    .map_err(|e| err("cannot read the test file", e))?;
                n += 1;
            }
            black_box(buf.get());
            rands.push(n as f64 / start.elapsed().as_secs_f64());
        }
        Ok(DiskBench {
            path: self.dir.display().to_string(),
            seq_write_mbs: Figure::of(&writes),
            seq_read_mbs: Figure::of(&reads),
            rand_read_iops: Figure::of(&rands),
            cache_dropped: dropped,
            direct_io: direct,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        })
    }
}

/// A buffer aligned to 4 KiB, as O_DIRECT wants (a slice of a slightly
/// larger vector, so no unsafe allocation).
struct Aligned {
    raw: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let raw = vec![0u8; len + 4096];
        let at = raw.as_ptr().align_offset(4096);
        Aligned { raw, at, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + self.len]
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn advise(f: &std::fs::File, advice: libc::c_int) -> libc::c_int {
    // SAFETY: a valid open descriptor; posix_fadvise only takes a hint.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice) }
}

/// Drops the file's pages from the page cache and checks with mincore(2)
/// that they went; the reason when they did not (a tmpfs keeps its pages,
/// they are its storage).
fn drop_cache(f: &std::fs::File, len: usize) -> Result<(), String> {
    let rc = advise(f, libc::POSIX_FADV_DONTNEED);
    if rc != 0 {
        return Err(format!(
            "posix_fadvise(DONTNEED) failed ({}): reads may have come from the page cache",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    match resident_fraction(f, len) {
        Some(r) if r > 0.1 => Err(format!(
            "{:.0}% of the file stayed in the page cache after posix_fadvise(DONTNEED) (a tmpfs or similar?): reads came from memory",
            r * 100.0
        )),
        _ => Ok(()),
    }
}

/// The fraction of the file's pages in the page cache, by mincore(2).
fn resident_fraction(f: &std::fs::File, len: usize) -> Option<f64> {
    if len == 0 {
        return None;
    }
    // SAFETY: a read-only shared mapping of an open file of at least `len`
    // bytes, only passed to mincore and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        let page = 4096usize.max(libc::sysconf(libc::_SC_PAGESIZE) as usize);
        let mut vec = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(p, len, vec.as_mut_ptr());
        libc::munmap(p, len);
        if rc != 0 {
            return None;
        }
        let resident = vec.iter().filter(|b| **b & 1 == 1).count();
        Some(resident as f64 / vec.len() as f64)
    }
}

/// Round trips (each repetition the median of several pings) and upload
/// throughput to the collector.
fn network(c: &Client, plan: &Plan) -> Result<NetBench, ShipError> {
    let mut rtts = Vec::new();
    for _ in 0..plan.reps {
        let mut one = Vec::new();
        for _ in 0..plan.pings {
            let start = Instant::now();
            c.get(PING_PATH)?;
            one.push(start.elapsed().as_secs_f64() * 1e3);
        }
        rtts.push(Figure::of(&one).value);
    }
    let mut body = vec![0u8; plan.upload];
    fastrand::Rng::with_seed(7).fill(&mut body);
    let mut ups = Vec::new();
    for _ in 0..plan.reps {
        let start = Instant::now();
        c.post(SINK_PATH, "application/octet-stream", &body, false, &[])?;
        ups.push(plan.upload as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    Ok(NetBench {
        collector: c.base().to_string(),
        rtt_ms: Figure::of(&rtts),
        upload_mbs: Figure::of(&ups),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_run_gives_positive_finite_figures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let b = run(&BenchOptions {
            node: "n1".into(),
            path: Some(dir.path().to_path_buf()),
            collector: None,
            quick: true,
        })
        .unwrap();
        for f in b.figures() {
            assert!(f.figure.is_valid(), "{}: {:?}", f.name, f.figure);
        }
        assert_eq!(b.figures().len(), 8);
        assert!(b.mem_bytes >= 3 * (16 << 20));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "test file removed"
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let e = run(&BenchOptions {
            node: "n1".into(),
            path: Some("/nonexistent/plumb-bench".into()),
            collector: None,
            quick: true,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/plumb-bench"), "{e}");
    }
}
