//! Eviction and retries in `plumb run`, end to end: real processes, real
//! signals, a real metadata server on 127.0.0.1, a real store.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use support::*;

/// What these tests add to the shared [`Home`].
impl Home {
    /// Starts `plumb run` with piped output.
    fn spawn(&self, args: &[&str]) -> Running {
        spawn(self.cmd(args))
    }

    /// Every recorded run, oldest first, in full.
    fn runs(&self) -> Vec<serde_json::Value> {
        let list = self.json(&["ls", "--json", "--limit", "0"]);
        let mut runs: Vec<serde_json::Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| self.json(&["show", "--json", r["id"].as_str().unwrap()])["run"].clone())
            .collect();
        runs.reverse();
        runs
    }
}

fn spawn(mut c: Command) -> Running {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    Running {
        child,
        stdout,
        stderr: Some(stderr),
    }
}

struct Running {
    child: Child,
    stdout: mpsc::Receiver<(Instant, String)>,
    stderr: Option<ChildStderr>,
}

impl Running {
    /// Waits (bounded) for a stdout line containing `needle`; returns when
    /// it was read.
    fn wait_for_line(&self, needle: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok((t, line)) if line.contains(needle) => return t,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no `{needle}` on stdout within 20 s");
    }

    fn signal(&self, sig: i32) {
        // SAFETY: the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits (bounded) for plumb to exit: (exit code, remaining stdout, stderr).
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut err = String::new();
        let mut stderr = self.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("plumb did not exit within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        while let Ok((_, line)) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&line);
            out.push('\n');
        }
        (status.code(), out, reader.join().unwrap())
    }
}

fn lines(stdout: ChildStdout) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// A child that says `ready`, then waits; on SIGUSR1 or SIGTERM it says
/// which and exits 75, as a program that saved its checkpoint would.
const POLITE: &str = "trap 'echo got-usr1; exit 75' USR1; trap 'echo got-term; exit 75' TERM; \
     echo ready; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 9";

#[test]
fn sigterm_becomes_the_chosen_warning_and_the_run_is_recorded_evicted() {
    let home = Home::new();
    let run = home.spawn(&[
        "run",
        "--grace",
        "20s",
        "--on-evict",
        "SIGUSR1",
        "--",
        "sh",
        "-c",
        POLITE,
    ]);
    run.wait_for_line("ready");
    run.signal(libc::SIGTERM);
    let (code, out, err) = run.finish();
    assert_eq!(code, Some(75), "{err}");
    assert!(
        out.contains("got-usr1") && !out.contains("got-term"),
        "{out}"
    );

    let runs = home.runs();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["state"], "evicted");
    let e = &r["eviction"];
    assert_eq!(e["source"], "SIGTERM");
    assert_eq!(e["signal"], "SIGUSR1");
    assert_eq!(e["grace_ns"], 20_000_000_000i64);
    assert_eq!(e["grace_expired"], false);
    // Integer nanoseconds since the epoch, UTC: within the run.
    let warned = e["warned"].as_i64().unwrap();
    let ended = e["ended"].as_i64().unwrap();
    assert!(warned >= r["started"].as_i64().unwrap(), "{r}");
    assert!(
        ended >= warned && ended <= r["ended"].as_i64().unwrap() + 1_000_000_000,
        "{r}"
    );
    // And the readable form says so.
    let show = home.run(&["show", "last"]);
    let shown = text(&show.stdout);
    assert!(shown.contains("state     evicted"), "{shown}");
    assert!(shown.contains("by SIGTERM, sent SIGUSR1"), "{shown}");
    assert!(shown.contains("within the grace"), "{shown}");
}

#[test]
fn without_grace_sigterm_is_forwarded_unchanged() {
    let home = Home::new();
    let run = home.spawn(&["run", "--", "sh", "-c", POLITE]);
    run.wait_for_line("ready");
    run.signal(libc::SIGTERM);
    let (code, out, err) = run.finish();
    assert_eq!(code, Some(75), "{err}");
    assert!(out.contains("got-term"), "{out}");
    let runs = home.runs();
    assert_eq!(runs[0]["state"], "failed");
    assert!(runs[0].get("eviction").is_none());
}

#[test]
fn a_child_ignoring_the_warning_is_killed_with_its_group_after_the_grace() {
    let home = Home::new();
    // setsid gives the program its own process group (it is not a group
    // leader, so setsid does not fork); its background sleep is in it too.
    let run = home.spawn(&[
        "run",
        "--grace",
        "1s",
        "--",
        "setsid",
        "sh",
        "-c",
        "trap '' TERM; sleep 60 & echo grandchild $!; echo ready; wait; echo survived",
    ]);
    let mut grandchild = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while grandchild.is_none() && Instant::now() < deadline {
        if let Ok((_, line)) = run.stdout.recv_timeout(Duration::from_secs(1))
            && let Some(pid) = line.strip_prefix("grandchild ")
        {
            grandchild = Some(pid.trim().parse::<i32>().unwrap());
        }
    }
    let grandchild = grandchild.expect("the program printed its background pid");
    run.wait_for_line("ready");
    let sent = Instant::now();
    run.signal(libc::SIGTERM);
    let (code, out, err) = run.finish();
    let took = sent.elapsed();
    assert_eq!(code, Some(137), "{err}");
    assert!(!out.contains("survived"), "{out}");
    assert!(took >= Duration::from_millis(900), "killed after {took:?}");
    // The whole group went: the background sleep is gone (or a zombie
    // waiting for a reaper that is not us).
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        stat.is_empty() || state == Some("Z"),
        "grandchild {grandchild} still alive: {stat}"
    );

    let r = &home.runs()[0];
    assert_eq!(r["state"], "evicted");
    assert_eq!(r["exit"]["signal"], 9);
    assert_eq!(r["eviction"]["grace_expired"], true);
    assert_eq!(r["eviction"]["killed_group"], true);
    assert_eq!(r["eviction"]["signal"], "SIGTERM");
}

/// A fake instance-metadata service for AWS (IMDSv2), GCP and Azure that
/// serves "no notice" until `notice` is set.
struct Metadata {
    base: String,
    notice: Arc<AtomicBool>,
    /// Requests for the notice itself, with the right headers.
    polls: Arc<AtomicUsize>,
}

impl Metadata {
    fn start() -> Metadata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let notice = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let (n, p) = (Arc::clone(&notice), Arc::clone(&polls));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let (status, body) = answer(&head, n.load(Ordering::SeqCst), &p);
                let reason = if status == 200 { "OK" } else { "Error" };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Metadata {
            base,
            notice,
            polls,
        }
    }
}

/// The documented answers: (status, body).
fn answer(head: &str, notice: bool, polls: &AtomicUsize) -> (u16, String) {
    let request_line = head.lines().next().unwrap_or("");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    match (request_line.split_whitespace().next(), path) {
        (Some("PUT"), "/latest/api/token") => {
            match header("X-aws-ec2-metadata-token-ttl-seconds") {
                Some(_) => (200, "token-abc".into()),
                None => (400, "missing TTL".into()),
            }
        }
        (Some("GET"), "/latest/meta-data/spot/instance-action") => {
            if header("X-aws-ec2-metadata-token").as_deref() != Some("token-abc") {
                return (401, String::new());
            }
            polls.fetch_add(1, Ordering::SeqCst);
            if notice {
                (
                    200,
                    r#"{"action": "terminate", "time": "2026-11-27T18:00:00Z"}"#.into(),
                )
            } else {
                (404, "Not Found".into())
            }
        }
        (Some("GET"), "/computeMetadata/v1/instance/preempted") => {
            if header("Metadata-Flavor").as_deref() != Some("Google") {
                return (403, String::new());
            }
            polls.fetch_add(1, Ordering::SeqCst);
            (200, if notice { "TRUE" } else { "FALSE" }.into())
        }
        (Some("GET"), "/metadata/scheduledevents?api-version=2020-07-01") => {
            if header("Metadata").as_deref() != Some("true") {
                return (400, String::new());
            }
            polls.fetch_add(1, Ordering::SeqCst);
            // A neighbour's freeze is always listed; our preemption only
            // once the notice is on.
            let mut events = vec![
                r#"{"EventId":"A1","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["vm0"],"EventStatus":"Scheduled","NotBefore":"Fri, 27 Nov 2026 18:00:00 GMT"}"#,
                r#"{"EventId":"A2","EventType":"Preempt","ResourceType":"VirtualMachine","Resources":["vm0"],"EventStatus":"Scheduled","NotBefore":"Fri, 27 Nov 2026 18:00:00 GMT"}"#,
            ];
            if notice {
                events.push(r#"{"EventId":"B2","EventType":"Preempt","ResourceType":"VirtualMachine","Resources":["vm1"],"EventStatus":"Scheduled","NotBefore":"Fri, 27 Nov 2026 18:00:30 GMT"}"#);
            }
            (
                200,
                format!(
                    r#"{{"DocumentIncarnation":2,"Events":[{}]}}"#,
                    events.join(",")
                ),
            )
        }
        (Some("GET"), "/metadata/instance/compute/name?api-version=2021-02-01&format=text") => {
            (200, "vm1".into())
        }
        _ => (404, "unknown path".into()),
    }
}

/// The notice appears mid-run; the program gets its warning within one
/// poll interval (plus generous slack for a loaded machine).
fn cloud_notice_reaches_the_program(cloud: &str, detail: &str) {
    let meta = Metadata::start();
    let home = Home::new();
    let run = home.spawn(&[
        "run",
        "--watch-cloud",
        cloud,
        "--metadata-url",
        &meta.base,
        "--watch-interval",
        "300ms",
        "--grace",
        "10s",
        "--",
        "sh",
        "-c",
        POLITE,
    ]);
    run.wait_for_line("ready");
    // Let it poll and see no notice first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while meta.polls.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        meta.polls.load(Ordering::SeqCst) >= 2,
        "{cloud}: never polled"
    );
    let on = Instant::now();
    meta.notice.store(true, Ordering::SeqCst);
    let warned = run.wait_for_line("got-term");
    let delay = warned.duration_since(on);
    assert!(
        delay < Duration::from_millis(300) + Duration::from_secs(3),
        "{cloud}: warning took {delay:?}"
    );
    let (code, _, err) = run.finish();
    assert_eq!(code, Some(75), "{err}");
    let r = &home.runs()[0];
    assert_eq!(r["state"], "evicted");
    assert_eq!(r["eviction"]["source"], cloud);
    let got = r["eviction"]["detail"].as_str().unwrap();
    assert!(got.contains(detail), "{cloud}: detail {got}");
}

#[test]
fn aws_spot_notice_with_imdsv2_token() {
    cloud_notice_reaches_the_program("aws", "terminate");
}

#[test]
fn gcp_preemption_notice() {
    cloud_notice_reaches_the_program("gcp", "TRUE");
}

#[test]
fn azure_preempt_event_for_this_machine_only() {
    cloud_notice_reaches_the_program("azure", "B2");
}

#[test]
fn an_unreachable_metadata_service_is_one_warning_not_a_failure() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = Home::new();
    let out = home.run(&[
        "run",
        "--watch-cloud",
        "aws",
        "--metadata-url",
        &format!("http://127.0.0.1:{port}"),
        "--watch-interval",
        "50ms",
        "--",
        "sh",
        "-c",
        "sleep 0.6; echo done; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    let r = &home.runs()[0];
    assert_eq!(r["state"], "failed");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.contains("cloud notice"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cannot connect"), "{warnings:?}");
    assert_eq!(
        text(&out.stderr)
            .matches("cannot read the interruption notice")
            .count(),
        1
    );
}

#[test]
fn retries_number_and_link_attempts_and_share_a_checkpoint_dir() {
    let home = Home::new();
    let out = home.run(&[
        "run",
        "--retries",
        "3",
        "--backoff",
        "10ms..40ms",
        "--",
        "sh",
        "-c",
        "echo \"$PLUMB_ATTEMPT $PLUMB_CHECKPOINT_DIR\"; test -d \"$PLUMB_CHECKPOINT_DIR\" || exit 99; \
         [ \"$PLUMB_ATTEMPT\" = 3 ] || exit 7",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let err = text(&out.stderr);
    assert!(
        err.contains("attempt 1/4 failed (exit code 7); attempt 2 in"),
        "{err}"
    );

    let runs = home.runs();
    assert_eq!(runs.len(), 3);
    let first = runs[0]["id"].as_str().unwrap();
    let dir = home.store().join("checkpoints").join(first);
    assert!(dir.is_dir());
    for (i, r) in runs.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(r["attempt"], n);
        assert_eq!(r["max_attempts"], 4);
        assert_eq!(lines[i], format!("{n} {}", dir.display()));
        if n == 1 {
            assert!(r.get("first_attempt").is_none());
        } else {
            assert_eq!(r["first_attempt"], first);
        }
    }
    assert_eq!(runs[2]["state"], "succeeded");
    let ls = text(&home.run(&["ls"]).stdout);
    assert!(ls.contains("ATTEMPT") && ls.contains("2/4"), "{ls}");
}

#[test]
fn retry_on_selects_outcomes_and_the_last_exit_code_is_plumbs() {
    let home = Home::new();
    let args = |on: &'static str| {
        vec![
            "run",
            "--retries",
            "2",
            "--backoff",
            "1ms..5ms",
            "--retry-on",
            on,
            "--",
            "sh",
            "-c",
            "exit 7",
        ]
    };
    // 7 is not among the outcomes: one attempt.
    let out = home.run(&args("75,evicted"));
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(home.runs().len(), 1);
    // 7 is: every attempt, and the last one's code.
    let out = home.run(&args("7"));
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(home.runs().len(), 4);
}

#[test]
fn an_interrupt_during_the_backoff_stops_retrying() {
    let home = Home::new();
    let mut child = home
        .cmd(&[
            "run",
            "--retries",
            "5",
            "--backoff",
            "30s..30s",
            "--",
            "sh",
            "-c",
            "exit 4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("attempt 2 in") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("attempt 2 in"), "{seen}");
    // Meanwhile attempt 2 is on record as waiting, with why and until when.
    let waiting = home.wait_for_state("waiting");
    assert_eq!(waiting["attempt"], 2);
    let w = &waiting["waiting"];
    assert_eq!(w["kind"], "backoff", "{waiting}");
    let reason = w["reason"].as_str().unwrap();
    assert!(
        reason.contains("before attempt 2 of 6") && reason.contains("exit code 4"),
        "{reason}"
    );
    assert!(w["until"].as_i64().unwrap() >= w["since"].as_i64().unwrap());
    let shown = text(&home.run(&["show", waiting["id"].as_str().unwrap()]).stdout);
    assert!(
        shown.contains("state     waiting") && shown.contains("left)"),
        "{shown}"
    );
    // SAFETY: our unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    // The wait is drawn from [0, 30 s]; it is next to impossible that it
    // ended before the signal, in which case the signal reached attempt 2.
    if rest.contains("the command was not started") {
        // Interrupted while backing off: 130, as a shell reports an
        // interrupted command, not the previous attempt's 4.
        assert_eq!(status.code(), Some(130), "{rest}");
        let runs = home.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1]["state"], "cancelled");
        assert!(runs[1]["waiting"]["ended"].is_i64(), "{}", runs[1]);
    } else {
        assert!(home.runs().len() <= 2);
    }
}

impl Home {
    /// Waits (bounded) until the newest run is in `state`; returns it.
    fn wait_for_state(&self, state: &str) -> serde_json::Value {
        for _ in 0..400 {
            let out = self.run(&["show", "--json", "last"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["run"]["state"] == state {
                    return v["run"].clone();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the newest run did not reach state {state} within 20 s");
    }
}

/// A command holding a throttle slot until `release` exists (bounded).
fn holder(release: &Path) -> String {
    format!(
        "echo holding; i=0; while [ ! -e '{}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
        release.display()
    )
}

#[test]
fn a_full_throttle_keeps_the_next_run_waiting_on_record_until_a_slot_frees() {
    let home = Home::new();
    let release = home.dir().join("release");
    let hold = holder(&release);
    let first = home.spawn(&[
        "run",
        "--throttle",
        "db=1",
        "--name",
        "first",
        "--",
        "sh",
        "-c",
        &hold,
    ]);
    first.wait_for_line("holding");
    let second = home.spawn(&[
        "run",
        "--throttle",
        "db=1",
        "--name",
        "second",
        "--",
        "sh",
        "-c",
        "echo second-ran",
    ]);
    let waiting = home.wait_for_state("waiting");
    assert_eq!(waiting["name"], "second");
    assert_eq!(waiting["waiting"]["kind"], "throttle");
    let reason = waiting["waiting"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("throttle `db`") && reason.contains("all 1 held"),
        "{reason}"
    );
    assert!(waiting["waiting"].get("until").is_none());
    // Still waiting a little later: the command has not run.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        second.stdout.try_recv().is_err(),
        "the second run started while the slot was held"
    );
    let ls = text(&home.run(&["ls", "--state", "waiting"]).stdout);
    assert!(ls.contains("second") && !ls.contains("first"), "{ls}");

    std::fs::write(&release, b"").unwrap();
    let (code, _, _) = first.finish();
    assert_eq!(code, Some(0));
    let (code, out, err) = second.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("second-ran"), "{out}");
    assert!(err.contains("waiting for a slot of throttle `db`"), "{err}");
    let runs = home.runs();
    let second = runs.iter().find(|r| r["name"] == "second").unwrap();
    let first = runs.iter().find(|r| r["name"] == "first").unwrap();
    assert_eq!(second["state"], "succeeded");
    let w = &second["waiting"];
    assert_eq!(w["kind"], "throttle");
    // It started after the first one ended, and the wait ended as it started.
    assert!(second["started"].as_i64().unwrap() >= first["ended"].as_i64().unwrap());
    assert_eq!(w["ended"], second["started"]);
    let shown = text(&home.run(&["show", second["id"].as_str().unwrap()]).stdout);
    assert!(shown.contains("waited    "), "{shown}");
}

#[test]
fn two_slots_let_two_runs_through_and_an_interrupt_cancels_the_third() {
    let home = Home::new();
    let release = home.dir().join("release");
    let hold = holder(&release);
    let a = home.spawn(&["run", "--throttle", "pool=2", "--", "sh", "-c", &hold]);
    let b = home.spawn(&["run", "--throttle", "pool=2", "--", "sh", "-c", &hold]);
    a.wait_for_line("holding");
    b.wait_for_line("holding");
    let marker = home.dir().join("third-ran");
    let third = home.spawn(&[
        "run",
        "--throttle",
        "pool=2",
        "--name",
        "third",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    let waiting = home.wait_for_state("waiting");
    assert_eq!(waiting["name"], "third");
    third.signal(libc::SIGTERM);
    let (code, _, err) = third.finish();
    // Stopped by SIGTERM before it started: 128 + 15, as a shell reports it
    // (SIGINT gives 130), per the exit-code table in the README.
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("the command was not started"), "{err}");
    assert!(!marker.exists());
    let cancelled = home.wait_for_state("cancelled");
    assert_eq!(cancelled["name"], "third");
    assert!(cancelled["ended"].is_i64());
    std::fs::write(&release, b"").unwrap();
    assert_eq!(a.finish().0, Some(0));
    assert_eq!(b.finish().0, Some(0));
}

#[test]
fn bad_eviction_and_retry_arguments_are_refused_before_anything_runs() {
    let home = Home::new();
    let marker = home.dir().join("ran");
    let marker_s = marker.to_str().unwrap().to_string();
    for (args, expect) in [
        (vec!["--backoff", "5m..1s"], "must not exceed"),
        (vec!["--grace", "-1"], "negative"),
        (
            vec!["--grace", "10s", "--on-evict", "SIGFOO"],
            "unknown signal `SIGFOO`",
        ),
        (vec!["--watch-cloud", "oracle"], "unknown cloud `oracle`"),
        (vec!["--retry-on", "maybe"], "retry-on `maybe`"),
        (vec!["--throttle", "gpu"], "expected NAME=N"),
        (vec!["--throttle", "gpu=0"], "from 1 to 4096"),
        (vec!["--throttle", "../x=1"], "the name must be"),
        (vec!["--throttle-dir", "/tmp"], "--throttle"),
        (vec!["--on-evict", "USR1"], "--on-evict needs --grace"),
        (
            vec!["--watch-cloud", "aws", "--metadata-url", "https://x"],
            "https is not supported",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(args.iter().copied());
        all.extend(["--", "touch", marker_s.as_str()]);
        let out = home.run(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?} ran the command");
    }
}

/// A Python program using plumb's checkpoint library: sums i*i over
/// 0..N, slowly, saving every step; on SIGTERM it saves and exits 75.
const WORKER: &str = r#"
import os, sys, time
from plumb.checkpoint import Checkpointer
n = int(sys.argv[1])
with Checkpointer(os.environ["PLUMB_CHECKPOINT_DIR"], every_steps=1) as ck:
    state = ck.restore({"next": 0, "sum": 0})
    print(f"attempt {os.environ.get('PLUMB_ATTEMPT')} starts at {state['next']}", flush=True)
    while state["next"] < n:
        state["sum"] = (state["sum"] + state["next"] * state["next"]) % 1000000007
        state["next"] += 1
        if state["next"] == 5:
            print("working", flush=True)
        time.sleep(0.02)
        ck.at_safe_point(state)
    print(f"result {state['sum']}", flush=True)
"#;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

#[test]
fn python_worker_is_evicted_saves_is_retried_and_resumes_to_the_same_result() {
    let home = Home::new();
    let script = home.dir().join("worker.py");
    std::fs::write(&script, WORKER).unwrap();
    let script = script.to_str().unwrap().to_string();
    let n = "60";

    // Uninterrupted, directly.
    let direct = Command::new("python3")
        .args([&script, n])
        .env("PYTHONPATH", python_dir())
        .env("PLUMB_CHECKPOINT_DIR", home.dir().join("direct-ckpt"))
        .output()
        .unwrap();
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    let expected = text(&direct.stdout)
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap()
        .to_string();

    let mut cmd_args = vec![
        "run",
        "--retries",
        "3",
        "--grace",
        "5s",
        "--backoff",
        "10ms..50ms",
        "--",
        "python3",
    ];
    cmd_args.extend([script.as_str(), n]);
    let mut c = home.cmd(&cmd_args);
    c.env("PYTHONPATH", python_dir());
    let run = spawn(c);
    run.wait_for_line("working");
    run.signal(libc::SIGTERM);
    let (code, out, err) = run.finish();
    assert_eq!(code, Some(0), "{err}");
    let last = out.lines().last().unwrap_or("");
    assert_eq!(last, expected, "stdout: {out}\nstderr: {err}");
    let resumed = out
        .lines()
        .find(|l| l.starts_with("attempt 2 starts at "))
        .unwrap_or_else(|| panic!("no second attempt: {out}"));
    let at: u32 = resumed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(at >= 5, "resumed from {at}, not from its checkpoint");

    let runs = home.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["state"], "evicted");
    assert_eq!(runs[0]["exit"]["code"], 75);
    assert_eq!(runs[0]["eviction"]["source"], "SIGTERM");
    assert_eq!(runs[1]["state"], "succeeded");
    assert_eq!(runs[1]["attempt"], 2);
    assert_eq!(runs[1]["first_attempt"], runs[0]["id"]);
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    !stat.is_empty() && state != Some("Z")
}

/// Reads `pid N` lines from the run's stdout until `count` pids were seen
/// (bounded), then waits for `ready`.
fn pids(run: &Running, count: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.len() < count && Instant::now() < deadline {
        if let Ok((_, line)) = run.stdout.recv_timeout(Duration::from_secs(1))
            && let Some(pid) = line.strip_prefix("pid ")
        {
            pids.push(pid.trim().parse::<i32>().unwrap());
        }
    }
    assert_eq!(pids.len(), count, "the program printed its pids: {pids:?}");
    pids
}

/// A Python program that prints its pid, ignores SIGTERM (as a program
/// that saves and goes on, or a careless one) and runs for a minute.
const STUBBORN: &str = "import os, signal, sys, time\n\
signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
if 'setsid' in sys.argv: os.setsid()\n\
print('pid', os.getpid(), flush=True)\n\
time.sleep(60)\n";

#[test]
fn eviction_reaches_a_grandchild_behind_a_shell_and_one_that_made_its_own_session() {
    let home = Home::new();
    let py = home.dir().join("stubborn.py");
    std::fs::write(&py, STUBBORN).unwrap();
    for setsid in [false, true] {
        let script = format!(
            "python3 {} {}; echo after",
            py.display(),
            if setsid { "setsid" } else { "" }
        );
        let run = home.spawn(&["run", "--grace", "1s", "--", "sh", "-c", &script]);
        let grandchild = pids(&run, 1)[0];
        run.signal(libc::SIGTERM);
        let (code, out, err) = run.finish();
        assert!(!out.contains("after"), "{out}");
        assert!(code.is_some(), "{err}");
        assert!(
            !alive(grandchild),
            "setsid={setsid}: the grandchild {grandchild} outlived plumb"
        );
        let r = home.runs().pop().unwrap();
        assert_eq!(r["state"], "evicted", "{r}");
        let e = &r["eviction"];
        assert_eq!(
            e["signalled"], 2,
            "the shell and python got the warning: {e}"
        );
        assert_eq!(e["killed"], 1, "python ignored it and was killed: {e}");
        assert_eq!(e["grace_expired"], true);
        let shown = text(&home.run(&["show", "last"]).stdout);
        assert!(
            shown.contains("SIGTERM signalled 2 processes, 1 SIGKILLed"),
            "{shown}"
        );
    }
}

#[test]
fn eviction_reaches_every_worker_of_a_multiprocessing_pool() {
    let home = Home::new();
    let py = home.dir().join("pool.py");
    std::fs::write(
        &py,
        r"import multiprocessing as mp, os, signal, time
def work(i):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # One write per line: the workers share the pipe.
    os.write(1, b'pid %d\n' % os.getpid())
    time.sleep(60)
if __name__ == '__main__':
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with mp.get_context('fork').Pool(3) as p:
        p.map(work, range(3), chunksize=1)
",
    )
    .unwrap();
    let run = home.spawn(&[
        "run",
        "--grace",
        "1s",
        "--",
        "python3",
        py.to_str().unwrap(),
    ]);
    let workers = pids(&run, 3);
    run.signal(libc::SIGTERM);
    let (code, _, err) = run.finish();
    assert_eq!(code, Some(137), "{err}");
    for w in &workers {
        assert!(!alive(*w), "worker {w} outlived plumb");
    }
    let r = home.runs().pop().unwrap();
    let e = &r["eviction"];
    assert_eq!(e["signalled"], 4, "the parent and its three workers: {e}");
    assert_eq!(e["killed"], 4, "{e}");
    assert_eq!(r["name"], "pool");
}

#[test]
fn an_interrupt_reaches_every_process_of_the_run() {
    let home = Home::new();
    let py = home.dir().join("sleeper.py");
    std::fs::write(
        &py,
        "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(60)\n",
    )
    .unwrap();
    let script = format!("python3 {}; echo after", py.display());
    let run = home.spawn(&["run", "--", "sh", "-c", &script]);
    let grandchild = pids(&run, 1)[0];
    run.signal(libc::SIGINT);
    let (_, _, err) = run.finish();
    assert!(!alive(grandchild), "python outlived the interrupt: {err}");
    let r = home.runs().pop().unwrap();
    assert_eq!(r["forwarded"][0]["signal"], "SIGINT", "{r}");
    assert_eq!(r["forwarded"][0]["processes"], 2, "{r}");
}

#[test]
fn an_orphan_left_at_a_normal_end_is_reported_and_killed_only_when_asked() {
    let home = Home::new();
    let script = "sleep 30 >/dev/null 2>&1 & echo pid $!; exit 0";
    for kill in [false, true] {
        let mut args = vec!["run"];
        if kill {
            args.push("--kill-orphans");
        }
        args.extend(["--", "sh", "-c", script]);
        let run = home.spawn(&args);
        let orphan = pids(&run, 1)[0];
        let (code, _, err) = run.finish();
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("plumb: the command left 1 process running"),
            "{err}"
        );
        assert!(err.contains(&format!("{orphan} (sleep 30)")), "{err}");
        let r = home.runs().pop().unwrap();
        assert_eq!(r["orphans"][0]["pid"], orphan, "{r}");
        assert_eq!(r["orphans"][0]["command"], "sleep 30");
        if kill {
            assert_eq!(r["orphans_killed"], true);
            assert!(!alive(orphan), "--kill-orphans killed {orphan}");
        } else {
            assert!(r.get("orphans_killed").is_none(), "{r}");
            assert!(alive(orphan), "without --kill-orphans {orphan} runs on");
            // SAFETY: the test's own orphan, alive just above.
            unsafe { libc::kill(orphan, libc::SIGKILL) };
        }
    }
}
