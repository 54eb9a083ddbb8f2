//! Conformance cases: moved from plumb-store/src/tokens.rs.

use crate::Harness;

pub fn tokens_round_trip_by_hash(h: &dyn Harness) {
    let store = h.open();
    let hash = [7u8; 32];
    store.add_token(&hash, "viewer", "ci").unwrap();
    assert_eq!(
        store.token_hashes().unwrap(),
        vec![(hash, "viewer".to_string())]
    );
    assert!(store.add_token(&hash, "agent", "dup").is_err());
    assert!(store.delete_token(&hash).unwrap());
    assert!(!store.delete_token(&hash).unwrap(), "already gone");
    assert!(store.token_hashes().unwrap().is_empty());
}

pub fn sessions_end_with_their_token(h: &dyn Harness) {
    let store = h.open();
    let (token, session, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    store.add_token(&token, "viewer", "web").unwrap();
    store.add_session(&session, &token).unwrap();
    store.add_session(&other, &token).unwrap();
    let epoch = plumb_model::Timestamp::from_nanos(0);
    assert_eq!(store.session_hashes(epoch).unwrap().len(), 2);
    assert!(store.delete_session(&other).unwrap());
    // A session survives reopening the store (a collector restart).
    drop(store);
    let store = h.open();
    assert_eq!(
        store.session_hashes(epoch).unwrap(),
        vec![(session, "viewer".to_string())]
    );
    // Too old to count.
    let later = plumb_model::Timestamp::from_nanos(i64::MAX);
    assert!(store.session_hashes(later).unwrap().is_empty());
    // Revoking the token ends it.
    assert!(store.delete_token(&token).unwrap());
    assert!(store.session_hashes(epoch).unwrap().is_empty());
}

pub fn a_token_added_twice_is_a_conflict(h: &dyn Harness) {
    let store = h.open();
    let hash = [9u8; 32];
    store.add_token(&hash, "viewer", "ci").unwrap();
    let e = store.add_token(&hash, "admin", "again").unwrap_err();
    assert_eq!(e.kind(), plumb_store::ErrorKind::Conflict, "{e}");
    assert_eq!(
        store.token_hashes().unwrap(),
        vec![(hash, "viewer".to_string())],
        "the first token is kept as it was"
    );
}
