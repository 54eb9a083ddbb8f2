//! A blocking client of the collector's API, and [`RemoteStore`]: the
//! [`plumb_store::RunStore`] of a remote collector, so the CLI reads a
//! collector exactly as it reads the local store.
//!
//! HTTPS certificates are verified against Mozilla's roots, or only against
//! the CA in `ca_cert` when one is given (a private CA).

use crate::runs::{CURSOR_HEADER, OUTPUT_MEDIA_TYPE, SPOOL_MEDIA_TYPE};
use plumb_model::telemetry::{Hit, LogLine, Trace};
use plumb_model::{Fingerprint, Run, Secret, Stream, Uuid};
use plumb_store::spool::ImportStats;
use plumb_store::{OutputCursor, OutputSink, RunFilter, RunStore, RunSummary, SearchOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Where the collector is and how to reach it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, `http://host:7700` or `https://...`.
    pub url: String,
    /// Bearer token, if the collector wants one; `Debug` hides it.
    pub token: Option<Secret>,
    /// PEM file of the CA that signed the collector's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Longest time one request may take.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config for `url` with no token, the default roots and a 60 s
    /// timeout.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: None,
            ca_cert: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a request to the collector can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The collector answered with an error; its message is kept.
    #[error("collector {url} answered {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// The `error` of its JSON body (or the body).
        message: String,
    },
    /// The collector could not be reached, or TLS failed.
    #[error("cannot reach collector {url}: {message}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer did not parse.
    #[error("unexpected answer from collector {url}: {message}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
}

/// A connection to one collector. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<Secret>,
}

/// The largest answer read (output of a big run comes in one answer).
const MAX_ANSWER: u64 = 1 << 30;

impl Client {
    /// A client for `config`; reads the CA file now, so a bad path is
    /// reported at once.
    pub fn new(config: &ClientConfig) -> Result<Client, ClientError> {
        let base = config.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "collector URL `{}` must start with http:// or https://",
                config.url
            )));
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Config(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    ClientError::Config(format!(
                        "CA certificate {} is not valid PEM: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(ClientError::Config(format!(
                    "CA certificate file {} holds no certificate",
                    path.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            token: config.token.clone(),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {}", t.expose())),
            None => req,
        }
    }

    fn check(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let mut resp = result.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(ClientError::Status {
            url: url.to_string(),
            status,
            message,
        })
    }

    /// GET `path` with `query`, as raw bytes and the response headers.
    pub fn get_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(Vec<u8>, ureq::http::HeaderMap), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.auth(self.agent.get(&url));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let mut resp = self.check(&url, req.call())?;
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok((body, headers))
    }

    /// GET `path` with `query`, parsed as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let (body, _) = self.get_raw(path, query)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: format!("{}{path}", self.base),
            message: e.to_string(),
        })
    }

    /// POSTs spool frames (gzipped) to native ingest.
    pub fn post_frames(&self, frames: &[u8]) -> Result<ImportStats, ClientError> {
        use std::io::Write;
        let url = format!("{}/api/v1/ingest/spool", self.base);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(frames)
            .map_err(|e| ClientError::Config(format!("cannot compress: {e}")))?;
        let body = gz
            .finish()
            .map_err(|e| ClientError::Config(format!("cannot compress: {e}")))?;
        let req = self
            .auth(self.agent.post(&url))
            .header("Content-Type", SPOOL_MEDIA_TYPE)
            .header("Content-Encoding", "gzip");
        let mut resp = self.check(&url, req.send(&body[..]))?;
        let bytes = resp
            .body_mut()
            .read_to_vec()
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                message: e.to_string(),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            message: e.to_string(),
        })
    }
}

/// A remote collector seen as a [`RunStore`].
#[derive(Debug, Clone)]
pub struct RemoteStore {
    client: Client,
}

impl RemoteStore {
    /// Reads through `client`.
    pub fn new(client: Client) -> RemoteStore {
        RemoteStore { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The answer of `GET /api/v1/runs/{ref}`; its fingerprint is fetched
/// separately by [`RunStore::run_fingerprint`].
#[derive(serde::Deserialize)]
struct Shown {
    run: Run,
}

impl RunStore for RemoteStore {
    type Error = ClientError;

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunSummary>, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(n) = &f.name {
            q.push(("name", n.clone()));
        }
        if let Some(h) = &f.host {
            q.push(("host", h.clone()));
        }
        if f.failed {
            q.push(("failed", "true".into()));
        }
        if let Some(s) = f.state {
            q.push(("state", s.as_str().into()));
        }
        if let Some(t) = f.since {
            q.push(("since", t.as_nanos().to_string()));
        }
        for (k, v) in &f.tags {
            q.push(("tag", format!("{k}={v}")));
        }
        q.push(("limit", f.limit.to_string()));
        self.client.get_json("/api/v1/runs", &q)
    }

    fn resolve(&self, reference: &str) -> Result<Uuid, ClientError> {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Uuid,
        }
        let id: Id = self
            .client
            .get_json(&format!("/api/v1/runs/{}/id", path_segment(reference)), &[])?;
        Ok(id.id)
    }

    fn get_run(&self, id: Uuid) -> Result<Run, ClientError> {
        let s: Shown = self.client.get_json(&format!("/api/v1/runs/{id}"), &[])?;
        Ok(s.run)
    }

    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>, ClientError> {
        let Some(hash) = &run.fingerprint else {
            return Ok(None);
        };
        match self
            .client
            .get_json(&format!("/api/v1/fingerprints/{}", path_segment(hash)), &[])
        {
            Ok(fp) => Ok(Some(fp)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn trace(&self, reference: &str) -> Result<Trace, ClientError> {
        self.client
            .get_json(&format!("/api/v1/traces/{}", path_segment(reference)), &[])
    }

    fn run_logs(&self, id: Uuid) -> Result<Vec<LogLine>, ClientError> {
        self.client
            .get_json(&format!("/api/v1/telemetry/runs/{id}/logs"), &[])
    }

    fn search(&self, o: &SearchOptions) -> Result<Vec<Hit>, ClientError> {
        let mut q: Vec<(&str, String)> =
            vec![("text", o.text.clone()), ("mode", o.mode.as_str().into())];
        if o.ignore_case {
            q.push(("ignore_case", "true".into()));
        }
        if let Some(h) = &o.host {
            q.push(("host", h.clone()));
        }
        if let Some(r) = &o.run {
            q.push(("run", r.to_string()));
        }
        if let Some(s) = o.stream {
            q.push(("stream", s.as_str().into()));
        }
        if !o.kinds.is_empty() {
            let kinds: Vec<&str> = o.kinds.iter().map(|k| k.as_str()).collect();
            q.push(("kind", kinds.join(",")));
        }
        if let Some(t) = o.since {
            q.push(("since", t.as_nanos().to_string()));
        }
        if let Some(t) = o.until {
            q.push(("until", t.as_nanos().to_string()));
        }
        q.push(("limit", o.limit.to_string()));
        self.client.get_json("/api/v1/search", &q)
    }

    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<(), ClientError> {
        let path = format!("/api/v1/runs/{run_id}/output");
        let url = format!("{}{path}", self.client.base);
        let mut q: Vec<(&str, String)> = vec![(
            "cursor",
            serde_json::to_string(cursor).expect("cursor serializes"),
        )];
        if let Some(s) = only {
            q.push(("stream", s.as_str().into()));
        }
        let (body, headers) = self.client.get_raw(&path, &q)?;
        let decode = |message: String| ClientError::Decode {
            url: url.clone(),
            message,
        };
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct != OUTPUT_MEDIA_TYPE {
            return Err(decode(format!(
                "content type `{ct}`, expected {OUTPUT_MEDIA_TYPE}"
            )));
        }
        crate::runs::decode_replayed(&body, &mut *out).map_err(|e| match e {
            crate::runs::DecodeError::Malformed(message) => decode(message),
            crate::runs::DecodeError::Write(e) => {
                ClientError::Config(format!("cannot write output of run {run_id}: {e}"))
            }
        })?;
        let next = headers
            .get(CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| decode(format!("no {CURSOR_HEADER} header")))?;
        *cursor = serde_json::from_str(next).map_err(|e| decode(format!("bad cursor: {e}")))?;
        Ok(())
    }
}

/// Percent-encodes a run reference or hash for use as one path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
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
    fn debug_of_a_config_client_or_store_hides_the_token() {
        let mut config = ClientConfig::new("http://127.0.0.1:9");
        config.token = Some(Secret::new("viewer-secret-77ab"));
        let client = Client::new(&config).unwrap();
        let store = RemoteStore::new(client.clone());
        for shown in [
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{store:#?}"),
        ] {
            assert!(!shown.contains("viewer-secret-77ab"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
