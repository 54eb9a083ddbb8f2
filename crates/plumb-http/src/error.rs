//! The one error of an HTTP exchange, and what it means for the caller:
//! retry it ([`Error::is_retryable`], [`Error::retry_after`]), or tell a
//! person what was refused ([`Error::refusal`]).

use std::path::PathBuf;
use std::time::Duration;

/// How much of a server's message an error keeps: enough to read, not a
/// whole HTML error page.
const MESSAGE_CHARS: usize = 500;

/// What a request can fail with. Every variant that comes from an exchange
/// names the URL and the service (`collector`, `webhook`, ...) it was for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a status other than 2xx.
    #[error("{service} {url} answered {status}: {message}")]
    Status {
        /// What the server is, for people: `collector`, `webhook`, ...
        service: &'static str,
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// The `error` field of its JSON body, else the body text,
        /// truncated.
        message: String,
        /// The server's `Retry-After`, in seconds, when it gave one.
        retry_after: Option<Duration>,
    },
    /// No connection, a timeout, a TLS failure, or the exchange broke off.
    /// (The message is in parentheses, not after a colon: a URL ending in
    /// `/token` followed by `: ...` reads as a credential to plumb's
    /// redactor, which would hide the reason in a run's warnings.)
    #[error("cannot reach {service} {url} ({message})")]
    Transport {
        /// What the server is.
        service: &'static str,
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
        /// Whether the connection was never made (refused, unresolvable,
        /// timed out while connecting): the server saw nothing.
        connect: bool,
    },
    /// The answer came but could not be used: too large, or not what the
    /// caller expected (not JSON, a missing field).
    #[error("unexpected answer from {service} {url}: {message}")]
    Decode {
        /// What the server is.
        service: &'static str,
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The base URL is not an http:// or https:// URL with a host.
    #[error("`{url}` is not a {service} URL: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl {
        /// What the server is.
        service: &'static str,
        /// The URL as given.
        url: String,
    },
    /// The CA certificate file could not be used.
    #[error("CA certificate {path} (PLUMB_CA_CERT): {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be built (a header value with a newline, a
    /// body on a method that takes none).
    #[error("bad request to {service} {url}: {message}")]
    Request {
        /// What the server is.
        service: &'static str,
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

/// The server refused the sender or what it sent ([`Error::refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status: 401, 403 or 413.
    pub status: u16,
    /// What was refused and what to do, e.g. "refused the token (401:
    /// ...): check PLUMB_TOKEN, or `token =` in plumb.toml".
    pub why: String,
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message, when it answered with an error.
    pub fn message(&self) -> Option<&str> {
        match self {
            Error::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The URL asked, when the error came from an exchange.
    pub fn url(&self) -> Option<&str> {
        match self {
            Error::Status { url, .. }
            | Error::Transport { url, .. }
            | Error::Decode { url, .. }
            | Error::Request { url, .. } => Some(url),
            Error::BadUrl { .. } | Error::CaCert { .. } => None,
        }
    }

    /// The server's `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the same request may succeed later by itself: the connection
    /// could not be made, or the server said it is busy or its upstream
    /// failed (429, 502, 503, 504).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { connect, .. } => *connect,
            Error::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether waiting and sending again is worth it at all: retryable
    /// errors, any other transport failure (a timeout mid-answer), and
    /// server errors (5xx, 408). A 4xx other than 408 and 429 is an answer
    /// about the request itself, which sending again does not change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }

    /// For a refusal that waiting will not cure by itself (401, 403, 413),
    /// what the server refused and what to do, in words for people: without
    /// it a wrong token looks like an outage.
    pub fn refusal(&self) -> Option<Refusal> {
        let Error::Status {
            status, message, ..
        } = self
        else {
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

/// The message of an error answer: the `error` field of a JSON body, else
/// the body text, trimmed and cut to [`MESSAGE_CHARS`] characters.
pub(crate) fn server_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(MESSAGE_CHARS).collect();
    if chars.next().is_some() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the servers
/// plumb talks to, and is ignored).
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Error {
        Error::Status {
            service: "collector",
            url: "http://c:7700/x".into(),
            status,
            message: "no".into(),
            retry_after: None,
        }
    }

    #[test]
    fn the_message_is_the_json_error_or_the_cut_body() {
        assert_eq!(server_message(br#"{"error":"bad token"}"#), "bad token");
        assert_eq!(server_message(b"  plain text\n"), "plain text");
        let long = "x".repeat(2000);
        let m = server_message(long.as_bytes());
        assert_eq!(m.chars().count(), MESSAGE_CHARS + 3);
        assert!(m.ends_with("..."));
    }

    #[test]
    fn busy_and_gateway_statuses_retry_and_refusals_do_not() {
        for s in [429, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 500] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        for (s, words) in [
            (401, "PLUMB_TOKEN"),
            (403, "--role agent"),
            (413, "too large"),
        ] {
            let r = status(s).refusal().unwrap();
            assert_eq!(r.status, s);
            assert!(r.why.contains(words) && r.why.contains("no"), "{}", r.why);
        }
        assert!(status(404).refusal().is_none());
    }

    #[test]
    fn errors_name_the_url_and_the_server_message() {
        let shown = status(404).to_string();
        assert_eq!(shown, "collector http://c:7700/x answered 404: no");
    }
}
