//! `[retention] output`: a collector drops recorded output, logs and
//! spans older than the horizon, keeps the runs, and says so wherever the
//! dropped output would have been shown. On SQLite by default; on
//! PostgreSQL (day partitions dropped) with PLUMB_TEST_STORE=postgres.

mod support;

use plumb_model::{Run, RunState, Stream, Timestamp, new_id};
use plumb_store::chunk::{ChunkBuilder, SealedChunk};
use std::time::Duration;
use support::*;

const DAY: i64 = 86_400_000_000_000;

fn chunks(t: i64, text: &str) -> Vec<SealedChunk> {
    let mut b = ChunkBuilder::new(Stream::Stdout);
    let mut out = Vec::new();
    b.push(0, Timestamp::from_nanos(t), text.as_bytes(), &mut out);
    b.flush(&mut out);
    out
}

fn run_at(name: &str, t: i64) -> Run {
    let mut r = Run::new(new_id(), name.into(), Timestamp::from_nanos(t));
    r.state = RunState::Succeeded;
    r.ended = Some(Timestamp::from_nanos(t + 1_000_000_000));
    r.host.hostname = "node-a".into();
    r
}

/// A store on the backend under test holding a run from 20 days ago and
/// one from an hour ago, each with a line of output.
fn old_and_new(builder: ServeBuilder, data: &std::path::Path) -> (ServeBuilder, Run, Run) {
    let now = Timestamp::now().as_nanos();
    let old = run_at("nightly", now - 20 * DAY);
    let new = run_at("nightly", now - DAY / 24);
    let fill = |s: &dyn plumb_store::Backend| {
        s.put_runs(&[old.clone(), new.clone()]).unwrap();
        s.put_chunks(
            old.id,
            "node-a",
            &chunks(old.started.as_nanos(), "oldword from november\n"),
        )
        .unwrap();
        s.put_chunks(
            new.id,
            "node-a",
            &chunks(new.started.as_nanos(), "newword from today\n"),
        )
        .unwrap();
    };
    let builder = if std::env::var("PLUMB_TEST_STORE").as_deref() == Ok("postgres") {
        let url = plumb_store_postgres::testing::fresh_store_url();
        fill(
            &plumb_store_postgres::PgConnector::new(&url)
                .unwrap()
                .open()
                .unwrap(),
        );
        builder.store(&url)
    } else {
        fill(&plumb_store::Store::open(data).unwrap());
        builder.data(data)
    };
    (builder, old, new)
}

#[test]
fn output_older_than_the_retention_goes_the_runs_stay_and_readers_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (builder, old, new) = old_and_new(Serve::builder(), &data);
    let server = builder.env("PLUMB_RETENTION_OUTPUT", "7d").start();
    let api = server.api.clone();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--collector", &api]);
        plumb_at(dir.path(), &all).output().unwrap()
    };
    // The leader sweeps as it starts leading.
    let view = wait_for("the first retention sweep", Duration::from_secs(30), || {
        let v = server.get_json("/api/v1/retention");
        v["output_before_ns"].as_i64().map(|_| v)
    });
    assert_eq!(view["output_keep_s"], 7 * 86_400, "{view}");
    let horizon = view["output_before_ns"].as_i64().unwrap();
    assert!(
        horizon > old.started.as_nanos() && horizon < new.started.as_nanos(),
        "{view}"
    );
    assert_eq!(horizon % DAY, 0, "on a UTC day boundary: {view}");

    let old_id = old.id.to_string();
    let new_id = new.id.to_string();
    let out = wait_for("the old output to go", Duration::from_secs(30), || {
        let out = cli(&["logs", &old_id]);
        text(&out.stdout).is_empty().then_some(out)
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("output written before") && err.contains("retention ([retention] output)"),
        "{err}"
    );
    let out = ok(cli(&["logs", &new_id]), "plumb logs of the new run");
    assert_eq!(text(&out.stdout), "newword from today\n");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    // The run stays, and says what happened to its output.
    let shown = text(&ok(cli(&["show", &old_id]), "plumb show").stdout);
    assert!(shown.contains("nightly"), "{shown}");
    assert!(shown.contains("retention output written before"), "{shown}");
    let shown = text(&ok(cli(&["show", &new_id]), "plumb show").stdout);
    assert!(!shown.contains("retention"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_slice(&ok(cli(&["show", &old_id, "--json"]), "show --json").stdout)
            .unwrap();
    assert!(json["output_removed_before"].is_string(), "{json}");

    // Search finds only what is kept.
    let out = cli(&["search", "oldword"]);
    assert_eq!(out.status.code(), Some(1), "nothing found, as grep says it");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    let found = text(&ok(cli(&["search", "newword"]), "search").stdout);
    assert!(found.contains("newword from today"), "{found}");

    // The dashboard marks the removed output in place.
    let page = server.get(&format!("/runs/{old_id}")).unwrap();
    assert!(
        page.contains("removed by the collector&#39;s retention")
            || page.contains("removed by the collector's retention"),
        "{page}"
    );

    let metrics = server.get("/metrics").unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plumb_retention_dropped_chunks_total "))
        .unwrap_or_else(|| panic!("no dropped-chunks counter:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(dropped, 1.0);
}

#[test]
fn a_retention_under_a_day_or_not_a_duration_is_refused_by_name() {
    for (value, says) in [
        ("6h", "less than a day"),
        ("30 days", "unknown duration unit"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = plumb_at(
            dir.path(),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                dir.path().join("d").to_str().unwrap(),
            ],
        )
        .env("PLUMB_RETENTION_OUTPUT", value)
        .output()
        .unwrap();
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("PLUMB_RETENTION_OUTPUT") && err.contains(says),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plumb.toml"),
        "[retention]\noutput = \"2h\"\n",
    )
    .unwrap();
    let out = plumb_at(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--data", "d"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("[retention] output") && err.contains("less than a day"),
        "{err}"
    );
}
