//! The Python logging handler (python/plumb/log.py) against a real
//! `plumb serve`: records logged by a Python program are found by
//! `plumb search` in the collector's store.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

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
    let serve = Serve::builder().data(&data).otlp().start();
    let otlp = serve.otlp().to_string();

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
    let found = wait_for(
        "the records in the collector's store",
        Duration::from_secs(20),
        || {
            let s = plumb_in(&data)
                .args(["search", "zebrafinch", "--json"])
                .output()
                .unwrap();
            let found = text(&s.stdout);
            found.contains("zebrafinch").then_some(found)
        },
    );
    assert!(
        found.contains("checkpoint zebrafinch saved at step 42"),
        "{found}"
    );
    drop(serve);
}
