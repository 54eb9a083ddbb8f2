//! Conformance cases for [`Retention`](plumb_store::Retention): what is
//! older than the horizon goes, in bounded steps, and nothing newer does.

use crate::Harness;
use crate::telemetry::{log_at, source, span_of};
use plumb_model::telemetry::{Attributes, Hit, LogBatch, MetricKind, MetricPoint};
use plumb_model::{Run, RunState, Stream, Timestamp, Uuid, new_id};
use plumb_store::chunk::{ChunkBuilder, SealedChunk};
use plumb_store::kit::DAY_NS;
use plumb_store::{Backend, Dropped, OutputCursor, Replayed, SearchOptions};

const HOUR: i64 = 3_600_000_000_000;

/// The start of a UTC day some time in late 2025.
fn day(n: i64) -> i64 {
    1_764_000_000_000_000_000i64.div_euclid(DAY_NS) * DAY_NS + n * DAY_NS
}

/// One chunk per read, each read at its own time.
fn chunks(reads: &[(i64, &str)]) -> Vec<SealedChunk> {
    let mut b = ChunkBuilder::new(Stream::Stdout);
    let mut out = Vec::new();
    for (i, (t, text)) in reads.iter().enumerate() {
        b.push(
            i as u64,
            Timestamp::from_nanos(*t),
            text.as_bytes(),
            &mut out,
        );
        b.flush(&mut out);
    }
    out
}

fn replay(store: &dyn Backend, id: Uuid) -> String {
    let mut got = Vec::new();
    store
        .replay_output(id, None, &mut OutputCursor::default(), &mut |piece| {
            if let Replayed::Read { bytes, .. } = piece {
                got.extend_from_slice(bytes);
            }
            Ok(())
        })
        .unwrap();
    String::from_utf8(got).unwrap()
}

fn found(store: &dyn Backend, text: &str) -> Vec<String> {
    let mut got: Vec<String> = store
        .search(&SearchOptions {
            text: text.into(),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|h| match h {
            Hit::Output(l) => l.text,
            Hit::Log(l) => format!("log: {}", l.text),
            Hit::Span(s) => format!("span: {}", s.name),
        })
        .collect();
    got.sort();
    got
}

/// Steps until nothing older is left (a bounded number of them).
fn drop_all(store: &dyn Backend, before: i64) -> Dropped {
    let mut total = Dropped::default();
    for _ in 0..100 {
        let d = store
            .drop_output_before(Timestamp::from_nanos(before))
            .unwrap();
        if d.is_empty() {
            return total;
        }
        total.add(d);
    }
    panic!("retention still dropping after 100 steps: {total:?}");
}

fn run(name: &str, at: i64) -> Run {
    let mut r = Run::new(new_id(), name.into(), Timestamp::from_nanos(at));
    r.state = RunState::Succeeded;
    r.ended = Some(Timestamp::from_nanos(at + HOUR));
    r.host.hostname = "node-a".into();
    r
}

pub fn output_logs_and_spans_older_than_the_horizon_go_and_runs_stay(h: &dyn Harness) {
    let store = h.open();
    assert_eq!(store.output_horizon().unwrap(), None);

    // An old run with output on two days, a new one with output early and
    // late in one day.
    let old = run("old", day(0) + HOUR);
    let new = run("new", day(5) + HOUR);
    store.put_runs(&[old.clone(), new.clone()]).unwrap();
    store
        .put_chunks(
            old.id,
            "node-a",
            &chunks(&[
                (day(0) + HOUR, "oldword one\n"),
                (day(1) + HOUR, "oldword two\n"),
            ]),
        )
        .unwrap();
    store
        .put_chunks(
            new.id,
            "node-a",
            &chunks(&[
                (day(5) + HOUR, "newword early\n"),
                (day(5) + 3 * HOUR, "newword late\n"),
            ]),
        )
        .unwrap();
    let s = source(None, "web-1");
    for (t, body) in [
        (day(0) + 2 * HOUR, "logword old"),
        (day(5) + 4 * HOUR, "logword new"),
    ] {
        store
            .put_logs(&[LogBatch {
                source: s.clone(),
                records: vec![log_at(t, body)],
            }])
            .unwrap();
    }
    let mut old_span = span_of(
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        None,
        "spanword-old",
        0,
    );
    old_span.start = Timestamp::from_nanos(day(1));
    old_span.end = Timestamp::from_nanos(day(1) + 10);
    let mut new_span = span_of(
        "0af7651916cd43dd8448eb211c80319d",
        "b7ad6b7169203332",
        None,
        "spanword-new",
        0,
    );
    new_span.start = Timestamp::from_nanos(day(5) + HOUR);
    new_span.end = Timestamp::from_nanos(day(5) + HOUR + 10);
    store.put_spans(&[old_span, new_span]).unwrap();
    let point = |t: i64| MetricPoint {
        name: "queue.depth".into(),
        kind: MetricKind::Gauge,
        unit: "1".into(),
        time: Timestamp::from_nanos(t),
        start: None,
        value: 1.0,
        count: None,
        buckets: None,
        attributes: Attributes::new(),
        source: s.clone(),
    };
    store
        .put_metric_points(&[point(day(0)), point(day(5))])
        .unwrap();

    // Keep from day 3 on.
    let d = drop_all(&*store, day(3));
    assert_eq!(
        (d.chunks, d.log_chunks, d.spans, d.metric_points),
        (2, 1, 1, 1),
        "{d:?}"
    );
    assert!(d.bytes > 0, "{d:?}");
    assert_eq!(
        store.output_horizon().unwrap(),
        Some(Timestamp::from_nanos(day(3)))
    );
    assert_eq!(replay(&*store, old.id), "", "the old run's output is gone");
    assert_eq!(replay(&*store, new.id), "newword early\nnewword late\n");
    assert_eq!(store.get_run(old.id).unwrap().name, "old", "runs stay");
    assert!(found(&*store, "oldword").is_empty());
    assert_eq!(found(&*store, "newword").len(), 2);
    let logs = found(&*store, "logword");
    assert!(
        logs.len() == 1 && logs[0].ends_with("logword new"),
        "{logs:?}"
    );
    assert_eq!(found(&*store, "spanword"), vec!["span: spanword-new"]);
    assert_eq!(
        store.metric_points("queue.depth", None, 0).unwrap().len(),
        1
    );

    // An earlier horizon drops nothing and does not move it back.
    assert!(drop_all(&*store, day(1)).is_empty());
    assert_eq!(
        store.output_horizon().unwrap(),
        Some(Timestamp::from_nanos(day(3)))
    );

    // A horizon inside a day drops that day's older chunks only.
    let d = drop_all(&*store, day(5) + 2 * HOUR);
    assert_eq!(d.chunks, 1, "{d:?}");
    assert_eq!(replay(&*store, new.id), "newword late\n");

    // Output that arrives late for a day already dropped is stored, and
    // goes at the next step.
    let late = run("late", day(0));
    store.put_run(&late).unwrap();
    store
        .put_chunks(late.id, "node-a", &chunks(&[(day(0) + HOUR, "lateword\n")]))
        .unwrap();
    assert_eq!(replay(&*store, late.id), "lateword\n");
    assert_eq!(drop_all(&*store, day(3)).chunks, 1);
    assert_eq!(replay(&*store, late.id), "");
    assert_eq!(replay(&*store, new.id), "newword late\n");
}
