//! `plumb serve`: the collector.

use crate::config::Config;
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
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// TLS certificate chain (PEM); serves HTTPS with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// No token checks, and allow non-loopback addresses without tokens.
    #[arg(long)]
    pub insecure: bool,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let mut config = plumb_collector::CollectorConfig::new(a.data.unwrap_or(cfg.home));
    config.insecure = a.insecure;
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
        // Tests and scripts read the bound addresses from stdout.
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "api  {scheme}://{}", listeners[0].local_addr()?)?;
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
