//! A save that runs out of space on a real, small tmpfs returns a typed
//! error, leaves no partial file, and the previous checkpoint is restored.
//!
//! Mounting needs root (the CI runs as root). When the mount fails the test
//! fails with the reason rather than skipping.

mod common;

use common::{State, state_for};
use plumb_checkpoint::{CheckpointError, Checkpointer, LOCK_FILE};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A 64 KiB tmpfs, unmounted on drop.
struct SmallTmpfs {
    mount: PathBuf,
    _holder: tempfile::TempDir,
}

impl SmallTmpfs {
    fn new() -> SmallTmpfs {
        let holder = tempfile::tempdir().unwrap();
        let mount = holder.path().join("small");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mount)
            .output()
            .expect("cannot run `mount`");
        assert!(
            out.status.success(),
            "this test needs to mount a 64 KiB tmpfs (as root) to fill a disk for real; \
             `mount -t tmpfs -o size=64k tmpfs {}` failed with {}: {}",
            mount.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        SmallTmpfs {
            mount,
            _holder: holder,
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // Lazy, so that a failing assertion with files still open does not
        // leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn disk_full_during_save_returns_an_error_and_the_previous_checkpoint_survives() {
    let fs = SmallTmpfs::new();
    let dir = fs.mount.join("ckpt");
    let small = state_for(3); // about 24 KB
    let big = state_for(11); // about 87 KB: cannot fit in 64 KiB
    assert!(serde_json::to_vec(&small).unwrap().len() < 30_000);
    assert!(serde_json::to_vec(&big).unwrap().len() > 70_000);

    let mut ckpt = Checkpointer::builder(&dir).signals(&[]).open().unwrap();
    let first = ckpt.save(&small).unwrap();
    let err = ckpt.save(&big).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::StorageFull { path, .. } if path.ends_with("checkpoint-00000000000000000002.ckpt")),
        "expected StorageFull naming checkpoint 2, got: {err}"
    );
    assert!(
        err.to_string().contains("previous checkpoint is intact"),
        "{err}"
    );
    // No temporary file is left to eat the little space there is.
    assert_eq!(
        names(&dir),
        [LOCK_FILE, "checkpoint-00000000000000000001.ckpt"]
    );
    drop(ckpt);

    let mut ckpt = Checkpointer::builder(&dir).signals(&[]).open().unwrap();
    assert_eq!(ckpt.restored().unwrap().seq, first.seq);
    assert_eq!(ckpt.restore::<State>().unwrap(), Some(small.clone()));
    // Once there is room again, saving works: a smaller state fits.
    let next = ckpt.save(&state_for(1)).unwrap();
    assert!(next.seq > first.seq);
    drop(ckpt);
    let ckpt = Checkpointer::builder(&dir).signals(&[]).open().unwrap();
    assert_eq!(ckpt.restore::<State>().unwrap(), Some(state_for(1)));
}
