//! The `plumb` executable end to end: real processes, a real store in a
//! temporary directory.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use support::*;

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
    let cfg = home.dir().join("app.toml");
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
    let mut files = vec![home.store()];
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
    let blocked = home.dir().join("not-a-dir");
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
    let spooled: Vec<_> = std::fs::read_dir(home.dir().join("spool"))
        .unwrap()
        .collect();
    assert_eq!(spooled.len(), 1);
    let runs = home.json(&["ls", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["exit_code"], 7);
    let logs = home.run(&["logs", "last"]);
    assert_eq!(logs.stdout, b"still-ran\n");
    assert_eq!(
        std::fs::read_dir(home.dir().join("spool")).unwrap().count(),
        0
    );
}

#[test]
fn bad_run_references_get_clear_errors() {
    let home = Home::new();
    for _ in 0..2 {
        assert!(home.run(&["run", "--", "true"]).status.success());
    }
    // A well-formed reference that names no run is "not found" (1, as
    // grep); a malformed or ambiguous one is trouble (2).
    let o = home.run(&["show", "ffffffff"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
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
    assert_eq!(o.status.code(), Some(2));
    let o = home.run(&["show", "not-an-id!"]);
    assert_eq!(o.status.code(), Some(2));
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
    assert_eq!(o.status.code(), Some(1));
    assert!(home.run(&["show", &id[..18]]).status.success());
    assert!(home.run(&["diff", "last", &id[..18]]).status.success());
}

#[test]
fn times_and_durations_have_one_syntax_and_bad_ones_are_named() {
    let home = Home::new();
    assert!(home.run(&["run", "--", "true"]).status.success());
    // A moment is an RFC 3339 time (Z or an offset) or a duration ago.
    for since in ["2000-01-01T00:00:00Z", "2000-01-01T01:00:00+01:00", "1h30m"] {
        let o = home.run(&["ls", "--since", since]);
        assert!(o.status.success(), "--since {since}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    }
    // A time in the future matches nothing: exit 1, as grep.
    let o = home.run(&["ls", "--since", "2200-01-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Bad values are named, with what would be accepted, and exit 2.
    for (args, named) in [
        (vec!["ls", "--since", "yesterday"], "`yesterday`"),
        (vec!["ls", "--since", "2026-13-03T06:30:00Z"], "2026-13-03"),
        (vec!["errors", "--since", "soon"], "`soon`"),
        (vec!["search", "--since", "5", "x"], "`5`"),
    ] {
        let o = home.run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("--since") && err.contains(named),
            "{args:?}: {err}"
        );
    }
    // Durations need a unit everywhere: a bare 5 is refused by every flag.
    for args in [
        vec!["run", "--grace", "5", "--", "true"],
        vec!["run", "--retries", "1", "--backoff", "1..5", "--", "true"],
        vec!["agent", "--interval", "5"],
    ] {
        let o = home.run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no unit"), "{args:?}: {}", stderr(&o));
    }
    assert!(
        home.run(&["run", "--grace", "1m30s", "--", "true"])
            .status
            .success()
    );
    // The same duration reads the same in ls as on the dashboard.
    let o = home.run(&["run", "--", "sh", "-c", "sleep 0.2; kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137));
    let table = String::from_utf8_lossy(&home.run(&["ls", "--limit", "1"]).stdout).into_owned();
    assert!(table.contains("SIGKILL"), "{table}");
    assert!(
        table.contains("ms ") || table.contains(".2s") || table.contains(".3s"),
        "{table}"
    );
}

#[test]
fn exit_codes_follow_diff_and_grep() {
    let home = Home::new();
    assert!(
        home.run(&["run", "--name", "same", "--", "true"])
            .status
            .success()
    );
    // A run against itself is the same (two runs of `true` may differ in
    // the libraries sampled while they ran).
    assert_eq!(home.run(&["diff", "last", "last"]).status.code(), Some(0));
    let o = home.run(&["run", "--name", "same", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "plumb run passes the code through"
    );
    // The runs differ (exit code 3 against 0): 1, as diff(1).
    let o = home.run(&["diff", "last", "last~1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exit"));
    // Filters that match nothing: 1; a plain listing: 0.
    assert_eq!(home.run(&["ls", "--name", "nosuch"]).status.code(), Some(1));
    assert_eq!(
        home.run(&["ls", "--name", "nosuch", "--json"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(home.run(&["ls", "--name", "same"]).status.code(), Some(0));
    assert_eq!(home.run(&["search", "nosuchword"]).status.code(), Some(1));
    // A usage error is 2.
    assert_eq!(home.run(&["ls", "--bogus"]).status.code(), Some(2));
}

#[test]
fn a_missing_config_file_stops_before_running() {
    let home = Home::new();
    let marker = home.dir().join("ran");
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
    std::fs::create_dir_all(home.store()).unwrap();
    let db = home.store().join("plumb.db");
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
    let cfg = home.dir().join("plumb.toml");
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

/// What `plumb logs` prints of a run that wrote `all` under `cap`: the
/// first half of the cap, the marker on a line of its own, the last half.
pub fn capped(all: &[u8], cap: usize) -> Vec<u8> {
    let (head, tail) = (&all[..cap / 2], &all[all.len() - (cap - cap / 2)..]);
    let mut want = head.to_vec();
    if !head.ends_with(b"\n") {
        want.push(b'\n');
    }
    let dropped = (all.len() - cap) as u64;
    want.extend_from_slice(plumb_model::display::output_gap(dropped, cap as u64).as_bytes());
    want.push(b'\n');
    want.extend_from_slice(tail);
    want
}

/// Issue 13, item 4: over the cap a run keeps the first half of the cap
/// and the last half, to the byte, and `logs` marks the gap in its place.
#[test]
fn output_over_the_cap_keeps_head_and_tail_to_the_byte_and_marks_the_gap() {
    let home = Home::new();
    // 3.8 MB of numbered lines under a 1 MiB cap; the head ends mid-line.
    let script =
        "import sys\nfor i in range(200000): sys.stdout.write(f'line {i:08d} ' + 'x' * 4 + '\\n')";
    let o = home
        .cmd(&["run", "--", "python3", "-c", script])
        .env("PLUMB_OUTPUT_CAP", "1M")
        .output()
        .unwrap();
    assert!(o.status.success());
    let all = o.stdout;
    assert_eq!(all.len(), 200_000 * 19, "the program's own output is whole");
    let show = home.json(&["show", "last", "--json"]);
    let output = &show["run"]["output"];
    assert_eq!(output["dropped_bytes"], all.len() as u64 - (1 << 20));
    assert_eq!(output["gap"]["dropped"], all.len() as u64 - (1 << 20));
    let logs = home.run(&["logs", "last"]);
    assert!(logs.status.success());
    let want = capped(&all, 1 << 20);
    assert!(
        logs.stdout == want,
        "logs gave {} bytes, expected {}; around the gap: {:?}",
        logs.stdout.len(),
        want.len(),
        String::from_utf8_lossy(&logs.stdout[(1 << 19) - 40..(1 << 19) + 200])
    );
    // Timestamps keep the marker on its own line too.
    let stamped = String::from_utf8(home.run(&["logs", "last", "--timestamps"]).stdout).unwrap();
    let marker: Vec<&str> = stamped
        .lines()
        .filter(|l| l.starts_with("[plumb: "))
        .collect();
    assert_eq!(marker.len(), 1, "one marker");
    // Search covers what was kept, and says where output was dropped.
    let hit = home.run(&["search", "00199999"]);
    assert_eq!(hit.status.code(), Some(0));
    assert!(
        stderr(&hit).contains("dropped 2.6 MiB of output over its cap of 1.0 MiB"),
        "{}",
        stderr(&hit)
    );
    let miss = home.run(&["search", "00100000"]);
    assert_eq!(miss.status.code(), Some(1), "the middle was dropped");
}

/// The same cap when the store cannot be written and the run is spooled:
/// the import settles it, exactly as a run written to the store.
#[test]
fn a_spooled_run_over_the_cap_is_capped_to_the_byte_when_imported() {
    let home = Home::new();
    assert!(home.run(&["run", "--", "true"]).status.success());
    let blocked = home.dir().join("not-a-dir");
    std::fs::write(&blocked, b"a file").unwrap();
    // Both streams, to separate pipes: the cap counts them together.
    let script = "import sys\nfor i in range(50000):\n    (sys.stdout if i % 3 else sys.stderr).write(f'{i} ' * 3 + '\\n')";
    let o = home
        .cmd(&["run", "--", "python3", "-u", "-c", script])
        .env("PLUMB_HOME", blocked.join("store"))
        .env("PLUMB_OUTPUT_CAP", "64K")
        .output()
        .unwrap();
    assert!(o.status.success());
    // What the program wrote: its stdout, and its stderr without plumb's
    // warning that the store could not be written.
    let own_stderr: usize = o
        .stderr
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| !l.starts_with(b"plumb:"))
        .map(|l| l.len())
        .sum();
    let written = o.stdout.len() + own_stderr;
    let text = home.run(&["logs", "last"]).stdout;
    let marker = plumb_model::display::output_gap((written - (64 << 10)) as u64, 64 << 10);
    let at = text
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap_or_else(|| panic!("no marker `{marker}` in {} bytes", text.len()));
    // The head is half the cap (plus the newline plumb puts before the
    // marker when the head ends mid-line); the tail the other half.
    let (before, after) = (&text[..at], &text[at + marker.len() + 1..]);
    assert!(
        before.len() == 32 << 10 || (before.len() == (32 << 10) + 1 && before.ends_with(b"\n")),
        "head of {} bytes",
        before.len()
    );
    assert_eq!(after.len(), 32 << 10, "tail bytes");
    let show = home.json(&["show", "last", "--json"]);
    assert_eq!(
        show["run"]["output"]["dropped_bytes"],
        (written - (64 << 10)) as u64
    );
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
        // `ls` with a filter that matches nothing yet exits 1 (as grep).
        let o = home.run(&["ls", "--json", "--name", "live"]);
        let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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

/// Issue 13, item 8: one documented meaning of a search, whatever the
/// chunking. A run prints 30,000 lines, enough for several chunks.
#[test]
fn search_means_whole_words_phrases_substrings_or_regexes() {
    let home = Home::new();
    let script = "for i in $(seq 0 29999); do echo \"line $i widget-$((i % 100)) ok\"; done; \
                  echo 'warning: disk slow' >&2";
    let o = home.run(&["run", "--", "sh", "-c", script]);
    assert!(o.status.success(), "{}", stderr(&o));
    let count = |args: &[&str]| -> usize {
        let mut all = vec!["search", "--limit", "0", "--json"];
        all.extend_from_slice(args);
        let out = home.run(&all);
        if out.status.code() == Some(1) {
            return 0;
        }
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    // widget-5 is the words `widget` `5` in sequence: not widget-50..59.
    assert_eq!(count(&["widget-5"]), 300);
    // Words in any order, with punctuation between them.
    assert_eq!(count(&["disk warning"]), 1);
    assert_eq!(count(&["\"warning disk\""]), 1);
    assert_eq!(count(&["\"disk warning\""]), 0);
    // Whole words: `line 1943` is that line only (in any order, `line 19`
    // also finds every `widget-19`); substrings are grep's.
    assert_eq!(count(&["line 1943"]), 1);
    assert_eq!(count(&["line 19"]), 300);
    assert_eq!(count(&["\"line 19\""]), 1);
    assert_eq!(count(&["--substring", "line 19"]), 1111);
    assert_eq!(count(&["--substring", "line 1943 "]), 1);
    assert_eq!(count(&["--substring", "LINE 19"]), 0);
    assert_eq!(count(&["--substring", "-i", "LINE 19"]), 1111);
    assert_eq!(count(&["--regex", "^line 2999[0-9] "]), 10);
    // Issue 13, item 9: `kind:` qualifiers at either end, in one argument
    // or several; program output is kind `output`.
    assert_eq!(count(&["kind:output", "disk warning"]), 1);
    assert_eq!(count(&["disk warning kind:output"]), 1);
    assert_eq!(count(&["kind:log,span disk warning"]), 0);
    assert_eq!(count(&["--substring", "kind:output line 1943 "]), 1);
    // Bad queries are named, exit 2.
    for bad in [&["--", "..."][..], &["\"open"], &["--regex", "("]] {
        let mut args = vec!["search"];
        args.extend_from_slice(bad);
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&out).contains("search"), "{bad:?}: {}", stderr(&out));
    }
    for (bad, named) in [
        (&["kind:metric", "disk"][..], "unknown kind `metric`"),
        (&["--stream", "stderr", "kind:log", "disk"], "--stream"),
    ] {
        let mut args = vec!["search"];
        args.extend_from_slice(bad);
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&out).contains(named), "{bad:?}: {}", stderr(&out));
    }
}

/// A program printing 6,001 lines of 791 random hex digits (4.8 MB that
/// does not compress): more than a 2 MB disk holds.
const BIG_OUTPUT: &str = "import random\nrandom.seed(7)\nfor i in range(6001): print(f'line {i:05d} ' + '%0780x' % random.getrandbits(3120))";

/// The spool file a warning names, if it names one.
fn spool_named(warning: &str) -> Option<PathBuf> {
    let at = warning.find("recording to spool ")? + "recording to spool ".len();
    let rest = &warning[at..];
    Some(PathBuf::from(&rest[..rest.find(" (")?]))
}

/// Issue 13, item 2: a disk that fills during the run, and one full before
/// it: every byte is stored once space is back, the warning names the file
/// that holds the records, and nothing is renamed `.bad`.
#[test]
fn a_full_disk_loses_no_output_and_the_warning_names_the_real_spool() {
    for full_before in [false, true] {
        let disk = Tmpfs::mount("2m");
        let runtime = tempfile::tempdir().unwrap();
        let home = disk.path().join("home");
        let cmd = |args: &[&str]| {
            let mut c = plumb();
            c.args(args)
                .env("PLUMB_HOME", &home)
                .env("XDG_RUNTIME_DIR", runtime.path())
                .current_dir(runtime.path())
                .stdin(Stdio::null());
            c
        };
        assert!(
            cmd(&["run", "--", "true"])
                .output()
                .unwrap()
                .status
                .success()
        );
        let filler = disk.path().join("filler");
        if full_before {
            let _ = Command::new("dd")
                .args(["if=/dev/zero", "bs=64k"])
                .arg(format!("of={}", filler.display()))
                .output();
        }
        let direct = Command::new("python3")
            .args(["-c", BIG_OUTPUT])
            .output()
            .unwrap();
        let o = cmd(&["run", "--name", "big", "--", "python3", "-c", BIG_OUTPUT])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(
            o.stdout, direct.stdout,
            "the program's output passes through"
        );
        let err = stderr(&o);
        let spool = spool_named(&err).unwrap_or_else(|| panic!("no spool named: {err}"));
        let len = std::fs::metadata(&spool)
            .unwrap_or_else(|e| panic!("the warning names {}: {e}\n{err}", spool.display()))
            .len();
        assert!(len > 0, "{} is empty", spool.display());
        assert!(spool.starts_with(runtime.path()), "{err}");
        // Space comes back; the next command imports the spool whole.
        let _ = std::fs::remove_file(&filler);
        disk.resize("64m");
        let logs = cmd(&["logs", "last"]).output().unwrap();
        assert_eq!(
            logs.stdout.len(),
            direct.stdout.len(),
            "full before: {full_before}: {}",
            stderr(&logs)
        );
        assert!(logs.stdout == direct.stdout, "stored byte for byte");
        let show: serde_json::Value =
            serde_json::from_slice(&cmd(&["show", "last", "--json"]).output().unwrap().stdout)
                .unwrap();
        assert_eq!(show["run"]["name"], "big");
        assert_eq!(show["run"]["output"]["lines"], 6001);
        assert_eq!(show["run"]["output"]["dropped_bytes"], 0);
        let bad: Vec<_> = walk(disk.path())
            .into_iter()
            .chain(walk(runtime.path()))
            .filter(|p| p.to_string_lossy().ends_with(".bad"))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }
}

/// Every file under `dir` (directories left out).
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    walk_all(dir).into_iter().filter(|p| !p.is_dir()).collect()
}

/// Issue 13, item 3: a fallback spool outside the store belongs to that
/// store; another store's commands never import it.
#[test]
fn a_fallback_spool_is_imported_only_into_its_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let cmd = |home: &std::path::Path, args: &[&str]| {
        let mut c = plumb();
        c.args(args)
            .env("PLUMB_HOME", home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .current_dir(dir.path())
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    assert!(cmd(&a, &["run", "--", "true"]).status.success());
    assert!(cmd(&b, &["run", "--", "true"]).status.success());
    // Store a cannot be written, nor its spool directory: as root,
    // permissions stop nothing, so a file stands in the store's place.
    let saved = dir.path().join("a.saved");
    std::fs::rename(&a, &saved).unwrap();
    std::fs::write(&a, b"not a directory").unwrap();
    let o = cmd(&a, &["run", "--", "echo", "for-a"]);
    assert!(o.status.success());
    let spool = spool_named(&stderr(&o)).unwrap_or_else(|| panic!("{}", stderr(&o)));
    assert!(
        spool.starts_with(runtime.join("plumb-spool")),
        "{}",
        spool.display()
    );
    // Store b's commands leave it alone.
    let ls = cmd(&b, &["ls", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ls.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(spool.exists(), "store b imported store a's spool");
    // Store a, repaired, imports it.
    std::fs::remove_file(&a).unwrap();
    std::fs::rename(&saved, &a).unwrap();
    let ls = cmd(&a, &["ls", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{}", stderr(&ls));
    assert_eq!(runs[0]["name"], "echo");
    assert!(!spool.exists());
}

/// Issue 13, items 11 and 12: a reader that goes away ends plumb quietly,
/// and plumb's own warnings carry no colour off a terminal and say `plumb:`.
#[test]
fn closed_pipes_end_quietly_and_warnings_are_plain() {
    let home = Home::new();
    let o = home.run(&["run", "--", "seq", "1", "200000"]);
    assert!(o.status.success());
    for reader in [
        "logs last | head -1",
        "search --substring 1 --limit 0 | head -1",
        "ls --limit 0 | head -1",
        "show last | head -1",
    ] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "\"$PLUMB\" {reader}; echo \"status ${{PIPESTATUS:-x}}\" >&2"
            ))
            .env("PLUMB", PLUMB)
            .env("PLUMB_HOME", home.store())
            .env("PLUMB_SPOOL", home.dir().join("spool"))
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{reader}: {err}"
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).lines().count(),
            1,
            "{reader}"
        );
    }
    // An unreadable spool file makes the next command warn: one plain line.
    std::fs::create_dir_all(home.dir().join("spool")).unwrap();
    std::fs::write(home.dir().join("spool").join("x.spool"), b"").unwrap();
    let o = home.run(&["ls"]);
    let err = stderr(&o);
    assert!(err.starts_with("plumb: warning: "), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// Issue 21, item 4: under the usual umask 022, nothing plumb writes to a
/// store (database, WAL, shared memory, fingerprint cache, spool, outbox)
/// can be read by another user.
#[test]
fn store_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let run = |extra: &[(&str, &str)], script: &str| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("umask 022; exec \"$PLUMB\" {script}"))
            .env("PLUMB", PLUMB)
            .env("PLUMB_HOME", &home)
            .env("XDG_RUNTIME_DIR", dir.path().join("runtime"))
            .env("MYSQL_PWD", "hunter2-private")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    assert!(run(&[], "run -- sh -c 'echo recorded'").status.success());
    // With a collector that is away, the run waits in the outbox.
    let o = run(
        &[
            ("PLUMB_COLLECTOR", "http://127.0.0.1:9"),
            ("PLUMB_SHIP_TIMEOUT", "1s"),
        ],
        "run -- echo shipped-later",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut seen = 0;
    let mut check = |p: &std::path::Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert_eq!(
            m.mode() & 0o077,
            0,
            "{} has mode {:o}",
            p.display(),
            m.mode() & 0o777
        );
        seen += 1;
    };
    check(&home);
    for p in walk_all(&home) {
        check(&p);
    }
    assert!(seen >= 6, "only {seen} paths checked");
    for name in ["plumb.db", "cache"] {
        assert!(home.join(name).exists(), "{name}");
    }
}

/// Whether `user` can read `path` (`cat` a file, `ls` a directory), as
/// that user, through `runuser`.
fn readable_by(user: &str, path: &std::path::Path) -> bool {
    let tool = if path.is_dir() { "ls" } else { "cat" };
    Command::new("runuser")
        .args(["-u", user, "--", tool])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Issue 21, item 4, with a real second user: under umask 022, `nobody`
/// cannot read the store, its database and WAL, the fingerprint cache, the
/// outbox and its spool files, nor the fallback spool in /tmp, even where
/// the directories above are opened to everyone; a fallback directory
/// that `nobody` prepared, or that anyone may write, is refused with a
/// warning naming it.
#[test]
fn a_second_user_reads_no_file_plumb_writes() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let runuser = Command::new("runuser").arg("--help").output().is_ok();
    if !root || !runuser {
        eprintln!(
            "skipped: needs root and runuser to act as a second user (root: {root}, runuser: {runuser})"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Opened to everyone, so only the modes plumb chose stand between
    // `nobody` and the files.
    let open_up = |p: &std::path::Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap()
    };
    open_up(dir.path());
    let home = dir.path().join("home");
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    open_up(&runtime);
    let run = |home: &std::path::Path, extra: &[(&str, &str)], script: &str| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("umask 022; exec \"$PLUMB\" {script}"))
            .env("PLUMB", PLUMB)
            .env("PLUMB_HOME", home)
            .env_remove("XDG_RUNTIME_DIR")
            .env("MYSQL_PWD", "hunter2-private")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    assert!(
        run(&home, &[], "run -- sh -c 'echo recorded'")
            .status
            .success()
    );
    let o = run(
        &home,
        &[("PLUMB_COLLECTOR", "http://127.0.0.1:9")],
        "run -- echo shipped-later",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // A store that cannot be written: the run goes to the fallback spool
    // in /tmp (as root, permissions stop nothing, so a file stands in the
    // store's place).
    let broken = dir.path().join("broken");
    std::fs::write(&broken, b"not a directory").unwrap();
    let o = run(&broken, &[], "run -- echo spooled-in-tmp");
    assert!(o.status.success(), "{}", stderr(&o));
    let spool = spool_named(&stderr(&o)).unwrap_or_else(|| panic!("{}", stderr(&o)));
    assert!(
        spool.starts_with("/tmp/plumb-spool-0/"),
        "{}",
        spool.display()
    );
    let spool_dir = spool.parent().unwrap().to_path_buf();

    let mut paths = vec![home.clone()];
    paths.extend(walk_all(&home));
    paths.extend([spool_dir.clone(), spool.clone()]);
    for name in ["plumb.db", "cache", "outbox"] {
        assert!(paths.contains(&home.join(name)), "{name} was not written");
    }
    assert!(
        paths
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "spool")),
        "no spool file in {paths:?}"
    );
    for p in &paths {
        assert!(!readable_by("nobody", p), "nobody reads {}", p.display());
    }
    // Even with every directory opened up (the shared /tmp/plumb-spool-0
    // only to be passed through, for a moment), the files stay unreadable.
    let tmp_parent = spool_dir.parent().unwrap();
    std::fs::set_permissions(tmp_parent, std::fs::Permissions::from_mode(0o711)).unwrap();
    for p in &paths {
        if p.is_dir() {
            open_up(p);
        }
    }
    let readable: Vec<_> = paths
        .iter()
        .filter(|p| p.is_file() && readable_by("nobody", p))
        .collect();
    std::fs::set_permissions(tmp_parent, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(readable.is_empty(), "nobody reads {readable:?}");
    std::fs::remove_dir_all(&spool_dir).unwrap();

    // A fallback directory `nobody` made first, then one anyone may
    // write: each is refused, named, and the run goes elsewhere.
    let trap = runtime.join("plumb-spool");
    let made = Command::new("runuser")
        .args(["-u", "nobody", "--", "mkdir", "-m", "0777"])
        .arg(&trap)
        .status()
        .unwrap();
    assert!(made.success());
    let o = run(
        &broken,
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
        "run -- echo not-in-the-trap",
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "plumb: warning: {} belongs to uid 65534",
            trap.display()
        )),
        "{err}"
    );
    let spool = spool_named(&err).unwrap_or_else(|| panic!("{err}"));
    assert!(!spool.starts_with(&trap), "{}", spool.display());
    std::fs::remove_dir_all(spool.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(&trap).unwrap();
    std::fs::create_dir(&trap).unwrap();
    open_up(&trap);
    let o = run(
        &broken,
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
        "run -- echo not-in-the-open-one",
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "plumb: warning: {} may be written by other users (mode 777)",
            trap.display()
        )),
        "{err}"
    );
    let spool = spool_named(&err).unwrap_or_else(|| panic!("{err}"));
    assert!(!spool.starts_with(&trap), "{}", spool.display());
    std::fs::remove_dir_all(spool.parent().unwrap()).unwrap();
}

/// Issue 21, item 4: a store left readable by an older plumb or a loose
/// umask is made private by the next command, which says so, naming each
/// file; the command after says nothing.
#[test]
fn a_store_with_loose_modes_is_reported_and_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    assert!(home.run(&["run", "--", "true"]).status.success());
    let db = home.store().join("plumb.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(home.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = home.run(&["ls"]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "plumb: warning: {} was readable by other users (mode 644); made it private (600)",
            db.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "plumb: warning: {} was readable by other users (mode 755); made it private (700)",
            home.store().display()
        )),
        "{err}"
    );
    let o = home.run(&["ls"]);
    assert!(
        !stderr(&o).contains("readable by other users"),
        "{}",
        stderr(&o)
    );
}

fn walk_all(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk_all(&p));
        }
    }
    out
}

/// Issue 21, item 5: one secret of each kind, planted in the environment,
/// the command line, tags, a configuration file, the exception message and
/// the run name, reaches neither the store (WAL included) nor a spool file.
#[test]
fn planted_secrets_reach_no_file_plumb_writes() {
    let home = Home::new();
    let secrets = [
        "mysql-pwd-71x",
        "sshpass-72x",
        "pgpass-73x",
        "dbpass-74x",
        "jdbcpw-75x",
        "AzureKey76x",
        "PemBody77x",
        "urlkey0123456789x78",
        "hf_abcdefghijklmnopqrstu79x",
        "sk_live_abcdefghijklmn80x",
        "hooks81x",
        "kubedata82x",
        "argvpw-83x",
        "bearer0123456789abc84x",
        "tagtoken-85x",
        "tagurlpw-86x",
        "namepw-88x",
    ];
    let cfg = home.dir().join("app.json");
    std::fs::write(
        &cfg,
        "{\"tls\": \"-----BEGIN PRIVATE KEY-----\\nPemBody77x\\n-----END PRIVATE KEY-----\"}",
    )
    .unwrap();
    let script =
        "import sys\nraise RuntimeError('cannot connect to postgres://app:excpw-87x@db/x')";
    let mut c = home.cmd(&[
        "run",
        "--name",
        "job password=namepw-88x",
        "--tag",
        "token=tagtoken-85x",
        "--tag",
        "db=postgres://u:tagurlpw-86x@h/x",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        script,
        "--password=argvpw-83x",
        "Authorization: Bearer bearer0123456789abc84x",
    ]);
    for (k, v) in [
        ("MYSQL_PWD", "mysql-pwd-71x"),
        ("SSHPASS", "sshpass-72x"),
        ("PGPASS", "pgpass-73x"),
        ("DB_PASS", "dbpass-74x"),
        ("JDBC_URL", "jdbc:pg://h/db?password=jdbcpw-75x"),
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=a;AccountKey=AzureKey76x;x=y",
        ),
        (
            "UPSTREAM",
            "https://urlkey0123456789x78@api.example.invalid/",
        ),
        ("HF_X", "hf_abcdefghijklmnopqrstu79x"),
        ("PAY", "sk_live_abcdefghijklmn80x"),
        ("SLACK_WEBHOOK_URL", "https://example.invalid/hooks81x"),
        ("KUBECONFIG_DATA", "kubedata82x"),
    ] {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let show = home.json(&["show", "last", "--json"]);
    assert_eq!(show["run"]["exception"]["type"], "RuntimeError");
    // The exception's message is redacted; the output it was parsed from
    // stays as the program wrote it (so that secret is not grepped for).
    let message = show["run"]["exception"]["message"].as_str().unwrap();
    assert!(
        !message.contains("excpw-87x") && message.contains("[redacted:"),
        "{message}"
    );
    // The same run once more into a spool (the store unusable).
    let blocked = home.dir().join("blocked");
    std::fs::write(&blocked, b"file").unwrap();
    let o2 = c.env("PLUMB_HOME", blocked.join("store")).output().unwrap();
    assert!(stderr(&o2).contains("spool"), "{}", stderr(&o2));
    let mut seen = 0;
    for p in walk_all(home.dir()) {
        if p.is_dir() || p == cfg {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        seen += 1;
        for s in secrets {
            assert!(
                memchr::memmem::find(&bytes, s.as_bytes()).is_none(),
                "{s} found in {}",
                p.display()
            );
        }
    }
    assert!(seen >= 3);
    assert!(
        walk_all(&home.dir().join("spool"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".spool"))
    );
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
        .env("PLUMB_HOME", home.store())
        .env("PLUMB_SPOOL", home.dir().join("spool"))
        .current_dir(home.dir())
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn output_to_one_file_or_pipe_keeps_the_order_of_both_streams() {
    let home = Home::new();
    let dir = home.dir().to_path_buf();
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
    let dir = home.dir().to_path_buf();
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
        .env("PLUMB_HOME", home.store())
        .env("PLUMB_SPOOL", home.dir().join("spool"))
        .current_dir(home.dir())
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
    let dir = home.dir().to_path_buf();
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
    let script = home.dir().join("not-executable.sh");
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
    assert_eq!(run["cwd"], home.dir().to_str().unwrap());
    assert!(!run["host"]["hostname"].as_str().unwrap().is_empty());
    assert!(run["env"].as_object().unwrap().contains_key("PLUMB_HOME"));
    let text = String::from_utf8(home.run(&["show", "last~1"]).stdout).unwrap();
    assert!(
        text.contains("launch    failed: cannot run `/nonexistent/cmd`: No such file"),
        "{text}"
    );
}

/// Issue 21, item 6: a run name holding terminal escapes (window title,
/// clear screen, clipboard write) prints as text in `ls` and `show`.
#[test]
fn terminal_escapes_in_recorded_text_print_as_text() {
    let home = Home::new();
    let evil = "job\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}";
    let o = home.run(&[
        "run",
        "--name",
        evil,
        "--tag",
        "t=\u{1b}[31mred",
        "--",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [&["ls"][..], &["show", "last"]] {
        let out = home.run(args);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?}: {text:?}"
        );
        assert!(text.contains("job\\u{1b}]0;pwned"), "{args:?}: {text}");
    }
    // JSON keeps the value exactly (escaped as JSON escapes it).
    let runs = home.json(&["ls", "--json"]);
    assert_eq!(runs[0]["name"], evil);
}

#[test]
fn helps_name_the_collector_alike_and_token_says_it_revokes() {
    let home = Home::new();
    for cmd in [
        "ls", "show", "search", "errors", "slow", "nodes", "alerts", "agent",
    ] {
        let help = String::from_utf8_lossy(&home.run(&[cmd, "--help"]).stdout).into_owned();
        assert!(
            help.contains("--collector <URL>"),
            "plumb {cmd} --help: {help}"
        );
        assert!(!help.contains("<COLLECTOR>"), "plumb {cmd} --help: {help}");
    }
    let help = String::from_utf8_lossy(&home.run(&["--help"]).stdout).into_owned();
    let token = help
        .lines()
        .find(|l| l.trim_start().starts_with("token"))
        .unwrap();
    assert!(token.contains("revoke"), "{token}");
}
