//! The Python logging handler (python/plumb/log.py) against a real
//! `plumb serve`: records logged by a Python program are found by
//! `plumb search` in the collector's store.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// Kills the collector when the test ends, however it ends.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const APP: &str = r#"
import logging, sys
from plumb import PlumbHandler
h = PlumbHandler(sys.argv[1], service_name="evict-log-test", flush_interval=0.05)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(h)
log.warning("checkpoint zebrafinch saved at step %d", 42)
try:
    raise KeyError("quokka")
except KeyError:
    log.exception("lost the quokka")
assert h.flush(10), "not flushed"
h.close()
print(f"sent={h.sent} spooled={h.spooled} rejected={h.rejected}")
"#;

#[test]
fn python_log_records_reach_a_real_collector_and_are_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut child = Command::new(PLUMB)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&data)
        .env("PLUMB_HOME", &data)
        .env_remove("PLUMB_COLLECTOR")
        .env_remove("PLUMB_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Serve(child);
    let mut otlp = None;
    for line in BufReader::new(stdout).lines().take(10) {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("otlp ") {
            otlp = Some(url.trim().to_string());
            break;
        }
    }
    let otlp = otlp.expect("plumb serve printed its OTLP address");

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let script = dir.path().join("app.py");
    std::fs::write(&script, APP).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&otlp)
        .env("PYTHONPATH", &python)
        .env("PLUMB_RUN_ID", "0192f0c4-2222-7000-8000-000000000002")
        .env("PLUMB_SPOOL", dir.path().join("spool"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("sent=2 spooled=0 rejected=0"), "{printed}");

    // The collector writes in the background: ask until the records show
    // up (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let s = Command::new(PLUMB)
            .args(["search", "zebrafinch", "--json"])
            .env("PLUMB_HOME", &data)
            .env_remove("PLUMB_COLLECTOR")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&s.stdout).into_owned();
        if text.contains("zebrafinch") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        found.contains("checkpoint zebrafinch saved at step 42"),
        "{found}"
    );
    drop(serve);
}
