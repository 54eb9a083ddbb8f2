//! Live interoperation with the Python package (python/plumb) through real
//! checkpoint directories: each side restores what the other saved, and the
//! two honour each other's directory lock. Needs `python3` on PATH (any
//! 3.8+, standard library only); without it the test fails and says so.

use plumb_checkpoint::Checkpointer;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

fn python(code: &str, dir: &Path) -> Output {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .arg(dir)
        .env("PYTHONPATH", python_dir())
        .output()
        .expect("this test runs the Python package: python3 must be on PATH");
    assert!(
        out.status.success(),
        "python3 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn python_writes_rust_reads_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    python(
        r#"
import sys, plumb
with plumb.Checkpointer(sys.argv[1], signals=()) as c:
    c.save({"step": 1, "from": "python"})
    c.save({"step": 2, "from": "python", "name": "caf\u00e9"})
"#,
        &dir,
    );
    let mut ckpt = Checkpointer::builder(&dir).signals(&[]).open().unwrap();
    assert_eq!(ckpt.restored().unwrap().seq, 2);
    assert_eq!(
        ckpt.restore::<Value>().unwrap(),
        Some(json!({"step": 2, "from": "python", "name": "café"}))
    );
    let saved = ckpt.save(&json!({"step": 3, "from": "rust"})).unwrap();
    assert_eq!(saved.seq, 3);

    // While Rust holds the directory, Python may not write it.
    let out = python(
        r#"
import sys, plumb
try:
    plumb.Checkpointer(sys.argv[1], signals=())
    print("opened")
except plumb.Locked as e:
    print("locked")
"#,
        &dir,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "locked");
    drop(ckpt);

    let out = python(
        r#"
import sys, json, plumb
with plumb.Checkpointer(sys.argv[1], signals=()) as c:
    print(json.dumps({"seq": c.restored.seq, "state": c.restore()}))
"#,
        &dir,
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen,
        json!({"seq": 3, "state": {"step": 3, "from": "rust"}})
    );
}
