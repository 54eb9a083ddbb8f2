//! `cargo xtask bench proxy`: the fault-injection proxy with no toxics,
//! beside a direct loopback connection and beside noxious (a Rust port of
//! Toxiproxy) when `NOXIOUS_BIN` points at its `noxious-server`.
//!
//! Figures: single-stream throughput, added round-trip latency (p50, p99),
//! and the proxy's resident memory with 10,000 idle connections open.
//! Targets: throughput >= 80% of direct; added p50 <= 30 us, p99 <= 200 us;
//! 10k idle connections under 200 MiB RSS.
//!
//! The machine is usually shared, so direct, plumb and noxious take turns
//! within each round and every round prints its own ratios; the spread of
//! plumb/direct over the rounds shows how much the load moved the figures.
//!
//! Wall-clock throughput moves with the load other programs put on the
//! machine, so every stream also measures CPU time per GiB moved: the
//! proxy's (utime + stime of its process from /proc/<pid>/stat, before and
//! after the stream) and the two ends' (this process's getrusage, which
//! holds the sending thread and the sink's reading thread). On a machine
//! with two cores the three parties share, the CPU spent per byte is what
//! bounds the proxied stream, so `direct ends / (ends + proxy)` is the
//! CPU-bound estimate of the throughput ratio, printed beside the measured
//! one.
//!
//! The proxy runs in its own process so its memory can be read from /proc:
//! `$PLUMB_BIN proxy` when PLUMB_BIN is set, else this program re-run in
//! server mode (the same `plumb_proxy` library code as `plumb proxy`).

use crate::measure;
use anyhow::{Context, Result, bail};
use plumb_proxy::Client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STREAM_BYTES: u64 = 1 << 30;
const STREAM_RUNS: usize = 5;
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
        // An explicit port: noxious answers with the listen address as
        // given rather than the bound one.
        let listen = free_port()?.to_string();
        let p = self
            .api
            .create_proxy(name, &listen, &upstream.to_string())
            .with_context(|| format!("creating a proxy on {}", self.name))?;
        let listen = p["listen"].as_str().context("no listen address")?;
        listen.parse().context("bad listen address")
    }

    fn rss_kib(&self) -> Option<u64> {
        measure::vm_kib(self.child.id(), "VmRSS:").ok()
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The command that runs our proxy server: `PLUMB_BIN proxy` when set,
/// else this very program in server mode (`bench proxy --serve ADDR`),
/// which runs the same library code as `plumb proxy` without building the
/// whole CLI in release mode first.
fn plumb_cmd(admin: SocketAddr) -> Result<Command> {
    let port = admin.port().to_string();
    if let Some(p) = std::env::var_os("PLUMB_BIN") {
        let mut cmd = Command::new(p);
        cmd.args(["proxy", "--host", "127.0.0.1", "--port", &port]);
        return Ok(cmd);
    }
    let mut cmd = Command::new(std::env::current_exe().context("locating xtask")?);
    cmd.args(["bench", "proxy", "--serve", &admin.to_string()]);
    Ok(cmd)
}

/// Server mode for [`plumb_cmd`]: serve the admin API until killed.
fn serve(admin: &str) -> Result<()> {
    plumb_proxy::raise_fd_limit().context("raising the open-file limit")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = plumb_proxy::Server::bind(admin).await?;
        server.serve(std::future::pending()).await?;
        anyhow::Ok(())
    })
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

/// One stream's figures.
struct StreamRun {
    /// Bytes per second.
    rate: f64,
    /// CPU seconds per GiB used by the proxy process, if there is one.
    proxy_cpu: Option<f64>,
    /// CPU seconds per GiB used by the sender and the sink (this process).
    ends_cpu: f64,
}

/// One run of sending STREAM_BYTES through `to`, with the proxy process in
/// between (`proxy_pid`, if any) measured for CPU.
fn one_stream(
    to: SocketAddr,
    done: &mpsc::Receiver<u64>,
    proxy_pid: Option<u32>,
) -> Result<StreamRun> {
    let buf = vec![0x5au8; 1 << 20];
    let mut s = TcpStream::connect(to)?;
    let proxy_before = proxy_pid.and_then(|p| measure::cpu_seconds(p).ok());
    let ends_before = measure::own_cpu_seconds(libc::RUSAGE_SELF);
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
    let ends_after = measure::own_cpu_seconds(libc::RUSAGE_SELF);
    let proxy_after = proxy_pid.and_then(|p| measure::cpu_seconds(p).ok());
    if got != STREAM_BYTES {
        bail!("sink got {got} of {STREAM_BYTES} bytes");
    }
    let gib = got as f64 / (1u64 << 30) as f64;
    Ok(StreamRun {
        rate: got as f64 / secs,
        proxy_cpu: proxy_before
            .zip(proxy_after)
            .map(|(b, a)| (a - b).max(0.0) / gib),
        ends_cpu: (ends_after - ends_before).max(0.0) / gib,
    })
}

/// Round-trip times of 64-byte messages, sorted, in microseconds.
fn round_trips(to: SocketAddr, count: usize) -> Result<Vec<f64>> {
    let mut s = TcpStream::connect(to)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..1000 {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

/// Median, minimum and maximum; zeros for no values.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (pct(&s, 0.5), s[0], s[s.len() - 1])
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Opens `n` connections through `to` and returns the peer's RSS growth
/// and total, in KiB, with all of them open and forwarded.
fn idle_rss(
    peer: &Peer,
    to: SocketAddr,
    held: &mpsc::Receiver<()>,
    n: usize,
) -> Result<(u64, u64)> {
    let before = peer.rss_kib().unwrap_or(0);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(to).with_context(|| format!("idle connection {i}"))?;
        conns.push(s);
    }
    // Wait until the upstream has accepted every forwarded connection.
    for i in 0..n {
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
    /// RSS growth and total in KiB with `idle_n` idle connections.
    idle: Option<(u64, u64)>,
}

/// Where each contender's stream and echo traffic goes, and what it
/// measured so far.
struct Lane {
    name: &'static str,
    stream_to: SocketAddr,
    done: mpsc::Receiver<u64>,
    echo_to: SocketAddr,
    /// The proxy's process, measured for CPU.
    pid: Option<u32>,
    rates: Vec<f64>,
    /// Proxy CPU seconds per GiB, per round.
    proxy_cpu: Vec<f64>,
    /// The ends' CPU seconds per GiB, per round.
    ends_cpu: Vec<f64>,
    rtts: Vec<f64>,
}

impl Lane {
    fn new(name: &'static str, peer: Option<&Peer>) -> Result<Lane> {
        let (sink_addr, done) = sink()?;
        let e = echo()?;
        let (stream_to, echo_to) = match peer {
            Some(p) => (
                p.proxy("bench_stream", sink_addr)?,
                p.proxy("bench_rtt", e)?,
            ),
            None => (sink_addr, e),
        };
        Ok(Lane {
            name,
            stream_to,
            done,
            echo_to,
            pid: peer.map(|p| p.child.id()),
            rates: Vec::new(),
            proxy_cpu: Vec::new(),
            ends_cpu: Vec::new(),
            rtts: Vec::new(),
        })
    }

    fn figures(&self, idle: Option<(u64, u64)>) -> Figures {
        let mut rtts = self.rtts.clone();
        rtts.sort_by(f64::total_cmp);
        Figures {
            gbps: self.rates.iter().copied().fold(0.0, f64::max) / 1e9,
            p50: pct(&rtts, 0.5),
            p99: pct(&rtts, 0.99),
            idle,
        }
    }
}

pub fn run(rest: &[&str]) -> Result<()> {
    if let ["--serve", admin] = rest {
        return serve(admin);
    }
    let limit = plumb_proxy::raise_fd_limit().context("raising the open-file limit")?;
    // Both this process (client and upstream ends) and the proxy (its two
    // sockets) need two descriptors per idle connection; when the hard limit
    // is too low for 10,000, measure fewer and scale per connection.
    let idle_n = IDLE_CONNECTIONS.min((limit as usize).saturating_sub(400) / 2);
    println!(
        "bench proxy: single stream {} GiB x{STREAM_RUNS} rounds (best; contenders take turns in each round), {ROUND_TRIPS} round trips of 64 B, {idle_n} idle connections (open-file limit {limit})",
        STREAM_BYTES >> 30
    );

    let admin = free_port()?;
    let plumb = Peer::start("plumb", plumb_cmd(admin)?, admin)?;
    let noxious_peer = match std::env::var_os("NOXIOUS_BIN") {
        Some(bin) if PathBuf::from(&bin).exists() => {
            let admin = free_port()?;
            let mut cmd = Command::new(bin);
            cmd.args(["--host", "127.0.0.1", "--port", &admin.port().to_string()]);
            match Peer::start("noxious", cmd, admin) {
                Ok(p) => Some(p),
                Err(error) => {
                    println!("noxious   failed to start: {error:#}");
                    None
                }
            }
        }
        _ => None,
    };

    // The machine is shared, so the contenders take turns: each round
    // measures direct, plumb and noxious back to back, and the ratios of a
    // round compare figures taken under the same load.
    let mut lanes = vec![
        Lane::new("direct", None)?,
        Lane::new("plumb", Some(&plumb))?,
    ];
    if let Some(n) = &noxious_peer {
        lanes.push(Lane::new("noxious", Some(n))?);
    }
    for round in 0..STREAM_RUNS {
        let mut line = format!("round {}:", round + 1);
        for lane in lanes.iter_mut() {
            let run = one_stream(lane.stream_to, &lane.done, lane.pid)
                .with_context(|| format!("{} stream", lane.name))?;
            lane.rates.push(run.rate);
            lane.ends_cpu.push(run.ends_cpu);
            lane.proxy_cpu.extend(run.proxy_cpu);
            let rt = round_trips(lane.echo_to, ROUND_TRIPS / STREAM_RUNS)
                .with_context(|| format!("{} round trips", lane.name))?;
            lane.rtts.extend(rt);
            line += &format!("  {} {:.2} GB/s", lane.name, run.rate / 1e9);
            if let Some(c) = run.proxy_cpu {
                line += &format!(" (proxy {c:.3} cpu-s/GiB)");
            }
        }
        let direct = lanes[0].rates[round];
        line += &format!(
            "  plumb/direct {:.1}%",
            100.0 * lanes[1].rates[round] / direct
        );
        if lanes.len() > 2 {
            line += &format!(
                "  noxious/direct {:.1}%",
                100.0 * lanes[2].rates[round] / direct
            );
        }
        println!("{line}");
    }
    let ratios: Vec<f64> = (0..STREAM_RUNS)
        .map(|r| lanes[1].rates[r] / lanes[0].rates[r])
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "plumb/direct per round: {:.1}% .. {:.1}%",
        lo * 100.0,
        hi * 100.0
    );
    // CPU per GiB moved: medians over the rounds, with their range.
    println!("cpu seconds per GiB moved (median of {STREAM_RUNS} rounds, range):");
    for lane in &lanes {
        let (m, l, h) = spread(&lane.ends_cpu);
        let mut line = format!("  {:<8} sender+sink {m:.3} ({l:.3} .. {h:.3})", lane.name);
        if !lane.proxy_cpu.is_empty() {
            let (m, l, h) = spread(&lane.proxy_cpu);
            line += &format!("   proxy {m:.3} ({l:.3} .. {h:.3})");
        }
        println!("{line}");
    }
    let cpu_total = |lane: &Lane| spread(&lane.ends_cpu).0 + spread(&lane.proxy_cpu).0;
    let cpu_estimate = cpu_total(&lanes[0]) / cpu_total(&lanes[1]);
    println!(
        "  CPU-bound estimate of plumb/direct on 2 cores (direct's cpu per GiB / plumb path's): {:.1}%",
        100.0 * cpu_estimate
    );
    if lanes.len() > 2 {
        println!(
            "  CPU-bound estimate of noxious/direct: {:.1}%; plumb's proxy cpu per GiB is {:.2}x noxious's",
            100.0 * cpu_total(&lanes[0]) / cpu_total(&lanes[2]),
            spread(&lanes[1].proxy_cpu).0 / spread(&lanes[2].proxy_cpu).0
        );
    }

    let idle = if idle_n > 0 {
        let (h, held) = holder()?;
        let p = plumb.proxy("bench_idle", h)?;
        Some(idle_rss(&plumb, p, &held, idle_n)?)
    } else {
        None
    };
    let direct = lanes[0].figures(None);
    let direct_gbps = direct.gbps;
    let (d50, d99) = (direct.p50, direct.p99);
    println!(
        "direct    throughput {direct_gbps:6.2} GB/s   rtt p50 {d50:7.1} us  p99 {d99:7.1} us"
    );
    let ours = lanes[1].figures(idle);
    let noxious = lanes.get(2).map(|l| l.figures(None));
    drop(plumb);
    drop(noxious_peer);

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
    // RSS with 10k idle connections, scaled from idle_n when fewer were
    // possible.
    let rss_10k = ours.idle.map(|(grow, total)| {
        let per = grow as f64 / idle_n.max(1) as f64;
        let base = total.saturating_sub(grow) as f64;
        println!(
            "plumb     {idle_n} idle connections: RSS {:.1} MiB total, +{:.1} MiB ({per:.2} KiB per connection)",
            total as f64 / 1024.0,
            grow as f64 / 1024.0,
        );
        (base + per * IDLE_CONNECTIONS as f64) / 1024.0
    });

    println!("targets:");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let ratio = ours.gbps / direct_gbps;
    println!(
        "  throughput >= 80% of direct: {:.1}% -> {}",
        ratio * 100.0,
        verdict(ratio >= 0.8)
    );
    println!(
        "  (CPU-bound estimate, independent of other load: {:.1}% -> {})",
        cpu_estimate * 100.0,
        verdict(cpu_estimate >= 0.8)
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
    if let Some(mib) = rss_10k {
        let how = if idle_n < IDLE_CONNECTIONS {
            " (scaled from the measured count)"
        } else {
            ""
        };
        println!(
            "  10k idle connections < 200 MiB RSS: {mib:.1} MiB{how} -> {}",
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
