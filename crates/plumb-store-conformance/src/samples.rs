//! Conformance cases for [`NodeHistory`](plumb_store::NodeHistory): each
//! node's use over time, downsampled as heartbeats arrive.

use crate::Harness;
use plumb_model::Timestamp;
use plumb_model::node::{DiskUse, NodeReport, NodeSample, NodeState};
use plumb_store::samples::Step;

fn sample(load1: f64, mem_used: u64, disks: &[(&str, u64)]) -> NodeSample {
    NodeSample {
        at: Timestamp::from_nanos(0),
        load1,
        mem_used,
        mem_total: 1000,
        disks: disks
            .iter()
            .map(|(m, used)| DiskUse {
                mount: m.to_string(),
                used: *used,
                total: 100,
            })
            .collect(),
    }
}

fn report(node: &str) -> NodeReport {
    serde_json::from_value(serde_json::json!({
        "version": 1, "node": node, "sent": 0, "seq": 0, "interval_ms": 1000,
        "cpu": {"load1": 0.5, "load5": 0.0, "load15": 0.0, "cpus": 2},
        "memory": {"total": 1, "available": 1, "swap_total": 0, "swap_free": 0}
    }))
    .unwrap()
}

pub fn node_samples_keep_the_highest_per_interval_bounded_and_sparks_for_every_node(
    h: &dyn Harness,
) {
    let store = h.open();
    let min = 60_000_000_000i64;
    // A whole ten-minute interval's start, so minutes 0..10 share one row.
    let t0 = 1_700_000_400_000_000_000i64 - 1_700_000_400_000_000_000i64.rem_euclid(10 * min);
    let at = |m: i64, s: i64| Timestamp::from_nanos(t0 + m * min + s * 1_000_000_000);
    // Three heartbeats in minute 0: the highest of each figure stays.
    store
        .put_node_sample("a", at(0, 5), &sample(1.0, 100, &[("/", 10)]))
        .unwrap();
    store
        .put_node_sample("a", at(0, 25), &sample(3.0, 50, &[("/", 30), ("/data", 5)]))
        .unwrap();
    store
        .put_node_sample("a", at(0, 55), &sample(2.0, 70, &[("/", 20)]))
        .unwrap();
    // Minute 1 is empty; minute 2 has one heartbeat.
    store
        .put_node_sample("a", at(2, 0), &sample(0.5, 10, &[("/", 40)]))
        .unwrap();
    let minutes = store
        .node_samples("a", Step::Minute, at(0, 0), 100)
        .unwrap();
    assert_eq!(
        minutes.len(),
        2,
        "one row per minute with heartbeats: {minutes:?}"
    );
    assert_eq!(minutes[0].at, at(0, 0), "a row is at its interval's start");
    assert_eq!(minutes[0].load1, 3.0);
    assert_eq!(minutes[0].mem_used, 100);
    assert_eq!(
        minutes[0].disks,
        sample(0.0, 0, &[("/", 30), ("/data", 5)]).disks,
        "each mount's highest, by mount"
    );
    assert_eq!(minutes[1].at, at(2, 0));
    assert_eq!(minutes[1].load1, 0.5);
    // The ten-minute row holds all four.
    let tens = store
        .node_samples("a", Step::TenMinutes, at(0, 0), 100)
        .unwrap();
    assert_eq!(tens.len(), 1, "{tens:?}");
    assert_eq!((tens[0].load1, tens[0].mem_used), (3.0, 100));
    assert_eq!(tens[0].disks[0].used, 40);
    // since and limit.
    let later = store
        .node_samples("a", Step::Minute, at(1, 0), 100)
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(
        store
            .node_samples("a", Step::Minute, at(0, 0), 1)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .node_samples("nobody", Step::Minute, at(0, 0), 10)
            .unwrap()
            .is_empty()
    );
    // Bounded: a heartbeat four hours on drops the minute rows (kept three
    // hours) and keeps the ten-minute rows (kept eight days).
    store
        .put_node_sample("a", at(240, 0), &sample(1.0, 1, &[]))
        .unwrap();
    let minutes = store
        .node_samples("a", Step::Minute, at(0, 0), 100)
        .unwrap();
    assert_eq!(minutes.len(), 1, "old minute rows dropped: {minutes:?}");
    assert_eq!(
        store
            .node_samples("a", Step::TenMinutes, at(0, 0), 100)
            .unwrap()
            .len(),
        2
    );
    store
        .put_node_sample("a", at(9 * 24 * 60, 0), &sample(1.0, 1, &[]))
        .unwrap();
    assert_eq!(
        store
            .node_samples("a", Step::TenMinutes, at(0, 0), 100)
            .unwrap()
            .len(),
        1,
        "ten-minute rows older than eight days dropped"
    );
    // Sparklines: every known node's rows from a time, in one read, by
    // node then time; a node with no report is not listed.
    for n in ["a", "b"] {
        store
            .put_node_report(&report(n), at(0, 0), NodeState::Up)
            .unwrap();
    }
    store
        .put_node_sample("b", at(9 * 24 * 60 - 10, 0), &sample(4.0, 1, &[("/", 75)]))
        .unwrap();
    store
        .put_node_sample("b", at(9 * 24 * 60, 0), &sample(2.0, 1, &[("/", 50)]))
        .unwrap();
    store
        .put_node_sample("ghost", at(9 * 24 * 60, 0), &sample(2.0, 1, &[]))
        .unwrap();
    let sparks = store
        .node_sparks(Step::TenMinutes, at(9 * 24 * 60 - 60, 0))
        .unwrap();
    let got: Vec<(&str, i64, f64, f64)> = sparks
        .iter()
        .map(|r| {
            (
                r.node.as_str(),
                (r.at.as_nanos() - t0) / min,
                r.load1,
                r.disk_pct,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", 9 * 24 * 60, 1.0, 0.0),
            ("b", 9 * 24 * 60 - 10, 4.0, 75.0),
            ("b", 9 * 24 * 60, 2.0, 50.0),
        ]
    );
}
