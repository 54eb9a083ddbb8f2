//! Telemetry received from instrumented applications (OpenTelemetry logs,
//! spans and metric points), as plumb types.
//!
//! These are what the collector decodes OTLP into and what the store keeps.
//! OTLP records carry no id of their own, so each type says what identifies
//! it: a log record is identified by its time and a hash of its own fields
//! (resource included, batch position excluded), so an exporter that retries
//! a request, even re-batched differently, sends records that map to the same
//! ids and are stored once; a span by its trace and span id; a metric point
//! by its name, series and time.

use crate::{Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Attribute values: OTLP's `AnyValue` as JSON (strings, integers, doubles,
/// booleans, arrays, key-value lists as objects, bytes as base64 strings).
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// The resource attribute that ties telemetry to a plumb run; `plumb run`
/// sets it for its child through `OTEL_RESOURCE_ATTRIBUTES`.
pub const RUN_ID_ATTRIBUTE: &str = "plumb.run.id";

/// Who sent a record: the attributes of its OTLP resource, and the few of
/// them plumb files records under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Source {
    /// `service.name`, or `unknown_service` when absent (the SDKs' default).
    pub service: String,
    /// `host.name`, or empty when absent.
    pub host: String,
    /// The plumb run, when the resource carries a valid `plumb.run.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// Every resource attribute.
    #[serde(default)]
    pub resource: Attributes,
}

impl Source {
    /// Reads the plumb fields out of resource attributes.
    pub fn from_resource(resource: Attributes) -> Source {
        let text = |k: &str| resource.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Source {
            service: text("service.name").unwrap_or_else(|| "unknown_service".into()),
            host: text("host.name").unwrap_or_default(),
            run_id: text(RUN_ID_ATTRIBUTE).and_then(|s| Uuid::parse_str(s.trim()).ok()),
            resource,
        }
    }

    /// The key records of this source are filed under when they belong to
    /// no run: `service@host` (or the service alone without a host).
    pub fn key(&self) -> String {
        match self.run_id {
            Some(id) => id.to_string(),
            None if self.host.is_empty() => self.service.clone(),
            None => format!("{}@{}", self.service, self.host),
        }
    }

    /// A stable hash of the resource, the part of a record's identity the
    /// sender shares between its records.
    pub fn hash(&self) -> u64 {
        let mut h = Hasher::default();
        for (k, v) in &self.resource {
            h.str(k);
            h.json(v);
        }
        h.finish()
    }
}

/// A log record's body: text, or structured data kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogBody {
    /// A plain string body (the common case).
    Text(String),
    /// Any other body (map, array, number, bytes as base64).
    Json(serde_json::Value),
}

impl Default for LogBody {
    fn default() -> Self {
        LogBody::Text(String::new())
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the event happened; the observed time when the sender gave none.
    pub time: Timestamp,
    /// When the sender's SDK or agent observed it.
    pub observed: Timestamp,
    /// OTLP severity number, 1 (TRACE) to 24 (FATAL4); 0 when unspecified.
    pub severity_number: i32,
    /// The severity as the source called it (`WARNING`, `error`, ...).
    #[serde(default)]
    pub severity_text: String,
    /// The message.
    pub body: LogBody,
    /// The record's own attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Trace id, 32 hex digits, when the record was made inside a span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Span id, 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The instrumentation scope (logger name).
    #[serde(default)]
    pub scope: String,
}

/// The short severity name shown in stored lines, from the OTLP number
/// (falling back to the source's own text).
pub fn severity_name(number: i32, text: &str) -> &str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ if text.is_empty() => "-",
        _ => text,
    }
}

impl LogRecord {
    /// A hash of the record's own fields and its source's resource hash
    /// (`source_hash`, from [`Source::hash`]). With [`LogRecord::time`] it
    /// identifies the record: a retried record hashes the same wherever it
    /// sits in whichever batch.
    pub fn content_hash(&self, source_hash: u64) -> u64 {
        let mut h = Hasher::default();
        h.u64(source_hash);
        h.u64(self.time.as_nanos() as u64);
        h.u64(self.observed.as_nanos() as u64);
        h.u64(self.severity_number as u64);
        h.str(&self.severity_text);
        match &self.body {
            LogBody::Text(s) => {
                h.u64(1);
                h.str(s);
            }
            LogBody::Json(v) => {
                h.u64(2);
                h.json(v);
            }
        }
        for (k, v) in &self.attributes {
            h.str(k);
            h.json(v);
        }
        h.str(self.trace_id.as_deref().unwrap_or(""));
        h.str(self.span_id.as_deref().unwrap_or(""));
        h.str(&self.scope);
        h.finish()
    }

    /// Appends the record as one human-readable line (no newline):
    /// `TIME SEVERITY service@host body key=value ... trace_id=.. span_id=..`.
    /// Newlines inside the body become `\n` so that one record stays one line.
    pub fn write_line(&self, source: &Source, out: &mut String) {
        self.write_line_with(source, &mut TimeText::default(), out);
    }

    /// [`LogRecord::write_line`] with a [`TimeText`] kept across records,
    /// which renders a run of records from the same second cheaply.
    pub fn write_line_with(&self, source: &Source, times: &mut TimeText, out: &mut String) {
        times.push(self.time, out);
        out.push(' ');
        out.push_str(severity_name(self.severity_number, &self.severity_text));
        out.push(' ');
        out.push_str(&source.service);
        if !source.host.is_empty() {
            out.push('@');
            out.push_str(&source.host);
        }
        out.push(' ');
        match &self.body {
            LogBody::Text(s) => push_escaped(out, s),
            LogBody::Json(v) => push_escaped(out, &v.to_string()),
        }
        for (k, v) in &self.attributes {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            match v {
                serde_json::Value::String(s) => push_escaped(out, s),
                other => push_escaped(out, &other.to_string()),
            }
        }
        if let Some(t) = &self.trace_id {
            let _ = write!(out, " trace_id={t}");
        }
        if let Some(s) = &self.span_id {
            let _ = write!(out, " span_id={s}");
        }
    }
}

/// Renders times exactly as [`Timestamp::to_rfc3339`] does, keeping the
/// text of the last whole second: ingest renders many records of the same
/// second in a row, and the calendar arithmetic was a noticeable part of
/// rendering a line.
#[derive(Debug, Clone, Default)]
pub struct TimeText {
    /// The second whose text `prefix` holds.
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS`, without the `Z`.
    prefix: String,
}

impl TimeText {
    /// Appends `t` as RFC 3339 in UTC, fraction trimmed of trailing zeros.
    pub fn push(&mut self, t: Timestamp, out: &mut String) {
        let ns = t.as_nanos();
        let second = ns.div_euclid(1_000_000_000);
        let frac = ns.rem_euclid(1_000_000_000);
        if self.second != Some(second) {
            let text = match jiff::Timestamp::from_second(second) {
                Ok(ts) => ts.to_string(),
                Err(_) => {
                    out.push_str(&t.to_rfc3339());
                    return;
                }
            };
            self.prefix.clear();
            self.prefix
                .push_str(text.strip_suffix('Z').unwrap_or(&text));
            self.second = Some(second);
        }
        out.push_str(&self.prefix);
        if frac != 0 {
            let mut digits = [b'0'; 10];
            digits[0] = b'.';
            let mut f = frac;
            for d in digits[1..].iter_mut().rev() {
                *d = b'0' + (f % 10) as u8;
                f /= 10;
            }
            let mut len = digits.len();
            while digits[len - 1] == b'0' {
                len -= 1;
            }
            out.push_str(std::str::from_utf8(&digits[..len]).expect("ASCII digits"));
        }
        out.push('Z');
    }
}

fn push_escaped(out: &mut String, s: &str) {
    // Two single-byte searches (memchr) are much faster than one search
    // for either of two chars, and nearly every body has neither.
    if !s.contains('\n') && !s.contains('\r') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A batch of log records from one source.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogBatch {
    /// Who sent them.
    pub source: Source,
    /// The records.
    pub records: Vec<LogRecord>,
}

/// A stored log line, as queries return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The record's time.
    pub time: Timestamp,
    /// The source key (`service@host`, or the run id).
    pub source: String,
    /// The plumb run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// The line as stored (see [`LogRecord::write_line`]).
    pub text: String,
}

/// What kind of operation a span is (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// Not given.
    #[default]
    Unspecified,
    /// An internal operation.
    Internal,
    /// Serving a request.
    Server,
    /// Making a request.
    Client,
    /// Sending a message.
    Producer,
    /// Receiving a message.
    Consumer,
}

impl SpanKind {
    /// From the OTLP enum number; unknown numbers are `Unspecified`.
    pub fn from_otlp(n: i32) -> SpanKind {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// How a span ended (OTLP `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    /// Not set.
    #[default]
    Unset,
    /// Completed successfully.
    Ok,
    /// Failed.
    Error,
}

impl StatusCode {
    /// From the OTLP enum number; unknown numbers are `Unset`.
    pub fn from_otlp(n: i32) -> StatusCode {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The number stored (OTLP's).
    pub fn as_i32(self) -> i32 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }
}

/// Something that happened during a span (exceptions are events named
/// `exception` with `exception.type`/`.message`/`.stacktrace` attributes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// When.
    pub time: Timestamp,
    /// Its name.
    pub name: String,
    /// Its attributes.
    #[serde(default)]
    pub attributes: Attributes,
}

/// One span of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// The parent span's id, absent for a root span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The operation.
    pub name: String,
    /// Its kind.
    #[serde(default)]
    pub kind: SpanKind,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// How it ended.
    #[serde(default)]
    pub status: StatusCode,
    /// The status message (for errors).
    #[serde(default)]
    pub status_message: String,
    /// Its attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Its events, exceptions included.
    #[serde(default)]
    pub events: Vec<SpanEvent>,
    /// The instrumentation scope (tracer name).
    #[serde(default)]
    pub scope: String,
    /// Who sent it.
    #[serde(default)]
    pub source: Source,
}

impl Span {
    /// The exception events of the span.
    pub fn exceptions(&self) -> impl Iterator<Item = &SpanEvent> {
        self.events.iter().filter(|e| e.name == "exception")
    }
}

/// What kind of metric a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A sampled value.
    Gauge,
    /// A sum (counter or up-down counter).
    Sum,
    /// A histogram; the value is the sum of observations.
    Histogram,
    /// An exponential histogram; the value is the sum of observations.
    ExponentialHistogram,
    /// A summary; the value is the sum of observations.
    Summary,
}

impl MetricKind {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// One data point of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Metric name.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Its unit.
    #[serde(default)]
    pub unit: String,
    /// When the value was taken.
    pub time: Timestamp,
    /// Start of the aggregation window (cumulative sums), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    /// The value (for histograms and summaries: the sum).
    pub value: f64,
    /// For histograms and summaries: how many observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For histograms: bucket bounds and counts, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<serde_json::Value>,
    /// The point's attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Who sent it.
    #[serde(default)]
    pub source: Source,
}

impl MetricPoint {
    /// A hash of the point's attributes and resource: with the name and the
    /// time it identifies the point, so a retried export stores it once.
    pub fn series_hash(&self) -> u64 {
        let mut h = Hasher::default();
        h.u64(self.source.hash());
        for (k, v) in &self.attributes {
            h.str(k);
            h.json(v);
        }
        h.finish()
    }
}

/// A stable, length-delimited hash of fields (XXH3 over a canonical byte
/// form). Stability across plumb versions matters: stored ids depend on it.
/// XXH3-64 of everything written, hashed in one call at the end: the same
/// value as XXH3's streaming form (stored identities depend on that), at a
/// fraction of its per-update cost for the many short fields of a record.
struct Hasher(Vec<u8>);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(Vec::with_capacity(512))
    }
}

impl Hasher {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn json(&mut self, v: &serde_json::Value) {
        // serde_json writes object keys in a stable order (its maps are
        // sorted unless `preserve_order` is on), so equal values write the
        // same bytes.
        match v {
            serde_json::Value::String(s) => self.str(s),
            other => self.str(&other.to_string()),
        }
    }
    fn finish(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> Source {
        let mut r = Attributes::new();
        r.insert("service.name".into(), json!("checkout"));
        r.insert("host.name".into(), json!("web-1"));
        r.insert(
            RUN_ID_ATTRIBUTE.into(),
            json!("0193a0f4-5b2c-7d3e-8f10-123456789abc"),
        );
        Source::from_resource(r)
    }

    fn record() -> LogRecord {
        let mut attributes = Attributes::new();
        attributes.insert("order".into(), json!(42));
        LogRecord {
            time: Timestamp::from_nanos(1_764_254_000_123_000_000),
            observed: Timestamp::from_nanos(1_764_254_000_124_000_000),
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: LogBody::Text("payment failed\nretrying".into()),
            attributes,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            scope: "shop".into(),
        }
    }

    #[test]
    fn source_reads_run_service_and_host() {
        let s = source();
        assert_eq!(s.service, "checkout");
        assert_eq!(s.host, "web-1");
        assert_eq!(
            s.run_id.unwrap().to_string(),
            "0193a0f4-5b2c-7d3e-8f10-123456789abc"
        );
        assert_eq!(s.key(), "0193a0f4-5b2c-7d3e-8f10-123456789abc");
        let bare = Source::from_resource(Attributes::new());
        assert_eq!(bare.key(), "unknown_service");
        assert_eq!(bare.run_id, None);
    }

    #[test]
    fn line_is_readable_and_one_line() {
        let mut line = String::new();
        record().write_line(&source(), &mut line);
        assert_eq!(
            line,
            "2025-11-27T14:33:20.123Z ERROR checkout@web-1 payment failed\\nretrying order=42 \
             trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331"
        );
    }

    #[test]
    fn content_hash_depends_on_fields_not_position() {
        let s = source();
        let a = record();
        assert_eq!(a.content_hash(s.hash()), record().content_hash(s.hash()));
        let mut b = record();
        b.body = LogBody::Text("payment failed\nretrying!".into());
        assert_ne!(a.content_hash(s.hash()), b.content_hash(s.hash()));
        let mut other = Attributes::new();
        other.insert("service.name".into(), json!("billing"));
        let s2 = Source::from_resource(other);
        assert_ne!(a.content_hash(s.hash()), a.content_hash(s2.hash()));
    }

    #[test]
    fn severity_names_follow_the_otlp_ranges() {
        assert_eq!(severity_name(9, "info"), "INFO");
        assert_eq!(severity_name(13, ""), "WARN");
        assert_eq!(severity_name(24, ""), "FATAL");
        assert_eq!(severity_name(0, "notice"), "notice");
        assert_eq!(severity_name(0, ""), "-");
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = record();
        let back: LogRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let mut structured = record();
        structured.body = LogBody::Json(json!({"a": [1, 2]}));
        let back: LogRecord =
            serde_json::from_str(&serde_json::to_string(&structured).unwrap()).unwrap();
        assert_eq!(back, structured);
    }

    proptest::proptest! {
        #[test]
        fn hasher_gives_xxh3_streaming_values(
            fields in proptest::collection::vec(".{0,300}", 0..12),
        ) {
            // Stored identities were made with XXH3's streaming form, one
            // update per field: the one-shot hash must keep those values.
            let mut streaming = xxhash_rust::xxh3::Xxh3::new();
            let mut h = Hasher::default();
            for f in &fields {
                streaming.update(&(f.len() as u64).to_le_bytes());
                streaming.update(f.as_bytes());
                h.str(f);
            }
            proptest::prop_assert_eq!(h.finish(), streaming.digest());
        }

        #[test]
        fn time_text_renders_as_to_rfc3339(
            base in -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000,
            steps in proptest::collection::vec(0i64..2_000_000_000, 1..20),
        ) {
            // Runs of times in and across seconds, as ingest renders them,
            // including whole seconds and times before 1970.
            let mut times = TimeText::default();
            let mut t = base;
            for (i, step) in steps.iter().enumerate() {
                t = t.saturating_add(*step);
                let ts = Timestamp::from_nanos(if i % 3 == 2 { t - t.rem_euclid(1_000_000_000) } else { t });
                let mut out = String::from("x");
                times.push(ts, &mut out);
                proptest::prop_assert_eq!(&out[1..], ts.to_rfc3339());
            }
        }
    }
}
