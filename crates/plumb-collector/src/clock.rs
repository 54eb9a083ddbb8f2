//! The collector's side of clock measurement: the UDP probe server that
//! agents and `plumb clock probe` measure their clocks against, and the
//! kernel's word on the collector's own clock.
//!
//! Probes go over UDP, as NTP's do, answered by one dedicated thread on a
//! blocking socket: an HTTP round trip through the async server would add
//! scheduling jitter of its own to every delay, and the error bound is half
//! the delay. The receive time T2 is the kernel's (`SO_TIMESTAMPNS`, read
//! with `recvmsg`), taken when the packet reached the socket, not when the
//! thread woke; T3 is read just before `sendto`.
//!
//! `GET /api/v1/clock` (viewer) answers [`ClockView`]: every node's latest
//! estimate, as its agent measured it, and this host's kernel's view of
//! its own clock; `plumb clock` prints it.
//!
//! The server never amplifies: it answers only well-formed requests of
//! exactly [`PACKET_LEN`] bytes with a reply of the same size, ignores
//! everything else, and answers each source address at most
//! [`REPLIES_PER_SECOND`] times a second.

use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::Timestamp;
use plumb_model::clock::{KernelSync, PACKET_LEN, Packet, PacketKind};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Replies to one source address per second at most; the rest are
/// dropped unanswered. An agent sends one probe every 10 s and `plumb
/// clock probe` a handful a few ms apart, so this only stops floods.
pub const REPLIES_PER_SECOND: u32 = 64;

/// Sources remembered for rate limiting within one second; past this the
/// table is cleared, so spoofed sources cannot grow it without bound.
const MAX_SOURCES: usize = 65_536;

/// How often the thread looks at its stop flag while no probe arrives.
const POLL: Duration = Duration::from_millis(200);

/// Counts of what the probe server did; clones share them, and
/// [`ProbeStats::register`] puts them in `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    /// Requests answered.
    pub answered: Counter,
    /// Packets that were not a well-formed request (ignored).
    pub malformed: Counter,
    /// Requests dropped by the per-source rate limit.
    pub limited: Counter,
}

impl ProbeStats {
    /// Adds the counts to the collector's metrics:
    /// `plumb_clock_probes_{answered,malformed,limited}_total`.
    pub fn register(&self, metrics: &crate::Metrics) {
        metrics.register(
            "clock_probes_answered",
            "Clock probes answered over UDP",
            self.answered.clone(),
        );
        metrics.register(
            "clock_probes_malformed",
            "UDP packets on the clock port that were not a well-formed probe (ignored)",
            self.malformed.clone(),
        );
        metrics.register(
            "clock_probes_limited",
            "Clock probes dropped by the per-source rate limit",
            self.limited.clone(),
        );
    }
}

/// A running probe server; stops (within [`POLL`]) when dropped.
#[derive(Debug)]
pub struct ProbeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ProbeStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProbeServer {
    /// Answers probes arriving on `socket` from a thread of its own.
    pub fn spawn(socket: UdpSocket) -> io::Result<ProbeServer> {
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(POLL))?;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            // Without kernel stamps T2 is read in user space: a few
            // microseconds later, still correct within the bound.
            tracing::warn!(error = %io::Error::last_os_error(), "no SO_TIMESTAMPNS: clock probes are stamped in user space");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProbeStats::default());
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("clock-probes".into())
                .spawn(move || serve(socket, &stop, &stats))?
        };
        tracing::info!(%addr, "answering clock probes over UDP");
        Ok(ProbeServer {
            addr,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it did so far.
    pub fn stats(&self) -> &ProbeStats {
        &self.stats
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One received datagram.
struct Received {
    len: usize,
    truncated: bool,
    /// The kernel's receive time, when it gave one.
    kernel_ns: Option<i64>,
    from: libc::sockaddr_storage,
    from_len: libc::socklen_t,
}

/// `recvmsg` into `buf`, with the `SO_TIMESTAMPNS` control message.
fn receive(fd: libc::c_int, buf: &mut [u8]) -> io::Result<Received> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: zeroed sockaddr_storage and msghdr are valid values.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in msg points into live buffers of the sizes
    // given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut kernel_ns = None;
    // SAFETY: the CMSG_* walk stays within msg_controllen, which the
    // kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                kernel_ns = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        kernel_ns,
        from,
        from_len: msg.msg_namelen,
    })
}

/// The source's IP address, for the rate limit.
fn source_ip(r: &Received) -> Option<IpAddr> {
    match r.from.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a: libc::sockaddr_in = unsafe {
                std::ptr::read_unaligned((&r.from as *const libc::sockaddr_storage).cast())
            };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe {
                std::ptr::read_unaligned((&r.from as *const libc::sockaddr_storage).cast())
            };
            Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

fn serve(socket: UdpSocket, stop: &AtomicBool, stats: &ProbeStats) {
    let fd = socket.as_raw_fd();
    // Bigger than a packet, so a longer datagram is seen as such (and
    // ignored) rather than read as its first bytes.
    let mut buf = [0u8; PACKET_LEN + 1];
    let mut sources: HashMap<IpAddr, u32> = HashMap::new();
    let mut second = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let r = match receive(fd, &mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // A transient error (ICMP errors surface here as
                // ECONNREFUSED on some kernels) must not end the server.
                tracing::debug!(error = %e, "clock probe receive failed");
                continue;
            }
        };
        let t2 = r.kernel_ns.unwrap_or_else(|| Timestamp::now().as_nanos());
        let request = match Packet::decode(&buf[..r.len.min(buf.len())]) {
            Some(p) if !r.truncated && p.kind == PacketKind::Request => p,
            _ => {
                stats.malformed.inc();
                continue;
            }
        };
        if second.elapsed() >= Duration::from_secs(1) || sources.len() >= MAX_SOURCES {
            sources.clear();
            second = Instant::now();
        }
        if let Some(ip) = source_ip(&r) {
            let n = sources.entry(ip).or_default();
            *n += 1;
            if *n > REPLIES_PER_SECOND {
                stats.limited.inc();
                continue;
            }
        }
        let mut reply = Packet {
            kind: PacketKind::Reply,
            t1: request.t1,
            t2,
            t3: 0,
        };
        reply.t3 = Timestamp::now().as_nanos();
        let bytes = reply.encode();
        // SAFETY: the buffer and the address the kernel filled in are
        // valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&r.from as *const libc::sockaddr_storage).cast(),
                r.from_len,
            )
        };
        if sent < 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "clock probe reply failed");
        } else {
            stats.answered.inc();
        }
    }
}

/// One node's clock, as `plumb clock` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeClock {
    /// The node.
    pub node: String,
    /// How far its clock is ahead of the collector's, ns.
    pub offset_ns: i64,
    /// The bound as the agent sent it, grown since by the drift
    /// allowance over the time the estimate has waited here.
    pub error_ns: i64,
    /// The round trip of the sample the estimate rests on.
    pub delay_ns: i64,
    /// How fast its clock gains on the collector's, when known.
    pub drift_ppm: Option<f64>,
    /// Its last probe, on its own clock.
    pub measured: Timestamp,
    /// When that estimate arrived, on the collector's clock.
    pub received: Timestamp,
    /// How long ago it arrived.
    pub age_ns: i64,
    /// Samples in the agent's window.
    pub samples: u32,
    /// Its offset is beyond [`ClockView::max_offset_ns`].
    pub beyond: bool,
}

/// `GET /api/v1/clock`: every measured node and the collector's own
/// clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockView {
    /// The kernel's view of the collector host's clock.
    pub collector: Option<KernelSync>,
    /// Why it is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector_error: Option<String>,
    /// The threshold nodes are marked and alerted beyond
    /// (`[alerts.rules.clock_offset] max_offset`).
    pub max_offset_ns: i64,
    /// Each node's latest estimate, by name.
    pub nodes: Vec<NodeClock>,
}

/// The view from `store` at `now`, with this host's kernel status: what
/// the API answers and what `plumb clock --local` prints on the
/// collector's machine.
pub fn clock_view(
    store: &dyn plumb_store::Backend,
    max_offset_ns: i64,
    now: Timestamp,
) -> plumb_store::Result<ClockView> {
    let nodes = store
        .clock_latest()?
        .into_iter()
        .map(|r| {
            let age_ns = (now.as_nanos() - r.received.as_nanos()).max(0);
            let e = r.estimate;
            NodeClock {
                node: r.node,
                offset_ns: e.offset_ns,
                error_ns: e.error_after(age_ns),
                delay_ns: e.delay_ns,
                drift_ppm: e.drift_ppm,
                measured: e.latest,
                received: r.received,
                age_ns,
                samples: e.samples,
                beyond: e.offset_ns.unsigned_abs() > max_offset_ns.max(0) as u64,
            }
        })
        .collect();
    let (collector, collector_error) = match kernel_sync() {
        Ok(k) => (Some(k), None),
        Err(e) => (None, Some(format!("adjtimex failed: {e}"))),
    };
    Ok(ClockView {
        collector,
        collector_error,
        max_offset_ns,
        nodes,
    })
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/clock", get(view))
}

async fn view(_: Viewer, State(state): State<AppState>) -> Result<Json<ClockView>, ApiError> {
    let max = state.clock_max_offset_ns;
    Ok(Json(
        state
            .db
            .read(move |store| clock_view(store, max, Timestamp::now()))
            .await?,
    ))
}

/// This host's clock synchronization as the kernel sees it
/// (`adjtimex(2)`, reading only).
pub fn kernel_sync() -> io::Result<KernelSync> {
    // SAFETY: a zeroed timex with modes 0 asks for no change.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let state = match rc {
        libc::TIME_OK => "ok",
        libc::TIME_INS => "insert leap second",
        libc::TIME_DEL => "delete leap second",
        libc::TIME_OOP => "leap second in progress",
        libc::TIME_WAIT => "leap second done",
        _ => "error",
    };
    Ok(KernelSync {
        synchronized: tx.status & libc::STA_UNSYNC == 0,
        state: state.into(),
        max_error_us: tx.maxerror,
        est_error_us: tx.esterror,
        // freq is ppm with a 16-bit binary fraction.
        freq_ppm: tx.freq as f64 / 65536.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::clock::Sample;

    fn server() -> (ProbeServer, UdpSocket) {
        let s = ProbeServer::spawn(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c.connect(s.addr()).unwrap();
        (s, c)
    }

    #[test]
    fn a_request_gets_a_reply_of_the_same_size_with_ordered_stamps() {
        let (s, c) = server();
        let t1 = Timestamp::now().as_nanos();
        c.send(&Packet::request(t1).encode()).unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        let t4 = Timestamp::now().as_nanos();
        assert_eq!(n, PACKET_LEN);
        let p = Packet::decode(&buf[..n]).unwrap();
        assert_eq!(p.kind, PacketKind::Reply);
        assert_eq!(p.t1, t1);
        let sample = Sample::new(p.t1, p.t2, p.t3, t4).unwrap();
        // Same host, same clock: the offset is within the bound of zero.
        assert!(
            sample.offset_ns().abs() <= sample.delay_ns() / 2 + 1_000,
            "{sample:?}"
        );
        // The server counts a reply once `sendto` returned, which may be
        // after the reply arrived here: wait for it, boundedly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.stats().answered.get() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(s.stats().answered.get(), 1);
    }

    #[test]
    fn strangers_get_no_answer() {
        let (s, c) = server();
        let good = Packet::request(1).encode();
        let mut long = good.to_vec();
        long.extend_from_slice(&[0; 100]);
        let reply = Packet {
            kind: PacketKind::Reply,
            t1: 1,
            t2: 2,
            t3: 3,
        }
        .encode();
        for bad in [
            &good[..31],
            &long[..],
            &reply[..],
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            c.send(bad).unwrap();
        }
        let mut buf = [0u8; 64];
        assert!(c.recv(&mut buf).is_err(), "nothing comes back");
        assert_eq!(s.stats().malformed.get(), 4);
        assert_eq!(s.stats().answered.get(), 0);
    }

    #[test]
    fn a_flood_from_one_source_is_limited() {
        let (s, c) = server();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        for i in 0..200 {
            c.send(&Packet::request(i).encode()).unwrap();
        }
        let mut got = 0;
        let mut buf = [0u8; 64];
        while c.recv(&mut buf).is_ok() {
            got += 1;
        }
        // Sending took well under a second, so at most two windows' worth
        // were answered.
        if started.elapsed() < Duration::from_millis(900) {
            assert!(got <= 2 * REPLIES_PER_SECOND, "{got} replies");
            assert!(s.stats().limited.get() > 0);
        }
        assert!(got >= 1);
    }

    #[test]
    fn the_kernel_answers_about_its_clock() {
        let k = kernel_sync().unwrap();
        assert!(!k.state.is_empty());
        assert!(k.max_error_us >= 0, "{k:?}");
    }
}
