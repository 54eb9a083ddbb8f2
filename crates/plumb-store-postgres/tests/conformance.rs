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
