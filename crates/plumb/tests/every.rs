//! `plumb every`, end to end: the real binary starting real `plumb run`
//! processes on a schedule, into a real store.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::*;

/// Runs `c` to its end, at most `limit` (then kills it and fails).
fn run_bounded(mut c: Command, limit: Duration) -> (ExitStatus, String) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = stderr_lines(&mut child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("plumb every did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, drain(&stderr).join("\n"))
}

/// Every line still to come from an ended process's stderr, up to the end
/// of the pipe (waiting at most 10 s for each).
fn drain(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut text = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => text.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return text,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("stderr still open: {text:?}"),
        }
    }
}

/// The child's stderr, line by line, read on a thread.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every recorded run, oldest first, in full.
fn runs(home: &Home) -> Vec<serde_json::Value> {
    let list = home.json(&["ls", "--json", "--limit", "0"]);
    let mut runs: Vec<serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| home.json(&["show", "--json", r["id"].as_str().unwrap()])["run"].clone())
        .collect();
    runs.sort_by_key(|r| r["started"].as_i64().unwrap());
    runs
}

#[test]
fn each_tick_is_a_recorded_run() {
    let home = Home::new();
    let (status, stderr) = run_bounded(
        home.cmd(&["every", "2s", "--count", "3", "--", "sh", "-c", "echo tick"]),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stderr.matches("plumb: next `sh` at ").count(),
        3,
        "{stderr}"
    );
    let runs = runs(&home);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    // The name `plumb run` gives the same command.
    let other = Home::new();
    ok(
        other.run(&["run", "--", "sh", "-c", "echo tick"]),
        "plumb run",
    );
    let name = other.json(&["ls", "--json"])[0]["name"].clone();
    for r in &runs {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["name"], name);
        assert_eq!(r["argv"], serde_json::json!(["sh", "-c", "echo tick"]));
        let out = ok(home.run(&["logs", r["id"].as_str().unwrap()]), "plumb logs");
        assert_eq!(text(&out.stdout), "tick\n");
    }
    // One start per tick: three different seconds.
    let mut secs: Vec<i64> = runs
        .iter()
        .map(|r| r["started"].as_i64().unwrap() / 1_000_000_000)
        .collect();
    secs.dedup();
    assert_eq!(secs.len(), 3, "{secs:?}");
}

#[test]
fn an_overlapping_start_is_skipped_and_recorded_never_stacked() {
    let home = Home::new();
    let (status, stderr) = run_bounded(
        home.cmd(&[
            "every", "1s", "--count", "4", "--name", "slow", "--", "sleep", "2.5",
        ]),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}: {stderr}");
    let runs = runs(&home);
    assert_eq!(runs.len(), 4, "a record per tick: {runs:#?}");
    let (ran, skipped): (Vec<_>, Vec<_>) = runs.iter().partition(|r| r["state"] != "cancelled");
    assert!(
        !skipped.is_empty(),
        "sleep 2.5 every 1s must skip: {runs:#?}"
    );
    assert!(!ran.is_empty());
    for r in &ran {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["name"], "slow");
    }
    // Never two at once.
    for pair in ran.windows(2) {
        assert!(
            pair[0]["ended"].as_i64().unwrap() <= pair[1]["started"].as_i64().unwrap(),
            "runs overlap: {pair:#?}"
        );
    }
    for s in &skipped {
        assert_eq!(s["name"], "slow");
        assert_eq!(s["argv"], serde_json::json!(["sleep", "2.5"]));
        assert_eq!(s["waiting"]["kind"], "overlap", "{s:#}");
        let reason = s["waiting"]["reason"].as_str().unwrap();
        assert!(reason.starts_with("skipped: previous run "), "{reason}");
        // It names the run that was still running, and that run was.
        let blocker = ran
            .iter()
            .find(|r| reason.contains(r["id"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{reason} names no recorded run"));
        let at = s["waiting"]["since"].as_i64().unwrap();
        assert!(
            blocker["started"].as_i64().unwrap() <= at,
            "{s:#}\n{blocker:#}"
        );
        assert!(
            at <= blocker["ended"].as_i64().unwrap(),
            "{s:#}\n{blocker:#}"
        );
        assert!(
            stderr.contains(&format!("recorded as run {}", s["id"].as_str().unwrap())),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!(
            "{} runs started, {} start",
            ran.len(),
            skipped.len()
        )) || stderr.contains(&format!("{} run started", ran.len())),
        "{stderr}"
    );
    // `plumb show` says why in words.
    let shown = ok(
        home.run(&["show", skipped[0]["id"].as_str().unwrap()]),
        "plumb show",
    );
    assert!(text(&shown.stdout).contains("still running"));
}

/// Starts `plumb every ARGS -- true`, returns its first `next` line, then
/// stops it with SIGTERM and checks it ended as a terminated command.
fn first_next_line(home: &Home, args: &[&str]) -> String {
    first_next_line_then(home, args, libc::SIGTERM, 143)
}

/// [`first_next_line`], stopped with `sig`, which must exit with `code`.
fn first_next_line_then(home: &Home, args: &[&str], sig: i32, code: i32) -> String {
    let mut all = vec!["every"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "true"]);
    let mut child = home
        .cmd(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let line = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("a `next` line on stderr");
    signal(child.id(), sig);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "plumb every ignored signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(code), "{line}");
    line
}

#[test]
fn a_cron_schedule_waits_for_its_next_minute_in_utc() {
    let home = Home::new();
    let before = plumb_model::Timestamp::now();
    // Interrupted as Ctrl-C would: 130, and nothing recorded.
    let line = first_next_line_then(
        &home,
        &["--at", "*/5 * * * *", "--name", "five"],
        libc::SIGINT,
        130,
    );
    let after = plumb_model::Timestamp::now();
    let at = line
        .strip_prefix("plumb: next `five` at ")
        .unwrap_or_else(|| panic!("{line}"));
    let at = plumb_model::Timestamp::parse_rfc3339(at).unwrap();
    let cron = plumb_model::schedule::Cron::parse("*/5 * * * *").unwrap();
    // The next five-minute boundary after the start (which lies between
    // `before` and `after`).
    assert!(
        [cron.next_after(before), cron.next_after(after)].contains(&Some(at)),
        "{line}"
    );
    assert_eq!(at.as_nanos() % 300_000_000_000, 0, "{line}");
    assert!(!home.store().exists());
}

#[test]
fn stable_splay_is_the_same_offset_every_time() {
    let home = Home::new();
    let args = [
        "1h",
        "--stable-splay",
        "--host-id",
        "host-042",
        "--name",
        "nightly",
    ];
    let a = first_next_line(&home, &args);
    let b = first_next_line(&home, &args);
    let splay = |line: &str| {
        let start = line
            .find("(stable splay ")
            .unwrap_or_else(|| panic!("{line}"));
        line[start..].to_string()
    };
    assert_eq!(splay(&a), splay(&b));
    // The printed start is the hour plus the offset of this host and job.
    let expected = plumb_model::schedule::stable_splay("host-042", "nightly", 3_600_000_000_000);
    for line in [&a, &b] {
        let at = line
            .strip_prefix("plumb: next `nightly` at ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{line}"));
        let ns = plumb_model::Timestamp::parse_rfc3339(at)
            .unwrap()
            .as_nanos();
        assert_eq!(
            ns.rem_euclid(3_600_000_000_000),
            expected / 1_000_000 * 1_000_000,
            "{line}"
        );
    }
    // Another host of the fleet gets another offset.
    let other = first_next_line(
        &home,
        &[
            "1h",
            "--stable-splay",
            "--host-id",
            "host-043",
            "--name",
            "nightly",
        ],
    );
    assert_ne!(splay(&a), splay(&other));
    // Stopped while waiting: nothing was started or recorded.
    assert!(!home.store().exists());
}

#[test]
fn sigterm_is_forwarded_to_the_running_run_and_nothing_more_starts() {
    let home = Home::new();
    let mut child = home
        .cmd(&["every", "1s", "--name", "long", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    // Wait until the run is recorded as running.
    wait_for("a running run", Duration::from_secs(30), || {
        if !home.store().exists() {
            return None;
        }
        let l = home.json(&["ls", "--json"]);
        (l.as_array()?.iter().any(|r| r["state"] == "running")).then_some(())
    });
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "plumb every ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(143));
    let runs = runs(&home);
    let ran: Vec<_> = runs.iter().filter(|r| r["state"] != "cancelled").collect();
    assert_eq!(ran.len(), 1, "{runs:#?}");
    assert_eq!(ran[0]["state"], "killed", "{:#}", ran[0]);
    let text = drain(&lines);
    assert!(
        text.iter().any(|l| l.contains("stopping `long`")),
        "{text:?}"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_recorded() {
    let cases: &[(&[&str], &str)] = &[
        (&["0s", "--", "true"], "interval `0s` is zero"),
        (&["5x", "--", "true"], "unknown duration unit `x`"),
        (&["500ms", "--", "true"], "shorter than 1s"),
        (
            &["--at", "61 * * * *", "--", "true"],
            "minute field `61`: 61 is out of range 0-59",
        ),
        (
            &["--at", "* * * jan-foo *", "--", "true"],
            "month field `jan-foo`",
        ),
        (&["--at", "*/5 * * *", "--", "true"], "has 4 fields"),
        (&["--at", "0 0 30 2 *", "--", "true"], "matches no day"),
        (
            &["1m", "--at", "* * * * *", "--", "true"],
            "an INTERVAL or --at CRON, not both",
        ),
        (&["--", "true"], "needs an INTERVAL"),
        (&["1m", "--splay"], "a value is required for '--splay"),
        (&["1m", "--splay", "soon", "--", "true"], "--splay soon"),
        (&["1m"], "no command to run"),
        (
            &["1m", "echo", "hi"],
            "`echo hi` follows the INTERVAL without `--`",
        ),
        (&["1m", "--count", "0", "--", "true"], "--count 0"),
        (
            &["1m", "--splay", "2m", "--", "true"],
            "more than the interval",
        ),
        (
            &["--at", "*/5 * * * *", "--splay", "6m", "--", "true"],
            "more than the 5m00s between two starts of `*/5 * * * *`",
        ),
        (
            &["--at", "* * * * *", "--stable-splay", "--", "true"],
            "needs --splay",
        ),
        (
            &["1m", "--host-id", "h", "--", "true"],
            "only by --stable-splay",
        ),
        (
            &["1m", "--", "no-such-program-plumb"],
            "`no-such-program-plumb` is not found on PATH",
        ),
    ];
    for (args, want) in cases {
        let home = Home::new();
        let mut all = vec!["every"];
        all.extend_from_slice(args);
        let (status, stderr) = run_bounded(home.cmd(&all), Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!home.store().exists(), "{args:?} recorded something");
    }
}

#[test]
fn with_a_collector_the_runs_and_the_skipped_starts_arrive_there() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::builder().data(&tmp.path().join("srv")).start();
    let (status, stderr) = run_bounded(
        plumb_at(
            tmp.path(),
            &[
                "every",
                "1s",
                "--count",
                "3",
                "--name",
                "shipped",
                "--collector",
                &server.api,
                "--",
                "sleep",
                "1.5",
            ],
        ),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}: {stderr}");
    let list = |dir: &std::path::Path| {
        let out = ok(
            plumb_at(dir, &["ls", "--json", "--collector", &server.api])
                .output()
                .unwrap(),
            "plumb ls --collector",
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let runs = wait_for(
        "three records at the collector",
        Duration::from_secs(30),
        || {
            let l = list(tmp.path());
            let runs = l.as_array()?.clone();
            (runs.len() == 3 && runs.iter().all(|r| r["state"] != "running")).then_some(runs)
        },
    );
    assert!(runs.iter().all(|r| r["name"] == "shipped"), "{runs:#?}");
    assert!(
        runs.iter().any(|r| r["state"] == "cancelled"),
        "sleep 1.5 every 1s skips a start: {runs:#?}"
    );
    assert!(runs.iter().any(|r| r["state"] == "succeeded"), "{runs:#?}");
    // Nothing went to the local store.
    assert!(!tmp.path().join("home").join("plumb.db").exists());
}
