//! Conformance cases: moved from plumb-store/src/nodes.rs.

use crate::Harness;

use plumb_model::Timestamp;
use plumb_model::node::{NodeReport, NodeState};

fn report(node: &str, boot: &str) -> NodeReport {
    serde_json::from_value(serde_json::json!({
        "version": 1, "node": node, "sent": 0, "seq": 0, "interval_ms": 1000,
        "boot_id": boot,
        "cpu": {"load1": 0.5, "load5": 0.0, "load15": 0.0, "cpus": 2},
        "memory": {"total": 1, "available": 1, "swap_total": 0, "swap_free": 0}
    }))
    .unwrap()
}

pub fn heartbeats_keep_a_window_and_transitions_a_history(h: &dyn Harness) {
    let store = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    store
        .put_node_report(&report("a", "b1"), t(10), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&report("a", "b1"), t(11), NodeState::Up)
        .unwrap();
    let row = store
        .put_node_report(&report("a", "b1"), t(13), NodeState::Up)
        .unwrap();
    assert_eq!(row.intervals_ms, vec![1000.0, 2000.0]);
    assert!(
        store
            .set_node_state("a", NodeState::Suspect, t(20), 4.0)
            .unwrap()
    );
    assert!(
        !store
            .set_node_state("a", NodeState::Suspect, t(21), 5.0)
            .unwrap()
    );
    assert!(
        store
            .set_node_state("a", NodeState::Down, t(30), 9.0)
            .unwrap()
    );
    // A reboot clears the rhythm rather than recording the outage.
    let row = store
        .put_node_report(&report("a", "b2"), t(100), NodeState::Up)
        .unwrap();
    assert!(row.intervals_ms.is_empty());
    let h = store.node_transitions(Some("a"), 10).unwrap();
    let states: Vec<_> = h.iter().map(|x| (x.from, x.to)).collect();
    assert_eq!(
        states,
        vec![
            (None, NodeState::Up),
            (Some(NodeState::Up), NodeState::Suspect),
            (Some(NodeState::Suspect), NodeState::Down)
        ]
    );
    assert_eq!(h[2].at, t(30));
    assert_eq!(store.nodes().unwrap().len(), 1);
    assert_eq!(store.node("a").unwrap().unwrap().state, NodeState::Down);
}
