//! disk_full without root: plumb's ENOSPC injector (src/enospc.c, built by
//! build.rs and embedded here) is loaded with LD_PRELOAD into a target
//! plumb starts. While the fault is on, a flag file exists and every write
//! the target makes through the C library to a file under the fault's
//! directory fails with ENOSPC; removing the file ends it, without a
//! restart. What it cannot catch (buffered stdio inside the C library,
//! programs that make system calls themselves, as Go's do) is said in the
//! README.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The injector, as built for this machine; empty when no C compiler was
/// found at build time.
pub const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libplumb_enospc.so"));

/// The variable naming the directory whose writes fail.
pub const DIR_VAR: &str = "PLUMB_ENOSPC_DIR";
/// The variable naming the flag file: writes fail while it exists.
pub const FLAG_VAR: &str = "PLUMB_ENOSPC_FLAG";

/// Whether this build carries the injector.
pub fn available() -> bool {
    !LIBRARY.is_empty()
}

/// Writes the injector into `dir` (once) and returns its path.
pub fn install(dir: &Path) -> Result<PathBuf> {
    if !available() {
        bail!(
            "this plumb was built without a C compiler, so it has no ENOSPC injector: rebuild with gcc or cc on PATH, or run as root for the tmpfs"
        );
    }
    let path = dir.join("libplumb_enospc.so");
    // LD_PRELOAD splits on spaces and colons.
    if path.to_string_lossy().contains([' ', ':']) {
        bail!(
            "{} has a space or colon, which LD_PRELOAD cannot carry: use a PLUMB_HOME without them",
            path.display()
        );
    }
    if std::fs::read(&path).ok().as_deref() != Some(LIBRARY) {
        let tmp = dir.join(format!(".libplumb_enospc.{}.tmp", std::process::id()));
        std::fs::write(&tmp, LIBRARY)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Each way of writing, in a Python child under the injector: what
    /// errno each one met, one line each.
    const WRITES: &str = r#"
import os, sys
d, other = sys.argv[1], sys.argv[2]
def attempt(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, os.strerror(e.errno))
fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT, 0o644)
attempt("write", lambda: os.write(fd, b"x"))
attempt("pwrite", lambda: os.pwrite(fd, b"x", 10))
attempt("writev", lambda: os.writev(fd, [b"a", b"b"]))
attempt("posix_fallocate", lambda: os.posix_fallocate(fd, 0, 4096))
src = os.open("/etc/hostname", os.O_RDONLY)
attempt("sendfile", lambda: os.sendfile(fd, src, 0, 1))
def python_file():
    with open(os.path.join(d, "g"), "w") as f:
        f.write("y" * 10)
attempt("python file", python_file)
out = os.open(os.path.join(other, "h"), os.O_WRONLY | os.O_CREAT, 0o644)
attempt("elsewhere", lambda: os.write(out, b"z"))
"#;

    fn run(dir: &Path, lib: &Path, flag: &Path, other: &Path) -> String {
        let out = Command::new("python3")
            .args(["-c", WRITES])
            .arg(dir)
            .arg(other)
            .env("LD_PRELOAD", lib)
            .env(DIR_VAR, dir)
            .env(FLAG_VAR, flag)
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn writes_under_the_directory_fail_with_enospc_only_while_the_flag_exists() {
        assert!(available(), "built with a C compiler here");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let dir = dir.canonicalize().unwrap();
        let lib = install(tmp.path()).unwrap();
        // Installing again keeps the same file.
        assert_eq!(install(tmp.path()).unwrap(), lib);
        let flag = tmp.path().join("flag");

        let off = run(&dir, &lib, &flag, &other);
        assert!(
            off.lines().all(|l| l.ends_with(" ok")),
            "no flag, no fault: {off}"
        );
        std::fs::write(&flag, b"full").unwrap();
        let on = run(&dir, &lib, &flag, &other);
        for way in [
            "write",
            "pwrite",
            "writev",
            "posix_fallocate",
            "sendfile",
            "python file",
        ] {
            assert!(
                on.contains(&format!("{way} No space left on device")),
                "{way}: {on}"
            );
        }
        assert!(on.contains("elsewhere ok"), "other directories: {on}");
        std::fs::remove_file(&flag).unwrap();
        let again = run(&dir, &lib, &flag, &other);
        assert_eq!(again, off);
    }
}
