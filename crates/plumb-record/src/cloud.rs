//! Watching a cloud's instance metadata for an interruption notice.
//!
//! Spot and preemptible machines get a short warning before they are taken
//! away, published in the instance-metadata service on a link-local
//! address:
//!
//! - AWS: `GET /latest/meta-data/spot/instance-action` answers 404 until the
//!   instance is marked, then a JSON document (`{"action": "terminate",
//!   "time": "..."}`), about two minutes ahead. IMDSv2 needs a session
//!   token first: `PUT /latest/api/token` with
//!   `X-aws-ec2-metadata-token-ttl-seconds`, then every `GET` carries it in
//!   `X-aws-ec2-metadata-token`.
//! - GCP: `GET /computeMetadata/v1/instance/preempted` with
//!   `Metadata-Flavor: Google` answers `TRUE` or `FALSE`, about 30 s ahead.
//! - Azure: `GET /metadata/scheduledevents?api-version=2020-07-01` with
//!   `Metadata: true` lists scheduled events; one with `EventType` `Preempt`
//!   for this machine is the notice, at least 30 s ahead.
//! - Any other URL: a 2xx answer whose body is neither empty nor `false` is
//!   a notice; 404 (or an empty or `false` body) means none.
//!
//! The services speak plain HTTP on the local link (https is refused), and
//! are asked through plumb's one HTTP client, [`plumb_http`], with short
//! timeouts and a small body cap. A poll runs on its own thread and stops
//! with the run. An unreachable service is reported once as a warning (on
//! the run too), never a failure of the job.

use crate::signals::Warner;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The documented link-local address of the AWS, GCP and Azure metadata
/// services (GCP's `metadata.google.internal` resolves to it too; the
/// address avoids depending on DNS).
pub const DEFAULT_METADATA_BASE: &str = "http://169.254.169.254";

/// How often AWS recommends polling for the spot notice.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long one request may take: the services answer in milliseconds
/// where they exist, and where they do not the connection should fail
/// quickly rather than hold the poll thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Bodies larger than this are cut: notices are a few hundred bytes.
const MAX_BODY: u64 = 1 << 20;

/// Which service is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// AWS spot instance-action, IMDSv2.
    Aws,
    /// GCP instance/preempted.
    Gcp,
    /// Azure Scheduled Events, `Preempt`.
    Azure,
    /// A URL given in full.
    Url,
}

/// What to poll and how often.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    /// The service.
    pub provider: Provider,
    /// The metadata base URL, or the full URL for [`Provider::Url`].
    url: HttpUrl,
    /// The URL as given, for messages and the eviction record.
    shown: String,
    /// Time between polls.
    pub interval: Duration,
}

/// A bad `--watch-cloud`, `--metadata-url` or `--watch-interval`.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Neither a known provider nor an http URL.
    #[error("unknown cloud `{0}`: use aws, gcp, azure or an http:// URL to poll")]
    UnknownCloud(String),
    /// A URL that this client cannot poll.
    #[error("bad metadata URL `{url}`: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A zero interval would poll in a busy loop.
    #[error("the watch interval must be longer than zero")]
    ZeroInterval,
}

impl CloudWatch {
    /// `spec` is `aws`, `gcp`, `azure` or a full `http://` URL; `base`
    /// overrides the providers' metadata address.
    pub fn new(spec: &str, base: Option<&str>, interval: Duration) -> Result<Self, CloudError> {
        if interval.is_zero() {
            return Err(CloudError::ZeroInterval);
        }
        let provider = match spec.trim().to_ascii_lowercase().as_str() {
            "aws" | "ec2" => Provider::Aws,
            "gcp" | "gce" | "google" => Provider::Gcp,
            "azure" => Provider::Azure,
            s if s.starts_with("http://") || s.starts_with("https://") => Provider::Url,
            _ => return Err(CloudError::UnknownCloud(spec.to_string())),
        };
        let shown = match (&provider, base) {
            (Provider::Url, _) => spec.trim().to_string(),
            (_, Some(b)) => b.trim().trim_end_matches('/').to_string(),
            (_, None) => DEFAULT_METADATA_BASE.to_string(),
        };
        Ok(CloudWatch {
            url: HttpUrl::parse(&shown)?,
            provider,
            shown,
            interval,
        })
    }

    /// The name recorded as the eviction's source: the provider, or the URL.
    pub fn source(&self) -> String {
        match self.provider {
            Provider::Aws => "aws".into(),
            Provider::Gcp => "gcp".into(),
            Provider::Azure => "azure".into(),
            Provider::Url => self.shown.clone(),
        }
    }

    /// Asks the service once. `Ok(Some(detail))` is a notice.
    pub fn poll_once(&self) -> Result<Option<String>, String> {
        Poller::new(self.clone()).poll()
    }
}

/// A metadata URL, checked (plain http, a host, a numeric port) and split.
#[derive(Debug, Clone)]
struct HttpUrl {
    /// `host:port`, for connecting and for the Host header.
    authority: String,
    /// Path and query of the base, without a trailing slash (or `/`).
    path: String,
}

impl HttpUrl {
    fn parse(url: &str) -> Result<HttpUrl, CloudError> {
        let bad = |why| CloudError::BadUrl {
            url: url.to_string(),
            why,
        };
        if url.starts_with("https://") {
            return Err(bad(
                "https is not supported: metadata services speak plain http on the local link",
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("it must start with http://"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
            return Err(bad("it needs a host name or address after http://"));
        }
        // An IPv6 literal keeps its colons inside brackets; a port, if
        // any, follows the last colon outside them.
        let port = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => Some(&host[i + 1..]),
            _ => None,
        };
        let authority = match port {
            Some(p) if p.parse::<u16>().is_ok() => host.to_string(),
            Some(_) => return Err(bad("its port is not a number from 0 to 65535")),
            None => format!("{host}:80"),
        };
        Ok(HttpUrl {
            authority,
            path: path.to_string(),
        })
    }

    /// The request target for `suffix` below this URL's path.
    fn target(&self, suffix: &str) -> String {
        let t = format!("{}{suffix}", self.path.trim_end_matches('/'));
        if t.is_empty() { "/".into() } else { t }
    }
}

/// The client for the service at `url`: plain http, [`REQUEST_TIMEOUT`]
/// per request (connection included), bodies up to [`MAX_BODY`].
fn client(url: &HttpUrl) -> Result<plumb_http::Client, String> {
    plumb_http::Client::new(&plumb_http::Config {
        timeout: REQUEST_TIMEOUT,
        max_body: MAX_BODY,
        // The service is on the local link: a proxy could not reach it.
        env_proxy: false,
        ..plumb_http::Config::new(format!("http://{}", url.authority)).service("metadata service")
    })
    .map_err(|e| e.to_string())
}

/// One exchange: (status, body), whatever the status.
fn request(
    client: &plumb_http::Client,
    method: plumb_http::Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    let mut req = client.request(method, target).header("Accept", "*/*");
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = req.send_any().map_err(|e| e.to_string())?;
    Ok((resp.status, resp.body))
}

/// Polls one service, keeping what it needs between polls.
struct Poller {
    watch: CloudWatch,
    /// The client, made at the first poll (or the reason it cannot be).
    client: Option<plumb_http::Client>,
    /// The AWS IMDSv2 session token.
    aws_token: Option<String>,
    /// This machine's name in Azure, to tell its events from its
    /// neighbours'; `Some("")` when it could not be learned.
    azure_name: Option<String>,
}

/// How long an AWS token is asked to live: the service's maximum, six
/// hours; a 401 fetches a new one anyway.
const AWS_TOKEN_TTL: &str = "21600";

impl Poller {
    fn new(watch: CloudWatch) -> Poller {
        Poller {
            watch,
            client: None,
            aws_token: None,
            azure_name: None,
        }
    }

    fn poll(&mut self) -> Result<Option<String>, String> {
        let url = self.watch.url.clone();
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = client(&url)?;
                self.client = Some(c.clone());
                c
            }
        };
        let (get, put) = (plumb_http::Method::GET, plumb_http::Method::PUT);
        let unexpected = |status: u16, target: &str, body: &[u8]| {
            format!(
                "GET http://{}{target}: unexpected status {status}: {}",
                url.authority,
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            )
        };
        match self.watch.provider {
            Provider::Aws => {
                let target = url.target("/latest/meta-data/spot/instance-action");
                for _ in 0..2 {
                    let token = match &self.aws_token {
                        Some(t) => t.clone(),
                        None => {
                            let t = url.target("/latest/api/token");
                            let (status, body) = request(
                                &client,
                                put.clone(),
                                &t,
                                &[("X-aws-ec2-metadata-token-ttl-seconds", AWS_TOKEN_TTL)],
                            )?;
                            if status != 200 {
                                return Err(unexpected(status, &t, &body));
                            }
                            let token = String::from_utf8_lossy(&body).trim().to_string();
                            self.aws_token = Some(token.clone());
                            token
                        }
                    };
                    let (status, body) = request(
                        &client,
                        get.clone(),
                        &target,
                        &[("X-aws-ec2-metadata-token", &token)],
                    )?;
                    match status {
                        200 => return Ok(Some(String::from_utf8_lossy(&body).trim().to_string())),
                        404 => return Ok(None),
                        // The token expired: fetch a new one and ask again.
                        401 => self.aws_token = None,
                        _ => return Err(unexpected(status, &target, &body)),
                    }
                }
                Err(format!(
                    "GET http://{}{target}: the metadata service refused a fresh token",
                    url.authority
                ))
            }
            Provider::Gcp => {
                let target = url.target("/computeMetadata/v1/instance/preempted");
                let (status, body) =
                    request(&client, get, &target, &[("Metadata-Flavor", "Google")])?;
                if status != 200 {
                    return Err(unexpected(status, &target, &body));
                }
                let text = String::from_utf8_lossy(&body).trim().to_string();
                Ok(text
                    .eq_ignore_ascii_case("true")
                    .then(|| format!("instance/preempted: {text}")))
            }
            Provider::Azure => {
                let target = url.target("/metadata/scheduledevents?api-version=2020-07-01");
                let (status, body) = request(&client, get, &target, &[("Metadata", "true")])?;
                if status != 200 {
                    return Err(unexpected(status, &target, &body));
                }
                let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    format!(
                        "GET http://{}{target}: the scheduled events are not JSON: {e}",
                        url.authority
                    )
                })?;
                let preempts: Vec<&serde_json::Value> = doc["Events"]
                    .as_array()
                    .map(|events| {
                        events
                            .iter()
                            .filter(|e| e["EventType"] == "Preempt")
                            .collect()
                    })
                    .unwrap_or_default();
                if preempts.is_empty() {
                    return Ok(None);
                }
                let name = self.azure_name(&client).to_string();
                Ok(preempts
                    .into_iter()
                    .find(|e| {
                        let resources = e["Resources"].as_array();
                        // An event names the machines it affects; without
                        // our own name we cannot tell, and a false alarm
                        // (a checkpoint and a restart) costs less than a
                        // missed one.
                        name.is_empty()
                            || resources
                                .is_none_or(|r| r.is_empty() || r.iter().any(|r| r == &name))
                    })
                    .map(|e| e.to_string()))
            }
            Provider::Url => {
                let target = url.target("");
                let (status, body) = request(&client, get, &target, &[])?;
                match status {
                    200..=299 => {
                        let text = String::from_utf8_lossy(&body).trim().to_string();
                        Ok((!text.is_empty() && !text.eq_ignore_ascii_case("false"))
                            .then_some(text))
                    }
                    404 => Ok(None),
                    _ => Err(unexpected(status, &target, &body)),
                }
            }
        }
    }

    /// This VM's name from Azure's instance metadata, asked once.
    fn azure_name(&mut self, client: &plumb_http::Client) -> &str {
        if self.azure_name.is_none() {
            let url = &self.watch.url;
            let target =
                url.target("/metadata/instance/compute/name?api-version=2021-02-01&format=text");
            let name = match request(
                client,
                plumb_http::Method::GET,
                &target,
                &[("Metadata", "true")],
            ) {
                Ok((200, body)) => String::from_utf8_lossy(&body).trim().to_string(),
                _ => String::new(),
            };
            self.azure_name = Some(name);
        }
        self.azure_name.as_deref().unwrap_or("")
    }
}

/// Stops the poll thread when dropped (when the run ends).
#[derive(Debug)]
pub(crate) struct Watcher {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

/// Starts polling. A notice starts the eviction through `warner`; a
/// service that cannot be asked is reported once, into `warnings` (which
/// end up on the run) and the log. The thread is not joined: a request in
/// flight may take up to its timeout, and the run should not wait for it.
pub(crate) fn watch(
    watch: CloudWatch,
    warner: Warner,
    warnings: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<Watcher> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let stop2 = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("plumb-cloud".into())
        .spawn(move || {
            let source = watch.source();
            let interval = watch.interval;
            let mut poller = Poller::new(watch);
            let mut reported = false;
            let (flag, cv) = &*stop2;
            loop {
                if *flag.lock().unwrap_or_else(|e| e.into_inner()) || warner.done() {
                    return;
                }
                match poller.poll() {
                    Ok(Some(detail)) => {
                        warner.warn(&source, Some(detail));
                        return;
                    }
                    Ok(None) => {}
                    Err(error) if !reported => {
                        reported = true;
                        tracing::warn!(%source, %error, "cannot read the interruption notice; the job goes on, and polling continues");
                        warnings
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("cloud notice ({source}) unreadable: {error}"));
                    }
                    Err(error) => tracing::debug!(%source, %error, "interruption notice still unreadable"),
                }
                let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = cv
                    .wait_timeout_while(guard, interval, |stopped| !*stopped)
                    .unwrap_or_else(|e| e.into_inner());
                if *guard {
                    return;
                }
            }
        })?;
    Ok(Watcher { stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_and_urls_parse() {
        let w = CloudWatch::new("aws", None, DEFAULT_INTERVAL).unwrap();
        assert_eq!(w.provider, Provider::Aws);
        assert_eq!(w.url.authority, "169.254.169.254:80");
        assert_eq!(
            w.url.target("/latest/api/token"),
            "/latest/api/token".to_string()
        );
        let w = CloudWatch::new("GCP", Some("http://127.0.0.1:8080/"), DEFAULT_INTERVAL).unwrap();
        assert_eq!(w.url.authority, "127.0.0.1:8080");
        assert_eq!(w.source(), "gcp");
        let w = CloudWatch::new("http://localhost:9/notice?x=1", None, DEFAULT_INTERVAL).unwrap();
        assert_eq!(w.provider, Provider::Url);
        assert_eq!(w.url.target(""), "/notice?x=1");
        assert_eq!(w.source(), "http://localhost:9/notice?x=1");
    }

    #[test]
    fn bad_clouds_and_urls_are_named() {
        let e = CloudWatch::new("oracle", None, DEFAULT_INTERVAL).unwrap_err();
        assert!(e.to_string().contains("unknown cloud `oracle`"), "{e}");
        let e = CloudWatch::new("https://x/y", None, DEFAULT_INTERVAL).unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        let e = CloudWatch::new("aws", Some("ftp://x"), DEFAULT_INTERVAL).unwrap_err();
        assert!(e.to_string().contains("`ftp://x`"), "{e}");
        let e = CloudWatch::new("aws", Some("http://h:port"), DEFAULT_INTERVAL).unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        assert!(matches!(
            CloudWatch::new("aws", None, Duration::ZERO),
            Err(CloudError::ZeroInterval)
        ));
    }

    #[test]
    fn an_unreachable_service_is_an_error_not_a_notice() {
        // A port nobody listens on: bind one, learn its number, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let w = CloudWatch::new("gcp", Some(&base), DEFAULT_INTERVAL).unwrap();
        let e = w.poll_once().unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
