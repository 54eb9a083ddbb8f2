//! `plumb store copy` with real processes, real SQLite files and a real
//! PostgreSQL server (the tests' private cluster, see
//! `plumb_store_postgres::testing`): a store filled by a real collector
//! (runs with output, OTLP logs and spans, an error group, a fired alert,
//! node heartbeats, a token) copied to PostgreSQL and back, equal table by
//! table and answering the same; a copy killed with SIGKILL and run again
//! ends equal with nothing doubled; bad input is named and leaves the
//! target untouched.

mod support;

use plumb_store_postgres::testing::{fresh_store_url, server_url};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use support::*;

/// `plumb store copy --from FROM --to TO [extra]`.
fn copy(from: &str, to: &str, extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    plumb_in(home.path())
        .args(["store", "copy", "--from", from, "--to", to])
        .args(extra)
        .output()
        .unwrap()
}

/// The comparison table a copy printed: table -> (source rows, target
/// rows, copied, hash).
fn table(out: &Output) -> Vec<(String, String, String, String, String)> {
    text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].to_string(),
            )
        })
        .collect()
}

/// Asserts a copy succeeded and every table compared equal; the rows of
/// each table.
#[track_caller]
fn assert_equal(out: &Output, what: &str) -> Vec<(String, u64)> {
    let out_ok = ok(out.clone(), what);
    let rows = table(&out_ok);
    assert!(rows.len() >= 27, "{what}: {}", text(&out.stdout));
    let mut counts = Vec::new();
    for (name, src, dst, _, hash) in &rows {
        if hash == "skipped:" {
            continue;
        }
        assert_eq!(hash, "equal", "{what}: {name}\n{}", text(&out.stdout));
        assert_eq!(src, dst, "{what}: {name}");
        counts.push((name.clone(), src.parse().unwrap()));
    }
    counts
}

fn rows_of(counts: &[(String, u64)], table: &str) -> u64 {
    counts.iter().find(|(n, _)| n == table).unwrap().1
}

/// A `plumb` command on a node with its own home, shipping to `api`.
fn node(home: &Path, api: &str) -> std::process::Command {
    let mut c = plumb();
    c.env("PLUMB_HOME", home.join("store"))
        .env("PLUMB_SPOOL", home.join("spool"))
        .env("PLUMB_OUTBOX", home.join("outbox"))
        .env("PLUMB_COLLECTOR", api)
        .current_dir(home);
    c
}

fn post(api: &str, path: &str, body: &Value) {
    let (code, text) = http(
        api,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .status_and_text();
    assert!((200..300).contains(&code), "POST {path}: {code} {text}");
}

/// Fills the SQLite store in `data` through a real collector: runs with
/// output (one failing with a Python exception, grouped), OTLP logs and
/// spans of a run, heartbeats of two nodes (one with a nearly full disk,
/// so the disk alert fires), then a token.
fn fill(data: &Path, work: &Path) -> String {
    let config = work.join("plumb.toml");
    std::fs::write(
        &config,
        "[alerts]\ninterval = \"200ms\"\n\n[alerts.rules.disk_low]\nfor = \"0s\"\n",
    )
    .unwrap();
    let serve = Serve::builder()
        .data(data)
        .env("PLUMB_CONFIG", &config)
        .start();
    let api = serve.api.clone();
    let home = work.join("node");
    std::fs::create_dir_all(&home).unwrap();
    for i in 0..3 {
        ok(
            node(&home, &api)
                .args(["run", "--name", &format!("train-{i}"), "--", "sh", "-c"])
                .arg(format!(
                    "seq 1 3000 | sed 's/^/epoch {i} step /'; echo copyneedle {i} >&2"
                ))
                .stdout(Stdio::null())
                .output()
                .unwrap(),
            "plumb run",
        );
    }
    let failed = node(&home, &api)
        .args([
            "run",
            "--name",
            "broken",
            "--",
            "python3",
            "-c",
            "raise ValueError('copied failure')",
        ])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let runs = wait_for("4 runs at the collector", Duration::from_secs(30), || {
        let v = get_json(&api, "/api/v1/runs");
        let runs = v["runs"].as_array().or(v.as_array())?.clone();
        (runs.len() == 4).then_some(runs)
    });
    let run_id = runs[0]["id"].as_str().unwrap().to_string();

    // OTLP logs and spans of one run.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let resource = serde_json::json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": "trainer"}},
        {"key": "plumb.run.id", "value": {"stringValue": run_id}}]});
    let logs: Vec<Value> = (0..50u64)
        .map(|j| {
            serde_json::json!({"timeUnixNano": (now - j * 1000).to_string(), "severityNumber": 9,
            "body": {"stringValue": format!("otlp copyword record {j}")}})
        })
        .collect();
    post(
        &api,
        "/v1/logs",
        &serde_json::json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {}, "logRecords": logs}]}]}),
    );
    post(
        &api,
        "/v1/traces",
        &serde_json::json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {},
            "spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                       "name": "copy-span", "kind": 1, "startTimeUnixNano": (now - 2_000_000_000).to_string(),
                       "endTimeUnixNano": now.to_string(), "status": {}},
                      {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000c41d0",
                       "parentSpanId": "eee19b7ec3c1b174", "name": "copy-child", "kind": 1,
                       "startTimeUnixNano": (now - 1_000_000_000).to_string(),
                       "endTimeUnixNano": (now - 500_000_000).to_string(), "status": {"code": 2}}]}]}]}),
    );

    // Heartbeats: a node with 4% of its disk free fires the disk alert.
    for (name, n) in [("node-a", 3), ("node-b", 2)] {
        for seq in 1..=n {
            let mut r = node_report(name, "fp", "debian");
            r["seq"] = seq.into();
            post(&api, "/api/v1/ingest/node", &r);
        }
    }
    wait_for("the error group", Duration::from_secs(30), || {
        let g = get_json(&api, "/api/v1/errors");
        g["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["kind"] == "ValueError"))
            .then_some(())
    });
    wait_for("the disk alert to fire", Duration::from_secs(30), || {
        let a = get_json(&api, "/api/v1/alerts");
        a["alerts"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|a| a["labels"]["alertname"] == "DiskSpaceLow" && a["state"] == "firing")
            })
            .then_some(())
    });
    drop(serve);
    let token = plumb()
        .args(["token", "create", "--role", "viewer", "--name", "copied"])
        .arg("--data")
        .arg(data)
        .env("PLUMB_HOME", data)
        .output()
        .unwrap();
    text(&ok(token, "plumb token create").stdout)
        .trim()
        .to_string()
}

/// What a collector serving `store` answers to ls, show, logs and
/// search, asked with the viewer `token`.
fn answers(store: &str, token: &str) -> Vec<String> {
    let b = Serve::builder();
    let serve = if store.starts_with("postgres") {
        b.store(store)
    } else {
        b.data(Path::new(store))
    }
    .start();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = plumb_in(home.path())
            .args(args)
            .args(["--collector", &serve.api])
            .env("PLUMB_TOKEN", token)
            .output()
            .unwrap();
        text(&ok(out, &format!("plumb {args:?}")).stdout)
    };
    let ls = run(&["ls", "--json"]);
    let ids: Vec<String> = serde_json::from_str::<Value>(&ls)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4, "{ls}");
    let mut all = vec![ls, run(&["ls"])];
    for id in &ids {
        all.push(run(&["show", id, "--json"]));
        all.push(run(&["logs", id]));
    }
    all.push(run(&["search", "copyneedle"]));
    all.push(run(&["search", "step 2999"]));
    all.push(run(&["search", "copyword", "--json"]));
    all.push(run(&["search", "kind:span", "copy"]));
    assert!(all.iter().any(|a| a.contains("copyneedle 2")));
    assert!(all.iter().any(|a| a.contains("otlp copyword record 49")));
    let bearer = format!("Bearer {token}");
    let get = |path: &str| http(&serve.api, "GET", path, &[("Authorization", &bearer)], b"").text();
    let errors = get("/api/v1/errors");
    assert!(errors.contains("copied failure"), "{errors}");
    let alerts = get("/api/v1/alerts");
    assert!(alerts.contains("DiskSpaceLow"), "{alerts}");
    all
}

#[test]
fn a_filled_store_copied_to_postgres_and_back_is_equal_and_answers_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("collector");
    let token = fill(&src, tmp.path());
    let src_s = src.to_str().unwrap();
    let pg = fresh_store_url();

    let out = copy(&format!("sqlite:{src_s}"), &pg, &[]);
    let counts = assert_equal(&out, "sqlite -> postgres");
    for t in [
        "runs",
        "chunks",
        "log_chunks",
        "spans",
        "nodes",
        "error_groups",
        "alerts",
        "tokens",
        "fingerprints",
        "run_counts",
    ] {
        assert!(rows_of(&counts, t) > 0, "{t} is empty: the fill missed it");
    }
    assert_eq!(rows_of(&counts, "runs"), 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("runs: 4 rows (4 new)") && stderr.contains("rows/s"),
        "one line per table when stderr is not a terminal: {stderr}"
    );
    // Again: nothing new, still equal.
    let again = copy(src_s, &pg, &[]);
    assert_equal(&again, "the same copy again");
    assert!(
        table(&again)
            .iter()
            .all(|(_, _, _, copied, _)| copied == "0" || copied == "derived" || copied == "-"),
        "{}",
        text(&again.stdout)
    );

    // A collector on the copy answers as one on the original.
    let before = answers(src_s, &token);
    let after = answers(&pg, &token);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // The collector on the copy took its own error grouping and leader
    // lease and stored more: later writes get ids of their own.
    let agent = plumb()
        .args(["token", "create", "--role", "agent", "--store", &pg])
        .output()
        .unwrap();
    let agent = text(&ok(agent, "plumb token create").stdout)
        .trim()
        .to_string();
    let serve = Serve::builder().store(&pg).start();
    let (code, body) = http(
        &serve.api,
        "POST",
        "/api/v1/ingest/node",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {agent}")),
        ],
        node_report("node-c", "fp", "debian").to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");
    drop(serve);

    // And back to SQLite: equal.
    let back = tmp.path().join("back");
    let out = copy(&pg, back.to_str().unwrap(), &[]);
    let back_counts = assert_equal(&out, "postgres -> sqlite");
    assert_eq!(rows_of(&back_counts, "nodes"), 3);
    assert_eq!(rows_of(&back_counts, "runs"), 4);
    assert_eq!(answers(back.to_str().unwrap(), &token)[2..], before[2..]);
}

/// A SQLite store of `runs` runs, each with a chunk of output, written
/// with the store's own API.
fn seed(dir: &Path, runs: usize) {
    use plumb_store::prelude::*;
    let store = plumb_store::Store::open(dir).unwrap();
    let t0 = 1_764_000_000_000_000_000i64;
    let mut all = Vec::new();
    for i in 0..runs {
        let mut r = plumb_model::Run::new(
            plumb_model::new_id(),
            format!("job-{}", i % 7),
            plumb_model::Timestamp::from_nanos(t0 + i as i64 * 1_000_000_000),
        );
        r.state = if i % 5 == 0 {
            plumb_model::RunState::Failed
        } else {
            plumb_model::RunState::Succeeded
        };
        r.host.hostname = "seed".into();
        all.push(r);
    }
    store.put_runs(&all).unwrap();
    for (i, r) in all.iter().enumerate().take(runs / 2) {
        let mut chunks = Vec::new();
        let mut b = plumb_store::chunk::ChunkBuilder::new(plumb_model::Stream::Stdout);
        // Over 40 days: on PostgreSQL, 40 day partitions, more than one
        // batch's worth.
        b.push(
            0,
            plumb_model::Timestamp::from_nanos(t0 + (i % 40) as i64 * 86_400_000_000_000),
            format!("seeded output {i}\n").as_bytes(),
            &mut chunks,
        );
        b.flush(&mut chunks);
        store.put_chunks(r.id, "seed", &chunks).unwrap();
    }
}

#[test]
fn a_copy_killed_mid_table_and_run_again_ends_equal_with_nothing_doubled() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("seeded");
    seed(&src, 1500);
    let src_s = src.to_str().unwrap();
    let pg = fresh_store_url();
    let home = tempfile::tempdir().unwrap();
    let mut child = plumb_in(home.path())
        .args([
            "store", "copy", "--from", src_s, "--to", &pg, "--batch", "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once some runs are in (500 batches of 3, each a transaction
    // of its own), so the copy stops in the middle of a table.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("copying "), "{first}");
    let schema = pg.rsplit_once("schema=").unwrap().1.to_string();
    let mut admin = postgres::Client::connect(&server_url(), postgres::NoTls).unwrap();
    let mut count = |table: &str| -> i64 {
        admin
            .query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[])
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    let at_kill = wait_for(
        "the copy to store some runs",
        Duration::from_secs(60),
        || {
            let n = count("runs");
            (n > 0).then_some(n)
        },
    );
    signal(child.id(), libc::SIGKILL);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let stored = count("runs");
    assert!(
        stored >= at_kill && stored < 1500,
        "killed mid-table: {stored} of 1500 runs stored"
    );

    let out = copy(src_s, &pg, &["--batch", "50"]);
    let counts = assert_equal(&out, "the copy run again");
    assert_eq!(rows_of(&counts, "runs"), 1500);
    assert_eq!(rows_of(&counts, "chunks"), 750);
    assert_eq!(rows_of(&counts, "error_queue"), 300);
    let new_runs: u64 = table(&out)
        .iter()
        .find(|r| r.0 == "runs")
        .unwrap()
        .3
        .parse()
        .unwrap();
    assert_eq!(
        new_runs,
        1500 - stored as u64,
        "the rest of the runs: {}",
        text(&out.stderr)
    );
    // Nothing doubled: the counts at the target are the source's.
    assert_eq!(count("runs"), 1500);
    assert_eq!(count("error_queue"), 300, "each failed run queued once");
    let rollup: i64 = admin
        .query_one(
            &format!("SELECT sum(n)::bigint FROM {schema}.run_counts_all"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rollup, 1500, "each run counted once in the rollup");

    // A row changed at the target is not overwritten: the comparison
    // names its table, and the copy fails.
    admin
        .execute(
            &format!("UPDATE {schema}.chunks SET lines = lines + 1 WHERE id = (SELECT min(id) FROM {schema}.chunks)"),
            &[],
        )
        .unwrap();
    let out = copy(src_s, &pg, &[]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("differs from the source in chunks:"), "{e}");
    let differs: Vec<String> = table(&out)
        .into_iter()
        .filter(|r| r.4 == "DIFFERS")
        .map(|r| r.0)
        .collect();
    assert_eq!(differs, vec!["chunks"], "{}", text(&out.stdout));
}

#[test]
fn bad_input_is_named_and_the_target_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    seed(&src, 3);
    let src_s = src.to_str().unwrap();
    let target = tmp.path().join("target");
    let target_s = target.to_str().unwrap();
    let fails = |from: &str, to: &str, extra: &[&str]| {
        let out = copy(from, to, extra);
        assert!(!out.status.success(), "copy {from} -> {to} succeeded");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(!target.exists(), "the target was made for {from} -> {to}");
        text(&out.stderr)
    };
    let e = fails("mysql://u@db/x", target_s, &[]);
    assert!(
        e.contains("--from `mysql://u@db/x`") && e.contains("postgres://"),
        "{e}"
    );
    let e = fails(src_s, "postgres://u:pw@db:notaport/x", &[]);
    assert!(e.contains("--to") && !e.contains("pw@"), "{e}");
    let port = free_port();
    let e = fails(
        &format!("postgres://plumb:secret@127.0.0.1:{port}/fleet"),
        target_s,
        &[],
    );
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("cannot reach"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let e = fails(&tmp.path().join("missing").to_string_lossy(), target_s, &[]);
    assert!(e.contains("missing: no such directory"), "{e}");
    let e = fails(tmp.path().to_str().unwrap(), target_s, &[]);
    assert!(e.contains("no plumb store there"), "{e}");
    let e = fails(src_s, target_s, &["--batch", "0"]);
    assert!(e.contains("--batch"), "{e}");
    // The same store under two spellings.
    let out = copy(src_s, &format!("sqlite:{}/../src/", src_s), &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the same store"),
        "{}",
        text(&out.stderr)
    );
    let pg = fresh_store_url();
    let out = copy(&pg, &pg, &[]);
    assert!(
        text(&out.stderr).contains("the same store"),
        "{}",
        text(&out.stderr)
    );

    // An unreachable target: named, the source untouched.
    let e = fails(
        src_s,
        &format!("postgres://plumb@127.0.0.1:{port}/fleet"),
        &[],
    );
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");

    // A target that is another store: refused before anything is copied.
    let other = tmp.path().join("other");
    seed(&other, 2);
    let out = copy(src_s, other.to_str().unwrap(), &[]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("holds runs the source has not (run "), "{e}");
    let store = plumb_store::Store::open_read_only(&other).unwrap();
    use plumb_store::prelude::*;
    assert_eq!(store.count_runs().unwrap(), 2, "nothing copied into it");
    drop(store);

    // A target from a newer plumb is refused with the store's own message.
    let newer = tmp.path().join("newer");
    ok(copy(src_s, newer.to_str().unwrap(), &[]), "a first copy");
    {
        let conn = rusqlite::Connection::open(newer.join("plumb.db")).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let out = copy(src_s, newer.to_str().unwrap(), &[]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("newer") && e.contains("999"), "{e}");
}
