//! Conformance cases for [`Runs`](plumb_store::Runs) and
//! [`Output`](plumb_store::Output): run records, references, lists,
//! fingerprints, output replay and search.

use crate::Harness;
use plumb_model::{Fingerprint, Run, RunState, Stream, Timestamp, Uuid, new_id, telemetry::Hit};
use plumb_store::chunk::{CHUNK_TARGET, ChunkBuilder, SealedChunk};
use plumb_store::dash::{PageKey, RunQuery};
use plumb_store::{ErrorKind, OutputCursor, Replayed, RunFilter, SearchOptions};
use std::collections::HashSet;

const T0: i64 = 1_764_000_000_000_000_000;

fn run_named(name: &str, at_s: i64, state: RunState) -> Run {
    let mut r = Run::new(
        new_id(),
        name.into(),
        Timestamp::from_nanos(T0 + at_s * 1_000_000_000),
    );
    r.state = state;
    r.host.hostname = "node-a".into();
    if state.is_final() {
        r.ended = Some(Timestamp::from_nanos(
            T0 + at_s * 1_000_000_000 + 500_000_000,
        ));
    }
    r
}

/// Sealed chunks of `reads` on one stream, cut wherever the builder cuts
/// (every `CHUNK_TARGET` bytes or so).
fn sealed(stream: Stream, first_seq: u64, reads: &[Vec<u8>]) -> Vec<SealedChunk> {
    let mut b = ChunkBuilder::new(stream);
    let mut out = Vec::new();
    for (i, r) in reads.iter().enumerate() {
        b.push(
            first_seq + i as u64,
            Timestamp::from_nanos(T0 + i as i64),
            r,
            &mut out,
        );
    }
    b.flush(&mut out);
    out
}

fn replay(store: &dyn plumb_store::Backend, id: Uuid) -> Vec<(Stream, Vec<u8>)> {
    let mut got: Vec<(Stream, Vec<u8>)> = Vec::new();
    store
        .replay_output(id, None, &mut OutputCursor::default(), &mut |piece| {
            if let Replayed::Read { stream, bytes, .. } = piece {
                match got.last_mut() {
                    Some((s, b)) if *s == stream => b.extend_from_slice(bytes),
                    _ => got.push((stream, bytes.to_vec())),
                }
            }
            Ok(())
        })
        .unwrap();
    got
}

fn search(store: &dyn plumb_store::Backend, text: &str, run: Option<Uuid>) -> Vec<String> {
    store
        .search(&SearchOptions {
            text: text.into(),
            run,
            limit: 100_000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter_map(|h| match h {
            Hit::Output(l) => Some(l.text),
            _ => None,
        })
        .collect()
}

pub fn a_run_reads_back_as_written(h: &dyn Harness) {
    let store = h.open();
    let mut r = run_named("train", 0, RunState::Failed);
    r.tags.insert("team".into(), "ml".into());
    r.argv = vec!["python".into(), "train.py".into(), "--lr=0.1".into()];
    // Killed by the OOM killer, with every field of that set.
    r.oom = Some(plumb_model::OomKill {
        root: true,
        pids: vec![4242, 4243],
        command: Some("python3".into()),
        kills: 2,
        limit: Some(64 << 20),
        peak: Some((64 << 20) - 4096),
        cgroup: Some("/jobs/train".into()),
        source: plumb_model::OomSource::CgroupV2,
    });
    store.put_run(&r).unwrap();
    let back = store.get_run(r.id).unwrap();
    assert_eq!(back.oom, r.oom, "the OOM kill reads back field for field");
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&r).unwrap(),
        "every field of the record survives"
    );
    assert_eq!(store.count_runs().unwrap(), 1);
    // A second connection sees it too.
    assert_eq!(h.open().get_run(r.id).unwrap().name, "train");
}

/// A periodic start `plumb every` skipped because the previous run was
/// still running: cancelled, never started, with an overlap wait naming
/// that run. It reads back whole and lists under its state.
pub fn a_skipped_start_reads_back_with_its_overlap_wait(h: &dyn Harness) {
    let store = h.open();
    let blocker = run_named("backup", 0, RunState::Running);
    let mut skipped = run_named("backup", 1, RunState::Cancelled);
    let at = skipped.started;
    skipped.waiting = Some(plumb_model::Waiting {
        kind: plumb_model::WaitKind::Overlap,
        reason: format!("skipped: previous run {} still running", blocker.id),
        since: at,
        until: None,
        ended: skipped.ended,
    });
    store.put_runs(&[blocker.clone(), skipped.clone()]).unwrap();
    let back = store.get_run(skipped.id).unwrap();
    assert_eq!(back.waiting, skipped.waiting);
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&skipped).unwrap()
    );
    let cancelled = store
        .list_runs(&RunFilter {
            state: Some(RunState::Cancelled),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].id, skipped.id);
}

pub fn a_run_sent_twice_is_stored_once_and_the_later_state_wins(h: &dyn Harness) {
    let store = h.open();
    let running = run_named("job", 0, RunState::Running);
    store.put_run(&running).unwrap();
    let mut done = running.clone();
    done.state = RunState::Succeeded;
    done.ended = Some(Timestamp::from_nanos(T0 + 2_000_000_000));
    store.put_runs(&[done.clone(), done.clone()]).unwrap();
    store.put_run(&done).unwrap();
    assert_eq!(store.count_runs().unwrap(), 1);
    assert_eq!(
        store.get_run(running.id).unwrap().state,
        RunState::Succeeded
    );
    assert_eq!(
        store.count_runs_by_state().unwrap(),
        vec![(RunState::Succeeded, 1)]
    );
}

pub fn references_resolve_and_bad_ones_say_what_kind_of_failure(h: &dyn Harness) {
    let store = h.open();
    let older = run_named("a", 0, RunState::Succeeded);
    let newer = run_named("b", 10, RunState::Failed);
    store.put_runs(&[older.clone(), newer.clone()]).unwrap();
    assert_eq!(store.resolve(&newer.id.to_string()).unwrap(), newer.id);
    let simple = newer.id.simple().to_string();
    assert_eq!(store.resolve(&simple[..31]).unwrap(), newer.id);
    assert_eq!(store.resolve("last").unwrap(), newer.id);
    assert_eq!(store.resolve("last~1").unwrap(), older.id);

    let kind = |r: &str| store.resolve(r).unwrap_err().kind();
    assert_eq!(kind("last~2"), ErrorKind::NotFound);
    assert_eq!(kind("ffffffffffff"), ErrorKind::NotFound);
    assert_eq!(kind("not a reference"), ErrorKind::BadInput);
    assert_eq!(kind("ab"), ErrorKind::BadInput, "too short a prefix");
    let missing = store.get_run(new_id()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    // Two runs whose ids share the first hex digits: their common prefix
    // is ambiguous, and the error says so.
    let shared = newer.id.simple().to_string()[..8].to_string();
    let twin_id =
        Uuid::parse_str(&format!("{shared}{}", &new_id().simple().to_string()[8..])).unwrap();
    let mut twin = run_named("b", 11, RunState::Succeeded);
    twin.id = twin_id;
    store.put_run(&twin).unwrap();
    let amb = store.resolve(&shared).unwrap_err();
    assert_eq!(amb.kind(), ErrorKind::BadInput);
    assert!(amb.to_string().contains("ambiguous"), "{amb}");
}

pub fn lists_filter_by_name_state_and_tag_newest_first(h: &dyn Harness) {
    let store = h.open();
    let mut runs = Vec::new();
    for i in 0..12 {
        let state = if i % 3 == 0 {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        let mut r = run_named(if i % 2 == 0 { "even" } else { "odd" }, i, state);
        if i % 4 == 0 {
            r.tags.insert("gpu".into(), "a100".into());
            r.host.hostname = "node-b".into();
        }
        runs.push(r);
    }
    store.put_runs(&runs).unwrap();
    let ids =
        |f: RunFilter| -> Vec<Uuid> { store.list_runs(&f).unwrap().iter().map(|s| s.id).collect() };
    let expect = |keep: &dyn Fn(&Run) -> bool| -> Vec<Uuid> {
        runs.iter()
            .rev()
            .filter(|r| keep(r))
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(
        ids(RunFilter {
            limit: 100,
            ..Default::default()
        }),
        expect(&|_| true)
    );
    assert_eq!(
        ids(RunFilter {
            name: Some("even".into()),
            limit: 100,
            ..Default::default()
        }),
        expect(&|r| r.name == "even")
    );
    assert_eq!(
        ids(RunFilter {
            failed: true,
            limit: 100,
            ..Default::default()
        }),
        expect(&|r| r.state == RunState::Failed)
    );
    assert_eq!(
        ids(RunFilter {
            tags: vec![("gpu".into(), "a100".into())],
            limit: 100,
            ..Default::default()
        }),
        expect(&|r| r.tags.contains_key("gpu"))
    );
    assert_eq!(
        ids(RunFilter {
            host: Some("node-b".into()),
            limit: 100,
            ..Default::default()
        }),
        expect(&|r| r.host.hostname == "node-b")
    );
    assert_eq!(
        ids(RunFilter {
            limit: 3,
            ..Default::default()
        })
        .len(),
        3
    );
    let present: HashSet<Uuid> = store.existing_runs(&[runs[0].id, new_id()]).unwrap();
    assert_eq!(present, HashSet::from([runs[0].id]));
    assert_eq!(store.previous_run(runs[4].id).unwrap(), Some(runs[2].id));
    assert_eq!(store.previous_run(runs[0].id).unwrap(), None);
}

pub fn fingerprints_are_stored_once_by_hash(h: &dyn Harness) {
    let store = h.open();
    let fp = Fingerprint::default();
    let hash = "b3:0123456789abcdef";
    store.put_fingerprint(hash, &fp).unwrap();
    store.put_fingerprint(hash, &fp).unwrap();
    assert!(store.get_fingerprint(hash).unwrap().is_some());
    assert!(store.get_fingerprint("b3:none").unwrap().is_none());
    let mut r = run_named("job", 0, RunState::Succeeded);
    r.fingerprint = Some(hash.into());
    store.put_run(&r).unwrap();
    assert!(store.run_fingerprint(&r).unwrap().is_some());
}

pub fn output_replays_in_order_and_search_finds_every_matching_line(h: &dyn Harness) {
    let store = h.open();
    let r = run_named("job", 0, RunState::Succeeded);
    store.put_run(&r).unwrap();
    let out: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("step {i} loss 0.{i:04}\n").into_bytes())
        .collect();
    let err: Vec<Vec<u8>> = vec![b"warning: needle in stderr\n".to_vec()];
    store
        .put_chunks(r.id, "node-a", &sealed(Stream::Stdout, 0, &out))
        .unwrap();
    store
        .put_chunks(r.id, "node-a", &sealed(Stream::Stderr, 2000, &err))
        .unwrap();
    let got = replay(&*store, r.id);
    assert_eq!(got.len(), 2, "stdout then stderr, in production order");
    assert_eq!(got[0], (Stream::Stdout, out.concat()));
    assert_eq!(got[1], (Stream::Stderr, err.concat()));
    assert_eq!(
        search(&*store, "needle", None),
        vec!["warning: needle in stderr"]
    );
    let steps = search(&*store, "step 1999", Some(r.id));
    assert_eq!(steps, vec!["step 1999 loss 0.1999"]);
    assert!(
        search(&*store, "needle", Some(new_id())).is_empty(),
        "another run's output is not searched"
    );
    assert!(search(&*store, "absent-word", None).is_empty());
}

pub fn search_does_not_depend_on_how_output_was_chunked(h: &dyn Harness) {
    // The same output, read in reads of different sizes (so cut into
    // chunks at different places), finds the same lines, including the
    // line that straddles a chunk boundary.
    let line = |i: usize| format!("record {i} payload {}\n", "x".repeat(i % 50));
    let text: String = (0..20_000).map(line).collect();
    assert!(text.len() > 3 * CHUNK_TARGET, "several chunks");
    let mut answers = Vec::new();
    for read in [7usize, 4096, 65_536, text.len()] {
        let store = h.open();
        let r = run_named(&format!("read-{read}"), 0, RunState::Succeeded);
        store.put_run(&r).unwrap();
        let reads: Vec<Vec<u8>> = text.as_bytes().chunks(read).map(|c| c.to_vec()).collect();
        store
            .put_chunks(r.id, "node-a", &sealed(Stream::Stdout, 0, &reads))
            .unwrap();
        assert_eq!(
            replay(&*store, r.id)[0].1,
            text.as_bytes(),
            "read size {read}"
        );
        let mut hits = search(
            &*store,
            "payload xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Some(r.id),
        );
        hits.sort();
        answers.push((read, hits));
    }
    let (_, first) = &answers[0];
    assert_eq!(first.len(), 20_000 / 50, "one line in 50 has 49 x");
    for (read, hits) in &answers {
        assert_eq!(hits, first, "read size {read} found other lines");
    }
}

pub fn pages_follow_each_other_without_gaps_or_repeats(h: &dyn Harness) {
    let store = h.open();
    let mut runs = Vec::new();
    for i in 0..25i64 {
        // Pairs share a start time, so the id must break ties.
        let mut r = Run::new(
            plumb_model::new_id(),
            if i % 2 == 0 { "Train-A" } else { "eval" }.into(),
            Timestamp::from_nanos(1_000 + i / 2),
        );
        r.host.hostname = "h1".into();
        runs.push(r);
    }
    store.put_runs(&runs).unwrap();
    let mut q = RunQuery {
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let page = store.runs_page(&q).unwrap();
        seen.extend(page.runs.iter().map(|r| r.id));
        match page.next {
            Some(k) => q.after = Some(PageKey::decode(&k).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 25);
    let filtered = store
        .runs_page(&RunQuery {
            text: vec!["train".into()],
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(filtered.runs.len(), 13);
    assert!(filtered.next.is_none());
    let newest_train = filtered.runs[0].id;
    let prev = store.previous_run(newest_train).unwrap().unwrap();
    assert_eq!(prev, filtered.runs[1].id);
    let oldest = filtered.runs[12].id;
    assert_eq!(store.previous_run(oldest).unwrap(), None);
    let ids = [newest_train, plumb_model::new_id()];
    assert_eq!(
        store.existing_runs(&ids).unwrap(),
        HashSet::from([newest_train])
    );
    assert!(PageKey::decode("banana").unwrap_err().contains("banana"));
}

pub fn attached_snapshots_read_back_with_the_run_and_survive_its_later_records(h: &dyn Harness) {
    use plumb_model::stack::{ProcessSnapshot, StackSnapshot};
    let store = h.open();
    let running = run_named("stuck", 0, RunState::Running);
    store.put_run(&running).unwrap();
    let snap = |at_s: i64, reason: &str| StackSnapshot {
        taken: Timestamp::from_nanos(T0 + at_s * 1_000_000_000),
        reason: Some(reason.into()),
        took_ns: 1,
        processes: vec![ProcessSnapshot {
            host: "node-a".into(),
            pid: 42,
            command: "python job.py".into(),
            state: "sleeping".into(),
            ..ProcessSnapshot::default()
        }],
    };
    // Attached out of order: read back oldest first.
    store
        .attach_snapshot(running.id, &snap(20, "second"))
        .unwrap();
    store
        .attach_snapshot(running.id, &snap(10, "first"))
        .unwrap();
    // The recorder's final record replaces the record, not what was attached.
    let mut done = running.clone();
    done.state = RunState::Succeeded;
    done.ended = Some(Timestamp::from_nanos(T0 + 30_000_000_000));
    done.snapshots = vec![snap(5, "recorder's own")];
    store.put_run(&done).unwrap();
    let reasons: Vec<String> = h
        .open()
        .get_run(running.id)
        .unwrap()
        .snapshots
        .iter()
        .map(|s| s.reason.clone().unwrap())
        .collect();
    assert_eq!(reasons, ["recorder's own", "first", "second"]);
    // Bounded per run, the oldest dropped first.
    for i in 0..plumb_store::MAX_ATTACHED_SNAPSHOTS as i64 {
        store
            .attach_snapshot(running.id, &snap(100 + i, &format!("n{i}")))
            .unwrap();
    }
    let back = store.get_run(running.id).unwrap().snapshots;
    assert_eq!(back.len(), 1 + plumb_store::MAX_ATTACHED_SNAPSHOTS);
    assert_eq!(back[1].reason.as_deref(), Some("n0"));
    // A run that is not stored is named as not found.
    let err = store.attach_snapshot(new_id(), &snap(1, "x")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Counts per (bucket, state) of what [`Runs::run_counts`] answered,
/// bucket rows added up.
fn summed(
    rows: &[plumb_model::chart::StateCount],
) -> std::collections::BTreeMap<(i64, String), u64> {
    let mut m = std::collections::BTreeMap::new();
    for r in rows {
        *m.entry((r.bucket_ns, r.state.as_str().to_string()))
            .or_insert(0) += r.n;
    }
    m.retain(|_, n| *n > 0);
    m
}

/// The same, counted directly from the runs written.
fn direct(
    runs: &[Run],
    keep: &dyn Fn(&Run) -> bool,
    from: i64,
    until: i64,
) -> std::collections::BTreeMap<(i64, String), u64> {
    let b = plumb_store::dash::COUNT_BUCKET_NS;
    let mut m = std::collections::BTreeMap::new();
    for r in runs.iter().filter(|r| keep(r)) {
        let t = r.started.as_nanos();
        if t >= plumb_model::chart::align_down(from, b) && t < until {
            *m.entry((
                plumb_model::chart::align_down(t, b),
                r.state.as_str().to_string(),
            ))
            .or_insert(0) += 1;
        }
    }
    m
}

/// The runs-over-time rollup equals a direct count of the runs for every
/// kind of filter (all, name, state, words, host, tag), over runs spread
/// across three days with empty hours between; the chart built on it has
/// one bar per interval, empty ones included, and the same total.
pub fn run_counts_equal_a_direct_count_for_every_filter(h: &dyn Harness) {
    let store = h.open();
    let names = ["train-a", "train-b", "Eval"];
    let states = [
        RunState::Succeeded,
        RunState::Failed,
        RunState::Running,
        RunState::Killed,
        RunState::Evicted,
        RunState::Waiting,
    ];
    let mut runs = Vec::new();
    let mut k = 0usize;
    // Three days; only some hours have runs, so most intervals are empty.
    for day in 0..3i64 {
        for hour in [0i64, 1, 7, 13, 22] {
            for j in 0..(3 + (day as usize + hour as usize) % 4) {
                let at = day * 86_400 + hour * 3_600 + j as i64 * 290;
                let mut r = run_named(
                    names[k % names.len()],
                    at,
                    states[(k * 7 + j) % states.len()],
                );
                r.host.hostname = if k.is_multiple_of(3) { "h1" } else { "h2" }.into();
                r.tags.insert(
                    "team".into(),
                    if k.is_multiple_of(2) { "ml" } else { "web" }.into(),
                );
                runs.push(r);
                k += 1;
            }
        }
    }
    // Written in two batches and one at a time, as ingest does.
    let (a, rest) = runs.split_at(runs.len() / 2);
    store.put_runs(a).unwrap();
    for r in rest {
        store.put_run(r).unwrap();
    }
    let from = T0;
    let until = T0 + 3 * 86_400_000_000_000;
    type Keep = Box<dyn Fn(&Run) -> bool>;
    let cases: Vec<(RunQuery, Keep)> = vec![
        (RunQuery::default(), Box::new(|_| true)),
        (
            RunQuery {
                name: Some("train-a".into()),
                ..Default::default()
            },
            Box::new(|r| r.name == "train-a"),
        ),
        (
            RunQuery {
                state: Some(RunState::Failed),
                ..Default::default()
            },
            Box::new(|r| r.state == RunState::Failed),
        ),
        (
            RunQuery {
                text: vec!["TRAIN".into()],
                state: Some(RunState::Succeeded),
                ..Default::default()
            },
            Box::new(|r| r.name.starts_with("train") && r.state == RunState::Succeeded),
        ),
        (
            RunQuery {
                host: Some("h1".into()),
                ..Default::default()
            },
            Box::new(|r| r.host.hostname == "h1"),
        ),
        (
            RunQuery {
                tags: vec![("team".into(), "ml".into())],
                name: Some("Eval".into()),
                ..Default::default()
            },
            Box::new(|r| r.tags.get("team").map(String::as_str) == Some("ml") && r.name == "Eval"),
        ),
    ];
    for (q, keep) in &cases {
        for (f, u) in [
            (from, until),
            // Part of a day, starting mid-bucket.
            (
                from + 86_400_000_000_000 + 100_000_000_000,
                from + 2 * 86_400_000_000_000,
            ),
        ] {
            let got = store
                .run_counts(q, Timestamp::from_nanos(f), Timestamp::from_nanos(u))
                .unwrap();
            assert_eq!(got.partial_from, None);
            assert_eq!(
                summed(&got.rows),
                direct(&runs, keep, f, u),
                "{q:?} {f}..{u}"
            );
        }
        let want: u64 = direct(&runs, keep, from, until).values().sum();
        assert!(want > 0, "{q:?} matches runs");
        let q = RunQuery {
            since: Some(Timestamp::from_nanos(from)),
            until: Some(Timestamp::from_nanos(until)),
            ..q.clone()
        };
        let chart =
            plumb_store::dash::runs_chart(&*store, &q, Timestamp::from_nanos(until)).unwrap();
        assert_eq!(chart.total, want, "{q:?}");
        assert_eq!(chart.interval_ns, 3 * 3_600_000_000_000);
        // Bars start on a multiple of the interval: T0 is not one.
        assert_eq!(chart.bars.len(), 25);
        assert!(chart.from.as_nanos() <= from && chart.until.as_nanos() >= until);
        assert!(
            chart.bars.iter().any(|b| b.total == 0),
            "empty intervals are bars too"
        );
        for b in &chart.bars {
            let n = runs
                .iter()
                .filter(|r| keep(r) && r.started >= b.start && r.started < b.end)
                .count() as u64;
            assert_eq!(b.total, n, "{q:?} bar at {:?}", b.start);
        }
    }
    // Without `since`, the chart starts at the first bucket with a run.
    let chart =
        plumb_store::dash::runs_chart(&*store, &RunQuery::default(), Timestamp::from_nanos(until))
            .unwrap();
    assert_eq!(chart.total, runs.len() as u64);
    assert!(chart.from.as_nanos() <= T0 && chart.from.as_nanos() > T0 - chart.interval_ns);
}

/// An empty store charts nothing; a single run is one count in one bar.
pub fn run_counts_of_nothing_and_of_a_single_run(h: &dyn Harness) {
    let store = h.open();
    let now = Timestamp::from_nanos(T0 + 3_600_000_000_000);
    let chart = plumb_store::dash::runs_chart(&*store, &RunQuery::default(), now).unwrap();
    assert_eq!(chart.total, 0);
    assert!(!chart.bars.is_empty());
    assert!(
        chart
            .bars
            .iter()
            .all(|b| b.total == 0 && b.counts.is_empty())
    );
    let r = run_named("solo", 600, RunState::Succeeded);
    store.put_run(&r).unwrap();
    let chart = plumb_store::dash::runs_chart(&*store, &RunQuery::default(), now).unwrap();
    assert_eq!(chart.total, 1);
    let full: Vec<_> = chart.bars.iter().filter(|b| b.total > 0).collect();
    assert_eq!(full.len(), 1);
    assert!(full[0].start <= r.started && r.started < full[0].end);
    assert_eq!(full[0].counts[0].state, RunState::Succeeded);
    // Another name's filter sees none of it.
    let other = RunQuery {
        name: Some("other".into()),
        ..Default::default()
    };
    assert_eq!(
        plumb_store::dash::runs_chart(&*store, &other, now)
            .unwrap()
            .total,
        0
    );
}

/// A run recorded as running and then replaced by its final record moves
/// from one state's count to the other's, never counted twice; a rename
/// or a new start time moves it too.
pub fn run_counts_follow_a_run_whose_state_changes(h: &dyn Harness) {
    let store = h.open();
    let from = Timestamp::from_nanos(T0);
    let until = Timestamp::from_nanos(T0 + 86_400_000_000_000);
    let all = RunQuery::default();
    let mut r = run_named("job", 60, RunState::Running);
    store.put_run(&r).unwrap();
    let b = T0;
    let counts = |q: &RunQuery| summed(&store.run_counts(q, from, until).unwrap().rows);
    assert_eq!(
        counts(&all),
        [((b, "running".to_string()), 1)].into_iter().collect()
    );
    r.state = RunState::Failed;
    r.ended = Some(Timestamp::from_nanos(T0 + 61_000_000_000));
    store.put_run(&r).unwrap();
    // The same record again changes nothing (and is not refused: a failed
    // run still in the error-grouping queue is queued once).
    store.put_run(&r).unwrap();
    store.put_runs(&[r.clone(), r.clone()]).unwrap();
    let want: std::collections::BTreeMap<_, _> =
        [((b, "failed".to_string()), 1)].into_iter().collect();
    assert_eq!(counts(&all), want);
    let by_name = RunQuery {
        name: Some("job".into()),
        ..Default::default()
    };
    assert_eq!(counts(&by_name), want);
    // Renamed and restarted an hour later (a waiting run that started).
    r.name = "job2".into();
    r.started = Timestamp::from_nanos(T0 + 3_600_000_000_000);
    store.put_runs(std::slice::from_ref(&r)).unwrap();
    assert!(counts(&by_name).is_empty());
    let want: std::collections::BTreeMap<_, _> =
        [((T0 + 3_600_000_000_000, "failed".to_string()), 1)]
            .into_iter()
            .collect();
    assert_eq!(counts(&all), want);
    assert_eq!(
        counts(&RunQuery {
            name: Some("job2".into()),
            ..Default::default()
        }),
        want
    );
}

/// A job's runs: the newest `limit` of the name, oldest first, with their
/// state and times.
pub fn job_runs_are_the_newest_of_a_name_oldest_first(h: &dyn Harness) {
    let store = h.open();
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(run_named(
            "nightly",
            i * 100,
            if i % 3 == 0 {
                RunState::Failed
            } else {
                RunState::Succeeded
            },
        ));
        runs.push(run_named("other", i * 100 + 1, RunState::Succeeded));
    }
    store.put_runs(&runs).unwrap();
    let got = store.job_runs("nightly", 4).unwrap();
    let want: Vec<_> = runs
        .iter()
        .filter(|r| r.name == "nightly")
        .skip(6)
        .map(|r| (r.id, r.state, r.started, r.ended))
        .collect();
    assert_eq!(
        got.iter()
            .map(|j| (j.id, j.state, j.started, j.ended))
            .collect::<Vec<_>>(),
        want
    );
    assert!(store.job_runs("nobody", 10).unwrap().is_empty());
}
