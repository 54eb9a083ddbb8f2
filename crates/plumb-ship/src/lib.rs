/*!
The client side of plumb's shipping: everything a node sends to the collector
goes through here.

A recorder with a collector configured writes its run to a spool file in the
node's [`Outbox`] (spool files of `plumb_model::frame` frames), and a
[`Shipper`] sends the file's frames in gzip batches to the collector's
`POST /api/v1/ingest/spool`, remembering in a sidecar file (synced) how far
the collector acknowledged. A failed request is retried after an
exponential backoff with full jitter ([`Backoff`]), never sooner than the
server's `Retry-After`. Ingest is idempotent on record ids and chunk
positions, so a batch sent twice (a crash between the reply and the sidecar
write) is stored once. Files fully shipped after their run ended are
deleted. The outbox is bounded: when full, the oldest finished files are
dropped and counted, and `plumb agent` reports the counts to the collector.

This crate is blocking (the one client, `plumb-http`); it pulls in no async
runtime.

```
let dir = tempfile::tempdir().unwrap();
let outbox = plumb_ship::Outbox::open(dir.path(), 1 << 20).unwrap();
assert_eq!(outbox.stats().files, 0);
let b = plumb_ship::Backoff::default();
assert!(b.next_delay(3, None) <= b.ceiling(3));
```
*/
#![deny(missing_docs)]

mod client;
pub mod outbox;
mod shipper;

pub use client::{Client, ClientConfig, Reply};
pub use outbox::{DEFAULT_SPOOL_MAX, Dropped, Outbox, SpoolEntry};
pub use plumb_http::{Backoff, Refusal};
pub use shipper::{
    BackgroundShipper, DEFAULT_BATCH, PassReport, SPOOL_MEDIA_TYPE, SPOOL_PATH, Shipper,
};

use std::path::PathBuf;

/// Everything shipping can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The exchange with the collector failed: a bad URL or CA file, no
    /// connection, or an answer other than 2xx (with its status, message
    /// and `Retry-After`).
    #[error(transparent)]
    Http(#[from] plumb_http::Error),
    /// A local file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ShipError {
    /// For a refusal that waiting will not cure by itself (401, 403, 413),
    /// what the collector refused and what to do
    /// ([`plumb_http::Error::refusal`]).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ShipError::Http(e) => e.refusal(),
            ShipError::Io { .. } => None,
        }
    }

    /// The HTTP status, when the collector answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ShipError::Http(e) => e.status(),
            ShipError::Io { .. } => None,
        }
    }
}
