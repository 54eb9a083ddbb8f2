//! Conformance cases: the lease that lets one collector at a time do the
//! work that must happen once.

use crate::Harness;
use plumb_model::Timestamp;
use std::time::Duration;

pub fn one_holder_at_a_time_and_an_expired_lease_passes_on(h: &dyn Harness) {
    let a = h.open();
    let b = h.open();
    let t = |s: i64| Timestamp::from_nanos(s * 1_000_000_000);
    let ttl = Duration::from_secs(10);
    assert_eq!(a.leader("work").unwrap(), None);
    assert!(
        a.lead("work", "a", ttl, t(100)).unwrap(),
        "a free lease is taken"
    );
    assert!(!b.lead("work", "b", ttl, t(105)).unwrap(), "held by a");
    assert!(a.lead("work", "a", ttl, t(108)).unwrap(), "a renews");
    assert!(
        !b.lead("work", "b", ttl, t(117)).unwrap(),
        "renewed until 118"
    );
    assert_eq!(b.leader("work").unwrap(), Some(("a".to_string(), t(118))));
    assert!(
        b.lead("work", "b", ttl, t(118)).unwrap(),
        "expired: b takes it"
    );
    assert!(!a.lead("work", "a", ttl, t(119)).unwrap(), "a lost it");
    // Another name is another lease.
    assert!(a.lead("other", "a", ttl, t(119)).unwrap());
    // Stepping down frees it at once; only the holder can.
    assert!(!a.step_down("work", "a").unwrap());
    assert!(b.step_down("work", "b").unwrap());
    assert!(a.lead("work", "a", ttl, t(120)).unwrap());
}
