//! The collector's one error type, and how it becomes an HTTP response.
//!
//! Every handler returns `Result<_, ApiError>`; the status code and the JSON
//! body `{"error": "..."}` are chosen here and nowhere else, so clients see
//! one shape for every failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumb_store::{ErrorKind, StoreError};

/// Everything a request can fail with, by HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or unknown ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials without the role needed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request contradicts what is stored.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body did not arrive within the body deadline.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: the body is larger than accepted.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a content type or encoding the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the client should slow down and retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What is overloaded.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// 503: the collector cannot take this now (disk full, shutting down);
    /// retry after the given seconds.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// 500: a fault on our side; the message is logged and returned.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Seconds a client waits before retrying a busy store: the writer that
/// holds it (a backup, a `plumb` process on the same file) is usually done
/// within a second.
const BUSY_RETRY_SECS: u64 = 1;

/// Seconds a client waits before retrying when the store cannot write
/// (disk full, read-only, I/O errors): this needs an operator, so retrying
/// often only adds load.
const STORAGE_RETRY_SECS: u64 = 30;

/// The one map from a store failure to an HTTP answer, used by every
/// endpoint (ingest, OTLP, reads, alerts, pages). Conditions that clear by
/// themselves or once an operator acts answer 503 with Retry-After, which
/// every plumb sender and OTLP exporters retry (OTLP/HTTP retries 429, 502,
/// 503 and 504 only, so disk full is 503 rather than 507).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => ApiError::NotFound(e.to_string()),
            ErrorKind::BadInput => ApiError::BadRequest(e.to_string()),
            ErrorKind::Conflict => ApiError::Conflict(e.to_string()),
            ErrorKind::Busy => ApiError::Unavailable {
                message: format!("the collector's store is busy, retry later: {e}"),
                retry_after: BUSY_RETRY_SECS,
            },
            kind @ (ErrorKind::DiskFull | ErrorKind::ReadOnly | ErrorKind::Io) => {
                let why = match kind {
                    ErrorKind::DiskFull => "disk is full",
                    ErrorKind::ReadOnly => "store is read-only",
                    _ => "disk failed to write",
                };
                ApiError::Unavailable {
                    message: format!("the collector's {why}, retry later: {e}"),
                    retry_after: STORAGE_RETRY_SECS,
                }
            }
            ErrorKind::Corrupt | ErrorKind::Other => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// Seconds to send in Retry-After, for the answers that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let retry_after = self.retry_after();
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        let mut resp = (status, body).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"plumb\""),
            );
        }
        resp
    }
}
