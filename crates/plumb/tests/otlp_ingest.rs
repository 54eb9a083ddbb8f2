//! OTLP ingest end to end: a real OpenTelemetry Python program under
//! `plumb run` exports to a real `plumb serve`, and `plumb search
//! --collector` finds its log lines attached to the run; acknowledged
//! records survive `kill -9` of the collector.
//!
//! Needs the OpenTelemetry Python SDK and OTLP/HTTP exporter
//! (`.ci/install-otlp.sh`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn python_has_otel() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// The test data of one OpenTelemetry test: a collector with OTLP and a
/// temporary directory for the rest.
fn otel_setup() -> (tempfile::TempDir, Serve) {
    assert!(
        python_has_otel(),
        "the OpenTelemetry Python SDK is missing: run .ci/install-otlp.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::builder()
        .data(&dir.path().join("collector"))
        .otlp()
        .start();
    (dir, serve)
}

/// `plumb run -- python3 otel_app.py MARKER` with its store in `home`,
/// exporting to `serve` as `service` (and shipping the run to `collector`
/// when given); asserts it succeeded.
fn run_app(
    serve: &Serve,
    home: &Path,
    marker: &str,
    service: &str,
    collector: Option<&str>,
) -> std::process::Output {
    let mut cmd = plumb();
    if let Some(url) = collector {
        cmd.env("PLUMB_COLLECTOR", url);
    }
    let out = cmd
        .args(["run", "--", "python3"])
        .arg(app())
        .arg(marker)
        .env("PLUMB_HOME", home)
        .env("PLUMB_SPOOL", home.join("spool"))
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", serve.otlp())
        .env("OTEL_SERVICE_NAME", service)
        .output()
        .unwrap();
    ok(out, "the instrumented program")
}

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/otel_app.py")
}

#[test]
fn python_otel_program_under_plumb_run_is_searchable_and_attached_to_its_run() {
    let (dir, serve) = otel_setup();
    let local = dir.path().join("local");
    let marker = format!("zq{}marker", std::process::id());
    let out = run_app(&serve, &local, &marker, "shop-test", None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent telemetry"));
    // The run as the local store recorded it.
    let ls = plumb()
        .args(["ls", "--local", "--json"])
        .env("PLUMB_HOME", &local)
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let run_id = runs[0]["id"]
        .as_str()
        .expect("one run recorded")
        .to_string();

    // The exporter acknowledged before the program exited, so the lines are
    // there now; allow a moment anyway for a loaded machine.
    let hits = wait_for(
        "the marker in the collector's search",
        Duration::from_secs(20),
        || {
            let out = plumb()
                .args(["search", "--collector", &serve.api, "--json", &marker])
                .env("PLUMB_HOME", &local)
                .output()
                .unwrap();
            let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            hits.as_array()
                .is_some_and(|a| !a.is_empty())
                .then_some(hits)
        },
    );
    let hits = hits.as_array().expect("search answered a list");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["kind"], "log", "a log record, not output: {hits:?}");
    assert_eq!(hits[0]["run_id"], run_id.as_str(), "attached to the run");
    assert_eq!(hits[0]["service"], "shop-test");
    assert_eq!(hits[0]["severity"], "WARN");
    let text = hits[0]["text"].as_str().unwrap();
    assert!(text.contains("WARN shop-test"), "{text}");
    assert!(text.contains("payment declined for order 42"), "{text}");
    assert!(text.contains("trace_id="), "logged inside a span: {text}");

    // Every log line and both spans, by run.
    let (status, logs) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run_id}/logs"),
        &[],
        b"",
    )
    .status_and_text();
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs.matches("line ").count(), 20, "{logs}");
    let (status, spans) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run_id}/spans"),
        &[],
        b"",
    )
    .status_and_text();
    assert_eq!(status, 200, "{spans}");
    assert!(
        spans.contains("\"checkout\"") && spans.contains("\"charge\""),
        "{spans}"
    );
    assert!(
        spans.contains("card declined"),
        "the exception event: {spans}"
    );
}

/// `plumb` with a clean environment reading `home` (or the collector).
fn output_in(home: &Path, args: &[&str]) -> std::process::Output {
    plumb()
        .args(args)
        .env("PLUMB_HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The position of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line holds `{needle}`:\n{text}"))
}

#[test]
fn telemetry_from_outside_any_run_is_its_own_kind_and_its_trace_is_shown() {
    let (dir, serve) = otel_setup();
    let data = serve.data.clone();
    let home = dir.path().join("home");
    let marker = format!("zq{}free", std::process::id());
    // The program runs on its own, not under `plumb run`.
    let out = Command::new("python3")
        .arg(app())
        .arg(&marker)
        .env_remove("PLUMB_RUN_ID")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", serve.otlp())
        .env("OTEL_SERVICE_NAME", "shop-free")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the instrumented program failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = serve.api.as_str();

    // The log record: kind `log`, its service and severity, no run.
    let found = output_in(&home, &["search", "--collector", api, "--json", &marker]);
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let hits: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["kind"], "log");
    assert_eq!(hits[0]["service"], "shop-free");
    assert_eq!(hits[0]["severity"], "WARN");
    assert!(
        hits[0].get("run_id").is_none(),
        "belongs to no run: {hits:?}"
    );
    let trace_id = hits[0]["trace_id"]
        .as_str()
        .expect("made in a span")
        .to_string();
    // As a table: the RUN column is empty, KIND says log.
    let table = stdout(&output_in(&home, &["search", "--collector", api, &marker]));
    let row = table.lines().next().unwrap();
    assert!(row.starts_with(&" ".repeat(18)), "RUN is empty: {row:?}");
    // Columns: time, host (this program names none), kind, service,
    // severity, message.
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["log", "shop-free", "WARN"], "{row:?}");
    assert!(row.contains("payment declined for order 42"), "{row:?}");
    // It is not program output, and `kind:log` finds it.
    let none = output_in(
        &home,
        &[
            "search",
            "--collector",
            api,
            &format!("kind:output {marker}"),
        ],
    );
    assert_eq!(none.status.code(), Some(1), "{}", stdout(&none));
    let logs = output_in(
        &home,
        &["search", "--collector", api, &format!("kind:log {marker}")],
    );
    assert_eq!(stdout(&logs), table);

    // Spans: by name, by service, by attribute, each naming its trace.
    let spans = |q: &str| -> Vec<String> {
        let o = output_in(
            &home,
            &[
                "search",
                "--collector",
                api,
                "--json",
                &format!("kind:span {q}"),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        assert_eq!(h["kind"], "span", "{h}");
                        assert_eq!(h["trace_id"], trace_id.as_str(), "{h}");
                        assert!(h.get("run_id").is_none(), "{h}");
                        h["name"].as_str().unwrap().to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(spans("charge"), ["charge"]);
    let mut by_service = spans("shop-free");
    by_service.sort();
    assert_eq!(by_service, ["charge", "checkout"]);
    assert_eq!(spans("order.id=42"), ["checkout"]);
    let row2 = stdout(&output_in(
        &home,
        &["search", "--collector", api, "kind:span charge"],
    ));
    assert!(
        row2.starts_with(&" ".repeat(18)) && row2.contains("  span  "),
        "{row2:?}"
    );
    assert!(
        row2.contains("error") && row2.contains(&format!("trace={trace_id}")),
        "{row2:?}"
    );

    // The trace by a prefix: the spans as a tree, each log record under
    // the span it was made in, in time order.
    let prefix = &trace_id[..10];
    let shown = output_in(&home, &["trace", "--collector", api, prefix]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = stdout(&shown);
    assert!(text.starts_with(&format!("trace {trace_id} ")), "{text}");
    assert!(text.contains("2 spans  2 log records"), "{text}");
    let checkout = line_of(&text, " checkout");
    let started = line_of(&text, "checkout started for order 42");
    let charge = line_of(&text, " charge");
    let declined = line_of(&text, "payment declined");
    assert!(
        checkout < started && started < charge && charge < declined,
        "{text}"
    );
    let depth = |l: usize, name: &str| {
        let line = text.lines().nth(l).unwrap();
        line[line.find(name).unwrap() - 2..].starts_with("  ") as usize
    };
    assert!(
        depth(charge, "charge") == 1 && text.lines().nth(charge).unwrap().contains("span  error"),
        "{text}"
    );
    assert!(
        text.lines().nth(declined).unwrap().contains("log   WARN"),
        "{text}"
    );
    // The same from the embedded store the collector writes.
    let local = output_in(&data, &["trace", "--local", prefix]);
    assert_eq!(
        stdout(&local),
        text,
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let json = output_in(&home, &["trace", "--collector", api, "--json", prefix]);
    let t: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(t["spans"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(t["logs"].as_array().unwrap().len(), 2, "{t}");
    // An unknown trace is "not found" (1), a malformed one trouble (2).
    assert_eq!(
        output_in(&home, &["trace", "--collector", api, "ffffffff"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        output_in(&home, &["trace", "--collector", api, "xyz"])
            .status
            .code(),
        Some(2)
    );

    // The dashboard's trace page: a waterfall with the parent's row first,
    // the log records beneath their spans.
    let (status, page) = http(api, "GET", &format!("/traces/{prefix}"), &[], b"").status_and_text();
    assert_eq!(status, 200, "{page}");
    let ids: Vec<String> = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["span_id"].as_str().unwrap().to_string(),
            )
        })
        .map(|(n, id)| format!("{n}={id}"))
        .collect();
    let row_at = |name: &str| {
        let id = ids
            .iter()
            .find_map(|x| x.strip_prefix(&format!("{name}=")))
            .unwrap();
        page.find(&format!("id=\"s{id}\""))
            .unwrap_or_else(|| panic!("no row for {name}: {page}"))
    };
    let at_declined = page
        .find("payment declined")
        .expect("the log record is shown");
    assert!(
        row_at("checkout") < row_at("charge") && row_at("charge") < at_declined,
        "{page}"
    );
    assert!(page.contains("class=\"waterfall\""), "{page}");

    // A record from Python's logging module through plumb.PlumbHandler,
    // outside any run, is a log record too, with its service and severity.
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let handler = Command::new("python3")
        .args([
            "-c",
            "import logging, plumb\n\
h = plumb.PlumbHandler(service_name='billing')\n\
log = logging.getLogger('billing')\n\
log.addHandler(h)\n\
log.error('invoice %s refused', __import__('sys').argv[1])\n\
assert h.flush(20), 'not sent'\n\
h.close()",
        ])
        .arg(&marker)
        .env("PYTHONPATH", &py)
        .env("PLUMB_COLLECTOR", api)
        .env("PLUMB_HOME", &home)
        .env_remove("PLUMB_RUN_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        handler.status.success(),
        "{}",
        String::from_utf8_lossy(&handler.stderr)
    );
    let found = output_in(
        &home,
        &["search", "--collector", api, "--json", "invoice", &marker],
    );
    let hits: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    assert_eq!(hits[0]["kind"], "log", "{hits}");
    assert_eq!(hits[0]["service"], "billing", "{hits}");
    assert_eq!(hits[0]["severity"], "ERROR", "{hits}");
    assert!(hits[0].get("run_id").is_none(), "{hits}");

    // A log record's text from the network is escaped on the terminal.
    let evil = serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "evil"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1764000000000000000",
            "severityNumber": 17, "body": {"stringValue": format!("{marker}x \u{1b}]0;owned\u{7}")}}]}]}]});
    let (status, body) = http(
        serve.otlp(),
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        evil.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(status, 200, "{body}");
    let shown = stdout(&output_in(
        &home,
        &["search", "--collector", api, &format!("{marker}x")],
    ));
    assert!(
        !shown.contains('\u{1b}') && shown.contains("\\u{1b}]0;owned"),
        "{shown:?}"
    );
    assert!(shown.contains("  log       evil ERROR "), "{shown:?}");
}

/// `plumb logs` of a run whose program sent log records: `--stream log`
/// shows only them, `--timestamps` shows them among the output by time,
/// labelled `log` with service and severity; plain `logs` is the output
/// alone, byte for byte.
#[test]
fn plumb_logs_shows_a_runs_log_records_as_their_own_kind() {
    let (dir, serve) = otel_setup();
    let home = dir.path().join("home");
    let marker = format!("zq{}logs", std::process::id());
    // The run itself is shipped to the collector too.
    let out = run_app(&serve, &home, &marker, "shop-logs", Some(&serve.api));
    let program_output = String::from_utf8_lossy(&out.stdout).into_owned();
    let run_id = program_output
        .lines()
        .find_map(|l| l.strip_prefix("plumb run id "))
        .expect("the program prints its run id")
        .trim()
        .to_string();
    let api = serve.api.as_str();
    wait_for("the run at the collector", Duration::from_secs(30), || {
        output_in(&home, &["show", "--collector", api, &run_id])
            .status
            .success()
            .then_some(())
    });
    let only = stdout(&output_in(
        &home,
        &["logs", "--collector", api, &run_id, "--stream", "log"],
    ));
    assert_eq!(only.lines().count(), 22, "{only}");
    assert!(
        only.lines()
            .any(|l| l.starts_with("shop-logs WARN payment declined for order 42")),
        "{only}"
    );
    let plain = stdout(&output_in(&home, &["logs", "--collector", api, &run_id]));
    assert!(!plain.contains("shop-logs"), "output only: {plain}");
    assert!(
        plain.contains(&format!("sent telemetry with {marker}")),
        "{plain}"
    );
    let all = stdout(&output_in(
        &home,
        &["logs", "--collector", api, &run_id, "-t"],
    ));
    let declined = line_of(&all, " log shop-logs WARN payment declined");
    let sent = line_of(&all, " stdout sent telemetry");
    assert!(declined < sent, "by time: logged before printing: {all}");
    assert_eq!(
        all.lines()
            .filter(|l| l.contains(" log shop-logs "))
            .count(),
        22,
        "{all}"
    );
}

#[test]
fn acknowledged_records_survive_kill_9_of_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut serve = Serve::builder().data(&data).otlp().start();
    let otlp = serve.otlp().to_string();
    let run = "0193a0f4-5b2c-7d3e-8f10-00000000beef";
    let mut acked = 0;
    for b in 0..20u64 {
        let records: Vec<String> = (0..500u64)
            .map(|i| {
                format!(
                    r#"{{"timeUnixNano":"{}","body":{{"stringValue":"batch {b} record {i}"}}}}"#,
                    1_764_000_000_000_000_000 + b * 1000 + i
                )
            })
            .collect();
        let body = format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"plumb.run.id","value":{{"stringValue":"{run}"}}}}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
            records.join(",")
        );
        let (status, text) = http(
            &otlp,
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .status_and_text();
        assert_eq!(status, 200, "{text}");
        acked += 500;
    }
    serve.kill9();
    let serve = Serve::builder().data(&data).otlp().start();
    let (status, logs) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run}/logs"),
        &[],
        b"",
    )
    .status_and_text();
    assert_eq!(status, 200);
    assert_eq!(
        logs.matches("record ").count(),
        acked,
        "every acknowledged record, once"
    );
    assert!(logs.contains("batch 19 record 499"));
}
