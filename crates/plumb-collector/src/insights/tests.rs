use super::*;
use plumb_model::telemetry::{Attributes, LogBody, LogRecord, Source};

const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/srv/app/app.py\", line 12, in <module>\n    fail(3)\n  File \"/srv/app/app.py\", line 5, in fail\n    raise ValueError(f\"bad value {n}\")\nValueError: bad value 3\n";

fn record(attrs: &[(&str, &str)], t: i64) -> LogRecord {
    let attributes: Attributes = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    LogRecord {
        time: Timestamp::from_nanos(t),
        observed: Timestamp::from_nanos(t),
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: LogBody::Text("failed".into()),
        attributes,
        trace_id: None,
        span_id: None,
        scope: String::new(),
    }
}

fn batch(records: Vec<LogRecord>) -> LogBatch {
    let mut resource = Attributes::new();
    resource.insert("service.name".into(), "svc".into());
    resource.insert("host.name".into(), "node-7".into());
    resource.insert("telemetry.sdk.language".into(), "python".into());
    LogBatch {
        source: Source::from_resource(resource),
        records,
    }
}

#[test]
fn otlp_exception_with_a_stacktrace_joins_the_run_group() {
    // The same traceback a run would have died with, on stderr.
    let from_run = plumb_model::exception::parse(TRACEBACK.as_bytes()).unwrap();
    let b = batch(vec![
        record(&[("code.lineno", "4")], 1),
        record(
            &[
                ("exception.type", "ValueError"),
                ("exception.message", "bad value 3"),
                ("exception.stacktrace", TRACEBACK),
            ],
            2,
        ),
    ]);
    let occ = otlp_occurrences(std::slice::from_ref(&b));
    assert_eq!(
        occ.len(),
        1,
        "records without exception attributes are skipped"
    );
    assert_eq!(occ[0].exception.fingerprint, from_run.fingerprint);
    assert_eq!(occ[0].host, "node-7");
    assert_eq!(occ[0].source, OccurrenceSource::Otlp);
    assert_eq!(occ[0].at, Timestamp::from_nanos(2));
    // The same record again (an exporter's retry) has the same key.
    assert_eq!(otlp_occurrences(&[b])[0].key, occ[0].key);
}

#[test]
fn otlp_exception_without_a_stacktrace_groups_by_type_and_message() {
    let occ = otlp_occurrences(&[batch(vec![
        record(
            &[
                ("exception.type", "KeyError"),
                ("exception.message", "missing 'user-17'"),
            ],
            1,
        ),
        record(
            &[
                ("exception.type", "KeyError"),
                ("exception.message", "missing 'user-99'"),
            ],
            2,
        ),
        record(
            &[
                ("exception.type", "KeyError"),
                ("exception.message", "other"),
            ],
            3,
        ),
    ])]);
    assert_eq!(occ.len(), 3);
    assert_eq!(occ[0].exception.language, "python");
    assert_eq!(occ[0].exception.kind, "KeyError");
    assert_eq!(
        occ[0].exception.fingerprint, occ[1].exception.fingerprint,
        "quoted values are normalized"
    );
    assert_ne!(occ[0].exception.fingerprint, occ[2].exception.fingerprint);
    assert_ne!(occ[0].key, occ[1].key);
}

#[test]
fn error_query_rejects_bad_parameters_by_name() {
    let cfg = InsightsConfig::default();
    let pairs = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let q = error_query(&cfg, &pairs("status", "regressed")).unwrap();
    assert_eq!(q.status, Some(ErrorStatus::Regressed));
    let q = error_query(&cfg, &pairs("since", "2026-01-01T00:00:00Z")).unwrap();
    assert!(q.since.is_some());
    for (k, v, needle) in [
        ("status", "weird", "weird"),
        ("since", "yesterday", "yesterday"),
        ("limit", "0", "limit"),
        ("colour", "red", "colour"),
    ] {
        let e = error_query(&cfg, &pairs(k, v)).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}
