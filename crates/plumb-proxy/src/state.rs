//! The proxy collection: proxies, their toxics, their listeners, their
//! metrics, and the event log of every change.

use crate::model::{
    ApiError, Protocol, ProxyCreate, ProxyUpdate, ToxicSpec, ToxicUpdate, not_applicable,
};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

use crate::proxy::{Proxy, ProxyInner, ProxyMetrics, Runner, ToxicEntry, lock};

/// Binds `proxy`'s listener and starts accepting. Must run inside a tokio
/// runtime.
fn start(proxy: &Arc<Proxy>, inner: &mut ProxyInner) -> Result<(), ApiError> {
    if inner.runner.is_some() {
        return Ok(());
    }
    let listen = if inner.listen.is_empty() {
        "127.0.0.1:0".to_string()
    } else {
        inner.listen.clone()
    };
    let addr = resolve(&listen)?;
    if inner.protocol == Protocol::Udp {
        return start_udp(proxy, inner, &listen, addr);
    }
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| ApiError::new(500, format!("listen tcp {listen}: {e}")))?;
    let bound = std_listener
        .local_addr()
        .map_err(|e| ApiError::new(500, format!("listen tcp {listen}: {e}")))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ApiError::new(500, format!("listen tcp {listen}: {e}")))?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| ApiError::new(500, format!("listen tcp {listen}: {e}")))?;
    inner.listen = bound.to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    inner.runner = Some(Runner {
        stop: stop_tx,
        fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
    });
    inner.enabled = true;
    tokio::spawn(crate::link::accept_loop(
        listener,
        Arc::clone(proxy),
        Arc::from(inner.upstream.as_str()),
        stop_rx,
    ));
    tracing::info!(proxy = %proxy.name, listen = %bound, upstream = %inner.upstream, "proxy started");
    Ok(())
}

fn start_udp(
    proxy: &Arc<Proxy>,
    inner: &mut ProxyInner,
    listen: &str,
    addr: SocketAddr,
) -> Result<(), ApiError> {
    let err = |e: std::io::Error| ApiError::new(500, format!("listen udp {listen}: {e}"));
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )
    .map_err(err)?;
    // Lets a re-enabled proxy bind its port again while the previous
    // socket is still being closed by its task.
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    let std_sock: std::net::UdpSocket = sock.into();
    let bound = std_sock.local_addr().map_err(err)?;
    let udp = tokio::net::UdpSocket::from_std(std_sock).map_err(err)?;
    inner.listen = bound.to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    inner.runner = Some(Runner {
        stop: stop_tx,
        fd: -1,
    });
    inner.enabled = true;
    tokio::spawn(crate::udp::run(
        Arc::new(udp),
        Arc::clone(proxy),
        Arc::from(inner.upstream.as_str()),
        stop_rx,
    ));
    tracing::info!(proxy = %proxy.name, listen = %bound, upstream = %inner.upstream, "udp proxy started");
    Ok(())
}

fn resolve(listen: &str) -> Result<SocketAddr, ApiError> {
    listen
        .to_socket_addrs()
        .map_err(|e| ApiError::new(500, format!("listen tcp {listen}: {e}")))?
        .next()
        .ok_or_else(|| ApiError::new(500, format!("listen tcp {listen}: no address found")))
}

/// One recorded change: a proxy or toxic created, updated or removed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Position in the log, from 1.
    pub seq: u64,
    /// UTC time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// What happened, e.g. `toxic_added`.
    pub kind: String,
    /// The proxy concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The toxic concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toxic: Option<String>,
    /// The new state (proxy or toxic JSON), if any.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// How many events are kept in memory; older ones are dropped first and
/// counted.
pub const EVENT_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct EventLog {
    events: VecDeque<Event>,
    next_seq: u64,
    dropped: u64,
}

/// All proxies of a server.
#[derive(Debug)]
pub(crate) struct Registry {
    proxies: Mutex<BTreeMap<String, Arc<Proxy>>>,
    events: Mutex<EventLog>,
    toxic_versions: AtomicU64,
    /// The admin API's address, which no upstream may name.
    admin: Mutex<Option<SocketAddr>>,
    /// Connections each proxy serves at once (see [`DEFAULT_MAX_CONNECTIONS`]).
    max_connections: AtomicU64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            proxies: Mutex::default(),
            events: Mutex::default(),
            toxic_versions: AtomicU64::new(0),
            admin: Mutex::new(None),
            max_connections: AtomicU64::new(DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// Connections one proxy serves at once unless configured otherwise:
/// enough for any test's connection pool, and a bound on a loop through
/// proxies (each hop holds two descriptors per connection).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;

/// Whether connecting to `upstream` reaches the socket listening on
/// `listener`: the same port, and the same address, or one side the
/// unspecified address (0.0.0.0 or ::, which a connection reaches through
/// loopback and a listener there accepts on loopback).
pub(crate) fn reaches(upstream: SocketAddr, listener: SocketAddr) -> bool {
    if upstream.port() != listener.port() {
        return false;
    }
    let (u, l) = (upstream.ip().to_canonical(), listener.ip().to_canonical());
    u == l
        || (u.is_unspecified() && (l.is_loopback() || l.is_unspecified()))
        || (l.is_unspecified() && (u.is_loopback() || u.is_unspecified()))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// Remembers the admin API's address, so no upstream may name it.
    pub fn set_admin(&self, addr: SocketAddr) {
        *lock(&self.admin) = Some(addr);
    }

    /// Sets how many connections each proxy created from now on serves at
    /// once.
    pub fn set_max_connections(&self, n: u64) {
        self.max_connections.store(n.max(1), Ordering::Relaxed);
    }

    /// Refuses an upstream that is one of this process's own listeners
    /// (the admin API, a running proxy's listener, or `own`, the proxy's
    /// own): every connection through it would open another, without end.
    /// An upstream that does not resolve (yet) is left to fail when
    /// connected to.
    fn check_upstream(
        &self,
        proxies: &BTreeMap<String, Arc<Proxy>>,
        name: &str,
        upstream: &str,
        own: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        let Ok(addrs) = upstream.to_socket_addrs() else {
            return Ok(());
        };
        let mut listeners: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(a) = *lock(&self.admin) {
            listeners.push(("the admin API of this plumb proxy".into(), a));
        }
        for (n, p) in proxies {
            if n != name
                && let Some(a) = p.bound()
            {
                listeners.push((format!("the listener of proxy {n}"), a));
            }
        }
        if let Some(a) = own {
            listeners.push((format!("the listener of proxy {name} itself"), a));
        }
        for u in addrs {
            if let Some((what, l)) = listeners.iter().find(|(_, l)| reaches(u, *l)) {
                return Err(ApiError::new(
                    400,
                    format!(
                        "proxy {name}: upstream {upstream} is {what} ({l}): every connection would loop back into this process"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn record(&self, kind: &str, proxy: Option<&str>, toxic: Option<&str>, detail: Value) {
        let mut log = lock(&self.events);
        log.next_seq += 1;
        let ev = Event {
            seq: log.next_seq,
            ts_ns: now_ns(),
            kind: kind.to_string(),
            proxy: proxy.map(str::to_string),
            toxic: toxic.map(str::to_string),
            detail,
        };
        if log.events.len() >= EVENT_CAPACITY {
            log.events.pop_front();
            log.dropped += 1;
        }
        log.events.push_back(ev);
    }

    /// Events with `seq > since`, and how many were dropped for lack of room.
    pub fn events_since(&self, since: u64) -> (Vec<Event>, u64) {
        let log = lock(&self.events);
        (
            log.events
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
            log.dropped,
        )
    }

    fn entry(&self, spec: ToxicSpec) -> Arc<ToxicEntry> {
        Arc::new(ToxicEntry {
            spec,
            version: self.toxic_versions.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    pub fn get(&self, name: &str) -> Result<Arc<Proxy>, ApiError> {
        lock(&self.proxies)
            .get(name)
            .cloned()
            .ok_or_else(ApiError::proxy_not_found)
    }

    pub fn list(&self) -> Vec<Arc<Proxy>> {
        lock(&self.proxies).values().cloned().collect()
    }

    fn new_proxy(&self, c: &ProxyCreate) -> Arc<Proxy> {
        let set: Vec<_> = c.toxics.iter().map(|t| self.entry(t.clone())).collect();
        let (tx, _rx) = watch::channel(Arc::new(set));
        Arc::new(Proxy {
            name: c.name.clone(),
            max_connections: self.max_connections.load(Ordering::Relaxed),
            inner: Mutex::new(ProxyInner {
                protocol: c.protocol,
                listen: c.listen.clone(),
                upstream: c.upstream.clone(),
                enabled: false,
                runner: None,
            }),
            toxics: tx,
            metrics: ProxyMetrics::default(),
        })
    }

    /// `POST /proxies`.
    pub fn create(&self, c: &ProxyCreate) -> Result<Arc<Proxy>, ApiError> {
        let mut proxies = lock(&self.proxies);
        if proxies.contains_key(&c.name) {
            return Err(ApiError::proxy_exists());
        }
        self.check_upstream(&proxies, &c.name, &c.upstream, resolve(&c.listen).ok())?;
        let proxy = self.new_proxy(c);
        if c.enabled {
            let mut inner = lock(&proxy.inner);
            start(&proxy, &mut inner)?;
            // With port 0 the listener's address is known only now.
            let bound = inner.listen.parse().ok();
            if let Err(e) = self.check_upstream(&proxies, &c.name, &c.upstream, bound) {
                proxy.stop(&mut inner);
                return Err(e);
            }
        }
        proxies.insert(c.name.clone(), Arc::clone(&proxy));
        drop(proxies);
        self.record("proxy_created", Some(&c.name), None, proxy.to_json());
        Ok(proxy)
    }

    /// `POST|PATCH /proxies/{name}`.
    pub fn update(&self, name: &str, u: &ProxyUpdate) -> Result<Arc<Proxy>, ApiError> {
        let proxy = self.get(name)?;
        {
            let proxies = lock(&self.proxies);
            let mut inner = lock(&proxy.inner);
            let upstream = u.upstream.as_ref().unwrap_or(&inner.upstream).clone();
            let listen = u.listen.as_ref().unwrap_or(&inner.listen).clone();
            self.check_upstream(&proxies, name, &upstream, resolve(&listen).ok())?;
            let listen_changed = u.listen.as_ref().is_some_and(|l| *l != inner.listen);
            let upstream_changed = u.upstream.as_ref().is_some_and(|l| *l != inner.upstream);
            if listen_changed || upstream_changed {
                // A new address means a new listener; connections through the
                // old one are dropped, as in Toxiproxy.
                let was_enabled = inner.enabled;
                proxy.stop(&mut inner);
                if let Some(l) = &u.listen {
                    inner.listen = l.clone();
                }
                if let Some(up) = &u.upstream {
                    inner.upstream = up.clone();
                }
                if u.enabled.unwrap_or(was_enabled) {
                    start(&proxy, &mut inner)?;
                    let bound = inner.listen.parse().ok();
                    if let Err(e) = self.check_upstream(&proxies, name, &upstream, bound) {
                        proxy.stop(&mut inner);
                        return Err(e);
                    }
                }
            } else {
                match u.enabled {
                    Some(true) => start(&proxy, &mut inner)?,
                    Some(false) => proxy.stop(&mut inner),
                    None => {}
                }
            }
        }
        self.record("proxy_updated", Some(name), None, proxy.to_json());
        Ok(proxy)
    }

    /// `DELETE /proxies/{name}`.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let proxy = lock(&self.proxies)
            .remove(name)
            .ok_or_else(ApiError::proxy_not_found)?;
        proxy.stop(&mut lock(&proxy.inner));
        self.record("proxy_deleted", Some(name), None, Value::Null);
        Ok(())
    }

    /// `POST /reset`: every proxy enabled, every toxic removed.
    pub fn reset(&self) -> Result<(), ApiError> {
        for proxy in self.list() {
            let mut inner = lock(&proxy.inner);
            start(&proxy, &mut inner)?;
            proxy.toxics.send_replace(Arc::new(Vec::new()));
        }
        self.record("reset", None, None, Value::Null);
        Ok(())
    }

    /// `POST /populate`: create or replace each listed proxy. Returns the
    /// proxies handled so far and the first error, if any.
    pub fn populate(&self, list: &[ProxyCreate]) -> (Vec<Arc<Proxy>>, Option<ApiError>) {
        let mut done = Vec::with_capacity(list.len());
        for c in list {
            match self.add_or_replace(c) {
                Ok(p) => done.push(p),
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    fn add_or_replace(&self, c: &ProxyCreate) -> Result<Arc<Proxy>, ApiError> {
        if let Ok(existing) = self.get(&c.name) {
            let (listen, upstream) = existing.listen_upstream();
            let same_listen = c.listen.is_empty()
                || resolve(&c.listen).ok() == resolve(&listen).ok() && !c.listen.ends_with(":0");
            if same_listen && upstream == c.upstream && existing.protocol() == c.protocol {
                // Unchanged proxies keep their connections and toxics, unless
                // the entry lists toxics of its own (plumb extension).
                if !c.toxics.is_empty() {
                    let set: Vec<_> = c.toxics.iter().map(|t| self.entry(t.clone())).collect();
                    existing.toxics.send_replace(Arc::new(set));
                    self.record("toxics_replaced", Some(&c.name), None, existing.to_json());
                }
                return Ok(existing);
            }
            self.delete(&c.name)?;
        }
        self.create(c)
    }

    /// `POST /proxies/{name}/toxics`.
    pub fn add_toxic(&self, proxy: &str, spec: ToxicSpec) -> Result<Value, ApiError> {
        let proxy = self.get(proxy)?;
        let guard = lock(&proxy.inner);
        if !spec.kind.applies_to(guard.protocol) {
            return Err(not_applicable(&spec.kind, guard.protocol));
        }
        let current = proxy.toxics_now();
        if current.iter().any(|t| t.spec.name == spec.name) {
            return Err(ApiError::toxic_exists());
        }
        let json = spec.to_json();
        let mut next: Vec<_> = current.iter().cloned().collect();
        next.push(self.entry(spec));
        proxy.toxics.send_replace(Arc::new(next));
        drop(guard);
        self.record(
            "toxic_added",
            Some(&proxy.name),
            json["name"].as_str(),
            json.clone(),
        );
        Ok(json)
    }

    /// `GET /proxies/{name}/toxics/{toxic}`.
    pub fn toxic(&self, proxy: &str, toxic: &str) -> Result<Value, ApiError> {
        let proxy = self.get(proxy)?;
        proxy
            .toxics_now()
            .iter()
            .find(|t| t.spec.name == toxic)
            .map(|t| t.spec.to_json())
            .ok_or_else(ApiError::toxic_not_found)
    }

    /// `GET /proxies/{name}/toxics`.
    pub fn toxics(&self, proxy: &str) -> Result<Value, ApiError> {
        let proxy = self.get(proxy)?;
        Ok(Value::Array(
            proxy
                .toxics_now()
                .iter()
                .map(|t| t.spec.to_json())
                .collect(),
        ))
    }

    /// `POST|PATCH /proxies/{name}/toxics/{toxic}`.
    pub fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        u: &ToxicUpdate,
    ) -> Result<Value, ApiError> {
        let proxy = self.get(proxy)?;
        let _guard = lock(&proxy.inner);
        let current = proxy.toxics_now();
        let pos = current
            .iter()
            .position(|t| t.spec.name == toxic)
            .ok_or_else(ApiError::toxic_not_found)?;
        let mut spec = current[pos].spec.clone();
        spec.kind = spec.kind.merged(&u.attributes)?;
        if let Some(t) = u.toxicity {
            spec.toxicity = t;
        }
        if let Some(c) = &u.clients {
            spec.clients = c.clone();
        }
        let json = spec.to_json();
        let mut next: Vec<_> = current.iter().cloned().collect();
        next[pos] = self.entry(spec);
        proxy.toxics.send_replace(Arc::new(next));
        drop(_guard);
        self.record(
            "toxic_updated",
            Some(&proxy.name),
            Some(toxic),
            json.clone(),
        );
        Ok(json)
    }

    /// `DELETE /proxies/{name}/toxics/{toxic}`.
    pub fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ApiError> {
        let proxy = self.get(proxy)?;
        let _guard = lock(&proxy.inner);
        let current = proxy.toxics_now();
        if !current.iter().any(|t| t.spec.name == toxic) {
            return Err(ApiError::toxic_not_found());
        }
        let next: Vec<_> = current
            .iter()
            .filter(|t| t.spec.name != toxic)
            .cloned()
            .collect();
        proxy.toxics.send_replace(Arc::new(next));
        drop(_guard);
        self.record("toxic_removed", Some(&proxy.name), Some(toxic), Value::Null);
        Ok(())
    }

    /// Prometheus text exposition of every proxy's counters.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let proxies = self.list();
        let dirs = ["upstream", "downstream"];
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let mut section =
            |name: &str, help: &str, kind: &str, rows: &mut dyn FnMut(&mut String)| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                rows(&mut out);
            };
        let labels = |p: &Proxy| {
            let (listen, upstream) = p.listen_upstream();
            format!(
                "proxy=\"{}\",listener=\"{}\",upstream=\"{}\"",
                esc(&p.name),
                esc(&listen),
                esc(&upstream)
            )
        };
        section(
            "toxiproxy_proxy_received_bytes_total",
            "Bytes read by the proxy, per direction, counted as they arrive.",
            "counter",
            &mut |o| {
                for p in &proxies {
                    for (i, d) in dirs.iter().enumerate() {
                        let _ = writeln!(
                            o,
                            "toxiproxy_proxy_received_bytes_total{{direction=\"{d}\",{}}} {}",
                            labels(p),
                            p.metrics.received[i].load(Ordering::Relaxed)
                        );
                    }
                }
            },
        );
        section(
            "toxiproxy_proxy_sent_bytes_total",
            "Bytes written by the proxy, per direction, counted as they leave.",
            "counter",
            &mut |o| {
                for p in &proxies {
                    for (i, d) in dirs.iter().enumerate() {
                        let _ = writeln!(
                            o,
                            "toxiproxy_proxy_sent_bytes_total{{direction=\"{d}\",{}}} {}",
                            labels(p),
                            p.metrics.sent[i].load(Ordering::Relaxed)
                        );
                    }
                }
            },
        );
        section(
            "plumb_proxy_zero_copy_bytes_total",
            "Of the bytes sent, those forwarded with splice(2), without a copy through userspace (no toxic applied).",
            "counter",
            &mut |o| {
                for p in &proxies {
                    for (i, d) in dirs.iter().enumerate() {
                        let _ = writeln!(
                            o,
                            "plumb_proxy_zero_copy_bytes_total{{direction=\"{d}\",{}}} {}",
                            labels(p),
                            p.metrics.zero_copy[i].load(Ordering::Relaxed)
                        );
                    }
                }
            },
        );
        section(
            "plumb_proxy_connections_total",
            "Client connections accepted.",
            "counter",
            &mut |o| {
                for p in &proxies {
                    let _ = writeln!(
                        o,
                        "plumb_proxy_connections_total{{{}}} {}",
                        labels(p),
                        p.metrics.connections_total.load(Ordering::Relaxed)
                    );
                }
            },
        );
        section(
            "plumb_proxy_connections_active",
            "Client connections open now.",
            "gauge",
            &mut |o| {
                for p in &proxies {
                    let _ = writeln!(
                        o,
                        "plumb_proxy_connections_active{{{}}} {}",
                        labels(p),
                        p.metrics.connections_active.load(Ordering::Relaxed)
                    );
                }
            },
        );
        section(
            "plumb_proxy_connections_refused_total",
            "Client connections closed at once because the proxy served its most connections already.",
            "counter",
            &mut |o| {
                for p in &proxies {
                    let _ = writeln!(
                        o,
                        "plumb_proxy_connections_refused_total{{{}}} {}",
                        labels(p),
                        p.metrics.connections_refused.load(Ordering::Relaxed)
                    );
                }
            },
        );
        section(
            "plumb_proxy_toxic_activations_total",
            "Times a toxic was switched on for a connection.",
            "counter",
            &mut |o| {
                for p in &proxies {
                    for ((name, kind), n) in lock(&p.metrics.activations).iter() {
                        let _ = writeln!(
                            o,
                            "plumb_proxy_toxic_activations_total{{proxy=\"{}\",toxic=\"{}\",type=\"{kind}\"}} {n}",
                            esc(&p.name),
                            esc(name)
                        );
                    }
                }
            },
        );
        out
    }
}
