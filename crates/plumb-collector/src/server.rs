//! Accepting and serving connections with limits a hostile client cannot
//! get around: a deadline for request headers (which also closes idle
//! keep-alive connections, as hyper times the wait for the next request's
//! headers), a deadline for a request's whole body ([`body_deadline`],
//! answered 408), and a cap on open connections that sheds the oldest one
//! when a new one arrives, so a crowd of idle or slow connections cannot
//! lock everyone else out. Accept errors (out of descriptors) back off
//! from 50 ms to 500 ms instead of spinning, and shed the oldest connection
//! to free a descriptor.

use crate::{CollectorError, ServerLimits};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// A connection's byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Where connections come from.
pub(crate) enum Incoming {
    /// Plain TCP.
    Tcp(TcpListener),
    /// Connections whose TLS handshake completed.
    Tls(crate::tls::TlsListener),
}

impl Incoming {
    async fn next(&mut self) -> std::io::Result<(Box<dyn Io>, SocketAddr)> {
        match self {
            Incoming::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer))
            }
            Incoming::Tls(l) => {
                let (s, peer) = l.next().await;
                Ok((Box::new(s), peer))
            }
        }
    }
}

/// The most connections served at once: the configured cap, lowered to
/// leave a quarter of the process's descriptor limit (at least 32) for the
/// store, listeners and outgoing requests, so the cap is reached before
/// the descriptors run out.
pub fn effective_max_connections(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur as usize
    } else {
        usize::MAX
    };
    let reserve = (soft / 4).max(32);
    configured.min(soft.saturating_sub(reserve)).max(1)
}

fn fd_exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Serves `app` on `incoming` with `limits` until `shutdown` completes,
/// then asks every connection to finish its request and close, and waits
/// for them (at most the body deadline).
pub(crate) async fn serve(
    app: Router,
    mut incoming: Incoming,
    limits: Arc<ServerLimits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let cap = effective_max_connections(limits.max_connections);
    tracing::debug!(max_connections = cap, "serving");
    // Open connections by age: the key grows with each accept, so the
    // first entry is the oldest. Each holds the sender that asks it to close.
    let mut open: BTreeMap<u64, watch::Sender<bool>> = BTreeMap::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<u64>();
    let mut next_id: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::ZERO;
    let mut accept_errors: u64 = 0;
    let mut shed: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(id) = ended.recv() => {
                open.remove(&id);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = incoming.next() => match accepted {
                Ok((io, peer)) => {
                    if accept_errors > 0 {
                        tracing::info!(failed = accept_errors, "accepting connections again");
                    }
                    backoff = Duration::ZERO;
                    accept_errors = 0;
                    while open.len() >= cap {
                        let Some((_, close)) = open.pop_first() else { break };
                        let _ = close.send(true);
                        shed += 1;
                        // One line per 100 shed, so a flood does not flood
                        // the log too.
                        if shed % 100 == 1 {
                            tracing::warn!(
                                max_connections = cap,
                                shed,
                                "connection limit reached: closing the oldest connections (idle ones at once, busy ones after their response)"
                            );
                        }
                    }
                    let (close_tx, close_rx) = watch::channel(false);
                    let id = next_id;
                    next_id += 1;
                    open.insert(id, close_tx);
                    let ended_tx = ended_tx.clone();
                    let app = app.clone();
                    let limits = limits.clone();
                    tasks.spawn(async move {
                        connection(app, io, peer, &limits, close_rx).await;
                        let _ = ended_tx.send(id);
                    });
                }
                Err(e) => {
                    accept_errors += 1;
                    if fd_exhausted(&e) {
                        // Free a descriptor for the next accept: the oldest
                        // connection goes, as when the cap is reached.
                        if let Some((_, close)) = open.pop_first() {
                            let _ = close.send(true);
                        }
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_millis(500));
                    // The first failure and then one in a hundred are
                    // logged: a descriptor shortage must not become a log
                    // flood.
                    if accept_errors % 100 == 1 {
                        tracing::warn!(error = %e, failed = accept_errors, retry_in_ms = backoff.as_millis() as u64, "cannot accept a connection");
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
    for close in open.values() {
        let _ = close.send(true);
    }
    drop(open);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.body_timeout + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were dropped");
    }
    Ok(())
}

async fn connection(
    app: Router,
    io: Box<dyn Io>,
    peer: SocketAddr,
    limits: &ServerLimits,
    mut close: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = close.wait_for(|c| *c) => {}
    }
    // Asked to close: an idle connection closes now, a busy one after its
    // response, and the body deadline bounds how long that takes.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.body_timeout + Duration::from_secs(1), conn).await;
}

/// Middleware: the request's body must arrive in full within the body
/// deadline; past it, reading the body fails with [`BodyDeadline`], which
/// the body readers answer with 408.
pub(crate) async fn body_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        limit,
        sleep: Box::pin(tokio::time::sleep(limit)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The error a body read fails with past the body deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s, the body deadline", .0.as_secs())]
pub struct BodyDeadline(pub Duration);

struct DeadlineBody {
    inner: Body,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` (a body read's error) is the body deadline passing.
pub fn is_body_deadline<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyDeadline> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(d) = c.downcast_ref::<BodyDeadline>() {
            return Some(d);
        }
        cur = c.source();
    }
    None
}
