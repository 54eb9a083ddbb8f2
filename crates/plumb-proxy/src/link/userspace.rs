//! The userspace path: a reader queues chunks, and the toxic chain moves
//! each one through the toxics that apply before it is written.

use super::chain::Chain;
use super::toxics::apply;
use super::{Cx, End, half_close};
use crate::model::Stream;
use crate::proxy::{ToxicSet, dir_index};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

/// Largest read on the userspace path.
const READ_CHUNK: usize = 32 * 1024;
/// Chunks buffered between reader and toxic chain, as in Toxiproxy.
const CHUNK_QUEUE: usize = 1024;

enum Chunk {
    Data(Vec<u8>, Instant),
    Eof,
    Failed(io::Error),
}

pub(super) enum Item {
    Data(Vec<u8>),
    Eof,
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST).
    Reset,
    /// Answer the client with these bytes, then close (HTTP toxics).
    Respond(Vec<u8>),
}

/// A piece of work moving down the chain: it has passed `idx` toxics and may
/// not move on before `wait`.
pub(super) struct Work {
    pub(super) idx: usize,
    /// The chunk's timestamp, as in Toxiproxy: its read time plus the
    /// latency already applied, so each latency toxic in the chain adds its
    /// own delay to what the previous ones left.
    pub(super) at: Instant,
    /// When the chunk was read; the chain starts over from here when it
    /// changes, so a latency toxic that stays is not applied twice.
    pub(super) read: Instant,
    pub(super) wait: Option<Instant>,
    pub(super) item: Item,
}

/// Reads `src` into `tx` until the stream ends, or until `stop` is set:
/// then it reads nothing more and waits (keeping `tx` open) for the caller
/// to drop it, so the queue can drain and the direction reach a safe point.
async fn reader(
    src: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    tx: mpsc::Sender<Chunk>,
    stop: &AtomicBool,
) {
    let d = dir_index(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if stop.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        // A slot in the queue is taken before reading, so the bytes read
        // are queued without awaiting: dropping this future at any await
        // (to go back to zero-copy) never loses data.
        let Ok(slot) = tx.reserve().await else { return };
        if let Err(e) = src.readable().await {
            slot.send(Chunk::Failed(e));
            return;
        }
        match src.try_read(&mut buf) {
            Ok(0) => {
                slot.send(Chunk::Eof);
                return;
            }
            Ok(n) => {
                cx.proxy.metrics.received[d].fetch_add(n as u64, Ordering::Relaxed);
                slot.send(Chunk::Data(buf[..n].to_vec(), Instant::now()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                slot.send(Chunk::Failed(e));
                return;
            }
        }
    }
}

async fn write_all(
    dst: &TcpStream,
    mut buf: &[u8],
    kill: &mut watch::Receiver<bool>,
) -> io::Result<bool> {
    while !buf.is_empty() {
        tokio::select! {
            biased;
            _ = kill.changed() => return Ok(false),
            r = dst.writable() => r?,
        }
        match dst.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What interrupted a wait.
enum Woke {
    Ready,
    Changed,
    Killed,
    TimedOut,
}

async fn wait(
    until: Option<Instant>,
    deadline: Option<Instant>,
    toxics: &mut watch::Receiver<ToxicSet>,
    kill: &mut watch::Receiver<bool>,
) -> Woke {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    tokio::select! {
        biased;
        _ = kill.changed() => Woke::Killed,
        r = toxics.changed() => if r.is_err() { Woke::Killed } else { Woke::Changed },
        _ = sleep_until(deadline.unwrap_or(far)) => Woke::TimedOut,
        _ = sleep_until(until.unwrap_or(far)) => Woke::Ready,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn userspace_path(
    src: &TcpStream,
    dst: &TcpStream,
    stream: Stream,
    cx: &Cx<'_>,
    toxics: &mut watch::Receiver<ToxicSet>,
    kill: &mut watch::Receiver<bool>,
    chain: &mut Chain,
) -> io::Result<Option<End>> {
    let (tx, mut rx) = mpsc::channel(CHUNK_QUEUE);
    // Set once no toxic applies: the reader stops, so what it already queued
    // drains and the direction goes back to zero-copy even while the peer
    // keeps sending faster than the chain empties.
    let stop_reading = AtomicBool::new(false);
    let read = async {
        reader(src, stream, cx, tx, &stop_reading).await;
        // The chain decides when the direction ends.
        std::future::pending::<()>().await
    };
    let process = async {
        let d = dir_index(stream);
        let mut stack: Vec<Work> = Vec::new();
        loop {
            let deadline = chain.deadline();
            if stack.is_empty() && chain.active.is_empty() {
                stop_reading.store(true, Ordering::Relaxed);
            }
            let mut w = match stack.pop() {
                Some(w) => w,
                None if stop_reading.load(Ordering::Relaxed) && rx.is_empty() => {
                    // A safe point: the reader has stopped and nothing it
                    // read is still on its way, so the caller picks the path
                    // again (zero-copy, unless a toxic came back meanwhile).
                    // The reader holds no bytes between its awaits.
                    return Ok(None);
                }
                None => {
                    let far = Instant::now() + Duration::from_secs(86_400 * 365);
                    tokio::select! {
                        biased;
                        _ = kill.changed() => return Ok(Some(End::Killed)),
                        r = toxics.changed() => {
                            if r.is_err() || chain.refresh(toxics, cx.proxy) {
                                return Ok(Some(End::Killed));
                            }
                            continue;
                        }
                        _ = sleep_until(deadline.unwrap_or(far)) => return Ok(Some(End::Killed)),
                        c = rx.recv() => match c {
                            Some(Chunk::Data(data, at)) => Work { idx: 0, at, read: at, wait: None, item: Item::Data(data) },
                            Some(Chunk::Eof) => { let now = Instant::now(); Work { idx: 0, at: now, read: now, wait: None, item: Item::Eof } }
                            Some(Chunk::Failed(e)) => return Err(e),
                            None => return Ok(Some(End::Killed)),
                        },
                    }
                }
            };
            if let Some(until) = w.wait.take() {
                match wait(Some(until), deadline, toxics, kill).await {
                    Woke::Ready => {}
                    Woke::Killed | Woke::TimedOut => return Ok(Some(End::Killed)),
                    Woke::Changed => {
                        if chain.refresh(toxics, cx.proxy) {
                            return Ok(Some(End::Killed));
                        }
                        // Everything still queued runs through the new chain
                        // from its start; latency is measured again from read
                        // time, so a latency toxic that stays is not applied
                        // twice.
                        stack.push(w);
                        for s in stack.iter_mut() {
                            s.idx = 0;
                            s.at = s.read;
                            s.wait = None;
                        }
                        continue;
                    }
                }
            }
            if w.idx >= chain.active.len() {
                match w.item {
                    Item::Data(data) => {
                        if !write_all(dst, &data, kill).await? {
                            return Ok(Some(End::Killed));
                        }
                        cx.proxy.metrics.sent[d].fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Item::Eof => {
                        half_close(dst);
                        return Ok(Some(End::Eof));
                    }
                    Item::Close => return Ok(Some(End::Killed)),
                    Item::Reset => {
                        cx.reset();
                        return Ok(Some(End::Killed));
                    }
                    Item::Respond(bytes) => {
                        let _ = write_all(cx.client, &bytes, kill).await;
                        return Ok(Some(End::Killed));
                    }
                }
                continue;
            }
            let t = Arc::clone(&chain.active[w.idx]);
            apply(&t, w, chain, &mut stack);
        }
    };
    tokio::select! {
        r = process => r,
        _ = read => unreachable!("the reader never finishes on its own"),
    }
}
