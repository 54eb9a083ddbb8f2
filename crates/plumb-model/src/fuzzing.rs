//! Replaying the fuzz targets' checked-in corpora on the stable toolchain.
//!
//! Every cargo-fuzz target in `fuzz/` is a one-line call of a plain library
//! function (its body). The crate that owns the body has a test calling
//! [`replay`], so the inputs that once failed, and the seeds, run with
//! every `cargo xtask test`, with no nightly toolchain.

use std::path::PathBuf;

/// `fuzz/corpus/<target>` of this repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs `body` on every input in the corpus of fuzz target `target`, naming
/// each on stderr first (so the one that panics is known), and returns how
/// many there were.
///
/// # Panics
/// When the corpus cannot be read, or has fewer than `at_least` inputs (a
/// moved or emptied corpus must not pass silently), or when `body` panics.
pub fn replay(target: &str, at_least: usize, body: impl Fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        body(&data);
    }
    assert!(
        paths.len() >= at_least,
        "{} inputs in {}, expected at least {at_least}",
        paths.len(),
        dir.display()
    );
    paths.len()
}
