//! The `plumb` executable end to end: real processes, a real store in a
//! temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PLUMB);
        c.args(args)
            .env("PLUMB_HOME", self.path())
            .env("PLUMB_SPOOL", self.dir.path().join("spool"))
            .env_remove("PLUMB_CONFIG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "plumb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_codes_and_output_pass_through_unchanged() {
    let home = Home::new();
    for (script, code) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 255", 255),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
    ] {
        let o = home.run(&["run", "--", "sh", "-c", script]);
        assert_eq!(o.status.code(), Some(code), "{script}: {}", stderr(&o));
    }
    // Binary bytes, no final newline, both streams: identical to a direct run.
    let script = "printf 'a\\000b\\377\\n'; printf 'to err' >&2; printf 'no newline'";
    let direct = Command::new("sh").args(["-c", script]).output().unwrap();
    let recorded = home.run(&["run", "--", "sh", "-c", script]);
    assert_eq!(recorded.stdout, direct.stdout);
    assert_eq!(recorded.stderr, direct.stderr);
    // And `plumb logs` replays stdout byte for byte.
    let logs = home.run(&["logs", "last", "--stream", "stdout"]);
    assert_eq!(logs.stdout, direct.stdout);
    let runs = home.json(&["ls", "--json", "--limit", "0"]);
    assert_eq!(runs.as_array().unwrap().len(), 6);
    let killed = &runs[1];
    assert_eq!(killed["state"], "killed");
    assert_eq!(killed["signal"], 9);
}

#[test]
fn stdin_is_piped_through() {
    let home = Home::new();
    let mut child = home
        .cmd(&["run", "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello plumb\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"HELLO PLUMB\n");
    let show = home.json(&["show", "last", "--json"]);
    assert_eq!(show["run"]["stdin"], "pipe");
}

#[test]
fn python_exception_is_recorded_and_searchable() {
    let home = Home::new();
    let o = home.run(&[
        "run",
        "--name",
        "parse",
        "--tag",
        "team=data",
        "--",
        "python3",
        "-c",
        "def f(x):\n    raise KeyError('missing column ' + x)\nprint('zebracorn begins')\nf('price')",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let show = home.json(&["show", "last", "--json"]);
    let ex = &show["run"]["exception"];
    assert_eq!(ex["type"], "KeyError");
    assert!(
        ex["message"]
            .as_str()
            .unwrap()
            .contains("missing column price")
    );
    assert_eq!(
        ex["frames"].as_array().unwrap().last().unwrap()["function"],
        "f"
    );
    assert_eq!(show["run"]["name"], "parse");
    assert_eq!(show["run"]["tags"]["team"], "data");
    assert!(
        show["fingerprint"]["python"]["packages"]
            .as_object()
            .is_some_and(|p| !p.is_empty())
    );

    let hits = home.json(&["search", "zebracorn", "--json"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["text"], "zebracorn begins");
    assert_eq!(hits[0]["stream"], "stdout");
    let none = home.run(&["search", "unicornzebra"]);
    assert_eq!(none.status.code(), Some(1));
    let filtered = home.json(&[
        "ls",
        "--json",
        "--failed",
        "--tag",
        "team=data",
        "--name",
        "parse",
    ]);
    assert_eq!(filtered.as_array().unwrap().len(), 1);
}

#[test]
fn secrets_never_reach_the_store_files() {
    let home = Home::new();
    let secret_env = "hunter2-env-9f8e7d";
    let secret_url = "pw-in-url-5a4b3c";
    let secret_cfg = "cfg-secret-1b2c3d";
    let cfg = home.dir.path().join("app.toml");
    std::fs::write(&cfg, format!("threads = 4\napi_key = \"{secret_cfg}\"\n")).unwrap();
    let o = home
        .cmd(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "exit 0",
        ])
        .env("DB_PASSWORD", secret_env)
        .env(
            "DATABASE_URL",
            format!("postgres://app:{secret_url}@db:5432/x"),
        )
        .env("HARMLESS", "visible-value")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let show = home.json(&["show", "last", "--json"]);
    assert_eq!(show["run"]["env"]["HARMLESS"], "visible-value");
    assert!(
        show["run"]["env"]["DB_PASSWORD"]
            .as_str()
            .unwrap()
            .starts_with("[redacted:")
    );
    assert!(
        show["run"]["config_files"][0]["content"]
            .as_str()
            .unwrap()
            .contains("threads = 4")
    );
    // Every byte of every file in the store, the WAL included.
    let mut files = vec![home.path()];
    let mut seen = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            seen += bytes.len();
            for s in [secret_env, secret_url, secret_cfg] {
                assert!(
                    memchr::memmem::find(&bytes, s.as_bytes()).is_none(),
                    "secret {s} found in {}",
                    p.display()
                );
            }
        }
    }
    assert!(
        seen > 10_000,
        "the store should hold the record ({seen} bytes read)"
    );
}

#[test]
fn two_hundred_concurrent_runs_make_two_hundred_records() {
    let home = Home::new();
    // Create the store first, as a user's first run would.
    assert!(home.run(&["run", "--", "true"]).status.success());
    let children: Vec<_> = (0..200)
        .map(|i| {
            home.cmd(&[
                "run",
                "--name",
                "par",
                "--",
                "sh",
                "-c",
                &format!("echo line-{i}; exit {}", i % 3),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, mut c) in children.into_iter().enumerate() {
        assert_eq!(c.wait().unwrap().code(), Some((i % 3) as i32));
    }
    let runs = home.json(&["ls", "--json", "--name", "par", "--limit", "0"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 200);
    assert!(runs.iter().all(|r| r["state"] != "running"));
    let ids: std::collections::BTreeSet<_> = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    let hits = home.json(&["search", "line-199", "--json"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
}

#[test]
fn an_unwritable_store_still_runs_the_job_and_spools_the_record() {
    let home = Home::new();
    assert!(home.run(&["run", "--", "true"]).status.success());
    // A store that cannot be created: tests run as root, which ignores
    // permission bits, so put the store path under a regular file.
    let blocked = home.dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"a file").unwrap();
    let o = home
        .cmd(&["run", "--", "sh", "-c", "echo still-ran; exit 7"])
        .env("PLUMB_HOME", blocked.join("store"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(o.stdout, b"still-ran\n");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "exactly one warning line: {err}");
    assert!(
        err.starts_with("plumb: warning:") && err.contains("spool"),
        "{err}"
    );
    // The spool file waits; the next command against a working store
    // imports it (the spool dir is shared through PLUMB_SPOOL).
    let spooled: Vec<_> = std::fs::read_dir(home.dir.path().join("spool"))
        .unwrap()
        .collect();
    assert_eq!(spooled.len(), 1);
    let runs = home.json(&["ls", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["exit_code"], 7);
    let logs = home.run(&["logs", "last"]);
    assert_eq!(logs.stdout, b"still-ran\n");
    assert_eq!(
        std::fs::read_dir(home.dir.path().join("spool"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn bad_run_references_get_clear_errors() {
    let home = Home::new();
    for _ in 0..2 {
        assert!(home.run(&["run", "--", "true"]).status.success());
    }
    let o = home.run(&["show", "ffffffff"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no run matches `ffffffff`"),
        "{}",
        stderr(&o)
    );
    // Both runs share their leading time digits.
    let runs = home.json(&["ls", "--json"]);
    let id = runs[0]["id"].as_str().unwrap();
    let o = home.run(&["show", &id[..4]]);
    assert!(stderr(&o).contains("is ambiguous"), "{}", stderr(&o));
    let o = home.run(&["show", "not-an-id!"]);
    assert!(
        stderr(&o).contains("is not a run reference"),
        "{}",
        stderr(&o)
    );
    let o = home.run(&["show", "last~5"]);
    assert!(
        stderr(&o).contains("no run matches `last~5`"),
        "{}",
        stderr(&o)
    );
    assert!(home.run(&["show", &id[..18]]).status.success());
    assert!(home.run(&["diff", "last", "last~1"]).status.success());
}

#[test]
fn a_missing_config_file_stops_before_running() {
    let home = Home::new();
    let marker = home.dir.path().join("ran");
    let o = home.run(&[
        "run",
        "--config",
        "/nonexistent/app.toml",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/app.toml does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists());
    let o = home.run(&["run", "--", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("cannot run `/nonexistent/program`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_foreign_file_at_the_store_path_is_refused_and_kept() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).unwrap();
    let db = home.path().join("plumb.db");
    let foreign = b"this is somebody's notes, not a database\n".repeat(100);
    std::fs::write(&db, &foreign).unwrap();
    let o = home.run(&["ls"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a plumb store"),
        "{}",
        stderr(&o)
    );
    // The job still runs; its record goes to the spool; the file is untouched.
    let o = home.run(&["run", "--", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("is not a plumb store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&db).unwrap(), foreign);

    // Another application's SQLite database is refused too.
    std::fs::remove_file(&db).unwrap();
    let status = Command::new("python3")
        .args(["-c", &format!("import sqlite3; c = sqlite3.connect('{}'); c.execute('create table notes (t)'); c.commit()", db.display())])
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(&db).unwrap();
    let o = home.run(&["ls"]);
    assert!(
        stderr(&o).contains("is not a plumb store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn bad_configuration_is_named() {
    let home = Home::new();
    let cfg = home.dir.path().join("plumb.toml");
    std::fs::write(&cfg, "output_cap = \"12 parsecs\"\n").unwrap();
    let o = home
        .cmd(&["ls"])
        .env("PLUMB_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("output_cap"), "{}", stderr(&o));
    std::fs::write(&cfg, "colour = true\n").unwrap();
    let o = home
        .cmd(&["ls"])
        .env("PLUMB_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(stderr(&o).contains("colour"), "{}", stderr(&o));
}

#[test]
fn output_over_the_cap_keeps_head_and_tail_and_counts_the_rest() {
    let home = Home::new();
    // 4 MiB of numbered lines with a 1 MiB cap.
    let o = home
        .cmd(&["run", "--", "python3", "-c", "import sys\nfor i in range(200000): sys.stdout.write(f'line {i:08d} ' + 'x' * 4 + '\\n')"])
        .env("PLUMB_OUTPUT_CAP", "1M")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 200_000 * 19);
    let show = home.json(&["show", "last", "--json"]);
    let dropped = show["run"]["output"]["dropped_bytes"].as_u64().unwrap();
    assert!(dropped >= 2 << 20, "dropped {dropped}");
    let logs = home.run(&["logs", "last"]);
    let text = String::from_utf8(logs.stdout).unwrap();
    assert!(text.starts_with("line 00000000 "));
    assert!(text.ends_with("line 00199999 xxxx\n"));
    assert!((text.len() as u64) < 2 << 20);
}

#[test]
fn logs_follow_a_live_run_until_it_ends() {
    let home = Home::new();
    assert!(home.run(&["run", "--", "true"]).status.success());
    let mut live = home
        .cmd(&[
            "run",
            "--name",
            "live",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick $i; sleep 0.6; done",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the live run is in the store, then follow it.
    let mut found = false;
    for _ in 0..100 {
        let runs = home.json(&["ls", "--json", "--name", "live"]);
        if runs.as_array().is_some_and(|a| !a.is_empty()) {
            found = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(found, "the live run never appeared");
    let follow = home.run(&["logs", "last", "--follow"]);
    assert!(live.wait().unwrap().success());
    assert_eq!(follow.stdout, b"tick 1\ntick 2\ntick 3\n");
}

/// The C program of the output-order tests: write(2) calls alternating
/// between stdout and stderr, some of them partial lines, so any reordering
/// or gluing across the streams shows.
const ALTERNATE_C: &str = r#"
#include <string.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char b[64];
    for (int i = 0; i < 300; i++) {
        int n = snprintf(b, sizeof b, "out %d\n", i);
        write(1, b, n);
        n = snprintf(b, sizeof b, "err %d\n", i);
        write(2, b, n);
        if (i % 50 == 0) {
            write(1, "par", 3);
            write(2, "tial\n", 5);
        }
    }
    return 3;
}
"#;

/// The programs of the output-order tests, as shell words: Python
/// (unbuffered), a C program compiled here with gcc, and a shell.
fn alternating_programs(dir: &std::path::Path) -> Vec<(String, String)> {
    let py = dir.join("order.py");
    std::fs::write(
        &py,
        "import sys\nfor i in range(300):\n    print('out', i)\n    print('err', i, file=sys.stderr)\n",
    )
    .unwrap();
    let c = dir.join("alternate.c");
    std::fs::write(&c, ALTERNATE_C).unwrap();
    let exe = dir.join("alternate");
    let gcc = Command::new("gcc")
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("gcc is needed for this test");
    assert!(gcc.status.success(), "gcc: {}", stderr(&gcc));
    vec![
        (
            "python".into(),
            format!("env PYTHONUNBUFFERED=1 python3 {}", py.display()),
        ),
        ("c".into(), exe.display().to_string()),
        (
            "shell".into(),
            "sh -c 'i=0; while [ $i -lt 300 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; printf end'"
                .into(),
        ),
    ]
}

/// Runs a shell command line (with its redirections) in the home's
/// directory, with the home's environment.
fn sh_line(home: &Home, line: &str) -> Output {
    let mut c = Command::new("sh");
    c.args(["-c", line])
        .env("PLUMB_HOME", home.path())
        .env("PLUMB_SPOOL", home.dir.path().join("spool"))
        .env_remove("PLUMB_CONFIG")
        .current_dir(home.dir.path())
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn output_to_one_file_or_pipe_keeps_the_order_of_both_streams() {
    let home = Home::new();
    let dir = home.dir.path().to_path_buf();
    for (what, program) in alternating_programs(&dir) {
        for (how, redirect) in [
            ("file", "> {f} 2>&1"),
            ("appending", ">> {f} 2>> {f}"),
            ("pipe", "2>&1 | cat > {f}"),
        ] {
            let direct_f = dir.join(format!("{what}-{how}-direct.txt"));
            let plumb_f = dir.join(format!("{what}-{how}-plumb.txt"));
            let d = sh_line(
                &home,
                &format!(
                    "{program} {}",
                    redirect.replace("{f}", &direct_f.display().to_string())
                ),
            );
            let p = sh_line(
                &home,
                &format!(
                    "{PLUMB} run -- {program} {}",
                    redirect.replace("{f}", &plumb_f.display().to_string())
                ),
            );
            assert_eq!(
                p.status.code(),
                d.status.code(),
                "{what} {how}: {}",
                stderr(&p)
            );
            let (direct, recorded) = (
                std::fs::read(&direct_f).unwrap(),
                std::fs::read(&plumb_f).unwrap(),
            );
            assert!(direct.len() > 3000, "{what} {how}: the program ran");
            assert_eq!(
                String::from_utf8_lossy(&recorded),
                String::from_utf8_lossy(&direct),
                "{what} {how}: byte for byte as run directly"
            );
            let run = home.json(&["show", "last", "--json"]);
            assert_eq!(run["run"]["output"]["combined"], true, "{what} {how}");
            assert_eq!(run["run"]["output"]["stdout_bytes"], direct.len());
            let logs = home.run(&["logs", "last"]);
            assert_eq!(
                logs.stdout, direct,
                "{what} {how}: plumb logs replays the same order"
            );
            // Every line is labelled combined, none is glued or half.
            let t = home.run(&["logs", "last", "--timestamps"]);
            let text = String::from_utf8_lossy(&t.stdout).into_owned();
            let direct_lines: Vec<&str> = std::str::from_utf8(&direct).unwrap().lines().collect();
            let labelled: Vec<&str> = text
                .lines()
                .map(|l| {
                    let rest = l.split_once(' ').expect("time").1;
                    rest.strip_prefix("combined ")
                        .unwrap_or_else(|| panic!("{what} {how}: {l}"))
                })
                .collect();
            assert_eq!(labelled, direct_lines, "{what} {how}");
            // Asking for one stream of a combined run says why it gets both.
            let one = home.run(&["logs", "last", "--stream", "stderr"]);
            assert_eq!(one.stdout, direct);
            assert!(stderr(&one).contains("combined"), "{}", stderr(&one));
        }
    }
    // The failure of a combined run is still parsed from its tail.
    let py = dir.join("boom.py");
    std::fs::write(&py, "print('working')\nraise ValueError('bad input 42')\n").unwrap();
    let o = sh_line(
        &home,
        &format!(
            "{PLUMB} run -- python3 {} > {}/boom.txt 2>&1",
            py.display(),
            dir.display()
        ),
    );
    assert_eq!(o.status.code(), Some(1));
    let run = home.json(&["show", "last", "--json"]);
    assert_eq!(run["run"]["output"]["combined"], true);
    assert_eq!(run["run"]["exception"]["type"], "ValueError");
}

#[test]
fn separate_files_keep_each_stream_exact_and_logs_never_glue_them() {
    let home = Home::new();
    let dir = home.dir.path().to_path_buf();
    for (what, program) in alternating_programs(&dir) {
        let d = sh_line(&home, &format!("{program} > d.out 2> d.err"));
        let p = sh_line(&home, &format!("{PLUMB} run -- {program} > p.out 2> p.err"));
        assert_eq!(p.status.code(), d.status.code(), "{what}");
        for s in ["out", "err"] {
            assert_eq!(
                std::fs::read(dir.join(format!("p.{s}"))).unwrap(),
                std::fs::read(dir.join(format!("d.{s}"))).unwrap(),
                "{what} std{s}"
            );
        }
        let run = home.json(&["show", "last", "--json"]);
        assert!(run["run"]["output"].get("combined").is_none(), "{run}");
        let logs = home.run(&["logs", "last", "--stream", "stderr"]);
        assert_eq!(
            logs.stdout,
            std::fs::read(dir.join("d.err")).unwrap(),
            "{what}"
        );
    }
    // A partial stdout line, then a stderr line, then the rest of the
    // stdout line: each labelled line holds one stream's bytes only.
    let script = "printf part; sleep 0.3; echo 'err line' >&2; sleep 0.3; echo ial";
    let p = sh_line(
        &home,
        &format!("{PLUMB} run -- sh -c \"{script}\" > p.out 2> p.err"),
    );
    assert!(p.status.success(), "{}", stderr(&p));
    assert_eq!(std::fs::read(dir.join("p.out")).unwrap(), b"partial\n");
    let t = home.run(&["logs", "last", "--timestamps"]);
    let text = String::from_utf8_lossy(&t.stdout).into_owned();
    let labelled: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let rest = l.split_once(' ').expect("time").1;
            rest.split_once(' ').unwrap_or((rest, ""))
        })
        .collect();
    assert_eq!(
        labelled,
        [
            ("stdout", "part"),
            ("stderr", "err line"),
            ("stdout", "ial")
        ],
        "{text}"
    );
}

/// Opens a pty pair for the test's own use: (master, slave).
fn openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills both descriptors.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Runs `line` through `sh -c` with stdout and stderr on one new terminal
/// and returns what the terminal showed.
fn on_terminal(home: &Home, line: &str) -> Vec<u8> {
    use std::io::Read;
    let (master, slave) = openpty();
    let mut c = Command::new("sh");
    c.args(["-c", line])
        .env("PLUMB_HOME", home.path())
        .env("PLUMB_SPOOL", home.dir.path().join("spool"))
        .env_remove("PLUMB_CONFIG")
        .current_dir(home.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = c.spawn().unwrap();
    drop(c);
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once every slave is closed.
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{line} did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    reader.join().unwrap()
}

#[test]
fn output_to_one_terminal_keeps_the_order_of_both_streams() {
    let home = Home::new();
    let dir = home.dir.path().to_path_buf();
    for (what, program) in alternating_programs(&dir) {
        let direct = on_terminal(&home, &program);
        let recorded = on_terminal(&home, &format!("{PLUMB} run -- {program}"));
        assert!(direct.len() > 3000, "{what}");
        assert_eq!(
            String::from_utf8_lossy(&recorded),
            String::from_utf8_lossy(&direct),
            "{what}: the terminal shows what it shows when run directly"
        );
        let run = home.json(&["show", "last", "--json"]);
        assert_eq!(run["run"]["output"]["combined"], true, "{what}");
        assert_eq!(run["run"]["output"]["stdout_tty"], true, "{what}");
        // The terminal turned \n into \r\n; the record has the bytes the
        // program wrote.
        let logs = home.run(&["logs", "last"]);
        assert_eq!(
            logs.stdout,
            direct
                .split(|&b| b == b'\r')
                .flatten()
                .copied()
                .collect::<Vec<u8>>(),
            "{what}"
        );
    }
}

#[test]
fn commands_that_cannot_start_are_recorded_as_failed_with_the_reason() {
    let home = Home::new();
    let o = home.run(&["run", "--tag", "k=v", "--", "/nonexistent/cmd", "--flag"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("cannot run `/nonexistent/cmd`"),
        "{}",
        stderr(&o)
    );
    let script = home.dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let o = home.run(&["run", "--", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(126));
    assert!(stderr(&o).contains("not-executable.sh"), "{}", stderr(&o));

    let runs = home.json(&["ls", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (r, code, reason) in [
        (&runs[0], 126, "Permission denied"),
        (&runs[1], 127, "No such file or directory"),
    ] {
        assert_eq!(r["state"], "failed");
        assert_eq!(r["exit_code"], code);
        assert!(r["launch_error"].as_str().unwrap().contains(reason), "{r}");
        assert_eq!(r["started"], r["ended"]);
    }
    let text = String::from_utf8(home.run(&["ls"]).stdout).unwrap();
    assert!(text.contains("cannot run `/nonexistent/cmd`"), "{text}");

    let shown = home.json(&["show", runs[1]["id"].as_str().unwrap(), "--json"]);
    let run = &shown["run"];
    assert_eq!(
        run["argv"],
        serde_json::json!(["/nonexistent/cmd", "--flag"])
    );
    assert_eq!(run["tags"]["k"], "v");
    assert_eq!(run["cwd"], home.dir.path().to_str().unwrap());
    assert!(!run["host"]["hostname"].as_str().unwrap().is_empty());
    assert!(run["env"].as_object().unwrap().contains_key("PLUMB_HOME"));
    let text = String::from_utf8(home.run(&["show", "last~1"]).stdout).unwrap();
    assert!(
        text.contains("launch    failed: cannot run `/nonexistent/cmd`: No such file"),
        "{text}"
    );
}
