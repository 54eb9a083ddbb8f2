//! Conformance cases for [`Throttles`](plumb_store::Throttles): fleet-wide
//! throttle leases and their queue.

use crate::Harness;
use plumb_model::Timestamp;
use plumb_model::throttle::LeaseRequest;
use plumb_store::ErrorKind;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000_000_000;
const TTL: Duration = Duration::from_secs(15);

fn at(s: i64) -> Timestamp {
    Timestamp::from_nanos(T0 + s * 1_000_000_000)
}

fn ask(holder: &str, slots: u32) -> LeaseRequest {
    LeaseRequest {
        holder: holder.into(),
        slots,
        ttl_ms: None,
        run_id: Some(plumb_model::new_id()),
        node: format!("node-{holder}"),
        pid: Some(42),
    }
}

pub fn never_more_than_n_holders_and_the_queue_is_first_come_first_served(h: &dyn Harness) {
    let store = h.open();
    let mut granted = Vec::new();
    for i in 0..7 {
        let s = store
            .throttle_acquire("x", &ask(&format!("h{i}"), 3), TTL, at(i))
            .unwrap();
        assert!(s.holders <= 3, "{s:?}");
        assert_eq!(s.slots, 3);
        if s.granted {
            granted.push(i);
            assert_eq!(s.position, 0);
        } else {
            assert_eq!(s.position, (i - 2) as u32, "{s:?}");
        }
    }
    assert_eq!(granted, [0, 1, 2]);
    // Asking again keeps the place, never adds one.
    let again = store
        .throttle_acquire("x", &ask("h5", 3), TTL, at(8))
        .unwrap();
    assert_eq!((again.granted, again.position, again.queued), (false, 3, 4));
    // Released slots go to the first in line, in order.
    assert!(store.throttle_release("x", "h1", at(9)).unwrap());
    let v = store.throttle_list(at(9)).unwrap();
    assert_eq!(v.len(), 1);
    let holders: Vec<&str> = v[0].holders.iter().map(|l| l.holder.as_str()).collect();
    let queue: Vec<&str> = v[0].queue.iter().map(|l| l.holder.as_str()).collect();
    assert_eq!(holders, ["h0", "h2", "h3"]);
    assert_eq!(queue, ["h4", "h5", "h6"]);
    assert_eq!(v[0].holders[0].node, "node-h0");
    assert_eq!(v[0].holders[0].pid, Some(42));
    assert!(v[0].holders[0].run_id.is_some());
    let h3 = store.throttle_renew("x", "h3", TTL, at(10)).unwrap();
    assert!(h3.granted);
    assert_eq!(h3.holders, 3);
    let h4 = store.throttle_renew("x", "h4", TTL, at(10)).unwrap();
    assert_eq!((h4.granted, h4.position), (false, 1));
    // Everyone gone: the throttle is forgotten, and may take another N.
    for i in 0..7 {
        store
            .throttle_release("x", &format!("h{i}"), at(11))
            .unwrap();
    }
    assert!(store.throttle_list(at(11)).unwrap().is_empty());
    let s = store
        .throttle_acquire("x", &ask("new", 5), TTL, at(12))
        .unwrap();
    assert_eq!((s.granted, s.slots), (true, 5));
}

pub fn an_expired_lease_frees_its_slot_and_an_expired_waiter_leaves_the_queue(h: &dyn Harness) {
    let store = h.open();
    assert!(
        store
            .throttle_acquire("g", &ask("a", 1), TTL, at(0))
            .unwrap()
            .granted
    );
    let b = store
        .throttle_acquire("g", &ask("b", 1), TTL, at(1))
        .unwrap();
    assert_eq!((b.granted, b.position), (false, 1));
    // c asks with a short TTL and then stops asking: it dies in the queue.
    let c = store
        .throttle_acquire("g", &ask("c", 1), Duration::from_secs(2), at(2))
        .unwrap();
    assert_eq!(c.position, 2);
    // a renews until 10, then is not heard of again; b keeps its place.
    store.throttle_renew("g", "a", TTL, at(10)).unwrap();
    for s in [11, 20] {
        let b = store
            .throttle_acquire("g", &ask("b", 1), TTL, at(s))
            .unwrap();
        assert!(!b.granted, "a's lease holds until 25: {b:?}");
        assert_eq!((b.position, b.queued), (1, 1), "c expired at 4: {b:?}");
    }
    // A renewal of c's place, gone, says so.
    let e = store.throttle_renew("g", "c", TTL, at(21)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(store.throttle_expire(at(25)).unwrap(), 1);
    let v = store.throttle_list(at(25)).unwrap();
    assert_eq!(v[0].holders.len(), 1);
    assert_eq!(v[0].holders[0].holder, "b");
    assert!(v[0].queue.is_empty());
    let e = store.throttle_renew("g", "a", TTL, at(26)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

pub fn release_is_idempotent_and_an_unknown_holder_releases_nothing(h: &dyn Harness) {
    let store = h.open();
    store
        .throttle_acquire("r", &ask("a", 2), TTL, at(0))
        .unwrap();
    store
        .throttle_acquire("r", &ask("b", 2), TTL, at(0))
        .unwrap();
    assert!(store.throttle_release("r", "a", at(1)).unwrap());
    assert!(!store.throttle_release("r", "a", at(1)).unwrap());
    assert!(!store.throttle_release("r", "nobody", at(1)).unwrap());
    assert!(!store.throttle_release("never-seen", "a", at(1)).unwrap());
    let v = store.throttle_list(at(1)).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].holders.len(), 1);
    assert_eq!(v[0].holders[0].holder, "b");
}

pub fn bad_requests_are_bad_input_and_a_different_n_is_a_conflict_naming_both(h: &dyn Harness) {
    let store = h.open();
    for (name, req) in [
        ("x", ask("a", 0)),
        ("", ask("a", 3)),
        (".x", ask("a", 3)),
        ("a/b", ask("a", 3)),
        ("x", ask("", 3)),
        ("x", ask("a", 5000)),
    ] {
        let e = store.throttle_acquire(name, &req, TTL, at(0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadInput, "{name:?} {req:?}: {e}");
    }
    let e = store
        .throttle_acquire("x", &ask("a", 3), Duration::ZERO, at(0))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadInput, "{e}");
    assert!(
        store.throttle_list(at(0)).unwrap().is_empty(),
        "nothing stored"
    );
    store
        .throttle_acquire("x", &ask("a", 3), TTL, at(0))
        .unwrap();
    let e = store
        .throttle_acquire("x", &ask("b", 4), TTL, at(1))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains('3') && msg.contains('4') && msg.contains("`x`"),
        "{msg}"
    );
    let v = store.throttle_list(at(1)).unwrap();
    assert_eq!((v[0].slots, v[0].holders.len()), (3, 1), "b was not added");
}
