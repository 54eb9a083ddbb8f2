//! A busy store gets the same answer on every ingesting endpoint: while
//! another process holds the collector's SQLite database (`BEGIN
//! EXCLUSIVE` on its file, as a backup or a `plumb` command on the same
//! store would), spool, node, OTLP log and OTLP trace ingest answer 503
//! with Retry-After; once the lock is released the retried request is
//! stored, and nothing stored before is lost or damaged.

mod support;

use plumb_model::{Timestamp, new_id};
use support::*;

/// A collector whose writer gives up on a held database after 300 ms
/// rather than the default 30 s, so the test sees the busy answer quickly.
fn collector() -> Serve {
    Serve::builder()
        .otlp()
        .args(["--busy-timeout", "300ms"])
        .start()
}

/// Holds the collector's database with `BEGIN EXCLUSIVE` from another
/// connection until dropped.
struct Held(rusqlite::Connection);

impl Held {
    fn new(serve: &Serve) -> Held {
        let c = rusqlite::Connection::open(serve.data.join(plumb_store::DB_FILE)).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Held(c)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// An ingest endpoint: base URL, path and the content type it takes.
struct Endpoint<'a>(&'a str, &'a str, &'a str);

/// Posts `before` to `endpoint` (stored), then `during` while the database
/// is held: asserts the busy answer, releases the database, posts `during`
/// again and asserts it is stored and the database is intact.
fn busy_then_stored(serve: &Serve, endpoint: Endpoint, before: &[u8], during: &[u8]) {
    let Endpoint(base, path, content_type) = endpoint;
    let headers = [("Content-Type", content_type)];
    let a = http(base, "POST", path, &headers, before);
    assert_eq!(a.status, 200, "POST {path}: {}", a.text());
    let held = Held::new(serve);
    let a = http(base, "POST", path, &headers, during);
    a.assert_retry_later(&format!("POST {path} on a held store"), 1, "busy");
    drop(held);
    let a = http(base, "POST", path, &headers, during);
    assert_eq!(a.status, 200, "POST {path} retried: {}", a.text());
    let c = rusqlite::Connection::open(serve.data.join(plumb_store::DB_FILE)).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// The `field` of each object in the JSON array `list`, sorted.
fn sorted(list: &serde_json::Value, field: &str) -> Vec<String> {
    let mut all: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_string())
        .collect();
    all.sort();
    all
}

/// A finished run called `name`, as spool frames.
fn spool_body(name: &str) -> Vec<u8> {
    spooled_run(name, 1).1.bytes
}

/// A busy store on an API ingest endpoint (`path`, taking `content_type`):
/// afterwards `list` names both bodies' records by `field`, once each.
fn busy_api_ingest(path: &str, content_type: &str, bodies: [Vec<u8>; 2], list: &str, field: &str) {
    let serve = collector();
    let endpoint = Endpoint(&serve.api, path, content_type);
    busy_then_stored(&serve, endpoint, &bodies[0], &bodies[1]);
    let names = sorted(&serve.get_json(list), field);
    assert_eq!(names, ["before-lock", "during-lock"]);
}

#[test]
fn spool_ingest_on_a_busy_store_answers_503_and_the_retry_is_stored() {
    let bodies = [spool_body("before-lock"), spool_body("during-lock")];
    let spool = "application/x-plumb-spool";
    busy_api_ingest(
        "/api/v1/ingest/spool",
        spool,
        bodies,
        "/api/v1/runs",
        "name",
    );
}

fn node_body(name: &str) -> Vec<u8> {
    node_report(name, "fp", "debian").to_string().into_bytes()
}

#[test]
fn node_ingest_on_a_busy_store_answers_503_and_the_retry_is_stored() {
    let bodies = [node_body("before-lock"), node_body("during-lock")];
    let json = "application/json";
    busy_api_ingest("/api/v1/ingest/node", json, bodies, "/api/v1/nodes", "node");
}

fn logs_body(run: &str, marker: &str) -> Vec<u8> {
    serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "busy"}},
        {"key": "plumb.run.id", "value": {"stringValue": run}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": Timestamp::now().as_nanos().to_string(),
            "severityNumber": 9, "body": {"stringValue": format!("record {marker}")}}]}]}]})
    .to_string()
    .into_bytes()
}

#[test]
fn otlp_logs_on_a_busy_store_answer_503_and_the_retry_is_stored_once() {
    let serve = collector();
    let run = new_id().to_string();
    let (before, during) = (
        logs_body(&run, "before-lock"),
        logs_body(&run, "during-lock"),
    );
    let endpoint = Endpoint(serve.otlp(), "/v1/logs", "application/json");
    busy_then_stored(&serve, endpoint, &before, &during);
    let texts = sorted(
        &serve.get_json(&format!("/api/v1/telemetry/runs/{run}/logs")),
        "text",
    );
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("record before-lock"), "{texts:?}");
    assert!(texts[1].contains("record during-lock"), "{texts:?}");
}

fn spans_body(trace: &str, span: &str, name: &str) -> Vec<u8> {
    let now = Timestamp::now().as_nanos();
    serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "busy"}}]},
        "scopeSpans": [{"scope": {}, "spans": [{"traceId": trace, "spanId": span, "name": name,
            "kind": 1, "startTimeUnixNano": (now - 1_000_000).to_string(),
            "endTimeUnixNano": now.to_string(), "status": {}}]}]}]})
    .to_string()
    .into_bytes()
}

#[test]
fn otlp_traces_on_a_busy_store_answer_503_and_the_retry_is_stored_once() {
    let serve = collector();
    let trace = "5b8efff798038103d269b633813fc60c";
    let before = spans_body(trace, "eee19b7ec3c1b174", "before-lock");
    let during = spans_body(trace, "00000000000c41d0", "during-lock");
    let endpoint = Endpoint(serve.otlp(), "/v1/traces", "application/json");
    busy_then_stored(&serve, endpoint, &before, &during);
    let text = serve
        .get_json(&format!("/api/v1/traces/{trace}"))
        .to_string();
    assert_eq!(text.matches("\"before-lock\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"during-lock\"").count(), 1, "{text}");
}
