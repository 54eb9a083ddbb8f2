//! [`Db`]: the one way async code reaches the store.
//!
//! The collector sees the store only as a [`plumb_store::Backend`], opened
//! through a [`Connector`], so it never names the database behind it.
//! Connections are `Send` but need not be `Sync` (SQLite's are not), and
//! SQLite allows one writer at a time anyway. So one thread owns the
//! writing connection and runs write closures in arrival order, and a small
//! pool of reading connections serves reads on tokio's blocking threads
//! (SQLite's WAL mode lets them read while the writer writes).
//!
//! Log ingest is group-committed: when the writer takes a log request it
//! also takes every log request already waiting behind it and stores them
//! all in one transaction, then answers each. A commit is the writer's
//! fixed cost (WAL frames for every page touched), so under load many
//! senders share it; a request is still answered only after the commit that
//! holds it, so what is acknowledged survives a crash exactly as before.

use crate::error::ApiError;
use plumb_store::telemetry::{Ingested, PreparedLogs};
use plumb_store::{Backend, Connector};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{Semaphore, oneshot};

/// A write to run on the writer thread.
type WriteFn = Box<dyn FnOnce(&dyn Backend) + Send>;

/// Work for the writer thread.
enum Job {
    /// Any write, run on its own.
    Any(WriteFn),
    /// Prepared log records, committed together with other waiting ones.
    Logs(PreparedLogs, oneshot::Sender<plumb_store::Result<Ingested>>),
}

/// The most log requests one transaction takes: enough to share a commit
/// among all of a busy collector's senders, few enough that the first
/// waits little for the last.
const MAX_GROUP: usize = 32;

/// Handle to the store's writer thread and reader pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: mpsc::SyncSender<Job>,
    readers: Arc<ReaderPool>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("readers", &self.readers.size)
            .finish()
    }
}

struct ReaderPool {
    idle: Mutex<Vec<Box<dyn Backend>>>,
    permits: Semaphore,
    size: usize,
}

/// How many write closures may wait for the writer before senders wait too;
/// this is the back-pressure that keeps memory bounded under overload.
const WRITE_QUEUE: usize = 256;

impl Db {
    /// Opens the writing connection (creating the store if need be),
    /// starts the writer thread and opens `readers` reading connections.
    pub fn open(connector: &dyn Connector, readers: usize) -> Result<Db, plumb_store::StoreError> {
        // Connections are made on a thread of their own: a backend's
        // driver may run its own event loop to connect, which cannot start
        // inside the collector's async runtime (this is called from it).
        let (store, idle) = std::thread::scope(|s| {
            s.spawn(|| -> Result<_, plumb_store::StoreError> {
                let store = connector.writer()?;
                let mut idle = Vec::with_capacity(readers.max(1));
                for _ in 0..readers.max(1) {
                    idle.push(connector.reader()?);
                }
                Ok((store, idle))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let (tx, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("plumb-db-writer".into())
            .spawn(move || {
                // Ends when every Db clone (and so every sender) is dropped.
                let mut next = None;
                loop {
                    let job = match next.take() {
                        Some(job) => job,
                        None => match rx.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    match job {
                        Job::Any(f) => f(&*store),
                        Job::Logs(first, reply) => {
                            let mut requests = vec![first];
                            let mut replies = vec![reply];
                            // Take what is already waiting, keeping order:
                            // a different job ends the group and runs next.
                            while requests.len() < MAX_GROUP {
                                match rx.try_recv() {
                                    Ok(Job::Logs(p, r)) => {
                                        requests.push(p);
                                        replies.push(r);
                                    }
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            commit_logs(&*store, requests, replies);
                        }
                    }
                }
            })
            .map_err(|source| plumb_store::StoreError::Io {
                what: "cannot start the store writer thread for",
                path: connector.describe().into(),
                source,
            })?;
        let size = idle.len();
        Ok(Db {
            writer: tx,
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(idle),
                permits: Semaphore::new(size),
                size,
            }),
        })
    }

    /// Runs `f` on the writer thread, after every write submitted before it.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Backend) -> plumb_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Any(Box::new(move |store| {
            let _ = tx.send(f(store));
        }));
        self.submit(job).await?;
        let result = rx.await.map_err(|_| ApiError::Unavailable {
            message: "the store writer stopped before finishing the request".into(),
            retry_after: 5,
        })?;
        Ok(result?)
    }

    /// Stores prepared log records, in one transaction with other log
    /// requests waiting at the same time (see the module documentation).
    /// Answers once the transaction holding them committed. The store's own
    /// error is returned as is, for the caller to map (disk full, busy).
    pub async fn put_logs(
        &self,
        prepared: PreparedLogs,
    ) -> Result<plumb_store::Result<Ingested>, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Logs(prepared, tx)).await?;
        rx.await.map_err(|_| ApiError::Unavailable {
            message: "the store writer stopped before finishing the request".into(),
            retry_after: 5,
        })
    }

    async fn submit(&self, job: Job) -> Result<(), ApiError> {
        let writer = self.writer.clone();
        // The queue is bounded, so sending may block: keep it off the
        // async workers.
        tokio::task::spawn_blocking(move || writer.send(job))
            .await
            .map_err(|e| ApiError::Internal(format!("store writer task failed: {e}")))?
            .map_err(|_| ApiError::Unavailable {
                message: "the store writer has stopped".into(),
                retry_after: 5,
            })?;
        Ok(())
    }

    /// Runs `f` with a read-only store on a blocking thread. It sees every
    /// write that completed before it started.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Backend) -> plumb_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = self.readers.clone();
        let _permit = pool
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Internal("reader pool closed".into()))?;
        let pool2 = pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let lease = Lease {
                store: Some(
                    pool2
                        .idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop()
                        .expect("a permit guarantees an idle reader"),
                ),
                pool: &pool2,
            };
            f(lease.store.as_deref().expect("set above"))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("store reader task failed: {e}")))?;
        Ok(result?)
    }
}

/// Commits a group of log requests in one transaction and answers each.
/// If the group fails, each request is tried alone, so that one request's
/// failure is its own and the others still get stored.
fn commit_logs(
    store: &dyn Backend,
    requests: Vec<PreparedLogs>,
    replies: Vec<oneshot::Sender<plumb_store::Result<Ingested>>>,
) {
    if requests.len() > 1 {
        match store.put_prepared_logs(&requests) {
            Ok(counts) => {
                for (reply, count) in replies.into_iter().zip(counts) {
                    let _ = reply.send(Ok(count));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, requests = requests.len(), "group commit failed; storing its requests one by one");
            }
        }
    }
    for (request, reply) in requests.into_iter().zip(replies) {
        let result = store
            .put_prepared_logs(std::slice::from_ref(&request))
            .map(|c| c.into_iter().next().unwrap_or_default());
        let _ = reply.send(result);
    }
}

/// A reader borrowed from the pool; returned on drop, even if the closure
/// panics, so the pool never shrinks.
struct Lease<'a> {
    store: Option<Box<dyn Backend>>,
    pool: &'a ReaderPool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.store.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(s);
        }
    }
}
