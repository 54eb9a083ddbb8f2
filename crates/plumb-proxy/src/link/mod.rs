//! Moving bytes: the accept loop, and per connection two directions, each
//! either zero-copy (`splice(2)` through a pipe, while no toxic applies) or a
//! userspace pipeline that runs the toxic chain.
//!
//! A direction starts on the zero-copy path if no toxic applies to it and
//! moves to the userspace path when one does. Once no toxic applies any more
//! and the chain holds nothing (no delayed chunk, nothing queued), it goes
//! back to zero-copy.//!
//! [`splice`] is the zero-copy path, [`userspace`] the other, [`chain`] the
//! per-connection state of the toxics that apply, and [`toxics`] what each
//! toxic does.

mod chain;
mod splice;
mod toxics;
mod userspace;

use crate::model::{Stream, ToxicKind};
use crate::proxy::{ActiveGuard, Proxy, ToxicEntry, ToxicSet};
use chain::{Chain, roll};
use std::net::{IpAddr, Shutdown};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    // A cap per proxy: a loop through proxies, or a client
                    // opening connections without end, stops here instead
                    // of taking every descriptor the process has.
                    if proxy.metrics.connections_active.load(Ordering::Relaxed) >= proxy.max_connections {
                        let refused = proxy.metrics.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
                        if refused % 1000 == 1 {
                            tracing::warn!(proxy = %proxy.name, max_connections = proxy.max_connections, refused, "connection limit reached: closing new connections");
                        }
                        drop(sock);
                        continue;
                    }
                    // Counted here, not in the task, so a burst of accepts
                    // sees the connections before their tasks run.
                    proxy.metrics.connections_active.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(sock, peer.ip(), Arc::clone(&proxy), Arc::clone(&upstream), stop.clone()));
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    // `Proxy::stop` shut the listener down just before
                    // signalling: not a failure, the stop is on its way.
                    let _ = stop.changed().await;
                    return;
                }
                Err(error) => {
                    // Usually out of file descriptors; back off instead of
                    // spinning, and log the first of a run of failures only.
                    failures += 1;
                    if failures % 100 == 1 {
                        tracing::warn!(proxy = %proxy.name, %error, failures, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn set_reset_on_close(s: &TcpStream) {
    // SO_LINGER 0 makes close() send RST and discard unsent data.
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

async fn serve(
    client: TcpStream,
    ip: IpAddr,
    proxy: Arc<Proxy>,
    upstream: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let m = &proxy.metrics;
    m.connections_total.fetch_add(1, Ordering::Relaxed);
    // The accept loop counted it active; the guard counts it out.
    let _active = ActiveGuard(&proxy);
    let toxics = proxy.toxics_rx();

    // Toxics that act on the opening of the connection.
    let open: Vec<Arc<ToxicEntry>> = toxics
        .borrow()
        .iter()
        .filter(|t| t.spec.kind.acts_on_open())
        .cloned()
        .collect();
    for t in open {
        if !roll(&t, ip) {
            continue;
        }
        m.activated(&t.spec.name, t.spec.kind.type_name());
        match t.spec.kind {
            ToxicKind::RefuseOpen => {
                set_reset_on_close(&client);
                return;
            }
            ToxicKind::SlowOpen { delay } => {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(delay as u64)) => {}
                }
            }
            _ => {}
        }
    }

    let server = tokio::select! {
        _ = stop.changed() => return,
        r = TcpStream::connect(&*upstream) => match r {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(proxy = %proxy.name, %upstream, %error, "upstream connect failed");
                return;
            }
        }
    };
    // Latency through the proxy matters more than packet count here.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    for s in [&client, &server] {
        splice::unpace_loopback(s);
    }

    let (kill_tx, _) = watch::channel(false);
    let cx = Cx {
        proxy: &proxy,
        ip,
        kill: &kill_tx,
        client: &client,
        server: &server,
    };
    let up = direction(&client, &server, Stream::Upstream, &cx, toxics.clone());
    let down = direction(&server, &client, Stream::Downstream, &cx, toxics);
    tokio::select! {
        _ = stop.changed() => {}
        _ = async { tokio::join!(up, down) } => {}
    }
    // Both sockets close here: FIN, or RST where a toxic set SO_LINGER 0.
}

/// What one connection's directions share.
pub(super) struct Cx<'a> {
    pub(super) proxy: &'a Proxy,
    pub(super) ip: IpAddr,
    /// Set when the whole connection must end (reset, limit, timeout, error).
    pub(super) kill: &'a watch::Sender<bool>,
    pub(super) client: &'a TcpStream,
    pub(super) server: &'a TcpStream,
}

impl Cx<'_> {
    pub(super) fn kill(&self) {
        // `send` drops the value when no receiver exists yet; the other
        // direction may subscribe later and must still see it.
        self.kill.send_replace(true);
    }
    pub(super) fn reset(&self) {
        set_reset_on_close(self.client);
        set_reset_on_close(self.server);
        self.kill();
    }
}

pub(super) enum End {
    /// The source finished and the end was passed on.
    Eof,
    /// The connection is over.
    Killed,
}

async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    mut toxics: watch::Receiver<ToxicSet>,
) {
    let mut chain = Chain::new(stream, cx.ip);
    if chain.refresh(&mut toxics, cx.proxy) {
        cx.kill();
        return;
    }
    let mut kill = cx.kill.subscribe();
    // A receiver made now counts the current value as seen: if the other
    // direction already ended the connection (say, a reset on the first
    // bytes, read before this direction first ran), `changed()` would never
    // fire and this direction would hold both sockets open forever.
    if *kill.borrow() {
        return;
    }
    // Alternate between the paths: zero-copy while no toxic applies, the
    // userspace chain while one does, and back once the chain is empty
    // and nothing is queued in it.
    loop {
        let r = if chain.active.is_empty() {
            splice::splice_path(src, dst, stream, cx, &mut toxics, &mut kill, &mut chain).await
        } else {
            userspace::userspace_path(src, dst, stream, cx, &mut toxics, &mut kill, &mut chain)
                .await
        };
        match r {
            Ok(Some(End::Eof)) => return,
            Ok(Some(End::Killed)) => {
                cx.kill();
                return;
            }
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!(proxy = %cx.proxy.name, ?stream, %error, "connection ended");
                cx.kill();
                return;
            }
        }
    }
}

pub(super) fn half_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
}
