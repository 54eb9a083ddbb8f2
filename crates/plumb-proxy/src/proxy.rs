//! One proxy as its listener and connections see it: its toxics, its
//! counters, and whether it runs. A leaf: the accept loops (`link`, `udp`)
//! and the registry (`state`) use it, it uses neither.

use crate::model::{Protocol, ToxicSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// A toxic as installed: the spec plus a version that changes on every update,
/// so live connections can tell which toxics changed.
#[derive(Debug)]
pub(crate) struct ToxicEntry {
    pub spec: ToxicSpec,
    pub version: u64,
}

/// The toxics of a proxy in insertion order; replaced whole on every change.
pub(crate) type ToxicSet = Arc<Vec<Arc<ToxicEntry>>>;

/// Counters for one proxy. Bytes are counted as they move, so they are live
/// while a connection is open (Toxiproxy counts only when a link ends).
#[derive(Debug, Default)]
pub(crate) struct ProxyMetrics {
    /// Bytes read, indexed by [`dir_index`].
    pub received: [AtomicU64; 2],
    /// Bytes written, indexed by [`dir_index`].
    pub sent: [AtomicU64; 2],
    /// Of `sent`, the bytes moved by splice(2) without a userspace copy,
    /// so users (and tests) can see which path a proxy's traffic takes.
    pub zero_copy: [AtomicU64; 2],
    pub connections_total: AtomicU64,
    pub connections_active: AtomicU64,
    /// Connections closed at once because the proxy had
    /// the registry's limit of connections open already.
    pub connections_refused: AtomicU64,
    /// Times each toxic was switched on for a connection, by name and type.
    pub activations: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// Index into the per-direction counters: 0 upstream, 1 downstream.
pub(crate) fn dir_index(s: crate::model::Stream) -> usize {
    match s {
        crate::model::Stream::Upstream => 0,
        crate::model::Stream::Downstream => 1,
    }
}

impl ProxyMetrics {
    pub fn activated(&self, name: &str, kind: &'static str) {
        *lock(&self.activations)
            .entry((name.to_string(), kind))
            .or_insert(0) += 1;
    }
}

pub(crate) struct ProxyInner {
    pub(crate) protocol: Protocol,
    pub(crate) listen: String,
    pub(crate) upstream: String,
    pub(crate) enabled: bool,
    pub(crate) runner: Option<Runner>,
}

/// A running listener.
pub(crate) struct Runner {
    /// Signalling (or dropping) this stops the accept loop and every
    /// connection it accepted.
    pub(crate) stop: watch::Sender<bool>,
    /// The listening socket, shut down synchronously on stop so its port can
    /// be bound again at once (the accept task closes it a moment later).
    pub(crate) fd: std::os::fd::RawFd,
}

/// One proxy.
pub(crate) struct Proxy {
    pub name: String,
    /// Connections it serves at once; more are closed as they come.
    pub max_connections: u64,
    pub(crate) inner: Mutex<ProxyInner>,
    pub(crate) toxics: watch::Sender<ToxicSet>,
    pub metrics: ProxyMetrics,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, carrying on if a panicking holder poisoned it: every
/// critical section here leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    pub fn toxics_rx(&self) -> watch::Receiver<ToxicSet> {
        self.toxics.subscribe()
    }

    pub(crate) fn toxics_now(&self) -> ToxicSet {
        self.toxics.borrow().clone()
    }

    /// The JSON shape of `GET /proxies/{name}`.
    pub fn to_json(&self) -> Value {
        let inner = lock(&self.inner);
        let mut v = json!({
            "name": self.name,
            "listen": inner.listen,
            "upstream": inner.upstream,
            "enabled": inner.enabled,
            "toxics": self.toxics_now().iter().map(|t| t.spec.to_json()).collect::<Vec<_>>(),
        });
        // TCP proxies keep Toxiproxy's exact shape.
        if inner.protocol == Protocol::Udp {
            v["protocol"] = json!("udp");
        }
        v
    }

    pub(crate) fn listen_upstream(&self) -> (String, String) {
        let inner = lock(&self.inner);
        (inner.listen.clone(), inner.upstream.clone())
    }

    /// The address it listens on while running.
    pub(crate) fn bound(&self) -> Option<SocketAddr> {
        let inner = lock(&self.inner);
        inner.runner.as_ref()?;
        inner.listen.parse().ok()
    }

    pub(crate) fn protocol(&self) -> Protocol {
        lock(&self.inner).protocol
    }

    pub(crate) fn stop(&self, inner: &mut ProxyInner) {
        if let Some(r) = inner.runner.take() {
            // The accept task owns the socket and exits only after the signal
            // below, so the descriptor is still this listener here.
            if r.fd >= 0 {
                // SAFETY: shutdown(2) on a descriptor that is open and ours.
                unsafe { libc::shutdown(r.fd, libc::SHUT_RDWR) };
            }
            // Receivers see the change (or the drop) and close everything.
            let _ = r.stop.send(true);
            tracing::info!(proxy = %self.name, "proxy stopped");
        }
        inner.enabled = false;
    }
}

/// Decrements the active-connection gauge however the connection ends.
pub(crate) struct ActiveGuard<'a>(pub(crate) &'a Proxy);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}
