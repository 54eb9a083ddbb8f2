#![deny(missing_docs)]
//! `plumb-proxy`: a TCP fault-injection proxy whose HTTP admin API is
//! wire-compatible with Toxiproxy 2.x, so existing Toxiproxy clients drive it
//! unchanged.
//!
//! - Every Toxiproxy endpoint (`/proxies`, `/proxies/{p}`,
//!   `/proxies/{p}/toxics`, `/proxies/{p}/toxics/{t}`, `/populate`, `/reset`,
//!   `/version`), the same statuses, JSON shapes, defaults and error bodies;
//!   POST and PATCH both update.
//! - Every standard toxic (latency with jitter, bandwidth, slow_close,
//!   timeout, reset_peer, slicer, limit_data, noop), per-connection toxicity,
//!   both streams, live changes reaching open connections.
//! - Beyond Toxiproxy: toxics in /populate and the config file (`"toxics"` in
//!   a proxy entry), `slow_open` and `refuse_open`, toxics limited to client
//!   addresses (`"clients": ["10.0.0.0/8"]` on a toxic), `stall` windows and
//!   `drop_connection`, half-close propagated, live byte/connection/toxic
//!   metrics on `/metrics` (Prometheus text), and an event log of every change
//!   with UTC nanosecond timestamps on `/events`.
//! - UDP proxies (`"protocol": "udp"` when creating a proxy) with `latency`,
//!   `loss`, `duplicate` and `reorder` toxics.
//! - HTTP/1-aware toxics: `http_latency` per request, `http_error` answering a
//!   share of requests with a chosen status, `http_drip` for slow bodies.
//! - Connections no toxic touches are forwarded with `splice(2)`, without
//!   copying through userspace.
//!
//! # Using it in-process
//!
//! ```no_run
//! use serde_json::json;
//!
//! // Starts the admin API (and every proxy) on a thread of its own.
//! let server = plumb_proxy::spawn("127.0.0.1:0").unwrap();
//! let api = server.client();
//! let proxy = api.create_proxy("db", "127.0.0.1:0", "127.0.0.1:5432").unwrap();
//! println!("connect to {}", proxy["listen"]);
//! api.add_toxic("db", &json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
//! api.add_toxic("db", &json!({"type": "reset_peer", "attributes": {"timeout": 500}})).unwrap();
//! server.shutdown();
//! ```
//!
//! Inside a tokio runtime, use [`Server::bind`] and [`Server::serve`]
//! instead.

mod api;
pub mod client;
mod link;
pub mod model;
mod proxy;
mod ship;
mod state;
mod udp;

pub use api::TOXIPROXY_VERSION;
pub use client::{Client, ClientError};
pub use ship::{EventShipper, LOGS_PATH};
pub use state::{DEFAULT_MAX_CONNECTIONS, EVENT_CAPACITY, Event};

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The admin address could not be bound.
    #[error("cannot listen for the admin API on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A config file could not be read.
    #[error("cannot read proxy config {path}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A config file was read but is not a valid list of proxies, or a proxy
    /// in it could not start.
    #[error("proxy config {}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        /// The file.
        path: PathBuf,
        /// The line where the proxy at fault (or the syntax error) is.
        line: Option<usize>,
        /// What was wrong.
        reason: String,
    },
    /// Serving failed.
    #[error("admin API server failed")]
    Serve(#[source] std::io::Error),
    /// The server thread could not start.
    #[error("cannot start the proxy server thread")]
    Thread(#[source] std::io::Error),
}

/// An admin API server with its proxies, bound but not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    registry: Arc<state::Registry>,
}

impl Server {
    /// Binds the admin API to `addr` (e.g. `127.0.0.1:8474`, or port 0 for a
    /// free one). Must be called inside a tokio runtime.
    pub async fn bind(addr: &str) -> Result<Server, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let registry = Arc::new(state::Registry::default());
        registry.set_admin(bound);
        Ok(Server {
            listener,
            addr: bound,
            registry,
        })
    }

    /// How many connections each proxy serves at once (default
    /// [`DEFAULT_MAX_CONNECTIONS`]); more are closed as they arrive and
    /// counted in `plumb_proxy_connections_refused_total`. Applies to
    /// proxies created afterwards.
    pub fn set_max_connections_per_proxy(&self, n: u64) {
        self.registry.set_max_connections(n);
    }

    /// The bound admin address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates the proxies listed in a config file (the `/populate` format:
    /// a JSON array of `{"name","listen","upstream","enabled","toxics"}`).
    /// Returns how many proxies it set up. Must be called inside a tokio
    /// runtime.
    pub fn load_config(&self, path: &Path) -> Result<usize, Error> {
        let body = std::fs::read(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let fail = |line: Option<usize>, reason: String| Error::Config {
            path: path.to_path_buf(),
            line,
            reason,
        };
        // Each proxy's own text, to name the line an error is on.
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| fail(Some(e.line()), e.to_string()))?;
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&body)
            .map_err(|_| fail(None, "expected a JSON array of proxies".into()))?;
        let line_of = |raw: &serde_json::value::RawValue| {
            let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            1 + body[..start].iter().filter(|b| **b == b'\n').count()
        };
        let mut list = Vec::with_capacity(items.len());
        for (i, raw) in items.iter().enumerate() {
            let c = model::decode_populate_item(raw.get().as_bytes(), i)
                .map_err(|e| fail(Some(line_of(raw)), e.message))?;
            list.push(c);
        }
        let (done, err) = self.registry.populate(&list);
        match err {
            // Proxies start in order: the first not done is the one at fault.
            Some(e) => Err(fail(items.get(done.len()).map(|r| line_of(r)), e.message)),
            None => Ok(done.len()),
        }
    }

    /// Ships every proxy and toxic change, from now on, to the collector
    /// behind `client` as OTLP/HTTP JSON log records, until the returned
    /// handle is dropped. See the `ship` module for the guarantees.
    pub fn ship_events(&self, client: plumb_http::Client) -> std::io::Result<EventShipper> {
        ship::spawn(Arc::clone(&self.registry), client)
    }

    /// Serves the admin API until `shutdown` completes, then stops every
    /// proxy and closes its connections.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let registry = Arc::clone(&self.registry);
        let app = api::router(Arc::clone(&self.registry));
        tracing::info!(addr = %self.addr, "proxy admin API listening");
        let r = serve_admin(self.listener, app, shutdown).await;
        for p in registry.list() {
            let _ = registry.delete(&p.name);
        }
        r
    }
}

/// How long an admin API client has to send a request's headers; also how
/// long an idle keep-alive connection stays open.
pub const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the admin API with a header timeout (axum::serve has none, so a
/// client sending headers a byte at a time, or many idle connections, held
/// connections forever), backing off on accept errors.
async fn serve_admin(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut failures: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    failures = 0;
                    let app = app.clone();
                    let mut stop = stop_rx.clone();
                    conns.spawn(async move {
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(ADMIN_HEADER_TIMEOUT);
                        let conn = b.serve_connection(
                            hyper_util::rt::TokioIo::new(sock),
                            hyper_util::service::TowerToHyperService::new(app),
                        );
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = stop.wait_for(|s| *s) => {}
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    });
                }
                Err(error) => {
                    failures += 1;
                    if failures % 100 == 1 {
                        tracing::warn!(%error, failures, "admin API: cannot accept a connection");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// A server running on a thread of its own; see [`spawn`]. Dropping it shuts
/// the server down.
#[derive(Debug)]
pub struct ServerHandle {
    admin_addr: SocketAddr,
    registry: Arc<state::Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The admin API address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// See [`Server::set_max_connections_per_proxy`].
    pub fn set_max_connections_per_proxy(&self, n: u64) {
        self.registry.set_max_connections(n);
    }

    /// A blocking client for this server's admin API.
    pub fn client(&self) -> Client {
        Client::new(self.admin_addr.to_string())
    }

    /// Stops the server, its proxies and their connections, and waits for
    /// the thread to end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts a server on `admin_addr` in a new thread with its own tokio
/// runtime, for programs that are not async. Returns once the admin API is
/// bound.
pub fn spawn(admin_addr: &str) -> Result<ServerHandle, Error> {
    type Ready = Result<(SocketAddr, Arc<state::Registry>), Error>;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = admin_addr.to_string();
    let thread = std::thread::Builder::new()
        .name("plumb-proxy".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let server = match Server::bind(&addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((server.local_addr(), Arc::clone(&server.registry))));
                if let Err(error) = server
                    .serve(async {
                        let _ = stop_rx.await;
                    })
                    .await
                {
                    tracing::error!(%error, "proxy server stopped");
                }
            });
        })
        .map_err(Error::Thread)?;
    match ready_rx.recv() {
        Ok(Ok((admin_addr, registry))) => Ok(ServerHandle {
            admin_addr,
            registry,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Thread(std::io::Error::other(
                "server thread ended before binding",
            )))
        }
    }
}

/// Raises this process's open-file limit as far as it may go: to the
/// kernel's `nr_open` ceiling when the process is privileged, else to its hard
/// limit. A proxy holds two sockets (and, while forwarding, a pipe) per
/// connection. Returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let ceiling: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or fill the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let target: libc::rlim_t = ceiling.max(lim.rlim_max);
        let want = libc::rlimit {
            rlim_cur: target,
            rlim_max: target,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return Ok(target);
        }
        // Unprivileged: the hard limit is as far as we may go.
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}
