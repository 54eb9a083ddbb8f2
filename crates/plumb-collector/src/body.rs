//! Reading request bodies: size limits, content types and gzip, with errors
//! that name what is wrong. Shared by every ingest endpoint.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use std::io::Read;

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
/// the decoded bytes and how many bytes were sent.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<(Bytes, u64), ApiError> {
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
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large(limit)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    let sent = raw.len() as u64;
    if encoding.is_none() {
        return Ok((raw, sent));
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(&raw[..]).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body says Content-Encoding: gzip but is not valid gzip: {e}"
        ))
    })?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body decompresses to more than {} MiB, the largest accepted",
            limit >> 20
        )));
    }
    Ok((Bytes::from(out), sent))
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
