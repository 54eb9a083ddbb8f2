/*!
plumb's one blocking HTTP client. Every plumb process that talks HTTP (the
shipper and the agent, the CLI reading a collector, alert webhooks, the
proxy CLI, the cloud-notice poller) does it through a [`Client`] built
from a [`Config`]: one base URL, an optional bearer token (a
[`plumb_model::Secret`], never printed), TLS verified against Mozilla's
roots or only against a private CA (`PLUMB_CA_CERT`), a timeout, a body
size cap, and a retry policy ([`Retry`]) whose waits follow the one
[`Backoff`] schedule.

A failure is one [`Error`] that keeps the URL, the HTTP status and the
server's message, and says whether to retry ([`Error::is_retryable`],
honouring `Retry-After`) or what a person must fix ([`Error::refusal`]).

It is ureq with rustls underneath; it pulls in no async runtime.

```
let client = plumb_http::Client::new(&plumb_http::Config::new("http://127.0.0.1:9")).unwrap();
assert_eq!(client.url("/healthz"), "http://127.0.0.1:9/healthz");
// Nobody listens on port 9: the error names the URL.
let err = client.get("/healthz").send().unwrap_err();
assert!(err.to_string().contains("http://127.0.0.1:9/healthz"), "{err}");
assert!(err.is_retryable());
```
*/
#![deny(missing_docs)]

mod backoff;
mod error;

pub use backoff::{Backoff, BackoffError};
pub use error::{Error, Refusal};
/// The response headers of a [`Response`].
pub use ureq::http::HeaderMap;
/// An HTTP method, for [`Client::request`].
pub use ureq::http::Method;

use plumb_model::Secret;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default cap on a response body: plumb's services answer small JSON;
/// a caller reading more (a run's output) raises it per request.
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;

/// The most of an error answer's body read for its message.
const MAX_ERROR_BODY: u64 = 1 << 20;

/// Connecting never takes longer than this, whatever the request timeout:
/// a server that does not accept within it is away.
const MAX_CONNECT: Duration = Duration::from_secs(5);

/// How often, and after which waits, a request is sent again when it
/// fails in a way that may cure itself ([`Error::is_retryable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included; 1 sends once.
    pub attempts: u32,
    /// The waits in between; a `Retry-After` is a floor (up to the cap).
    pub backoff: Backoff,
}

impl Retry {
    /// Send once, never again.
    pub const NEVER: Retry = Retry {
        attempts: 1,
        backoff: Backoff {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        },
    };

    /// Up to `attempts` attempts with the default backoff.
    pub fn attempts(attempts: u32) -> Retry {
        Retry {
            attempts: attempts.max(1),
            backoff: Backoff::default(),
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::NEVER
    }
}

/// How to reach one server. Its `Debug` hides the token ([`Secret`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL, e.g. `http://collector:7700` or `https://...`; request
    /// paths are appended to it.
    pub url: String,
    /// What the server is, for messages: `collector`, `webhook`, ...
    pub service: &'static str,
    /// Bearer token sent with every request, if any.
    pub token: Option<Secret>,
    /// PEM file with the private CA that signed the server's certificate;
    /// without it, the Mozilla root store is used.
    pub ca_cert: Option<PathBuf>,
    /// Upper bound on one attempt, connection included.
    pub timeout: Duration,
    /// Retries of retryable failures.
    pub retry: Retry,
    /// The largest response body read; larger is an [`Error::Decode`].
    pub max_body: u64,
    /// Whether `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (and `NO_PROXY`)
    /// apply. Off for servers only reachable directly: a cloud's
    /// link-local metadata service, a local proxy admin API.
    pub env_proxy: bool,
}

impl Config {
    /// A config for the collector at `url`: no token, the default roots, a
    /// 60 s timeout, no retries, a 16 MiB body cap.
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            service: "collector",
            token: None,
            ca_cert: None,
            timeout: Duration::from_secs(60),
            retry: Retry::NEVER,
            max_body: DEFAULT_MAX_BODY,
            env_proxy: true,
        }
    }

    /// The same, naming the server `service` in messages.
    pub fn service(mut self, service: &'static str) -> Config {
        self.service = service;
        self
    }

    /// The same with a token and CA file from `PLUMB_TOKEN` and
    /// `PLUMB_CA_CERT` when they are set and not blank.
    pub fn from_env(mut self) -> Config {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        self.token = var("PLUMB_TOKEN").map(Secret::from);
        self.ca_cert = var("PLUMB_CA_CERT").map(PathBuf::from);
        self
    }
}

/// A blocking client of one server, or of several interchangeable ones
/// (collectors on one shared store): the configured URL may list several,
/// separated by commas, and a request that cannot reach the current one,
/// or finds it unavailable (502, 503, 504), goes to the next in turn, which
/// becomes current once it answers. Cheap to clone: clones share one
/// connection pool and the current server. Its `Debug` hides the token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: Arc<str>,
    /// Every server's base URL, the first being `base`.
    bases: Arc<[Arc<str>]>,
    /// The index in `bases` of the server that answered last.
    current: Arc<std::sync::atomic::AtomicUsize>,
    /// The URL as configured (trimmed), asked for an empty path: a
    /// webhook's URL is used exactly as given, trailing slash and all.
    given: Arc<str>,
    service: &'static str,
    token: Option<Secret>,
    retry: Retry,
    max_body: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("service", &self.service)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client. Fails on a malformed URL or an unusable CA file,
    /// so a bad setting is reported before any request.
    pub fn new(config: &Config) -> Result<Client, Error> {
        let mut bases: Vec<Arc<str>> = Vec::new();
        for url in config.url.split(',') {
            let base = url.trim().trim_end_matches('/').to_string();
            let host = base
                .strip_prefix("http://")
                .or_else(|| base.strip_prefix("https://"));
            if host.is_none_or(|h| {
                h.is_empty() || h.starts_with('/') || h.contains(char::is_whitespace)
            }) {
                return Err(Error::BadUrl {
                    service: config.service,
                    url: if config.url.contains(',') {
                        url.trim().to_string()
                    } else {
                        config.url.clone()
                    },
                });
            }
            bases.push(base.into());
        }
        let base = bases[0].clone();
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &config.ca_cert {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca(path)?));
        }
        let mut builder = ureq::Agent::config_builder();
        if !config.env_proxy {
            builder = builder.proxy(None);
        }
        let agent: ureq::Agent = builder
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(MAX_CONNECT)))
            .tls_config(tls.build())
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            bases: bases.into(),
            current: Arc::default(),
            given: config.url.split(',').next().unwrap_or("").trim().into(),
            service: config.service,
            token: config.token.clone(),
            retry: config.retry,
            max_body: config.max_body,
        })
    }

    /// The base URL of the server that answered last (the first listed
    /// until another answers), without a trailing slash.
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    /// Every server's base URL, in the order they are tried.
    pub fn bases(&self) -> impl Iterator<Item = &str> {
        self.bases.iter().map(|b| &**b)
    }

    /// The full URL of `path` (which starts with `/`, or is empty for the
    /// configured URL itself, exactly as given) on the current server.
    pub fn url(&self, path: &str) -> String {
        self.url_on(self.base(), path)
    }

    fn url_on(&self, base: &str, path: &str) -> String {
        if path.is_empty() {
            return self.given.to_string();
        }
        format!("{base}{path}")
    }

    /// A request of any method to `path`.
    pub fn request(&self, method: Method, path: &str) -> Request<'_> {
        Request {
            client: self,
            method,
            path: path.to_string(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            gzip: false,
            max_body: self.max_body,
        }
    }

    /// A GET of `path`.
    pub fn get(&self, path: &str) -> Request<'_> {
        self.request(Method::GET, path)
    }

    /// A POST to `path`.
    pub fn post(&self, path: &str) -> Request<'_> {
        self.request(Method::POST, path)
    }

    /// A PUT to `path`.
    pub fn put(&self, path: &str) -> Request<'_> {
        self.request(Method::PUT, path)
    }

    /// A PATCH of `path`.
    pub fn patch(&self, path: &str) -> Request<'_> {
        self.request(Method::PATCH, path)
    }

    /// A DELETE of `path`.
    pub fn delete(&self, path: &str) -> Request<'_> {
        self.request(Method::DELETE, path)
    }
}

/// Reads the certificates of a PEM file; one at least.
fn read_ca(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let bad = |reason: String| Error::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// One request being put together; [`Request::send`] sends it.
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request<'c> {
    client: &'c Client,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    gzip: bool,
    max_body: u64,
}

impl Request<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Adds a query parameter (percent-encoded when sent).
    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    /// Adds query parameters.
    pub fn queries<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        for (k, v) in pairs {
            self.query
                .push((k.as_ref().to_string(), v.as_ref().to_string()));
        }
        self
    }

    /// Sends `bytes` as the body, of type `content_type`.
    pub fn bytes(self, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.body(bytes).header("Content-Type", content_type)
    }

    /// Sends `bytes` as the body, with no `Content-Type` unless a header
    /// gives one.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Sends `value` as a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let bytes = serde_json::to_vec(value).expect("a serde value serializes to JSON");
        self.bytes("application/json", bytes)
    }

    /// Compresses the body with gzip (`Content-Encoding: gzip`).
    pub fn gzip(mut self) -> Self {
        self.gzip = true;
        self
    }

    /// Reads at most `bytes` of the answer (instead of the client's cap).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends the request, retrying as the client's [`Retry`] says; an
    /// answer other than 2xx is an [`Error::Status`].
    pub fn send(self) -> Result<Response, Error> {
        self.send_retrying(true)
    }

    /// Sends the request and returns the answer whatever its status; only
    /// a transport failure is an error (and retried when the connection
    /// was never made).
    pub fn send_any(self) -> Result<Response, Error> {
        self.send_retrying(false)
    }

    fn send_retrying(self, status_is_error: bool) -> Result<Response, Error> {
        let retry = self.client.retry;
        let body = match (&self.body, self.gzip) {
            (Some(b), true) => Some(gzip(b)),
            (Some(b), false) => Some(b.clone()),
            (None, _) => None,
        };
        let mut failures = 0;
        loop {
            let result = self.send_to_any(body.as_deref(), status_is_error);
            match result {
                Err(e) if e.is_retryable() && failures + 1 < retry.attempts => {
                    let wait = retry.backoff.next_delay(failures, e.retry_after());
                    tracing::debug!(error = %e, ?wait, attempt = failures + 1, "retrying");
                    std::thread::sleep(wait);
                    failures += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends once to the current server, and on to the others in turn
    /// while one cannot be reached or is unavailable.
    fn send_to_any(&self, body: Option<&[u8]>, status_is_error: bool) -> Result<Response, Error> {
        use std::sync::atomic::Ordering;
        let c = self.client;
        let n = c.bases.len();
        let start = c.current.load(Ordering::Relaxed) % n;
        let mut k = 0;
        loop {
            let i = (start + k) % n;
            let result = self.send_once(&c.bases[i], body, status_is_error);
            let unavailable = match &result {
                Err(Error::Transport { .. }) => true,
                Err(e) => matches!(e.status(), Some(502..=504)),
                Ok(r) => matches!(r.status, 502..=504),
            };
            if unavailable && k + 1 < n {
                tracing::debug!(server = %c.bases[i], "unavailable; trying the next one listed");
                k += 1;
                continue;
            }
            if !unavailable && i != start {
                c.current.store(i, Ordering::Relaxed);
            }
            return result;
        }
    }

    fn send_once(
        &self,
        base: &str,
        body: Option<&[u8]>,
        status_is_error: bool,
    ) -> Result<Response, Error> {
        let c = self.client;
        let url = c.url_on(base, &self.path);
        let agent = &c.agent;
        let auth = c.token.as_ref().map(|t| format!("Bearer {}", t.expose()));
        macro_rules! prepare {
            ($builder:expr) => {{
                let mut b = $builder;
                for (k, v) in &self.query {
                    b = b.query(k, v);
                }
                for (k, v) in &self.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                if self.gzip && body.is_some() {
                    b = b.header("Content-Encoding", "gzip");
                }
                if let Some(a) = &auth {
                    b = b.header("Authorization", a.as_str());
                }
                b
            }};
        }
        let no_body = |method: &Method| -> Result<(), Error> {
            match body {
                Some(_) => Err(Error::Request {
                    service: c.service,
                    url: url.clone(),
                    message: format!("a {method} request carries no body"),
                }),
                None => Ok(()),
            }
        };
        let empty: &[u8] = &[];
        let result = match self.method {
            Method::GET => {
                no_body(&self.method)?;
                prepare!(agent.get(&url)).call()
            }
            Method::HEAD => {
                no_body(&self.method)?;
                prepare!(agent.head(&url)).call()
            }
            Method::DELETE => {
                no_body(&self.method)?;
                prepare!(agent.delete(&url)).call()
            }
            Method::POST => prepare!(agent.post(&url)).send(body.unwrap_or(empty)),
            Method::PUT => prepare!(agent.put(&url)).send(body.unwrap_or(empty)),
            Method::PATCH => prepare!(agent.patch(&url)).send(body.unwrap_or(empty)),
            ref other => {
                return Err(Error::Request {
                    service: c.service,
                    url,
                    message: format!("the method {other} is not supported"),
                });
            }
        };
        let mut resp = result.map_err(|e| transport(c.service, &url, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status_is_error && !(200..300).contains(&status) {
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY)
                .read_to_vec()
                .unwrap_or_default();
            return Err(Error::Status {
                service: c.service,
                url,
                status,
                message: error::server_message(&body),
                retry_after: error::retry_after(
                    headers.get("retry-after").and_then(|v| v.to_str().ok()),
                ),
            });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => Error::Decode {
                    service: c.service,
                    url: url.clone(),
                    message: format!("the answer is larger than {limit} bytes"),
                },
                e => transport(c.service, &url, e),
            })?;
        Ok(Response {
            service: c.service,
            url,
            status,
            headers,
            body,
        })
    }
}

/// A transport failure, with whether the connection was never made.
fn transport(service: &'static str, url: &str, e: ureq::Error) -> Error {
    use std::io::ErrorKind;
    let connect = match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable
        ),
        _ => false,
    };
    let message = match &e {
        ureq::Error::Io(io) if connect => format!("cannot connect: {io}"),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    };
    Error::Transport {
        service,
        url: url.to_string(),
        message,
        connect,
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// An answer: status, headers and the whole body (up to the cap).
#[derive(Debug, Clone)]
pub struct Response {
    service: &'static str,
    /// The URL asked.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, decoded from any transfer encoding.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; a body that does not parse is an
    /// [`Error::Decode`] naming the URL.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(e.to_string()))
    }

    /// An [`Error::Decode`] about this answer, for a caller that found it
    /// unusable.
    pub fn decode_error(&self, message: impl Into<String>) -> Error {
        Error::Decode {
            service: self.service,
            url: self.url.clone(),
            message: message.into(),
        }
    }
}

/// Percent-encodes `s` for use as one path segment (a run reference, a
/// node or proxy name): everything but letters, digits and `-._~`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_config_or_client_never_shows_the_token() {
        let config = Config {
            token: Some(Secret::new("viewer-secret-77ab")),
            ..Config::new("http://127.0.0.1:9")
        };
        let client = Client::new(&config).unwrap();
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{client:?}"),
            format!("{client:#?}"),
        ] {
            assert!(!shown.contains("viewer-secret-77ab"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn bad_urls_and_ca_files_are_named() {
        for bad in ["collector:7700", "ftp://x", "http://", "http:// x"] {
            let e = Client::new(&Config::new(bad)).unwrap_err();
            assert!(matches!(e, Error::BadUrl { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
        let dir = std::env::temp_dir().join(format!("plumb-http-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let e = Client::new(&Config {
            ca_cert: Some(dir.clone()),
            ..Config::new("https://127.0.0.1:9")
        })
        .unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(
            e.to_string().contains(&dir.display().to_string()) && e.to_string().contains("PEM"),
            "{e}"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b/c~d.e_f-9"), "a%20b%2Fc~d.e_f-9");
    }
}
