//! `cargo xtask bench clock`: how well and how cheaply `plumb serve`'s UDP
//! clock probes measure.
//!
//! Starts a release `plumb serve` and, on loopback (one clock, so the true
//! offset is zero and every measured offset is error):
//! 1. accuracy: `--samples N` exchanges (default 2,000), one at a time, 1 ms
//!    apart; prints the median and 99th percentile of |offset| (target
//!    (issue 15): median <= 50 us) and the median error bound, which must
//!    hold the truth in every sample;
//! 2. cost: probes from 100 loopback source addresses (127.0.0.2...), 50 a
//!    second each, for `--seconds S` (default 10), reading the collector's
//!    CPU time from /proc before and after, less its idle CPU over as long;
//!    prints CPU per probe (target <= 1 ms) and what 1,000 agents probing
//!    every 10 s would cost (target < 5% of a core).
//!
//! When chrony is installed, `chronyc tracking`'s figures are printed
//! beside ours: chrony sets the clock, plumb only measures it.

use crate::measure::{self, cpu_seconds, median, verdict};
use anyhow::{Context, Result, bail};
use plumb_model::Timestamp;
use plumb_model::clock::{PACKET_LEN, Packet, PacketKind, Sample};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

const MEDIAN_TARGET_US: f64 = 50.0;
const CPU_PER_PROBE_TARGET_US: f64 = 1000.0;
const FLEET_TARGET_PCT: f64 = 5.0;
const SOURCES: u8 = 100;
const PER_SOURCE_PER_SECOND: u32 = 50;

pub fn run(args: &[&str]) -> Result<()> {
    let opt = |name: &str| measure::opt(args, name);
    let samples: usize = opt("--samples").map_or(Ok(2000), str::parse)?;
    let seconds: u64 = opt("--seconds").map_or(Ok(10), str::parse)?;
    let plumb = measure::release_plumb()?;
    let work = measure::fresh_work_dir("clock")?;
    println!(
        "bench clock (plumb {}, {samples} exchanges, {seconds} s of load; load average {})",
        plumb.display(),
        measure::load_average()
    );
    let (mut serve, url) = measure::start_serve(&plumb, &work.join("collector"))?;
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("plumb serve printed no port")?;
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    std::thread::sleep(Duration::from_millis(500));
    let result = measure_both(server, samples, seconds, serve.id());
    let _ = serve.kill();
    let _ = serve.wait();
    result?;
    chrony();
    Ok(())
}

fn exchange(socket: &UdpSocket) -> Option<Sample> {
    let t1 = Timestamp::now().as_nanos();
    socket.send(&Packet::request(t1).encode()).ok()?;
    let mut buf = [0u8; PACKET_LEN + 1];
    loop {
        let n = socket.recv(&mut buf).ok()?;
        let t4 = Timestamp::now().as_nanos();
        match Packet::decode(&buf[..n]) {
            Some(p) if p.kind == PacketKind::Reply && p.t1 == t1 => {
                return Sample::new(t1, p.t2, p.t3, t4).ok();
            }
            _ => continue,
        }
    }
}

fn measure_both(server: SocketAddr, samples: usize, seconds: u64, pid: u32) -> Result<()> {
    // 1. Accuracy.
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut abs_us = Vec::with_capacity(samples);
    let mut bound_us = Vec::with_capacity(samples);
    let mut outside = 0usize;
    for _ in 0..samples {
        let Some(s) = exchange(&socket) else {
            continue;
        };
        let bound = s.delay_ns() / 2 + plumb_model::clock::PRECISION_NS;
        if s.offset_ns().abs() > bound {
            outside += 1;
        }
        abs_us.push(s.offset_ns().abs() as f64 / 1e3);
        bound_us.push(bound as f64 / 1e3);
        // Past the server's per-source limit of 64 a second nothing is
        // answered; 1 ms apart with the exchange itself stays under it
        // only with the rest of the second idle, so pace to 50 a second.
        std::thread::sleep(Duration::from_millis(20));
    }
    if abs_us.is_empty() {
        bail!("no clock probe was answered by udp {server}");
    }
    let n = abs_us.len();
    let med = median(&mut abs_us);
    abs_us.sort_by(f64::total_cmp);
    let p99 = abs_us[(n * 99 / 100).min(n - 1)];
    println!(
        "  loopback |offset|: median {med:.1} us, p99 {p99:.1} us over {n} exchanges  target median <= {MEDIAN_TARGET_US} us  ratio {:.2}  {}",
        med / MEDIAN_TARGET_US,
        verdict(med <= MEDIAN_TARGET_US)
    );
    println!(
        "  error bound: median {:.1} us; truth outside it in {outside} of {n}",
        median(&mut bound_us)
    );

    // 2. Cost: idle first, then under load, for as long each.
    let window = Duration::from_secs(seconds);
    let idle0 = cpu_seconds(pid)?;
    std::thread::sleep(window);
    let idle = cpu_seconds(pid)? - idle0;
    let load0 = cpu_seconds(pid)?;
    let answered = load(server, window)?;
    let busy = cpu_seconds(pid)? - load0;
    if answered == 0 {
        bail!("no probe was answered under load");
    }
    let per_probe_us = (busy - idle).max(0.0) / answered as f64 * 1e6;
    // 1,000 agents every 10 s are 100 probes a second.
    let fleet_pct = per_probe_us * 100.0 / 1e6 * 100.0;
    println!("  collector CPU: {busy:.3} s for {answered} probes ({idle:.3} s idle over as long)");
    println!(
        "  CPU per probe: {per_probe_us:.1} us  target <= {CPU_PER_PROBE_TARGET_US} us  ratio {:.3}  {}",
        per_probe_us / CPU_PER_PROBE_TARGET_US,
        verdict(per_probe_us <= CPU_PER_PROBE_TARGET_US)
    );
    println!(
        "  1,000 agents every 10 s: {fleet_pct:.3}% of a core  target < {FLEET_TARGET_PCT}%  ratio {:.3}  {}",
        fleet_pct / FLEET_TARGET_PCT,
        verdict(fleet_pct < FLEET_TARGET_PCT)
    );
    Ok(())
}

/// Probes from [`SOURCES`] loopback addresses at
/// [`PER_SOURCE_PER_SECOND`] each for `window`; returns the replies.
fn load(server: SocketAddr, window: Duration) -> Result<u64> {
    let mut sockets = Vec::new();
    for i in 0..SOURCES {
        let s = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 2 + i], 0)))
            .with_context(|| format!("binding 127.0.0.{}", 2 + i))?;
        s.connect(server)?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let tick = Duration::from_secs(1) / PER_SOURCE_PER_SECOND;
    let started = Instant::now();
    let mut next = started;
    let mut answered = 0u64;
    let mut buf = [0u8; PACKET_LEN + 1];
    while started.elapsed() < window {
        for s in &sockets {
            let _ = s.send(&Packet::request(Timestamp::now().as_nanos()).encode());
        }
        next += tick;
        // Drain replies until the next round is due.
        while Instant::now() < next {
            let mut any = false;
            for s in &sockets {
                while s.recv(&mut buf).is_ok() {
                    answered += 1;
                    any = true;
                }
            }
            if !any {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for s in &sockets {
        while s.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    Ok(answered)
}

/// `chronyc tracking`'s offset lines, when chrony is installed.
fn chrony() {
    match Command::new("chronyc").arg("tracking").output() {
        Ok(o) if o.status.success() => {
            println!("  chronyc tracking (chrony sets the clock; plumb measures):");
            for l in String::from_utf8_lossy(&o.stdout).lines().filter(|l| {
                l.starts_with("System time")
                    || l.starts_with("Last offset")
                    || l.starts_with("RMS offset")
                    || l.starts_with("Root dispersion")
            }) {
                println!("    {l}");
            }
        }
        Ok(o) => println!(
            "  chronyc tracking failed ({}): is chronyd running?",
            o.status
        ),
        Err(_) => println!("  chrony is not installed: no chronyc tracking figures to compare"),
    }
}
