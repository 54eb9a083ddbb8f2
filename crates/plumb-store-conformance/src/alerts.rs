//! Conformance cases: moved from plumb-store/src/alerts.rs.

use crate::Harness;

use plumb_model::Timestamp;
use plumb_model::alerts::{Alert, AlertState, Annotations, Severity};
use plumb_store::alerts::AlertRow;
use std::collections::BTreeMap;

fn row(fp: &str, state: AlertState, ends: Option<i64>) -> AlertRow {
    AlertRow {
        alert: Alert {
            fingerprint: fp.into(),
            name: "NodeDown".into(),
            severity: Severity::Critical,
            state,
            labels: BTreeMap::from([("node".to_string(), "n1".to_string())]),
            annotations: Annotations {
                summary: "s".into(),
                description: "d".into(),
            },
            starts_at: Timestamp::from_nanos(10),
            ends_at: ends.map(Timestamp::from_nanos),
            last_notified: Some(Timestamp::from_nanos(11)),
        },
        active_since: Timestamp::from_nanos(5),
        notified: Some(AlertState::Firing),
    }
}

pub fn alerts_round_trip_and_resolved_history_is_bounded(h: &dyn Harness) {
    let store = h.open();
    let firing = row("a", AlertState::Firing, None);
    store
        .put_alert_rows(
            &[
                firing.clone(),
                row("b", AlertState::Resolved, Some(100)),
                row("c", AlertState::Resolved, Some(200)),
                row("d", AlertState::Resolved, Some(300)),
            ],
            &[],
        )
        .unwrap();
    let all = store.alert_rows().unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter().find(|r| r.alert.fingerprint == "a"),
        Some(&firing)
    );
    // Ended before 150: b goes; keep 1 of the rest: d stays.
    store
        .prune_resolved_alerts(Timestamp::from_nanos(150), 1)
        .unwrap();
    let mut left: Vec<_> = store
        .alert_rows()
        .unwrap()
        .into_iter()
        .map(|r| r.alert.fingerprint)
        .collect();
    left.sort();
    assert_eq!(left, vec!["a", "d"]);
    store.put_alert_rows(&[], &["a".to_string()]).unwrap();
    assert_eq!(store.alert_rows().unwrap().len(), 1);
    store.set_alert_rules("[1]").unwrap();
    store.set_alert_rules("[2]").unwrap();
    assert_eq!(store.alert_rules().unwrap().as_deref(), Some("[2]"));
}

pub fn disk_samples_are_thinned_and_bounded(h: &dyn Harness) {
    let store = h.open();
    let t = Timestamp::from_nanos;
    for i in 0..20 {
        store
            .add_disk_sample("n", "/", t(i * 10), 1000 - i as u64, 2000, 20, t(0), 5)
            .unwrap();
    }
    // One in two was too close to the previous; five kept.
    let s = store.disk_samples("n", "/").unwrap();
    assert_eq!(
        s.iter().map(|x| x.0.as_nanos()).collect::<Vec<_>>(),
        vec![100, 120, 140, 160, 180]
    );
    assert!(store.disk_samples("n", "/other").unwrap().is_empty());
}
