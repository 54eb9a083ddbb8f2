//! Moving bytes: the accept loop, and per connection two directions, each
//! either zero-copy (`splice(2)` through a pipe, while no toxic applies) or a
//! userspace pipeline that runs the toxic chain.
//!
//! A direction starts on the zero-copy path if no toxic applies to it and
//! moves to the userspace path when one does. Once no toxic applies any more
//! and the chain holds nothing (no delayed chunk, nothing queued), it goes
//! back to zero-copy.

use crate::model::{Stream, ToxicKind};
use crate::state::{Proxy, ToxicEntry, ToxicSet, dir_index};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

/// Largest read on the userspace path.
const READ_CHUNK: usize = 32 * 1024;
/// Chunks buffered between reader and toxic chain, as in Toxiproxy.
const CHUNK_QUEUE: usize = 1024;
/// Pipe size asked for on the zero-copy path; bigger pipes mean fewer
/// syscalls per byte.
const PIPE_SIZE: usize = 1 << 20;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    // A cap per proxy: a loop through proxies, or a client
                    // opening connections without end, stops here instead
                    // of taking every descriptor the process has.
                    if proxy.metrics.connections_active.load(Ordering::Relaxed) >= proxy.max_connections {
                        let refused = proxy.metrics.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
                        if refused % 1000 == 1 {
                            tracing::warn!(proxy = %proxy.name, max_connections = proxy.max_connections, refused, "connection limit reached: closing new connections");
                        }
                        drop(sock);
                        continue;
                    }
                    // Counted here, not in the task, so a burst of accepts
                    // sees the connections before their tasks run.
                    proxy.metrics.connections_active.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(sock, peer.ip(), Arc::clone(&proxy), Arc::clone(&upstream), stop.clone()));
                }
                Err(error) => {
                    // Usually out of file descriptors; back off instead of
                    // spinning, and log the first of a run of failures only.
                    failures += 1;
                    if failures % 100 == 1 {
                        tracing::warn!(proxy = %proxy.name, %error, failures, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Decrements the active-connection gauge however the connection ends.
pub(crate) struct ActiveGuard<'a>(pub(crate) &'a Proxy);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn set_reset_on_close(s: &TcpStream) {
    // SO_LINGER 0 makes close() send RST and discard unsent data.
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// Whether a toxic applies to a connection from `ip`: its client ranges
/// match and a roll against its toxicity succeeds.
fn roll(t: &ToxicEntry, ip: IpAddr) -> bool {
    if let Some(ranges) = &t.spec.clients
        && !ranges.iter().any(|r| r.contains(ip))
    {
        return false;
    }
    t.spec.toxicity >= 1.0 || (t.spec.toxicity > 0.0 && fastrand::f32() < t.spec.toxicity)
}

async fn serve(
    client: TcpStream,
    ip: IpAddr,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let m = &proxy.metrics;
    m.connections_total.fetch_add(1, Ordering::Relaxed);
    // The accept loop counted it active; the guard counts it out.
    let _active = ActiveGuard(&proxy);
    let toxics = proxy.toxics_rx();

    // Toxics that act on the opening of the connection.
    let open: Vec<Arc<ToxicEntry>> = toxics
        .borrow()
        .iter()
        .filter(|t| t.spec.kind.acts_on_open())
        .cloned()
        .collect();
    for t in open {
        if !roll(&t, ip) {
            continue;
        }
        m.activated(&t.spec.name, t.spec.kind.type_name());
        match t.spec.kind {
            ToxicKind::RefuseOpen => {
                set_reset_on_close(&client);
                return;
            }
            ToxicKind::SlowOpen { delay } => {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(delay as u64)) => {}
                }
            }
            _ => {}
        }
    }

    let server = tokio::select! {
        _ = stop.changed() => return,
        r = TcpStream::connect(&*upstream) => match r {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(proxy = %proxy.name, %upstream, %error, "upstream connect failed");
                return;
            }
        }
    };
    // Latency through the proxy matters more than packet count here.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    for s in [&client, &server] {
        unpace_loopback(s);
    }

    let (kill_tx, _) = watch::channel(false);
    let cx = Cx {
        proxy: &proxy,
        ip,
        kill: &kill_tx,
        client: &client,
        server: &server,
    };
    let up = direction(&client, &server, Stream::Upstream, &cx, toxics.clone());
    let down = direction(&server, &client, Stream::Downstream, &cx, toxics);
    tokio::select! {
        _ = stop.changed() => {}
        _ = async { tokio::join!(up, down) } => {}
    }
    // Both sockets close here: FIN, or RST where a toxic set SO_LINGER 0.
}

/// What one connection's directions share.
struct Cx<'a> {
    proxy: &'a Proxy,
    ip: IpAddr,
    /// Set when the whole connection must end (reset, limit, timeout, error).
    kill: &'a watch::Sender<bool>,
    client: &'a TcpStream,
    server: &'a TcpStream,
}

impl Cx<'_> {
    fn kill(&self) {
        // `send` drops the value when no receiver exists yet; the other
        // direction may subscribe later and must still see it.
        self.kill.send_replace(true);
    }
    fn reset(&self) {
        set_reset_on_close(self.client);
        set_reset_on_close(self.server);
        self.kill();
    }
}

/// Per connection and direction: which toxics applied, and their state.
struct Rolled {
    version: u64,
    active: bool,
    since: Instant,
    /// Bandwidth: when the next byte may leave.
    next_free: Instant,
    /// limit_data: bytes passed so far.
    passed: u64,
    /// http_drip: inside a response body.
    http_body: bool,
    /// http_drip: the last bytes of headers seen, to find their end across
    /// chunks.
    http_tail: Vec<u8>,
}

struct Chain {
    stream: Stream,
    ip: IpAddr,
    rolled: HashMap<String, Rolled>,
    active: Vec<Arc<ToxicEntry>>,
}

impl Chain {
    fn new(stream: Stream, ip: IpAddr) -> Self {
        Chain {
            stream,
            ip,
            rolled: HashMap::new(),
            active: Vec::new(),
        }
    }

    /// Re-reads the toxic set. Toxics seen before keep their roll and state
    /// unless they were updated. Returns true if an active timeout toxic was
    /// removed, which closes the connection as in Toxiproxy.
    fn rebuild(&mut self, set: &ToxicSet, proxy: &Proxy) -> bool {
        let now = Instant::now();
        let mut timeout_removed = false;
        let mut keep = HashMap::with_capacity(set.len());
        let mut active = Vec::new();
        for t in set.iter() {
            if t.spec.stream != self.stream || t.spec.kind.acts_on_open() {
                continue;
            }
            let r = match self.rolled.remove(&t.spec.name) {
                Some(r) if r.version == t.version => r,
                _ => {
                    let on = roll(t, self.ip);
                    if on {
                        proxy
                            .metrics
                            .activated(&t.spec.name, t.spec.kind.type_name());
                    }
                    Rolled {
                        version: t.version,
                        active: on,
                        since: now,
                        next_free: now,
                        passed: 0,
                        http_body: false,
                        http_tail: Vec::new(),
                    }
                }
            };
            if r.active {
                active.push(Arc::clone(t));
            }
            keep.insert(t.spec.name.clone(), r);
        }
        for (name, r) in self.rolled.drain() {
            let was_timeout = self
                .active
                .iter()
                .any(|t| t.spec.name == name && matches!(t.spec.kind, ToxicKind::Timeout { .. }));
            if r.active && was_timeout {
                timeout_removed = true;
            }
        }
        self.rolled = keep;
        self.active = active;
        timeout_removed
    }

    /// The earliest moment an active timeout toxic closes the connection.
    fn deadline(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter_map(|t| match t.spec.kind {
                ToxicKind::Timeout { timeout } if timeout > 0 => self
                    .rolled
                    .get(&t.spec.name)
                    .map(|r| r.since + Duration::from_millis(timeout as u64)),
                _ => None,
            })
            .min()
    }
}

enum End {
    /// The source finished and the end was passed on.
    Eof,
    /// The connection is over.
    Killed,
}

async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    mut toxics: watch::Receiver<ToxicSet>,
) {
    let mut chain = Chain::new(stream, cx.ip);
    let set = toxics.borrow_and_update().clone();
    if chain.rebuild(&set, cx.proxy) {
        cx.kill();
        return;
    }
    let mut kill = cx.kill.subscribe();
    // A receiver made now counts the current value as seen: if the other
    // direction already ended the connection (say, a reset on the first
    // bytes, read before this direction first ran), `changed()` would never
    // fire and this direction would hold both sockets open forever.
    if *kill.borrow() {
        return;
    }
    // Alternate between the paths: zero-copy while no toxic applies, the
    // userspace chain while one does, and back once the chain is empty
    // and nothing is queued in it.
    loop {
        let r = if chain.active.is_empty() {
            splice_path(src, dst, stream, cx, &mut toxics, &mut kill, &mut chain).await
        } else {
            userspace_path(src, dst, stream, cx, &mut toxics, &mut kill, &mut chain).await
        };
        match r {
            Ok(Some(End::Eof)) => return,
            Ok(Some(End::Killed)) => {
                cx.kill();
                return;
            }
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!(proxy = %cx.proxy.name, ?stream, %error, "connection ended");
                cx.kill();
                return;
            }
        }
    }
}

fn half_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
}

/// A pipe for splice(2), closed on drop.
struct Pipe {
    r: RawFd,
    w: RawFd,
    /// Its capacity in bytes.
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // A larger pipe lets one splice move more bytes; failure (limits)
        // only costs speed, so the default size is kept then.
        // SAFETY: fcntl on a descriptor we just created.
        let size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
        let size = if size > 0 {
            size as usize
        } else {
            // SAFETY: as above.
            let now = unsafe { libc::fcntl(fds[1], libc::F_GETPIPE_SZ) };
            if now > 0 { now as usize } else { 65536 }
        };
        Ok(Pipe {
            r: fds[0],
            w: fds[1],
            size,
        })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are ours and closed exactly once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors that outlive the call; null
    // offsets because sockets and pipes have none.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Whether `src` has at least one byte to read (or its end), without
/// taking it. `Ok(None)`: nothing yet.
fn peek(src: &TcpStream) -> io::Result<Option<usize>> {
    let mut probe = [0u8; 1];
    let r = src.try_io(Interest::READABLE, || {
        // SAFETY: recv into a one-byte buffer we own, non-blocking.
        let n = unsafe {
            libc::recv(
                src.as_raw_fd(),
                probe.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    });
    match r {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Switches a loopback connection from BBR to CUBIC congestion control.
///
/// BBR paces every send with a timer, which models a bottleneck link a
/// loopback hop does not have; on a proxied stream both hops pay for it, in
/// CPU on cores the two ends need. Measured here with `cargo xtask bench
/// proxy` (2 cores, system default `bbr`): plumb/direct 73.1-88.1% per round
/// with CUBIC against 38.6-95.1% with BBR. Connections that leave the machine
/// keep the system's choice, and so does any loopback connection not on BBR.
fn unpace_loopback(s: &TcpStream) {
    let loopback = |a: io::Result<std::net::SocketAddr>| a.is_ok_and(|a| a.ip().is_loopback());
    if !loopback(s.peer_addr()) || !loopback(s.local_addr()) {
        return;
    }
    let fd = s.as_raw_fd();
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a buffer we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || !name.starts_with(b"bbr\0") {
        return;
    }
    let cubic = b"cubic";
    // SAFETY: setsockopt reads `cubic.len()` bytes from a string we own;
    // failure (no cubic in this kernel) leaves BBR, which only costs speed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cubic.as_ptr().cast(),
            cubic.len() as libc::socklen_t,
        );
    }
}

/// Bytes moved on the zero-copy path between cooperative yields, so one
/// busy stream cannot starve the other connections on its worker thread.
const SPLICE_BURST: usize = 16 << 20;

/// Zero-copy forwarding. Returns `Ok(None)` when a toxic starts to apply,
/// with the pipe drained, so the caller can continue in userspace.
///
/// The pipe is kept as full as the source allows: each round splices in as
/// much as the pipe has room for and out as much as it holds, and waits on
/// readiness only when neither side can move. Toxic changes and kills are
/// noticed between rounds without awaiting.
async fn splice_path(
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    toxics: &mut watch::Receiver<ToxicSet>,
    kill: &mut watch::Receiver<bool>,
    chain: &mut Chain,
) -> io::Result<Option<End>> {
    let d = dir_index(stream);
    let m = &cx.proxy.metrics;
    // Created on first data so idle connections hold no pipe.
    let mut pipe: Option<Pipe> = None;
    // Bytes in the pipe, read from src and not yet written to dst.
    let mut held = 0usize;
    let mut eof = false;
    // Set once a toxic applies: read no more, drain the pipe, then leave.
    let mut leaving = false;
    let mut burst = 0usize;
    loop {
        if !matches!(kill.has_changed(), Ok(false)) {
            return Ok(Some(End::Killed));
        }
        match toxics.has_changed() {
            Ok(false) => {}
            Ok(true) => {
                let set = toxics.borrow_and_update().clone();
                if chain.rebuild(&set, cx.proxy) {
                    return Ok(Some(End::Killed));
                }
                leaving = !chain.active.is_empty();
            }
            Err(_) => return Ok(Some(End::Killed)),
        }
        if leaving && held == 0 {
            return Ok(None);
        }
        if eof && held == 0 {
            half_close(dst);
            return Ok(Some(End::Eof));
        }
        let mut moved = 0usize;
        let want_read = !eof && !leaving;
        if want_read && pipe.is_none() {
            // Readiness can be reported on a socket with nothing to read
            // yet; peek first so idle connections never get a pipe.
            match peek(src)? {
                Some(0) => eof = true,
                Some(_) => {
                    pipe = Some(Pipe::new()?);
                }
                None => {}
            }
        }
        if let Some(p) = &pipe {
            if want_read && held < p.size {
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), p.w, p.size - held)
                }) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        held += n;
                        moved += n;
                        m.received[d].fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if held > 0 {
                match dst.try_io(Interest::WRITABLE, || splice(p.r, dst.as_raw_fd(), held)) {
                    Ok(k) => {
                        held -= k;
                        moved += k;
                        m.sent[d].fetch_add(k as u64, Ordering::Relaxed);
                        m.zero_copy[d].fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if moved > 0 || (eof && held == 0) {
            burst += moved;
            if burst >= SPLICE_BURST {
                burst = 0;
                tokio::task::yield_now().await;
            }
            continue;
        }
        burst = 0;
        let room = pipe.as_ref().is_none_or(|p| held < p.size);
        let want_read = want_read && room;
        tokio::select! {
            biased;
            _ = kill.changed() => return Ok(Some(End::Killed)),
            r = toxics.changed() => {
                if r.is_err() {
                    return Ok(Some(End::Killed));
                }
                let set = toxics.borrow_and_update().clone();
                if chain.rebuild(&set, cx.proxy) {
                    return Ok(Some(End::Killed));
                }
                leaving = !chain.active.is_empty();
            }
            r = src.readable(), if want_read => r?,
            r = dst.writable(), if held > 0 => r?,
        }
    }
}

enum Chunk {
    Data(Vec<u8>, Instant),
    Eof,
    Failed(io::Error),
}

enum Item {
    Data(Vec<u8>),
    Eof,
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST).
    Reset,
    /// Answer the client with these bytes, then close (HTTP toxics).
    Respond(Vec<u8>),
}

/// A piece of work moving down the chain: it has passed `idx` toxics and may
/// not move on before `wait`.
struct Work {
    idx: usize,
    /// The chunk's timestamp, as in Toxiproxy: its read time plus the
    /// latency already applied, so each latency toxic in the chain adds its
    /// own delay to what the previous ones left.
    at: Instant,
    /// When the chunk was read; the chain starts over from here when it
    /// changes, so a latency toxic that stays is not applied twice.
    read: Instant,
    wait: Option<Instant>,
    item: Item,
}

/// Reads `src` into `tx` until the stream ends, or until `stop` is set:
/// then it reads nothing more and waits (keeping `tx` open) for the caller
/// to drop it, so the queue can drain and the direction reach a safe point.
async fn reader(
    src: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    tx: mpsc::Sender<Chunk>,
    stop: &AtomicBool,
) {
    let d = dir_index(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if stop.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        // A slot in the queue is taken before reading, so the bytes read
        // are queued without awaiting: dropping this future at any await
        // (to go back to zero-copy) never loses data.
        let Ok(slot) = tx.reserve().await else { return };
        if let Err(e) = src.readable().await {
            slot.send(Chunk::Failed(e));
            return;
        }
        match src.try_read(&mut buf) {
            Ok(0) => {
                slot.send(Chunk::Eof);
                return;
            }
            Ok(n) => {
                cx.proxy.metrics.received[d].fetch_add(n as u64, Ordering::Relaxed);
                slot.send(Chunk::Data(buf[..n].to_vec(), Instant::now()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                slot.send(Chunk::Failed(e));
                return;
            }
        }
    }
}

async fn write_all(
    dst: &TcpStream,
    mut buf: &[u8],
    kill: &mut watch::Receiver<bool>,
) -> io::Result<bool> {
    while !buf.is_empty() {
        tokio::select! {
            biased;
            _ = kill.changed() => return Ok(false),
            r = dst.writable() => r?,
        }
        match dst.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What interrupted a wait.
enum Woke {
    Ready,
    Changed,
    Killed,
    TimedOut,
}

async fn wait(
    until: Option<Instant>,
    deadline: Option<Instant>,
    toxics: &mut watch::Receiver<ToxicSet>,
    kill: &mut watch::Receiver<bool>,
) -> Woke {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    tokio::select! {
        biased;
        _ = kill.changed() => Woke::Killed,
        r = toxics.changed() => if r.is_err() { Woke::Killed } else { Woke::Changed },
        _ = sleep_until(deadline.unwrap_or(far)) => Woke::TimedOut,
        _ = sleep_until(until.unwrap_or(far)) => Woke::Ready,
    }
}

#[allow(clippy::too_many_arguments)]
async fn userspace_path(
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    toxics: &mut watch::Receiver<ToxicSet>,
    kill: &mut watch::Receiver<bool>,
    chain: &mut Chain,
) -> io::Result<Option<End>> {
    let (tx, mut rx) = mpsc::channel(CHUNK_QUEUE);
    // Set once no toxic applies: the reader stops, so what it already queued
    // drains and the direction goes back to zero-copy even while the peer
    // keeps sending faster than the chain empties.
    let stop_reading = AtomicBool::new(false);
    let read = async {
        reader(src, stream, cx, tx, &stop_reading).await;
        // The chain decides when the direction ends.
        std::future::pending::<()>().await
    };
    let process = async {
        let d = dir_index(stream);
        let mut stack: Vec<Work> = Vec::new();
        loop {
            let deadline = chain.deadline();
            if stack.is_empty() && chain.active.is_empty() {
                stop_reading.store(true, Ordering::Relaxed);
            }
            let mut w = match stack.pop() {
                Some(w) => w,
                None if stop_reading.load(Ordering::Relaxed) && rx.is_empty() => {
                    // A safe point: the reader has stopped and nothing it
                    // read is still on its way, so the caller picks the path
                    // again (zero-copy, unless a toxic came back meanwhile).
                    // The reader holds no bytes between its awaits.
                    return Ok(None);
                }
                None => {
                    let far = Instant::now() + Duration::from_secs(86_400 * 365);
                    tokio::select! {
                        biased;
                        _ = kill.changed() => return Ok(Some(End::Killed)),
                        r = toxics.changed() => {
                            if r.is_err() {
                                return Ok(Some(End::Killed));
                            }
                            let set = toxics.borrow_and_update().clone();
                            if chain.rebuild(&set, cx.proxy) {
                                return Ok(Some(End::Killed));
                            }
                            continue;
                        }
                        _ = sleep_until(deadline.unwrap_or(far)) => return Ok(Some(End::Killed)),
                        c = rx.recv() => match c {
                            Some(Chunk::Data(data, at)) => Work { idx: 0, at, read: at, wait: None, item: Item::Data(data) },
                            Some(Chunk::Eof) => { let now = Instant::now(); Work { idx: 0, at: now, read: now, wait: None, item: Item::Eof } }
                            Some(Chunk::Failed(e)) => return Err(e),
                            None => return Ok(Some(End::Killed)),
                        },
                    }
                }
            };
            if let Some(until) = w.wait.take() {
                match wait(Some(until), deadline, toxics, kill).await {
                    Woke::Ready => {}
                    Woke::Killed | Woke::TimedOut => return Ok(Some(End::Killed)),
                    Woke::Changed => {
                        let set = toxics.borrow_and_update().clone();
                        if chain.rebuild(&set, cx.proxy) {
                            return Ok(Some(End::Killed));
                        }
                        // Everything still queued runs through the new chain
                        // from its start; latency is measured again from read
                        // time, so a latency toxic that stays is not applied
                        // twice.
                        stack.push(w);
                        for s in stack.iter_mut() {
                            s.idx = 0;
                            s.at = s.read;
                            s.wait = None;
                        }
                        continue;
                    }
                }
            }
            if w.idx >= chain.active.len() {
                match w.item {
                    Item::Data(data) => {
                        if !write_all(dst, &data, kill).await? {
                            return Ok(Some(End::Killed));
                        }
                        cx.proxy.metrics.sent[d].fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Item::Eof => {
                        half_close(dst);
                        return Ok(Some(End::Eof));
                    }
                    Item::Close => return Ok(Some(End::Killed)),
                    Item::Reset => {
                        cx.reset();
                        return Ok(Some(End::Killed));
                    }
                    Item::Respond(bytes) => {
                        let _ = write_all(cx.client, &bytes, kill).await;
                        return Ok(Some(End::Killed));
                    }
                }
                continue;
            }
            let t = Arc::clone(&chain.active[w.idx]);
            apply(&t, w, chain, &mut stack);
        }
    };
    tokio::select! {
        r = process => r,
        _ = read => unreachable!("the reader never finishes on its own"),
    }
}

/// Runs one toxic on one piece of work, pushing what comes out (in reverse,
/// since the stack pops from the end).
fn apply(t: &ToxicEntry, mut w: Work, chain: &mut Chain, stack: &mut Vec<Work>) {
    let now = Instant::now();
    let next = w.idx + 1;
    let end = chain.active.len();
    let is_data = matches!(w.item, Item::Data(_));
    let state = chain.rolled.get_mut(&t.spec.name);
    match (&t.spec.kind, w.item) {
        (ToxicKind::Latency { latency, jitter }, Item::Data(data)) => {
            let j = if *jitter > 0 {
                fastrand::i64(-*jitter..*jitter)
            } else {
                0
            };
            let delay = (*latency + j).max(0) as u64;
            // The delay counts from the chunk's timestamp, which the latency
            // toxics before this one moved on: two 100 ms toxics make 200 ms,
            // while a stream of chunks still moves at full rate.
            let until = w.at + Duration::from_millis(delay);
            stack.push(Work {
                idx: next,
                at: until,
                read: w.read,
                wait: Some(until),
                item: Item::Data(data),
            });
        }
        (ToxicKind::Bandwidth { rate }, Item::Data(data)) => {
            let rate = (*rate).max(1) as u64;
            // One piece per 100 ms of budget keeps the pace smooth.
            let piece = (rate * 100).max(1) as usize;
            let mut free = state.as_ref().map(|s| s.next_free).unwrap_or(now).max(now);
            let mut out = Vec::new();
            for p in data.chunks(piece) {
                free += Duration::from_nanos(p.len() as u64 * 1_000_000 / rate);
                out.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: Some(free),
                    item: Item::Data(p.to_vec()),
                });
            }
            if let Some(s) = state {
                s.next_free = free;
            }
            stack.extend(out.into_iter().rev());
        }
        (ToxicKind::SlowClose { delay }, item @ (Item::Eof | Item::Close)) => {
            // The end of the stream, whether the source's or one a toxic
            // before this one made (limit_data), is what slow_close delays.
            w.idx = next;
            w.wait = Some(now + Duration::from_millis(*delay as u64));
            w.item = item;
            stack.push(w);
        }
        (ToxicKind::Timeout { .. }, Item::Data(_)) => {
            // Data vanishes; the deadline closes the connection.
        }
        (ToxicKind::ResetPeer { timeout }, item) if is_data || matches!(item, Item::Eof) => {
            stack.push(Work {
                idx: end,
                at: w.at,
                read: w.read,
                wait: Some(now + Duration::from_millis(*timeout as u64)),
                item: Item::Reset,
            });
        }
        (
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            },
            Item::Data(data),
        ) if *average_size > 0 => {
            let mut out = Vec::new();
            let mut rest = &data[..];
            let mut at = now;
            while !rest.is_empty() {
                let var = (*size_variation).min(*average_size - 1).max(0);
                let size = if var > 0 {
                    *average_size + fastrand::i64(-var..=var)
                } else {
                    *average_size
                };
                let size = (size.max(1) as usize).min(rest.len());
                out.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: Some(at),
                    item: Item::Data(rest[..size].to_vec()),
                });
                rest = &rest[size..];
                at += Duration::from_micros(*delay as u64);
            }
            stack.extend(out.into_iter().rev());
        }
        (ToxicKind::LimitData { bytes }, Item::Data(mut data)) => {
            let limit = *bytes as u64;
            let passed = state.as_ref().map(|s| s.passed).unwrap_or(0);
            let room = limit.saturating_sub(passed) as usize;
            let reached = data.len() >= room;
            data.truncate(room);
            if let Some(s) = state {
                s.passed += data.len() as u64;
            }
            if reached {
                // The close goes on down the chain behind the data, so the
                // toxics after this one (latency, slow_close) act on it as on
                // the end of any stream.
                stack.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Close,
                });
            }
            if !data.is_empty() {
                stack.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Data(data),
                });
            }
        }
        (ToxicKind::Stall { interval, duration }, Item::Data(data))
            if *interval > 0 && *duration > 0 =>
        {
            let origin = state.as_ref().map(|s| s.since).unwrap_or(now);
            let interval = Duration::from_millis(*interval as u64);
            let duration = Duration::from_millis(*duration as u64);
            let phase =
                Duration::from_nanos(((now - origin).as_nanos() % interval.as_nanos()) as u64);
            let wait = (phase < duration).then(|| now + (duration - phase));
            stack.push(Work {
                idx: next,
                at: w.at,
                read: w.read,
                wait,
                item: Item::Data(data),
            });
        }
        (ToxicKind::DropConnection { per_mille }, Item::Data(data)) => {
            if fastrand::i64(0..1000) < *per_mille {
                stack.push(Work {
                    idx: end,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Reset,
                });
            } else {
                stack.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Data(data),
                });
            }
        }
        (ToxicKind::HttpLatency { latency }, Item::Data(data)) => {
            let wait = starts_message(chain.stream, &data)
                .then(|| now + Duration::from_millis(*latency as u64));
            stack.push(Work {
                idx: next,
                at: w.at,
                read: w.read,
                wait,
                item: Item::Data(data),
            });
        }
        (ToxicKind::HttpError { status, per_mille }, Item::Data(data)) => {
            if starts_message(chain.stream, &data) && fastrand::i64(0..1000) < *per_mille {
                stack.push(Work {
                    idx: end,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Respond(http_error_response(*status as u16)),
                });
            } else {
                stack.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Data(data),
                });
            }
        }
        (ToxicKind::HttpDrip { bytes, delay }, Item::Data(data)) => {
            let Some(s) = state else {
                stack.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Data(data),
                });
                return;
            };
            if s.http_body && starts_message(chain.stream, &data) {
                s.http_body = false;
                s.http_tail.clear();
            }
            let body_from = if s.http_body {
                0
            } else {
                // Look for the end of the headers, which may straddle chunks.
                let mut seen = std::mem::take(&mut s.http_tail);
                let carried = seen.len();
                seen.extend_from_slice(&data[..data.len().min(65536)]);
                match seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(p) => {
                        s.http_body = true;
                        (p + 4).saturating_sub(carried)
                    }
                    None => {
                        s.http_tail = seen[seen.len().saturating_sub(3)..].to_vec();
                        data.len()
                    }
                }
            };
            let mut out = Vec::new();
            if body_from > 0 {
                out.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: None,
                    item: Item::Data(data[..body_from].to_vec()),
                });
            }
            let piece = (*bytes).max(1) as usize;
            let gap = Duration::from_millis(*delay as u64);
            let mut free = s.next_free.max(now);
            for p in data[body_from..].chunks(piece) {
                free += gap;
                out.push(Work {
                    idx: next,
                    at: w.at,
                    read: w.read,
                    wait: Some(free),
                    item: Item::Data(p.to_vec()),
                });
            }
            s.next_free = free;
            stack.extend(out.into_iter().rev());
        }
        (_, item) => {
            // Toxics that leave this kind of item alone.
            stack.push(Work {
                idx: next,
                at: w.at,
                read: w.read,
                wait: None,
                item,
            });
        }
    }
}

/// Whether a chunk begins an HTTP/1 message: a request upstream, a response
/// downstream. A heuristic: keep-alive messages that start mid-chunk are not
/// seen, which is rare for request/response traffic.
fn starts_message(stream: Stream, d: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"PATCH ",
        b"HEAD ",
        b"OPTIONS ",
        b"CONNECT ",
        b"TRACE ",
    ];
    match stream {
        Stream::Upstream => METHODS.iter().any(|m| d.starts_with(m)),
        Stream::Downstream => d.starts_with(b"HTTP/1."),
    }
}

fn http_error_response(status: u16) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    };
    let body = format!("plumb proxy: injected {status}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn congestion(s: &TcpStream) -> String {
        let mut name = [0u8; 16];
        let mut len = name.len() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into our buffer.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                name.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    }

    #[tokio::test]
    async fn loopback_connections_on_bbr_move_to_cubic_and_others_keep_theirs() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (c, (a, _)) = (c.unwrap(), accepted.unwrap());
        let before = congestion(&c);
        unpace_loopback(&c);
        unpace_loopback(&a);
        let available =
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
                .unwrap_or_default();
        if before == "bbr" && available.split_whitespace().any(|n| n == "cubic") {
            assert_eq!(congestion(&c), "cubic");
            assert_eq!(congestion(&a), "cubic");
        } else {
            // Not on BBR: left as it was.
            assert_eq!(congestion(&c), before);
        }
    }
}
