//! Files damaged on purpose are detected, skipped with a warning naming
//! them, and never restored from; plus the directory rules around them
//! (keep K, leftovers, the lock).

mod common;

use common::{State, state_for};
use plumb_checkpoint::{CheckpointError, Checkpointer, LOCK_FILE, inspect};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn open(dir: &Path) -> Checkpointer {
    Checkpointer::builder(dir).signals(&[]).open().unwrap()
}

/// Saves states 1, 2 and 3 and returns the path of the newest.
fn three_checkpoints(dir: &Path) -> PathBuf {
    let mut ckpt = open(dir);
    for c in 1..=3 {
        ckpt.save(&state_for(c * 1000 + 17)).unwrap();
    }
    ckpt.last_saved().unwrap().path.clone()
}

/// A writer for tracing that keeps what it gets.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens `dir` while capturing the warnings; returns the restored state and
/// the log text.
fn open_capturing(dir: &Path) -> (Option<State>, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let restored =
        tracing::subscriber::with_default(subscriber, || open(dir).restore::<State>().unwrap());
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (restored, text)
}

type Damage = fn(&Path);

fn truncate_half(p: &Path) {
    let len = fs::metadata(p).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}
fn truncate_last_byte(p: &Path) {
    let len = fs::metadata(p).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
}
fn empty(p: &Path) {
    fs::write(p, b"").unwrap();
}
fn flip_payload_byte(p: &Path) {
    let mut b = fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    fs::write(p, b).unwrap();
}
fn flip_header_seq(p: &Path) {
    let mut b = fs::read(p).unwrap();
    b[16] ^= 0x80;
    fs::write(p, b).unwrap();
}
fn flip_checksum(p: &Path) {
    let mut b = fs::read(p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xFF;
    fs::write(p, b).unwrap();
}
fn zero_fill(p: &Path) {
    let len = fs::metadata(p).unwrap().len() as usize;
    fs::write(p, vec![0u8; len]).unwrap();
}
fn zero_fill_tail(p: &Path) {
    // What a file system may show after a crash: the size was recorded but
    // the last blocks were never written.
    let mut b = fs::read(p).unwrap();
    let from = b.len() / 3;
    b[from..].fill(0);
    fs::write(p, b).unwrap();
}
fn append_garbage(p: &Path) {
    let mut f = OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(b"garbage").unwrap();
}

#[test]
fn each_kind_of_damage_is_detected_and_skipped_with_a_warning_naming_the_file() {
    let cases: [(&str, Damage, &str); 9] = [
        ("truncate to half", truncate_half, "length_mismatch"),
        ("truncate one byte", truncate_last_byte, "length_mismatch"),
        ("empty", empty, "too_short"),
        (
            "flip a payload byte",
            flip_payload_byte,
            "checksum_mismatch",
        ),
        ("flip a header bit", flip_header_seq, "checksum_mismatch"),
        ("flip the checksum", flip_checksum, "checksum_mismatch"),
        ("zero-fill", zero_fill, "bad_magic"),
        ("zero-fill the tail", zero_fill_tail, "checksum_mismatch"),
        ("append garbage", append_garbage, "length_mismatch"),
    ];
    for (what, damage, code) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let newest = three_checkpoints(tmp.path());
        damage(&newest);
        let entries = inspect(tmp.path()).unwrap();
        let bad = entries.iter().find(|e| e.path == newest).unwrap();
        match &bad.check {
            Err(plumb_checkpoint::Problem::Corrupt(kind)) => {
                assert_eq!(kind.code(), code, "{what}: {kind}")
            }
            other => panic!("{what}: not detected: {other:?}"),
        }
        assert_eq!(
            entries.iter().filter(|e| e.check.is_ok()).count(),
            2,
            "{what}"
        );
        let (restored, log) = open_capturing(tmp.path());
        assert_eq!(restored, Some(state_for(2017)), "{what}: wrong fallback");
        assert!(
            log.contains("WARN") && log.contains(&newest.display().to_string()),
            "{what}: the warning does not name {}: {log:?}",
            newest.display()
        );
    }
}

#[test]
fn falls_back_past_several_corrupt_files_and_never_restores_a_corrupt_one() {
    let tmp = tempfile::tempdir().unwrap();
    three_checkpoints(tmp.path());
    let mut files: Vec<_> = inspect(tmp.path())
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    files.sort();
    flip_payload_byte(&files[2]);
    zero_fill(&files[1]);
    assert_eq!(
        open(tmp.path()).restore::<State>().unwrap(),
        Some(state_for(1017))
    );
    truncate_half(&files[0]);
    assert_eq!(open(tmp.path()).restore::<State>().unwrap(), None);
    // A new save after total loss continues past the corrupt numbers instead
    // of overwriting them.
    let mut ckpt = open(tmp.path());
    assert_eq!(ckpt.save(&state_for(5)).unwrap().seq, 4);
}

#[test]
fn a_renamed_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let newest = three_checkpoints(tmp.path());
    let renamed = tmp.path().join(plumb_checkpoint::file_name(9));
    fs::rename(&newest, &renamed).unwrap();
    let entries = inspect(tmp.path()).unwrap();
    let e = entries.iter().find(|e| e.seq == 9).unwrap();
    assert!(
        matches!(&e.check, Err(plumb_checkpoint::Problem::Corrupt(k)) if k.code() == "sequence_mismatch"),
        "{:?}",
        e.check
    );
    assert_eq!(
        open(tmp.path()).restore::<State>().unwrap(),
        Some(state_for(2017))
    );
}

#[test]
fn keeps_the_newest_k_and_cleans_up_leftover_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let leftover = tmp.path().join(".checkpoint-00000000000000000001.ckpt.tmp");
    fs::write(&leftover, b"half a checkpoint").unwrap();
    let mut ckpt = Checkpointer::builder(tmp.path())
        .signals(&[])
        .keep(2)
        .open()
        .unwrap();
    assert!(!leftover.exists(), "leftover temporary file not removed");
    assert!(ckpt.restored().is_none());
    for c in 1..=10 {
        ckpt.save(&state_for(c)).unwrap();
    }
    drop(ckpt);
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            LOCK_FILE,
            "checkpoint-00000000000000000009.ckpt",
            "checkpoint-00000000000000000010.ckpt"
        ]
    );
    assert_eq!(
        open(tmp.path()).restore::<State>().unwrap(),
        Some(state_for(10))
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    let second = Checkpointer::builder(tmp.path()).signals(&[]).open();
    assert!(
        matches!(second, Err(CheckpointError::Locked { .. })),
        "{second:?}"
    );
    drop(first);
    open(tmp.path());
}

#[test]
fn raw_bytes_in_any_encoding_and_typed_errors_for_mismatches() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ckpt = open(tmp.path());
    ckpt.save_bytes("cbor", &[0xA1, 0x61, 0x61, 0x01]).unwrap();
    assert!(matches!(
        ckpt.save_bytes("not valid", b"x"),
        Err(CheckpointError::Config(_))
    ));
    drop(ckpt);
    let ckpt = open(tmp.path());
    assert_eq!(ckpt.restored().unwrap().encoding, "cbor");
    assert_eq!(ckpt.restored_bytes().unwrap(), &[0xA1, 0x61, 0x61, 0x01]);
    assert!(matches!(
        ckpt.restore::<State>(),
        Err(CheckpointError::WrongEncoding { .. })
    ));
    drop(ckpt);
    let mut ckpt = open(tmp.path());
    ckpt.save(&serde_json::json!({"not": "a State"})).unwrap();
    drop(ckpt);
    let err = open(tmp.path()).restore::<State>().unwrap_err();
    assert!(matches!(err, CheckpointError::Deserialize { .. }), "{err}");
    assert!(err.to_string().contains("checkpoint-"), "{err}");
}

#[test]
fn periodic_saving_by_steps_and_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ckpt = Checkpointer::builder(tmp.path())
        .signals(&[])
        .every_steps(10)
        .open()
        .unwrap();
    let mut saved = Vec::new();
    for c in 1..=25 {
        if let Some(info) = ckpt.at_safe_point(&state_for(c)).unwrap() {
            saved.push(info.seq);
            assert_eq!(c % 10, 0, "saved at step {c}");
        }
    }
    assert_eq!(saved, [1, 2]);
    drop(ckpt);

    let mut ckpt = Checkpointer::builder(tmp.path())
        .signals(&[])
        .every(std::time::Duration::from_millis(200))
        .open()
        .unwrap();
    assert!(!ckpt.should_save());
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert!(ckpt.should_save());
    ckpt.save(&state_for(1)).unwrap();
    assert!(!ckpt.should_save(), "the interval restarts at each save");
}

#[test]
fn invalid_settings_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (builder, needle) in [
        (Checkpointer::builder(tmp.path()).keep(0), "keep"),
        (
            Checkpointer::builder(tmp.path()).every_steps(0),
            "every_steps",
        ),
        (
            Checkpointer::builder(tmp.path()).signals(&[libc::SIGKILL]),
            "cannot be caught",
        ),
    ] {
        let err = builder.open().unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let file = tmp.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let err = Checkpointer::builder(&file)
        .signals(&[])
        .open()
        .unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Dir { dir, .. } if dir == &file),
        "{err}"
    );
}

#[test]
fn a_payload_larger_than_one_writeback_chunk_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 253) as u8).collect();
    let mut ckpt = open(tmp.path());
    let info = ckpt.save_bytes("raw", &payload).unwrap();
    assert_eq!(info.size, payload.len() as u64 + 52);
    drop(ckpt);
    let ckpt = open(tmp.path());
    assert_eq!(ckpt.restored_bytes().unwrap(), payload.as_slice());
}
