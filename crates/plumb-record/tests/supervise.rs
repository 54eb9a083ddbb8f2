//! The recorder runs a program exactly as if it had been run directly: real
//! processes, real pipes and pseudo-terminals, real signals.
//!
//! Most tests drive the `record_cmd` binary (a recording process that writes
//! what its sink was given to a JSON-lines file), so that exit codes, signals
//! and terminals are those of a separate recording process.

use plumb_model::{Fingerprint, Run, Stream, Timestamp};
use plumb_record::{RecordError, Redactor, RunOptions, Sink, record};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The recording process, built by cargo for these tests.
fn record_cmd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_record_cmd"))
}

/// What the recording process's sink received.
#[derive(Debug)]
struct Events {
    started: Run,
    outputs: Vec<(Stream, u64, Timestamp, Vec<u8>)>,
    fingerprint: Option<String>,
    finished: Run,
    /// The file, byte for byte.
    raw: Vec<u8>,
}

impl Events {
    fn read(path: &Path) -> Events {
        let raw = std::fs::read(path).expect("events file");
        let mut started = None;
        let mut finished = None;
        let mut fingerprint = None;
        let mut outputs = Vec::new();
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).expect("a JSON line");
            match v["event"].as_str().expect("event") {
                "started" => started = Some(serde_json::from_value(v["run"].clone()).unwrap()),
                "finished" => finished = Some(serde_json::from_value(v["run"].clone()).unwrap()),
                "fingerprint" => fingerprint = v["hash"].as_str().map(String::from),
                "output" => outputs.push((
                    v["stream"].as_str().unwrap().parse().unwrap(),
                    v["seq"].as_u64().unwrap(),
                    serde_json::from_value(v["time"].clone()).unwrap(),
                    unhex(v["hex"].as_str().unwrap()),
                )),
                other => panic!("unknown event {other}"),
            }
        }
        Events {
            started: started.expect("started event"),
            outputs,
            fingerprint,
            finished: finished.expect("finished event"),
            raw,
        }
    }

    /// Everything the sink got for one stream, concatenated.
    fn stream(&self, stream: Stream) -> Vec<u8> {
        self.outputs
            .iter()
            .filter(|o| o.0 == stream)
            .flat_map(|o| o.3.iter().copied())
            .collect()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A recording command with its events file in a fresh temp dir.
struct Recording {
    dir: tempfile::TempDir,
    cmd: Command,
}

impl Recording {
    fn new(flags: &[&str], argv: &[&str]) -> Recording {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(record_cmd());
        cmd.arg(dir.path().join("events.jsonl"))
            .args(flags)
            .arg("--")
            .args(argv)
            .stdin(Stdio::null());
        Recording { dir, cmd }
    }

    fn sh(script: &str) -> Recording {
        Recording::new(&[], &["sh", "-c", script])
    }

    fn output(mut self) -> (Output, Events) {
        let out = self.cmd.output().expect("run record_cmd");
        let events = Events::read(&self.dir.path().join("events.jsonl"));
        (out, events)
    }
}

/// The same command run directly, for comparison.
fn direct(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Waits for a child for at most `limit`, killing it if it takes longer.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("recording process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exit_codes_pass_through() {
    for code in [0, 1, 255] {
        let (out, ev) = Recording::sh(&format!("exit {code}")).output();
        assert_eq!(out.status.code(), Some(code), "recorder exit for {code}");
        let exit = ev.finished.exit.as_ref().expect("exit recorded");
        assert_eq!(exit.code, Some(code));
        assert_eq!(exit.signal, None);
        let expected = if code == 0 { "succeeded" } else { "failed" };
        assert_eq!(ev.finished.state.as_str(), expected);
        assert!(ev.finished.ended.unwrap() >= ev.finished.started);
        assert!(
            ev.fingerprint.is_some(),
            "fingerprint reported before finished"
        );
        assert_eq!(ev.finished.fingerprint, ev.fingerprint);
    }
}

#[test]
fn deaths_by_signal_are_recorded_with_the_shell_code() {
    for (sig, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGSEGV, "SIGSEGV")] {
        let short = name.trim_start_matches("SIG");
        let (out, ev) = Recording::sh(&format!("kill -{short} $$")).output();
        assert_eq!(out.status.code(), Some(128 + sig), "{name}");
        let exit = ev.finished.exit.as_ref().unwrap();
        assert_eq!(exit.code, None);
        assert_eq!(exit.signal, Some(sig));
        assert_eq!(exit.signal_name.as_deref(), Some(name));
        assert_eq!(exit.shell_code(), 128 + sig);
        assert_eq!(ev.finished.state.as_str(), "killed");
    }
}

#[test]
fn binary_output_without_final_newline_is_identical_to_a_direct_run() {
    let script = r"printf 'a\000b\377\376\r\n\033[31mred\033[0m'; printf 'e\001rr' >&2";
    let argv = ["sh", "-c", script];
    let plain = direct(&argv);
    let (out, ev) = Recording::new(&[], &argv).output();
    assert_eq!(out.stdout, plain.stdout);
    assert_eq!(out.stderr, plain.stderr);
    assert_eq!(ev.stream(Stream::Stdout), plain.stdout);
    assert_eq!(ev.stream(Stream::Stderr), plain.stderr);
    let summary = &ev.finished.output;
    assert_eq!(summary.stdout_bytes, plain.stdout.len() as u64);
    assert_eq!(summary.stderr_bytes, plain.stderr.len() as u64);
    // One newline on stdout plus the unfinished last line of each stream.
    assert_eq!(summary.lines, 3);
    assert!(!summary.stdout_tty && !summary.stderr_tty);
}

#[test]
fn large_output_is_identical_to_a_direct_run() {
    // About 2.3 MB on stdout and 0.6 MB on stderr, written concurrently.
    let argv = ["sh", "-c", "seq 1 120000 >&2 & seq 1 400000; wait"];
    let plain = direct(&argv);
    assert!(plain.stdout.len() > 1 << 20);
    let (out, ev) = Recording::new(&[], &argv).output();
    assert!(out.stdout == plain.stdout, "stdout differs");
    assert!(out.stderr == plain.stderr, "stderr differs");
    assert!(ev.stream(Stream::Stdout) == plain.stdout);
    assert!(ev.stream(Stream::Stderr) == plain.stderr);
    assert_eq!(ev.finished.output.lines, 520_000);
    // Reads are bounded (256 KiB), so memory stays flat however big the output.
    assert!(ev.outputs.iter().all(|o| o.3.len() <= 256 * 1024));
}

#[test]
fn interleaved_streams_keep_their_order_and_reads_are_numbered() {
    let script = "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let argv = ["sh", "-c", script];
    let plain = direct(&argv);
    let (out, ev) = Recording::new(&[], &argv).output();
    assert_eq!(out.stdout, plain.stdout);
    assert_eq!(out.stderr, plain.stderr);
    assert_eq!(ev.stream(Stream::Stdout), plain.stdout);
    assert_eq!(ev.stream(Stream::Stderr), plain.stderr);
    let seqs: Vec<u64> = ev.outputs.iter().map(|o| o.1).collect();
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seq counts reads across both streams");
    assert!(ev.outputs.windows(2).all(|w| w[0].2 <= w[1].2));
    assert!(ev.outputs.iter().any(|o| o.0 == Stream::Stderr));
}

#[test]
fn stdin_is_piped_through_and_its_kind_recorded() {
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let rec = Recording::new(&[], &["cat"]);
    let mut cmd = rec.cmd;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    assert!(out.stdout == input, "stdin bytes came out unchanged");
    let ev = Events::read(&rec.dir.path().join("events.jsonl"));
    assert_eq!(ev.finished.stdin, "pipe");

    let (_, ev) = Recording::new(&[], &["true"]).output();
    assert_eq!(ev.finished.stdin, "null");

    let file = rec.dir.path().join("input.txt");
    std::fs::write(&file, b"from a file\n").unwrap();
    let mut rec = Recording::new(&[], &["cat"]);
    rec.cmd.stdin(std::fs::File::open(&file).unwrap());
    let (out, ev) = rec.output();
    assert_eq!(out.stdout, b"from a file\n");
    assert_eq!(ev.finished.stdin, "file");
}

#[test]
fn sigterm_sent_to_the_recorder_reaches_the_child() {
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; \
                  i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; exit 3";
    let rec = Recording::sh(script);
    let mut cmd = rec.cmd;
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"ready\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "recorder closed stdout before the child was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: the pid is our own child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    stdout.read_to_end(&mut seen).unwrap();
    assert_eq!(status.code(), Some(42), "the child's TERM handler ran");
    assert_eq!(seen, b"ready\ngot-term\n");
    let ev = Events::read(&rec.dir.path().join("events.jsonl"));
    assert_eq!(ev.finished.exit.as_ref().unwrap().code, Some(42));
    assert_eq!(ev.stream(Stream::Stdout), b"ready\ngot-term\n");
}

#[test]
fn a_grandchild_holding_the_pipes_does_not_hang_the_recorder() {
    let mut rec = Recording::sh("sleep 6 & echo started");
    rec.cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let dir = rec.dir;
    let mut child = rec.cmd.spawn().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(5));
    assert!(status.success());
    let ev = Events::read(&dir.path().join("events.jsonl"));
    assert_eq!(ev.stream(Stream::Stdout), b"started\n");
}

/// Opens a pty pair for the test's own use.
fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills both descriptors.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn the_child_sees_a_terminal_when_the_recorder_has_one() {
    let (master, slave) = openpty(33, 101);
    let script = "if [ -t 1 ]; then echo isatty=1; else echo isatty=0; fi; \
                  if [ -t 2 ]; then echo err-tty=1 >&2; else echo err-tty=0 >&2; fi; \
                  stty size <&1; printf 'no newline'";
    let Recording { dir, mut cmd } = Recording::sh(script);
    cmd.stdout(Stdio::from(slave)).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Drop every copy of the slave in this process (the command holds one),
    // so that reading the master ends when the recorder exits.
    drop(cmd);
    // Read the test's pty until the recorder (its only writer) is gone.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO: every slave is closed.
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(seen);
    });
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert!(status.success());
    let on_terminal = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the test's pty reached end of file");
    let ev = Events::read(&dir.path().join("events.jsonl"));
    let captured = ev.stream(Stream::Stdout);
    // The child's pty does no output processing: bytes are captured as
    // written; the test's own pty then turns \n into \r\n as a terminal does.
    assert_eq!(captured, b"isatty=1\n33 101\nno newline");
    assert_eq!(on_terminal, b"isatty=1\r\n33 101\r\nno newline");
    assert_eq!(stderr, b"err-tty=0\n", "stderr was a pipe, so it stays one");
    assert!(ev.finished.output.stdout_tty);
    assert!(!ev.finished.output.stderr_tty);
}

#[test]
fn secrets_in_the_environment_never_reach_the_sink() {
    let secret = "s3cr3t-value-that-must-not-leak";
    let mut rec = Recording::sh("echo ok");
    rec.cmd
        .env("MY_API_TOKEN", secret)
        .env("DATABASE_URL", format!("postgres://app:{secret}@db/prod"))
        .env("PLAIN_SETTING", "visible");
    let (out, ev) = rec.output();
    assert_eq!(out.stdout, b"ok\n");
    let needle = secret.as_bytes();
    assert!(
        !ev.raw.windows(needle.len()).any(|w| w == needle),
        "the secret appears in what the sink received"
    );
    for run in [&ev.started, &ev.finished] {
        assert!(plumb_model::is_redacted(&run.env["MY_API_TOKEN"]));
        assert!(plumb_model::is_redacted(&run.env["DATABASE_URL"]));
        assert_eq!(run.env["PLAIN_SETTING"], "visible");
    }
}

#[test]
fn extra_env_reaches_the_child_but_is_not_recorded() {
    let (out, ev) = Recording::new(
        &["--extra", "PLUMB_TEST_EXTRA=given-by-plumb"],
        &["sh", "-c", "echo \"extra=$PLUMB_TEST_EXTRA\""],
    )
    .output();
    assert_eq!(out.stdout, b"extra=given-by-plumb\n");
    assert!(!ev.finished.env.contains_key("PLUMB_TEST_EXTRA"));
    assert!(ev.finished.env.contains_key("PATH"));
}

#[test]
fn identity_and_resource_use_are_recorded() {
    let (out, ev) = Recording::new(
        &["--name", "allocator", "--extra", "K=V"],
        &["sh", "-c", "echo $$; x=$(seq 1 20000 | wc -l); echo $x"],
    )
    .output();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let shell_pid: u32 = stdout.lines().next().unwrap().parse().unwrap();
    let run = &ev.finished;
    assert_eq!(run.pid, shell_pid);
    assert_eq!(ev.started.pid, shell_pid);
    assert_eq!(run.name, "allocator");
    assert_eq!(run.argv[0], "sh");
    assert_eq!(run.argv.len(), 3);
    assert_eq!(run.cwd, std::env::current_dir().unwrap().to_string_lossy());
    assert!(!run.host.hostname.is_empty());
    // SAFETY: no preconditions.
    assert_eq!(run.user.uid, unsafe { libc::getuid() });
    let usage = run.rusage.as_ref().expect("rusage recorded");
    assert!(usage.max_rss_kib > 0);
    assert!(usage.minor_faults > 0);
}

/// Collects what `record` hands it, in process.
#[derive(Default)]
struct Collect {
    started: usize,
    finished: usize,
    runs: Vec<Run>,
}

impl Sink for Collect {
    fn started(&mut self, _run: &Run) {
        self.started += 1;
    }
    fn output(&mut self, _stream: Stream, _seq: u64, _time: Timestamp, _data: &[u8]) {}
    fn fingerprint(&mut self, _hash: &str, _fingerprint: &Fingerprint) {}
    fn finished(&mut self, run: &Run) {
        self.finished += 1;
        self.runs.push(run.clone());
    }
}

fn options(argv: Vec<OsString>) -> RunOptions {
    RunOptions {
        argv,
        name: None,
        tags: BTreeMap::new(),
        config_files: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        redactor: Redactor::new(b"test"),
        cache_dir: std::env::temp_dir().join("plumb-record-test-cache"),
        python: None,
        tools: BTreeMap::new(),
        extra_env: Vec::new(),
        run_id: plumb_model::new_id(),
        postmortem_dir: None,
    }
}

#[test]
fn a_missing_or_non_executable_program_is_a_spawn_error() {
    let mut sink = Collect::default();
    let err = record(
        options(vec!["/nonexistent/plumb-no-such-program".into()]),
        &mut sink,
    )
    .expect_err("cannot run a missing program");
    match err {
        RecordError::Spawn { program, source } => {
            assert_eq!(program, "/nonexistent/plumb-no-such-program");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = record(options(vec![script.clone().into()]), &mut sink).unwrap_err();
    assert!(
        matches!(&err, RecordError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
        "{err}"
    );
    assert!(err.to_string().contains("not-executable.sh"), "{err}");
    assert!(matches!(
        record(options(Vec::new()), &mut sink),
        Err(RecordError::NoCommand)
    ));
    // Both failures were recorded as finished runs; no command, nothing.
    assert_eq!((sink.started, sink.finished), (0, 2));
    let [missing, denied] = &sink.runs[..] else {
        panic!("two runs recorded");
    };
    assert_eq!(missing.state, plumb_model::RunState::Failed);
    assert_eq!(missing.exit.as_ref().and_then(|e| e.code), Some(127));
    assert!(
        missing
            .launch_error
            .as_deref()
            .unwrap()
            .contains("No such file"),
        "{missing:?}"
    );
    assert_eq!(missing.ended, Some(missing.started));
    assert_eq!(denied.exit.as_ref().and_then(|e| e.code), Some(126));
    assert!(!denied.cwd.is_empty() && !denied.env.is_empty());

    // The recording process maps them as a shell does.
    let mut rec = Recording::new(&[], &["/nonexistent/plumb-no-such-program"]);
    let out = rec.cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plumb-no-such-program"));
}

#[test]
fn record_in_process_returns_the_finished_run() {
    let mut sink = Collect::default();
    let run = record(
        options(vec!["sh".into(), "-c".into(), "exit 7".into()]),
        &mut sink,
    )
    .unwrap();
    assert_eq!(run.exit.as_ref().unwrap().code, Some(7));
    assert_eq!(run.name, "sh");
    assert_eq!((sink.started, sink.finished), (1, 1));
}

/// Reads from `r` until `needle` has been seen, returning what was read.
fn read_until(r: &mut impl Read, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = r.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream closed before {:?} appeared",
            String::from_utf8_lossy(needle)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

#[test]
fn window_resizes_reach_the_childs_terminal() {
    let (master, slave) = openpty(24, 80);
    // fd 3 keeps the child's stdout (the pty) for `stty`, since inside $(...)
    // fd 1 is the substitution's pipe.
    let script = "exec 3>&1; stty size <&3; echo ready >&2; i=0; \
                  while [ \"$(stty size <&3)\" = '24 80' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                  stty size <&3";
    let Recording { dir, mut cmd } = Recording::sh(script);
    cmd.stdout(Stdio::from(slave)).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut stderr = child.stderr.take().unwrap();
    read_until(&mut stderr, b"ready\n");
    let size = libc::winsize {
        ws_row: 50,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: sets the size of our own pty; then tells the recorder, as the
    // terminal would tell its foreground process group.
    unsafe {
        assert_eq!(libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size), 0);
        libc::kill(child.id() as libc::pid_t, libc::SIGWINCH);
    }
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert!(status.success());
    let ev = Events::read(&dir.path().join("events.jsonl"));
    assert_eq!(ev.stream(Stream::Stdout), b"24 80\n50 132\n");
    drop(master);
}

#[test]
fn terminal_interrupts_are_not_forwarded_a_second_time() {
    // The child counts SIGINTs with their origin: blocked, then taken one at
    // a time, so it can tell the terminal's (SI_KERNEL) from a forwarded one.
    let child_py = "import signal\n\
                    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])\n\
                    print('ready', flush=True)\n\
                    first = signal.sigtimedwait([signal.SIGINT], 10)\n\
                    second = signal.sigtimedwait([signal.SIGINT], 0.5)\n\
                    print(first and first.si_code, second and second.si_code, flush=True)\n";
    let (master, slave) = openpty(24, 80);
    let Recording { dir, mut cmd } = Recording::new(&[], &["python3", "-c", child_py]);
    let slave_fd = slave.as_raw_fd();
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec. The
    // recorder becomes a session leader with the test's pty as its
    // controlling terminal, so ^C on it reaches the recorder's process group
    // (which the child shares) from the kernel.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    drop(slave);
    let mut stdout = child.stdout.take().unwrap();
    read_until(&mut stdout, b"ready\n");
    let mut term = std::fs::File::from(master);
    term.write_all(b"\x03").unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert!(status.success(), "the recorder survived ^C: {status:?}");
    let line = String::from_utf8_lossy(&rest);
    // SI_KERNEL is 0x80: the terminal's interrupt, and no second one.
    assert_eq!(line.trim(), "128 None", "child saw: {line}");
    let ev = Events::read(&dir.path().join("events.jsonl"));
    assert_eq!(ev.finished.stdin, "tty");
    drop(term);
}

#[test]
fn a_reader_that_goes_away_ends_the_child_with_sigpipe_as_it_would_directly() {
    // `plumb run -- yes | head -n1` must end, as `yes | head -n1` does.
    let Recording { dir, mut cmd } = Recording::new(&[], &["yes"]);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    read_until(&mut stdout, b"y\n");
    drop(stdout);
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(128 + libc::SIGPIPE));
    let ev = Events::read(&dir.path().join("events.jsonl"));
    let exit = ev.finished.exit.as_ref().unwrap();
    assert_eq!(exit.signal, Some(libc::SIGPIPE));
}
