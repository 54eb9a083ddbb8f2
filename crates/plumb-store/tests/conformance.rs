//! The store conformance suite (crates/plumb-store-conformance) on the
//! embedded SQLite store: each case gets a fresh store directory.

struct Sqlite(tempfile::TempDir);

impl plumb_store_conformance::Harness for Sqlite {
    fn open(&self) -> Box<dyn plumb_store::Backend> {
        Box::new(plumb_store::Store::open(self.0.path()).expect("open the SQLite store"))
    }
}

plumb_store_conformance::suite!(Sqlite(tempfile::tempdir().expect("a temporary directory")));
