//! The client side of clock measurement: UDP probes to a collector's probe
//! server (`plumb serve`, on its API's port number unless told otherwise),
//! one four-timestamp exchange each, and the agent's thread that keeps
//! measuring.
//!
//! T1 and T4 are read from the system clock (`clock_gettime`) in user
//! space rather than from kernel stamps, on purpose: a clock faked for a
//! process (libfaketime) or a container's view of time is the one the
//! process stamps its events with, and that is the clock to measure.

use plumb_model::Timestamp;
use plumb_model::clock::{Estimate, PACKET_LEN, Packet, PacketKind, Policy, Sample, Window};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The target is neither a URL nor `HOST:PORT`.
    #[error("`{target}` is not a collector URL or HOST:PORT: {why}")]
    BadTarget {
        /// What was given.
        target: String,
        /// What is wrong with it.
        why: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve `{target}`: {cause}")]
    Resolve {
        /// What was given.
        target: String,
        /// The resolver's error.
        cause: io::Error,
    },
    /// The local socket could not be made.
    #[error("cannot open a UDP socket to {addr}: {cause}")]
    Socket {
        /// Where to.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
    /// The host said nothing listens on that port (ICMP port unreachable).
    #[error(
        "nothing answers clock probes on udp {addr}: the port is closed (is `plumb serve` running there, with clock probes on its API port or --clock-port?)"
    )]
    Refused {
        /// Where to.
        addr: SocketAddr,
    },
    /// No reply in time.
    #[error(
        "no answer to clock probes from udp {addr} within {waited:?} (is `plumb serve` running there, and is UDP let through?)"
    )]
    NoAnswer {
        /// Where to.
        addr: SocketAddr,
        /// How long it waited for each.
        waited: Duration,
    },
    /// Sending or receiving failed otherwise.
    #[error("clock probe to udp {addr} failed: {cause}")]
    Io {
        /// Where to.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
}

/// Where clock probes go for `target`: a collector URL
/// (`http://host:7700/...`, its port, else 80 or 443) or `HOST:PORT`.
pub fn probe_address(target: &str) -> Result<SocketAddr, ClockError> {
    let bad = |why: &str| ClockError::BadTarget {
        target: target.to_string(),
        why: why.to_string(),
    };
    let (rest, default_port) = if let Some(r) = target.strip_prefix("http://") {
        (r, Some(80))
    } else if let Some(r) = target.strip_prefix("https://") {
        (r, Some(443))
    } else if target.contains("://") {
        return Err(bad("only http:// and https:// URLs name a collector"));
    } else {
        (target, None)
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad("junk after `]`")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port: u16 = match (port, default_port) {
        (Some(p), _) => p
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(&format!("`{p}` is not a port (1-65535)")))?,
        (None, Some(d)) => d,
        (None, None) => return Err(bad("a port is needed, as in collector.example:7700")),
    };
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|cause| ClockError::Resolve {
            target: target.to_string(),
            cause,
        })?;
    addrs.next().ok_or_else(|| ClockError::Resolve {
        target: target.to_string(),
        cause: io::Error::new(io::ErrorKind::NotFound, "no address"),
    })
}

/// A UDP socket connected to one probe server.
#[derive(Debug)]
pub struct Prober {
    socket: UdpSocket,
    addr: SocketAddr,
    timeout: Duration,
    /// Added to this host's clock readings: a simulated offset for the
    /// demo on machines without libfaketime; 0 otherwise.
    shift_ns: i64,
}

impl Prober {
    /// A prober of `addr`, waiting up to `timeout` for each reply.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Result<Prober, ClockError> {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("address")
        } else {
            "[::]:0".parse().expect("address")
        };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(addr).map(|_| s))
            .map_err(|cause| ClockError::Socket { addr, cause })?;
        Ok(Prober {
            socket,
            addr,
            timeout,
            shift_ns: 0,
        })
    }

    /// The same prober with this host's clock read `shift_ns` ahead (a
    /// simulated offset, as libfaketime would make a real one).
    pub fn shifted(mut self, shift_ns: i64) -> Prober {
        self.shift_ns = shift_ns;
        self
    }

    /// The probe server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One exchange. Replies to earlier, timed-out probes are recognised
    /// by their echoed T1 and skipped.
    pub fn exchange(&self) -> Result<Sample, ClockError> {
        let io = |cause: io::Error| ClockError::Io {
            addr: self.addr,
            cause,
        };
        let t1 = Timestamp::now().as_nanos() + self.shift_ns;
        let started = Instant::now();
        match self.socket.send(&Packet::request(t1).encode()) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ClockError::Refused { addr: self.addr });
            }
            Err(e) => return Err(io(e)),
        }
        let mut buf = [0u8; PACKET_LEN + 1];
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ClockError::NoAnswer {
                    addr: self.addr,
                    waited: self.timeout,
                });
            }
            self.socket.set_read_timeout(Some(left)).map_err(io)?;
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(ClockError::Refused { addr: self.addr });
                }
                Err(e) => return Err(io(e)),
            };
            let t4 = Timestamp::now().as_nanos() + self.shift_ns;
            match Packet::decode(&buf[..n]) {
                Some(p) if p.kind == PacketKind::Reply && p.t1 == t1 => {
                    return Sample::new(t1, p.t2, p.t3, t4).map_err(|e| {
                        io(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    });
                }
                _ => continue,
            }
        }
    }

    /// `count` exchanges `gap` apart. Exchanges that get no answer are
    /// skipped; an error only when none was answered (the last error) or
    /// the port is closed.
    pub fn measure(&self, count: usize, gap: Duration) -> Result<Vec<Sample>, ClockError> {
        let mut samples = Vec::with_capacity(count);
        let mut last = None;
        for i in 0..count {
            if i > 0 {
                std::thread::sleep(gap);
            }
            match self.exchange() {
                Ok(s) => samples.push(s),
                Err(e @ ClockError::Refused { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        match (samples.is_empty(), last) {
            (true, Some(e)) => Err(e),
            _ => Ok(samples),
        }
    }
}

/// How often an agent probes its collector, on average; each wait is
/// jittered by ±20% so a fleet started together does not probe in step.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);

/// How long an agent waits for each reply.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The agent's measuring thread: probes `target` (a collector URL or
/// HOST:PORT, resolved again after a failure, so a collector that moves or
/// is not up yet is found later) at once and then about every `every`,
/// keeps a [`Window`], and after each answered probe puts its estimate in
/// `latest` for the next heartbeat to carry. A failure is logged once until
/// a probe is answered again.
pub fn spawn_measuring(
    target: String,
    every: Duration,
    shift_ns: i64,
    latest: Arc<Mutex<Option<Estimate>>>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("clock-probes".into())
        .spawn(move || {
            let mut prober: Option<Prober> = None;
            let mut window = Window::new(Policy::default());
            let mut warned = false;
            while !stop.load(Ordering::Relaxed) {
                let result = match &prober {
                    Some(p) => p.exchange(),
                    None => probe_address(&target)
                        .and_then(|a| Prober::new(a, PROBE_TIMEOUT))
                        .and_then(|p| prober.insert(p.shifted(shift_ns)).exchange()),
                };
                match result {
                    Ok(s) => {
                        window.push(s);
                        *latest.lock().expect("clock estimate lock") = window.estimate(s.at());
                        warned = false;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "clock probe failed; trying again later");
                            warned = true;
                        }
                        prober = None;
                    }
                }
                let jitter = 0.8 + 0.4 * fastrand::f64();
                let until = Instant::now() + every.mul_f64(jitter);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(
                        until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100)),
                    );
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_udp_address() {
        let a = |t: &str| probe_address(t).map(|a| a.to_string());
        assert_eq!(a("http://127.0.0.1:7700").unwrap(), "127.0.0.1:7700");
        assert_eq!(
            a("http://127.0.0.1:7700/api/v1?x=1").unwrap(),
            "127.0.0.1:7700"
        );
        assert_eq!(a("https://127.0.0.1").unwrap(), "127.0.0.1:443");
        assert_eq!(a("127.0.0.1:9").unwrap(), "127.0.0.1:9");
        assert_eq!(a("[::1]:7700").unwrap(), "[::1]:7700");
        for (bad, says) in [
            ("127.0.0.1", "a port is needed"),
            ("127.0.0.1:0", "not a port"),
            ("127.0.0.1:http", "not a port"),
            ("ftp://x:1", "only http://"),
            ("http://", "no host"),
            (":7700", "no host"),
        ] {
            let e = probe_address(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_closed_port_is_refused_quickly() {
        // A port just released is closed: the kernel answers with ICMP
        // port unreachable, which a connected socket reports.
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let p = Prober::new(addr, Duration::from_secs(2)).unwrap();
        let started = Instant::now();
        let e = p.measure(3, Duration::from_millis(1)).unwrap_err();
        assert!(matches!(e, ClockError::Refused { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn silence_is_no_answer_within_the_timeout() {
        // Bound but never read: packets are queued and never answered.
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = Prober::new(quiet.local_addr().unwrap(), Duration::from_millis(100)).unwrap();
        let e = p.exchange().unwrap_err();
        assert!(matches!(e, ClockError::NoAnswer { .. }), "{e}");
    }
}
