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

This crate is blocking (ureq with rustls); it pulls in no async runtime.

```
let dir = tempfile::tempdir().unwrap();
let outbox = plumb_ship::Outbox::open(dir.path(), 1 << 20).unwrap();
assert_eq!(outbox.stats().files, 0);
let b = plumb_ship::Backoff::default();
assert!(b.next_delay(3, None) <= b.ceiling(3));
```
*/
#![deny(missing_docs)]

mod backoff;
mod client;
pub mod outbox;
mod shipper;

pub use backoff::Backoff;
pub use client::{Client, ClientConfig, Reply};
pub use outbox::{DEFAULT_SPOOL_MAX, Dropped, Outbox, SpoolEntry};
pub use shipper::{
    BackgroundShipper, DEFAULT_BATCH, PassReport, SPOOL_MEDIA_TYPE, SPOOL_PATH, Shipper,
};

use std::path::PathBuf;
use std::time::Duration;

/// Everything shipping can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The collector URL is not `http://...` or `https://...`.
    #[error("`{0}` is not a collector URL: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// The CA certificate file could not be used.
    #[error("CA certificate {path} (PLUMB_CA_CERT): {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection, a timeout, or a TLS failure: retry later.
    #[error("cannot reach the collector at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// 429 or 503: the collector is overloaded or out of disk; retry after
    /// `retry_after` when given.
    #[error("collector busy ({status}): {message}")]
    Busy {
        /// HTTP status.
        status: u16,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
        /// Its message.
        message: String,
    },
    /// Another 5xx: retry later.
    #[error("collector error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// A 4xx other than 429: the request itself was refused.
    #[error("collector refused the request ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
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
    /// what the collector refused and what to do, in words for people:
    /// without it a wrong token looks like an outage.
    pub fn refusal(&self) -> Option<Refusal> {
        let ShipError::Rejected { status, message } = self else {
            return None;
        };
        let why = match status {
            401 => format!(
                "refused the token (401: {message}): check PLUMB_TOKEN, or `token =` in plumb.toml"
            ),
            403 => format!(
                "refused the token's role (403: {message}): shipping needs an agent token (`plumb token create --role agent`)"
            ),
            413 => format!("refused a batch as too large (413: {message})"),
            _ => return None,
        };
        Some(Refusal {
            status: *status,
            why,
        })
    }
}

/// The collector refused the sender or what it sent ([`ShipError::refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status: 401, 403 or 413.
    pub status: u16,
    /// What was refused and what to do, e.g. "refused the token (401:
    /// ...): check PLUMB_TOKEN, or `token =` in plumb.toml".
    pub why: String,
}
