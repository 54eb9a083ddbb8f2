//! A small blocking client for the admin API, for the `plumb proxy` CLI, for
//! programs that drive a proxy during a run (`plumb demo`), and for tests.
//!
//! It is plumb's one HTTP client ([`plumb_http`]), so it works against this
//! server and against a real Toxiproxy alike, and its errors name the URL,
//! the status and the server's message.

use serde_json::{Value, json};
use std::time::Duration;

/// Errors from [`Client`]: the one client's error.
pub type ClientError = plumb_http::Error;

/// What the admin API is called in messages.
const SERVICE: &str = "proxy admin API";

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked encoding removed.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body parsed as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A client for one admin API address such as `127.0.0.1:8474`.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    /// The client, or the URL it could not be made for (reported by every
    /// call, so that [`Client::new`] stays infallible).
    http: Result<plumb_http::Client, String>,
}

impl Client {
    /// A client for the admin API at `addr` (`host:port`, an optional
    /// `http://` prefix is accepted).
    pub fn new(addr: impl Into<String>) -> Client {
        let addr: String = addr.into();
        let addr = addr
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let url = format!("http://{addr}");
        let http = plumb_http::Client::new(&plumb_http::Config {
            timeout: Duration::from_secs(30),
            // The admin API is reached directly, as Toxiproxy's clients do.
            env_proxy: false,
            ..plumb_http::Config::new(url.clone()).service(SERVICE)
        })
        .map_err(|_| url);
        Client { addr, http }
    }

    /// The admin address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn http(&self) -> Result<&plumb_http::Client, ClientError> {
        self.http.as_ref().map_err(|url| ClientError::BadUrl {
            service: SERVICE,
            url: url.clone(),
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<plumb_http::Request<'_>, ClientError> {
        let http = self.http()?;
        let method = plumb_http::Method::from_bytes(method.as_bytes()).map_err(|_| {
            ClientError::Request {
                service: SERVICE,
                url: http.url(path),
                message: format!("`{method}` is not an HTTP method"),
            }
        })?;
        let req = http.request(method, path);
        Ok(match body {
            Some(b) => req.bytes("application/json", b.to_vec()),
            None => req,
        })
    }

    /// Sends one request with an optional raw body and returns the answer
    /// whatever its status.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<RawResponse, ClientError> {
        let r = self.request(method, path, body)?.send_any()?;
        Ok(RawResponse {
            status: r.status,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.body,
        })
    }

    /// Sends a request with a JSON body; a non-2xx answer is an
    /// [`ClientError::Status`] with the server's message. Returns the JSON
    /// body (`null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = self.request(method, path, bytes.as_deref())?.send()?;
        if r.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        r.json()
    }

    /// `GET /version`: the version string.
    pub fn version(&self) -> Result<String, ClientError> {
        let r = self.request("GET", "/version", None)?.send()?;
        r.json::<Value>()?
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| r.decode_error("no version field"))
    }

    /// `GET /proxies`: every proxy, keyed by name.
    pub fn proxies(&self) -> Result<Value, ClientError> {
        self.call("GET", "/proxies", None)
    }

    /// `POST /proxies`: creates an enabled proxy; `listen` may end in `:0`
    /// for a free port, and the answer holds the bound address.
    pub fn create_proxy(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
    ) -> Result<Value, ClientError> {
        self.call(
            "POST",
            "/proxies",
            Some(&json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true})),
        )
    }

    /// `GET /proxies/{name}`.
    pub fn proxy(&self, name: &str) -> Result<Value, ClientError> {
        self.call(
            "GET",
            &format!("/proxies/{}", plumb_http::encode_segment(name)),
            None,
        )
    }

    /// `PATCH /proxies/{name}` with the given fields.
    pub fn update_proxy(&self, name: &str, fields: &Value) -> Result<Value, ClientError> {
        self.call(
            "PATCH",
            &format!("/proxies/{}", plumb_http::encode_segment(name)),
            Some(fields),
        )
    }

    /// `DELETE /proxies/{name}`.
    pub fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.call(
            "DELETE",
            &format!("/proxies/{}", plumb_http::encode_segment(name)),
            None,
        )
        .map(|_| ())
    }

    /// `POST /proxies/{name}/toxics`, e.g. with
    /// `{"type":"latency","attributes":{"latency":100}}`.
    pub fn add_toxic(&self, proxy: &str, toxic: &Value) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/proxies/{}/toxics", plumb_http::encode_segment(proxy)),
            Some(toxic),
        )
    }

    /// `PATCH /proxies/{name}/toxics/{toxic}`.
    pub fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        fields: &Value,
    ) -> Result<Value, ClientError> {
        self.call(
            "PATCH",
            &format!(
                "/proxies/{}/toxics/{}",
                plumb_http::encode_segment(proxy),
                plumb_http::encode_segment(toxic)
            ),
            Some(fields),
        )
    }

    /// `DELETE /proxies/{name}/toxics/{toxic}`.
    pub fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ClientError> {
        self.call(
            "DELETE",
            &format!(
                "/proxies/{}/toxics/{}",
                plumb_http::encode_segment(proxy),
                plumb_http::encode_segment(toxic)
            ),
            None,
        )
        .map(|_| ())
    }

    /// `POST /reset`.
    pub fn reset(&self) -> Result<(), ClientError> {
        self.call("POST", "/reset", None).map(|_| ())
    }

    /// `POST /populate` with a JSON array of proxies.
    pub fn populate(&self, proxies: &Value) -> Result<Value, ClientError> {
        self.call("POST", "/populate", Some(proxies))
    }

    /// `GET /events?since=N`.
    pub fn events(&self, since: u64) -> Result<Value, ClientError> {
        self.call("GET", &format!("/events?since={since}"), None)
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let r = self.request("GET", "/metrics", None)?.send()?;
        String::from_utf8(r.body.clone()).map_err(|_| r.decode_error("metrics are not UTF-8"))
    }
}
