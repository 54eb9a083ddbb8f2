//! OTLP ingest end to end: a real OpenTelemetry Python program under
//! `plumb run` exports to a real `plumb serve`, and `plumb search
//! --collector` finds its log lines attached to the run; acknowledged
//! records survive `kill -9` of the collector.
//!
//! Needs the OpenTelemetry Python SDK and OTLP/HTTP exporter
//! (`.ci/install-otlp.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// A `plumb serve` child on free loopback ports, killed on drop.
struct Serve {
    child: Child,
    api: String,
    otlp: String,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        let mut child = Command::new(PLUMB)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--otlp-listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(data)
            .env("PLUMB_HOME", data)
            .env_remove("PLUMB_COLLECTOR")
            .env_remove("PLUMB_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("plumb serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut api, mut otlp) = (String::new(), String::new());
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["api", url] => api = url.to_string(),
                ["otlp", url] => otlp = url.to_string(),
                other => panic!("unexpected plumb serve output {other:?}"),
            }
        }
        assert!(!api.is_empty() && !otlp.is_empty());
        Serve { child, api, otlp }
    }

    fn kill9(mut self) {
        kill_9(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// One HTTP/1.1 request over a fresh loopback connection: (status, body).
fn http(base: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Bodies of these small answers may come chunked; the tests only
    // look for substrings, which chunk framing does not break up here.
    (status, body)
}

fn python_has_otel() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/otel_app.py")
}

#[test]
fn python_otel_program_under_plumb_run_is_searchable_and_attached_to_its_run() {
    assert!(
        python_has_otel(),
        "the OpenTelemetry Python SDK is missing: run .ci/install-otlp.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("collector"));
    let local = dir.path().join("local");
    let marker = format!("zq{}marker", std::process::id());
    let out = Command::new(PLUMB)
        .args(["run", "--", "python3"])
        .arg(app())
        .arg(&marker)
        .env("PLUMB_HOME", &local)
        .env("PLUMB_SPOOL", dir.path().join("spool"))
        .env_remove("PLUMB_COLLECTOR")
        .env_remove("PLUMB_CONFIG")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &serve.otlp)
        .env("OTEL_SERVICE_NAME", "shop-test")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the instrumented program failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent telemetry"));
    // The run as the local store recorded it.
    let ls = Command::new(PLUMB)
        .args(["ls", "--local", "--json"])
        .env("PLUMB_HOME", &local)
        .env_remove("PLUMB_COLLECTOR")
        .env_remove("PLUMB_CONFIG")
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let hits = loop {
        let out = Command::new(PLUMB)
            .args(["search", "--collector", &serve.api, "--json", &marker])
            .env("PLUMB_HOME", &local)
            .env_remove("PLUMB_CONFIG")
            .output()
            .unwrap();
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if hits.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break hits;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let hits = hits.as_array().expect("search answered a list");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["run_id"], run_id.as_str(), "attached to the run");
    let text = hits[0]["text"].as_str().unwrap();
    assert!(text.contains("WARN shop-test"), "{text}");
    assert!(text.contains("payment declined for order 42"), "{text}");
    assert!(text.contains("trace_id="), "logged inside a span: {text}");

    // Every log line and both spans, by run.
    let (status, logs) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run_id}/logs"),
        "application/json",
        b"",
    );
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs.matches("line ").count(), 20, "{logs}");
    let (status, spans) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run_id}/spans"),
        "application/json",
        b"",
    );
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

#[test]
fn acknowledged_records_survive_kill_9_of_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let serve = Serve::start(&data);
    let otlp = serve.otlp.clone();
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
            "application/json",
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
        acked += 500;
    }
    serve.kill9();
    let serve = Serve::start(&data);
    let (status, logs) = http(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run}/logs"),
        "application/json",
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        logs.matches("record ").count(),
        acked,
        "every acknowledged record, once"
    );
    assert!(logs.contains("batch 19 record 499"));
}
