//! Error groups and slow-run detection end to end, with real processes:
//! Python programs failing under `plumb run` on three "nodes" (each in its
//! own UTS namespace with its own host name, via `unshare`), shipped to a
//! real `plumb serve`; an OpenTelemetry Python program logging the same
//! exception over OTLP; quick runs then a sleeping one flagged while it runs.
//!
//! Needs python3, `unshare` (util-linux) and, for the OTLP test, the
//! OpenTelemetry Python SDK (`.ci/install-otlp.sh`); promtool when present.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::*;

/// Starts a collector (with OTLP) with its store in `data` and `config`
/// as its plumb.toml.
fn serve(data: &Path, config: &str) -> Serve {
    std::fs::create_dir_all(data).unwrap();
    let toml = data.join("plumb.toml");
    std::fs::write(&toml, config).unwrap();
    Serve::builder()
        .data(data)
        .otlp()
        .env("PLUMB_CONFIG", &toml)
        .start()
}

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/insights/app.py")
}

/// A `plumb` command with an isolated home, shipping to `collector` when
/// given.
fn node_cmd(home: &Path, collector: Option<&str>) -> Command {
    let mut c = plumb();
    c.env("PLUMB_HOME", home)
        .env("PLUMB_SPOOL", home.join("spool"))
        .env("PLUMB_OUTBOX", home.join("outbox"))
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .stdin(Stdio::null());
    if let Some(url) = collector {
        c.env("PLUMB_COLLECTOR", url);
    }
    c
}

/// `plumb run -- python3 app.py MODE ARG` on a node called `host` (its own
/// UTS namespace, so the recorder records that host name).
fn run_app_on(host: &str, home: &Path, collector: Option<&str>, mode: &str, arg: &str) -> Output {
    let cmd = node_cmd(home, collector);
    let mut u = Command::new("unshare");
    u.args([
        "-r",
        "-u",
        "sh",
        "-c",
        "hostname \"$0\" && exec \"$@\"",
        host,
        PLUMB,
    ])
    .args(["run", "--name", "shop", "--", "python3"])
    .arg(app())
    .args([mode, arg]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => u.env(k, v),
            None => u.env_remove(k),
        };
    }
    u.stdin(Stdio::null()).output().expect("unshare runs")
}

fn groups(api: &str) -> Vec<Value> {
    get_json(api, "/api/v1/errors")["groups"]
        .as_array()
        .unwrap()
        .clone()
}

fn group_of<'a>(groups: &'a [Value], kind: &str) -> Option<&'a Value> {
    groups.iter().find(|g| g["kind"] == kind)
}

#[test]
fn same_error_on_three_nodes_is_one_group_and_it_regresses_after_resolve() {
    assert!(
        unshare_works(),
        "these tests need `unshare -r -u` (util-linux, user namespaces)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve(&tmp.path().join("collector"), "");
    for (i, node) in ["node-1", "node-2", "node-3"].iter().enumerate() {
        let home = tmp.path().join(node);
        let out = run_app_on(
            node,
            &home,
            Some(&serve.api),
            "charge",
            &format!("{}", 100 + i),
        );
        assert_eq!(out.status.code(), Some(1), "python's exit code: {out:?}");
    }
    let home4 = tmp.path().join("node-4");
    let out = run_app_on("node-4", &home4, Some(&serve.api), "lookup", "user-7");
    assert_eq!(out.status.code(), Some(1));
    wait_for("the error groups to form", Duration::from_secs(30), || {
        ({
            let g = groups(&serve.api);
            group_of(&g, "ValueError").is_some_and(|v| v["count"] == 3)
                && group_of(&g, "KeyError").is_some()
        })
        .then_some(())
    });
    let g = groups(&serve.api);
    assert_eq!(g.len(), 2, "{g:?}");
    let v = group_of(&g, "ValueError").unwrap();
    assert_eq!(v["runs"], 3);
    assert_eq!(
        v["hosts"],
        serde_json::json!(["node-1", "node-2", "node-3"])
    );
    assert_eq!(v["status"], "new");
    assert_eq!(v["language"], "python");
    let k = group_of(&g, "KeyError").unwrap();
    assert_eq!(
        (k["count"].as_u64(), k["hosts"][0].as_str()),
        (Some(1), Some("node-4"))
    );
    let fp = v["fingerprint"].as_str().unwrap().to_string();

    // The detail page: three occurrences from runs, one per host.
    let d = get_json(&serve.api, &format!("/api/v1/errors/{fp}"));
    assert_eq!(d["occurrences"].as_array().unwrap().len(), 3);
    assert!(
        d["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["source"] == "run")
    );
    assert_eq!(d["sample"]["type"], "ValueError");
    assert!(
        get(&serve.api, "/api/v1/errors/0123456789abcdef").is_none(),
        "unknown group: 404"
    );

    // The CLI against the collector: the table, then resolve.
    let out = node_cmd(tmp.path(), None)
        .args(["errors", "--collector", &serve.api])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        table.contains("STATUS") && table.contains("TYPE: MESSAGE"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.contains("ValueError"))
        .expect("a ValueError row");
    assert!(line.contains(&fp) && line.contains("new"), "{line}");
    assert!(table.contains("KeyError: 'user-7'"), "{table}");
    let out = node_cmd(tmp.path(), None)
        .args(["errors", "resolve", &fp[..8], "--collector", &serve.api])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let g = groups(&serve.api);
    assert_eq!(group_of(&g, "ValueError").unwrap()["status"], "resolved");
    let page = get(&serve.api, &format!("/errors/{fp}")).expect("the group page");
    assert!(page.contains(">resolved</text>"), "resolved marked");
    let out = node_cmd(tmp.path(), None)
        .args([
            "errors",
            "resolve",
            "feedfacefeedface",
            "--collector",
            &serve.api,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("feedfacefeedface"),
        "{out:?}"
    );

    // It comes back on node-2: regressed, counted once more.
    let out = run_app_on(
        "node-2",
        &tmp.path().join("node-2"),
        Some(&serve.api),
        "charge",
        "999",
    );
    assert_eq!(out.status.code(), Some(1));
    wait_for("the group to regress", Duration::from_secs(30), || {
        ({
            group_of(&groups(&serve.api), "ValueError").is_some_and(|v| v["status"] == "regressed")
        })
        .then_some(())
    });
    let g = groups(&serve.api);
    let v = group_of(&g, "ValueError").unwrap();
    assert_eq!(
        (v["count"].as_u64(), v["runs"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(v["hosts"].as_array().unwrap().len(), 3);
    // Issue 22: occurrences over time, in the JSON twin and as a chart
    // marking first seen and regressed (and resolved while it is).
    let d = get_json(&serve.api, &format!("/api/v1/errors/{fp}"));
    let c = &d["over_time"];
    assert_eq!(c["total"], 4, "{d}");
    assert_eq!(
        c["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        4
    );
    let page = get(&serve.api, &format!("/errors/{fp}")).expect("the group page");
    assert!(
        page.contains("<svg class=\"chart\" id=\"error-chart\""),
        "{page}"
    );
    // Regressed: the resolution is over, its moment no longer kept.
    for m in ["first seen", "regressed"] {
        assert!(page.contains(&format!(">{m}</text>")), "{m} marked");
    }
    let out = node_cmd(tmp.path(), None)
        .args(["errors", "--status", "regressed", "--collector", &serve.api])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ValueError") && !table.contains("KeyError"),
        "{table}"
    );
    let metrics = get(&serve.api, "/metrics").unwrap();
    assert!(
        metrics.contains("plumb_error_groups{status=\"regressed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn otlp_exception_log_joins_the_run_group_and_a_quiet_group_regresses() {
    assert!(
        unshare_works(),
        "these tests need `unshare -r -u` (util-linux, user namespaces)"
    );
    let has_otel = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_otel,
        "the OpenTelemetry Python SDK is missing: run .ci/install-otlp.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    // Groups quiet for 2 s are resolved.
    let serve = serve(&tmp.path().join("collector"), "[insights]\nquiet_s = 2\n");
    let home = tmp.path().join("node-a");
    let out = run_app_on("node-a", &home, Some(&serve.api), "charge", "1");
    assert_eq!(out.status.code(), Some(1));
    wait_for(
        "the group to resolve after the quiet period",
        Duration::from_secs(30),
        || {
            ({
                group_of(&groups(&serve.api), "ValueError")
                    .is_some_and(|v| v["status"] == "resolved")
            })
            .then_some(())
        },
    );
    // The same exception, caught and logged through the OpenTelemetry SDK
    // by a program on another node (not under plumb run).
    let out = Command::new("unshare")
        .args([
            "-r",
            "-u",
            "sh",
            "-c",
            "hostname otel-node && exec \"$@\"",
            "sh",
            "python3",
        ])
        .arg(app())
        .args(["otel", "2"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", serve.otlp())
        .env("OTEL_SERVICE_NAME", "shop")
        .env("OTEL_RESOURCE_ATTRIBUTES", "host.name=otel-node")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the OTLP record to join the group",
        Duration::from_secs(30),
        || {
            ({ group_of(&groups(&serve.api), "ValueError").is_some_and(|v| v["count"] == 2) })
                .then_some(())
        },
    );
    let g = groups(&serve.api);
    assert_eq!(g.len(), 1, "one group, not two: {g:?}");
    let v = &g[0];
    assert_eq!(v["status"], "regressed", "{v}");
    assert_eq!(v["runs"], 1, "the OTLP record belongs to no run");
    assert_eq!(v["hosts"], serde_json::json!(["node-a", "otel-node"]));
    let fp = v["fingerprint"].as_str().unwrap();
    let d = get_json(&serve.api, &format!("/api/v1/errors/{fp}"));
    let sources: Vec<&str> = d["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["otlp", "run"], "newest first");
}

#[test]
fn failed_runs_in_the_local_store_are_grouped_too() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    for order in ["5", "6"] {
        let out = node_cmd(home, None)
            .args(["run", "--", "python3"])
            .arg(app())
            .args(["charge", order])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
    }
    let out = node_cmd(home, None)
        .args(["errors", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = v["groups"].as_array().unwrap();
    assert_eq!(g.len(), 1, "{v}");
    assert_eq!(g[0]["count"], 2);
    let fp = g[0]["fingerprint"].as_str().unwrap();
    // A unique prefix names the group, as it names a run.
    let out = node_cmd(home, None)
        .args(["errors", "show", &fp[..6]])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("ValueError: card declined for order"),
        "{text}"
    );
    assert!(
        text.contains("app.py:") && text.contains("in charge"),
        "{text}"
    );
    let out = node_cmd(home, None)
        .args(["errors", "show", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`nope`"),
        "{out:?}"
    );
    let out = node_cmd(home, None)
        .args(["errors", "--since", "yesterday"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("yesterday"),
        "{out:?}"
    );
}

fn slow_metric(api: &str) -> Option<i64> {
    get(api, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix("plumb_runs_longer_than_usual "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_sleeping_run_after_twenty_quick_ones_is_flagged_while_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve(&tmp.path().join("collector"), "");
    let home = tmp.path().join("node");
    // 20 quick runs, five at a time.
    for _ in 0..4 {
        let children: Vec<Child> = (0..5)
            .map(|_| {
                node_cmd(&home, Some(&serve.api))
                    .args(["run", "--name", "nightly", "--", "sh", "-c", "sleep 0.05"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    wait_for("the quick runs to arrive", Duration::from_secs(60), || {
        ({
            get(&serve.api, "/api/v1/durations/nightly")
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .is_some_and(|v| v["n"] == 20)
        })
        .then_some(())
    });
    let stats = get_json(&serve.api, "/api/v1/durations/nightly");
    let p95 = stats["p95_s"].as_f64().unwrap();
    assert!(p95 > 0.04 && p95 < 5.0, "{stats}");
    assert_eq!(
        get_json(&serve.api, "/api/v1/runs/slow")["runs"],
        serde_json::json!([])
    );
    assert_eq!(slow_metric(&serve.api), Some(0));

    // Long enough to pass the 1 s floor and the p95 of quick runs, even on
    // a loaded machine.
    let mut slow = node_cmd(&home, Some(&serve.api))
        .args(["run", "--name", "nightly", "--", "sh", "-c", "sleep 8"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let flagged = wait_for(
        "the sleeping run to be flagged",
        Duration::from_secs(7),
        || {
            let flagged = get_json(&serve.api, "/api/v1/runs/slow");
            flagged["runs"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
                .then_some(flagged)
        },
    );
    let r = &flagged["runs"][0];
    assert_eq!(r["name"], "nightly");
    assert!(r["factor"].as_f64().unwrap() > 1.0, "{r}");
    assert!(r["elapsed_s"].as_f64().unwrap() > p95, "{r}");
    assert_eq!(slow_metric(&serve.api), Some(1));
    // The dashboard's runs page lists it as longer than usual, from the
    // same cached list.
    let id = r["run_id"].as_str().unwrap();
    let html = get(&serve.api, "/runs").expect("GET /runs");
    let section = html
        .split("id=\"h-slow\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no \"Longer than usual\" section on /runs: {html}"));
    assert!(section.starts_with(">Longer than usual<"), "{section}");
    let table = section.split("</table>").next().unwrap();
    assert!(
        table.contains(&format!("/runs/{id}")) && table.contains("nightly"),
        "the slow run is in the section: {table}"
    );
    let out = node_cmd(&home, None)
        .args(["slow", "--collector", &serve.api])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("nightly") && table.contains("FACTOR"),
        "{table}"
    );
    if let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        let body = get(&serve.api, "/metrics").unwrap();
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "promtool: {out:?}");
    }

    assert!(slow.wait().unwrap().success());
    wait_for(
        "the slow run to be unflagged once it finished",
        Duration::from_secs(30),
        || {
            ({
                get_json(&serve.api, "/api/v1/runs/slow")["runs"] == serde_json::json!([])
                    && slow_metric(&serve.api) == Some(0)
                    && get(&serve.api, "/runs").is_some_and(|h| !h.contains("id=\"h-slow\""))
            })
            .then_some(())
        },
    );
}

/// An OTLP log batch of one service on `host` whose records carry
/// exceptions of `kind`, one at each of `times` (ns).
fn otlp_exceptions(host: &str, kind: &str, times: &[i64]) -> Vec<u8> {
    let records: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({
                "timeUnixNano": t.to_string(),
                "severityText": "ERROR",
                "body": {"stringValue": format!("failure {i}")},
                "attributes": [
                    {"key": "exception.type", "value": {"stringValue": kind}},
                    {"key": "exception.message", "value": {"stringValue": "shard could not be read"}},
                ],
            })
        })
        .collect();
    serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "shop"}},
            {"key": "host.name", "value": {"stringValue": host}},
        ]},
        "scopeLogs": [{"logRecords": records}],
    }]})
    .to_string()
    .into_bytes()
}

/// The error list's sparklines count each group's occurrences per UTC day
/// over the last 14 days, exactly (the store's per-day rollup), however
/// many there are: occurrences sent with times on chosen days, one group
/// with more than the 2,000 a group's old bounded read counted.
#[test]
fn the_error_lists_sparklines_count_each_groups_occurrences_per_day() {
    const DAY: i64 = 86_400_000_000_000;
    let tmp = tempfile::tempdir().unwrap();
    let serve = serve(&tmp.path().join("collector"), "");
    let now = plumb_model::Timestamp::now().as_nanos();
    let today = now - now.rem_euclid(DAY);
    let from = today - 13 * DAY;
    // Group A: 3 occurrences 10 days ago, 2,500 yesterday, 1 today; one 20
    // days ago (before the sparkline). Group B: 4 occurrences 2 days ago.
    let mut a = vec![
        today - 10 * DAY + 5,
        today - 10 * DAY + 6,
        today - 10 * DAY + 7,
    ];
    a.extend((0..2500).map(|i| today - DAY + 1_000_000 * i));
    a.push(now - 1);
    a.push(today - 20 * DAY);
    let b: Vec<i64> = (0..4)
        .map(|i| today - 2 * DAY + 60_000_000_000 * i)
        .collect();
    for body in [
        otlp_exceptions("node-a", "ShardError", &a),
        otlp_exceptions("node-b", "QuotaError", &b),
    ] {
        let (code, text) = http(
            serve.otlp(),
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            &body,
        )
        .status_and_text();
        assert_eq!(code, 200, "{text}");
    }
    let list = wait_for(
        "both groups with every occurrence",
        Duration::from_secs(30),
        || {
            let v = get_json(&serve.api, "/api/v1/errors");
            let g = v["groups"].as_array().unwrap().clone();
            (group_of(&g, "ShardError").is_some_and(|x| x["count"] == 2505)
                && group_of(&g, "QuotaError").is_some_and(|x| x["count"] == 4))
            .then_some(v)
        },
    );
    let spark = |kind: &str| -> Value {
        let g = group_of(list["groups"].as_array().unwrap(), kind).unwrap();
        list["sparks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["fingerprint"] == g["fingerprint"])
            .unwrap_or_else(|| panic!("no sparkline for {kind}: {list}"))
            .clone()
    };
    let days = |v: &[(usize, u64)]| {
        let mut d = vec![0u64; 14];
        for (i, n) in v {
            d[*i] = *n;
        }
        serde_json::json!(d)
    };
    let sa = spark("ShardError");
    assert_eq!(sa["from"], from, "{sa}");
    assert_eq!(sa["per_day"], days(&[(3, 3), (12, 2500), (13, 1)]), "{sa}");
    assert!(sa.get("partial").is_none(), "exact, not partial: {sa}");
    let sb = spark("QuotaError");
    assert_eq!(sb["per_day"], days(&[(11, 4)]), "{sb}");
    // The page draws one sparkline per group, its days in the hover text.
    let page = http(&serve.api, "GET", "/errors", &[], b"")
        .status_and_text()
        .1;
    assert_eq!(page.matches("<td class=sp><svg").count(), 2, "{page}");
    assert!(
        page.contains(" 0 0 0 3 0 0 0 0 0 0 0 0 2500 1"),
        "ShardError's days in its hover text: {page}"
    );
}
