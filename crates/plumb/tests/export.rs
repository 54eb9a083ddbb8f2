//! OTLP export end to end: a real `plumb serve` with `[export] otlp` in its
//! plumb.toml forwards what it accepts to a receiver built on the
//! OpenTelemetry project's own protobuf definitions (tests/export/
//! receiver.py, the `opentelemetry-proto` Python package), which writes
//! every record it decoded as a JSON line.
//!
//! Needs the OpenTelemetry Python SDK (`.ci/install-otlp.sh`).
//!
//! Records may arrive twice (a batch sent again after a restart); the checks
//! deduplicate by id: a span by its span id, an output line by its
//! `plumb.record.id`, an SDK log record by its time and body, a data point
//! by its metric, node and time.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn receiver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export/receiver.py")
}

/// The receiver on `port`, appending to `out`; killed on drop.
struct Receiver {
    _proc: Proc,
}

impl Receiver {
    fn start(port: u16, out: &Path) -> Receiver {
        let ok = Command::new("python3")
            .args([
                "-c",
                "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the opentelemetry-proto Python package is missing: run .ci/install-otlp.sh"
        );
        let mut child = Command::new("python3")
            .arg(receiver_script())
            .arg(port.to_string())
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), format!("listening {port}"), "receiver start");
        Receiver { _proc: Proc(child) }
    }
}

/// Every record the receiver wrote so far.
/// Every record the receiver wrote so far (a last line still being
/// written is left for the next look).
fn received(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("the receiver writes JSON lines"))
        .collect()
}

fn of<'a>(records: &'a [Value], signal: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["signal"] == signal).collect()
}

fn plumb_toml(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("plumb.toml");
    std::fs::write(
        &path,
        format!(
            "[export]\notlp = \"http://127.0.0.1:{port}\"\nheaders = {{ authorization = \"Bearer exp-7f3a\" }}\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A metric's value in the collector's /metrics (sum over its series that
/// contain `labels`), 0 when absent.
fn metric(serve: &Serve, name: &str, labels: &str) -> f64 {
    let text = serve.get("/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split([' ', '{']).next() == Some(name) && (labels.is_empty() || l.contains(labels))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`wait_for`], saying what was there at the end when it times out.
fn wait_for_or<T>(
    what: &str,
    timeout: Duration,
    state: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_serve(data: &Path, port: u16, config: &Path) -> Serve {
    Serve::builder()
        .data(data)
        .port(port)
        .otlp()
        .env("PLUMB_CONFIG", config)
        .start()
}

#[test]
fn runs_output_sdk_telemetry_and_heartbeats_reach_the_receiver_across_outages_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let rport = free_port();
    let config = plumb_toml(dir.path(), rport, "");
    let cport = free_port();
    let data = dir.path().join("collector");
    // The receiver is down from the start.
    let mut serve = start_serve(&data, cport, &config);

    // A failing run with output on both streams, shipped by `plumb run`.
    let home = dir.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    let script =
        "for i in 1 2 3 4 5; do echo \"out line $i\"; echo \"err line $i\" >&2; done; exit 3";
    let run = plumb_in(&home)
        .env("PLUMB_COLLECTOR", &serve.api)
        .args([
            "run", "--name", "exp-job", "--tag", "team=ml", "--", "sh", "-c", script,
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "plumb run passes the exit on");
    // A succeeding one.
    ok(
        plumb_in(&home)
            .env("PLUMB_COLLECTOR", &serve.api)
            .args(["run", "--name", "exp-ok", "--", "echo", "all good"])
            .output()
            .unwrap(),
        "plumb run echo",
    );
    // OTLP logs and spans from the OpenTelemetry SDK.
    let marker = format!("exp{}marker", std::process::id());
    ok(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/otel_app.py"))
            .arg(&marker)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", serve.otlp())
            .env("OTEL_SERVICE_NAME", "shop-export")
            .env_remove("OTEL_RESOURCE_ATTRIBUTES")
            .output()
            .unwrap(),
        "the OpenTelemetry program",
    );
    // An OTLP/JSON request: forwarded as protobuf.
    let json = br#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeLogs":[{"logRecords":[{"timeUnixNano":"1764000000000000000",
        "severityNumber":9,"body":{"stringValue":"sent as json"}}]}]}]}"#;
    let a = http(
        serve.otlp(),
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let json = br#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeMetrics":[{"metrics":[{"name":"json.gauge","gauge":{"dataPoints":[
        {"timeUnixNano":"1764000000000000000","asDouble":2.5}]}}]}]}]}"#;
    let a = http(
        serve.otlp(),
        "POST",
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // Heartbeats from a real agent.
    let agent = Agent::start(
        &dir.path().join("agent"),
        &serve.api,
        "node-exp",
        "200ms",
        &[],
    );
    wait_for("two heartbeats queued", Duration::from_secs(30), || {
        (metric(&serve, "plumb_ingest_requests_total", "endpoint=\"node\"") >= 2.0).then_some(())
    });
    drop(agent);
    let runs = serve.get_json("/api/v1/runs");
    let runs = runs.as_array().expect("runs list");
    let id_of = |name: &str| {
        runs.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("run {name} in {runs:?}"))
            .to_string()
    };
    let (failed_id, ok_id) = (id_of("exp-job"), id_of("exp-ok"));

    // Nothing is lost while the receiver is down: it waits on disk and the
    // failures are retried.
    wait_for("export retries", Duration::from_secs(30), || {
        (metric(&serve, "plumb_export_retries_total", "") >= 1.0).then_some(())
    });
    let queued = metric(&serve, "plumb_export_queue_entries", "");
    assert!(queued >= 5.0, "queued entries: {queued}");
    assert!(metric(&serve, "plumb_export_queue_bytes", "") > 0.0);
    // The collector dies (no clean shutdown) and comes back.
    serve.kill9();
    let serve = start_serve(&data, cport, &config);
    let _receiver = Receiver::start(rport, &out);

    let expect_lines: BTreeSet<(String, String)> = (1..=5)
        .flat_map(|i| {
            [
                ("stdout".to_string(), format!("out line {i}")),
                ("stderr".to_string(), format!("err line {i}")),
            ]
        })
        .chain([("stdout".to_string(), "all good".to_string())])
        .collect();
    let last = std::cell::RefCell::new(String::new());
    let records = wait_for_or(
        "every record at the receiver",
        Duration::from_secs(60),
        || last.borrow().clone(),
        || {
            let r = received(&out);
            let spans = of(&r, "span");
            let have_runs = [&failed_id, &ok_id].iter().all(|id| {
                spans
                    .iter()
                    .any(|s| s["attributes"]["plumb.run.id"].as_str() == Some(id.as_str()))
            });
            let lines: BTreeSet<_> = of(&r, "log")
                .iter()
                .filter(|l| l["attributes"]["plumb.record.id"].is_string())
                .map(|l| {
                    (
                        l["attributes"]["plumb.stream"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                        l["body"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let sdk_logs = of(&r, "log")
                .iter()
                .filter(|l| l["resource"]["service.name"] == "shop-export")
                .count();
            let sdk_spans = spans
                .iter()
                .filter(|s| s["resource"]["service.name"] == "shop-export")
                .count();
            let beats = of(&r, "metric")
                .iter()
                .filter(|m| m["resource"]["host.name"] == "node-exp")
                .count();
            *last.borrow_mut() = format!(
                "runs {have_runs}, sdk logs {sdk_logs}, sdk spans {sdk_spans}, beats {beats}, lines {lines:?}"
            );
            let json = of(&r, "log").iter().any(|l| l["body"] == "sent as json")
                && of(&r, "metric")
                    .iter()
                    .any(|m| m["name"] == "json.gauge" && m["value"] == 2.5);
            (have_runs
                && lines == expect_lines
                && sdk_logs >= 22
                && sdk_spans >= 2
                && beats > 0
                && json)
                .then_some(r)
        },
    );

    // Every request carried the configured header.
    for r in &records {
        assert_eq!(r["authorization"], "Bearer exp-7f3a", "{r}");
    }

    // Runs: one span each (deduplicated by span id), ids from the run id.
    let mut run_spans: BTreeMap<String, &Value> = BTreeMap::new();
    for s in of(&records, "span") {
        if s["scope"] == "plumb" {
            run_spans.insert(s["span_id"].as_str().unwrap().to_string(), s);
        }
    }
    assert_eq!(run_spans.len(), 2, "{run_spans:?}");
    let failed = run_spans
        .values()
        .find(|s| s["attributes"]["plumb.run.id"] == failed_id.as_str())
        .unwrap();
    assert_eq!(failed["name"], "exp-job");
    assert_eq!(failed["trace_id"], failed_id.replace('-', ""));
    assert_eq!(failed["span_id"], failed_id.replace('-', "")[16..]);
    assert_eq!(failed["status_code"], 2, "ERROR: {failed}");
    assert!(
        failed["status_message"]
            .as_str()
            .unwrap()
            .contains("exit 3"),
        "{failed}"
    );
    assert_eq!(failed["attributes"]["process.exit.code"], 3);
    assert_eq!(failed["attributes"]["plumb.tag.team"], "ml");
    assert_eq!(failed["attributes"]["plumb.run.state"], "failed");
    assert!(
        failed["attributes"]["process.command_line"]
            .as_str()
            .unwrap()
            .starts_with("sh -c")
    );
    assert!(
        failed["attributes"]["plumb.fingerprint"].is_string(),
        "{failed}"
    );
    assert!(failed["end"].as_u64().unwrap() >= failed["start"].as_u64().unwrap());
    let host = failed["resource"]["host.name"].as_str().unwrap();
    assert!(!host.is_empty());
    let good = run_spans
        .values()
        .find(|s| s["attributes"]["plumb.run.id"] == ok_id.as_str())
        .unwrap();
    assert_eq!(good["status_code"], 1, "OK: {good}");
    assert_eq!(good["attributes"]["process.exit.code"], 0);

    // Output: exactly the lines printed, each once after deduplication,
    // tied to its run's trace.
    let mut lines: BTreeMap<String, &Value> = BTreeMap::new();
    for l in of(&records, "log") {
        if let Some(id) = l["attributes"]["plumb.record.id"].as_str() {
            lines.insert(id.to_string(), l);
        }
    }
    assert_eq!(lines.len(), expect_lines.len(), "{lines:?}");
    for l in lines.values() {
        let run = l["attributes"]["plumb.run.id"].as_str().unwrap();
        assert_eq!(l["trace_id"], run.replace('-', ""), "{l}");
        let stream = l["attributes"]["plumb.stream"].as_str().unwrap();
        let want = if stream == "stderr" { "WARN" } else { "INFO" };
        assert_eq!(l["severity_text"], want, "{l}");
        assert!(l["time"].as_u64().unwrap() > 0);
    }

    // The SDK's log records, as it sent them: 22 distinct, with their trace
    // ids; its two spans.
    let sdk: BTreeSet<(u64, String)> = of(&records, "log")
        .iter()
        .filter(|l| l["resource"]["service.name"] == "shop-export")
        .map(|l| {
            (
                l["time"].as_u64().unwrap(),
                l["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(sdk.len(), 22, "{sdk:?}");
    assert!(sdk.iter().any(|(_, b)| b.contains(&marker)), "{sdk:?}");
    let declined = of(&records, "log")
        .into_iter()
        .find(|l| l["body"].as_str().is_some_and(|b| b.contains(&marker)))
        .unwrap();
    assert_eq!(declined["trace_id"].as_str().unwrap().len(), 32);
    let names: BTreeSet<&str> = of(&records, "span")
        .iter()
        .filter(|s| s["resource"]["service.name"] == "shop-export")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["charge", "checkout"]));

    // Heartbeats: gauges of the node.
    let beats: Vec<&Value> = of(&records, "metric")
        .into_iter()
        .filter(|m| m["resource"]["host.name"] == "node-exp")
        .collect();
    let metric_names: BTreeSet<&str> = beats.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for n in [
        "plumb.node.load1",
        "plumb.node.memory.available",
        "plumb.node.cpus",
    ] {
        assert!(
            metric_names.contains(n),
            "{n} missing from {metric_names:?}"
        );
    }
    assert!(beats.iter().all(|m| m["kind"] == "gauge"));
    let mem = beats
        .iter()
        .find(|m| m["name"] == "plumb.node.memory.total")
        .unwrap();
    assert!(mem["value"].as_f64().unwrap() > 0.0, "{mem}");

    // The collector counts what it sent, and nothing dropped.
    wait_for("the queue to empty", Duration::from_secs(30), || {
        (metric(&serve, "plumb_export_queue_entries", "") == 0.0).then_some(())
    });
    assert!(metric(&serve, "plumb_export_sent_total", "signal=\"traces\"") >= 4.0);
    assert_eq!(
        metric(&serve, "plumb_export_dropped_entries_total", ""),
        0.0
    );
    assert_eq!(metric(&serve, "plumb_export_rejected_total", ""), 0.0);
    promtool_ok(&serve.get("/metrics").unwrap());
}

#[test]
fn a_receiver_refusing_with_400_drops_the_batch_and_the_drop_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    std::fs::write(dir.path().join("received.jsonl.status"), "400").unwrap();
    let rport = free_port();
    let _receiver = Receiver::start(rport, &out);
    let config = plumb_toml(dir.path(), rport, "");
    let serve = start_serve(&dir.path().join("collector"), free_port(), &config);
    let (_, frames, _) = spooled_run("refused", 10);
    let a = http(
        &serve.api,
        "POST",
        "/api/v1/ingest/spool",
        &[("Content-Type", "application/x-plumb-spool")],
        &frames.bytes,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    wait_for("the refusal counted", Duration::from_secs(30), || {
        (metric(&serve, "plumb_export_rejected_total", "signal=\"logs\"") == 10.0
            && metric(&serve, "plumb_export_rejected_total", "signal=\"traces\"") == 1.0)
            .then_some(())
    });
    // Dropped, not retried: the queue is empty and nothing was resent.
    assert_eq!(metric(&serve, "plumb_export_retries_total", ""), 0.0);
    assert_eq!(metric(&serve, "plumb_export_queue_entries", ""), 0.0);
    assert!(received(&out).is_empty());
    let log = wait_for("the refusal logged", Duration::from_secs(10), || {
        let l = serve.log_text();
        l.contains("refused a batch").then_some(l)
    });
    assert!(log.contains("400"), "{log}");
}

#[test]
fn a_full_queue_drops_its_oldest_entries_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let rport = free_port();
    let config = plumb_toml(dir.path(), rport, "queue_max_mib = 1\n");
    let serve = start_serve(&dir.path().join("collector"), free_port(), &config);
    // Receiver down; far more than 1 MiB of runs.
    let mut last = None;
    let mut sent = 0;
    for i in 0..150 {
        let (run, frames, _) = spooled_run(&format!("bulk{i}"), 2000);
        sent += frames.bytes.len();
        let a = http(
            &serve.api,
            "POST",
            "/api/v1/ingest/spool",
            &[("Content-Type", "application/x-plumb-spool")],
            &frames.bytes,
        );
        assert_eq!(a.status, 200, "{}", a.text());
        last = Some(run);
    }
    assert!(sent > 2 << 20, "sent only {sent} bytes");
    let dropped = wait_for("drops counted", Duration::from_secs(30), || {
        let d = metric(
            &serve,
            "plumb_export_dropped_entries_total",
            "reason=\"queue_full\"",
        );
        (d > 0.0).then_some(d)
    });
    assert!(dropped < 150.0, "dropped {dropped}");
    let bytes = metric(&serve, "plumb_export_queue_bytes", "");
    assert!(
        bytes <= f64::from(1 << 20) + 256.0 * 1024.0,
        "queue bytes {bytes}"
    );
    assert!(serve.log_text().contains("export queue full"));
    // The newest runs are still sent once the receiver is up; the oldest
    // are not.
    let _receiver = Receiver::start(rport, &out);
    let last = last.unwrap().id.to_string();
    wait_for(
        "the newest run at the receiver",
        Duration::from_secs(60),
        || {
            of(&received(&out), "span")
                .iter()
                .any(|s| s["attributes"]["plumb.run.id"] == last.as_str())
                .then_some(())
        },
    );
    wait_for("the queue to empty", Duration::from_secs(30), || {
        (metric(&serve, "plumb_export_queue_entries", "") == 0.0).then_some(())
    });
    let spans = of(&received(&out), "span")
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .len() as f64;
    // Drops counted while the last posts were still being written count too.
    let dropped = metric(
        &serve,
        "plumb_export_dropped_entries_total",
        "reason=\"queue_full\"",
    );
    assert!(dropped < 150.0, "dropped {dropped}");
    assert_eq!(
        spans + dropped,
        150.0,
        "every run is either sent or counted as dropped"
    );
}

#[test]
fn bad_export_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let cases = [
        ("[export]\notlp = \"otel:4318\"\n", "[export] otlp"),
        ("[export]\notlp = \"http://x:1\"\nqueue = 3\n", "queue"),
        (
            "[export]\notlp = \"http://x:1\"\nheaders = { \"a b\" = \"c\" }\n",
            "headers",
        ),
    ];
    for (toml, named) in cases {
        let path = dir.path().join("plumb.toml");
        std::fs::write(&path, toml).unwrap();
        let out = plumb_in(&dir.path().join("data"))
            .env("PLUMB_CONFIG", &path)
            .args(["serve", "--listen", "127.0.0.1:0", "--otlp-listen", "off"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml}");
        let err = text(&out.stderr);
        assert!(err.contains(named), "{toml}: {err}");
    }
    let out = plumb_in(&dir.path().join("data"))
        .env_remove("PLUMB_CONFIG")
        .env("PLUMB_EXPORT_OTLP", "udp://x")
        .args(["serve", "--listen", "127.0.0.1:0", "--otlp-listen", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PLUMB_EXPORT_OTLP"),
        "{}",
        text(&out.stderr)
    );
}
