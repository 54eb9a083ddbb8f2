//! The store conformance suite on a real PostgreSQL server (see
//! `plumb_store_postgres::testing`): each case gets a schema of its own.

struct Postgres(String);

impl plumb_store_conformance::Harness for Postgres {
    fn open(&self) -> Box<dyn plumb_store::Backend> {
        let connector = plumb_store_postgres::PgConnector::new(&self.0).expect("a good URL");
        Box::new(connector.open().expect("the test server takes connections"))
    }
}

plumb_store_conformance::suite!(Postgres(plumb_store_postgres::testing::fresh_store_url()));

/// A store used and dropped by async code (a collector's reader pool as
/// its runtime shuts down) closes its connection without panicking: the
/// driver's own event loop cannot run on a runtime's thread.
#[test]
fn a_store_dropped_on_an_async_runtime_closes_cleanly() {
    use plumb_store::prelude::*;
    let connector =
        plumb_store_postgres::PgConnector::new(&plumb_store_postgres::testing::fresh_store_url())
            .unwrap();
    let store = connector.open().unwrap();
    assert_eq!(store.count_runs().unwrap(), 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    rt.block_on(async move { drop(store) });
    // The server saw the connection close: a new one works as before.
    assert_eq!(connector.open().unwrap().count_runs().unwrap(), 0);
}
