//! Conformance cases for [`Clocks`](plumb_store::Clocks): the clock
//! estimates node agents send.

use crate::Harness;
use plumb_model::Timestamp;
use plumb_model::clock::Estimate;

fn estimate(latest: i64, offset_ns: i64) -> Estimate {
    Estimate {
        offset_ns,
        error_ns: 50_000,
        delay_ns: 90_000,
        at: Timestamp::from_nanos(latest - 1_000),
        latest: Timestamp::from_nanos(latest),
        drift_ppm: Some(1.5),
        samples: 3,
    }
}

pub fn one_row_per_probe_latest_per_node_and_a_day_kept(h: &dyn Harness) {
    let store = h.open();
    let day = plumb_store::clock::KEEP_NS;
    let t0 = 1_700_000_000_000_000_000i64;
    store
        .put_clock_estimate("a", &estimate(t0, 5), Timestamp::from_nanos(t0))
        .unwrap();
    // The same probe again, as the next heartbeat repeats it.
    store
        .put_clock_estimate("a", &estimate(t0, 5), Timestamp::from_nanos(t0 + 10))
        .unwrap();
    store
        .put_clock_estimate("b", &estimate(t0, -7), Timestamp::from_nanos(t0))
        .unwrap();
    assert_eq!(
        store
            .clock_history("a", Timestamp::from_nanos(0), 100)
            .unwrap()
            .len(),
        1
    );
    store
        .put_clock_estimate(
            "a",
            &estimate(t0 + day + 1, 9),
            Timestamp::from_nanos(t0 + day + 1),
        )
        .unwrap();
    let a = store
        .clock_history("a", Timestamp::from_nanos(0), 100)
        .unwrap();
    assert_eq!(a.len(), 1, "the day-old one is gone: {a:?}");
    let latest = store.clock_latest().unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(
        (latest[0].node.as_str(), latest[0].estimate.offset_ns),
        ("a", 9)
    );
    assert_eq!(latest[1].estimate, estimate(t0, -7));
}
