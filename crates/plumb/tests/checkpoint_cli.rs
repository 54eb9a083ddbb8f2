//! `plumb checkpoint ls|verify|show`, run as the built binary against real
//! checkpoint directories.

mod support;

use plumb_checkpoint::Checkpointer;
use std::path::Path;
use std::process::Output;
use support::*;

/// `plumb checkpoint ARGS DIR`.
fn checkpoint(args: &[&str], dir: &Path) -> Output {
    plumb()
        .arg("checkpoint")
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

/// Three JSON checkpoints, step 1 to 3.
fn three(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut ckpt = Checkpointer::builder(dir).signals(&[]).open().unwrap();
    (1..=3)
        .map(|step| {
            ckpt.save(&serde_json::json!({"step": step, "name": "train"}))
                .unwrap()
                .path
        })
        .collect()
}

#[test]
fn ls_shows_sequence_utc_time_size_and_validity() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = three(tmp.path());
    let size = std::fs::metadata(&paths[0]).unwrap().len();
    std::fs::write(
        &paths[1],
        b"not a checkpoint at all, just some bytes in its place",
    )
    .unwrap();
    let out = checkpoint(&["ls"], tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("SEQ") && lines[0].contains("TIME (UTC)"));
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first[0], "1");
    assert!(
        first[1].ends_with('Z') && first[1].contains('T') && first[1].starts_with("20"),
        "{}",
        first[1]
    );
    assert_eq!(first[2], size.to_string());
    assert_eq!(&first[3..], ["json", "ok"]);
    assert!(
        lines[2].starts_with("       2") && lines[2].contains("corrupt: bad magic"),
        "{stdout}"
    );
    assert!(lines[3].trim_end().ends_with("ok"));

    let out = checkpoint(&["ls", "--json"], tmp.path());
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["valid"], true);
    assert_eq!(rows[1]["valid"], false);
    assert!(rows[2]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn verify_exits_non_zero_and_names_each_corrupt_file() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = three(tmp.path());
    let out = checkpoint(&["verify"], tmp.path());
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("3 valid, 0 corrupt"));

    // Truncate one, flip a byte in another.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[0])
        .unwrap();
    f.set_len(30).unwrap();
    let mut bytes = std::fs::read(&paths[2]).unwrap();
    bytes[50] ^= 0x10;
    std::fs::write(&paths[2], bytes).unwrap();
    let out = checkpoint(&["verify"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for bad in [&paths[0], &paths[2]] {
        assert!(
            stdout.contains(&format!("CORRUPT  {}", bad.display())),
            "{} not named: {stdout}",
            bad.display()
        );
    }
    assert!(
        stdout.contains("too short") && stdout.contains("checksum mismatch"),
        "{stdout}"
    );
    assert!(stdout.contains("1 valid, 2 corrupt"));
}

#[test]
fn show_prints_the_newest_valid_state_or_a_chosen_one() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = three(tmp.path());
    let out = checkpoint(&["show"], tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state, serde_json::json!({"step": 3, "name": "train"}));
    assert!(text(&out.stderr).contains("checkpoint 3 (json"));

    // The newest is corrupt: show falls back to the previous one.
    std::fs::write(&paths[2], vec![0u8; 100]).unwrap();
    let out = checkpoint(&["show"], tmp.path());
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["step"], 2);

    let out = checkpoint(&["show", "--seq", "1"], tmp.path());
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["step"], 1);

    // Asking for the corrupt one by number is an error naming it.
    let out = checkpoint(&["show", "--seq", "3"], tmp.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&paths[2].display().to_string()) && stderr.contains("corrupt"),
        "{stderr}"
    );
    let out = checkpoint(&["show", "--seq", "9"], tmp.path());
    assert!(text(&out.stderr).contains("no checkpoint with sequence number 9"));
}

#[test]
fn raw_payloads_and_bad_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ckpt = Checkpointer::builder(tmp.path())
        .signals(&[])
        .open()
        .unwrap();
    ckpt.save_bytes("raw", b"\x00\x01binary\xff").unwrap();
    drop(ckpt);
    let out = checkpoint(&["show"], tmp.path());
    assert_eq!(out.stdout, b"\x00\x01binary\xff");

    let missing = tmp.path().join("missing");
    let out = checkpoint(&["verify"], &missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a directory"));
    let empty = tempfile::tempdir().unwrap();
    let out = checkpoint(&["ls"], empty.path());
    assert!(text(&out.stdout).contains("no checkpoints in"));
    let out = checkpoint(&["show"], empty.path());
    assert!(text(&out.stderr).contains("no valid checkpoint"));
}
