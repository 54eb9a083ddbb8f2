//! From OTLP's generated messages to plumb's telemetry types.

use crate::{Logs, Metrics, Traces};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use plumb_model::Timestamp;
use plumb_model::telemetry::{
    Attributes, LogBatch, LogBody, LogRecord, MetricKind, MetricPoint, Source, Span, SpanEvent,
    SpanKind, StatusCode,
};
use serde_json::Value;

/// How many rejection reasons a response lists before "and N more".
const MAX_REASONS: usize = 3;

/// Collects rejections and their first reasons.
#[derive(Default)]
struct Rejections {
    count: u64,
    reasons: Vec<String>,
}

impl Rejections {
    fn add(&mut self, reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason());
        }
    }

    fn message(&self) -> String {
        let mut m = self.reasons.join("; ");
        let more = self.count.saturating_sub(self.reasons.len() as u64);
        if more > 0 {
            m.push_str(&format!("; and {more} more"));
        }
        m
    }
}

pub(crate) fn any_value(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            // JSON has no NaN or infinities; keep them readable.
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_value).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|k| {
                    (
                        k.key.clone(),
                        k.value.as_ref().map_or(Value::Null, any_value),
                    )
                })
                .collect(),
        ),
        // Bytes are shown as hex: readable in a log line, and exact.
        Some(any_value::Value::BytesValue(b)) => Value::String(plumb_model::hex(b)),
        // Dictionary indices only mean something inside profiles.
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
    }
}

pub(crate) fn attributes(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, any_value),
            )
        })
        .collect()
}

fn source(resource: Option<&Resource>) -> Source {
    Source::from_resource(
        resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default(),
    )
}

/// A trace or span id: empty means absent, anything but `len` bytes (or all
/// zeros, which the spec calls invalid) is an error.
fn id(bytes: &[u8], len: usize, what: &str) -> Result<Option<String>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!("{what} has {} bytes, not {len}", bytes.len()));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(format!("{what} is all zeros"));
    }
    Ok(Some(plumb_model::hex(bytes)))
}

fn time(ns: u64) -> Option<Timestamp> {
    // Zero means "unknown"; times past i64 are nonsense, not a crash.
    (ns != 0 && ns <= i64::MAX as u64).then(|| Timestamp::from_nanos(ns as i64))
}

pub(crate) fn logs(req: ExportLogsServiceRequest) -> Logs {
    let now = Timestamp::now();
    let mut rejections = Rejections::default();
    let mut batches = Vec::with_capacity(req.resource_logs.len());
    for rl in req.resource_logs {
        let mut batch = LogBatch {
            source: source(rl.resource.as_ref()),
            records: Vec::new(),
        };
        for sl in rl.scope_logs {
            let scope = sl.scope.map(|s| s.name).unwrap_or_default();
            batch.records.reserve(sl.log_records.len());
            for (i, r) in sl.log_records.into_iter().enumerate() {
                let ids = id(&r.trace_id, 16, "trace_id")
                    .and_then(|t| Ok((t, id(&r.span_id, 8, "span_id")?)));
                let (trace_id, span_id) = match ids {
                    Ok(ids) => ids,
                    Err(why) => {
                        rejections.add(|| format!("log record {i} of scope `{scope}`: {why}"));
                        continue;
                    }
                };
                // A missing time is filled from the other one, so that a
                // retried record still hashes the same; only a record with
                // neither gets the receive time (and cannot be told apart
                // from its retry).
                let observed = time(r.observed_time_unix_nano)
                    .or(time(r.time_unix_nano))
                    .unwrap_or(now);
                let body = match r.body.and_then(|b| b.value) {
                    None => LogBody::Text(String::new()),
                    Some(any_value::Value::StringValue(s)) => LogBody::Text(s),
                    Some(other) => LogBody::Json(any_value(&AnyValue { value: Some(other) })),
                };
                let mut attrs = attributes(&r.attributes);
                if !r.event_name.is_empty() {
                    attrs.insert("event.name".into(), Value::String(r.event_name));
                }
                batch.records.push(LogRecord {
                    time: time(r.time_unix_nano).unwrap_or(observed),
                    observed,
                    severity_number: r.severity_number,
                    severity_text: r.severity_text,
                    body,
                    attributes: attrs,
                    trace_id,
                    span_id,
                    scope: scope.clone(),
                });
            }
        }
        if !batch.records.is_empty() {
            batches.push(batch);
        }
    }
    Logs {
        batches,
        rejected: rejections.count,
        message: rejections.message(),
    }
}

pub(crate) fn traces(req: ExportTraceServiceRequest) -> Traces {
    let mut rejections = Rejections::default();
    let mut spans = Vec::new();
    for rs in req.resource_spans {
        let src = source(rs.resource.as_ref());
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for (i, s) in ss.spans.into_iter().enumerate() {
                let ids = (|| {
                    let trace = id(&s.trace_id, 16, "trace_id")?.ok_or("trace_id is missing")?;
                    let span = id(&s.span_id, 8, "span_id")?.ok_or("span_id is missing")?;
                    let parent = id(&s.parent_span_id, 8, "parent_span_id")?;
                    Ok::<_, String>((trace, span, parent))
                })();
                let (trace_id, span_id, parent_span_id) = match ids {
                    Ok(ids) => ids,
                    Err(why) => {
                        rejections
                            .add(|| format!("span {i} (`{}`) of scope `{scope}`: {why}", s.name));
                        continue;
                    }
                };
                let Some(start) = time(s.start_time_unix_nano) else {
                    rejections.add(|| format!("span {i} (`{}`) has no start time", s.name));
                    continue;
                };
                let end = time(s.end_time_unix_nano).unwrap_or(start);
                let (status, status_message) = s
                    .status
                    .map(|st| (StatusCode::from_otlp(st.code), st.message))
                    .unwrap_or_default();
                spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name: s.name,
                    kind: SpanKind::from_otlp(s.kind),
                    start,
                    end,
                    status,
                    status_message,
                    attributes: attributes(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| SpanEvent {
                            time: time(e.time_unix_nano).unwrap_or(start),
                            name: e.name.clone(),
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                    scope: scope.clone(),
                    source: src.clone(),
                });
            }
        }
    }
    Traces {
        spans,
        rejected: rejections.count,
        message: rejections.message(),
    }
}

pub(crate) fn metrics(req: ExportMetricsServiceRequest) -> Metrics {
    let mut rejections = Rejections::default();
    let mut points = Vec::new();
    for rm in req.resource_metrics {
        let src = source(rm.resource.as_ref());
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let base = |kind, t: u64, start: u64, attrs: &[KeyValue]| {
                    Some(MetricPoint {
                        name: m.name.clone(),
                        kind,
                        unit: m.unit.clone(),
                        time: time(t)?,
                        start: time(start),
                        value: 0.0,
                        count: None,
                        buckets: None,
                        attributes: attributes(attrs),
                        source: src.clone(),
                    })
                };
                let mut push = |p: Option<MetricPoint>, rejections: &mut Rejections| match p {
                    Some(p) => points.push(p),
                    None => rejections
                        .add(|| format!("a data point of `{}` has no time or no value", m.name)),
                };
                match &m.data {
                    None => rejections.add(|| format!("metric `{}` has no data", m.name)),
                    Some(metric::Data::Gauge(g)) => {
                        for dp in &g.data_points {
                            let p = number(dp.value).and_then(|v| {
                                let mut p = base(
                                    MetricKind::Gauge,
                                    dp.time_unix_nano,
                                    dp.start_time_unix_nano,
                                    &dp.attributes,
                                )?;
                                p.value = v;
                                Some(p)
                            });
                            push(p, &mut rejections);
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        for dp in &s.data_points {
                            let p = number(dp.value).and_then(|v| {
                                let mut p = base(
                                    MetricKind::Sum,
                                    dp.time_unix_nano,
                                    dp.start_time_unix_nano,
                                    &dp.attributes,
                                )?;
                                p.value = v;
                                Some(p)
                            });
                            push(p, &mut rejections);
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for dp in &h.data_points {
                            let p = base(
                                MetricKind::Histogram,
                                dp.time_unix_nano,
                                dp.start_time_unix_nano,
                                &dp.attributes,
                            )
                            .map(|mut p| {
                                p.value = dp.sum.unwrap_or(0.0);
                                p.count = Some(dp.count);
                                p.buckets = Some(serde_json::json!({
                                    "bounds": dp.explicit_bounds,
                                    "counts": dp.bucket_counts,
                                }));
                                p
                            });
                            push(p, &mut rejections);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for dp in &h.data_points {
                            let p = base(MetricKind::ExponentialHistogram, dp.time_unix_nano, dp.start_time_unix_nano, &dp.attributes).map(|mut p| {
                                p.value = dp.sum.unwrap_or(0.0);
                                p.count = Some(dp.count);
                                let side = |b: &Option<opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets>| {
                                    b.as_ref().map(|b| serde_json::json!({"offset": b.offset, "counts": b.bucket_counts}))
                                };
                                p.buckets = Some(serde_json::json!({
                                    "scale": dp.scale,
                                    "zero_count": dp.zero_count,
                                    "positive": side(&dp.positive),
                                    "negative": side(&dp.negative),
                                }));
                                p
                            });
                            push(p, &mut rejections);
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for dp in &s.data_points {
                            let p = base(MetricKind::Summary, dp.time_unix_nano, dp.start_time_unix_nano, &dp.attributes).map(|mut p| {
                                p.value = dp.sum;
                                p.count = Some(dp.count);
                                p.buckets = Some(Value::Array(
                                    dp.quantile_values
                                        .iter()
                                        .map(|q| serde_json::json!({"quantile": q.quantile, "value": q.value}))
                                        .collect(),
                                ));
                                p
                            });
                            push(p, &mut rejections);
                        }
                    }
                }
            }
        }
    }
    Metrics {
        points,
        rejected: rejections.count,
        message: rejections.message(),
    }
}

fn number(v: Option<number_data_point::Value>) -> Option<f64> {
    match v? {
        number_data_point::Value::AsDouble(d) => Some(d),
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}
