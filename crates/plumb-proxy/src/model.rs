//! Wire types of the admin API and the decoders that turn request bodies into
//! them.
//!
//! Every decoder is a pure function from bytes to a typed value or an
//! [`ApiError`] carrying the HTTP status and message Toxiproxy would send, so
//! the fuzz target and the property tests can drive exactly the code the
//! server runs.

use serde_json::{Map, Value, json};
use std::fmt;
use std::net::IpAddr;

/// Longest duration any toxic attribute may ask for: one day, in milliseconds.
/// Longer values are almost always a unit mistake and would keep buffers alive
/// for the life of the process.
pub const MAX_DURATION_MS: i64 = 86_400_000;

/// Largest byte or rate figure accepted in an attribute (1 TB, or 1 TB/s).
pub const MAX_BYTES: i64 = 1_000_000_000_000;

/// An error answered by the admin API: a status code and a message, encoded
/// as Toxiproxy does (`{"error": ..., "status": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Human-readable message naming what is wrong.
    pub message: String,
}

impl ApiError {
    /// Creates an error with a status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_body(detail: impl fmt::Display) -> Self {
        Self::new(400, format!("bad request body: {detail}"))
    }
    pub(crate) fn missing(field: &str) -> Self {
        Self::new(400, format!("missing required field: {field}"))
    }
    pub(crate) fn proxy_not_found() -> Self {
        Self::new(404, "proxy not found")
    }
    pub(crate) fn proxy_exists() -> Self {
        Self::new(409, "proxy already exists")
    }
    pub(crate) fn invalid_stream() -> Self {
        Self::new(
            400,
            "stream was invalid, can be either upstream or downstream",
        )
    }
    pub(crate) fn invalid_type() -> Self {
        Self::new(400, "invalid toxic type")
    }
    pub(crate) fn toxic_exists() -> Self {
        Self::new(409, "toxic already exists")
    }
    pub(crate) fn toxic_not_found() -> Self {
        Self::new(404, "toxic not found")
    }
    /// The JSON body Toxiproxy sends for this error.
    pub fn to_json(&self) -> Value {
        json!({"error": self.message, "status": self.status})
    }
}

/// Direction of a toxic: `upstream` is client to server, `downstream` is
/// server to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client to server.
    Upstream,
    /// Server to client.
    Downstream,
}

impl Stream {
    /// Parses a stream name, case-insensitively as Toxiproxy does.
    pub fn parse(s: &str) -> Option<Stream> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Some(Stream::Upstream),
            "downstream" => Some(Stream::Downstream),
            _ => None,
        }
    }
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// What a toxic does, with its attributes. Standard Toxiproxy toxics first,
/// then plumb's own.
#[derive(Debug, Clone, PartialEq)]
pub enum ToxicKind {
    /// Passes data through unchanged.
    Noop,
    /// Delays each chunk by `latency` ms, plus or minus `jitter` ms.
    Latency {
        /// Milliseconds.
        latency: i64,
        /// Milliseconds.
        jitter: i64,
    },
    /// Limits throughput to `rate` KB/s (1 KB = 1000 bytes).
    Bandwidth {
        /// KB per second, at least 1.
        rate: i64,
    },
    /// Delays the close by `delay` ms.
    SlowClose {
        /// Milliseconds.
        delay: i64,
    },
    /// Drops all data and closes the connection after `timeout` ms (0: never).
    Timeout {
        /// Milliseconds.
        timeout: i64,
    },
    /// On the first data (or EOF), waits `timeout` ms then resets the
    /// connection with a TCP RST.
    ResetPeer {
        /// Milliseconds.
        timeout: i64,
    },
    /// Splits data into pieces of `average_size` ± `size_variation` bytes with
    /// `delay` microseconds between them.
    Slicer {
        /// Bytes.
        average_size: i64,
        /// Bytes.
        size_variation: i64,
        /// Microseconds.
        delay: i64,
    },
    /// Closes the connection once `bytes` bytes have passed.
    LimitData {
        /// Bytes.
        bytes: i64,
    },
    /// plumb: delays opening the upstream connection by `delay` ms.
    SlowOpen {
        /// Milliseconds.
        delay: i64,
    },
    /// plumb: resets new connections at once, as if the port refused them.
    RefuseOpen,
    /// plumb: data stops for `duration` ms out of every `interval` ms, which
    /// looks like packet loss to a TCP application.
    Stall {
        /// Milliseconds between the starts of two stall windows.
        interval: i64,
        /// Milliseconds each window lasts.
        duration: i64,
    },
    /// plumb: each chunk has `per_mille`/1000 chance of resetting the
    /// connection.
    DropConnection {
        /// Chance per 1000 chunks.
        per_mille: i64,
    },
    /// plumb, UDP proxies: drops `per_mille`/1000 of datagrams.
    Loss {
        /// Share per 1000.
        per_mille: i64,
    },
    /// plumb, UDP proxies: sends `per_mille`/1000 of datagrams twice.
    Duplicate {
        /// Share per 1000.
        per_mille: i64,
    },
    /// plumb, UDP proxies: holds `per_mille`/1000 of datagrams back by
    /// `delay` ms so later ones overtake them.
    Reorder {
        /// Share per 1000.
        per_mille: i64,
        /// Milliseconds.
        delay: i64,
    },
    /// plumb, HTTP/1: delays each request (upstream) or response
    /// (downstream) by `latency` ms, once per message rather than per chunk.
    HttpLatency {
        /// Milliseconds.
        latency: i64,
    },
    /// plumb, HTTP/1, upstream only: answers `per_mille`/1000 of requests
    /// itself with `status` (e.g. 503 or 429) and closes the connection; the
    /// server never sees them.
    HttpError {
        /// HTTP status code, 100 to 599.
        status: i64,
        /// Share of requests, per 1000.
        per_mille: i64,
    },
    /// plumb, HTTP/1, downstream only: response headers pass at once, the body
    /// is dripped `bytes` bytes every `delay` ms.
    HttpDrip {
        /// Bytes per piece, at least 1.
        bytes: i64,
        /// Milliseconds between pieces.
        delay: i64,
    },
}

/// The toxic type names this server knows, in documentation order.
pub const TOXIC_TYPES: &[&str] = &[
    "noop",
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "slow_open",
    "refuse_open",
    "stall",
    "drop_connection",
    "http_latency",
    "http_error",
    "http_drip",
    "loss",
    "duplicate",
    "reorder",
];

impl ToxicKind {
    /// The wire type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Noop => "noop",
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
            ToxicKind::SlowOpen { .. } => "slow_open",
            ToxicKind::RefuseOpen => "refuse_open",
            ToxicKind::Stall { .. } => "stall",
            ToxicKind::DropConnection { .. } => "drop_connection",
            ToxicKind::HttpLatency { .. } => "http_latency",
            ToxicKind::HttpError { .. } => "http_error",
            ToxicKind::HttpDrip { .. } => "http_drip",
            ToxicKind::Loss { .. } => "loss",
            ToxicKind::Duplicate { .. } => "duplicate",
            ToxicKind::Reorder { .. } => "reorder",
        }
    }

    /// Builds a toxic of `type_name` from its attributes. Absent attributes
    /// default to 0 as in Toxiproxy; unknown attributes are ignored.
    pub fn from_attributes(type_name: &str, attrs: &Map<String, Value>) -> Result<Self, ApiError> {
        let kind = match type_name {
            "noop" => ToxicKind::Noop,
            "latency" => ToxicKind::Latency {
                latency: 0,
                jitter: 0,
            },
            "bandwidth" => ToxicKind::Bandwidth { rate: 0 },
            "slow_close" => ToxicKind::SlowClose { delay: 0 },
            "timeout" => ToxicKind::Timeout { timeout: 0 },
            "reset_peer" => ToxicKind::ResetPeer { timeout: 0 },
            "slicer" => ToxicKind::Slicer {
                average_size: 0,
                size_variation: 0,
                delay: 0,
            },
            "limit_data" => ToxicKind::LimitData { bytes: 0 },
            "slow_open" => ToxicKind::SlowOpen { delay: 0 },
            "refuse_open" => ToxicKind::RefuseOpen,
            "stall" => ToxicKind::Stall {
                interval: 0,
                duration: 0,
            },
            "drop_connection" => ToxicKind::DropConnection { per_mille: 0 },
            "http_latency" => ToxicKind::HttpLatency { latency: 0 },
            // Without attributes: every request answered 503.
            "http_error" => ToxicKind::HttpError {
                status: 503,
                per_mille: 1000,
            },
            "http_drip" => ToxicKind::HttpDrip { bytes: 1, delay: 0 },
            "loss" => ToxicKind::Loss { per_mille: 0 },
            "duplicate" => ToxicKind::Duplicate { per_mille: 0 },
            "reorder" => ToxicKind::Reorder {
                per_mille: 0,
                delay: 10,
            },
            _ => return Err(ApiError::invalid_type()),
        };
        kind.merged(attrs)
    }

    /// Returns a copy with `attrs` merged over the current attributes, after
    /// checking every value.
    pub fn merged(&self, attrs: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut k = self.clone();
        {
            let get = |name: &str, current: i64, min: i64, max: i64| -> Result<i64, ApiError> {
                match attrs.get(name) {
                    None | Some(Value::Null) => Ok(current),
                    Some(v) => attr_int(name, v, min, max),
                }
            };
            match &mut k {
                ToxicKind::Noop | ToxicKind::RefuseOpen => {}
                ToxicKind::Latency { latency, jitter } => {
                    *latency = get("latency", *latency, 0, MAX_DURATION_MS)?;
                    *jitter = get("jitter", *jitter, 0, MAX_DURATION_MS)?;
                }
                ToxicKind::Bandwidth { rate } => {
                    *rate = get("rate", *rate, i64::MIN, MAX_BYTES)?;
                    if *rate <= 0 {
                        return Err(ApiError::bad_body(format!(
                            "attribute rate of a bandwidth toxic must be at least 1 (KB/s), got {rate}"
                        )));
                    }
                }
                ToxicKind::SlowClose { delay } | ToxicKind::SlowOpen { delay } => {
                    *delay = get("delay", *delay, 0, MAX_DURATION_MS)?;
                }
                ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                    *timeout = get("timeout", *timeout, 0, MAX_DURATION_MS)?;
                }
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay,
                } => {
                    *average_size = get("average_size", *average_size, 0, MAX_BYTES)?;
                    *size_variation = get("size_variation", *size_variation, 0, MAX_BYTES)?;
                    *delay = get("delay", *delay, 0, MAX_DURATION_MS * 1000)?;
                }
                ToxicKind::LimitData { bytes } => {
                    *bytes = get("bytes", *bytes, 0, i64::MAX)?;
                }
                ToxicKind::Stall { interval, duration } => {
                    *interval = get("interval", *interval, 0, MAX_DURATION_MS)?;
                    *duration = get("duration", *duration, 0, MAX_DURATION_MS)?;
                    if *duration > *interval {
                        return Err(ApiError::bad_body(format!(
                            "attribute duration ({duration} ms) of a stall toxic must not exceed its interval ({interval} ms)"
                        )));
                    }
                }
                ToxicKind::DropConnection { per_mille } => {
                    *per_mille = get("per_mille", *per_mille, 0, 1000)?;
                }
                ToxicKind::HttpLatency { latency } => {
                    *latency = get("latency", *latency, 0, MAX_DURATION_MS)?;
                }
                ToxicKind::HttpError { status, per_mille } => {
                    *status = get("status", *status, 100, 599)?;
                    *per_mille = get("per_mille", *per_mille, 0, 1000)?;
                }
                ToxicKind::HttpDrip { bytes, delay } => {
                    *bytes = get("bytes", *bytes, 1, MAX_BYTES)?;
                    *delay = get("delay", *delay, 0, MAX_DURATION_MS)?;
                }
                ToxicKind::Loss { per_mille } | ToxicKind::Duplicate { per_mille } => {
                    *per_mille = get("per_mille", *per_mille, 0, 1000)?;
                }
                ToxicKind::Reorder { per_mille, delay } => {
                    *per_mille = get("per_mille", *per_mille, 0, 1000)?;
                    *delay = get("delay", *delay, 0, MAX_DURATION_MS)?;
                }
            }
        }
        Ok(k)
    }

    /// The attributes as Toxiproxy shows them: every attribute of the type.
    pub fn attributes(&self) -> Value {
        match self {
            ToxicKind::Noop | ToxicKind::RefuseOpen => json!({}),
            ToxicKind::Latency { latency, jitter } => json!({"latency": latency, "jitter": jitter}),
            ToxicKind::Bandwidth { rate } => json!({"rate": rate}),
            ToxicKind::SlowClose { delay } | ToxicKind::SlowOpen { delay } => {
                json!({"delay": delay})
            }
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                json!({"timeout": timeout})
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                json!({"average_size": average_size, "size_variation": size_variation, "delay": delay})
            }
            ToxicKind::LimitData { bytes } => json!({"bytes": bytes}),
            ToxicKind::Stall { interval, duration } => {
                json!({"interval": interval, "duration": duration})
            }
            ToxicKind::DropConnection { per_mille } => json!({"per_mille": per_mille}),
            ToxicKind::HttpLatency { latency } => json!({"latency": latency}),
            ToxicKind::HttpError { status, per_mille } => {
                json!({"status": status, "per_mille": per_mille})
            }
            ToxicKind::HttpDrip { bytes, delay } => json!({"bytes": bytes, "delay": delay}),
            ToxicKind::Loss { per_mille } | ToxicKind::Duplicate { per_mille } => {
                json!({"per_mille": per_mille})
            }
            ToxicKind::Reorder { per_mille, delay } => {
                json!({"per_mille": per_mille, "delay": delay})
            }
        }
    }

    /// Whether this toxic can act on a proxy of `protocol`.
    pub fn applies_to(&self, protocol: Protocol) -> bool {
        let udp = matches!(
            self,
            ToxicKind::Noop
                | ToxicKind::Latency { .. }
                | ToxicKind::Loss { .. }
                | ToxicKind::Duplicate { .. }
                | ToxicKind::Reorder { .. }
        );
        let udp_only = matches!(
            self,
            ToxicKind::Loss { .. } | ToxicKind::Duplicate { .. } | ToxicKind::Reorder { .. }
        );
        match protocol {
            Protocol::Udp => udp,
            Protocol::Tcp => !udp_only,
        }
    }

    /// True for toxics that act when a connection opens rather than on its
    /// bytes.
    pub fn acts_on_open(&self) -> bool {
        matches!(self, ToxicKind::SlowOpen { .. } | ToxicKind::RefuseOpen)
    }
}

fn attr_int(name: &str, v: &Value, min: i64, max: i64) -> Result<i64, ApiError> {
    // Go decodes JSON numbers into int64 fields and rejects fractions; we
    // accept whole floats such as 100.0 too, since JavaScript clients send them.
    let n = match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else if let Some(f) = n.as_f64() {
                (f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
            } else {
                None
            }
        }
        _ => None,
    };
    let Some(n) = n else {
        return Err(ApiError::bad_body(format!(
            "attribute {name} must be an integer, got {v}"
        )));
    };
    if n < min || n > max {
        return Err(ApiError::bad_body(format!(
            "attribute {name} must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n)
}

/// An address range a toxic is limited to (plumb extension): an address with
/// an optional prefix length, e.g. `127.0.0.1` or `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRange {
    addr: IpAddr,
    prefix: u8,
}

impl ClientRange {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<ClientRange> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(ClientRange { addr, prefix })
    }
    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses match their
    /// IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let shift = 32 - u32::from(self.prefix);
                let mask = if shift == 32 { 0 } else { u32::MAX << shift };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let shift = 128 - u32::from(self.prefix);
                let mask = if shift == 128 { 0 } else { u128::MAX << shift };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for ClientRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Transport of a proxy. Toxiproxy knows only TCP; `"protocol": "udp"` on
/// a new proxy is a plumb extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// A TCP proxy (the default).
    #[default]
    Tcp,
    /// A UDP relay: one upstream socket per client address.
    Udp,
}

impl Protocol {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// The error for a toxic on a proxy it cannot act on.
pub fn not_applicable(kind: &ToxicKind, protocol: Protocol) -> ApiError {
    ApiError::bad_body(format!(
        "toxic type {} does not apply to {} proxies",
        kind.type_name(),
        protocol.as_str()
    ))
}

/// A toxic as configured on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ToxicSpec {
    /// Unique within its proxy, across both streams.
    pub name: String,
    /// What it does.
    pub kind: ToxicKind,
    /// Which direction it acts on.
    pub stream: Stream,
    /// Probability, per connection, that the toxic applies (0.0 to 1.0).
    pub toxicity: f32,
    /// plumb extension: if set, only connections from these client addresses
    /// are affected.
    pub clients: Option<Vec<ClientRange>>,
}

impl ToxicSpec {
    /// The JSON shape Toxiproxy uses, plus `clients` when set.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "attributes": self.kind.attributes(),
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
        });
        if let Some(c) = &self.clients {
            v["clients"] = Value::Array(c.iter().map(|r| Value::String(r.to_string())).collect());
        }
        v
    }
}

/// A request to create a proxy (`POST /proxies`, and one entry of /populate).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyCreate {
    /// Proxy name.
    pub name: String,
    /// Address to listen on; empty means `127.0.0.1:0`.
    pub listen: String,
    /// Address to forward to.
    pub upstream: String,
    /// Whether to start listening at once.
    pub enabled: bool,
    /// plumb extension: TCP (default) or UDP.
    pub protocol: Protocol,
    /// plumb extension: toxics to install with the proxy.
    pub toxics: Vec<ToxicSpec>,
}

/// A request to change a proxy: absent fields keep their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyUpdate {
    /// New listen address.
    pub listen: Option<String>,
    /// New upstream address.
    pub upstream: Option<String>,
    /// New enabled state.
    pub enabled: Option<bool>,
}

/// A request to change a toxic: merged attributes and an optional toxicity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToxicUpdate {
    /// Attributes to merge over the current ones.
    pub attributes: Map<String, Value>,
    /// New toxicity.
    pub toxicity: Option<f32>,
    /// New client ranges (plumb extension).
    pub clients: Option<Option<Vec<ClientRange>>>,
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(ApiError::bad_body)?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_body(format!(
            "expected a JSON object, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_string(m: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_body(format!(
            "field {field} must be a string, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_body(format!(
            "field {field} must be a boolean, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_toxicity(m: &Map<String, Value>) -> Result<Option<f32>, ApiError> {
    match m.get("toxicity") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if (0.0..=1.0).contains(&f) {
                Ok(Some(f as f32))
            } else {
                Err(ApiError::bad_body(format!(
                    "field toxicity must be between 0.0 and 1.0, got {n}"
                )))
            }
        }
        Some(other) => Err(ApiError::bad_body(format!(
            "field toxicity must be a number, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_clients(m: &Map<String, Value>) -> Result<Option<Option<Vec<ClientRange>>>, ApiError> {
    match m.get("clients") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let r = item.as_str().and_then(ClientRange::parse).ok_or_else(|| {
                    ApiError::bad_body(format!(
                        "clients[{i}] must be an IP address or CIDR range such as 10.0.0.0/8, got {item}"
                    ))
                })?;
                out.push(r);
            }
            Ok(Some(Some(out)))
        }
        Some(other) => Err(ApiError::bad_body(format!(
            "field clients must be an array of addresses, got {}",
            json_kind(other)
        ))),
    }
}

fn opt_attributes(m: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match m.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(a)) => Ok(a.clone()),
        Some(other) => Err(ApiError::bad_body(format!(
            "field attributes must be an object, got {}",
            json_kind(other)
        ))),
    }
}

/// Decodes the body of `POST /proxies`.
pub fn decode_proxy_create(body: &[u8]) -> Result<ProxyCreate, ApiError> {
    let m = parse_object(body)?;
    proxy_create_from_map(&m, None)
}

fn proxy_create_from_map(
    m: &Map<String, Value>,
    index: Option<usize>,
) -> Result<ProxyCreate, ApiError> {
    let at = |f: &str| match index {
        Some(i) => format!("{f} at proxy {}", i + 1),
        None => f.to_string(),
    };
    let name = opt_string(m, "name")?.unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::missing(&at("name")));
    }
    let upstream = opt_string(m, "upstream")?.unwrap_or_default();
    if upstream.is_empty() {
        return Err(ApiError::missing(&at("upstream")));
    }
    let listen = opt_string(m, "listen")?.unwrap_or_default();
    let enabled = opt_bool(m, "enabled")?.unwrap_or(true);
    let protocol = match opt_string(m, "protocol")?.as_deref() {
        None | Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some(other) => {
            return Err(ApiError::bad_body(format!(
                "field protocol must be tcp or udp, got {other:?}"
            )));
        }
    };
    let toxics = match m.get("toxics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out: Vec<ToxicSpec> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::Object(tm) = item else {
                    return Err(ApiError::bad_body(format!(
                        "toxics[{i}] of proxy {name} must be an object"
                    )));
                };
                let t = toxic_from_map(tm).map_err(|e| {
                    ApiError::new(
                        e.status,
                        format!("{} (toxics[{i}] of proxy {name})", e.message),
                    )
                })?;
                if !t.kind.applies_to(protocol) {
                    let e = not_applicable(&t.kind, protocol);
                    return Err(ApiError::new(
                        e.status,
                        format!("{} (toxics[{i}] of proxy {name})", e.message),
                    ));
                }
                if out.iter().any(|o| o.name == t.name) {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "toxic already exists: {} (toxics[{i}] of proxy {name})",
                            t.name
                        ),
                    ));
                }
                out.push(t);
            }
            out
        }
        Some(other) => {
            return Err(ApiError::bad_body(format!(
                "field toxics must be an array, got {}",
                json_kind(other)
            )));
        }
    };
    Ok(ProxyCreate {
        name,
        listen,
        upstream,
        enabled,
        protocol,
        toxics,
    })
}

/// Decodes the body of `POST /populate` (or a config file): a JSON array of
/// proxies. All entries are checked before any is used.
pub fn decode_populate(body: &[u8]) -> Result<Vec<ProxyCreate>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(ApiError::bad_body)?;
    let items = match v {
        Value::Array(items) => items,
        other => {
            return Err(ApiError::bad_body(format!(
                "expected a JSON array of proxies, got {}",
                json_kind(&other)
            )));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| populate_item(item, i))
        .collect()
}

/// Decodes one proxy of a `/populate` list (the `index`th, from 0).
pub fn decode_populate_item(body: &[u8], index: usize) -> Result<ProxyCreate, ApiError> {
    populate_item(
        serde_json::from_slice(body).map_err(ApiError::bad_body)?,
        index,
    )
}

fn populate_item(item: Value, index: usize) -> Result<ProxyCreate, ApiError> {
    match item {
        Value::Object(m) => proxy_create_from_map(&m, Some(index)),
        other => Err(ApiError::bad_body(format!(
            "proxy {} must be an object, got {}",
            index + 1,
            json_kind(&other)
        ))),
    }
}

/// Decodes the body of `POST|PATCH /proxies/{name}`.
pub fn decode_proxy_update(body: &[u8]) -> Result<ProxyUpdate, ApiError> {
    let m = parse_object(body)?;
    Ok(ProxyUpdate {
        listen: opt_string(&m, "listen")?.filter(|s| !s.is_empty()),
        upstream: opt_string(&m, "upstream")?.filter(|s| !s.is_empty()),
        enabled: opt_bool(&m, "enabled")?,
    })
}

/// Decodes the body of `POST /proxies/{name}/toxics`, applying Toxiproxy's
/// defaults (stream downstream, toxicity 1.0, name `<type>_<stream>`).
pub fn decode_toxic_create(body: &[u8]) -> Result<ToxicSpec, ApiError> {
    toxic_from_map(&parse_object(body)?)
}

fn toxic_from_map(m: &Map<String, Value>) -> Result<ToxicSpec, ApiError> {
    let type_name = opt_string(m, "type")?.unwrap_or_default();
    // Toxiproxy's default is downstream; an http_error toxic only makes sense
    // on requests, so it defaults to upstream.
    let default_stream = if type_name == "http_error" {
        "upstream"
    } else {
        "downstream"
    };
    let stream_name = opt_string(m, "stream")?.unwrap_or_else(|| default_stream.into());
    let stream = Stream::parse(&stream_name).ok_or_else(ApiError::invalid_stream)?;
    let attrs = opt_attributes(m)?;
    let kind = ToxicKind::from_attributes(&type_name, &attrs)?;
    match (&kind, stream) {
        (ToxicKind::HttpError { .. }, Stream::Downstream) => {
            return Err(ApiError::bad_body(
                "an http_error toxic answers requests: give it stream upstream",
            ));
        }
        (ToxicKind::HttpDrip { .. }, Stream::Upstream) => {
            return Err(ApiError::bad_body(
                "an http_drip toxic slows response bodies: give it stream downstream",
            ));
        }
        _ => {}
    }
    let name = opt_string(m, "name")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{type_name}_{}", stream.as_str()));
    let toxicity = opt_toxicity(m)?.unwrap_or(1.0);
    let clients = opt_clients(m)?.flatten();
    Ok(ToxicSpec {
        name,
        kind,
        stream,
        toxicity,
        clients,
    })
}

/// Decodes the body of `POST|PATCH /proxies/{name}/toxics/{toxic}`.
pub fn decode_toxic_update(body: &[u8]) -> Result<ToxicUpdate, ApiError> {
    let m = parse_object(body)?;
    Ok(ToxicUpdate {
        attributes: opt_attributes(&m)?,
        toxicity: opt_toxicity(&m)?,
        clients: opt_clients(&m)?,
    })
}

/// The body of the fuzz target `decode_request` (in `fuzz/`), as a plain
/// function, so the stable tests replay its checked-in corpus
/// (`fuzz/corpus/decode_request`) too. Panics when a decoder refuses with
/// anything but a 4xx and a message, or when a decoded toxic does not
/// decode again to itself.
#[doc(hidden)]
pub fn fuzz_decode_request(data: &[u8]) {
    let checks = [
        decode_proxy_create(data).err(),
        decode_proxy_update(data).err(),
        decode_toxic_create(data).err(),
        decode_toxic_update(data).err(),
        decode_populate(data).err(),
    ];
    for e in checks.into_iter().flatten() {
        assert!((400..500).contains(&e.status), "{e:?}");
        assert!(!e.message.is_empty());
    }
    if let Ok(t) = decode_toxic_create(data) {
        let again = decode_toxic_create(t.to_json().to_string().as_bytes())
            .expect("a decoded toxic re-decodes");
        assert_eq!(again, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxic_defaults_match_toxiproxy() {
        let t = decode_toxic_create(br#"{"type":"latency","attributes":{"latency":5}}"#).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(
            t.kind,
            ToxicKind::Latency {
                latency: 5,
                jitter: 0
            }
        );
        let t = decode_toxic_create(br#"{"type":"noop","stream":"UpStream"}"#).unwrap();
        assert_eq!(t.name, "noop_upstream");
    }

    #[test]
    fn bad_attributes_are_named() {
        let e =
            decode_toxic_create(br#"{"type":"bandwidth","attributes":{"rate":0}}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("rate"), "{}", e.message);
        let e =
            decode_toxic_create(br#"{"type":"latency","attributes":{"latency":1000000000000}}"#)
                .unwrap_err();
        assert!(
            e.message.contains("latency must be between"),
            "{}",
            e.message
        );
        let e =
            decode_toxic_create(br#"{"type":"latency","attributes":{"latency":"x"}}"#).unwrap_err();
        assert!(e.message.contains("must be an integer"), "{}", e.message);
        let e = decode_toxic_create(br#"{"type":"nope"}"#).unwrap_err();
        assert_eq!(e.message, "invalid toxic type");
    }

    #[test]
    fn populate_names_the_bad_entry() {
        let e =
            decode_populate(br#"[{"name":"a","upstream":"x:1"},{"upstream":"y:1"}]"#).unwrap_err();
        assert_eq!(e.message, "missing required field: name at proxy 2");
    }

    #[test]
    fn client_ranges() {
        let r = ClientRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(!r.contains("11.1.2.3".parse().unwrap()));
        assert!(r.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(
            ClientRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(ClientRange::parse("1.2.3.4/33").is_none());
        assert_eq!(
            ClientRange::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1"
        );
    }

    /// Replays the checked-in corpus of the fuzz target `decode_request`
    /// through the target's own checks, on the stable toolchain.
    #[test]
    fn fuzz_corpus_replays_clean() {
        plumb_model::fuzzing::replay("decode_request", 3, fuzz_decode_request);
    }
}
