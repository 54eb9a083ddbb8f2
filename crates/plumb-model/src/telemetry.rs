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
    /// The sender's `service.name`.
    #[serde(default)]
    pub service: String,
    /// The sender's `host.name` (empty when it gave none).
    #[serde(default)]
    pub host: String,
    /// The severity as stored (`INFO`, `WARN`, ...; see [`severity_name`]).
    #[serde(default)]
    pub severity: String,
    /// The trace the record was made in, when it was made inside a span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span it was made in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl LogLine {
    /// A stored line with the fields that [`LogRecord::write_line`] put in
    /// its text read back out: the severity between the time and
    /// `service@host`, and the `trace_id=` it ends with, if any. `service`
    /// and `host` are the source's, which the store keeps beside the text.
    pub fn parse(
        time: Timestamp,
        source: String,
        run_id: Option<Uuid>,
        service: String,
        host: String,
        text: String,
    ) -> LogLine {
        let (severity, trace_id, span_id) = {
            let after_time = text.split_once(' ').map_or("", |(_, rest)| rest);
            let severity = after_time
                .find(&format!(" {} ", sender(&service, &host)))
                .map_or("", |at| &after_time[..at]);
            let ids = line_trace_ids(&text);
            (
                severity.to_owned(),
                ids.map(|(t, _)| t.to_owned()),
                ids.map(|(_, s)| s.to_owned()),
            )
        };
        LogLine {
            time,
            source,
            run_id,
            text,
            service,
            host,
            severity,
            trace_id,
            span_id,
        }
    }

    /// The record's message and attributes: the stored line without the
    /// time, severity and sender it starts with.
    pub fn message(&self) -> &str {
        let marker = format!(" {} ", sender(&self.service, &self.host));
        match self.text.find(&marker) {
            Some(at) => &self.text[at + marker.len()..],
            None => &self.text,
        }
    }
}

impl LogLine {
    /// [`LogLine::message`] without the trace and span ids it ends with,
    /// for where the trace is shown already (`plumb trace`, the trace
    /// page).
    pub fn message_in_trace(&self) -> &str {
        let m = self.message();
        match (&self.trace_id, &self.span_id) {
            (Some(t), Some(s)) => m
                .strip_suffix(&format!(" trace_id={t} span_id={s}"))
                .unwrap_or(m),
            _ => m,
        }
    }
}

/// How a stored line names its sender: `service@host`, or the service alone.
fn sender(service: &str, host: &str) -> String {
    if host.is_empty() {
        service.to_owned()
    } else {
        format!("{service}@{host}")
    }
}

/// The trace and span ids a stored line ends with: ` trace_id=<32 hex>
/// span_id=<16 hex>`, as [`LogRecord::write_line`] ends the line of a
/// record made in a span. Only that exact ending counts, so an attribute
/// that happens to be called `trace_id` does not put a record in a trace.
fn line_trace_ids(text: &str) -> Option<(&str, &str)> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (head, span) = text.rsplit_once(" span_id=")?;
    let (_, trace) = head.rsplit_once(" trace_id=")?;
    (hex(span, 16) && hex(trace, 32)).then_some((trace, span))
}

/// One trace: its spans by start time and the log records made inside it,
/// by time (`plumb trace`, the dashboard's trace page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// Its spans, by start time.
    pub spans: Vec<Span>,
    /// Log records carrying its trace id, by time.
    pub logs: Vec<LogLine>,
}

/// One row of a trace shown as a tree ([`Trace::rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceRow {
    /// A span: its index in [`Trace::spans`] and its depth (0 for roots).
    Span {
        /// Index in [`Trace::spans`].
        index: usize,
        /// Depth in the tree.
        depth: usize,
    },
    /// A log record: its index in [`Trace::logs`] and its depth (one more
    /// than its span's).
    Log {
        /// Index in [`Trace::logs`].
        index: usize,
        /// Depth in the tree.
        depth: usize,
    },
}

impl TraceRow {
    fn index(&self) -> usize {
        match self {
            TraceRow::Span { index, .. } | TraceRow::Log { index, .. } => *index,
        }
    }

    /// Its depth in the tree.
    pub fn depth(&self) -> usize {
        match self {
            TraceRow::Span { depth, .. } | TraceRow::Log { depth, .. } => *depth,
        }
    }
}

impl Trace {
    /// The trace in display order, as a tree: each root (a span whose
    /// parent is not in the trace, or a log record made in no span of it)
    /// by time, each span followed by what happened inside it (its child
    /// spans and its log records, by time), depth first.
    pub fn rows(&self) -> Vec<TraceRow> {
        let ids: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.span_id.as_str()).collect();
        // (time, spans before logs at the same time, row) under each parent.
        type Entry = (Timestamp, u8, TraceRow);
        let mut inside: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
        let mut roots: Vec<Entry> = Vec::new();
        let spans = self.spans.iter().enumerate().map(|(index, s)| {
            let row = TraceRow::Span { index, depth: 0 };
            let parent = s.parent_span_id.as_deref().filter(|p| *p != s.span_id);
            (parent, (s.start, 0, row))
        });
        let logs = self.logs.iter().enumerate().map(|(index, l)| {
            let row = TraceRow::Log { index, depth: 0 };
            (l.span_id.as_deref(), (l.time, 1, row))
        });
        for (parent, e) in spans.chain(logs) {
            match parent {
                Some(p) if ids.contains(p) => inside.entry(p).or_default().push(e),
                _ => roots.push(e),
            }
        }
        let by_time = |v: &mut Vec<Entry>| v.sort_by_key(|(t, k, r)| (*t, *k, r.index()));
        by_time(&mut roots);
        inside.values_mut().for_each(by_time);
        let mut out = Vec::with_capacity(self.spans.len() + self.logs.len());
        // An explicit stack keeps a deep (or cyclic, from a confused
        // sender) parent chain from overflowing ours; `seen` ends cycles.
        let mut seen = vec![false; self.spans.len()];
        let mut stack: Vec<(TraceRow, usize)> =
            roots.into_iter().rev().map(|(_, _, r)| (r, 0)).collect();
        while let Some((row, depth)) = stack.pop() {
            match row {
                TraceRow::Log { index, .. } => out.push(TraceRow::Log { index, depth }),
                TraceRow::Span { index, .. } => {
                    if std::mem::replace(&mut seen[index], true) {
                        continue;
                    }
                    out.push(TraceRow::Span { index, depth });
                    if let Some(kids) = inside.get(self.spans[index].span_id.as_str()) {
                        stack.extend(kids.iter().rev().map(|(_, _, r)| (*r, depth + 1)));
                    }
                }
            }
        }
        // Spans only reachable through a cycle are shown as roots.
        for (index, s) in seen.iter().enumerate() {
            if !s {
                out.push(TraceRow::Span { index, depth: 0 });
            }
        }
        out
    }

    /// The spans of [`Trace::rows`] alone: (index in [`Trace::spans`],
    /// depth).
    pub fn tree(&self) -> Vec<(usize, usize)> {
        self.rows()
            .into_iter()
            .filter_map(|r| match r {
                TraceRow::Span { index, depth } => Some((index, depth)),
                TraceRow::Log { .. } => None,
            })
            .collect()
    }

    /// When the trace started (its earliest span start), if it has spans.
    pub fn start(&self) -> Option<Timestamp> {
        self.spans.iter().map(|s| s.start).min()
    }

    /// When it ended (its latest span end), if it has spans.
    pub fn end(&self) -> Option<Timestamp> {
        self.spans.iter().map(|s| s.end).max()
    }
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

    /// The name shown (`unset`, `ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
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

    /// How long it took, in nanoseconds (0 if its end precedes its start).
    pub fn duration_ns(&self) -> i64 {
        (self.end.as_nanos() - self.start.as_nanos()).max(0)
    }

    /// The one line search matches a span against: `name service@host
    /// key=value ...` with its attributes, its status when not unset and
    /// its status message. Newlines become `\n`, as in log lines.
    pub fn search_line(&self) -> String {
        let mut out = String::with_capacity(64 + self.name.len());
        push_escaped(&mut out, &self.name);
        out.push(' ');
        push_escaped(&mut out, &sender(&self.source.service, &self.source.host));
        for (k, v) in &self.attributes {
            out.push(' ');
            push_escaped(&mut out, k);
            out.push('=');
            match v {
                serde_json::Value::String(s) => push_escaped(&mut out, s),
                other => push_escaped(&mut out, &other.to_string()),
            }
        }
        if self.status != StatusCode::Unset {
            out.push_str(" status=");
            out.push_str(self.status.as_str());
        }
        if !self.status_message.is_empty() {
            out.push(' ');
            push_escaped(&mut out, &self.status_message);
        }
        out
    }
}

/// What kind of record a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Output of a recorded run (stdout, stderr or combined).
    Output,
    /// A log record (OTLP, `plumb.PlumbHandler`, `plumb proxy` events).
    Log,
    /// A span of a trace.
    Span,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Output, Kind::Log, Kind::Span];

    /// The name users type and see (`output`, `log`, `span`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Output => "output",
            Kind::Log => "log",
            Kind::Span => "span",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "output" => Ok(Kind::Output),
            "log" | "logs" => Ok(Kind::Log),
            "span" | "spans" => Ok(Kind::Span),
            other => Err(format!(
                "unknown kind `{other}`: expected output, log or span"
            )),
        }
    }
}

/// A span found by search: enough to show it and to open its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanHit {
    /// The trace, 32 hex digits.
    pub trace_id: String,
    /// The span, 16 hex digits.
    pub span_id: String,
    /// The operation.
    pub name: String,
    /// The sender's `service.name`.
    pub service: String,
    /// The sender's `host.name`.
    pub host: String,
    /// The plumb run, when the sender ran under `plumb run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// Start.
    pub time: Timestamp,
    /// Duration in nanoseconds.
    pub duration_ns: i64,
    /// How it ended.
    pub status: StatusCode,
    /// The line that matched ([`Span::search_line`]).
    pub text: String,
}

impl SpanHit {
    /// The hit for `span`, whose [`Span::search_line`] is `text`.
    pub fn new(span: &Span, text: String) -> SpanHit {
        SpanHit {
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            name: span.name.clone(),
            service: span.source.service.clone(),
            host: span.source.host.clone(),
            run_id: span.source.run_id,
            time: span.start,
            duration_ns: span.duration_ns(),
            status: span.status,
            text,
        }
    }
}

/// One search hit: a line of a run's output, a log record or a span. In
/// JSON, an object with `"kind"` beside the fields of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Hit {
    /// A line of a run's output.
    Output(crate::OutputLine),
    /// A log record.
    Log(LogLine),
    /// A span.
    Span(SpanHit),
}

impl Hit {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Hit::Output(_) => Kind::Output,
            Hit::Log(_) => Kind::Log,
            Hit::Span(_) => Kind::Span,
        }
    }

    /// The run it belongs to, if any.
    pub fn run_id(&self) -> Option<Uuid> {
        match self {
            Hit::Output(l) => Some(l.run_id),
            Hit::Log(l) => l.run_id,
            Hit::Span(s) => s.run_id,
        }
    }

    /// When it happened (a span: when it started).
    pub fn time(&self) -> Timestamp {
        match self {
            Hit::Output(l) => l.time,
            Hit::Log(l) => l.time,
            Hit::Span(s) => s.time,
        }
    }

    /// The host it came from.
    pub fn host(&self) -> &str {
        match self {
            Hit::Output(l) => &l.host,
            Hit::Log(l) => &l.host,
            Hit::Span(s) => &s.host,
        }
    }

    /// The line that matched: the output line, the stored log line, the
    /// span's [`Span::search_line`].
    pub fn text(&self) -> &str {
        match self {
            Hit::Output(l) => &l.text,
            Hit::Log(l) => &l.text,
            Hit::Span(s) => &s.text,
        }
    }

    /// The trace it belongs to: a span's, or a log record's made in a span.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Hit::Output(_) => None,
            Hit::Log(l) => l.trace_id.as_deref(),
            Hit::Span(s) => Some(&s.trace_id),
        }
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
