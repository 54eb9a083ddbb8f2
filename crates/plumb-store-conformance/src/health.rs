//! Conformance cases for [`Health`](plumb_store::Health): the node hardware
//! health agents send.

use crate::Harness;
use plumb_model::Timestamp;
use plumb_model::health::{HEALTH_VERSION, MemoryController, NodeHealth, Reading};

fn health(ue: u64) -> NodeHealth {
    NodeHealth {
        version: HEALTH_VERSION,
        read_at: Timestamp::from_nanos(5),
        psi: Reading::unavailable("/proc/pressure is absent"),
        oom_kills: Reading::Ok { value: 1 },
        memory_errors: Reading::Ok {
            value: vec![MemoryController {
                name: "mc0".into(),
                corrected: 2,
                uncorrected: ue,
            }],
        },
        temperatures: Reading::unavailable("none"),
        throttling: Reading::unavailable("none"),
        cpu_freq: Reading::unavailable("none"),
        network: Reading::Ok { value: vec![] },
        io_errors: Reading::unavailable("none"),
        smart: Reading::unavailable("smartctl is not installed"),
    }
}

pub fn health_reads_back_newest_first_or_since_and_is_bounded_per_node(h: &dyn Harness) {
    let store = h.open();
    let t0 = 1_700_000_000_000_000_000i64;
    let s = 1_000_000_000i64;
    for i in 0..5u64 {
        store
            .put_node_health("a", Timestamp::from_nanos(t0 + i as i64 * s), &health(i))
            .unwrap();
    }
    store
        .put_node_health("b", Timestamp::from_nanos(t0), &health(9))
        .unwrap();
    let recent = store.node_health_recent("a", 2).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].at, Timestamp::from_nanos(t0 + 4 * s));
    assert_eq!(recent[0].health, health(4), "reads back as written");
    assert_eq!(recent[1].health.uncorrected_memory_errors(), 3);
    let since = store
        .node_health_history("a", Timestamp::from_nanos(t0 + 2 * s), 100)
        .unwrap();
    let ats: Vec<i64> = since.iter().map(|r| (r.at.as_nanos() - t0) / s).collect();
    assert_eq!(ats, [2, 3, 4], "oldest first from `since`");
    assert_eq!(
        store.node_health_recent("b", 10).unwrap()[0]
            .health
            .uncorrected_memory_errors(),
        9
    );
    assert!(store.node_health_recent("nobody", 10).unwrap().is_empty());
    // Same arrival time: the later write replaces the earlier.
    store
        .put_node_health("b", Timestamp::from_nanos(t0), &health(10))
        .unwrap();
    let b = store.node_health_recent("b", 10).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].health.uncorrected_memory_errors(), 10);
    // Age bound: a reading older than KEEP_NS before the newest goes.
    let later = t0 + plumb_store::health::KEEP_NS + 5 * s;
    store
        .put_node_health("a", Timestamp::from_nanos(later), &health(0))
        .unwrap();
    let all = store
        .node_health_history("a", Timestamp::from_nanos(0), 100)
        .unwrap();
    assert_eq!(all.len(), 1, "older than the age bound are dropped");
    // Row bound.
    let n = plumb_store::health::KEEP_ROWS + 3;
    for i in 0..n {
        store
            .put_node_health("c", Timestamp::from_nanos(t0 + i as i64 * s), &health(0))
            .unwrap();
    }
    let c = store
        .node_health_history("c", Timestamp::from_nanos(0), n + 10)
        .unwrap();
    assert_eq!(c.len(), plumb_store::health::KEEP_ROWS);
    assert_eq!(
        c[0].at,
        Timestamp::from_nanos(t0 + 3 * s),
        "the oldest went first"
    );
    assert_eq!(
        store.node_health_recent("b", 10).unwrap().len(),
        1,
        "per node"
    );
}
