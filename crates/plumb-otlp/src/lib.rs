/*!
OTLP/HTTP request decoding for plumb's collector.

An OTLP/HTTP export is a POST of an `Export{Logs,Trace,Metrics}ServiceRequest`
encoded as protobuf (`application/x-protobuf`) or as OTLP's JSON mapping
(`application/json`), possibly gzip-compressed. This crate turns such a body
into plumb's telemetry types ([`plumb_model::telemetry`]) and builds the
response the specification asks for. It does no I/O and knows nothing of
HTTP servers, so the collector, the fuzz target and the benchmark share it.

Records that decode but cannot be kept (a trace id of the wrong length, a
span without an id, a data point without a value) are counted as rejected
with a message, for the response's `partial_success`; a body that does not
decode at all is a [`DecodeError`], which the collector answers with 400.

```
use plumb_otlp::{Format, decode_logs};
let body = br#"{"resourceLogs":[{"resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"shop"}}]},
  "scopeLogs":[{"logRecords":[{"timeUnixNano":"1764000000000000000",
    "severityNumber":9,"body":{"stringValue":"order shipped"}}]}]}]}"#;
let logs = decode_logs(body, Format::Json).unwrap();
assert_eq!(logs.batches[0].source.service, "shop");
assert_eq!(logs.batches[0].records.len(), 1);
assert_eq!(logs.rejected, 0);
```
*/
#![deny(missing_docs)]

mod budget;
mod convert;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;

pub use budget::{Cost, ITEM_COST, Limits, Signal, scan};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use plumb_model::telemetry::{LogBatch, MetricPoint, Span};
use prost::Message;
use std::io::Read;

/// The two encodings OTLP/HTTP allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP's JSON mapping of the protobuf messages).
    Json,
}

impl Format {
    /// The format a `Content-Type` header names; parameters such as
    /// `charset` are ignored.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, DecodeError> {
        let Some(ct) = content_type else {
            return Err(DecodeError::ContentType(
                "no Content-Type header: send application/x-protobuf or application/json".into(),
            ));
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Ok(Format::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else {
            Err(DecodeError::ContentType(format!(
                "Content-Type `{ct}` is not accepted: send application/x-protobuf or application/json"
            )))
        }
    }

    /// The `Content-Type` of responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Why a request body could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The content type (or encoding) is not one OTLP/HTTP uses: 415.
    #[error("{0}")]
    ContentType(String),
    /// The body is larger than allowed, before or after decompression: 413.
    #[error("{0}")]
    TooLarge(String),
    /// The body is not what it claims to be: 400.
    #[error("{0}")]
    Malformed(String),
    /// The memory for this request is not available now (others in flight
    /// hold it): 429, retry later.
    #[error("{0}")]
    Busy(String),
}

/// Undoes the request's `Content-Encoding` (`gzip`, or none/`identity`),
/// refusing to inflate past `limit` bytes so that a small compressed body
/// cannot exhaust memory.
pub fn decompress<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    decompress_metered(body, content_encoding, limit, &mut |_| Ok(()))
}

/// How much output [`decompress_metered`] asks for at a time.
pub const DECOMPRESS_STEP: usize = 1 << 20;

/// [`decompress`], asking `reserve(n)` before the output grows by `n`
/// bytes (in steps of [`DECOMPRESS_STEP`]), so a caller can count the
/// memory against a budget shared by many requests and stop when it is
/// spent; `reserve`'s error ends decompression.
pub fn decompress_metered<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
    reserve: &mut dyn FnMut(usize) -> Result<(), DecodeError>,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    let enc = content_encoding.unwrap_or("").trim();
    if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    if !enc.eq_ignore_ascii_case("gzip") && !enc.eq_ignore_ascii_case("x-gzip") {
        return Err(DecodeError::ContentType(format!(
            "Content-Encoding `{enc}` is not supported: send gzip or no encoding"
        )));
    }
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    loop {
        let step = DECOMPRESS_STEP.min(limit + 1 - out.len().min(limit));
        reserve(step)?;
        let before = out.len();
        (&mut reader)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|e| {
                DecodeError::Malformed(format!("the gzip body does not decompress: {e}"))
            })?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge(format!(
                "the body decompresses to more than the {limit}-byte limit"
            )));
        }
        if out.len() - before < step {
            break;
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decoded logs: the batches, one per resource, and what was rejected.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    /// One batch per resource.
    pub batches: Vec<LogBatch>,
    /// Records that could not be kept.
    pub rejected: u64,
    /// Why (the first few reasons).
    pub message: String,
}

impl Logs {
    /// Records accepted.
    pub fn records(&self) -> usize {
        self.batches.iter().map(|b| b.records.len()).sum()
    }
}

/// Decoded spans and what was rejected.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    /// The spans.
    pub spans: Vec<Span>,
    /// Spans that could not be kept.
    pub rejected: u64,
    /// Why.
    pub message: String,
}

/// Decoded metric data points and what was rejected.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// The points.
    pub points: Vec<MetricPoint>,
    /// Points that could not be kept.
    pub rejected: u64,
    /// Why.
    pub message: String,
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    format: Format,
    what: &str,
) -> Result<M, DecodeError> {
    match format {
        Format::Protobuf => M::decode(body)
            .map_err(|e| DecodeError::Malformed(format!("the body is not a protobuf {what}: {e}"))),
        Format::Json => serde_json::from_slice(body).map_err(|e| {
            DecodeError::Malformed(format!("the body is not an OTLP JSON {what}: {e}"))
        }),
    }
}

/// Decodes an `ExportLogsServiceRequest` within the default [`Limits`].
pub fn decode_logs(body: &[u8], format: Format) -> Result<Logs, DecodeError> {
    decode_logs_within(body, format, &Limits::default())
}

/// Decodes an `ExportLogsServiceRequest`, refusing it (before decoding)
/// when it holds more than `limits` allow.
pub fn decode_logs_within(
    body: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Logs, DecodeError> {
    scan(body, format, Signal::Logs, limits)?;
    let req: ExportLogsServiceRequest = decode(body, format, "ExportLogsServiceRequest")?;
    Ok(convert::logs(req))
}

/// Decodes an `ExportTraceServiceRequest` within the default [`Limits`].
pub fn decode_traces(body: &[u8], format: Format) -> Result<Traces, DecodeError> {
    decode_traces_within(body, format, &Limits::default())
}

/// Decodes an `ExportTraceServiceRequest` within `limits`.
pub fn decode_traces_within(
    body: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Traces, DecodeError> {
    scan(body, format, Signal::Traces, limits)?;
    let req: ExportTraceServiceRequest = decode(body, format, "ExportTraceServiceRequest")?;
    Ok(convert::traces(req))
}

/// Decodes an `ExportMetricsServiceRequest` within the default [`Limits`].
pub fn decode_metrics(body: &[u8], format: Format) -> Result<Metrics, DecodeError> {
    decode_metrics_within(body, format, &Limits::default())
}

/// Decodes an `ExportMetricsServiceRequest` within `limits`.
pub fn decode_metrics_within(
    body: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Metrics, DecodeError> {
    scan(body, format, Signal::Metrics, limits)?;
    let req: ExportMetricsServiceRequest = decode(body, format, "ExportMetricsServiceRequest")?;
    Ok(convert::metrics(req))
}

fn encode<M: Message + serde::Serialize + Default + PartialEq>(msg: &M, format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => msg.encode_to_vec(),
        // An empty response is `{}` (the generated serde form would spell
        // out `"partialSuccess": null`).
        Format::Json if *msg == M::default() => b"{}".to_vec(),
        Format::Json => serde_json::to_vec(msg).expect("OTLP responses serialize"),
    }
}

/// The body of a successful `/v1/logs` response: `partial_success` only
/// when something was rejected, as the specification asks.
pub fn logs_response(rejected: u64, message: &str, format: Format) -> Vec<u8> {
    let partial_success = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected as i64,
        error_message: message.to_owned(),
    });
    encode(&ExportLogsServiceResponse { partial_success }, format)
}

/// The body of a successful `/v1/traces` response.
pub fn traces_response(rejected: u64, message: &str, format: Format) -> Vec<u8> {
    let partial_success = (rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected as i64,
        error_message: message.to_owned(),
    });
    encode(&ExportTraceServiceResponse { partial_success }, format)
}

/// The body of a successful `/v1/metrics` response.
pub fn metrics_response(rejected: u64, message: &str, format: Format) -> Vec<u8> {
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: rejected as i64,
        error_message: message.to_owned(),
    });
    encode(&ExportMetricsServiceResponse { partial_success }, format)
}

/// `google.rpc.Status`, the body OTLP/HTTP error responses carry.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The body of an error response: a `google.rpc.Status` with `message`, in
/// the request's format (JSON when the format is unknown).
pub fn error_body(message: &str, format: Option<Format>) -> Vec<u8> {
    // gRPC code 3 (INVALID_ARGUMENT) for bad data, as the spec suggests;
    // the HTTP status carries the rest.
    let status = Status {
        code: 3,
        message: message.to_owned(),
    };
    match format {
        Some(Format::Protobuf) => status.encode_to_vec(),
        _ => serde_json::to_vec(&status).expect("status serializes"),
    }
}

/// Encodes an `ExportLogsServiceRequest` given as OTLP JSON into protobuf
/// (used by tests and the benchmark to produce protobuf bodies).
pub fn logs_json_to_protobuf(json: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let req: ExportLogsServiceRequest = decode(json, Format::Json, "ExportLogsServiceRequest")?;
    Ok(req.encode_to_vec())
}

/// Encodes an `ExportTraceServiceRequest` given as OTLP JSON into protobuf.
pub fn traces_json_to_protobuf(json: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let req: ExportTraceServiceRequest = decode(json, Format::Json, "ExportTraceServiceRequest")?;
    Ok(req.encode_to_vec())
}

#[cfg(test)]
mod tests;
