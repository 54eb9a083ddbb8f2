use super::*;
use plumb_model::telemetry::{LogBody, SpanKind, StatusCode};
use proptest::prelude::*;

const LOGS: &str = r#"{"resourceLogs":[{
  "resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"shop"}},
    {"key":"host.name","value":{"stringValue":"web-1"}},
    {"key":"plumb.run.id","value":{"stringValue":"0193a0f4-5b2c-7d3e-8f10-123456789abc"}}]},
  "scopeLogs":[{"scope":{"name":"orders"},"logRecords":[
    {"timeUnixNano":"1764000000000000000","severityNumber":17,"severityText":"ERROR",
     "body":{"stringValue":"payment failed"},
     "attributes":[{"key":"order","value":{"intValue":"42"}}],
     "traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331"},
    {"observedTimeUnixNano":"1764000000500000000",
     "body":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}}},
    {"timeUnixNano":"1764000001000000000","body":{"stringValue":"bad ids"},"traceId":"0af765"}
  ]}]}]}"#;

const TRACES: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
  "scopeSpans":[{"scope":{"name":"t"},"spans":[
    {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"checkout",
     "kind":2,"startTimeUnixNano":"1764000000000000000","endTimeUnixNano":"1764000000200000000",
     "status":{"code":2,"message":"boom"},
     "events":[{"timeUnixNano":"1764000000100000000","name":"exception",
       "attributes":[{"key":"exception.type","value":{"stringValue":"ValueError"}}]}]},
    {"traceId":"0af7651916cd43dd8448eb211c80319c","name":"no span id",
     "startTimeUnixNano":"1764000000000000000"}
  ]}]}]}"#;

const METRICS: &str = r#"{"resourceMetrics":[{"resource":{},"scopeMetrics":[{"metrics":[
  {"name":"queue.depth","unit":"1","gauge":{"dataPoints":[
     {"timeUnixNano":"1764000000000000000","asInt":"7","attributes":[{"key":"q","value":{"stringValue":"a"}}]},
     {"timeUnixNano":"1764000000000000000"}]}},
  {"name":"latency","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[
     {"timeUnixNano":"1764000000000000000","count":"3","sum":0.6,"bucketCounts":["1","2"],"explicitBounds":[0.1]}]}}
]}]}]}"#;

#[test]
fn json_logs_decode_with_partial_rejection() {
    let logs = decode_logs(LOGS.as_bytes(), Format::Json).unwrap();
    assert_eq!(logs.batches.len(), 1);
    let b = &logs.batches[0];
    assert_eq!(b.source.service, "shop");
    assert_eq!(b.source.host, "web-1");
    assert_eq!(
        b.source.run_id.unwrap().to_string(),
        "0193a0f4-5b2c-7d3e-8f10-123456789abc"
    );
    assert_eq!(b.records.len(), 2);
    let r = &b.records[0];
    assert_eq!(r.time.as_nanos(), 1_764_000_000_000_000_000);
    assert_eq!(r.severity_number, 17);
    assert_eq!(r.body, LogBody::Text("payment failed".into()));
    assert_eq!(r.attributes["order"], serde_json::json!(42));
    assert_eq!(
        r.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(r.scope, "orders");
    // No event time: the observed time stands in.
    let r = &b.records[1];
    assert_eq!(r.time.as_nanos(), 1_764_000_000_500_000_000);
    assert_eq!(r.body, LogBody::Json(serde_json::json!({"k": true})));
    assert_eq!(logs.rejected, 1);
    assert!(
        logs.message.contains("trace_id has 3 bytes, not 16"),
        "{}",
        logs.message
    );
}

#[test]
fn protobuf_and_json_decode_to_the_same_records() {
    let pb = logs_json_to_protobuf(LOGS.as_bytes()).unwrap();
    let from_pb = decode_logs(&pb, Format::Protobuf).unwrap();
    let from_json = decode_logs(LOGS.as_bytes(), Format::Json).unwrap();
    assert_eq!(from_pb.batches, from_json.batches);
    assert_eq!(from_pb.rejected, 1);
}

#[test]
fn traces_decode_kind_status_events_and_reject_missing_ids() {
    let t = decode_traces(TRACES.as_bytes(), Format::Json).unwrap();
    assert_eq!(t.spans.len(), 1);
    let s = &t.spans[0];
    assert_eq!(s.name, "checkout");
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.status, StatusCode::Error);
    assert_eq!(s.status_message, "boom");
    assert_eq!(s.exceptions().count(), 1);
    assert_eq!(s.end.as_nanos() - s.start.as_nanos(), 200_000_000);
    assert_eq!(t.rejected, 1);
    assert!(t.message.contains("span_id is missing"), "{}", t.message);
    let pb = traces_json_to_protobuf(TRACES.as_bytes()).unwrap();
    assert_eq!(decode_traces(&pb, Format::Protobuf).unwrap().spans, t.spans);
}

#[test]
fn metrics_decode_gauges_and_histograms() {
    let m = decode_metrics(METRICS.as_bytes(), Format::Json).unwrap();
    assert_eq!(m.points.len(), 2);
    assert_eq!(m.points[0].name, "queue.depth");
    assert_eq!(m.points[0].value, 7.0);
    assert_eq!(m.points[0].attributes["q"], serde_json::json!("a"));
    assert_eq!(m.points[1].count, Some(3));
    assert_eq!(m.points[1].value, 0.6);
    assert_eq!(m.rejected, 1, "{}", m.message);
    assert!(m.message.contains("queue.depth"));
}

#[test]
fn responses_carry_partial_success_only_when_needed() {
    assert_eq!(logs_response(0, "", Format::Json), b"{}");
    let body: serde_json::Value =
        serde_json::from_slice(&logs_response(2, "why", Format::Json)).unwrap();
    assert_eq!(
        body["partialSuccess"]["rejectedLogRecords"],
        serde_json::json!(2)
    );
    assert_eq!(body["partialSuccess"]["errorMessage"], "why");
    let pb = traces_response(1, "x", Format::Protobuf);
    let back = ExportTraceServiceResponse::decode(pb.as_slice()).unwrap();
    assert_eq!(back.partial_success.unwrap().rejected_spans, 1);
    assert!(metrics_response(0, "", Format::Protobuf).is_empty());
    let err: serde_json::Value = serde_json::from_slice(&error_body("bad", None)).unwrap();
    assert_eq!(err["message"], "bad");
}

#[test]
fn bad_bodies_get_errors_that_name_the_problem() {
    let pb = logs_json_to_protobuf(LOGS.as_bytes()).unwrap();
    let e = decode_logs(&pb[..pb.len() / 2], Format::Protobuf).unwrap_err();
    assert!(matches!(e, DecodeError::Malformed(_)));
    assert!(
        e.to_string()
            .contains("not a protobuf ExportLogsServiceRequest"),
        "{e}"
    );
    let e = decode_logs(b"{\"resourceLogs\": [", Format::Json).unwrap_err();
    assert!(
        e.to_string()
            .contains("not an OTLP JSON ExportLogsServiceRequest"),
        "{e}"
    );
    // Wrong types: a string where a list belongs.
    let e = decode_logs(br#"{"resourceLogs":"nope"}"#, Format::Json).unwrap_err();
    assert!(e.to_string().contains("invalid type"), "{e}");
    let e = decode_traces(
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
        Format::Json,
    )
    .unwrap_err();
    assert!(matches!(e, DecodeError::Malformed(_)), "{e}");
}

#[test]
fn content_types_and_encodings() {
    assert_eq!(
        Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
        Format::Json
    );
    assert_eq!(
        Format::from_content_type(Some("Application/X-Protobuf")).unwrap(),
        Format::Protobuf
    );
    let e = Format::from_content_type(Some("text/plain")).unwrap_err();
    assert!(matches!(e, DecodeError::ContentType(_)));
    assert!(e.to_string().contains("text/plain"));
    assert!(Format::from_content_type(None).is_err());

    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(LOGS.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let plain = decompress(&gz, Some("gzip"), 1 << 20).unwrap();
    assert_eq!(&plain[..], LOGS.as_bytes());
    let e = decompress(&gz, Some("gzip"), 100).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge(_)), "{e}");
    let e = decompress(&gz[..gz.len() / 2], Some("gzip"), 1 << 20).unwrap_err();
    assert!(e.to_string().contains("does not decompress"), "{e}");
    let e = decompress(b"not gzip at all", Some("gzip"), 1 << 20).unwrap_err();
    assert!(matches!(e, DecodeError::Malformed(_)));
    let e = decompress(b"x", Some("br"), 1 << 20).unwrap_err();
    assert!(matches!(e, DecodeError::ContentType(_)));
    assert_eq!(&decompress(b"x", None, 1).unwrap()[..], b"x");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    // Arbitrary bytes never panic a decoder: they decode or give an error.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for f in [Format::Protobuf, Format::Json] {
            let _ = decode_logs(&bytes, f);
            let _ = decode_traces(&bytes, f);
            let _ = decode_metrics(&bytes, f);
        }
        let _ = decompress(&bytes, Some("gzip"), 1 << 16);
    }

    // Cutting a valid protobuf body anywhere never panics either.
    #[test]
    fn truncated_protobuf_never_panics(cut in 0usize..2000) {
        let pb = logs_json_to_protobuf(LOGS.as_bytes()).unwrap();
        let _ = decode_logs(&pb[..cut.min(pb.len())], Format::Protobuf);
    }
}

mod budget {
    //! The pre-decoding scan against what prost actually builds.
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            "[a-z]{0,8}".prop_map(|s| AnyValue {
                value: Some(Value::StringValue(s))
            }),
            any::<i64>().prop_map(|i| AnyValue {
                value: Some(Value::IntValue(i))
            }),
            any::<bool>().prop_map(|b| AnyValue {
                value: Some(Value::BoolValue(b))
            }),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values }))
                }),
                proptest::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|kvs| AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect()
                    }))
                }),
            ]
        })
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(("[a-z]{1,6}", any_value()), 0..4).prop_map(|kvs| {
            kvs.into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(v),
                    ..Default::default()
                })
                .collect()
        })
    }

    fn record() -> impl Strategy<Value = LogRecord> {
        (
            any::<u64>(),
            proptest::option::of(any_value()),
            attributes(),
        )
            .prop_map(|(t, body, attributes)| LogRecord {
                time_unix_nano: t,
                body,
                attributes,
                ..Default::default()
            })
    }

    fn request() -> impl Strategy<Value = ExportLogsServiceRequest> {
        let scope = (
            proptest::option::of(attributes()),
            proptest::collection::vec(record(), 0..5),
        )
            .prop_map(|(scope, log_records)| ScopeLogs {
                scope: scope.map(|attributes| InstrumentationScope {
                    name: "s".into(),
                    attributes,
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            });
        let resource = (
            proptest::option::of(attributes()),
            proptest::collection::vec(scope, 0..3),
        )
            .prop_map(|(resource, scope_logs)| ResourceLogs {
                resource: resource.map(|attributes| Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_logs,
                ..Default::default()
            });
        proptest::collection::vec(resource, 0..3)
            .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
    }

    /// Messages prost builds for `req`, counted from the decoded structs.
    fn messages(req: &ExportLogsServiceRequest) -> u64 {
        fn value(v: &AnyValue) -> u64 {
            1 + match &v.value {
                Some(Value::ArrayValue(a)) => 1 + a.values.iter().map(value).sum::<u64>(),
                Some(Value::KvlistValue(l)) => 1 + attrs(&l.values),
                _ => 0,
            }
        }
        fn attrs(kvs: &[KeyValue]) -> u64 {
            kvs.iter()
                .map(|kv| 1 + kv.value.as_ref().map_or(0, value))
                .sum()
        }
        1 + req
            .resource_logs
            .iter()
            .map(|r| {
                1 + r
                    .resource
                    .as_ref()
                    .map_or(0, |res| 1 + attrs(&res.attributes))
                    + r.scope_logs
                        .iter()
                        .map(|s| {
                            1 + s.scope.as_ref().map_or(0, |sc| 1 + attrs(&sc.attributes))
                                + s.log_records
                                    .iter()
                                    .map(|l| {
                                        1 + l.body.as_ref().map_or(0, value) + attrs(&l.attributes)
                                    })
                                    .sum::<u64>()
                        })
                        .sum::<u64>()
            })
            .sum::<u64>()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        // The scan counts exactly the messages prost builds, in both
        // encodings, and a decoder refuses a request one message over its
        // budget and accepts it at the budget.
        #[test]
        fn scan_counts_what_decoding_builds(req in request()) {
            let want = messages(&req);
            let pb = prost::Message::encode_to_vec(&req);
            let json = serde_json::to_vec(&req).unwrap();
            for (body, format) in [(&pb, Format::Protobuf), (&json, Format::Json)] {
                let cost = scan(body, format, Signal::Logs, &Limits::default()).unwrap();
                prop_assert_eq!(cost.items, want, "{:?}", format);
                let exact = Limits { max_items: want, ..Limits::default() };
                prop_assert!(decode_logs_within(body, format, &exact).is_ok());
                let under = Limits { max_items: want - 1, ..Limits::default() };
                let refused = decode_logs_within(body, format, &under);
                prop_assert!(matches!(refused, Err(DecodeError::TooLarge(_))), "{:?}", format);
            }
        }

        // Whatever the bytes, the scan never lets through more than the
        // budget: a body it accepts decodes to at most `max_items` messages.
        #[test]
        fn scan_never_passes_more_than_the_budget(req in request(), max in 1u64..40) {
            let want = messages(&req);
            let pb = prost::Message::encode_to_vec(&req);
            let json = serde_json::to_vec(&req).unwrap();
            let limits = Limits { max_items: max, ..Limits::default() };
            for (body, format) in [(&pb, Format::Protobuf), (&json, Format::Json)] {
                match decode_logs_within(body, format, &limits) {
                    Ok(_) => prop_assert!(want <= max, "{:?}", format),
                    Err(DecodeError::TooLarge(_)) => prop_assert!(want > max, "{:?}", format),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
        }

        // Random bytes, and valid bodies with random bytes spliced in,
        // never get more records past a small budget than it allows, in
        // either encoding (the fuzz target's checks, on stable).
        #[test]
        fn mangled_bodies_never_pass_more_than_the_budget(
            req in request(),
            at in any::<proptest::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let pb = prost::Message::encode_to_vec(&req);
            let json = serde_json::to_vec(&req).unwrap();
            for body in [pb, json] {
                let mut mangled = body.clone();
                let i = at.index(mangled.len() + 1);
                mangled.splice(i..i, junk.iter().copied());
                crate::fuzzing::decode_otlp(&body);
                crate::fuzzing::decode_otlp(&mangled);
            }
        }
    }

    /// The request of issue 21: millions of empty log records, a few
    /// megabytes of protobuf, gzip-compressible to kilobytes.
    fn empty_records_bomb(records: usize) -> Vec<u8> {
        // ResourceLogs { ScopeLogs { LogRecord {}... } }: each empty record
        // is field 2, length 0.
        let scope: Vec<u8> = std::iter::repeat_n([0x12u8, 0x00], records)
            .flatten()
            .collect();
        let mut scope_logs = vec![0x12];
        put_varint(&mut scope_logs, scope.len() as u64);
        scope_logs.extend_from_slice(&scope);
        let mut resource_logs = vec![0x0a];
        put_varint(&mut resource_logs, scope_logs.len() as u64);
        resource_logs.extend_from_slice(&scope_logs);
        resource_logs
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn millions_of_empty_records_are_refused_before_decoding() {
        let body = empty_records_bomb(4_000_000);
        let err = decode_logs(&body, Format::Protobuf).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge(_)), "{err}");
        assert!(err.to_string().contains("524288 messages"), "{err}");
        let json = format!(
            "{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{}{{}}]}}]}}]}}",
            "{},".repeat(1_000_000)
        );
        let err = decode_logs(json.as_bytes(), Format::Json).unwrap_err();
        assert!(err.to_string().contains("524288 messages"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_naming_the_limit() {
        let mut v = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..40 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(v),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let pb = prost::Message::encode_to_vec(&req);
        let err = decode_logs(&pb, Format::Protobuf).unwrap_err();
        assert!(err.to_string().contains("32 levels"), "{err}");
        let json = serde_json::to_vec(&req).unwrap();
        let err = decode_logs(&json, Format::Json).unwrap_err();
        assert!(err.to_string().contains("32 levels"), "{err}");
    }

    #[test]
    fn metered_decompression_stops_when_the_budget_says_so() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        let body = gz.finish().unwrap();
        let mut granted = 0usize;
        let err = decompress_metered(&body, Some("gzip"), 64 << 20, &mut |n| {
            if granted + n > 3 << 20 {
                return Err(DecodeError::Busy("no memory".into()));
            }
            granted += n;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, DecodeError::Busy(_)));
        assert_eq!(granted, 3 << 20);
        // Without a budget it inflates in full, and the steps add up.
        let mut asked = 0usize;
        let out = decompress_metered(&body, Some("gzip"), 64 << 20, &mut |n| {
            asked += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), 8 << 20);
        assert!(asked >= 8 << 20);
    }
}

/// Replays the checked-in corpus of the fuzz target `decode_otlp` (the
/// inputs that once failed and a few seeds) through the target's own
/// checks, on the stable toolchain.
#[test]
fn fuzz_corpus_replays_clean() {
    plumb_model::fuzzing::replay("decode_otlp", 5, crate::fuzzing::decode_otlp);
}
