//! `cargo xtask bench proxy`: the fault-injection proxy with no toxics,
//! beside a direct loopback connection and beside noxious (a Rust port of
//! Toxiproxy) when `NOXIOUS_BIN` points at its `noxious-server`.
//!
//! Figures: single-stream throughput, added round-trip latency (p50, p99),
//! and the proxy's resident memory with 10,000 idle connections open.
//! Targets: throughput >= 80% of direct; added p50 <= 30 us, p99 <= 200 us;
//! 10k idle connections under 200 MiB RSS.
//!
//! The proxy runs as the real `plumb proxy` binary (release build, or
//! `PLUMB_BIN`), in its own process so its memory can be read from /proc.

use anyhow::{Context, Result, bail};
use plumb_proxy::Client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STREAM_BYTES: u64 = 2 << 30;
const STREAM_RUNS: usize = 3;
const ROUND_TRIPS: usize = 20_000;
const IDLE_CONNECTIONS: usize = 10_000;

/// A peer under test: a Toxiproxy-API server in a child process.
struct Peer {
    name: &'static str,
    child: Child,
    api: Client,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start(name: &'static str, mut cmd: Command, admin: SocketAddr) -> Result<Peer> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let api = Client::new(admin.to_string());
        let peer = Peer { name, child, api };
        let deadline = Instant::now() + Duration::from_secs(20);
        while peer.api.proxies().is_err() {
            if Instant::now() > deadline {
                bail!("{name} did not answer on {admin} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(peer)
    }

    fn proxy(&self, name: &str, upstream: SocketAddr) -> Result<SocketAddr> {
        let p = self
            .api
            .create_proxy(name, "127.0.0.1:0", &upstream.to_string())
            .with_context(|| format!("creating a proxy on {}", self.name))?;
        let listen = p["listen"].as_str().context("no listen address")?;
        listen.parse().context("bad listen address")
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn plumb_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PLUMB_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "plumb"])
        .status()
        .context("building plumb")?;
    if !status.success() {
        bail!("building plumb failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/plumb"))
}

/// A server that reads and discards; reports bytes per connection when it
/// ends.
fn sink() -> Result<(SocketAddr, mpsc::Receiver<u64>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = tx.send(n);
            });
        }
    });
    Ok((addr, rx))
}

fn echo() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Best of a few runs of sending STREAM_BYTES through `to`, in bytes/s.
fn throughput(to: SocketAddr, done: &mpsc::Receiver<u64>) -> Result<f64> {
    let buf = vec![0x5au8; 1 << 20];
    let mut best = 0f64;
    for _ in 0..STREAM_RUNS {
        let mut s = TcpStream::connect(to)?;
        let t = Instant::now();
        let mut left = STREAM_BYTES;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            s.write_all(&buf[..k])?;
            left -= k as u64;
        }
        drop(s);
        let got = done
            .recv_timeout(Duration::from_secs(120))
            .context("the sink never finished")?;
        let secs = t.elapsed().as_secs_f64();
        if got != STREAM_BYTES {
            bail!("sink got {got} of {STREAM_BYTES} bytes");
        }
        best = best.max(got as f64 / secs);
    }
    Ok(best)
}

/// Round-trip times of 64-byte messages, sorted, in microseconds.
fn round_trips(to: SocketAddr) -> Result<Vec<f64>> {
    let mut s = TcpStream::connect(to)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..1000 {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
    }
    let mut out = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Opens IDLE_CONNECTIONS through `to` and returns the peer's RSS growth
/// and total, in KiB, with all of them open and forwarded.
fn idle_rss(peer: &Peer, to: SocketAddr, held: &mpsc::Receiver<()>) -> Result<(u64, u64)> {
    let before = peer.rss_kib().unwrap_or(0);
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let s = TcpStream::connect(to).with_context(|| format!("idle connection {i}"))?;
        conns.push(s);
    }
    // Wait until the upstream has accepted every forwarded connection.
    for i in 0..IDLE_CONNECTIONS {
        held.recv_timeout(Duration::from_secs(60))
            .with_context(|| format!("only {i} idle connections reached the upstream"))?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = peer.rss_kib().unwrap_or(0);
    drop(conns);
    Ok((after.saturating_sub(before), after))
}

/// An upstream that accepts and holds connections without reading.
fn holder() -> Result<(SocketAddr, mpsc::Receiver<()>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => {
                    held.push(s);
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok((addr, rx))
}

struct Figures {
    gbps: f64,
    p50: f64,
    p99: f64,
    idle: Option<(u64, u64)>,
}

fn measure(peer: &Peer, with_idle: bool) -> Result<Figures> {
    let (sink_addr, done) = sink()?;
    let p = peer.proxy("bench_stream", sink_addr)?;
    let gbps = throughput(p, &done)? / 1e9;
    let e = echo()?;
    let p = peer.proxy("bench_rtt", e)?;
    let rt = round_trips(p)?;
    let idle = if with_idle {
        let (h, held) = holder()?;
        let p = peer.proxy("bench_idle", h)?;
        Some(idle_rss(peer, p, &held)?)
    } else {
        None
    };
    Ok(Figures {
        gbps,
        p50: pct(&rt, 0.5),
        p99: pct(&rt, 0.99),
        idle,
    })
}

pub fn run(_rest: &[&str]) -> Result<()> {
    let limit = plumb_proxy::raise_fd_limit().context("raising the open-file limit")?;
    if limit < (IDLE_CONNECTIONS as u64) * 2 + 1000 {
        eprintln!(
            "warning: open-file limit {limit} is low for {IDLE_CONNECTIONS} idle connections"
        );
    }
    println!(
        "bench proxy: single stream {} GiB x{STREAM_RUNS} (best), {ROUND_TRIPS} round trips of 64 B, {IDLE_CONNECTIONS} idle connections",
        STREAM_BYTES >> 30
    );

    // Direct loopback baseline.
    let (sink_addr, done) = sink()?;
    let direct_gbps = throughput(sink_addr, &done)? / 1e9;
    let e = echo()?;
    let direct_rt = round_trips(e)?;
    let (d50, d99) = (pct(&direct_rt, 0.5), pct(&direct_rt, 0.99));
    println!(
        "direct    throughput {direct_gbps:6.2} GB/s   rtt p50 {d50:7.1} us  p99 {d99:7.1} us"
    );

    let bin = plumb_bin()?;
    let admin = free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.args([
        "proxy",
        "--host",
        "127.0.0.1",
        "--port",
        &admin.port().to_string(),
    ]);
    let plumb = Peer::start("plumb", cmd, admin)?;
    let ours = measure(&plumb, true)?;
    drop(plumb);

    let noxious = match std::env::var_os("NOXIOUS_BIN") {
        Some(bin) if PathBuf::from(&bin).exists() => {
            let admin = free_port()?;
            let mut cmd = Command::new(bin);
            cmd.args(["--host", "127.0.0.1", "--port", &admin.port().to_string()]);
            let peer = Peer::start("noxious", cmd, admin)?;
            // noxious is not asked to hold 10k connections: its limit is
            // the inherited soft limit, and the figure of interest is ours.
            Some(measure(&peer, false)?)
        }
        _ => None,
    };

    let show = |name: &str, f: &Figures| {
        println!(
            "{name:<9} throughput {:6.2} GB/s ({:5.1}% of direct)   rtt p50 {:7.1} us (+{:6.1})  p99 {:7.1} us (+{:6.1})",
            f.gbps,
            100.0 * f.gbps / direct_gbps,
            f.p50,
            f.p50 - d50,
            f.p99,
            f.p99 - d99
        );
    };
    show("plumb", &ours);
    match &noxious {
        Some(n) => show("noxious", n),
        None => println!("noxious   not available (set NOXIOUS_BIN to a built noxious-server)"),
    }
    if let Some((grow, total)) = ours.idle {
        println!(
            "plumb     {IDLE_CONNECTIONS} idle connections: RSS {:.1} MiB total, +{:.1} MiB ({:.2} KiB per connection)",
            total as f64 / 1024.0,
            grow as f64 / 1024.0,
            grow as f64 / IDLE_CONNECTIONS as f64
        );
    }

    println!("targets:");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let ratio = ours.gbps / direct_gbps;
    println!(
        "  throughput >= 80% of direct: {:.1}% -> {}",
        ratio * 100.0,
        verdict(ratio >= 0.8)
    );
    println!(
        "  added p50 <= 30 us: {:.1} us -> {}",
        ours.p50 - d50,
        verdict(ours.p50 - d50 <= 30.0)
    );
    println!(
        "  added p99 <= 200 us: {:.1} us -> {}",
        ours.p99 - d99,
        verdict(ours.p99 - d99 <= 200.0)
    );
    if let Some((_, total)) = ours.idle {
        let mib = total as f64 / 1024.0;
        println!(
            "  10k idle connections < 200 MiB RSS: {mib:.1} MiB -> {}",
            verdict(mib < 200.0)
        );
    }
    if let Some(n) = &noxious {
        println!(
            "  vs noxious: throughput {:.2}x, added p50 {:.1} vs {:.1} us, added p99 {:.1} vs {:.1} us",
            ours.gbps / n.gbps,
            ours.p50 - d50,
            n.p50 - d50,
            ours.p99 - d99,
            n.p99 - d99
        );
    }
    Ok(())
}
