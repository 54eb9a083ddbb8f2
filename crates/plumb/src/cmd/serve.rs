//! `plumb serve`: the collector.

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plumb serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the API (and dashboard); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Address of the OpenTelemetry (OTLP/HTTP) port, or `off`.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub otlp_listen: String,
    /// Store directory (default: the configured store).
    #[arg(long, conflicts_with = "store")]
    pub data: Option<PathBuf>,
    /// The store as a URL instead: postgres://user@host:port/db for
    /// PostgreSQL (several collectors may share it), or sqlite:DIR; also
    /// PLUMB_STORE_URL or `[store] url` in plumb.toml.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// TLS certificate chain (PEM); serves HTTPS with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// No token checks, and allow non-loopback addresses without tokens.
    #[arg(long)]
    pub insecure: bool,
    /// A host name (or name:port) browsers and clients may reach the
    /// collector by, besides loopback names and the listen addresses;
    /// repeat for more. Requests naming any other Host get 421.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// How long a client has to send a request's headers; also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub header_timeout: std::time::Duration,
    /// How long a request's whole body may take to arrive (408 past it).
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub body_timeout: std::time::Duration,
    /// Connections served at once; past it the oldest is closed. Lowered
    /// to fit the descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Memory for ingest bodies (decompressed and decoded) across all
    /// requests in flight, in MiB; a request that does not fit gets 429.
    #[arg(long, default_value_t = 1024)]
    pub ingest_memory_mib: u64,
    /// How long a write waits for another process holding the store's
    /// database before the request gets 503 with Retry-After.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub busy_timeout: std::time::Duration,
    /// UDP port answering clock probes (`plumb clock probe`, agents), on
    /// the API's address; default: the API's port number; 0: off.
    #[arg(long, value_name = "PORT")]
    pub clock_port: Option<u16>,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns <= 0 {
        return Err(format!("`{s}` is not a positive duration"));
    }
    Ok(std::time::Duration::from_nanos(ns as u64))
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    // The export queue lives beside the embedded store, or in the home
    // directory with a PostgreSQL store.
    let export_dir = a
        .data
        .clone()
        .unwrap_or_else(|| cfg.home.clone())
        .join("export");
    let export = cfg
        .export
        .clone()
        .map(|e| plumb_collector::export::ExportConfig {
            url: e.otlp,
            headers: e.headers,
            queue_max: e.queue_max,
            dir: e.queue_dir.unwrap_or(export_dir),
        });
    let store = crate::store::connector(&cfg, a.data, a.store, a.busy_timeout)?;
    let mut config = plumb_collector::CollectorConfig::new(store);
    config.insecure = a.insecure;
    config.limits.allowed_hosts = a.allow_host;
    config.limits.header_timeout = a.header_timeout;
    config.limits.body_timeout = a.body_timeout;
    config.limits.max_connections = a.max_connections;
    config.limits.ingest_memory = a.ingest_memory_mib << 20;
    config.insights = cfg.insights.clone();
    config.alerts = cfg.alerts;
    config.export = export;
    config.retention = cfg.retention_output;
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        config.tls = Some(plumb_collector::TlsFiles { cert, key });
    }
    let otlp: Option<SocketAddr> = match a.otlp_listen.as_str() {
        "off" | "none" | "" => None,
        s => Some(s.parse().with_context(|| {
            format!("--otlp-listen `{s}` is not an address like 127.0.0.1:4318 (or `off`)")
        })?),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let api = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let mut listeners = vec![api];
        if let Some(o) = otlp {
            listeners.push(
                tokio::net::TcpListener::bind(o)
                    .await
                    .with_context(|| format!("cannot listen on {o} (OTLP)"))?,
            );
        }
        let api_addr = listeners[0].local_addr()?;
        let probes = clock_probes(api_addr, a.clock_port)?;
        config.clock_probes = probes.as_ref().map(|p| p.stats().clone());
        // Tests and scripts read the bound addresses from stdout.
        {
            let mut out = crate::out::stdout();
            writeln!(out, "api  {scheme}://{api_addr}")?;
            if let Some(l) = listeners.get(1) {
                writeln!(out, "otlp {scheme}://{}", l.local_addr()?)?;
            }
            out.flush()?;
        }
        plumb_collector::launch_on(config, listeners, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the UDP clock probe server on the API's address: on `port`
/// when given (0: none), else on the API's port number, where a client
/// given the collector's URL looks for it. A port asked for that cannot be
/// bound is an error; the default one only a warning, since the collector
/// is useful without it.
fn clock_probes(
    api: SocketAddr,
    port: Option<u16>,
) -> Result<Option<plumb_collector::clock::ProbeServer>> {
    let addr = SocketAddr::new(api.ip(), port.unwrap_or(api.port()));
    if addr.port() == 0 {
        return Ok(None);
    }
    let socket = match std::net::UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) if port.is_none() => {
            tracing::warn!(%addr, error = %e, "cannot listen for clock probes over UDP; pass --clock-port PORT to choose another port");
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen for clock probes on udp {addr}"));
        }
    };
    let server = plumb_collector::clock::ProbeServer::spawn(socket)
        .with_context(|| format!("cannot start the clock probe server on udp {addr}"))?;
    Ok(Some(server))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process still ends on the default
        // action of the signal; nothing graceful to wait for.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// A collector started by the demo: a separate `plumb serve` process.
/// Stopped when dropped, unless [`DemoCollector::leave_running`] is called.
#[derive(Debug)]
pub struct DemoCollector {
    child: Option<std::process::Child>,
    /// Base URL of the API.
    pub api: String,
    /// Base URL of the OTLP/HTTP port.
    pub otlp: String,
}

impl DemoCollector {
    /// Keeps the collector running after the demo ends; returns its pid.
    #[allow(dead_code)]
    pub fn leave_running(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

impl Drop for DemoCollector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: the collector shuts down gracefully.
            // SAFETY: kill with a pid we own and a valid signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The demo's collector scene: starts `plumb serve` on free loopback ports
/// with its store in `<store_dir>/collector` and `config` as its plumb.toml
/// (the alerts demo's rules and webhook, see `cmd::alerts::demo_prepare`),
/// waits until it is ready, and prints where it listens. Bounded: gives up
/// after 10 s.
pub fn demo_scene_with(
    store_dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<DemoCollector> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("cannot find the plumb executable")?;
    let data = store_dir.join("collector");
    let mut child = std::process::Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&data)
        .envs(config.map(|c| ("PLUMB_CONFIG", c)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("cannot start plumb serve")?;
    let stdout = child.stdout.take().context("no stdout from plumb serve")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().and_then(|l| l.ok());
        let second = lines.next().and_then(|l| l.ok());
        let _ = tx.send((first, second));
    });
    let mut demo = DemoCollector {
        child: Some(child),
        api: String::new(),
        otlp: String::new(),
    };
    let (api, otlp) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .context("plumb serve did not report its address within 10 s")?;
    demo.api = api
        .and_then(|l| l.strip_prefix("api  ").map(String::from))
        .context("plumb serve did not print its API address")?;
    demo.otlp = otlp
        .and_then(|l| l.strip_prefix("otlp ").map(String::from))
        .unwrap_or_default();
    let client = plumb_http::Client::new(&plumb_http::Config::new(demo.api.clone()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.get("/readyz").send().is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the collector at {} did not become ready within 10 s",
            demo.api
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    outln!("collector   {}  (store {})", demo.api, data.display());
    outln!("            plumb ls --collector {}", demo.api);
    if !demo.otlp.is_empty() {
        outln!("OTLP/HTTP   {}  (OTEL_EXPORTER_OTLP_ENDPOINT)", demo.otlp);
    }
    Ok(demo)
}
