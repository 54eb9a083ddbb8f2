//! Fingerprint capture against real processes, real interpreters and real
//! git repositories.

use plumb_record::fingerprint::{Capture, CaptureOptions, CaptureStats};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

fn options(cache: &Path, cwd: &Path, argv: &[&str]) -> CaptureOptions {
    CaptureOptions {
        cache_dir: cache.to_path_buf(),
        argv: argv.iter().map(OsString::from).collect(),
        cwd: cwd.to_path_buf(),
        env: std::env::vars_os().collect(),
        ..Default::default()
    }
}

/// Runs the command of `opts` as a real child with a capture beside it.
fn capture(opts: &CaptureOptions) -> (String, plumb_model::Fingerprint, CaptureStats) {
    let mut child = Command::new(&opts.argv[0])
        .args(&opts.argv[1..])
        .current_dir(&opts.cwd)
        .spawn()
        .expect("child starts");
    let capture = Capture::start(opts, child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    capture.finish_with_stats()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn python_program_is_fingerprinted_and_its_packages_cached() {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let opts = options(
        cache.path(),
        cwd.path(),
        &["python3", "-c", "import time, json; time.sleep(0.3)"],
    );
    let (hash, fp, stats) = capture(&opts);
    assert_eq!(hash, fp.content_hash());
    assert!(stats.map_samples >= 2, "{stats:?}");
    assert!(
        fp.libraries
            .iter()
            .any(|l| l.path.contains("libpython") || l.path.contains("libc.so")),
        "{:?}",
        fp.libraries
    );
    let libc = fp
        .libraries
        .iter()
        .find(|l| l.path.contains("/libc.so."))
        .unwrap();
    assert_eq!(libc.version.as_deref(), Some("6"));
    let py = fp.python.as_ref().expect("python captured");
    assert!(py.version.starts_with('3'), "{py:?}");
    assert!(Path::new(&py.executable).is_file());
    let pip = py.packages.get("pip").expect("pip is installed");
    assert!(pip.chars().next().unwrap().is_ascii_digit(), "{pip}");
    assert!(stats.python_scanned && stats.executable_hashed);
    let exe = fp.executable.as_ref().unwrap();
    let bytes = std::fs::read(&exe.path).unwrap();
    assert_eq!(
        exe.sha256.as_deref(),
        Some(plumb_model::sha256_hex(&bytes).as_str())
    );
    assert!(fp.os.kernel.len() > 1 && fp.cpu_count >= 1 && fp.memory_bytes > 0);
    assert!(fp.libc.starts_with("glibc"));
    assert_eq!(fp.git, None, "a temporary directory is in no repository");

    // Same environment: nothing is listed or hashed again, same answer.
    let (hash2, fp2, stats2) = capture(&opts);
    assert!(!stats2.python_scanned, "{stats2:?}");
    assert!(!stats2.executable_hashed, "{stats2:?}");
    assert_eq!(fp2.python, fp.python);
    assert_eq!(fp2.executable, fp.executable);
    if fp2.libraries == fp.libraries {
        assert_eq!(hash2, hash);
    }
}

#[test]
fn new_site_directory_entry_forces_a_new_listing() {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path(), cwd.path(), &["python3", "-c", "pass"]);
    opts.env.retain(|(k, _)| k != "PYTHONPATH");
    opts.env.push(("PYTHONPATH".into(), site.path().into()));
    let (_, fp, stats) = capture(&opts);
    assert!(stats.python_scanned);
    assert!(!fp.python.unwrap().packages.contains_key("plumb-fake-dist"));
    let (_, _, stats) = capture(&opts);
    assert!(!stats.python_scanned);
    // "Install" a distribution into a sys.path directory.
    let dist = site.path().join("plumb_fake_dist-1.2.3.dist-info");
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(
        dist.join("METADATA"),
        "Metadata-Version: 2.1\nName: plumb-fake-dist\nVersion: 1.2.3\n",
    )
    .unwrap();
    let (_, fp, stats) = capture(&opts);
    assert!(
        stats.python_scanned,
        "a changed environment must be listed again"
    );
    assert_eq!(
        fp.python
            .unwrap()
            .packages
            .get("plumb-fake-dist")
            .map(String::as_str),
        Some("1.2.3")
    );
}

#[test]
fn corrupt_cache_files_are_ignored_and_rewritten() {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let opts = options(cache.path(), cwd.path(), &["python3", "-c", "pass"]);
    let (_, first, _) = capture(&opts);
    let dir = cache.path().join("fingerprint-v1");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        std::fs::write(f, b"\x00{ not json at all").unwrap();
    }
    let (_, second, stats) = capture(&opts);
    assert!(stats.python_scanned && stats.executable_hashed, "{stats:?}");
    assert_eq!(second.python, first.python);
    assert_eq!(second.executable, first.executable);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{} not rewritten",
            f.display()
        );
    }
    // An unusable cache directory (a file in its place) is not fatal either.
    let blocked = tempfile::NamedTempFile::new().unwrap();
    let opts = options(blocked.path(), cwd.path(), &["python3", "-c", "pass"]);
    let (_, fp, _) = capture(&opts);
    assert!(fp.python.is_some());
}

#[test]
fn git_state_clean_then_dirty() {
    let cache = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    std::fs::write(root.join("train.py"), "print('v1')\n").unwrap();
    git(root, &["add", "train.py"]);
    git(root, &["commit", "-q", "-m", "first"]);
    git(
        root,
        &[
            "remote",
            "add",
            "origin",
            "https://alice:s3cret@example.org/team/repo.git",
        ],
    );
    let commit = git(root, &["rev-parse", "HEAD"]);
    std::fs::create_dir(root.join("sub")).unwrap();
    let opts = options(cache.path(), &root.join("sub"), &["true"]);

    let (_, fp, stats) = capture(&opts);
    let g = fp.git.expect("repository found from a subdirectory");
    assert_eq!(g.commit, commit);
    assert_eq!(g.branch.as_deref(), Some("main"));
    assert_eq!(
        g.remote.as_deref(),
        Some("https://example.org/team/repo.git")
    );
    assert_eq!(
        Path::new(&g.root).canonicalize().unwrap(),
        root.canonicalize().unwrap()
    );
    assert!(!g.dirty && g.diff_sha256.is_none());
    assert!(!stats.git_cache_hit && stats.git_status_run);

    // Untracked files do not make it dirty; editing a tracked one does,
    // without any change to the cache key.
    std::fs::write(root.join("notes.txt"), "scratch").unwrap();
    let (_, fp, stats) = capture(&opts);
    assert!(!fp.git.unwrap().dirty);
    assert!(stats.git_cache_hit);
    assert!(
        !stats.git_status_run,
        "no tracked file changed: no git process"
    );
    std::fs::write(root.join("train.py"), "print('v2')\n").unwrap();
    let (_, fp, stats) = capture(&opts);
    assert!(stats.git_status_run, "a tracked file changed: git decides");
    let g = fp.git.unwrap();
    assert!(g.dirty);
    let (_, again, stats) = capture(&opts);
    assert!(!stats.git_status_run);
    assert_eq!(
        again.git.as_ref(),
        Some(&g),
        "the same dirty state, from the cache"
    );
    let diff = Command::new("git")
        .args(["diff", "HEAD", "--binary"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(g.diff_sha256, Some(plumb_model::sha256_hex(&diff.stdout)));
    std::fs::write(root.join("train.py"), "print('v3')\n").unwrap();
    let (_, fp, _) = capture(&opts);
    assert_ne!(
        fp.git.unwrap().diff_sha256,
        g.diff_sha256,
        "a new edit, a new diff hash"
    );

    // A new commit changes the key: commit read afresh.
    git(root, &["commit", "-q", "-am", "second"]);
    let (_, fp, stats) = capture(&opts);
    let g = fp.git.unwrap();
    assert!(!stats.git_cache_hit);
    assert_eq!(g.commit, git(root, &["rev-parse", "HEAD"]));
    assert!(!g.dirty);
}

#[test]
fn tools_and_non_python_programs() {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path(), cwd.path(), &["sh", "-c", "sleep 0.05"]);
    opts.tools
        .insert("shell".into(), "sh -c 'echo shell 9.9'".into());
    let (_, fp, stats) = capture(&opts);
    assert_eq!(fp.python, None);
    assert_eq!(fp.tools["shell"], "shell 9.9");
    assert_eq!(stats.tools_run, 1);
    assert!(fp.executable.unwrap().path.ends_with("/sh"));
    let (_, _, stats) = capture(&opts);
    assert_eq!(stats.tools_run, 0);

    // PLUMB_PYTHON: an interpreter named explicitly is listed too.
    opts.python = Some("python3".into());
    let (_, fp, _) = capture(&opts);
    assert!(fp.python.is_some());
}

#[test]
fn concurrent_cold_captures_list_packages_once() {
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let opts = options(cache.path(), cwd.path(), &["python3", "-c", "pass"]);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let opts = opts.clone();
            std::thread::spawn(move || capture(&opts))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let scans = results.iter().filter(|(_, _, s)| s.python_scanned).count();
    assert_eq!(scans, 1, "one recorder lists, the others wait and read");
    for (_, fp, _) in &results {
        assert_eq!(fp.python, results[0].1.python);
        assert!(fp.python.is_some());
    }
}

#[test]
fn libraries_of_a_program_executed_later_are_sampled() {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let cache = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    // The shell waits, then becomes Python (as a wrapper or a shim does).
    let script = format!("sleep 0.4; exec {python} -c 'import time, ssl; time.sleep(0.4)'");
    let opts = options(cache.path(), cwd.path(), &["sh", "-c", &script]);
    let (_, fp, stats) = capture(&opts);
    assert!(
        fp.libraries
            .iter()
            .any(|l| l.path.contains("libssl") || l.path.contains("_ssl")),
        "{stats:?} {:?}",
        fp.libraries
    );
    assert!(
        fp.libraries
            .iter()
            .all(|l| !l.path.ends_with("ld.so.cache"))
    );
}
