//! Conformance cases for [`Raw`](plumb_store::Raw): whole tables as raw
//! rows, what `plumb store copy` reads and writes on every backend.

use crate::Harness;
use plumb_model::{
    Exception, ExitStatus, Run, RunState, Stream, Timestamp, Uuid, new_id, telemetry::Hit,
};
use plumb_store::copy::{self, Batch, RawRow, Role, Value};
use plumb_store::{Backend, OutputCursor, Replayed, SearchOptions};

const T0: i64 = 1_764_000_000_000_000_000;

fn run(name: &str, at_s: i64, state: RunState) -> Run {
    let mut r = Run::new(
        new_id(),
        name.into(),
        Timestamp::from_nanos(T0 + at_s * 1_000_000_000),
    );
    r.state = state;
    r.host.hostname = "node-a".into();
    r.ended = Some(Timestamp::from_nanos(T0 + at_s * 1_000_000_000 + 1));
    if state == RunState::Failed {
        r.exit = Some(ExitStatus {
            code: Some(1),
            ..Default::default()
        });
        r.exception = Some(Exception {
            language: "python".into(),
            kind: "ValueError".into(),
            message: "boom".into(),
            ..Default::default()
        });
    }
    r
}

fn all_rows(store: &dyn Backend, name: &str) -> Vec<RawRow> {
    let t = copy::table(name).unwrap();
    store
        .raw_rows(t, None, usize::MAX >> 1, usize::MAX)
        .unwrap()
}

fn output(store: &dyn Backend, id: Uuid) -> Vec<u8> {
    let mut got = Vec::new();
    store
        .replay_output(id, None, &mut OutputCursor::default(), &mut |piece| {
            if let Replayed::Read { bytes, .. } = piece {
                got.extend_from_slice(bytes);
            }
            Ok(())
        })
        .unwrap();
    got
}

/// The copy moves every table the backend's schema holds, column for
/// column, or names why it leaves one out: a table or column added to
/// the schema and not to `plumb_store::copy::TABLES` fails here.
pub fn every_table_and_column_is_copied_or_skipped_with_a_reason(h: &dyn Harness) {
    let store = h.open();
    let schema = store.raw_schema().unwrap();
    assert!(schema.len() >= copy::TABLES.len(), "{schema:?}");
    let wrong = copy::schema_mismatches(&schema);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Rows come in key order, batch after batch without gaps or repeats,
/// whatever the batch size; putting them again inserts nothing; a new row
/// is inserted with its identity and reads back through the concern
/// traits.
pub fn raw_rows_page_in_key_order_and_putting_them_again_inserts_nothing(h: &dyn Harness) {
    let store = h.open();
    let ok = run("job", 0, RunState::Succeeded);
    store.put_run(&ok).unwrap();
    let mut chunks = Vec::new();
    let mut b = plumb_store::chunk::ChunkBuilder::new(Stream::Stdout);
    for i in 0..400u64 {
        let line = format!("line {i} of the copied output\n");
        b.push(
            i,
            Timestamp::from_nanos(T0 + i as i64),
            line.as_bytes(),
            &mut chunks,
        );
        if i % 50 == 49 {
            b.flush(&mut chunks);
        }
    }
    b.flush(&mut chunks);
    assert!(chunks.len() >= 8);
    store.put_chunks(ok.id, "node-a", &chunks).unwrap();
    for n in 0..7 {
        store
            .put_run(&run(&format!("job-{n}"), n + 1, RunState::Succeeded))
            .unwrap();
    }
    store.add_token(&[5u8; 32], "viewer", "ci").unwrap();
    let before: Vec<copy::Digest> = copy::TABLES
        .iter()
        .map(|t| copy::digest(&*store, t, Batch::default(), &mut |_| {}).unwrap())
        .collect();

    for name in ["runs", "chunks", "run_counts"] {
        let t = copy::table(name).unwrap();
        let whole = all_rows(&*store, name);
        assert!(whole.len() >= 2, "{name}");
        // Two rows, or 1 byte, per batch: every row once, in key order.
        for batch in [
            Batch {
                rows: 2,
                bytes: 1 << 30,
            },
            Batch {
                rows: 1000,
                bytes: 1,
            },
        ] {
            let mut paged = Vec::new();
            let mut batches = 0;
            copy::scan(&*store, t, batch, &mut |rows| {
                batches += 1;
                paged.extend_from_slice(rows);
                Ok(())
            })
            .unwrap();
            assert_eq!(paged, whole, "{name} paged by {batch:?}");
            assert!(batches >= whole.len() / 2, "{name}: {batches} batches");
        }
        for w in whole.windows(2) {
            let (a, b) = (&w[0][..t.key], &w[1][..t.key]);
            let ordered = match (&a[0], &b[0]) {
                (Value::Int(x), Value::Int(y)) => x < y,
                (Value::Text(x), Value::Text(y)) => {
                    x.as_bytes() < y.as_bytes() || (x == y && t.key > 1)
                }
                _ => false,
            };
            assert!(ordered, "{name}: {a:?} then {b:?}");
        }
    }

    // Everything put again: nothing inserted, nothing changed.
    for t in copy::TABLES.iter().filter(|t| t.role == Role::Copied) {
        let rows = all_rows(&*store, t.name);
        assert_eq!(store.put_raw_rows(t, &rows).unwrap(), 0, "{}", t.name);
    }
    let after: Vec<copy::Digest> = copy::TABLES
        .iter()
        .map(|t| copy::digest(&*store, t, Batch::default(), &mut |_| {}).unwrap())
        .collect();
    assert_eq!(before, after);

    // A new token row: inserted once, and a token like any other.
    let tokens = copy::table("tokens").unwrap();
    let mut token = all_rows(&*store, "tokens").remove(0);
    token[0] = Value::Text(plumb_model::hex(&[6u8; 32]));
    assert_eq!(
        store
            .put_raw_rows(tokens, std::slice::from_ref(&token))
            .unwrap(),
        1
    );
    assert_eq!(store.put_raw_rows(tokens, &[token]).unwrap(), 0);
    assert_eq!(store.token_hashes().unwrap().len(), 2);

    // Chunk rows with new ids and parts, right after the highest id: their
    // data comes with them, and once the ids are
    // advanced, chunks stored afterwards get ids of their own.
    let chunk_table = copy::table("chunks").unwrap();
    let rows = all_rows(&*store, "chunks");
    let max_id = rows.iter().filter_map(|r| r[0].as_int()).max().unwrap();
    let max_part = rows.iter().filter_map(|r| r[4].as_int()).max().unwrap();
    let mut again: Vec<RawRow> = rows.clone();
    for (n, row) in again.iter_mut().enumerate() {
        row[0] = Value::Int(max_id + 1 + n as i64);
        row[4] = Value::Int(max_part + 1 + n as i64);
    }
    assert_eq!(
        store.put_raw_rows(chunk_table, &again).unwrap(),
        rows.len() as u64
    );
    store.raw_ids_advance().unwrap();
    let now = all_rows(&*store, "chunks");
    assert_eq!(now.len(), 2 * rows.len());
    assert_eq!(
        &now[rows.len()..],
        &again[..],
        "read back as put, data included"
    );
    assert!(output(&*store, ok.id).starts_with(b"line 0 of"));
    let other = run("other", 100, RunState::Succeeded);
    store.put_run(&other).unwrap();
    let mut more = Vec::new();
    let mut b = plumb_store::chunk::ChunkBuilder::new(Stream::Stdout);
    b.push(0, Timestamp::from_nanos(T0), b"after the copy\n", &mut more);
    b.flush(&mut more);
    store.put_chunks(other.id, "node-a", &more).unwrap();
    assert_eq!(output(&*store, other.id), b"after the copy\n");
    let hits = store
        .search(&SearchOptions {
            text: "copy".into(),
            run: Some(other.id),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(
        matches!(&hits[..], [Hit::Output(l)] if l.text == "after the copy"),
        "{hits:?}"
    );

    // A bad row is refused, naming the column.
    let e = store
        .put_raw_rows(tokens, &[vec![Value::Int(1); 4]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokens.hash"), "{e}");
}

/// A failed run put as a raw row is not queued for error grouping unless
/// the queue (copied as it is) already names it, so runs the source has
/// grouped are not grouped again at the target.
pub fn runs_put_raw_are_queued_for_grouping_only_as_the_queue_says(h: &dyn Harness) {
    let store = h.open();
    let failed = run("job", 0, RunState::Failed);
    store.put_run(&failed).unwrap();
    let queue = copy::table("error_queue").unwrap();
    let runs = copy::table("runs").unwrap();
    let queued = all_rows(&*store, "error_queue");
    assert_eq!(queued.len(), 1, "the trigger queued it: {queued:?}");
    let row = all_rows(&*store, "runs").remove(0);
    let as_new = |id: Uuid| {
        let mut r = row.clone();
        r[0] = Value::Text(id.to_string());
        r[1] = Value::Text(id.simple().to_string());
        r
    };
    // Grouped at its source (not queued there): not queued here.
    let grouped = new_id();
    assert_eq!(store.put_raw_rows(runs, &[as_new(grouped)]).unwrap(), 1);
    let ids: Vec<String> = all_rows(&*store, "error_queue")
        .into_iter()
        .filter_map(|r| r[1].as_text().map(String::from))
        .collect();
    assert_eq!(ids, vec![failed.id.to_string()]);
    // Queued at its source: the queue's row, with its id, stays as copied.
    let pending = new_id();
    let entry = vec![Value::Int(1000), Value::Text(pending.to_string())];
    assert_eq!(
        store
            .put_raw_rows(queue, std::slice::from_ref(&entry))
            .unwrap(),
        1
    );
    assert_eq!(store.put_raw_rows(runs, &[as_new(pending)]).unwrap(), 1);
    let after = all_rows(&*store, "error_queue");
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1], entry);
    assert_eq!(store.count_runs().unwrap(), 3);
}
