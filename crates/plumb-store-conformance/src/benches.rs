//! Conformance cases for [`Benches`](plumb_store::Benches): node benchmark
//! results, a bounded history per node.

use crate::Harness;
use plumb_model::Timestamp;
use plumb_model::bench::{BENCH_VERSION, Figure, NodeBench};

fn fig(v: f64) -> Figure {
    Figure {
        value: v,
        spread_pct: 2.5,
        reps: 5,
    }
}

fn bench(node: &str, taken: i64, cpu: f64) -> NodeBench {
    NodeBench {
        version: BENCH_VERSION,
        node: node.into(),
        taken_at: Timestamp::from_nanos(taken),
        wall_s: 9.5,
        quick: false,
        cpus: 4,
        cpu_int_mops: fig(cpu),
        cpu_float_mflops: fig(cpu + 1.0),
        cpu_all_int_mops: fig(cpu * 4.0),
        cpu_all_float_mflops: fig(cpu * 4.0 + 1.0),
        mem_triad_mbs: fig(9000.5),
        mem_bytes: 3 << 27,
        disk: None,
        net: None,
    }
}

pub fn benches_read_back_latest_per_node_before_a_time_and_are_bounded(h: &dyn Harness) {
    let store = h.open();
    let t0 = 1_700_000_000_000_000_000i64;
    let s = 1_000_000_000i64;
    for i in 0..5i64 {
        store
            .put_node_bench(
                "a",
                Timestamp::from_nanos(t0 + i * s),
                &bench("a", t0 + i * s - s / 2, i as f64 + 1.0),
            )
            .unwrap();
    }
    store
        .put_node_bench("b", Timestamp::from_nanos(t0), &bench("b", t0, 50.0))
        .unwrap();
    let hist = store.node_bench_history("a", 3).unwrap();
    assert_eq!(hist.len(), 3);
    assert_eq!(
        hist[0].at,
        Timestamp::from_nanos(t0 + 4 * s),
        "newest first"
    );
    assert_eq!(
        hist[0].bench,
        bench("a", t0 + 4 * s - s / 2, 5.0),
        "reads back as written"
    );
    assert_eq!(hist[2].bench.cpu_int_mops.value, 3.0);
    assert!(store.node_bench_history("nobody", 10).unwrap().is_empty());

    let latest = store.latest_node_benches().unwrap();
    let names: Vec<_> = latest.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(names, ["a", "b"], "one per node, by name");
    assert_eq!(latest[0].bench.cpu_int_mops.value, 5.0, "the newest of a");

    // The latest taken at or before a moment (by the node's own time).
    let before = store
        .node_bench_before("a", Timestamp::from_nanos(t0 + 2 * s))
        .unwrap()
        .unwrap();
    assert_eq!(before.bench.cpu_int_mops.value, 3.0);
    assert!(
        store
            .node_bench_before("a", Timestamp::from_nanos(t0 - s))
            .unwrap()
            .is_none(),
        "nothing taken before the first"
    );
    assert!(
        store
            .node_bench_before("nobody", Timestamp::from_nanos(t0))
            .unwrap()
            .is_none()
    );

    // Same arrival time: the later write replaces the earlier.
    store
        .put_node_bench("b", Timestamp::from_nanos(t0), &bench("b", t0, 60.0))
        .unwrap();
    let b = store.node_bench_history("b", 10).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].bench.cpu_int_mops.value, 60.0);

    // Row bound.
    let n = plumb_store::bench::KEEP_ROWS + 2;
    for i in 0..n as i64 {
        store
            .put_node_bench(
                "c",
                Timestamp::from_nanos(t0 + i * s),
                &bench("c", t0 + i * s, 1.0),
            )
            .unwrap();
    }
    let c = store.node_bench_history("c", n + 10).unwrap();
    assert_eq!(c.len(), plumb_store::bench::KEEP_ROWS, "bounded per node");
    assert_eq!(
        c.last().unwrap().at,
        Timestamp::from_nanos(t0 + 2 * s),
        "oldest dropped"
    );
    assert_eq!(
        store.node_bench_history("a", 100).unwrap().len(),
        5,
        "other nodes untouched"
    );
}
