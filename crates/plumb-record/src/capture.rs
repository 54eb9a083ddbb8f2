//! The capture loop: one thread polls the child's stdout and stderr, copies
//! every read unchanged to the recorder's own stdout or stderr, and then hands
//! it to the sink.
//!
//! The terminal write comes first and no lock is held during it, so the
//! child's output reaches the user as fast as it would directly; the sink is
//! only locked for the hand-over.
//!
//! When both the child's stream and the recorder's own are pipes (output
//! piped on to another program), the bytes are duplicated in the kernel
//! with tee(2) and then read once, instead of being read and written back:
//! one copy of every byte fewer on the busiest path. The child's pipes are
//! also enlarged, so a chatty child is read in fewer, larger reads.

use plumb_model::{Stream, Timestamp};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Sink;

/// Bytes per read: large enough for bulk output, small enough to keep the
/// recorder's memory flat (the writer queues a bounded number of reads).
const READ_SIZE: usize = 256 * 1024;

/// Capacity asked for the child's output pipes (the default is 64 KiB).
/// Refused above /proc/sys/fs/pipe-max-size for unprivileged users, which
/// only costs speed.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// How long output is still read after the child was reaped once the pipes
/// are quiet: a grandchild that inherited them may hold them open forever.
const QUIET_AFTER_EXIT: Duration = Duration::from_millis(200);

/// The most time spent reading after the child was reaped, even while a
/// grandchild keeps writing.
const MAX_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How much of the end of stderr is kept for exception parsing.
pub(crate) const STDERR_TAIL: usize = 256 * 1024;

/// One of the child's output streams.
#[derive(Debug)]
pub(crate) struct Source {
    /// The read end (pipe) or master (pty).
    pub fd: OwnedFd,
    /// Which stream it carries.
    pub stream: Stream,
    /// The recorder's own descriptor that the bytes are copied to.
    pub copy_to: RawFd,
}

/// What the capture loop saw.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub lines: u64,
    /// The last [`STDERR_TAIL`] bytes of stderr (of the combined output
    /// when the streams were combined).
    pub stderr_tail: Vec<u8>,
    /// Problems that did not stop the run.
    pub warnings: Vec<String>,
    /// Whether stdout (0), stderr (1) and combined output (2) ended
    /// without a newline so far.
    partial: [bool; 3],
}

struct Open {
    source: Source,
    /// False once copying to the recorder's descriptor failed.
    copying: bool,
    /// Whether bytes are copied with tee(2): both ends are pipes and the
    /// kernel has not refused it yet.
    tee: bool,
}

fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO }
}

/// Runs until the child has been reaped (a byte arrives on `reaped`) and its
/// streams are closed or quiet; see [`QUIET_AFTER_EXIT`].
pub(crate) fn run(
    sources: Vec<Source>,
    reaped: &OwnedFd,
    sink: &Mutex<&mut dyn Sink>,
    activity: &crate::timeout::Activity,
) -> Captured {
    let mut open: Vec<Open> = sources
        .into_iter()
        .map(|source| {
            let fd = source.fd.as_raw_fd();
            let from_pipe = is_pipe(fd);
            if from_pipe {
                // SAFETY: F_SETPIPE_SZ on a pipe we own; failure is harmless.
                unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
            }
            let tee = from_pipe && is_pipe(source.copy_to);
            if tee {
                // tee(2) duplicates no more than the pipe out has room for:
                // at the default 64 KiB, a flood arrives in reads a quarter
                // of a chunk long, which must then be copied together. The
                // pipe only grows (a reader that made it bigger keeps that).
                // SAFETY: F_GETPIPE_SZ/F_SETPIPE_SZ on a pipe; failure is
                // harmless.
                unsafe {
                    if libc::fcntl(source.copy_to, libc::F_GETPIPE_SZ) < PIPE_SIZE {
                        libc::fcntl(source.copy_to, libc::F_SETPIPE_SZ, PIPE_SIZE);
                    }
                }
            }
            Open {
                source,
                copying: true,
                tee,
            }
        })
        .collect();
    let mut out = Captured::default();
    // A buffer lent by the sink and not used yet (the read found nothing).
    let mut held: Option<Vec<u8>> = None;
    let mut seq: u64 = 0;
    let mut reaped_at: Option<Instant> = None;
    let mut last_data = Instant::now();
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
    loop {
        let timeout_ms = match reaped_at {
            None => -1,
            Some(at) => {
                if open.is_empty() {
                    break;
                }
                let now = Instant::now();
                let deadline = (last_data.max(at) + QUIET_AFTER_EXIT).min(at + MAX_AFTER_EXIT);
                if now >= deadline {
                    break;
                }
                (deadline - now).as_millis().max(1) as libc::c_int
            }
        };
        fds.clear();
        fds.extend(open.iter().map(|o| libc::pollfd {
            fd: o.source.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        if reaped_at.is_none() {
            fds.push(libc::pollfd {
                fd: reaped.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of fds.len() pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            out.warnings
                .push(format!("output capture stopped: poll: {error}"));
            break;
        }
        if reaped_at.is_none() && fds.last().is_some_and(|p| p.revents != 0) {
            reaped_at = Some(Instant::now());
        }
        // Walk backwards so that closing a stream does not shift the indices
        // of the ones still to be looked at.
        for i in (0..open.len()).rev() {
            if fds[i].revents == 0 {
                continue;
            }
            let fd = open[i].source.fd.as_raw_fd();
            let mut copied = false;
            let mut teed = None;
            if open[i].tee && open[i].copying {
                teed = tee(fd, open[i].source.copy_to, READ_SIZE);
                // Refused or failed on the way out: the plain path below
                // writes, sees the same error and handles it as always.
                open[i].tee = teed.is_some();
                copied = teed.is_some_and(|n| n > 0);
            }
            // The read goes straight into a buffer of the sink's, after
            // what it holds.
            let mut buf = held
                .take()
                .unwrap_or_else(|| sink.lock().unwrap_or_else(|e| e.into_inner()).lend());
            let start = buf.len();
            let n = match teed {
                Some(0) => 0,
                // Exactly the duplicated bytes are taken out; nobody else
                // reads `fd`.
                Some(n) => read_exactly(fd, &mut buf, n),
                None => read_append(fd, &mut buf, READ_SIZE),
            };
            let error = (n < 0).then(io::Error::last_os_error);
            if n > 0 {
                last_data = Instant::now();
                activity.touch();
                let keep = deliver(&mut open[i], buf, start, copied, seq, sink, &mut out);
                seq += 1;
                if !keep {
                    open.remove(i);
                }
                continue;
            }
            buf.truncate(start);
            held = Some(buf);
            if let Some(error) = error {
                match error.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                    // A pty master reports EIO once every slave is closed:
                    // that is its end of file.
                    Some(libc::EIO) => {}
                    _ => out.warnings.push(format!(
                        "reading the child's {} failed: {error}",
                        open[i].source.stream.as_str()
                    )),
                }
            }
            open.remove(i);
        }
    }
    for o in &open {
        tracing::debug!(
            stream = o.source.stream.as_str(),
            "stopped reading: a process other than the child still holds the stream open"
        );
    }
    out.lines += out.partial.iter().filter(|&&p| p).count() as u64;
    if out.stderr_tail.len() > STDERR_TAIL {
        let cut = out.stderr_tail.len() - STDERR_TAIL;
        out.stderr_tail.drain(..cut);
    }
    out
}

/// Duplicates up to `max` bytes waiting in pipe `from` into pipe `to` with
/// tee(2), leaving them in `from` to be read. Returns the number
/// duplicated (0 at end of file), or `None` when tee refused or failed.
fn tee(from: RawFd, to: RawFd, max: usize) -> Option<isize> {
    loop {
        // SAFETY: tee only takes descriptors and a length.
        let n = unsafe { libc::tee(from, to, max, 0) };
        if n >= 0 {
            return Some(n);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                // `to` is non-blocking and full (a shared descriptor whose
                // owner set O_NONBLOCK): wait until it drains.
                let mut p = libc::pollfd {
                    fd: to,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, -1) };
                if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// One read(2) of at most `max` bytes appended to `buf`: what read returned.
fn read_append(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> isize {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    // SAFETY: reads into the buffer's spare capacity, which has room for
    // `max` bytes; only the bytes read are then counted as initialized.
    let r = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), max) };
    if r > 0 {
        // SAFETY: read initialized `r` bytes right after the old length.
        unsafe { buf.set_len(buf.len() + r as usize) };
    }
    r
}

/// Appends exactly `n` bytes known to be waiting in `fd` (tee just saw them)
/// to `buf`. Returns `n`, or what was read before a failure, or the error.
fn read_exactly(fd: RawFd, buf: &mut Vec<u8>, n: isize) -> isize {
    let mut got = 0;
    while got < n {
        let r = read_append(fd, buf, (n - got) as usize);
        if r > 0 {
            got += r;
        } else if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            // Cannot happen while the bytes tee saw are still in the pipe.
            return if got > 0 { got } else { r };
        }
    }
    n
}

/// Copies one read to the recorder's descriptor (unless `copied` already),
/// counts it and hands it to the sink. Returns false when the stream should
/// be closed: the reader of the recorder's stdout went away, and closing our
/// end gives the child the SIGPIPE it would have had if run directly.
fn deliver(
    o: &mut Open,
    buf: Vec<u8>,
    start: usize,
    copied: bool,
    seq: u64,
    sink: &Mutex<&mut dyn Sink>,
    out: &mut Captured,
) -> bool {
    let data = &buf[start..];
    let mut keep = true;
    if o.copying
        && !copied
        && let Err(error) = write_all(o.source.copy_to, data)
    {
        o.copying = false;
        if error.raw_os_error() == Some(libc::EPIPE) {
            keep = false;
        } else {
            out.warnings.push(format!(
                "copying the child's {} failed: {error}",
                o.source.stream.as_str()
            ));
        }
    }
    let time = Timestamp::now();
    out.lines += memchr::memchr_iter(b'\n', data).count() as u64;
    // A stream's unfinished last line is counted once, at the end.
    out.partial[usize::from(o.source.stream.as_u8() - 1)] = data.last() != Some(&b'\n');
    match o.source.stream {
        Stream::Stdout => out.stdout_bytes += data.len() as u64,
        // Combined output is counted as stdout's and is also the tail the
        // exception parser reads: a traceback is the last thing written
        // either way.
        Stream::Stderr | Stream::Combined => {
            if o.source.stream == Stream::Combined {
                out.stdout_bytes += data.len() as u64;
            } else {
                out.stderr_bytes += data.len() as u64;
            }
            out.stderr_tail.extend_from_slice(data);
            if out.stderr_tail.len() > 2 * STDERR_TAIL {
                let cut = out.stderr_tail.len() - STDERR_TAIL;
                out.stderr_tail.drain(..cut);
            }
        }
    }
    sink.lock().unwrap_or_else(|e| e.into_inner()).output_owned(
        o.source.stream,
        seq,
        time,
        buf,
        start,
    );
    keep
}

/// Writes everything to a descriptor that may be non-blocking (a terminal
/// shared with a parent that set O_NONBLOCK) or interrupted by signals.
fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: writes from a slice we borrow.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, -1) };
            }
            _ => return Err(error),
        }
    }
    Ok(())
}
