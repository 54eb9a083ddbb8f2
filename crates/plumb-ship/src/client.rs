//! The collector as the shipper sees it: a [`plumb_http::Client`] with the
//! shipper's settings, posting bodies and reading small JSON answers.

use crate::ShipError;
use plumb_model::Secret;
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
        let http = plumb_http::Config::new(collector).from_env();
        ClientConfig {
            collector: collector.to_string(),
            token: http.token,
            ca_cert: http.ca_cert,
            timeout: Duration::from_secs(20),
        }
    }

    /// The settings of the one HTTP client. Retries are the shipper's
    /// business (a pass is retried after [`crate::Backoff`]), so the
    /// client sends each request once.
    pub fn http(&self) -> plumb_http::Config {
        plumb_http::Config {
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
            timeout: self.timeout,
            ..plumb_http::Config::new(self.collector.clone())
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

/// A blocking client for the collector. Cheap to clone; its `Debug` hides
/// the token.
#[derive(Debug, Clone)]
pub struct Client {
    http: plumb_http::Client,
}

impl Client {
    /// Builds a client. Fails on a malformed URL or an unreadable CA file.
    pub fn new(config: &ClientConfig) -> Result<Client, ShipError> {
        Ok(Client {
            http: plumb_http::Client::new(&config.http())?,
        })
    }

    /// The client underneath, for requests of other shapes.
    pub fn http(&self) -> &plumb_http::Client {
        &self.http
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        self.http.base()
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
        let mut req = self.http.post(path).bytes(content_type, body.to_vec());
        if gzip {
            req = req.gzip();
        }
        for (k, v) in headers {
            req = req.header(k, v.clone());
        }
        Ok(reply(req.send()?))
    }

    /// GETs `path`.
    pub fn get(&self, path: &str) -> Result<Reply, ShipError> {
        Ok(reply(self.http.get(path).send()?))
    }
}

fn reply(r: plumb_http::Response) -> Reply {
    Reply {
        status: r.status,
        body: r.text(),
    }
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
