//! The zero-copy path: `splice(2)` through a pipe while no toxic applies.

use super::chain::Chain;
use super::{Cx, End, half_close};
use crate::model::Stream;
use crate::proxy::{ToxicSet, dir_index};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Pipe size asked for on the zero-copy path; bigger pipes mean fewer
/// syscalls per byte.
const PIPE_SIZE: usize = 1 << 20;

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
pub(super) fn unpace_loopback(s: &TcpStream) {
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
pub(super) async fn splice_path(
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
                if chain.refresh(toxics, cx.proxy) {
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
                if r.is_err() || chain.refresh(toxics, cx.proxy) {
                    return Ok(Some(End::Killed));
                }
                leaving = !chain.active.is_empty();
            }
            r = src.readable(), if want_read => r?,
            r = dst.writable(), if held > 0 => r?,
        }
    }
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
