/*!
plumb's collector: the server behind `plumb serve`.

It ingests run records and output shipped from `plumb run` on every node
(and, through its route modules, OpenTelemetry data and node reports),
stores them through a [`plumb_store::Backend`] (the embedded SQLite store
unless told otherwise), and answers the versioned JSON
query API under `/api/v1` that the CLI uses. It checks bearer tokens
([`auth`]), exports Prometheus metrics on `/metrics` ([`metrics`]), and
serves HTTP or, with a certificate, HTTPS.

Tests and the demo start one in-process on a free loopback port:

```no_run
let dir = tempfile::tempdir().unwrap();
let store = plumb_store::SqliteConnector::new(dir.path());
let config = plumb_collector::CollectorConfig::new(std::sync::Arc::new(store));
let handle = plumb_collector::spawn(config).unwrap();
println!("collector on http://{}", handle.addr());
handle.shutdown();
```
*/
#![deny(missing_docs)]

pub mod alerts;
pub mod auth;
pub mod bench;
pub mod body;
pub mod client;
pub mod clock;
mod db;
pub mod env;
mod error;
pub mod export;
pub mod guard;
pub mod health;
pub mod insights;
pub mod leader;
pub mod metrics;
pub mod nodes;
pub mod otlp;
pub mod retention;
pub mod runs;
pub mod server;
pub mod stack;
pub mod throttles;
pub mod timeline;
pub mod tls;
pub mod web;

pub use auth::Role;
pub use db::Db;
pub use error::ApiError;
pub use metrics::Metrics;

use axum::Router;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How a collector runs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// The UDP clock probe server's counts, shown in `/metrics` (the
    /// server runs beside the HTTP one: `clock::ProbeServer`).
    pub clock_probes: Option<clock::ProbeStats>,
    /// Where the store is and how to open it.
    pub store: std::sync::Arc<dyn plumb_store::Connector>,
    /// TLS certificate chain and private key (PEM files); plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// Switch auth off entirely, and allow non-loopback listening without
    /// tokens.
    pub insecure: bool,
    /// Read-only store connections for queries.
    pub readers: usize,
    /// Error grouping and slow-run detection (`[insights]`).
    pub insights: plumb_model::insights::InsightsConfig,
    /// Alert rules, evaluation and delivery (`[alerts]` in plumb.toml).
    pub alerts: alerts::AlertsConfig,
    /// Timeouts, connection and memory limits against hostile clients.
    pub limits: ServerLimits,
    /// OTLP export of what is accepted (`[export]` in plumb.toml); off
    /// when `None`.
    pub export: Option<export::ExportConfig>,
    /// How long recorded output, logs, spans and metric points are kept
    /// (`[retention] output` in plumb.toml); forever when `None`. Runs
    /// are kept whatever this says.
    pub retention: Option<std::time::Duration>,
}

/// Limits that keep slow, idle or hostile clients from exhausting the
/// collector (see SECURITY.md).
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// How long a client has to send a request's headers, counted from
    /// when the collector starts waiting for them; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: std::time::Duration,
    /// How long a request's whole body may take to arrive (408 past it).
    pub body_timeout: std::time::Duration,
    /// Connections served at once; past it the oldest is closed (an idle
    /// one at once, a busy one after its response). Lowered to fit the
    /// process's descriptor limit.
    pub max_connections: usize,
    /// Memory for ingest bodies, decompressed and decoded, across all
    /// requests in flight, in bytes.
    pub ingest_memory: u64,
    /// What one OTLP request may decode to.
    pub otlp: plumb_otlp::Limits,
    /// Host names (or `name:port`) the collector answers to besides
    /// loopback names and the addresses it listens on (`--allow-host`).
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerLimits {
    /// 10 s for headers, 60 s for a body, 1024 connections, 1 GiB of
    /// ingest memory, OTLP's default limits, no extra hosts.
    fn default() -> ServerLimits {
        ServerLimits {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(60),
            max_connections: 1024,
            ingest_memory: 1 << 30,
            otlp: plumb_otlp::Limits::default(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl CollectorConfig {
    /// Defaults: plain HTTP, auth as described in [`auth`], 4 readers.
    pub fn new(store: std::sync::Arc<dyn plumb_store::Connector>) -> CollectorConfig {
        CollectorConfig {
            store,
            tls: None,
            insecure: false,
            readers: 4,
            insights: Default::default(),
            alerts: alerts::AlertsConfig::default(),
            limits: ServerLimits::default(),
            clock_probes: None,
            export: None,
            retention: None,
        }
    }
}

/// Why a collector could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The store could not be opened.
    #[error("cannot open the store")]
    Store(#[from] plumb_store::StoreError),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is not usable; the message says why.
    #[error("{0}")]
    Config(String),
}

/// Everything a request handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Token checks.
    pub auth: auth::Auth,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Error grouping and slow-run detection settings.
    pub insights: std::sync::Arc<plumb_model::insights::InsightsConfig>,
    /// The slow-run list, recomputed every second by the insights task.
    pub slow: insights::SlowCache,
    /// Timeouts and limits.
    pub limits: std::sync::Arc<ServerLimits>,
    /// Whether this collector holds the lease for the work that must
    /// happen once (see [`leader`]).
    pub leader: leader::Leader,
    /// Memory shared by the ingest requests in flight.
    pub budget: body::MemoryBudget,
    /// Serving HTTPS: cookies are marked `Secure`.
    pub tls: bool,
    /// A node's clock further off than this is marked (and alerted on,
    /// `[alerts.rules.clock_offset] max_offset`), ns.
    pub clock_max_offset_ns: i64,
    /// The pressure a node's health view marks as abnormal
    /// (`[alerts.rules.pressure]`'s thresholds).
    pub health_limits: plumb_model::health::FindingLimits,
    /// Fleet-wide stack requests waiting for their nodes' answers.
    pub stacks: stack::StackRequests,
    /// The OTLP exporter, when `[export]` is configured.
    pub export: Option<export::Exporter>,
    /// What `[retention]` keeps, and what it dropped.
    pub retention: retention::Retention,
    /// The collector's own counters once a minute, for `/status`.
    pub status: web::status::Ring,
}

impl AppState {
    /// Opens the store in `config.data` and builds the shared state.
    /// `non_loopback` is whether any listener is on a non-loopback address.
    pub fn open(config: &CollectorConfig, non_loopback: bool) -> Result<AppState, CollectorError> {
        let db = Db::open(&*config.store, config.readers)?;
        let metrics = Metrics::new();
        if let Some(p) = &config.clock_probes {
            p.register(&metrics);
        }
        let export = config
            .export
            .clone()
            .map(|e| export::Exporter::start(e, &metrics))
            .transpose()
            .map_err(|e| CollectorError::Config(format!("[export]: {e}")))?;
        let retention = retention::Retention::new(config.retention, &metrics);
        Ok(AppState {
            db,
            auth: auth::Auth::new(config.insecure, non_loopback),
            metrics,
            insights: std::sync::Arc::new(config.insights.clone()),
            slow: insights::SlowCache::default(),
            limits: std::sync::Arc::new(config.limits.clone()),
            leader: leader::Leader::default(),
            budget: body::MemoryBudget::new(config.limits.ingest_memory),
            tls: config.tls.is_some(),
            clock_max_offset_ns: config.alerts.rules.clock_offset.max_offset.as_nanos(),
            health_limits: plumb_model::health::FindingLimits {
                memory_pressure: config.alerts.rules.pressure.memory_above,
                io_pressure: config.alerts.rules.pressure.io_above,
            },
            stacks: stack::StackRequests::default(),
            export,
            retention,
            status: web::status::Ring::default(),
        })
    }
}

/// The whole HTTP API: every route module merged, plus health checks and
/// metrics.
pub fn router(state: AppState) -> Router {
    web::status::start(&state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::handler))
        .merge(runs::routes())
        .merge(nodes::routes(&state))
        .merge(health::routes())
        .merge(bench::routes())
        .merge(otlp::routes())
        .merge(insights::routes(&state))
        .merge(alerts::routes())
        .merge(clock::routes())
        .merge(stack::routes())
        .merge(timeline::routes())
        .merge(throttles::routes())
        .merge(env::routes())
        .merge(web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.limits.body_timeout,
            server::body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers a query.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, ApiError> {
    state.db.read(|s| s.count_runs()).await?;
    Ok("ready\n")
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn launch(
    config: CollectorConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    launch_on(config, vec![listener], shutdown).await
}

/// Serves the same API on every listener (`plumb serve` has one for the
/// API and one on the OTLP port) until `shutdown` completes.
pub async fn launch_on(
    config: CollectorConfig,
    listeners: Vec<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    prepare(config, listeners).await?.run(shutdown).await
}

/// A collector whose store is open and whose configuration was checked,
/// ready to serve.
#[derive(Debug)]
pub struct Prepared {
    listeners: Vec<tokio::net::TcpListener>,
    state: AppState,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Opens the store and checks the configuration (TLS files, exposure)
/// without serving yet, so errors are reported before anything listens.
pub async fn prepare(
    config: CollectorConfig,
    listeners: Vec<tokio::net::TcpListener>,
) -> Result<Prepared, CollectorError> {
    let mut addrs = Vec::new();
    for l in &listeners {
        addrs.push(l.local_addr().map_err(|source| CollectorError::Io {
            what: "cannot read the listening address".into(),
            source,
        })?);
    }
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let state = AppState::open(&config, addrs.iter().any(|a| !a.ip().is_loopback()))?;
    check_exposure(&config, &state, &addrs).await?;
    leader::start(&state).await;
    retention::start(&state);
    alerts::start(&state, &config.alerts, addrs.first().copied()).await?;
    Ok(Prepared {
        listeners,
        state,
        tls,
    })
}

impl Prepared {
    /// The shared state (to add metrics or inspect the store before serving).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CollectorError> {
        let Prepared {
            listeners,
            state,
            tls,
        } = self;
        let limits = state.limits.clone();
        let after = state.clone();
        let app = router(state);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            let mut rx = stop_rx.clone();
            let app = app.clone();
            let stop = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let incoming = match &tls {
                None => server::Incoming::Tcp(listener),
                Some(tls) => {
                    server::Incoming::Tls(tls::TlsListener::new(listener, tls.clone()).map_err(
                        |source| CollectorError::Io {
                            what: "cannot start the TLS listener".into(),
                            source,
                        },
                    )?)
                }
            };
            servers.spawn(server::serve(app, incoming, limits.clone(), stop));
        }
        let mut result = Ok(());
        while let Some(res) = servers.join_next().await {
            if let Err(e) = res
                .map_err(|e| CollectorError::Config(format!("a server task failed: {e}")))
                .and_then(|r| r)
            {
                result = Err(e);
                break;
            }
        }
        // Stopping cleanly: another collector on the store takes over now.
        after.leader.step_down(&after).await;
        if let Some(x) = after.export.clone() {
            // Writes what is still in memory to the queue's files.
            let _ = tokio::task::spawn_blocking(move || x.stop()).await;
        }
        result
    }
}

/// Refuses to listen on a non-loopback address with no tokens and no TLS
/// choice made, unless `--insecure`.
pub async fn check_exposure(
    config: &CollectorConfig,
    state: &AppState,
    addrs: &[SocketAddr],
) -> Result<(), CollectorError> {
    if config.insecure {
        return Ok(());
    }
    let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) else {
        return Ok(());
    };
    let tokens = state
        .db
        .read(|s| s.token_hashes())
        .await
        .map_err(|e| CollectorError::Config(e.to_string()))?;
    if tokens.is_empty() {
        return Err(CollectorError::Config(format!(
            "refusing to listen on {open}, a non-loopback address, with no tokens: anyone could read and write. Create tokens with `plumb token create --role agent|viewer|admin`, or pass --insecure"
        )));
    }
    Ok(())
}

/// Serves `app` on `listener` (plain HTTP) with `limits` until `shutdown`.
pub async fn serve(
    app: Router,
    listener: tokio::net::TcpListener,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    server::serve(
        app,
        server::Incoming::Tcp(listener),
        std::sync::Arc::new(limits),
        shutdown,
    )
    .await
}

/// A collector running on its own thread (tests, demo).
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), CollectorError>>>,
}

impl Handle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://` or `https://` per its configuration is the
    /// caller's knowledge; this is the plain form).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits for it to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "collector ended with an error"),
                Err(_) => tracing::warn!("collector thread panicked"),
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts a collector on 127.0.0.1 (a free port) on its own runtime thread.
pub fn spawn(config: CollectorConfig) -> Result<Handle, CollectorError> {
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| CollectorError::Io {
            what: "cannot bind 127.0.0.1:0".into(),
            source,
        })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|source| CollectorError::Io {
            what: "cannot make the listener non-blocking".into(),
            source,
        })?;
    let addr = std_listener
        .local_addr()
        .map_err(|source| CollectorError::Io {
            what: "cannot read the listening address".into(),
            source,
        })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name("plumb-collector".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|source| CollectorError::Io {
                    what: "cannot start the collector runtime".into(),
                    source,
                })?;
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).map_err(|source| {
                        CollectorError::Io {
                            what: "cannot register the listener".into(),
                            source,
                        }
                    })?;
                let prepared = match prepare(config, vec![listener]).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(()));
                prepared
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        })
        .map_err(|source| CollectorError::Io {
            what: "cannot start the collector thread".into(),
            source,
        })?;
    let mut handle = Handle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => {
            // It could not start: report the error its thread ended with.
            handle.stop = None;
            let err = handle
                .thread
                .take()
                .and_then(|t| t.join().ok())
                .and_then(|r| r.err())
                .unwrap_or_else(|| CollectorError::Config("collector thread ended early".into()));
            return Err(err);
        }
    }
    Ok(handle)
}
