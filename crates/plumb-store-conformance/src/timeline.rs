//! Conformance cases for [`Timeline`](plumb_store::Timeline): log records
//! and spans by time window, whichever run or source sent them.

use crate::Harness;
use crate::telemetry::{batch, source, span_of};
use plumb_model::Timestamp;

/// Record `i` of the telemetry cases is at this time plus `i` ms.
const BASE: i64 = 1_764_000_000_000_000_000;
const MS: i64 = 1_000_000;

pub fn logs_and_spans_are_found_by_time_window_from_every_source(h: &dyn Harness) {
    let store = h.open();
    let run = plumb_model::new_id();
    // A run's records at 0..50 ms and a plain service's at 30..80 ms.
    store
        .put_logs(&[
            batch(&source(Some(run), "web-1"), 0..50),
            batch(&source(None, "db-1"), 30..80),
        ])
        .unwrap();
    let at = |ms: i64| Timestamp::from_nanos(BASE + ms * MS);
    let lines = store.logs_between(at(40), at(60), 0).unwrap();
    assert_eq!(lines.len(), 10 + 20, "40..50 of the run, 40..60 of db-1");
    assert!(
        lines.windows(2).all(|w| w[0].time <= w[1].time),
        "oldest first"
    );
    assert!(lines.iter().all(|l| l.time >= at(40) && l.time < at(60)));
    assert_eq!(lines.iter().filter(|l| l.run_id == Some(run)).count(), 10);
    assert!(lines.iter().any(|l| l.host == "db-1" && l.run_id.is_none()));
    assert_eq!(store.logs_between(at(40), at(60), 5).unwrap().len(), 5);
    assert!(store.logs_between(at(100), at(200), 0).unwrap().is_empty());

    store
        .put_spans(&[
            span_of("t1", "a", None, "root", 10 * MS),
            span_of("t1", "b", Some("a"), "child", 20 * MS),
            span_of("t2", "c", None, "other", 90 * MS),
        ])
        .unwrap();
    let spans = store.spans_between(at(15), at(95), 0).unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["child", "other"]);
    assert_eq!(store.spans_between(at(0), at(95), 1).unwrap().len(), 1);
}
