//! OTLP ingest against a real collector on a loopback port, through HTTP.

use crate::{CollectorConfig, Handle, Role};
use std::io::Write;

const RUN: &str = "0193a0f4-5b2c-7d3e-8f10-123456789abc";

fn logs_json(body: &str, t0: u64, n: u64) -> String {
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"timeUnixNano":"{}","severityNumber":9,"body":{{"stringValue":"{body} {i}"}}}}"#,
                t0 + i
            )
        })
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"shop"}}}},
            {{"key":"host.name","value":{{"stringValue":"web-1"}}}},
            {{"key":"plumb.run.id","value":{{"stringValue":"{RUN}"}}}}]}},
          "scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
}

const TRACES: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}},
    {"key":"plumb.run.id","value":{"stringValue":"0193a0f4-5b2c-7d3e-8f10-123456789abc"}}]},
  "scopeSpans":[{"spans":[
    {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"checkout",
     "kind":2,"startTimeUnixNano":"1764000000000000000","endTimeUnixNano":"1764000000200000000"}]}]}]}"#;

struct Reply {
    status: u16,
    headers: plumb_http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn client(h: &Handle) -> plumb_http::Client {
    plumb_http::Client::new(&plumb_http::Config {
        max_body: 64 << 20,
        ..plumb_http::Config::new(h.url())
    })
    .unwrap()
}

fn reply(r: plumb_http::Response) -> Reply {
    Reply {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

fn post(h: &Handle, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let c = client(h);
    let mut req = c.post(path).body(body);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    reply(req.send_any().expect("request reaches the collector"))
}

fn get(h: &Handle, path: &str, token: Option<&str>) -> Reply {
    let c = client(h);
    let mut req = c.get(path);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    reply(req.send_any().expect("request reaches the collector"))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

fn run_logs(h: &Handle) -> Vec<serde_json::Value> {
    let r = get(h, &format!("/api/v1/telemetry/runs/{RUN}/logs"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn logs_and_spans_in_json_and_protobuf_are_stored_once_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let h = crate::spawn(CollectorConfig::new(std::sync::Arc::new(
        plumb_store::SqliteConnector::new(dir.path()),
    )))
    .unwrap();
    let body = logs_json("order shipped", 1_764_000_000_000_000_000, 50);
    let r = post(&h, "/v1/logs", &[JSON], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"{}");
    assert_eq!(r.headers["content-type"], "application/json");
    // The same records again, as gzip-compressed protobuf: a retry.
    let pb = plumb_otlp::logs_json_to_protobuf(body.as_bytes()).unwrap();
    let r = post(
        &h,
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gzip(&pb),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let lines = run_logs(&h);
    assert_eq!(lines.len(), 50, "a retried request stores nothing twice");
    assert!(
        lines[7]["text"]
            .as_str()
            .unwrap()
            .contains("INFO shop@web-1 order shipped 7")
    );

    let tr = plumb_otlp::traces_json_to_protobuf(TRACES.as_bytes()).unwrap();
    let r = post(&h, "/v1/traces", &[PROTOBUF], &tr);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&h, &format!("/api/v1/telemetry/runs/{RUN}/spans"), None);
    let spans: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "checkout");
    assert_eq!(spans[0]["kind"], "server");

    // Search goes through the store's one search, which covers log lines.
    let r = get(&h, "/api/v1/search?text=shipped%2042", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("order shipped 42"), "{}", r.text());

    let metrics = get(&h, "/metrics", None).text();
    assert!(
        metrics.contains("endpoint=\"otlp_logs\""),
        "ingest is counted: {metrics}"
    );
}

#[test]
fn partial_success_names_what_was_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = crate::spawn(CollectorConfig::new(std::sync::Arc::new(
        plumb_store::SqliteConnector::new(dir.path()),
    )))
    .unwrap();
    let body = logs_json("ok", 1_764_000_000_000_000_000, 3).replace(
        r#""severityNumber":9,"#,
        r#""severityNumber":9,"traceId":"00ff","#,
    );
    let r = post(&h, "/v1/logs", &[JSON], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 3);
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace_id has 2 bytes")
    );
}

#[test]
fn malformed_bodies_get_4xx_naming_the_problem_and_harm_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = crate::spawn(CollectorConfig::new(std::sync::Arc::new(
        plumb_store::SqliteConnector::new(dir.path()),
    )))
    .unwrap();
    let good = logs_json("kept", 1_764_000_000_000_000_000, 10);
    assert_eq!(post(&h, "/v1/logs", &[JSON], good.as_bytes()).status, 200);
    let pb = plumb_otlp::logs_json_to_protobuf(good.as_bytes()).unwrap();
    let huge = vec![b' '; super::MAX_BODY + 1];
    // (path, headers, body, expected status, words the error must contain)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/v1/logs",
            vec![PROTOBUF],
            pb[..pb.len() - 7].to_vec(),
            400,
            "not a protobuf ExportLogsServiceRequest",
        ),
        (
            "/v1/traces",
            vec![JSON],
            b"{\"resourceSpans\": [".to_vec(),
            400,
            "not an OTLP JSON ExportTraceServiceRequest",
        ),
        (
            "/v1/logs",
            vec![JSON],
            br#"{"resourceLogs":{"a":1}}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "/v1/metrics",
            vec![JSON],
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":5}]}]}]}"#.to_vec(),
            400,
            "invalid type",
        ),
        ("/v1/logs", vec![JSON], huge, 413, "limit"),
        (
            "/v1/logs",
            vec![("Content-Type", "text/plain")],
            good.as_bytes().to_vec(),
            415,
            "text/plain",
        ),
        (
            "/v1/logs",
            vec![JSON, ("Content-Encoding", "gzip")],
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            400,
            "gzip",
        ),
        (
            "/v1/logs",
            vec![JSON, ("Content-Encoding", "br")],
            good.as_bytes().to_vec(),
            415,
            "`br`",
        ),
    ];
    for (path, headers, body, status, needle) in cases {
        let r = post(&h, path, &headers, &body);
        assert_eq!(r.status, status, "{path} {headers:?}: {}", r.text());
        assert!(
            r.text().contains(needle),
            "{path} {headers:?}: `{}` lacks `{needle}`",
            r.text()
        );
    }
    // A protobuf request's error is a protobuf google.rpc.Status.
    let r = post(&h, "/v1/logs", &[PROTOBUF], b"\xff\xff\xff");
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    // Still serving, and what was stored is intact.
    assert_eq!(get(&h, "/healthz", None).status, 200);
    let lines = run_logs(&h);
    assert_eq!(lines.len(), 10);
    assert!(lines[9]["text"].as_str().unwrap().ends_with("kept 9"));
}

#[test]
fn ingest_needs_an_agent_token_and_queries_a_viewer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_token, viewer_token) = {
        let store = plumb_store::Store::open(dir.path()).unwrap();
        (
            crate::auth::create_token(&store, Role::Agent, "a").unwrap(),
            crate::auth::create_token(&store, Role::Viewer, "v").unwrap(),
        )
    };
    let h = crate::spawn(CollectorConfig::new(std::sync::Arc::new(
        plumb_store::SqliteConnector::new(dir.path()),
    )))
    .unwrap();
    let body = logs_json("secret", 1_764_000_000_000_000_000, 2);
    let r = post(&h, "/v1/logs", &[JSON], body.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    let viewer = format!("Bearer {viewer_token}");
    let r = post(
        &h,
        "/v1/logs",
        &[JSON, ("Authorization", &viewer)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let agent = format!("Bearer {agent_token}");
    let r = post(
        &h,
        "/v1/logs",
        &[JSON, ("Authorization", &agent)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let path = format!("/api/v1/telemetry/runs/{RUN}/logs");
    assert_eq!(get(&h, &path, None).status, 401);
    assert_eq!(get(&h, &path, Some(&agent_token)).status, 403);
    let r = get(&h, &path, Some(&viewer_token));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("secret 1"));
}
