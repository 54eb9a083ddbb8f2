//! Conformance cases: moved from plumb-store/src/insights/tests.rs.

use crate::Harness;
use plumb_model::insights::ErrorQuery;
use plumb_model::insights::{ErrorStatus, OccurrenceSource, SlowConfig};
use plumb_model::{Exception, Run, RunState, Timestamp};
use plumb_model::{ExitStatus, Frame, new_id};
use plumb_store::insights::NewOccurrence;

const S: i64 = 1_000_000_000;

/// A fingerprint stand-in: the store only needs a stable function.
fn fp(e: &Exception) -> String {
    format!("{}:{}", e.kind, e.frames.len())
}

fn failed(name: &str, host: &str, at_s: i64, kind: &str) -> Run {
    let mut r = Run::new(new_id(), name.into(), Timestamp::from_nanos(at_s * S));
    r.state = RunState::Failed;
    r.ended = Some(Timestamp::from_nanos(at_s * S + S / 2));
    r.exit = Some(ExitStatus {
        code: Some(1),
        ..Default::default()
    });
    r.host.hostname = host.into();
    r.exception = Some(Exception {
        language: "python".into(),
        kind: kind.into(),
        message: "boom".into(),
        frames: vec![Frame {
            file: Some("app.py".into()),
            line: Some(3),
            function: Some("main".into()),
        }],
        ..Default::default()
    });
    r
}

fn query(now_s: i64) -> ErrorQuery {
    ErrorQuery::at(Timestamp::from_nanos(now_s * S))
}

pub fn failed_runs_are_queued_by_the_trigger_and_grouped_once(h: &dyn Harness) {
    let s = h.open();
    let runs = [
        failed("job", "n1", 100, "ValueError"),
        failed("job", "n2", 101, "ValueError"),
        failed("job", "n3", 102, "ValueError"),
        failed("job", "n1", 103, "KeyError"),
    ];
    s.put_runs(&runs).unwrap();
    let mut ok = Run::new(new_id(), "job".into(), Timestamp::from_nanos(90 * S));
    ok.state = RunState::Succeeded;
    s.put_run(&ok).unwrap();
    assert_eq!(
        s.error_queue_len().unwrap(),
        4,
        "only failed runs are queued"
    );
    let d = s.drain_error_queue(100, &fp).unwrap();
    assert_eq!((d.taken, d.filed), (4, 4));
    // Re-ingesting the same runs queues them again but counts nothing twice.
    s.put_runs(&runs).unwrap();
    let d = s.drain_error_queue(100, &fp).unwrap();
    assert_eq!((d.taken, d.filed), (4, 0));
    let groups = s.error_groups(&query(200)).unwrap();
    assert_eq!(groups.len(), 2);
    let v = groups.iter().find(|g| g.kind == "ValueError").unwrap();
    assert_eq!((v.count, v.runs), (3, 3));
    assert_eq!(v.hosts, ["n1", "n2", "n3"]);
    assert_eq!(v.status, ErrorStatus::New);
    assert_eq!(v.first_seen, Timestamp::from_nanos(100 * S + S / 2));
    // Most recently seen first.
    assert_eq!(groups[0].kind, "KeyError");
    let detail = s
        .error_group(&v.fingerprint, Timestamp::from_nanos(200 * S), 3600, 10)
        .unwrap()
        .unwrap();
    assert_eq!(detail.occurrences.len(), 3);
    assert_eq!(detail.occurrences[0].host, "n3");
    assert_eq!(detail.sample.frames.len(), 1);
    assert!(
        s.error_group("nope", Timestamp::from_nanos(0), 1, 1)
            .unwrap()
            .is_none()
    );
}

pub fn status_new_then_ongoing_resolved_and_regressed(h: &dyn Harness) {
    let s = h.open();
    s.put_run(&failed("job", "n1", 100, "ValueError")).unwrap();
    s.drain_error_queue(10, &fp).unwrap();
    let mut q = query(100 + 3600);
    q.new_window_s = 60;
    let g = &s.error_groups(&q).unwrap()[0];
    assert_eq!(g.status, ErrorStatus::Ongoing, "older than the new window");
    assert!(
        s.resolve_error_group(&g.fingerprint, Timestamp::from_nanos(200 * S))
            .unwrap()
    );
    assert!(
        !s.resolve_error_group("nope", Timestamp::from_nanos(0))
            .unwrap()
    );
    assert_eq!(s.error_groups(&q).unwrap()[0].status, ErrorStatus::Resolved);
    q.status = Some(ErrorStatus::Ongoing);
    assert!(s.error_groups(&q).unwrap().is_empty(), "status filter");
    q.status = None;
    // It comes back after the resolution: regressed.
    s.put_run(&failed("job", "n2", 300, "ValueError")).unwrap();
    s.drain_error_queue(10, &fp).unwrap();
    let g = &s.error_groups(&q).unwrap()[0];
    assert_eq!(g.status, ErrorStatus::Regressed);
    assert_eq!(g.count, 2);
    assert!(g.resolved_at.is_none());
    // Quiet for long enough: resolved automatically, at the end of the quiet
    // period; then it comes back again.
    assert_eq!(
        s.auto_resolve_error_groups(Timestamp::from_nanos(400 * S), 50)
            .unwrap(),
        1
    );
    let g = &s.error_groups(&q).unwrap()[0];
    assert_eq!(g.status, ErrorStatus::Resolved);
    assert_eq!(g.resolved_at, Some(Timestamp::from_nanos(350 * S + S / 2)));
    s.put_run(&failed("job", "n2", 500, "ValueError")).unwrap();
    s.drain_error_queue(10, &fp).unwrap();
    let g = &s.error_groups(&q).unwrap()[0];
    assert_eq!(g.status, ErrorStatus::Regressed);
    assert_eq!(g.regressed_at, Some(Timestamp::from_nanos(500 * S + S / 2)));
    let (by_status, total) = s
        .error_group_counts(Timestamp::from_nanos(600 * S), 60)
        .unwrap();
    assert_eq!(by_status, [(ErrorStatus::Regressed, 1)]);
    assert_eq!(total, 3);
}

pub fn otlp_occurrences_are_idempotent_by_key(h: &dyn Harness) {
    let s = h.open();
    let e = Exception {
        language: "python".into(),
        kind: "ValueError".into(),
        message: "x".into(),
        fingerprint: "abc".into(),
        ..Default::default()
    };
    let occ = NewOccurrence {
        key: "otlp:1:2".into(),
        exception: e,
        run_id: None,
        host: "h".into(),
        at: Timestamp::from_nanos(5 * S),
        source: OccurrenceSource::Otlp,
    };
    assert_eq!(
        s.record_error_occurrences(&[occ.clone(), occ.clone()])
            .unwrap(),
        1
    );
    assert_eq!(s.record_error_occurrences(&[occ]).unwrap(), 0);
    let g = &s.error_groups(&query(10)).unwrap()[0];
    assert_eq!((g.count, g.runs), (1, 0));
    let d = s
        .error_group("abc", Timestamp::from_nanos(10 * S), 60, 5)
        .unwrap()
        .unwrap();
    assert_eq!(d.occurrences[0].source, OccurrenceSource::Otlp);
}

fn finished(name: &str, start_s: i64, dur_ms: i64, state: RunState) -> Run {
    let mut r = Run::new(new_id(), name.into(), Timestamp::from_nanos(start_s * S));
    r.state = state;
    r.ended = Some(Timestamp::from_nanos(start_s * S + dur_ms * 1_000_000));
    r
}

pub fn duration_stats_use_the_latest_successful_runs(h: &dyn Harness) {
    let s = h.open();
    // 20 successful runs of 100..2000 ms, and failed ones that do not count.
    let mut runs: Vec<Run> = (1..=20)
        .map(|i| finished("job", i * 10, i * 100, RunState::Succeeded))
        .collect();
    runs.push(finished("job", 5, 99_000, RunState::Failed));
    runs.push(finished("other", 5, 7, RunState::Succeeded));
    s.put_runs(&runs).unwrap();
    let st = s.duration_stats("job", 100).unwrap();
    assert_eq!(st.n, 20);
    assert!((st.p50_s - 1.0).abs() < 1e-9, "{st:?}");
    assert!((st.p95_s - 1.9).abs() < 1e-9, "{st:?}");
    // A window of 5: the latest five (1.6 .. 2.0 s).
    let st = s.duration_stats("job", 5).unwrap();
    assert_eq!(st.n, 5);
    assert!((st.p50_s - 1.8).abs() < 1e-9, "{st:?}");
    let none = s.duration_stats("missing", 100).unwrap();
    assert_eq!((none.n, none.p95_s), (0, 0.0));
}

pub fn slow_runs_need_history_and_exceed_the_p95(h: &dyn Harness) {
    let s = h.open();
    let runs: Vec<Run> = (1..=20)
        .map(|i| finished("job", i, 1000, RunState::Succeeded))
        .collect();
    s.put_runs(&runs).unwrap();
    let slow = Run::new(new_id(), "job".into(), Timestamp::from_nanos(100 * S));
    let quick = Run::new(
        new_id(),
        "job".into(),
        Timestamp::from_nanos(104 * S + S / 2),
    );
    let unknown = Run::new(new_id(), "fresh".into(), Timestamp::from_nanos(10 * S));
    s.put_runs(&[slow.clone(), quick, unknown]).unwrap();
    let cfg = SlowConfig {
        min_elapsed_s: 0.0,
        ..Default::default()
    };
    let found = s.slow_runs(Timestamp::from_nanos(105 * S), &cfg).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].run_id, slow.id);
    assert!((found[0].factor - 5.0).abs() < 1e-9);
    assert!((found[0].p95_s - 1.0).abs() < 1e-9);
    // A higher factor or more history required: nothing.
    let strict = SlowConfig {
        factor: 6.0,
        ..cfg.clone()
    };
    assert!(
        s.slow_runs(Timestamp::from_nanos(105 * S), &strict)
            .unwrap()
            .is_empty()
    );
    let more = SlowConfig {
        min_history: 21,
        ..cfg
    };
    assert!(
        s.slow_runs(Timestamp::from_nanos(105 * S), &more)
            .unwrap()
            .is_empty()
    );
    let d = s
        .run_duration(runs[0].id, Timestamp::from_nanos(105 * S), 100)
        .unwrap();
    assert!((d.duration_s - 1.0).abs() < 1e-9);
    assert_eq!(d.factor, Some(1.0));
}

pub fn every_failed_state_is_queued_for_grouping_and_no_other(h: &dyn Harness) {
    let s = h.open();
    for (i, state) in plumb_model::RunState::ALL.into_iter().enumerate() {
        let mut r = failed("job", "n1", 100 + i as i64, "ValueError");
        r.state = state;
        s.put_run(&r).unwrap();
    }
    let failures = plumb_model::RunState::ALL
        .into_iter()
        .filter(|st| st.is_failure())
        .count();
    assert_eq!(s.error_queue_len().unwrap(), failures as u64);
}

/// A group's occurrence times: those in the window, newest first, at most
/// the limit, another group's never.
pub fn occurrence_times_are_a_groups_own_in_a_window(h: &dyn Harness) {
    let s = h.open();
    let occ = |fp: &str, key: &str, at_s: i64| NewOccurrence {
        key: key.into(),
        exception: Exception {
            language: "python".into(),
            kind: "ValueError".into(),
            message: "x".into(),
            fingerprint: fp.into(),
            ..Default::default()
        },
        run_id: None,
        host: "h".into(),
        at: Timestamp::from_nanos(at_s * S),
        source: OccurrenceSource::Otlp,
    };
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(occ("aaa", &format!("otlp:{i}:1"), 100 + i * 10));
    }
    all.push(occ("bbb", "otlp:x:2", 150));
    assert_eq!(s.record_error_occurrences(&all).unwrap(), 11);
    let t = |x: i64| Timestamp::from_nanos(x * S);
    let got = s
        .error_occurrence_times("aaa", t(120), t(160), 100)
        .unwrap();
    assert_eq!(got, vec![t(150), t(140), t(130), t(120)]);
    assert_eq!(
        s.error_occurrence_times("aaa", t(0), t(1000), 3).unwrap(),
        vec![t(190), t(180), t(170)]
    );
    assert_eq!(
        s.error_occurrence_times("bbb", t(0), t(1000), 100).unwrap(),
        vec![t(150)]
    );
    assert!(
        s.error_occurrence_times("ccc", t(0), t(1000), 100)
            .unwrap()
            .is_empty()
    );
}

pub fn error_day_counts_are_each_groups_occurrences_per_utc_day(h: &dyn Harness) {
    const DAY: i64 = 86_400;
    let s = h.open();
    let occ = |fp: &str, key: &str, at_s: i64| NewOccurrence {
        key: key.into(),
        exception: Exception {
            language: "python".into(),
            kind: "ValueError".into(),
            message: "x".into(),
            fingerprint: fp.into(),
            ..Default::default()
        },
        run_id: None,
        host: "h".into(),
        at: Timestamp::from_nanos(at_s * S),
        source: OccurrenceSource::Otlp,
    };
    // Days 100..=104: aaa on days 100 (twice, one at its first and one at
    // its last second), 102 and 104 (out of the range asked); bbb on day
    // 101; ccc on day 99 (before it). A key sent twice counts once.
    let d = |day: i64, s: i64| day * DAY + s;
    let all = vec![
        occ("aaa", "k1", d(100, 0)),
        occ("aaa", "k2", d(100, DAY - 1)),
        occ("aaa", "k3", d(102, 7)),
        occ("aaa", "k3", d(102, 7)),
        occ("aaa", "k4", d(104, 0)),
        occ("bbb", "k5", d(101, 5)),
        occ("ccc", "k6", d(99, DAY - 1)),
    ];
    assert_eq!(s.record_error_occurrences(&all).unwrap(), 6);
    // Sent again later: nothing new.
    assert_eq!(s.record_error_occurrences(&all[..2]).unwrap(), 0);
    let day = |n: i64| Timestamp::from_nanos(n * DAY * S);
    let ask = |fps: &[&str], from: i64, days: usize| {
        let fps: Vec<String> = fps.iter().map(|f| f.to_string()).collect();
        let mut got = s.error_day_counts(&fps, day(from), days).unwrap();
        got.sort();
        got
    };
    assert_eq!(
        ask(&["aaa", "bbb", "ccc", "zzz"], 100, 4),
        vec![
            ("aaa".to_string(), day(100), 2),
            ("aaa".to_string(), day(102), 1),
            ("bbb".to_string(), day(101), 1),
        ]
    );
    assert_eq!(
        ask(&["ccc", "aaa"], 99, 6),
        vec![
            ("aaa".to_string(), day(100), 2),
            ("aaa".to_string(), day(102), 1),
            ("aaa".to_string(), day(104), 1),
            ("ccc".to_string(), day(99), 1),
        ]
    );
    assert!(ask(&[], 0, 1000).is_empty());
    assert!(ask(&["aaa"], 100, 0).is_empty());
    // Failed runs grouped from the queue count too, each on its day.
    let mut r = failed("job", "h", d(103, 1), "KeyError");
    r.exception.as_mut().unwrap().fingerprint = String::new();
    s.put_run(&r).unwrap();
    s.drain_error_queue(100, &fp).unwrap();
    let key = fp(r.exception.as_ref().unwrap());
    assert_eq!(ask(&[&key], 100, 5), vec![(key.clone(), day(103), 1)]);
    // The per-day counts are the occurrences' own.
    let times = s
        .error_occurrence_times("aaa", day(0), day(200), 100)
        .unwrap();
    let total: u64 = ask(&["aaa"], 0, 200).iter().map(|r| r.2).sum();
    assert_eq!(total as usize, times.len());
}
