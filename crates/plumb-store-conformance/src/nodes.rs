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

pub fn fingerprint_changes_are_kept_per_node_newest_first_and_bounded(h: &dyn Harness) {
    use plumb_model::Fingerprint;
    use plumb_model::node::NodeFingerprint;
    use plumb_store::nodes::ENV_CHANGES_KEEP;
    let store = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    let with = |node: &str, hash: Option<&str>| {
        let mut r = report(node, "b1");
        r.fingerprint = hash.map(|h| NodeFingerprint {
            hash: h.to_string(),
            fingerprint: Fingerprint::default(),
        });
        r
    };
    // The first fingerprint, a repeat, a heartbeat without one: no change.
    for (s, fp) in [(1, Some("f1")), (2, Some("f1")), (3, None)] {
        store
            .put_node_report(&with("a", fp), t(s), NodeState::Up)
            .unwrap();
    }
    assert!(store.env_changes(None, t(0), 10).unwrap().is_empty());
    // A heartbeat without one keeps the node's: the same one again is no
    // change, another one is.
    store
        .put_node_report(&with("a", Some("f1")), t(4), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("a", Some("f2")), t(5), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("b", Some("g1")), t(5), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("b", Some("g2")), t(6), NodeState::Up)
        .unwrap();
    let all = store.env_changes(None, t(0), 10).unwrap();
    let seen: Vec<(&str, i64, &str, &str)> = all
        .iter()
        .map(|c| {
            (
                c.node.as_str(),
                c.at.as_nanos() / 1_000_000_000,
                c.old.as_str(),
                c.new.as_str(),
            )
        })
        .collect();
    assert_eq!(seen, vec![("b", 6, "g1", "g2"), ("a", 5, "f1", "f2")]);
    assert_eq!(store.env_changes(Some("a"), t(0), 10).unwrap().len(), 1);
    assert!(store.env_changes(None, t(7), 10).unwrap().is_empty());
    assert_eq!(store.env_changes(None, t(6), 10).unwrap().len(), 1);
    // Flipping back and forth keeps the newest ENV_CHANGES_KEEP.
    for i in 0..(ENV_CHANGES_KEEP as i64 + 5) {
        let fp = if i % 2 == 0 { "f1" } else { "f2" };
        store
            .put_node_report(&with("a", Some(fp)), t(100 + i), NodeState::Up)
            .unwrap();
    }
    let kept = store.env_changes(Some("a"), t(0), 1000).unwrap();
    assert_eq!(kept.len(), ENV_CHANGES_KEEP);
    assert_eq!(
        kept[0].at,
        t(100 + ENV_CHANGES_KEEP as i64 + 4),
        "the newest first"
    );
    assert_eq!(store.env_changes(Some("b"), t(0), 1000).unwrap().len(), 1);
}

pub fn preflights_round_trip_newest_first_and_are_bounded(h: &dyn Harness) {
    use plumb_model::preflight::{FleetPreflight, HostResults, Outcome};
    use plumb_store::nodes::{PREFLIGHTS_KEEP, PreflightRecord};
    let store = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    let record = |s: i64, ok: bool| PreflightRecord {
        id: plumb_model::new_id(),
        at: t(s),
        spec: format!("[[env]]\nname = \"V{s}\"\n"),
        result: FleetPreflight {
            id: None,
            nodes: vec![HostResults {
                node: "a".into(),
                user: "job".into(),
                checks: vec![Outcome {
                    check: format!("env V{s}"),
                    ok,
                    detail: if ok { "set".into() } else { "missing".into() },
                }],
            }],
            not_answered: Vec::new(),
        },
    };
    assert!(store.preflights(10).unwrap().is_empty());
    let first = record(1, false);
    store.put_preflight(&first).unwrap();
    let second = record(2, true);
    store.put_preflight(&second).unwrap();
    let listed = store.preflights(10).unwrap();
    assert_eq!(listed, vec![second.clone(), first.clone()]);
    assert_eq!(store.preflight(first.id).unwrap(), Some(first.clone()));
    assert_eq!(store.preflight(plumb_model::new_id()).unwrap(), None);
    assert_eq!(store.preflights(1).unwrap(), vec![second.clone()]);
    for s in 0..PREFLIGHTS_KEEP as i64 {
        store.put_preflight(&record(10 + s, true)).unwrap();
    }
    let kept = store.preflights(10_000).unwrap();
    assert_eq!(kept.len(), PREFLIGHTS_KEEP);
    assert_eq!(kept[0].at, t(10 + PREFLIGHTS_KEEP as i64 - 1));
    assert_eq!(store.preflight(first.id).unwrap(), None, "the oldest went");
}

pub fn transitions_between_are_the_ones_a_range_shades(h: &dyn Harness) {
    let store = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    // a: up at 10, suspect 20, down 30, up 40, suspect 50; b: up at 25.
    store
        .put_node_report(&report("a", "b1"), t(10), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&report("b", "b1"), t(25), NodeState::Up)
        .unwrap();
    for (s, to) in [
        (20, NodeState::Suspect),
        (30, NodeState::Down),
        (40, NodeState::Up),
        (50, NodeState::Suspect),
    ] {
        assert!(store.set_node_state("a", to, t(s), 1.0).unwrap());
    }
    let at = |from: i64, until: i64, limit: usize| -> Vec<i64> {
        store
            .node_transitions_between("a", t(from), t(until), limit)
            .unwrap()
            .iter()
            .map(|x| {
                assert_eq!(x.node, "a");
                x.at.as_nanos() / 1_000_000_000
            })
            .collect()
    };
    // The one before the range (its state at the start), then those in it.
    assert_eq!(at(25, 45, 10), vec![20, 30, 40]);
    assert_eq!(
        at(30, 45, 10),
        vec![20, 30, 40],
        "the start is in the range"
    );
    // Nothing in the range: only the state it was in.
    assert_eq!(at(60, 70, 10), vec![50]);
    // Before the first: nothing; a range ending at a transition leaves it out.
    assert_eq!(at(0, 5, 10), Vec::<i64>::new());
    assert_eq!(at(0, 20, 10), vec![10]);
    // Over the limit: the newest in the range, and not the one before.
    assert_eq!(at(15, 60, 2), vec![40, 50]);
    assert_eq!(at(25, 45, 3), vec![20, 30, 40], "exactly the limit in all");
    let states: Vec<NodeState> = store
        .node_transitions_between("a", t(25), t(45), 10)
        .unwrap()
        .iter()
        .map(|x| x.to)
        .collect();
    assert_eq!(
        states,
        vec![NodeState::Suspect, NodeState::Down, NodeState::Up]
    );
    assert!(
        store
            .node_transitions_between("nobody", t(0), t(100), 10)
            .unwrap()
            .is_empty()
    );
}

/// A node's software-only hash is stored as its fingerprint arrives, kept
/// by heartbeats without one, read back by `nodes` and `node`, and equal
/// for fingerprints that differ only in hardware.
pub fn software_hash_is_stored_with_the_fingerprint(h: &dyn Harness) {
    use plumb_model::node::NodeFingerprint;
    use plumb_model::{Fingerprint, OsInfo};
    let store = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    let base = Fingerprint {
        os: OsInfo {
            id: "debian".into(),
            kernel: "6.1".into(),
            ..Default::default()
        },
        cpu_model: "EPYC".into(),
        cpu_count: 2,
        ..Default::default()
    };
    let bigger = Fingerprint {
        cpu_model: "Xeon".into(),
        cpu_count: 64,
        memory_bytes: 1 << 40,
        ..base.clone()
    };
    let mut newer = base.clone();
    newer.tools.insert("gcc".into(), "gcc 13".into());
    let with = |node: &str, fp: Option<&Fingerprint>| {
        let mut r = report(node, "b1");
        r.fingerprint = fp.map(|f| NodeFingerprint {
            hash: f.content_hash(),
            fingerprint: f.clone(),
        });
        r
    };
    let a = store
        .put_node_report(&with("a", Some(&base)), t(1), NodeState::Up)
        .unwrap();
    assert_eq!(
        a.software.as_deref(),
        Some(plumb_model::env::software_hash(&base).as_str())
    );
    store
        .put_node_report(&with("b", Some(&bigger)), t(1), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("c", Some(&base)), t(1), NodeState::Up)
        .unwrap();
    // A heartbeat without a fingerprint keeps the node's; a new one
    // replaces it.
    store
        .put_node_report(&with("c", None), t(2), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("c", Some(&newer)), t(3), NodeState::Up)
        .unwrap();
    store
        .put_node_report(&with("a", None), t(4), NodeState::Up)
        .unwrap();
    let rows = store.nodes().unwrap();
    let sw = |n: &str| {
        rows.iter()
            .find(|r| r.name == n)
            .and_then(|r| r.software.clone())
            .unwrap_or_else(|| panic!("node {n} has a software hash"))
    };
    assert_ne!(
        rows.iter().find(|r| r.name == "a").unwrap().fingerprint,
        rows.iter().find(|r| r.name == "b").unwrap().fingerprint,
        "hardware is in the whole fingerprint"
    );
    assert_eq!(sw("a"), sw("b"), "and not in the software");
    assert_ne!(sw("a"), sw("c"), "a tool differs");
    assert_eq!(sw("c"), plumb_model::env::software_hash(&newer));
    assert_eq!(store.node("b").unwrap().unwrap().software, Some(sw("b")));
}
