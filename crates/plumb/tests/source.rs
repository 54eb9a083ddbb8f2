//! `ls`, `errors`, `slow` and `nodes` choose where to read by one rule: a
//! collector configured through PLUMB_COLLECTOR is read, `--local` reads
//! the local store instead, and an unreachable collector is an error that
//! names its URL. A real `plumb serve` holds one set of runs, errors and
//! nodes; the local store holds another, so every answer shows which one
//! it came from.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use support::*;

/// Records `cmd` as a run called `name` in `home`'s store, or on the
/// collector at `collector`.
fn record(home: &Path, collector: Option<&str>, name: &str, cmd: &[&str]) {
    let mut c = plumb_in(home);
    if let Some(url) = collector {
        c.env("PLUMB_COLLECTOR", url)
            .env("PLUMB_OUTBOX", home.join("outbox"))
            .env("PLUMB_SPOOL", home.join("spool"));
    }
    let out = c
        .args(["run", "--name", name, "--"])
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "plumb run {name} did not finish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plumb ARGS` in `home`, with PLUMB_COLLECTOR set to `collector`.
fn query(home: &Path, collector: &str, args: &[&str]) -> Output {
    plumb_in(home)
        .env("PLUMB_COLLECTOR", collector)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON a successful `plumb ARGS --json` printed.
fn json(home: &Path, collector: &str, args: &[&str]) -> Value {
    let out = query(home, collector, args);
    assert!(
        out.status.success(),
        "plumb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plumb {args:?} printed no JSON ({e})"))
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[field].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ls_errors_slow_and_nodes_read_the_configured_collector_or_with_local_the_local_store() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let serve = Serve::start(&tmp.path().join("collector"));
    let url = serve.api.clone();

    // The collector's data: a KeyError, one success of `shared`, a node.
    record(
        &elsewhere,
        Some(&url),
        "remote-fails",
        &["python3", "-c", "raise KeyError('remote-only')"],
    );
    record(&elsewhere, Some(&url), "shared", &["true"]);
    plumb_http::Client::new(&plumb_http::Config::new(&url))
        .unwrap()
        .post("/api/v1/ingest/node")
        .json(&node_report("remote-node", "f00d", "linux"))
        .send()
        .expect("the collector takes the node report");

    // The local store's: a ValueError, two successes of `shared`, no node.
    record(
        &home,
        None,
        "local-fails",
        &["python3", "-c", "raise ValueError('local-only')"],
    );
    record(&home, None, "shared", &["true"]);
    record(&home, None, "shared", &["true"]);

    // Both runs reached the collector (shipped at the end of each run, or
    // soon after by the outbox).
    wait_for(
        "the collector's runs listed through PLUMB_COLLECTOR",
        Duration::from_secs(30),
        || {
            let v = json(&home, &url, &["ls", "--json"]);
            let n = names(&v, "name");
            (n.contains(&"remote-fails".to_string()) && n.contains(&"shared".to_string()))
                .then_some(())
        },
    );

    // ls
    let remote = names(&json(&home, &url, &["ls", "--json"]), "name");
    assert!(!remote.contains(&"local-fails".to_string()), "{remote:?}");
    let local = names(&json(&home, &url, &["ls", "--local", "--json"]), "name");
    assert!(local.contains(&"local-fails".to_string()), "{local:?}");
    assert!(!local.contains(&"remote-fails".to_string()), "{local:?}");

    // errors (the collector groups failures in the background: wait)
    let kinds = wait_for(
        "the collector's error groups read through PLUMB_COLLECTOR",
        Duration::from_secs(30),
        || {
            let kinds = names(&json(&home, &url, &["errors", "--json"])["groups"], "kind");
            (!kinds.is_empty()).then_some(kinds)
        },
    );
    assert!(kinds.iter().all(|k| k.contains("KeyError")), "{kinds:?}");
    let local = names(
        &json(&home, &url, &["errors", "--local", "--json"])["groups"],
        "kind",
    );
    assert!(
        !local.is_empty() && local.iter().all(|k| k.contains("ValueError")),
        "{local:?}"
    );

    // slow
    let remote = json(&home, &url, &["slow", "--name", "shared", "--json"]);
    assert_eq!(remote["n"], 1, "{remote}");
    let local = json(
        &home,
        &url,
        &["slow", "--name", "shared", "--local", "--json"],
    );
    assert_eq!(local["n"], 2, "{local}");

    // nodes
    let remote = names(&json(&home, &url, &["nodes", "--json"]), "node");
    assert_eq!(remote, ["remote-node"]);
    let local = json(&home, &url, &["nodes", "--local", "--json"]);
    assert_eq!(local, serde_json::json!([]));

    // Both flags at once are refused before anything is read.
    let out = query(&home, &url, &["ls", "--local", "--collector", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A collector nobody answers at: every command fails, naming it.
    drop(serve);
    let away = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["ls"][..],
        &["errors"],
        &["slow"],
        &["nodes"],
        &["errors", "show", "0123"],
        &["nodes", "show", "remote-node"],
    ] {
        let out = query(&home, &away, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "plumb {args:?}: {err}");
        assert!(
            err.contains(&away),
            "plumb {args:?} does not name {away}: {err}"
        );
    }
}
