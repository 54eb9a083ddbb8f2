//! The OpenTelemetry scene of `plumb demo`: an unmodified OpenTelemetry
//! Python program, run under `plumb run`, exports logs and spans to the
//! demo's collector, which attaches them to the run; `plumb trace` then
//! shows the trace it made.

use crate::out::outln;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The instrumented program (also the integration tests' real client).
const APP: &str = include_str!("../../tests/otlp/otel_app.py");

/// Runs the scene: `plumb run -- python3 otel_app.py` with
/// `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at `otlp_url`, then shows what
/// the collector at `api_url` holds for that run. `plumb_home` is the
/// store the run itself is recorded in. Skips, saying so in one line, when
/// the OpenTelemetry Python SDK is not installed. Bounded: the program is
/// killed after 20 seconds.
pub fn demo_scene(otlp_url: &str, api_url: &str, plumb_home: &Path) -> Result<()> {
    let has_sdk = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_sdk {
        outln!(
            "OpenTelemetry: skipped (python3 with opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http is not installed; see .ci/install-otlp.sh)"
        );
        return Ok(());
    }
    let dir = plumb_home.join("demo-otlp");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let app = dir.join("otel_app.py");
    std::fs::write(&app, APP).with_context(|| format!("cannot write {}", app.display()))?;
    outln!("OpenTelemetry: a Python program using the OpenTelemetry SDK, under plumb run,");
    outln!("  exporting to {otlp_url} (OTEL_EXPORTER_OTLP_ENDPOINT, nothing else changed)");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["run", "--name", "otel-demo", "--", "python3"])
        .arg(&app)
        .arg("declined-in-demo")
        .env("PLUMB_HOME", plumb_home)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_url)
        .env("OTEL_SERVICE_NAME", "demo-shop")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start plumb run for the OpenTelemetry scene")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let Some(run_id) = out
        .lines()
        .find_map(|l| l.strip_prefix("plumb run id "))
        .map(str::trim)
        .filter(|_| status.is_some_and(|s| s.success()))
    else {
        outln!("  the program did not finish in time; its telemetry may be partial");
        return Ok(());
    };
    let logs = get(api_url, &format!("/api/v1/telemetry/runs/{run_id}/logs")).unwrap_or_default();
    let spans = get(api_url, &format!("/api/v1/telemetry/runs/{run_id}/spans")).unwrap_or_default();
    let count = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    };
    outln!(
        "  the collector attached {} log records and {} spans to run {run_id}",
        count(&logs),
        count(&spans)
    );
    outln!("  see them: plumb search --collector {api_url} declined");
    outln!("            {api_url}/api/v1/telemetry/runs/{run_id}/logs  (and /spans)");
    // The trace the program made: its spans as a tree, each with the log
    // records made inside it, found by a prefix of the trace id.
    let trace_id = serde_json::from_str::<serde_json::Value>(&spans)
        .ok()
        .and_then(|v| v.get(0)?.get("trace_id")?.as_str().map(str::to_owned));
    if let Some(trace_id) = trace_id {
        let prefix = &trace_id[..12.min(trace_id.len())];
        outln!("  its trace: plumb trace --collector {api_url} {prefix}");
        let shown = Command::new(std::env::current_exe()?)
            .args(["trace", "--collector", api_url, prefix])
            .env("PLUMB_HOME", plumb_home)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run plumb trace")?;
        for line in String::from_utf8_lossy(&shown.stdout).lines() {
            // Log lines carry every attribute; the demo shows their start.
            outln!("    {}", line.chars().take(110).collect::<String>());
        }
        outln!("  and as a waterfall: {api_url}/traces/{prefix}");
        outln!("  spans are searched too: plumb search --collector {api_url} kind:span charge");
    }
    Ok(())
}

/// A GET of the demo's collector; the body.
fn get(base: &str, path: &str) -> Result<String> {
    let client = plumb_http::Client::new(&plumb_http::Config {
        timeout: Duration::from_secs(10),
        ..plumb_http::Config::new(base)
    })?;
    Ok(client.get(path).send()?.text())
}
