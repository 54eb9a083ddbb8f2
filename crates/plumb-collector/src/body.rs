//! Reading request bodies: size limits, content types and gzip, with errors
//! that name what is wrong. Shared by every ingest endpoint.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest request body accepted, as sent and after gunzip.
pub const MAX_BODY: usize = 64 << 20;

/// The body's media type (without parameters), lowercase.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Refuses a body whose media type is not one of `accepted`.
pub fn expect_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<String, ApiError> {
    match content_type(headers) {
        Some(ct) if accepted.contains(&ct.as_str()) => Ok(ct),
        Some(ct) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type `{ct}` is not accepted here: send {}",
            accepted.join(" or ")
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "the request has no Content-Type: send {}",
            accepted.join(" or ")
        ))),
    }
}

/// Reads the whole body (at most `limit` bytes as sent) and undoes a
/// `Content-Encoding: gzip` (at most `limit` bytes decompressed). Returns
/// the decoded bytes, how many bytes were sent, and the memory they hold,
/// leased from `budget` (keep it while the bytes are in use).
/// Decompression runs on a blocking thread, leasing as the output grows, so
/// a compressed bomb neither stalls the async workers nor takes more
/// memory than the budget has.
pub async fn read(
    budget: &MemoryBudget,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Bytes, u64, Lease), ApiError> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => {
            let e = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Content-Encoding is not ASCII".into()))?
                .trim()
                .to_ascii_lowercase();
            match e.as_str() {
                "" | "identity" => None,
                "gzip" | "x-gzip" => Some("gzip"),
                other => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "Content-Encoding `{other}` is not supported: send gzip or no encoding"
                    )));
                }
            }
        }
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(limit));
    }
    // The body is read before any memory is leased, so a slow sender holds
    // nothing that other requests need; the body deadline bounds the wait.
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| read_error(&e, || too_large(limit)))?;
    let sent = raw.len() as u64;
    let mut lease = budget.lease(sent)?;
    if encoding.is_none() {
        return Ok((raw, sent, lease));
    }
    let (out, lease) = tokio::task::spawn_blocking(move || {
        let mut short = None;
        let out = plumb_otlp::decompress_metered(&raw, Some("gzip"), limit, &mut |n| {
            lease.grow(n as u64).map_err(|s| {
                let m = s.message();
                short = Some(s);
                plumb_otlp::DecodeError::Busy(m)
            })
        });
        match (out, short) {
            (_, Some(s)) => Err(ApiError::from(s)),
            (Ok(out), None) => Ok((Bytes::from(out.into_owned()), lease)),
            (Err(plumb_otlp::DecodeError::TooLarge(_)), None) => {
                Err(ApiError::PayloadTooLarge(format!(
                    "the body decompresses to more than {} MiB, the largest accepted",
                    limit >> 20
                )))
            }
            (Err(e), None) => Err(ApiError::BadRequest(format!(
                "the body says Content-Encoding: gzip but is not valid gzip: {e}"
            ))),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("decompression task failed: {e}")))??;
    Ok((out, sent, lease))
}

/// The answer to a failed body read: 408 past the body deadline, `over`
/// past the size limit, 400 otherwise.
pub fn read_error(e: &axum::Error, over: impl FnOnce() -> ApiError) -> ApiError {
    if let Some(d) = crate::server::is_body_deadline(e) {
        ApiError::RequestTimeout(format!("{d}: send it faster or in smaller requests"))
    } else if is_length_limit(e) {
        over()
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {e}"))
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the body is larger than {} MiB, the largest accepted: send smaller batches",
        limit >> 20
    ))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit exceeded") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Memory for request bodies and what they decode to, shared by every
/// request in flight: each request leases what it needs before it
/// decompresses or decodes, and gives it back when it is answered. A
/// request that does not fit now gets 429 (retry later); one that could
/// never fit gets 413.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    /// The whole budget in KiB (the semaphore's unit).
    total_kib: u32,
}

/// Memory leased from a [`MemoryBudget`], returned when dropped.
#[derive(Debug)]
pub struct Lease {
    budget: MemoryBudget,
    permit: Option<OwnedSemaphorePermit>,
}

/// Why a lease could not grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// Other requests hold the memory now: 429.
    Busy {
        /// The whole budget in bytes.
        total: u64,
    },
    /// More than the whole budget: 413.
    TooLarge {
        /// The whole budget in bytes.
        total: u64,
    },
}

impl Shortfall {
    /// The message for the client.
    pub fn message(&self) -> String {
        match self {
            Shortfall::Busy { total } => format!(
                "the collector's ingest memory ({} MiB) is taken by requests in flight; retry after the delay given",
                total >> 20
            ),
            Shortfall::TooLarge { total } => format!(
                "the request needs more memory than the collector's whole ingest budget ({} MiB): send smaller batches",
                total >> 20
            ),
        }
    }
}

impl From<Shortfall> for ApiError {
    fn from(s: Shortfall) -> ApiError {
        match s {
            Shortfall::Busy { .. } => ApiError::TooManyRequests {
                message: s.message(),
                retry_after: 1,
            },
            Shortfall::TooLarge { .. } => ApiError::PayloadTooLarge(s.message()),
        }
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to KiB, at least 1 MiB).
    pub fn new(bytes: u64) -> MemoryBudget {
        let kib = (bytes >> 10).clamp(1024, u64::from(u32::MAX >> 3)) as u32;
        MemoryBudget {
            sem: Arc::new(Semaphore::new(kib as usize)),
            total_kib: kib,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total_kib) << 10
    }

    /// Bytes not leased now.
    pub fn available(&self) -> u64 {
        (self.sem.available_permits() as u64) << 10
    }

    /// A lease of `bytes` now, or why not.
    pub fn lease(&self, bytes: u64) -> Result<Lease, Shortfall> {
        let mut lease = Lease {
            budget: self.clone(),
            permit: None,
        };
        lease.grow(bytes)?;
        Ok(lease)
    }
}

impl Lease {
    /// Leases `bytes` more, or says why not (keeping what it has).
    pub fn grow(&mut self, bytes: u64) -> Result<(), Shortfall> {
        let kib = bytes.div_ceil(1024);
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let total = self.budget.total();
        if held + kib > u64::from(self.budget.total_kib) {
            return Err(Shortfall::TooLarge { total });
        }
        if kib == 0 {
            return Ok(());
        }
        let more = self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned(kib as u32)
            .map_err(|_| Shortfall::Busy { total })?;
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }

    /// Bytes held (rounded up to KiB).
    pub fn held(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |p| (p.num_permits() as u64) << 10)
    }
}
