//! UDP proxies: one upstream socket per client address ("session"), with
//! datagram toxics (latency, loss, duplicate, reorder) applied per datagram.

use crate::model::{Stream, ToxicKind};
use crate::proxy::ActiveGuard;
use crate::proxy::{Proxy, ToxicSet, dir_index};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// A session with no traffic for this long is closed.
const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Datagrams queued per session before new ones are dropped, as a full
/// socket buffer would.
const SESSION_QUEUE: usize = 1024;
/// Sessions are swept for closed ones when the table grows past this.
const SWEEP_AT: usize = 4096;

pub(crate) async fn run(
    sock: Arc<UdpSocket>,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    tracing::debug!(proxy = %proxy.name, %error, "udp receive failed");
                    continue;
                }
            },
        };
        proxy.metrics.received[0].fetch_add(n as u64, Ordering::Relaxed);
        let tx = match sessions.get(&peer) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                tokio::spawn(session(
                    Arc::clone(&sock),
                    Arc::clone(&proxy),
                    Arc::clone(&upstream),
                    peer,
                    rx,
                    stop.clone(),
                ));
                sessions.insert(peer, tx.clone());
                tx
            }
        };
        let _ = tx.try_send(buf[..n].to_vec());
        if sessions.len() > SWEEP_AT {
            sessions.retain(|_, tx| !tx.is_closed());
        }
    }
}

/// Where a datagram goes.
#[derive(Clone)]
enum Target {
    Upstream(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Target {
    async fn send(&self, data: &[u8]) {
        let r = match self {
            Target::Upstream(s) => s.send(data).await,
            Target::Client(s, peer) => s.send_to(data, peer).await,
        };
        if let Err(error) = r {
            tracing::debug!(%error, "udp send failed");
        }
    }
}

/// Which toxics apply to this session: rolled once per toxic version, like
/// toxicity on a TCP connection.
struct Rolls {
    rolled: HashMap<String, (u64, bool)>,
}

impl Rolls {
    fn active(&mut self, t: &crate::proxy::ToxicEntry, proxy: &Proxy) -> bool {
        if let Some((v, on)) = self.rolled.get(&t.spec.name)
            && *v == t.version
        {
            return *on;
        }
        let on =
            t.spec.toxicity >= 1.0 || (t.spec.toxicity > 0.0 && fastrand::f32() < t.spec.toxicity);
        if on {
            proxy
                .metrics
                .activated(&t.spec.name, t.spec.kind.type_name());
        }
        self.rolled.insert(t.spec.name.clone(), (t.version, on));
        on
    }
}

async fn session(
    listener: Arc<UdpSocket>,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) {
    let m = &proxy.metrics;
    m.connections_total.fetch_add(1, Ordering::Relaxed);
    m.connections_active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&proxy);
    let addr = match tokio::net::lookup_host(&*upstream)
        .await
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            tracing::warn!(proxy = %proxy.name, %upstream, "cannot resolve udp upstream");
            return;
        }
    };
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or(addr);
    let up = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(proxy = %proxy.name, %error, "cannot open udp upstream socket");
            return;
        }
    };
    if let Err(error) = up.connect(addr).await {
        tracing::warn!(proxy = %proxy.name, %upstream, %error, "cannot reach udp upstream");
        return;
    }
    let up = Arc::new(up);
    let toxics = proxy.toxics_rx();
    let mut rolls = Rolls {
        rolled: HashMap::new(),
    };
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            d = rx.recv() => match d {
                Some(d) => {
                    let set = toxics.borrow().clone();
                    deliver(&proxy, &set, &mut rolls, Stream::Upstream, d, Target::Upstream(Arc::clone(&up))).await;
                }
                None => return,
            },
            r = up.recv(&mut buf) => match r {
                Ok(n) => {
                    m.received[1].fetch_add(n as u64, Ordering::Relaxed);
                    let set = toxics.borrow().clone();
                    let target = Target::Client(Arc::clone(&listener), peer);
                    deliver(&proxy, &set, &mut rolls, Stream::Downstream, buf[..n].to_vec(), target).await;
                }
                // ICMP errors (e.g. port unreachable) surface here; the
                // client sees silence, as it would without a proxy.
                Err(_) => continue,
            },
            _ = tokio::time::sleep(SESSION_IDLE) => return,
        }
    }
}

/// Runs one datagram through the toxics of its stream, then sends it (maybe
/// twice, maybe later, maybe never).
async fn deliver(
    proxy: &Arc<Proxy>,
    set: &ToxicSet,
    rolls: &mut Rolls,
    stream: Stream,
    data: Vec<u8>,
    target: Target,
) {
    let mut delay_ms: i64 = 0;
    let mut copies = 1;
    for t in set.iter() {
        if t.spec.stream != stream || !rolls.active(t, proxy) {
            continue;
        }
        match t.spec.kind {
            ToxicKind::Latency { latency, jitter } => {
                let j = if jitter > 0 {
                    fastrand::i64(-jitter..jitter)
                } else {
                    0
                };
                delay_ms += (latency + j).max(0);
            }
            ToxicKind::Loss { per_mille } if fastrand::i64(0..1000) < per_mille => return,
            ToxicKind::Duplicate { per_mille } if fastrand::i64(0..1000) < per_mille => {
                copies += 1;
            }
            ToxicKind::Reorder { per_mille, delay } if fastrand::i64(0..1000) < per_mille => {
                delay_ms += delay;
            }
            _ => {}
        }
    }
    let d = dir_index(stream);
    let sent = (data.len() * copies) as u64;
    if delay_ms == 0 {
        for _ in 0..copies {
            target.send(&data).await;
        }
        proxy.metrics.sent[d].fetch_add(sent, Ordering::Relaxed);
    } else {
        let proxy = Arc::clone(proxy);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms as u64)).await;
            for _ in 0..copies {
                target.send(&data).await;
            }
            proxy.metrics.sent[d].fetch_add(sent, Ordering::Relaxed);
        });
    }
}
