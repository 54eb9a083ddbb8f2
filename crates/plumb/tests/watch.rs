//! `plumb watch DIR --throttle NAME=N -- CMD {}`: every file processed
//! exactly once across a `kill -9` and restart of plumb watch, with its
//! runs throttled fleet-wide through a real collector.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Home, Serve, signal, text, wait_for};

fn watch(home: &Home, serve: &Serve, dir: &Path, log: &Path, gate: &Path, err: &Path) -> Child {
    // The command waits (boundedly) while GATE exists, then appends the
    // file's path to LOG.
    let script = format!(
        "i=0; while [ -e {gate} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo \"$1\" >> {log}",
        gate = gate.display(),
        log = log.display()
    );
    let mut c: Command = home.cmd(&[
        "watch",
        dir.to_str().unwrap(),
        "--throttle",
        "images=2",
        "--name",
        "img",
        "--interval",
        "100ms",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
        "{}",
    ]);
    c.env("PLUMB_COLLECTOR", &serve.api)
        .env("PLUMB_TOKEN", serve.agent.as_ref().unwrap())
        .env("PLUMB_THROTTLE_TTL_MS", "2000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap());
    c.spawn().unwrap()
}

fn journal(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".plumb-watch/journal.jsonl")).unwrap_or_default()
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_file_is_processed_once_across_a_kill_and_restart() {
    let serve = Serve::builder().tokens().start();
    let home = Home::new();
    let dir = home.dir().join("in");
    std::fs::create_dir(&dir).unwrap();
    let log = home.dir().join("log");
    let gate = home.dir().join("gate");
    std::fs::write(&gate, "").unwrap();
    for f in ["a", "b", "c", ".hidden", "d.tmp", "e.part"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let mut first = watch(&home, &serve, &dir, &log, &gate, &home.dir().join("err1"));
    // Two runs start (the throttle's N); the third waits its turn here.
    wait_for("two runs started", Duration::from_secs(30), || {
        (journal(&dir).matches("\"started\"").count() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        journal(&dir).matches("\"started\"").count(),
        2,
        "at most 2 at once: {}",
        journal(&dir)
    );
    // plumb watch dies with two runs in flight: they are stopped with it
    // and never append.
    signal(first.id(), libc::SIGKILL);
    let _ = first.wait();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&gate).unwrap();
    std::fs::write(dir.join("f"), "f").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        log_lines(&log).is_empty(),
        "the killed watch's runs went on: {:?}",
        log_lines(&log)
    );
    let err2 = home.dir().join("err2");
    let mut second = watch(&home, &serve, &dir, &log, &gate, &err2);
    std::thread::sleep(Duration::from_millis(300));
    // A file written the recommended way: as .part, then renamed.
    std::fs::write(dir.join("g.part"), "g").unwrap();
    std::fs::rename(dir.join("g.part"), dir.join("g")).unwrap();
    let want = ["a", "b", "c", "f", "g"];
    wait_for("every file processed", Duration::from_secs(60), || {
        (log_lines(&log).len() >= want.len()).then_some(())
    });
    // Any repeat would come within a few polls.
    std::thread::sleep(Duration::from_millis(800));
    signal(second.id(), libc::SIGTERM);
    let status = wait_for("plumb watch to stop", Duration::from_secs(30), || {
        second.try_wait().unwrap()
    });
    let err = std::fs::read_to_string(&err2).unwrap();
    assert!(status.success(), "{status}: {err}");
    let mut got = log_lines(&log);
    got.sort();
    let expected: Vec<String> = want
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    assert_eq!(got, expected, "each file once, skipped files never");
    let j = journal(&dir);
    assert_eq!(j.matches("\"rerun\"").count(), 2, "{j}");
    assert_eq!(j.matches("\"finished\"").count(), 5, "{j}");
    assert!(err.contains("running it again"), "{err}");
    // Each run was recorded and shipped under the name given.
    let out = home
        .cmd(&["ls", "--json", "--name", "img"])
        .env("PLUMB_COLLECTOR", &serve.api)
        .env("PLUMB_TOKEN", serve.viewer.as_ref().unwrap())
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let succeeded = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "succeeded")
        .count();
    assert_eq!(succeeded, 5, "{runs}");
}

#[test]
fn bad_watch_arguments_are_clear_errors() {
    let home = Home::new();
    let file = home.dir().join("file");
    std::fs::write(&file, "").unwrap();
    for (args, says) in [
        (
            vec!["watch", "missing", "--", "true"],
            "cannot watch missing",
        ),
        (
            vec!["watch", file.to_str().unwrap(), "--", "true"],
            "not a directory",
        ),
        (vec!["watch", ".", "--jobs", "0", "--", "true"], "--jobs 0"),
        (vec!["watch", ".", "--throttle", "x=0", "--", "true"], "x=0"),
        (vec!["watch", "."], "<CMD>"),
        (
            vec!["watch", ".", "--interval", "1ms", "--", "true"],
            "at least 10ms",
        ),
    ] {
        let out = home.run(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_refused_token_or_another_n_stops_watch_before_any_file_is_taken() {
    let serve = Serve::builder().tokens().start();
    let home = Home::new();
    let dir = home.dir().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), "a").unwrap();
    let marker = home.dir().join("ran");
    let run = |token: &str, spec: &str| {
        let mut c = home.cmd(&[
            "watch",
            dir.to_str().unwrap(),
            "--throttle",
            spec,
            "--",
            "touch",
            marker.to_str().unwrap(),
        ]);
        c.env("PLUMB_COLLECTOR", &serve.api)
            .env("PLUMB_TOKEN", token);
        c.output().unwrap()
    };
    let out = run("wrong-token", "w=2");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused the token"), "{err}");
    // Another run holds `w` with N=3: a watch saying N=2 is refused.
    let agent = serve.agent.clone().unwrap();
    let held = support::http(
        &serve.api,
        "POST",
        "/api/v1/throttles/w/acquire",
        &[
            ("Authorization", &format!("Bearer {agent}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"holder":"other","slots":3}"#,
    );
    assert_eq!(held.status, 200, "{}", held.text());
    let out = run(&agent, "w=2");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("has 3 slots") && err.contains("says 2"),
        "{err}"
    );
    assert!(!marker.exists(), "nothing ran");
    assert!(
        journal(&dir).is_empty(),
        "no file was taken: {}",
        journal(&dir)
    );
}
