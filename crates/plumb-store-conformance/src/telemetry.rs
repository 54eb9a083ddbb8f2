//! Conformance cases: moved from plumb-store/src/telemetry.rs.

use crate::Harness;

use plumb_model::Stream;
use plumb_model::telemetry::{
    Attributes, LogBody, LogRecord, MetricKind, RUN_ID_ATTRIBUTE, SpanEvent, SpanKind, StatusCode,
};
use plumb_model::telemetry::{Hit, Kind, LogBatch, MetricPoint, Source, Span};
use plumb_model::{Timestamp, Uuid};
use plumb_store::telemetry::Ingested;
use plumb_store::telemetry::prepare_logs;
use plumb_store::{SearchOptions, StoreError};
use serde_json::json;

pub(crate) fn source(run: Option<Uuid>, host: &str) -> Source {
    let mut r = Attributes::new();
    r.insert("service.name".into(), json!("shop"));
    r.insert("host.name".into(), json!(host));
    if let Some(id) = run {
        r.insert(RUN_ID_ATTRIBUTE.into(), json!(id.to_string()));
    }
    Source::from_resource(r)
}

fn record(i: i64, body: &str) -> LogRecord {
    log_at(1_764_000_000_000_000_000 + i * 1_000_000, body)
}

/// An INFO record made and observed at `t` (ns).
pub(crate) fn log_at(t: i64, body: &str) -> LogRecord {
    LogRecord {
        time: Timestamp::from_nanos(t),
        observed: Timestamp::from_nanos(t),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: LogBody::Text(body.into()),
        attributes: Attributes::new(),
        trace_id: None,
        span_id: None,
        scope: "test".into(),
    }
}

pub(crate) fn batch(source: &Source, range: std::ops::Range<i64>) -> LogBatch {
    LogBatch {
        source: source.clone(),
        records: range
            .map(|i| record(i, &format!("order {i} shipped")))
            .collect(),
    }
}

pub fn retried_records_are_stored_once_however_batched(h: &dyn Harness) {
    let store = h.open();
    let run = plumb_model::new_id();
    let s = source(Some(run), "web-1");
    let first = store.put_logs(&[batch(&s, 0..100)]).unwrap();
    assert_eq!(
        first,
        Ingested {
            stored: 100,
            duplicates: 0
        }
    );
    // A retry of the same request, then a re-batched one overlapping it.
    let again = store.put_logs(&[batch(&s, 0..100)]).unwrap();
    assert_eq!(
        again,
        Ingested {
            stored: 0,
            duplicates: 100
        }
    );
    let overlap = store
        .put_logs(&[batch(&s, 50..120), batch(&s, 120..130)])
        .unwrap();
    assert_eq!(
        overlap,
        Ingested {
            stored: 30,
            duplicates: 50
        }
    );
    // New records first and a duplicate request after them, in one call:
    // the new ones are kept whichever way the store checks.
    let mixed = store
        .put_logs(&[batch(&s, 130..140), batch(&s, 0..10)])
        .unwrap();
    assert_eq!(
        mixed,
        Ingested {
            stored: 10,
            duplicates: 10
        }
    );
    let lines = store.run_logs(run, 0).unwrap();
    assert_eq!(lines.len(), 140);
    let mut bodies: Vec<String> = lines
        .iter()
        .map(|l| l.text.split("@web-1 ").nth(1).unwrap().to_string())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 140, "every record exactly once");
    assert!(
        lines[0].text.starts_with("2025-11-24T"),
        "{}",
        lines[0].text
    );
    assert!(lines[0].text.contains(" INFO shop@web-1 order 0 shipped"));
    assert_eq!(store.count_log_records().unwrap(), 140);
}

pub fn overlaps_across_statement_sizes_and_repeats_within_a_request_are_stored_once(
    h: &dyn Harness,
) {
    let store = h.open();
    let s = source(None, "web-1");
    assert_eq!(store.put_logs(&[batch(&s, 0..600)]).unwrap().stored, 600);
    // 300..900 overlaps by 300 records, spread over 256-, 16- and 1-row
    // statements; record 700 is sent twice in the same request.
    let mut b = batch(&s, 300..900);
    b.records.push(record(700, "order 700 shipped"));
    let counts = store.put_logs(&[b]).unwrap();
    assert_eq!(
        counts,
        Ingested {
            stored: 300,
            duplicates: 301
        }
    );
    let lines = store.source_logs("shop@web-1", 0).unwrap();
    assert_eq!(lines.len(), 900);
    let mut texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), 900, "every record exactly once");
}

pub fn search_finds_log_lines_by_run_and_by_source(h: &dyn Harness) {
    let store = h.open();
    let run = plumb_model::new_id();
    let with_run = source(Some(run), "web-1");
    let no_run = source(None, "db-2");
    let mut b = batch(&with_run, 0..500);
    b.records[250].body = LogBody::Text("disk quota zanzibar exceeded".into());
    store.put_logs(&[b, batch(&no_run, 1000..1200)]).unwrap();
    let hits = store
        .search(&SearchOptions {
            text: "Zanzibar".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 1);
    let Hit::Log(l) = &hits[0] else {
        panic!("a log record is a log hit: {hits:?}")
    };
    assert_eq!(l.run_id, Some(run));
    assert_eq!(l.host, "web-1");
    assert_eq!(l.service, "shop");
    assert_eq!(l.severity, "INFO");
    assert_eq!(l.message(), "disk quota zanzibar exceeded");
    assert_eq!(l.time, record(250, "").time);
    // Records without a run are filed under their source, and belong
    // to no run.
    let hits = store
        .search(&SearchOptions {
            text: "order 1100 shipped".into(),
            host: Some("db-2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind(), Kind::Log);
    assert_eq!(hits[0].run_id(), None);
    assert_eq!(store.source_logs("shop@db-2", 0).unwrap().len(), 200);
    // Filters exclude what they should: log records are neither output
    // nor on any stream.
    for opts in [
        SearchOptions {
            text: "zanzibar".into(),
            host: Some("db-2".into()),
            ..Default::default()
        },
        SearchOptions {
            text: "zanzibar".into(),
            stream: Some(Stream::Stderr),
            ..Default::default()
        },
        SearchOptions {
            text: "zanzibar".into(),
            kinds: vec![Kind::Output, Kind::Span],
            ..Default::default()
        },
    ] {
        let none = store.search(&opts).unwrap();
        assert!(none.is_empty(), "{opts:?}: {none:?}");
    }
}

pub(crate) fn span_of(trace: &str, id: &str, parent: Option<&str>, name: &str, start: i64) -> Span {
    let mut attributes = Attributes::new();
    attributes.insert("order.id".into(), json!(42));
    Span {
        trace_id: trace.into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_owned),
        name: name.into(),
        kind: SpanKind::Internal,
        start: Timestamp::from_nanos(1_764_000_000_000_000_000 + start),
        end: Timestamp::from_nanos(1_764_000_000_000_000_000 + start + 1_000_000),
        status: StatusCode::Unset,
        status_message: String::new(),
        attributes,
        events: Vec::new(),
        scope: "t".into(),
        source: source(None, "web-1"),
    }
}

pub fn spans_are_found_by_name_service_and_attributes_and_traces_by_prefix(h: &dyn Harness) {
    let store = h.open();
    let t1 = "0af7651916cd43dd8448eb211c80319c";
    let t2 = "0af7000016cd43dd8448eb211c80319d";
    store
        .put_spans(&[
            span_of(t1, "b7ad6b7169203331", None, "checkout", 0),
            span_of(
                t1,
                "00f067aa0ba902b7",
                Some("b7ad6b7169203331"),
                "charge-card",
                100,
            ),
            span_of(t2, "1111111111111111", None, "refund", 50),
        ])
        .unwrap();
    let find = |text: &str| -> Vec<String> {
        store
            .search(&SearchOptions {
                text: text.into(),
                kinds: vec![Kind::Span],
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|h| match h {
                Hit::Span(s) => s.name,
                other => panic!("not a span: {other:?}"),
            })
            .collect()
    };
    assert_eq!(find("checkout"), ["checkout"]);
    // Words in sequence, as for output: `charge` finds `charge-card`.
    assert_eq!(find("charge"), ["charge-card"]);
    assert_eq!(find("shop"), ["charge-card", "refund", "checkout"]);
    assert_eq!(find("order.id=42 refund"), ["refund"]);
    assert!(find("nosuchspan").is_empty());
    // A span hit names its trace and no run.
    let hits = store
        .search(&SearchOptions {
            text: "refund".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].trace_id(), Some(t2));
    assert_eq!(hits[0].run_id(), None);

    // Traces by a unique prefix; an ambiguous one is refused.
    assert_eq!(store.resolve_trace("0af76519").unwrap(), t1);
    assert!(matches!(
        store.resolve_trace("0af7"),
        Err(StoreError::Ambiguous { .. })
    ));
    assert!(matches!(
        store.resolve_trace("ffff"),
        Err(StoreError::NoSuchTrace(_))
    ));
    assert!(matches!(
        store.resolve_trace("zz!"),
        Err(StoreError::BadQuery(_))
    ));
}

pub fn a_trace_holds_its_spans_as_a_tree_and_the_logs_made_in_it(h: &dyn Harness) {
    let store = h.open();
    let t = "4bf92f3577b34da6a3ce929d0e0e4736";
    store
        .put_spans(&[
            span_of(t, "00000000000000a1", None, "checkout", 0),
            span_of(
                t,
                "00000000000000b2",
                Some("00000000000000a1"),
                "charge",
                200,
            ),
            span_of(
                t,
                "00000000000000c3",
                Some("00000000000000a1"),
                "reserve",
                100,
            ),
            span_of(t, "00000000000000d4", Some("00000000000000c3"), "lock", 150),
        ])
        .unwrap();
    let s = source(None, "web-1");
    let mut inside = record(0, "card declined");
    inside.trace_id = Some(t.into());
    inside.span_id = Some("00000000000000b2".into());
    let mut other = record(1, "another trace");
    other.trace_id = Some("ffffffffffffffffffffffffffffffff".into());
    // Naming the trace as an attribute does not put a record in it.
    let mut mention = record(2, "mentions it");
    mention.attributes.insert("trace_id".into(), json!(t));
    store
        .put_logs(&[LogBatch {
            source: s,
            records: vec![inside, other, mention, record(3, "no trace")],
        }])
        .unwrap();
    let trace = store.trace("4bf92f").unwrap();
    assert_eq!(trace.trace_id, t);
    let order: Vec<(&str, usize)> = trace
        .tree()
        .into_iter()
        .map(|(i, depth)| (trace.spans[i].name.as_str(), depth))
        .collect();
    assert_eq!(
        order,
        [("checkout", 0), ("reserve", 1), ("lock", 2), ("charge", 1)]
    );
    assert_eq!(trace.logs.len(), 1, "{:?}", trace.logs);
    assert_eq!(
        trace.logs[0].message(),
        format!("card declined trace_id={t} span_id=00000000000000b2")
    );
    assert_eq!(trace.logs[0].trace_id.as_deref(), Some(t));
    assert!(matches!(
        store.trace("abcdef"),
        Err(StoreError::NoSuchTrace(_))
    ));
}

pub fn spans_and_metric_points_are_stored_once_and_found_by_run(h: &dyn Harness) {
    let store = h.open();
    let run = plumb_model::new_id();
    let s = source(Some(run), "web-1");
    let mut exc = Attributes::new();
    exc.insert("exception.type".into(), json!("ValueError"));
    let span = |id: &str, parent: Option<&str>, start: i64| Span {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_owned),
        name: format!("op-{id}"),
        kind: SpanKind::Server,
        start: Timestamp::from_nanos(start),
        end: Timestamp::from_nanos(start + 10),
        status: StatusCode::Error,
        status_message: "boom".into(),
        attributes: Attributes::new(),
        events: vec![SpanEvent {
            time: Timestamp::from_nanos(start + 5),
            name: "exception".into(),
            attributes: exc.clone(),
        }],
        scope: "t".into(),
        source: s.clone(),
    };
    let spans = vec![
        span("b7ad6b7169203331", None, 100),
        span("00f067aa0ba902b7", Some("b7ad6b7169203331"), 200),
    ];
    assert_eq!(store.put_spans(&spans).unwrap(), 2);
    assert_eq!(
        store.put_spans(&spans).unwrap(),
        0,
        "a retry stores nothing"
    );
    let got = store.run_spans(run).unwrap();
    assert_eq!(got, spans);
    assert_eq!(got[1].exceptions().count(), 1);
    assert_eq!(
        store
            .trace_spans("0AF7651916CD43DD8448EB211C80319C")
            .unwrap()
            .len(),
        2
    );
    assert!(store.run_has_telemetry(run).unwrap());
    assert!(!store.run_has_telemetry(plumb_model::new_id()).unwrap());

    let point = |t: i64, v: f64| MetricPoint {
        name: "queue.depth".into(),
        kind: MetricKind::Gauge,
        unit: "1".into(),
        time: Timestamp::from_nanos(t),
        start: None,
        value: v,
        count: None,
        buckets: None,
        attributes: Attributes::new(),
        source: s.clone(),
    };
    let points = vec![point(10, 1.0), point(20, 3.5)];
    assert_eq!(store.put_metric_points(&points).unwrap(), 2);
    assert_eq!(store.put_metric_points(&points).unwrap(), 0);
    assert_eq!(store.metric_points("queue.depth", None, 0).unwrap(), points);
    assert_eq!(
        store
            .metric_points("queue.depth", Some(Timestamp::from_nanos(15)), 0)
            .unwrap()
            .len(),
        1
    );
}

pub fn big_batches_are_cut_into_several_chunks(h: &dyn Harness) {
    let store = h.open();
    let s = source(None, "web-1");
    let prepared = prepare_logs(&[batch(&s, 0..20_000)]);
    assert!(prepared.chunks() > 1, "{} groups", prepared.chunks());
    assert_eq!(prepared.records(), 20_000);
    let counts = store.put_prepared_logs(&[prepared]).unwrap();
    assert_eq!(counts[0].stored, 20_000);
    assert_eq!(store.source_logs("shop@web-1", 0).unwrap().len(), 20_000);
}
