//! Conformance cases: moved from plumb-store/src/spool.rs.

use crate::Harness;

use plumb_model::{Run, Stream, Timestamp};
use plumb_model::{RunState, new_id};
use plumb_store::chunk::ChunkBuilder;
use plumb_store::chunk::SealedChunk;
use plumb_store::spool::Frames;

fn run(state: RunState) -> Run {
    let mut r = Run::new(new_id(), "job".into(), Timestamp::now());
    r.state = state;
    r.host.hostname = "node-a".into();
    r
}

fn chunks(text: &str) -> Vec<SealedChunk> {
    let mut b = ChunkBuilder::new(Stream::Stdout);
    let mut out = Vec::new();
    b.push(0, Timestamp::now(), text.as_bytes(), &mut out);
    b.flush(&mut out);
    out
}

pub fn a_body_imports_once_and_a_repeat_stores_nothing_new(h: &dyn Harness) {
    let store = h.open();
    let r = run(RunState::Succeeded);
    let mut f = Frames::default();
    f.put_run(&r)
        .put_chunks(&chunks("hello needle\nsecond line\nthird"));
    let first = store.import_frames(&f.bytes).unwrap();
    assert_eq!(
        (
            first.runs,
            first.chunks,
            first.chunks_duplicate,
            first.lines
        ),
        (1, 1, 0, 3),
        "the lines received are counted, the last one without a newline too"
    );
    let again = store.import_frames(&f.bytes).unwrap();
    assert_eq!(
        (again.chunks, again.chunks_duplicate, again.lines),
        (0, 1, 3)
    );
    assert_eq!(store.count_runs().unwrap(), 1);
    let hits = store
        .search(&plumb_store::SearchOptions {
            text: "needle".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
}

pub fn a_late_running_record_never_replaces_a_finished_one(h: &dyn Harness) {
    let store = h.open();
    let mut done = run(RunState::Failed);
    let mut early = done.clone();
    early.state = RunState::Running;
    done.ended = Some(Timestamp::now());
    let mut f = Frames::default();
    f.put_run(&done);
    store.import_frames(&f.bytes).unwrap();
    let mut late = Frames::default();
    late.put_run(&early);
    let stats = store.import_frames(&late.bytes).unwrap();
    assert_eq!((stats.runs, stats.runs_kept), (0, 1));
    assert_eq!(store.get_run(done.id).unwrap().state, RunState::Failed);
}

pub fn a_corrupt_frame_is_named_and_nothing_is_stored(h: &dyn Harness) {
    let store = h.open();
    let mut f = Frames::default();
    f.put_run(&run(RunState::Succeeded))
        .put_run(&run(RunState::Succeeded));
    let second = f.bytes.len() / 2 + 12;
    f.bytes[second] ^= 0xff;
    let err = store.import_frames(&f.bytes).unwrap_err().to_string();
    assert!(err.contains("frame 1") && err.contains("checksum"), "{err}");
    assert_eq!(store.count_runs().unwrap(), 0);
    let cut = &f.bytes[..f.bytes.len() - 3];
    let err = store.import_frames(cut).unwrap_err().to_string();
    assert!(
        err.contains("frame 1") && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(store.count_runs().unwrap(), 0);
}

pub fn chunks_before_any_run_record_are_refused(h: &dyn Harness) {
    let store = h.open();
    let mut f = Frames::default();
    f.put_chunks(&chunks("orphan\n"));
    let err = store.import_frames(&f.bytes).unwrap_err().to_string();
    assert!(
        err.contains("frame 0") && err.contains("before any run"),
        "{err}"
    );
}
