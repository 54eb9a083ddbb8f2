//! The HTTP client every shipper shares: one base URL, a bearer token, TLS
//! that verifies the collector, and replies classified into what to do next.

use crate::ShipError;
use plumb_model::Secret;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the collector. Its `Debug` hides the token ([`Secret`]).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://collector:7700` or `https://...`.
    pub collector: String,
    /// Bearer token (an agent token for ingest, a viewer token for reads).
    pub token: Option<Secret>,
    /// PEM file with the private CA that signed the collector's certificate
    /// (`PLUMB_CA_CERT`); without it, the Mozilla root store is used.
    pub ca_cert: Option<PathBuf>,
    /// Upper bound on one request, connection included.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config for `collector` with the token and CA from `PLUMB_TOKEN` and
    /// `PLUMB_CA_CERT` when set.
    pub fn from_env(collector: &str) -> ClientConfig {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        ClientConfig {
            collector: collector.to_string(),
            token: var("PLUMB_TOKEN").map(Secret::from),
            ca_cert: var("PLUMB_CA_CERT").map(PathBuf::from),
            timeout: Duration::from_secs(20),
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status (2xx).
    pub status: u16,
    /// Body text.
    pub body: String,
}

/// A blocking HTTP client for the collector.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<Secret>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Replies larger than this are cut: the collector's replies are small JSON.
const MAX_REPLY: u64 = 16 << 20;

impl Client {
    /// Builds a client. Fails on a malformed URL or an unreadable CA file.
    pub fn new(config: &ClientConfig) -> Result<Client, ShipError> {
        let base = config.collector.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 9 {
            return Err(ShipError::BadUrl(config.collector.clone()));
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|source| ShipError::CaCert {
                path: path.clone(),
                reason: source.to_string(),
            })?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(ShipError::CaCert {
                    path: path.clone(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(5))))
            .tls_config(tls.build())
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            token: config.token.clone(),
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `path` (gzip-compressed when `gzip`), with extra
    /// headers; a non-2xx reply is an error saying whether to retry.
    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        gzip: bool,
        headers: &[(&str, String)],
    ) -> Result<Reply, ShipError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.post(&url).header("Content-Type", content_type);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let result = if gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            enc.write_all(body).expect("writing to a Vec cannot fail");
            let compressed = enc.finish().expect("writing to a Vec cannot fail");
            req.header("Content-Encoding", "gzip").send(&compressed[..])
        } else {
            req.send(body)
        };
        Self::classify(&url, result)
    }

    /// GETs `path`.
    pub fn get(&self, path: &str) -> Result<Reply, ShipError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        Self::classify(&url, req.call())
    }

    fn classify(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, ShipError> {
        let mut resp = result.map_err(|e| ShipError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_string()
            .unwrap_or_default();
        match status {
            200..=299 => Ok(Reply { status, body }),
            429 | 503 => Err(ShipError::Busy {
                status,
                retry_after,
                message: error_message(&body),
            }),
            500..=599 | 408 => Err(ShipError::Server {
                status,
                message: error_message(&body),
            }),
            _ => Err(ShipError::Rejected {
                status,
                message: error_message(&body),
            }),
        }
    }
}

/// The collector's `{"error": "..."}`, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_config_or_client_hides_the_token() {
        let config = ClientConfig {
            collector: "http://127.0.0.1:9".into(),
            token: Some(Secret::new("agent-secret-4f1d")),
            ca_cert: None,
            timeout: Duration::from_secs(1),
        };
        let client = Client::new(&config).unwrap();
        for shown in [format!("{config:?}"), format!("{client:#?}")] {
            assert!(!shown.contains("agent-secret-4f1d"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
