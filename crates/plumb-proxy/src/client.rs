//! A small blocking client for the admin API, for the `plumb proxy` CLI, for
//! programs that drive a proxy during a run (`plumb demo`), and for tests.
//!
//! It speaks plain HTTP/1.1 over one TCP connection per request, so it works
//! against this server and against a real Toxiproxy alike.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Errors from [`Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the exchange broke off.
    #[error("talking to the proxy admin API at {addr}")]
    Io {
        /// Admin address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server answered with something that is not HTTP or not JSON.
    #[error("malformed answer from the proxy admin API at {addr}: {detail}")]
    Malformed {
        /// Admin address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// The server refused the request.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The server's `error` message, or its body.
        message: String,
    },
}

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
    timeout: Duration,
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
        Client {
            addr,
            timeout: Duration::from_secs(30),
        }
    }

    /// The admin address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn malformed(&self, detail: impl Into<String>) -> ClientError {
        ClientError::Malformed {
            addr: self.addr.clone(),
            detail: detail.into(),
        }
    }

    /// Sends one request with an optional raw body and returns the answer
    /// whatever its status.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<RawResponse, ClientError> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| self.io(e))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: plumb-proxy-client\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(|e| self.io(e))?;
        s.write_all(body).map_err(|e| self.io(e))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| self.io(e))?;
        self.parse(&buf)
    }

    fn parse(&self, buf: &[u8]) -> Result<RawResponse, ClientError> {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| self.malformed("no end of headers"))?;
        let head = std::str::from_utf8(&buf[..split])
            .map_err(|_| self.malformed("headers are not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| self.malformed(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let raw_body = &buf[split + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(raw_body).ok_or_else(|| self.malformed("bad chunked body"))?
        } else {
            raw_body.to_vec()
        };
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Sends a request with a JSON body; a non-2xx answer becomes
    /// [`ClientError::Api`]. Returns the JSON body (`null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = self.raw(method, path, bytes.as_deref())?;
        if !(200..300).contains(&r.status) {
            let message = r
                .json()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
            return Err(ClientError::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: r.status,
                message,
            });
        }
        if r.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        r.json()
            .ok_or_else(|| self.malformed(format!("{method} {path}: body is not JSON")))
    }

    /// `GET /version`: the version string.
    pub fn version(&self) -> Result<String, ClientError> {
        let v = self.call("GET", "/version", None)?;
        v.get("version")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.malformed("no version field"))
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
        self.call("GET", &format!("/proxies/{}", path_escape(name)), None)
    }

    /// `PATCH /proxies/{name}` with the given fields.
    pub fn update_proxy(&self, name: &str, fields: &Value) -> Result<Value, ClientError> {
        self.call(
            "PATCH",
            &format!("/proxies/{}", path_escape(name)),
            Some(fields),
        )
    }

    /// `DELETE /proxies/{name}`.
    pub fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.call("DELETE", &format!("/proxies/{}", path_escape(name)), None)
            .map(|_| ())
    }

    /// `POST /proxies/{name}/toxics`, e.g. with
    /// `{"type":"latency","attributes":{"latency":100}}`.
    pub fn add_toxic(&self, proxy: &str, toxic: &Value) -> Result<Value, ClientError> {
        self.call(
            "POST",
            &format!("/proxies/{}/toxics", path_escape(proxy)),
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
                path_escape(proxy),
                path_escape(toxic)
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
                path_escape(proxy),
                path_escape(toxic)
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
        let r = self.raw("GET", "/metrics", None)?;
        if r.status != 200 {
            return Err(ClientError::Api {
                method: "GET".into(),
                path: "/metrics".into(),
                status: r.status,
                message: String::from_utf8_lossy(&r.body).into_owned(),
            });
        }
        String::from_utf8(r.body).map_err(|_| self.malformed("metrics are not UTF-8"))
    }
}

/// Percent-encodes what cannot stand in a path segment.
fn path_escape(s: &str) -> String {
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

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
