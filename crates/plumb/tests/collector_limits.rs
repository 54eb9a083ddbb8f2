//! The collector at its limits, with a real `plumb serve` and real senders
//! over loopback: its disk fills (a small tmpfs mounted by the test) and it
//! answers 503 with Retry-After, losing nothing it acknowledged, then
//! recovers when space is freed; too many requests at once get 429 with
//! Retry-After instead of queueing without bound; and 200,000 log records
//! from 8 concurrent senders, with retries, are stored exactly once. Also:
//! a token revoked with `plumb token revoke` stops working.
//!
//! The disk-full test mounts a tmpfs, so it needs root (CAP_SYS_ADMIN); it
//! fails, naming why, when the mount does not work.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// A `plumb serve` child on free loopback ports, killed on drop.
struct Serve {
    child: Child,
    api: String,
    otlp: String,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        let mut child = Command::new(PLUMB)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--otlp-listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(data)
            .env("PLUMB_HOME", data)
            .env_remove("PLUMB_COLLECTOR")
            .env_remove("PLUMB_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("plumb serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut api, mut otlp) = (String::new(), String::new());
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["api", url] => api = url.to_string(),
                ["otlp", url] => otlp = url.to_string(),
                other => panic!("unexpected plumb serve output {other:?}"),
            }
        }
        assert!(!api.is_empty() && !otlp.is_empty());
        Serve { child, api, otlp }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, Retry-After, body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a fresh loopback connection.
fn request(base: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    request_as(base, method, path, body, None)
}

/// [`request`] with a bearer token.
fn request_as(base: &str, method: &str, path: &str, body: &[u8], token: Option<&str>) -> Answer {
    let addr = base.trim_start_matches("http://");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    parse(&resp)
}

fn parse(resp: &[u8]) -> Answer {
    let split = memchr::memmem::find(resp, b"\r\n\r\n").expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    let retry_after = header("retry-after").map(|v| v.parse().unwrap());
    let raw = &resp[split + 4..];
    let body = if header("transfer-encoding").as_deref() == Some("chunked") {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    Answer {
        status,
        retry_after,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = memchr::memmem::find(raw, b"\r\n").expect("a chunk size line");
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

/// An OTLP/HTTP JSON logs request: records `first..first + n` of `sender`,
/// attached to `run` (so the API lists them by run). Each body carries a
/// unique marker `rec-S-I` and some filler that does not compress away.
fn logs_body(run: &str, sender: usize, first: usize, n: usize) -> Vec<u8> {
    let mut records = Vec::with_capacity(n);
    for i in first..first + n {
        let t = 1_764_000_000_000_000_000u64 + (sender as u64) * 1_000_000_000_000 + i as u64;
        let noise = fastrand::Rng::with_seed((sender * 1_000_000 + i) as u64).u64(..);
        records.push(format!(
            r#"{{"timeUnixNano":"{t}","severityNumber":9,"body":{{"stringValue":"rec-{sender}-{i} order processed session={noise:016x}"}}}}"#
        ));
    }
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"limits"}}}},{{"key":"host.name","value":{{"stringValue":"sender-{sender}"}}}},{{"key":"plumb.run.id","value":{{"stringValue":"{run}"}}}}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
    .into_bytes()
}

/// Posts until the collector accepts, honouring Retry-After on 429 and
/// 503 (at most `tries` attempts, each wait capped at 1 s).
fn post_with_retry(otlp: &str, body: &[u8], tries: usize) -> u16 {
    for _ in 0..tries {
        let a = request(otlp, "POST", "/v1/logs", body);
        match a.status {
            429 | 503 => {
                let secs = a.retry_after.expect("429 and 503 carry Retry-After");
                std::thread::sleep(Duration::from_millis((secs * 1000).min(1000)));
            }
            other => return other,
        }
    }
    panic!("the collector did not accept a request in {tries} attempts");
}

/// The markers (`rec-S-I`) of a run's stored log lines, with how often each
/// is stored, read through the query API.
fn stored_markers(api: &str, run: &str) -> HashMap<String, usize> {
    let a = request(
        api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run}/logs"),
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&a.body).unwrap();
    let mut seen = HashMap::new();
    for l in &lines {
        let text = l["text"].as_str().expect("a line's text");
        let marker = text
            .split_whitespace()
            .find(|w| w.starts_with("rec-"))
            .unwrap_or_else(|| panic!("no marker in stored line {text:?}"));
        *seen.entry(marker.to_owned()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn two_hundred_thousand_records_from_eight_senders_are_stored_exactly_once() {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 25_000;
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let runs: Vec<String> = (0..SENDERS)
        .map(|_| plumb_model::new_id().to_string())
        .collect();
    std::thread::scope(|s| {
        for (sender, run) in runs.iter().enumerate() {
            let otlp = serve.otlp.clone();
            s.spawn(move || {
                for first in (0..PER_SENDER).step_by(BATCH) {
                    let body = logs_body(run, sender, first, BATCH);
                    assert_eq!(post_with_retry(&otlp, &body, 100), 200);
                    // Exporters retry when an answer is lost: an exact
                    // retry, and one re-batched across two requests.
                    if first == 3 * BATCH {
                        assert_eq!(post_with_retry(&otlp, &body, 100), 200);
                        let overlap = logs_body(run, sender, first - BATCH / 2, BATCH);
                        assert_eq!(post_with_retry(&otlp, &overlap, 100), 200);
                    }
                }
            });
        }
    });
    let mut total = 0;
    for (sender, run) in runs.iter().enumerate() {
        let seen = stored_markers(&serve.api, run);
        assert_eq!(seen.len(), PER_SENDER, "sender {sender}: distinct records");
        for i in 0..PER_SENDER {
            assert_eq!(
                seen.get(&format!("rec-{sender}-{i}")),
                Some(&1),
                "record {i} of sender {sender} stored exactly once"
            );
        }
        total += seen.values().sum::<usize>();
    }
    assert_eq!(total, SENDERS * PER_SENDER);
}

#[test]
fn too_many_requests_at_once_get_429_with_retry_after_and_memory_stays_bounded() {
    // The collector admits this many OTLP requests at once
    // (plumb_collector::otlp::MAX_IN_FLIGHT).
    const IN_FLIGHT: usize = 64;
    const EXTRA: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let addr = serve.otlp.trim_start_matches("http://").to_owned();
    // Slow senders: each announces a 1 MiB body and sends 10 bytes of it,
    // holding its request inside the collector. A few more than the limit:
    // those are refused, and their answers show that every slow request
    // reached the collector. Nothing else is sent until then: a request
    // sent meanwhile would take a slot for a moment, a slow request coming
    // in at that moment would be refused instead of held, and the slot
    // would then stay free (this made the test fail about half the time
    // on a loaded machine).
    let mut held = Vec::new();
    for _ in 0..IN_FLIGHT + EXTRA {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{{\"resourc"
        )
        .unwrap();
        s.set_nonblocking(true).unwrap();
        held.push(s);
    }
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; held.len()];
    for _ in 0..1200 {
        for (s, answer) in held.iter_mut().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            let mut buf = vec![0u8; 512];
            match s.read(&mut buf) {
                Ok(n) => *answer = Some(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => *answer = Some(format!("read error: {e}").into_bytes()),
            }
        }
        if answers.iter().flatten().count() >= EXTRA {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let answered: Vec<String> = answers
        .iter()
        .flatten()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        answered.len(),
        EXTRA,
        "exactly the slow requests past the limit are answered: {answered:?}"
    );
    for a in &answered {
        assert!(a.starts_with("HTTP/1.1 429"), "{a}");
    }
    // Every slot is held now, so the next request is refused at once.
    let run = plumb_model::new_id().to_string();
    let probe = logs_body(&run, 0, 0, 10);
    let refused = request(&serve.otlp, "POST", "/v1/logs", &probe);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.retry_after.is_some_and(|s| s >= 1));
    assert!(
        refused.text().contains("in flight"),
        "the answer says why: {}",
        refused.text()
    );
    // More requests while saturated are refused too, not queued.
    let rss_before = serve.rss_kib();
    // Its own run, so that the count below holds only these records.
    let big_run = plumb_model::new_id().to_string();
    let big = logs_body(&big_run, 1, 0, 2000);
    // Small bodies: a refused request's body is never read, and a large
    // unread one could make the kernel reset the connection before the
    // answer is read.
    for _ in 0..300 {
        let a = request(&serve.otlp, "POST", "/v1/logs", &probe);
        assert_eq!(a.status, 429, "{}", a.text());
    }
    let rss_after = serve.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "300 refused requests grew the collector from {rss_before} KiB to {rss_after} KiB"
    );
    // Slow senders gone, the collector takes requests again.
    drop(held);
    assert_eq!(post_with_retry(&serve.otlp, &big, 20), 200);
    assert_eq!(stored_markers(&serve.api, &big_run).len(), 2000);
}

/// A tmpfs mounted over a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs { dir },
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs for the disk-full test (it needs root or CAP_SYS_ADMIN): mount said {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8) for the disk-full test: {e}"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_gives_503_with_retry_after_loses_nothing_acknowledged_and_recovers() {
    let disk = Tmpfs::mount("16m");
    let data = disk.path().join("store");
    std::fs::create_dir(&data).unwrap();
    let filler = disk.path().join("filler");
    let serve = Serve::start(&data);
    // Leave the store about 2 MiB, then fill it with acknowledged batches.
    let free = {
        // SAFETY: statvfs fills the struct it is given.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let path = std::ffi::CString::new(disk.path().as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    };
    std::fs::write(&filler, vec![0x5a; (free - (2 << 20)) as usize]).unwrap();
    let run = plumb_model::new_id().to_string();
    const BATCH: usize = 500;
    let mut acked = 0;
    let mut full = None;
    for b in 0..400 {
        let a = request(
            &serve.otlp,
            "POST",
            "/v1/logs",
            &logs_body(&run, 0, b * BATCH, BATCH),
        );
        match a.status {
            200 => acked = (b + 1) * BATCH,
            503 => {
                full = Some(a);
                break;
            }
            other => panic!("unexpected {other} on a filling disk: {}", a.text()),
        }
    }
    let full = full.expect("503 once the disk is full");
    assert!(acked > 0, "some batches fit before the disk filled");
    assert!(full.retry_after.is_some_and(|s| s >= 1));
    assert!(
        full.text().contains("disk is full"),
        "the answer says why: {}",
        full.text()
    );
    // Reading still works, and every acknowledged record is there once.
    let seen = stored_markers(&serve.api, &run);
    assert_eq!(seen.len(), acked);
    assert!(seen.values().all(|n| *n == 1));
    // Space freed: the refused batch is taken on retry, and more after it.
    std::fs::remove_file(&filler).unwrap();
    let refused_first = acked;
    let mut next = refused_first;
    for _ in 0..3 {
        let body = logs_body(&run, 0, next, BATCH);
        assert_eq!(post_with_retry(&serve.otlp, &body, 10), 200);
        next += BATCH;
    }
    let seen = stored_markers(&serve.api, &run);
    assert_eq!(seen.len(), next);
    for i in 0..next {
        assert_eq!(seen.get(&format!("rec-0-{i}")), Some(&1), "record {i}");
    }
    // The store survives a restart intact.
    drop(serve);
    let serve = Serve::start(&data);
    assert_eq!(stored_markers(&serve.api, &run).len(), next);
}

fn token_cmd(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(PLUMB)
        .arg("token")
        .args(args)
        .arg("--data")
        .arg(data)
        .env("PLUMB_HOME", data)
        .env_remove("PLUMB_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_revoked_token_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let create = |role: &str| {
        let out = token_cmd(data, &["create", "--role", role, "--name", role]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let agent = create("agent");
    let viewer = create("viewer");
    let serve = Serve::start(data);
    let run = plumb_model::new_id().to_string();
    let body = logs_body(&run, 0, 0, 5);
    let post = |token: &str| request_as(&serve.otlp, "POST", "/v1/logs", &body, Some(token));
    assert_eq!(post(&agent).status, 200);
    // The agent token's hash, as `plumb token ls` shows it.
    let ls = token_cmd(data, &["ls"]);
    let listing = String::from_utf8(ls.stdout).unwrap();
    let prefix = listing
        .lines()
        .find(|l| l.starts_with("agent "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no agent token in {listing}"))
        .to_owned();
    // Bad prefixes are refused, naming the problem.
    let short = token_cmd(data, &["revoke", "abc"]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8 hex digits"));
    let unknown = token_cmd(data, &["revoke", "00000000000000000000"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no token's hash starts with"));
    let out = token_cmd(data, &["revoke", &prefix]);
    assert!(out.status.success(), "{out:?}");
    let mut refused = None;
    for _ in 0..100 {
        let a = post(&agent);
        if a.status == 401 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = refused.expect("the revoked token is refused within 5 s");
    assert!(refused.text().contains("not known"), "{}", refused.text());
    // The other token still works, and the last one is not revoked lightly.
    let a = request_as(
        &serve.api,
        "GET",
        &format!("/api/v1/telemetry/runs/{run}/logs"),
        b"",
        Some(&viewer),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let viewer_prefix = listing
        .lines()
        .find(|l| l.starts_with("viewer "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .to_owned();
    let last = token_cmd(data, &["revoke", &viewer_prefix]);
    assert!(!last.status.success());
    assert!(String::from_utf8_lossy(&last.stderr).contains("last token"));
}
