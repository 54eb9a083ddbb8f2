//! Encoding plumb's own records as OTLP requests, for the collector's
//! exporter (`[export] otlp` in plumb.toml): runs as spans, output lines as
//! log records, node heartbeats as gauges.
//!
//! A run's ids are derived from its UUID, so the same run always gives the
//! same span: the trace id is the UUID's 16 bytes, the span id its last 8
//! (the random part of a UUIDv7). Output lines carry those ids and a
//! `plumb.record.id` attribute that names the line (run, stream, chunk
//! part, line within the chunk), so a receiver can drop a line sent twice.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use plumb_model::node::NodeReport;
use plumb_model::{Run, RunState, Stream, Timestamp, Uuid};

/// The instrumentation scope of everything plumb exports.
pub const SCOPE: &str = "plumb";

/// A run's trace id (its UUID's bytes) and span id (the UUID's last 8
/// bytes).
pub fn run_ids(id: Uuid) -> ([u8; 16], [u8; 8]) {
    let b = *id.as_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&b[8..]);
    (b, span)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

fn nanos(t: Timestamp) -> u64 {
    t.as_nanos().max(0) as u64
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

fn run_resource(run: &Run) -> Resource {
    Resource {
        attributes: vec![
            s("service.name", "plumb"),
            s("host.name", run.host.hostname.clone()),
        ],
        ..Default::default()
    }
}

/// Whether a run record is exported as a span: only once it has ended, so
/// each run is one span with its real end.
pub fn run_is_exported(run: &Run) -> bool {
    run.state.is_final()
}

/// A finished run as a span: name = the run's name, start and end, status
/// from its exit (OK for a success, ERROR otherwise with the exit in the
/// message), attributes for the run id, command line, host, exit code,
/// signal, tags (`plumb.tag.<key>`), fingerprint hash and attempt.
pub fn run_span(run: &Run) -> Span {
    let (trace, span_id) = run_ids(run.id);
    let mut attributes = vec![
        s(plumb_model::telemetry::RUN_ID_ATTRIBUTE, run.id.to_string()),
        s("plumb.run.name", run.name.clone()),
        s("plumb.run.state", run.state.as_str()),
        s("process.command_line", run.argv.join(" ")),
        s("host.name", run.host.hostname.clone()),
        i("process.pid", i64::from(run.pid)),
        i("plumb.run.attempt", i64::from(run.attempt)),
    ];
    if !run.user.name.is_empty() {
        attributes.push(s("user.name", run.user.name.clone()));
    }
    if let Some(e) = &run.exit {
        attributes.push(i("process.exit.code", i64::from(e.shell_code())));
        if let Some(sig) = e.signal {
            attributes.push(s(
                "plumb.exit.signal",
                plumb_model::display::exit(None, Some(sig)),
            ));
        }
    }
    if let Some(fp) = &run.fingerprint {
        attributes.push(s("plumb.fingerprint", fp.clone()));
    }
    for (k, v) in &run.tags {
        attributes.push(s(&format!("plumb.tag.{k}"), v.clone()));
    }
    let ok = run.state == RunState::Succeeded;
    let message = if ok {
        String::new()
    } else {
        match &run.exit {
            Some(e) => format!(
                "{}: exit {}",
                run.state.as_str(),
                plumb_model::display::exit(e.code, e.signal)
            ),
            None => run.state.as_str().to_string(),
        }
    };
    Span {
        trace_id: trace.to_vec(),
        span_id: span_id.to_vec(),
        name: run.name.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(run.started),
        end_time_unix_nano: nanos(run.ended.unwrap_or(run.started)),
        attributes,
        status: Some(Status {
            message,
            code: if ok {
                status::StatusCode::Ok
            } else {
                status::StatusCode::Error
            } as i32,
        }),
        ..Default::default()
    }
}

/// Finished runs as one trace export request (one resource per run).
pub fn runs_request<'a>(runs: impl IntoIterator<Item = &'a Run>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: runs
            .into_iter()
            .filter(|r| run_is_exported(r))
            .map(|run| ResourceSpans {
                resource: Some(run_resource(run)),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![run_span(run)],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// One line of a run's output, to be exported as a log record.
#[derive(Debug, Clone)]
pub struct OutputLine<'a> {
    /// When the line was read.
    pub time: Timestamp,
    /// Which stream.
    pub stream: Stream,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub text: &'a str,
    /// The chunk's position among its stream's chunks.
    pub part: u64,
    /// The line's position in its chunk, from 0.
    pub index: u64,
}

/// A run's output lines as log records of one resource (the run's host),
/// carrying the run's trace and span ids, `plumb.run.id`, `plumb.stream`
/// and `plumb.record.id` (`<run>/<stream>/<part>/<index>`); stderr lines
/// have severity WARN, the others INFO.
pub fn output_logs<'a>(run: &Run, lines: impl IntoIterator<Item = OutputLine<'a>>) -> ResourceLogs {
    let (trace, span_id) = run_ids(run.id);
    let id = run.id.to_string();
    let records = lines
        .into_iter()
        .map(|l| {
            let stream = l.stream.as_str();
            let (severity_number, severity_text) = match l.stream {
                Stream::Stderr => (13, "WARN"),
                _ => (9, "INFO"),
            };
            LogRecord {
                time_unix_nano: nanos(l.time),
                observed_time_unix_nano: nanos(l.time),
                severity_number,
                severity_text: severity_text.into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(l.text.to_string())),
                }),
                attributes: vec![
                    s(plumb_model::telemetry::RUN_ID_ATTRIBUTE, id.clone()),
                    s("plumb.run.name", run.name.clone()),
                    s("plumb.stream", stream),
                    s(
                        "plumb.record.id",
                        format!("{id}/{stream}/{}/{}", l.part, l.index),
                    ),
                ],
                trace_id: trace.to_vec(),
                span_id: span_id.to_vec(),
                ..Default::default()
            }
        })
        .collect();
    ResourceLogs {
        resource: Some(run_resource(run)),
        scope_logs: vec![ScopeLogs {
            scope: scope(),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A node heartbeat as gauges, all at the report's time, under a resource
/// naming the node (`host.name`, and `plumb.label.<key>` per label):
/// `plumb.node.load1|load5|load15`, `plumb.node.cpus`,
/// `plumb.node.memory.total|available` (bytes),
/// `plumb.node.swap.total|free`, `plumb.node.uptime` (s),
/// `plumb.node.runs_in_progress`, `plumb.node.spool.bytes`,
/// `plumb.node.disk.total|available` (bytes, per `mount`), and
/// `plumb.node.network.rx|tx` (bytes so far, per `interface`).
pub fn node_metrics(report: &NodeReport) -> ResourceMetrics {
    let time = nanos(report.sent);
    let mut metrics = Vec::new();
    let mut gauge = |name: &str, unit: &str, points: Vec<(f64, Vec<KeyValue>)>| {
        metrics.push(Metric {
            name: format!("plumb.node.{name}"),
            unit: unit.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points
                    .into_iter()
                    .map(|(v, attributes)| NumberDataPoint {
                        attributes,
                        time_unix_nano: time,
                        value: Some(number_data_point::Value::AsDouble(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        });
    };
    let one = |v: f64| vec![(v, Vec::new())];
    gauge("load1", "1", one(report.cpu.load1));
    gauge("load5", "1", one(report.cpu.load5));
    gauge("load15", "1", one(report.cpu.load15));
    gauge("cpus", "1", one(f64::from(report.cpu.cpus)));
    gauge("memory.total", "By", one(report.memory.total as f64));
    gauge(
        "memory.available",
        "By",
        one(report.memory.available as f64),
    );
    gauge("swap.total", "By", one(report.memory.swap_total as f64));
    gauge("swap.free", "By", one(report.memory.swap_free as f64));
    gauge("uptime", "s", one(report.uptime_s));
    gauge(
        "runs_in_progress",
        "1",
        one(f64::from(report.runs_in_progress)),
    );
    gauge("spool.bytes", "By", one(report.spool.bytes as f64));
    let mount = |d: &plumb_model::node::DiskInfo| {
        vec![
            s("mount", d.mount.clone()),
            s("device", d.device.clone()),
            s("fs_type", d.fs_type.clone()),
        ]
    };
    gauge(
        "disk.total",
        "By",
        report
            .disks
            .iter()
            .map(|d| (d.total as f64, mount(d)))
            .collect(),
    );
    gauge(
        "disk.available",
        "By",
        report
            .disks
            .iter()
            .map(|d| (d.available as f64, mount(d)))
            .collect(),
    );
    let iface = |n: &plumb_model::node::NetInfo| vec![s("interface", n.interface.clone())];
    gauge(
        "network.rx",
        "By",
        report
            .network
            .iter()
            .map(|n| (n.rx_bytes as f64, iface(n)))
            .collect(),
    );
    gauge(
        "network.tx",
        "By",
        report
            .network
            .iter()
            .map(|n| (n.tx_bytes as f64, iface(n)))
            .collect(),
    );
    metrics.retain(|m| match &m.data {
        Some(metric::Data::Gauge(g)) => !g.data_points.is_empty(),
        _ => true,
    });
    let mut attributes = vec![
        s("service.name", "plumb-agent"),
        s("host.name", report.node.clone()),
        i("plumb.node.seq", report.seq as i64),
    ];
    for (k, v) in &report.labels {
        attributes.push(s(&format!("plumb.label.{k}"), v.clone()));
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: scope(),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Requests being gathered for one send: whatever several queue entries
/// gave, per signal.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Spans.
    pub traces: ExportTraceServiceRequest,
    /// Log records.
    pub logs: ExportLogsServiceRequest,
    /// Metric points.
    pub metrics: ExportMetricsServiceRequest,
    /// Protobuf request bodies added as they came, per signal (traces,
    /// logs, metrics), with their record counts: a protobuf message
    /// followed by another of the same type decodes as one holding both
    /// messages' repeated fields, so bodies are joined without decoding.
    pub raw: [(Vec<u8>, usize); 3],
}

fn slot(signal: crate::Signal) -> usize {
    match signal {
        crate::Signal::Traces => 0,
        crate::Signal::Logs => 1,
        crate::Signal::Metrics => 2,
    }
}

/// Records in one resource's part of a request.
fn spans_in(r: &ResourceSpans) -> usize {
    r.scope_spans.iter().map(|s| s.spans.len()).sum()
}

fn logs_in(r: &ResourceLogs) -> usize {
    r.scope_logs.iter().map(|s| s.log_records.len()).sum()
}

fn points_in(r: &ResourceMetrics) -> usize {
    r.scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(g)) => g.data_points.len(),
            Some(metric::Data::Histogram(g)) => g.data_points.len(),
            Some(metric::Data::ExponentialHistogram(g)) => g.data_points.len(),
            Some(metric::Data::Summary(g)) => g.data_points.len(),
            None => 0,
        })
        .sum()
}

/// Cuts resources into request bodies of about `max` bytes (a resource is
/// never split), each with its record count.
fn cut<R: prost::Message + Clone, Q: prost::Message + Default>(
    items: &[R],
    count: impl Fn(&R) -> usize,
    wrap: impl Fn(Vec<R>) -> Q,
    max: usize,
) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut part = Vec::new();
    let (mut size, mut n) = (0, 0);
    for r in items {
        let len = r.encoded_len();
        if !part.is_empty() && size + len > max {
            out.push((n, wrap(std::mem::take(&mut part)).encode_to_vec()));
            (size, n) = (0, 0);
        }
        size += len;
        n += count(r);
        part.push(r.clone());
    }
    if !part.is_empty() {
        out.push((n, wrap(part).encode_to_vec()));
    }
    out
}

impl Batch {
    /// The requests to send, per signal, each body about `max` bytes at
    /// most (one resource, or one body as received, may be larger), with
    /// its record count.
    pub fn requests(&self, max: usize) -> Vec<(crate::Signal, usize, Vec<u8>)> {
        use crate::Signal;
        let mut out = Vec::new();
        let traces = cut(
            &self.traces.resource_spans,
            spans_in,
            |resource_spans| ExportTraceServiceRequest { resource_spans },
            max,
        );
        let logs = cut(
            &self.logs.resource_logs,
            logs_in,
            |resource_logs| ExportLogsServiceRequest { resource_logs },
            max,
        );
        let metrics = cut(
            &self.metrics.resource_metrics,
            points_in,
            |resource_metrics| ExportMetricsServiceRequest { resource_metrics },
            max,
        );
        for (signal, parts) in [
            (Signal::Traces, traces),
            (Signal::Logs, logs),
            (Signal::Metrics, metrics),
        ] {
            out.extend(parts.into_iter().map(|(n, b)| (signal, n, b)));
            let (raw, n) = &self.raw[slot(signal)];
            if !raw.is_empty() {
                out.push((signal, *n, raw.clone()));
            }
        }
        out
    }

    /// Spans, log records and data points in it.
    pub fn counts(&self) -> (usize, usize, usize) {
        let spans: usize = self
            .traces
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let logs: usize = self
            .logs
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let points: usize = self
            .metrics
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Sum(g)) => g.data_points.len(),
                Some(metric::Data::Histogram(g)) => g.data_points.len(),
                Some(metric::Data::ExponentialHistogram(g)) => g.data_points.len(),
                Some(metric::Data::Summary(g)) => g.data_points.len(),
                None => 0,
            })
            .sum();
        (
            spans + self.raw[0].1,
            logs + self.raw[1].1,
            points + self.raw[2].1,
        )
    }

    /// Adds a protobuf request body of `signal` holding `records` records,
    /// without decoding it.
    pub fn add_protobuf(&mut self, signal: crate::Signal, body: &[u8], records: usize) {
        let (raw, n) = &mut self.raw[slot(signal)];
        raw.extend_from_slice(body);
        *n += records;
    }

    /// Moves `other`'s records into this batch.
    pub fn append(&mut self, other: Batch) {
        for (mine, theirs) in self.raw.iter_mut().zip(other.raw) {
            mine.0.extend_from_slice(&theirs.0);
            mine.1 += theirs.1;
        }
        self.traces
            .resource_spans
            .extend(other.traces.resource_spans);
        self.logs.resource_logs.extend(other.logs.resource_logs);
        self.metrics
            .resource_metrics
            .extend(other.metrics.resource_metrics);
    }

    /// Whether it holds nothing to send.
    pub fn is_empty(&self) -> bool {
        self.traces.resource_spans.is_empty()
            && self.logs.resource_logs.is_empty()
            && self.metrics.resource_metrics.is_empty()
            && self.raw.iter().all(|(b, _)| b.is_empty())
    }

    /// Adds an OTLP/HTTP request body as the collector received it
    /// (protobuf, or JSON when `json`), undecoded until now.
    pub fn add_otlp(
        &mut self,
        signal: crate::Signal,
        body: &[u8],
        json: bool,
    ) -> Result<(), crate::DecodeError> {
        let format = if json {
            crate::Format::Json
        } else {
            crate::Format::Protobuf
        };
        match signal {
            crate::Signal::Logs => {
                let r: ExportLogsServiceRequest =
                    crate::decode(body, format, "ExportLogsServiceRequest")?;
                self.logs.resource_logs.extend(r.resource_logs);
            }
            crate::Signal::Traces => {
                let r: ExportTraceServiceRequest =
                    crate::decode(body, format, "ExportTraceServiceRequest")?;
                self.traces.resource_spans.extend(r.resource_spans);
            }
            crate::Signal::Metrics => {
                let r: ExportMetricsServiceRequest =
                    crate::decode(body, format, "ExportMetricsServiceRequest")?;
                self.metrics.resource_metrics.extend(r.resource_metrics);
            }
        }
        Ok(())
    }

    /// The trace request's protobuf body.
    pub fn traces_body(&self) -> Vec<u8> {
        use prost::Message;
        let mut body = self.traces.encode_to_vec();
        body.extend_from_slice(&self.raw[0].0);
        body
    }

    /// The logs request's protobuf body.
    pub fn logs_body(&self) -> Vec<u8> {
        use prost::Message;
        let mut body = self.logs.encode_to_vec();
        body.extend_from_slice(&self.raw[1].0);
        body
    }

    /// The metrics request's protobuf body.
    pub fn metrics_body(&self) -> Vec<u8> {
        use prost::Message;
        let mut body = self.metrics.encode_to_vec();
        body.extend_from_slice(&self.raw[2].0);
        body
    }

    /// The encoded size of the three requests, to cut batches.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        self.traces.encoded_len()
            + self.logs.encoded_len()
            + self.metrics.encoded_len()
            + self.raw.iter().map(|(b, _)| b.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn run(state: RunState, code: i32) -> Run {
        let mut r = Run::new(
            Uuid::parse_str("0193a0f4-5b2c-7d3e-8f10-123456789abc").unwrap(),
            "train.py".into(),
            Timestamp::from_nanos(1_000),
        );
        r.state = state;
        r.ended = Some(Timestamp::from_nanos(5_000));
        r.argv = vec!["python".into(), "train.py".into()];
        r.exit = Some(plumb_model::ExitStatus {
            code: Some(code),
            ..Default::default()
        });
        r.tags.insert("team".into(), "ml".into());
        r.host.hostname = "gpu-7".into();
        r
    }

    #[test]
    fn a_run_is_a_span_with_ids_from_its_uuid() {
        let r = run(RunState::Failed, 3);
        let span = run_span(&r);
        assert_eq!(span.trace_id, r.id.as_bytes().to_vec());
        assert_eq!(span.span_id, r.id.as_bytes()[8..].to_vec());
        assert_eq!(span.name, "train.py");
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (1_000, 5_000)
        );
        let st = span.status.unwrap();
        assert_eq!(st.code, status::StatusCode::Error as i32);
        assert!(st.message.contains("exit 3"), "{}", st.message);
        let keys: Vec<_> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        for k in [
            "plumb.run.id",
            "process.exit.code",
            "plumb.tag.team",
            "host.name",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn only_finished_runs_are_exported_and_requests_round_trip() {
        let running = run(RunState::Running, 0);
        let done = run(RunState::Succeeded, 0);
        let req = runs_request([&running, &done]);
        assert_eq!(req.resource_spans.len(), 1);
        let back = ExportTraceServiceRequest::decode(&*req.encode_to_vec()).unwrap();
        assert_eq!(back, req);
        let span = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Ok as i32
        );
    }

    #[test]
    fn protobuf_bodies_joined_undecoded_read_back_as_one_request() {
        let a = run(RunState::Succeeded, 0);
        let mut b = run(RunState::Failed, 1);
        b.id = Uuid::parse_str("0193a0f4-5b2c-7d3e-8f10-000000000002").unwrap();
        let mut batch = Batch {
            traces: runs_request([&a]),
            ..Default::default()
        };
        batch.add_protobuf(
            crate::Signal::Traces,
            &runs_request([&b]).encode_to_vec(),
            1,
        );
        assert_eq!(batch.counts(), (2, 0, 0));
        let back = ExportTraceServiceRequest::decode(&*batch.traces_body()).unwrap();
        assert_eq!(back, runs_request([&a, &b]));
    }

    #[test]
    fn large_batches_are_cut_between_resources() {
        let r = run(RunState::Succeeded, 0);
        let text = "x".repeat(1000);
        let mut batch = Batch::default();
        for part in 0..10 {
            batch.logs.resource_logs.push(output_logs(
                &r,
                (0..10).map(|index| OutputLine {
                    time: Timestamp::from_nanos(1),
                    stream: Stream::Stdout,
                    text: &text,
                    part,
                    index,
                }),
            ));
        }
        batch.add_protobuf(crate::Signal::Logs, b"", 0);
        let reqs = batch.requests(25_000);
        assert!(reqs.len() >= 4, "{}", reqs.len());
        let mut total = 0;
        for (signal, n, body) in &reqs {
            assert_eq!(*signal, crate::Signal::Logs);
            assert!(body.len() < 25_000 + 12_000, "{}", body.len());
            let back = ExportLogsServiceRequest::decode(&body[..]).unwrap();
            assert_eq!(back.resource_logs.iter().map(logs_in).sum::<usize>(), *n);
            total += n;
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn output_lines_carry_the_run_and_a_record_id() {
        let r = run(RunState::Succeeded, 0);
        let logs = output_logs(
            &r,
            [OutputLine {
                time: Timestamp::from_nanos(2_000),
                stream: Stream::Stderr,
                text: "oops",
                part: 4,
                index: 7,
            }],
        );
        let rec = &logs.scope_logs[0].log_records[0];
        assert_eq!(rec.trace_id, r.id.as_bytes().to_vec());
        assert_eq!(rec.severity_text, "WARN");
        let id = rec
            .attributes
            .iter()
            .find(|a| a.key == "plumb.record.id")
            .unwrap();
        assert_eq!(
            id.value.as_ref().unwrap().value,
            Some(Value::StringValue(format!("{}/stderr/4/7", r.id)))
        );
    }
}
