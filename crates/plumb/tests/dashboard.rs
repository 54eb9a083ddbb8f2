//! The web dashboard in real headless Chromium: a real `plumb serve` fed by
//! real `plumb run`s, real `plumb agent`s and OTLP posted to its endpoints;
//! each page is driven by a script in tests/dashboard/ (playwright-core over
//! Debian's chromium) that prints what the page showed, asserted here.
//! Screenshots are kept under the test's output directory (printed).
//!
//! Needs chromium, node and tests/dashboard/node_modules: run
//! `.ci/install-dashboard.sh`. Without them the tests fail, naming it.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scripts() -> PathBuf {
    workspace().join("tests/dashboard")
}

/// Fails (never skips) when the browser tooling is missing.
fn require_tools() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .any(|p| Path::new(p).exists())
        || std::env::var_os("CHROMIUM").is_some();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pw = scripts().join("node_modules/playwright-core").exists();
    assert!(
        chromium && node && pw,
        "the dashboard tests need chromium ({chromium}), node ({node}) and tests/dashboard/node_modules/playwright-core ({pw}): run .ci/install-dashboard.sh"
    );
}

fn out_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dashboard")
        .join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    eprintln!("screenshots of {test}: {}", d.display());
    d
}

/// Runs `tests/dashboard/<script>` against `url` and returns what it printed.
fn page(script: &str, url: &str, out: &Path, args: Value) -> Value {
    let mut child = Command::new("node")
        .arg(script)
        .arg(url)
        .arg(out)
        .arg(args.to_string())
        .current_dir(scripts())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"));
    assert_eq!(
        v["dialogs"],
        Value::Array(vec![]),
        "{script}: a script from the data ran"
    );
    assert_eq!(
        v["console_errors"],
        Value::Array(vec![]),
        "{script}: errors in the page"
    );
    v
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

fn record(dir: &Path, api: &str, name: &str, tags: &[&str], script: &str) {
    let mut args = vec!["run", "--name", name];
    for t in tags {
        args.extend(["--tag", t]);
    }
    args.extend(["--", "sh", "-c", script]);
    let out = plumb_at(dir, &args)
        .env("PLUMB_COLLECTOR", api)
        .output()
        .unwrap();
    // A failing program is recorded, and plumb run exits with its code.
    assert!(
        out.status.code().is_some(),
        "plumb run {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_ids(api: &str, name: &str) -> Vec<String> {
    let v = get_json(api, &format!("/api/v1/runs?name={name}&limit=100"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// A report of a node of team ml with two runs in progress, whose
/// software differs from this machine's (OS `fingerprint_os`).
fn team_report(name: &str, fingerprint_os: &str) -> Value {
    let mut r = node_report(name, &format!("odd-{fingerprint_os}"), fingerprint_os);
    r["labels"] = serde_json::json!({"team": "ml"});
    r["runs_in_progress"] = 2.into();
    r
}

#[test]
fn every_page_shows_the_fleet_in_a_real_browser() {
    require_tools();
    let out = out_dir("pages");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Serve::start(&dir.join("srv"));
    let api = server.api.clone();

    // Two real agents with the same labels (so the same fingerprint), and a
    // third node whose report carries a different one.
    let agent = |name: &str| {
        let spool = dir.join(format!("agent-{name}"));
        Proc(
            plumb_at(
                dir,
                &[
                    "agent",
                    "--collector",
                    &api,
                    "--name",
                    name,
                    "--label",
                    "team=ml",
                    "--interval",
                    "300ms",
                ],
            )
            .arg("--spool")
            .arg(&spool)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        )
    };
    let _a = agent("node-a");
    let b = agent("node-b");
    let (code, body) = http(
        &api,
        "POST",
        "/api/v1/ingest/node",
        &[("Content-Type", "application/json")],
        team_report("node-odd", "plan9").to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");

    // Runs: two of the same name (for the diff), a failure, a name and a
    // tag that are markup, and one still running.
    record(
        dir,
        &api,
        "train",
        &["team=ml"],
        "echo epoch 1 loss 0.9; echo dashword alpha",
    );
    record(
        dir,
        &api,
        "train",
        &["team=ml"],
        "echo epoch 2 loss 0.4; echo dashword beta; true",
    );
    record(dir, &api, "flaky", &[], "echo boom >&2; exit 3");
    record(
        dir,
        &api,
        "pyfail",
        &[],
        "python3 -c 'raise ValueError(\"dash boom\")'",
    );
    record(
        dir,
        &api,
        "<script>alert(1)</script>",
        &["x=<b>y</b>"],
        "echo hi",
    );
    let live = Proc(
        plumb_at(
            dir,
            &[
                "run",
                "--name",
                "sleeper",
                "--",
                "sh",
                "-c",
                "i=0; while [ $i -lt 120 ]; do echo tick $i; i=$((i+1)); sleep 0.5; done",
            ],
        )
        .env("PLUMB_COLLECTOR", &api)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for(
        "the runs to reach the collector",
        Duration::from_secs(60),
        || {
            ({
                run_ids(&api, "train").len() == 2
                    && run_ids(&api, "flaky").len() == 1
                    && run_ids(&api, "pyfail").len() == 1
                    && run_ids(&api, "sleeper").len() == 1
                    && run_ids(&api, "%3Cscript%3Ealert(1)%3C%2Fscript%3E").len() == 1
            })
            .then_some(())
        },
    );
    let train = run_ids(&api, "train");
    let (newest_train, sleeper) = (train[0].clone(), run_ids(&api, "sleeper")[0].clone());

    // OTLP: a log line and a span attached to the newest train run.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let resource = serde_json::json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": "trainer"}},
        {"key": "plumb.run.id", "value": {"stringValue": newest_train}}]});
    let logs = serde_json::json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {},
        "logRecords": [{"timeUnixNano": now.to_string(), "severityNumber": 9, "severityText": "INFO",
                        "body": {"stringValue": "otlp dashword gamma"}},
                       {"timeUnixNano": (now - 700_000_000).to_string(), "severityNumber": 13,
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000c41d0",
                        "body": {"stringValue": "child <b>warned</b>"}}]}]}]});
    let (code, body) = http(
        &api,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        logs.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");
    let spans = serde_json::json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {},
        "spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                   "name": "epoch-span", "kind": 1, "startTimeUnixNano": (now - 2_000_000_000).to_string(),
                   "endTimeUnixNano": now.to_string(), "status": {}},
                  {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000c41d0",
                   "parentSpanId": "eee19b7ec3c1b174", "name": "epoch-child", "kind": 1,
                   "startTimeUnixNano": (now - 1_000_000_000).to_string(),
                   "endTimeUnixNano": (now - 500_000_000).to_string(), "status": {"code": 2}}]}]}]});
    let (code, body) = http(
        &api,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/json")],
        spans.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");

    // node-b stops: the detector takes it through suspect to down.
    wait_for("both agents to report", Duration::from_secs(30), || {
        ({
            let v = get_json(&api, "/api/v1/nodes");
            v.as_array().unwrap().len() == 3
        })
        .then_some(())
    });
    drop(b);
    wait_for("node-b to be down", Duration::from_secs(60), || {
        ({ get_json(&api, "/api/v1/nodes/node-b")["node"]["state"] == "down" }).then_some(())
    });

    // Nodes.
    let v = page(
        "nodes.mjs",
        &api,
        &out,
        serde_json::json!({"node": "node-b"}),
    );
    let rows = v["rows"].as_array().unwrap();
    let row = |n: &str| {
        rows.iter()
            .find(|r| r["node"] == n)
            .unwrap_or_else(|| panic!("no {n}: {v}"))
    };
    assert!(
        ["up", "busy"].contains(&row("node-a")["state"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(row("node-b")["state"], "down", "{v}");
    assert_eq!(row("node-odd")["marker"], true, "{v}");
    assert_eq!(row("node-a")["marker"], false, "{v}");
    assert_eq!(row("node-odd")["disks"], 1, "{v}");
    // node-a's agent measures its clock against the collector (the same
    // host: near zero); node-odd's reports came without an estimate.
    let clock = row("node-a")["clock"].as_str().unwrap();
    let ms: f64 = clock
        .strip_suffix(" ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("node-a's clock offset is {clock:?}: {v}"));
    assert!(ms.abs() < 50.0, "{v}");
    assert_eq!(row("node-odd")["clock"], "—", "{v}");
    assert!(
        strs(&v["headers"]).contains(&"Clock offset".to_string()),
        "{v}"
    );
    assert!(
        v["detail_url"].as_str().unwrap().ends_with("/nodes/node-b"),
        "{v}"
    );
    let history = strs(&v["history"]);
    assert!(
        history.contains(&"suspect".to_string()) && history.contains(&"down".to_string()),
        "node-b's history shows suspect then down: {v}"
    );

    // Runs.
    let v = page("runs.mjs", &api, &out, Value::Null);
    let names = strs(&v["names"]);
    assert!(
        names.contains(&"<script>alert(1)</script>".to_string()),
        "shown as text: {v}"
    );
    assert_eq!(v["script_tags_in_table"], 0, "{v}");
    assert!(
        v["live"].as_u64().unwrap() >= 1,
        "the running run has a live duration: {v}"
    );
    assert_eq!(
        v["focus_after_slash"], "q",
        "`/` focuses the search box: {v}"
    );
    assert_eq!(v["first_tab"], "Skip to content", "{v}");
    assert_eq!(
        strs(&v["failed_names"]),
        vec!["pyfail".to_string(), "flaky".into()],
        "{v}"
    );
    assert_eq!(
        strs(&v["failed_states"]),
        vec!["failed".to_string(), "failed".into()],
        "{v}"
    );
    let err = v["bad_query_error"].as_str().unwrap();
    assert!(err.contains("since:banana"), "{v}");
    assert_eq!(
        strs(&v["tag_names"]),
        vec!["train".to_string(), "train".into()],
        "{v}"
    );

    // One run, its diff, and a live tail.
    let v = page(
        "run.mjs",
        &api,
        &out,
        serde_json::json!({"run": newest_train, "live": sleeper}),
    );
    assert!(v["h1"].as_str().unwrap().starts_with("train"), "{v}");
    assert!(
        v["output"].as_str().unwrap().contains("dashword beta"),
        "{v}"
    );
    assert_eq!(v["kv"]["exit"], "code 0", "{v}");
    assert_eq!(v["kv"]["tag team"], "ml", "{v}");
    assert_eq!(
        strs(&v["spans"]),
        vec!["epoch-span".to_string(), "↳ epoch-child error".into()],
        "{v}"
    );
    assert!(
        v["diff_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/{newest_train}/diff")),
        "{v}"
    );
    assert!(
        !strs(&v["diff_keys"]).is_empty(),
        "the two runs' commands differ: {v}"
    );
    assert!(v["live_after"].as_u64() > v["live_before"].as_u64(), "{v}");
    drop(live);

    // The trace: from a span hit and from the run's spans, a waterfall in
    // tree order with the child's log record beneath it.
    let v = page(
        "trace.mjs",
        &api,
        &out,
        serde_json::json!({"run": newest_train, "span": "epoch-child"}),
    );
    assert_eq!(strs(&v["search_kinds"]), vec!["span".to_string()], "{v}");
    assert!(
        v["from_search"]
            .as_str()
            .unwrap()
            .ends_with("/traces/5b8efff798038103d269b633813fc60c#s00000000000c41d0"),
        "{v}"
    );
    assert_eq!(
        v["target"],
        format!("epoch-child run {}", &newest_train[..8]),
        "the span hit lands on its row: {v}"
    );
    assert!(
        v["from_run"]
            .as_str()
            .unwrap()
            .contains("/traces/5b8efff798038103d269b633813fc60c"),
        "{v}"
    );
    assert!(
        v["h1"]
            .as_str()
            .unwrap()
            .contains("5b8efff798038103d269b633813fc60c"),
        "{v}"
    );
    assert_eq!(
        strs(&v["rows"]),
        vec![
            format!("span:epoch-span run {}", &newest_train[..8]),
            format!("span:epoch-child run {}", &newest_train[..8]),
            "log:WARN child <b>warned</b>".into(),
        ],
        "{v}"
    );
    let bars = v["bars"].as_array().unwrap();
    let bar = |i: usize| (bars[i][0].as_f64().unwrap(), bars[i][1].as_f64().unwrap());
    assert_eq!(bar(0), (0.0, 100.0), "the root spans the waterfall: {v}");
    let (left, width) = bar(1);
    assert!(
        (left - 50.0).abs() < 1.0 && (width - 25.0).abs() < 1.0,
        "{v}"
    );
    assert!(v["dialogs"].as_array().unwrap().is_empty(), "{v}");

    // Errors: the Python exception is grouped (by the collector's grouping
    // task, about once a second) and links back to its run.
    let pyfail = run_ids(&api, "pyfail")[0].clone();
    wait_for(
        "the exception to be grouped",
        Duration::from_secs(30),
        || {
            ({
                get_json(&api, "/api/v1/errors")["groups"]
                    .as_array()
                    .is_some_and(|g| !g.is_empty())
            })
            .then_some(())
        },
    );
    let v = page("errors.mjs", &api, &out, Value::Null);
    let groups = v["groups"].as_array().unwrap();
    let g = groups
        .iter()
        .find(|g| g["error"].as_str().unwrap().contains("ValueError"))
        .unwrap_or_else(|| panic!("no ValueError group: {v}"));
    assert_eq!(groups.len(), 1, "only the exception makes a group: {v}");
    assert!(g["error"].as_str().unwrap().contains("dash boom"), "{v}");
    assert_eq!(g["status"], "new", "{v}");
    assert_eq!(g["count"], "1", "{v}");
    assert!(v["h1"].as_str().unwrap().starts_with("ValueError"), "{v}");
    assert_eq!(
        strs(&v["occurrence_links"]),
        vec![format!("/runs/{pyfail}")],
        "{v}"
    );

    // Search: output and OTLP log hits, linking into the run.
    let v = page(
        "search.mjs",
        &api,
        &out,
        serde_json::json!({"word": "dashword"}),
    );
    let lines = strs(&v["lines"]);
    assert!(lines.iter().any(|l| l == "dashword alpha"), "{v}");
    assert!(lines.iter().any(|l| l == "dashword beta"), "{v}");
    assert!(
        lines.iter().any(|l| l.contains("otlp dashword gamma")),
        "{v}"
    );
    let kinds = strs(&v["kinds"]);
    assert!(
        kinds.contains(&"log".to_string()) && kinds.contains(&"stdout".to_string()),
        "log records are their own kind: {v}"
    );
    let links = strs(&v["links"]);
    assert!(
        links
            .iter()
            .all(|l| l.starts_with("/runs/") && l.contains("#t")),
        "{v}"
    );
    assert!(v["landed"].as_str().unwrap().contains("/runs/"), "{v}");
    assert!(
        v["target_text"]
            .as_str()
            .is_some_and(|t| t.contains("dashword")),
        "the link lands on the line: {v}"
    );

    // Timeline: a request from lane-a and its answer from lane-b, whose
    // stamps (no agent measures its clock) put the receive 50 ms before
    // the send; the page shows one lane per host and, by causality, the
    // receive after the send, flagged as moved (`>`), the send as of an
    // order the unmeasured clocks cannot settle (`~`).
    for (host, at, body) in [
        ("lane-a", now, "GET /lanes plumb.msg.send=lq1"),
        (
            "lane-b",
            now - 50_000_000,
            "serving /lanes plumb.msg.recv=lq1",
        ),
    ] {
        let req = serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "lanes"}},
            {"key": "host.name", "value": {"stringValue": host}}]},
            "scopeLogs": [{"logRecords": [{"timeUnixNano": at.to_string(),
                "severityNumber": 9, "body": {"stringValue": body}}]}]}]});
        let (code, body) = http(
            &api,
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            req.to_string().as_bytes(),
        )
        .status_and_text();
        assert_eq!(code, 200, "{body}");
    }
    let v = page(
        "timeline.mjs",
        &api,
        &out,
        serde_json::json!({"grep": "/lanes plumb.msg.", "narrow": "GET /lanes"}),
    );
    assert_eq!(strs(&v["lanes"]), vec!["lane-a", "lane-b"], "{v}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["lane"], 0, "the send first, in lane-a: {v}");
    assert!(
        rows[0]["text"].as_str().unwrap().contains("send=lq1"),
        "{v}"
    );
    assert_eq!(rows[1]["lane"], 1, "the receive after it, in lane-b: {v}");
    assert!(
        rows[1]["text"].as_str().unwrap().contains("recv=lq1"),
        "{v}"
    );
    assert_eq!(rows[0]["flag"], "~", "{v}");
    assert_eq!(rows[1]["flag"], ">", "moved by causality: {v}");
    assert_eq!(v["narrowed"], 1, "{v}");
    assert!(v["url"].as_str().unwrap().contains("grep=GET"), "{v}");
    assert!(v["dialogs"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["console_errors"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn with_tokens_the_browser_logs_in_with_a_viewer_token() {
    require_tools();
    let out = out_dir("login");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("srv");
    let o = plumb_at(dir, &["token", "create", "--role", "viewer", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let server = Serve::start(&data);
    let api = server.api.clone();
    // Without the cookie or a header, the API refuses and pages redirect.
    let (code, _) = http(&api, "GET", "/api/v1/pages/nodes", &[], b"").status_and_text();
    assert_eq!(code, 401);
    let v = page("login.mjs", &api, &out, serde_json::json!({"token": token}));
    assert_eq!(v["redirected_to"], "/login", "{v}");
    assert!(
        v["bad_token_error"].as_str().unwrap().contains("not known"),
        "{v}"
    );
    assert_eq!(v["after_login"], "/nodes", "{v}");
    assert_eq!(v["h1"], "Nodes", "{v}");
}

#[test]
fn the_nodes_page_follows_node_changes_without_a_reload() {
    require_tools();
    let out = out_dir("nodes-live");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Serve::start(&dir.join("srv"));
    let api = server.api.clone();
    let mut calm = team_report("calm", "debian");
    let (code, body) = http(
        &api,
        "POST",
        "/api/v1/ingest/node",
        &[("Content-Type", "application/json")],
        calm.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");
    // Without the script the page is complete: the server renders the row.
    let (code, html) = http(&api, "GET", "/nodes", &[], b"").status_and_text();
    assert_eq!(code, 200);
    assert!(
        html.contains("<tr data-node=\"calm\">") && html.contains("st-up"),
        "{html}"
    );
    // Its next heartbeat carries a load of 5 per CPU: busy.
    calm["seq"] = 2.into();
    calm["cpu"]["load1"] = 20.0.into();
    let v = page(
        "nodes_live.mjs",
        &api,
        &out,
        serde_json::json!({
            "node": "calm",
            "busy_report": calm,
            "new_report": team_report("newcomer", "debian"),
        }),
    );
    assert_eq!(v["before"], "up", "{v}");
    assert_eq!(v["after"], "busy", "{v}");
    // The sparkline follows the heartbeat: the server drew it from the
    // first (load 0.25 on 4 CPUs), the refresh redrew it from the JSON twin's
    // `spark` (its highest load now 20, the top of the scale), still with
    // both lines.
    let (before, after) = (&v["spark_before"], &v["spark_after"]);
    let title = before["title"].as_str().unwrap();
    assert!(
        title.starts_with("load≤0.") && title.contains(" disk≤"),
        "the server's drawing: {v}"
    );
    assert!(
        after["title"].as_str().unwrap().starts_with("load≤20.0 "),
        "{v}"
    );
    assert_ne!(before["paths"][0], after["paths"][0], "{v}");
    assert_eq!(after["paths"].as_array().unwrap().len(), 2, "{v}");
    let load = after["paths"][0].as_str().unwrap();
    assert!(
        load.ends_with(" 0") || load.ends_with(" 0h.1"),
        "the newest load at the top: {v}"
    );
    assert!(v["new_spark"]["title"].is_string(), "{v}");
    assert_eq!(v["same_document"], true, "the page was reloaded: {v}");
    assert_eq!(v["loads"], 1, "{v}");
    assert_eq!(v["poll"], "/api/v1/pages/nodes", "{v}");
    assert!(v["refreshed"].is_string(), "{v}");
    assert_eq!(v["load_cell"], "20.00 / 4", "{v}");
    assert_eq!(v["new_disks"], 1, "{v}");
    assert_eq!(strs(&v["rows"]), ["calm", "newcomer"], "{v}");
    let counts = v["counts"].as_str().unwrap();
    assert!(
        counts.starts_with("2 nodes:") && counts.contains("up 1") && counts.contains("busy 1"),
        "{v}"
    );
}

#[test]
fn a_waiting_run_shows_on_the_dashboard_and_moves_on_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    let api = serve.api.clone();
    let release = dir.path().join("release");
    // Holds the only slot of throttle `t` until `release` exists (bounded).
    let mut holder = Proc(
        plumb_at(dir.path(), &[
                "run",
                "--throttle",
                "t=1",
                "--",
                "sh",
                "-c",
                &format!(
                    "echo holding; i=0; while [ ! -e '{}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
                    release.display()
                ),
            ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding");
    let mut queued = Proc(
        plumb_at(
            dir.path(),
            &[
                "run",
                "--throttle",
                "t=1",
                // The holder's slot is this host's (it has no collector);
                // with one, a throttle is fleet-wide unless said so.
                "--throttle-scope",
                "host",
                "--name",
                "queued",
                "--",
                "echo",
                "started",
            ],
        )
        .env("PLUMB_COLLECTOR", &api)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let state = || get_json(&api, "/api/v1/runs?name=queued")[0]["state"].clone();
    wait_for(
        "the waiting run to reach the collector",
        Duration::from_secs(30),
        || ({ state() == "waiting" }).then_some(()),
    );
    let id = run_ids(&api, "queued")[0].clone();
    let (code, list) = http(&api, "GET", "/runs?q=state%3Awaiting", &[], b"").status_and_text();
    assert_eq!(code, 200);
    assert!(
        list.contains("queued") && list.contains("st-waiting"),
        "{list}"
    );
    let (code, page) = http(&api, "GET", &format!("/runs/{id}"), &[], b"").status_and_text();
    assert_eq!(code, 200);
    assert!(page.contains("id=\"waiting\""), "{page}");
    assert!(page.contains("throttle `t` (all 1 held)"), "{page}");
    assert!(page.contains("data-live"), "{page}");

    std::fs::write(&release, b"").unwrap();
    wait_for(
        "the queued run to finish at the collector",
        Duration::from_secs(30),
        || ({ state() == "succeeded" }).then_some(()),
    );
    let run = &get_json(&api, &format!("/api/v1/runs/{id}"))["run"];
    assert_eq!(run["waiting"]["kind"], "throttle", "{run}");
    assert_eq!(run["waiting"]["ended"], run["started"], "{run}");
    let (_, page) = http(&api, "GET", &format!("/runs/{id}"), &[], b"").status_and_text();
    assert!(
        page.contains("<dt>waited</dt>") && !page.contains("data-live"),
        "{page}"
    );
    assert_eq!(queued.0.wait().unwrap().code(), Some(0));
    assert_eq!(holder.0.wait().unwrap().code(), Some(0));
}

#[test]
fn the_run_page_shows_the_whole_exception_chain_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    let api = serve.api.clone();
    std::fs::write(
        dir.path().join("chain.py"),
        "def load():\n    raise KeyError('<missing> & gone')\n\ntry:\n    load()\nexcept KeyError as e:\n    raise RuntimeError('config <broken>') from e\n",
    )
    .unwrap();
    record(dir.path(), &api, "chain", &[], "python3 chain.py");
    wait_for(
        "the failed run at the collector",
        Duration::from_secs(30),
        || ({ get_json(&api, "/api/v1/runs?name=chain")[0]["state"] == "failed" }).then_some(()),
    );
    let id = run_ids(&api, "chain")[0].clone();
    let run = &get_json(&api, &format!("/api/v1/runs/{id}"))["run"];
    assert_eq!(run["exception"]["causes"][0]["type"], "KeyError", "{run}");
    let (code, page) = http(&api, "GET", &format!("/runs/{id}"), &[], b"").status_and_text();
    assert_eq!(code, 200);
    let section = &page[page.find("id=\"h-exc\"").expect("an exception section")..];
    let section = &section[..section.find("</section>").unwrap()];
    // The cause first, then what it led to, as `plumb show` prints them.
    let cause = section
        .find("<strong>KeyError</strong>: &quot;&lt;missing&gt; &amp; gone&quot;")
        .or_else(|| section.find("<strong>KeyError</strong>: &#39;&lt;missing&gt; &amp; gone&#39;"))
        .or_else(|| {
            section.find("<strong>KeyError</strong>: &#x27;&lt;missing&gt; &amp; gone&#x27;")
        })
        .unwrap_or_else(|| panic!("the cause, escaped: {section}"));
    let led = section.find("which led to:").expect("which led to");
    let top = section
        .find("<strong>RuntimeError</strong>: config &lt;broken&gt;")
        .unwrap_or_else(|| panic!("the exception, escaped: {section}"));
    assert!(cause < led && led < top, "{section}");
    assert!(
        section.contains("at load (") && section.contains("chain.py:2)"),
        "{section}"
    );
    assert!(
        !section.contains("<broken>") && !section.contains("<missing>"),
        "{section}"
    );
}

/// Issue 22: the runs chart in a real browser: an SVG with a bar per
/// interval (as many as the JSON twin says), each a link; clicking one
/// narrows the list to exactly its runs. The job page draws a point per
/// run with the p50..p95 band; a run page rings its run.
#[test]
fn the_runs_chart_has_a_bar_per_interval_and_a_click_filters_the_list() {
    require_tools();
    let out = out_dir("charts");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("srv");
    let runs = seed_chart_runs(&data);
    let server = Serve::start(&data);
    let api = server.api.clone();
    let chart = get_json(&api, "/api/v1/pages/runs")["chart"].clone();
    let bars = chart["bars"].as_array().unwrap();
    let bar = bars
        .iter()
        .find(|b| b["total"].as_u64().unwrap() >= 2)
        .expect("a bar of two runs or more");
    let nightly: Vec<_> = runs.iter().filter(|r| r.name == "nightly").collect();
    // A node with two disks, for its charts.
    let (code, body) = http(
        &api,
        "POST",
        "/api/v1/ingest/node",
        &[("Content-Type", "application/json")],
        serde_json::json!({
            "version": 1, "node": "chart-node", "sent": 0, "seq": 1, "interval_ms": 5000,
            "cpu": {"load1": 1.5, "load5": 0.0, "load15": 0.0, "cpus": 4},
            "memory": {"total": 1000, "available": 400, "swap_total": 0, "swap_free": 0},
            "disks": [
                {"mount": "/", "fs_type": "ext4", "device": "/dev/a", "total": 100, "available": 40, "inodes_total": 0, "inodes_free": 0},
                {"mount": "/data", "fs_type": "ext4", "device": "/dev/b", "total": 100, "available": 90, "inodes_total": 0, "inodes_free": 0}
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");
    let node_charts = get_json(&api, "/api/v1/nodes/chart-node")["charts"].clone();
    let v = page(
        "charts.mjs",
        &api,
        &out,
        serde_json::json!({"start": bar["start"].to_string(), "run": nightly[2].id.to_string()}),
    );
    assert_eq!(v["svgs"], 1, "{v}");
    assert_eq!(v["bars"].as_u64().unwrap() as usize, bars.len(), "{v}");
    let non_empty = bars.iter().filter(|b| b["total"] != 0).count();
    assert_eq!(
        v["bar_links"].as_u64().unwrap() as usize,
        non_empty,
        "every bar with runs is a link: {v}"
    );
    assert!(v["title"].as_str().unwrap().starts_with("Runs per "), "{v}");
    let legend = strs(&v["legend"]);
    for s in ["succeeded", "failed", "killed", "evicted"] {
        assert!(legend.contains(&s.to_string()), "the legend names {s}: {v}");
    }
    assert_eq!(v["script_tags"], 0, "hostile names stay text: {v}");
    let hover = v["hover"].as_str().unwrap();
    assert!(
        hover.contains(&format!("{} runs", bar["total"])) && hover.contains("UTC"),
        "{v}"
    );
    let size = v["chart_box"].as_array().unwrap();
    assert!(
        size[0].as_u64().unwrap() >= 300 && size[1].as_u64().unwrap() >= 80,
        "{v}"
    );
    // The click.
    assert_eq!(
        v["rows_after_click"].as_u64().unwrap(),
        bar["total"].as_u64().unwrap(),
        "{v}"
    );
    let q = v["query_after_click"].as_str().unwrap();
    let start = plumb_model::Timestamp::from_nanos(bar["start"].as_i64().unwrap());
    assert!(
        q.contains(&format!("since:{}", start.to_rfc3339_secs())) && q.contains("until:"),
        "{v}"
    );
    assert!(v["bars_after_click"].as_u64().unwrap() >= 1, "{v}");
    // The job's history and the run page.
    assert_eq!(
        v["job_points"].as_u64().unwrap() as usize,
        nightly.len(),
        "{v}"
    );
    assert!(v["job_band"].as_str().unwrap().starts_with("p50 "), "{v}");
    assert!(v["job_days"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["run_current"], 1, "{v}");
    assert_eq!(v["run_job_link"], "/jobs/nightly", "{v}");
    // The node page: a series per line of its JSON twin, a hover dot per
    // point, and a sparkline on the nodes list.
    let disks = node_charts["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2, "{node_charts}");
    assert_eq!(v["node_series"], serde_json::json!([1, 1, 2]), "{v}");
    let points = |s: &Value| s.as_array().unwrap().len() as u64;
    assert_eq!(
        v["node_dots"],
        serde_json::json!([
            points(&node_charts["load"]),
            points(&node_charts["memory"]),
            disks.iter().map(|d| points(&d["points"])).sum::<u64>()
        ]),
        "{v}"
    );
    assert_eq!(v["node_sparks"], 1, "{v}");
    assert_eq!(v["status_charts"], 1, "/status renders: {v}");
}
