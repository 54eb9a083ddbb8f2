//! Shipping the proxy's change log to a plumb collector, so injected faults
//! stand on the same timeline as the application's own logs.
//!
//! Events go out as OTLP/HTTP JSON log records (`POST /v1/logs`), the format
//! every OpenTelemetry-aware backend already reads, with resource attribute
//! `service.name = plumb-proxy`. A thread polls the in-memory event log by
//! sequence number and posts what is new; a failed post is retried after an
//! exponential backoff with full jitter, from the same sequence number, so
//! nothing is skipped while the collector is away (the log keeps the last
//! [`crate::state::EVENT_CAPACITY`] events; older ones are counted as dropped
//! and the count travels with the next batch). The collector derives record
//! ids from their content, so a batch posted twice is stored once.

use crate::state::{Event, Registry};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Path of the OTLP/HTTP logs endpoint.
pub const LOGS_PATH: &str = "/v1/logs";
/// At most this many events per request.
const BATCH: usize = 500;
/// How often the event log is polled when there is nothing to retry.
const POLL: Duration = Duration::from_millis(250);

/// Ships events while alive; dropping it stops the thread after one last
/// attempt to send what is pending.
#[derive(Debug)]
pub struct EventShipper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EventShipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn(
    registry: Arc<Registry>,
    client: plumb_http::Client,
) -> std::io::Result<EventShipper> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let host = host_name();
    let thread = std::thread::Builder::new()
        .name("proxy-events".into())
        .spawn(move || run(&registry, &client, &host, &flag))?;
    Ok(EventShipper {
        stop,
        thread: Some(thread),
    })
}

fn run(registry: &Registry, client: &plumb_http::Client, host: &str, stop: &AtomicBool) {
    let backoff = plumb_http::Backoff::default();
    let mut shipped = 0u64;
    let mut failures = 0u32;
    let mut warned = false;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let (events, dropped) = registry.events_since(shipped);
        let mut wait = POLL;
        if !events.is_empty() {
            let batch = &events[..events.len().min(BATCH)];
            let body = otlp_logs_json(batch, host, dropped);
            let mut req = client
                .post(LOGS_PATH)
                .bytes("application/json", body.clone());
            if body.len() > 4096 {
                req = req.gzip();
            }
            match req.send() {
                Ok(_) => {
                    shipped = batch.last().map_or(shipped, |e| e.seq);
                    failures = 0;
                    if warned {
                        tracing::info!(
                            collector = client.base(),
                            "proxy events reach the collector again"
                        );
                        warned = false;
                    }
                    if events.len() > batch.len() {
                        continue;
                    }
                }
                Err(error) => {
                    if !warned {
                        tracing::warn!(collector = client.base(), %error, "cannot ship proxy events; will retry");
                        warned = true;
                    }
                    failures = failures.saturating_add(1);
                    wait = backoff.next_delay(failures, None);
                }
            }
        }
        if stopping {
            return;
        }
        // Sleep in short steps so a stop is noticed quickly.
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(POLL.min(until - std::time::Instant::now()));
        }
    }
}

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn s(v: &str) -> Value {
    json!({"stringValue": v})
}

/// One human-readable line per event, e.g.
/// `toxic_added proxy=db toxic=latency_downstream type=latency stream=downstream latency=150`.
fn describe(e: &Event) -> String {
    let mut line = e.kind.clone();
    if let Some(p) = &e.proxy {
        line.push_str(&format!(" proxy={p}"));
    }
    if let Some(t) = &e.toxic {
        line.push_str(&format!(" toxic={t}"));
    }
    if let Some(obj) = e.detail.as_object() {
        for key in [
            "type", "stream", "toxicity", "enabled", "listen", "upstream",
        ] {
            if let Some(v) = obj.get(key) {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                line.push_str(&format!(" {key}={shown}"));
            }
        }
        if let Some(attrs) = obj.get("attributes").and_then(Value::as_object) {
            for (k, v) in attrs {
                line.push_str(&format!(" {k}={v}"));
            }
        }
    }
    line
}

/// The OTLP/HTTP JSON body (`ExportLogsServiceRequest`) for `events`.
pub(crate) fn otlp_logs_json(events: &[Event], host: &str, dropped: u64) -> String {
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut attrs = vec![
                kv("plumb.proxy.event", s(&e.kind)),
                kv("plumb.proxy.seq", json!({"intValue": e.seq.to_string()})),
            ];
            if let Some(p) = &e.proxy {
                attrs.push(kv("plumb.proxy.name", s(p)));
            }
            if let Some(t) = &e.toxic {
                attrs.push(kv("plumb.proxy.toxic", s(t)));
            }
            if !e.detail.is_null() {
                attrs.push(kv("plumb.proxy.detail", s(&e.detail.to_string())));
            }
            json!({
                "timeUnixNano": e.ts_ns.to_string(),
                "observedTimeUnixNano": e.ts_ns.to_string(),
                "severityNumber": 9,
                "severityText": "INFO",
                "body": s(&describe(e)),
                "attributes": attrs,
            })
        })
        .collect();
    let mut resource = vec![
        kv("service.name", s("plumb-proxy")),
        kv("host.name", s(host)),
    ];
    if dropped > 0 {
        resource.push(kv(
            "plumb.proxy.events_dropped",
            json!({"intValue": dropped.to_string()}),
        ));
    }
    json!({
        "resourceLogs": [{
            "resource": {"attributes": resource},
            "scopeLogs": [{
                "scope": {"name": "plumb.proxy", "version": env!("CARGO_PKG_VERSION")},
                "logRecords": records,
            }],
        }],
    })
    .to_string()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_otlp_json_log_records() {
        let events = vec![
            Event {
                seq: 7,
                ts_ns: 1_764_000_000_123_456_789,
                kind: "toxic_added".into(),
                proxy: Some("db".into()),
                toxic: Some("latency_downstream".into()),
                detail: json!({"type": "latency", "stream": "downstream", "toxicity": 1.0,
                               "attributes": {"latency": 150, "jitter": 0}}),
            },
            Event {
                seq: 8,
                ts_ns: 1_764_000_000_223_456_789,
                kind: "reset".into(),
                proxy: None,
                toxic: None,
                detail: Value::Null,
            },
        ];
        let body: Value = serde_json::from_str(&otlp_logs_json(&events, "node-1", 3)).unwrap();
        let rl = &body["resourceLogs"][0];
        let res = rl["resource"]["attributes"].as_array().unwrap();
        assert!(res.contains(&kv("service.name", s("plumb-proxy"))));
        assert!(res.contains(&kv("host.name", s("node-1"))));
        assert!(res.contains(&kv("plumb.proxy.events_dropped", json!({"intValue": "3"}))));
        let recs = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
        assert_eq!(recs.len(), 2);
        // OTLP JSON carries 64-bit integers as strings.
        assert_eq!(recs[0]["timeUnixNano"], "1764000000123456789");
        let body0 = recs[0]["body"]["stringValue"].as_str().unwrap();
        assert!(body0.starts_with("toxic_added proxy=db toxic=latency_downstream"));
        assert!(body0.contains("type=latency") && body0.contains("latency=150"));
        assert_eq!(recs[1]["body"]["stringValue"], "reset");
        assert!(
            recs[1]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["key"] != "plumb.proxy.detail"),
            "no detail attribute when there is no detail"
        );
    }
}
