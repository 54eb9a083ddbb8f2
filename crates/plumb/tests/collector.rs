//! The collector end to end: `plumb serve` as a real process on a free
//! loopback port, fed by real recorded runs, read by the real CLI.

mod support;

use plumb_collector::client::{Client, ClientConfig, ClientError, RemoteStore};
use plumb_store::RunStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// A client of `api` with `token`.
fn client(api: &str, token: Option<&str>) -> Client {
    Client::new(&ClientConfig {
        token: token.map(plumb_model::Secret::from),
        ..ClientConfig::new(api.to_string())
    })
    .unwrap()
}

/// Records `script` with `plumb run` while the store is unusable, so its
/// records land in a spool file, and returns that file's bytes.
fn recorded_spool(dir: &Path, name: &str, script: &str) -> Vec<u8> {
    let spool = dir.join("spool");
    let before: Vec<PathBuf> = list(&spool);
    let out = plumb_at(dir, &["run", "--name", name, "--", "sh", "-c", script])
        .env("PLUMB_HOME", "/dev/null/no-store")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recording to spool"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new: Vec<PathBuf> = list(&spool)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    std::fs::read(&new[0]).unwrap()
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn output_of(store: &RemoteStore, id: plumb_model::Uuid) -> Vec<u8> {
    let mut got = Vec::new();
    store
        .replay_output(id, None, &mut Default::default(), &mut |p| {
            got.extend_from_slice(p.bytes());
            Ok(())
        })
        .unwrap();
    got
}

#[test]
fn the_cli_prints_the_same_from_a_collector_as_from_the_local_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = recorded_spool(dir, "alpha", "echo hello collector; echo oops >&2; exit 3");
    let b = recorded_spool(dir, "beta", "echo hello again");
    let server = Serve::builder().data(&dir.join("srv")).start();
    let client = client(&server.api, None);
    for body in [&a, &b] {
        let stats = client.post_frames(body).unwrap();
        assert_eq!(stats.runs + stats.runs_kept, 2, "{stats:?}"); // running, then final
        assert!(stats.chunks >= 1, "{stats:?}");
    }
    // The local store imports the very same spool files.
    ok(plumb_at(dir, &["ls"]).output().unwrap(), "local ls");
    for args in [
        vec!["ls"],
        vec!["ls", "--json", "--failed"],
        vec!["show", "last~1"],
        vec!["show", "last", "--json"],
        vec!["logs", "last~1", "-t"],
        vec!["logs", "last~1", "--stream", "stderr"],
        vec!["search", "hello"],
        vec!["search", "oops", "--json"], // one hit: order-free
        vec!["diff", "last", "last~1"],
    ] {
        // `diff` exits 1 when the runs differ, as diff(1) does; both sides
        // must say the same.
        let expect = if args[0] == "diff" { Some(1) } else { Some(0) };
        let local = plumb_at(dir, &args).output().unwrap();
        assert_eq!(
            local.status.code(),
            expect,
            "local {args:?}: {}",
            String::from_utf8_lossy(&local.stderr)
        );
        let mut remote_args = args.clone();
        remote_args.extend(["--collector", &server.api]);
        let remote = plumb_at(dir, &remote_args).output().unwrap();
        assert_eq!(
            remote.status.code(),
            expect,
            "remote {args:?}: {}",
            String::from_utf8_lossy(&remote.stderr)
        );
        assert!(!local.stdout.is_empty(), "{args:?} printed nothing");
        let (mut l, mut r) = (
            String::from_utf8_lossy(&local.stdout).into_owned(),
            String::from_utf8_lossy(&remote.stdout).into_owned(),
        );
        if args[0] == "search" && !args.contains(&"--json") {
            // Hits come newest chunk first, by storage order, and the two
            // stores received the runs in different orders: compare the
            // lines, not their order.
            let sorted = |t: &str| {
                let mut v: Vec<String> = t.lines().map(String::from).collect();
                v.sort();
                v.join("\n")
            };
            (l, r) = (sorted(&l), sorted(&r));
        }
        assert_eq!(l, r, "plumb {args:?}");
    }
    // A reference that matches nothing is the same clear error remotely.
    let out = plumb_at(dir, &["show", "ffff0000", "--collector", &server.api])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run matches `ffff0000`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a raw HTTP request and returns (status, body).
fn raw_http(api: &str, head: &str, body: &[u8]) -> (u16, String) {
    http_raw(api, head, body).status_and_text()
}

fn post(api: &str, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let head = format!(
        "POST /api/v1/ingest/spool HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\n{}Content-Length: {}\r\n\r\n",
        encoding.map_or(String::new(), |e| format!("Content-Encoding: {e}\r\n")),
        body.len()
    );
    raw_http(api, &head, body)
}

#[test]
fn malformed_bodies_get_a_4xx_naming_the_problem_and_harm_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::builder().data(&tmp.path().join("srv")).start();
    let client = client(&server.api, None);
    let (good, frames, text) = spooled_run("kept", 50);
    client.post_frames(&frames.bytes).unwrap();
    let (_, other, _) = spooled_run("never", 5);
    let bytes = &other.bytes;
    let mut flipped = bytes.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x55;
    let st = "application/x-plumb-spool";
    // (what the error names, status, content type, encoding, body)
    type Case<'a> = (&'a str, u16, &'a str, Option<&'a str>, Vec<u8>);
    let cases: Vec<Case<'_>> = vec![
        (
            "truncated",
            400,
            st,
            None,
            bytes[..bytes.len() - 7].to_vec(),
        ),
        ("checksum", 400, st, None, flipped),
        ("not valid gzip", 400, st, Some("gzip"), bytes.clone()),
        (
            "Content-Type `application/json`",
            415,
            "application/json",
            None,
            bytes.clone(),
        ),
        ("Content-Encoding `br`", 415, st, Some("br"), bytes.clone()),
        ("no frames", 400, st, None, Vec::new()),
    ];
    for (needle, status, ct, enc, body) in cases {
        let (got, msg) = post(&server.api, ct, enc, &body);
        assert_eq!(got, status, "{needle}: {msg}");
        assert!(msg.contains(needle), "expected `{needle}` in {msg}");
        let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
        assert!(v["error"].is_string(), "{msg}");
    }
    // Oversized: refused from its Content-Length, before it is read.
    let head = "POST /api/v1/ingest/spool HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-plumb-spool\r\nContent-Length: 100000000\r\n\r\n";
    let (got, msg) = raw_http(&server.api, head, b"");
    assert_eq!(got, 413, "{msg}");
    assert!(msg.contains("larger than 64 MiB"), "{msg}");
    // Still serving, and what was stored is intact; nothing else arrived.
    let store = RemoteStore::new(client);
    let runs = store.list_runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id, good.id);
    assert_eq!(output_of(&store, good.id), text);
}

/// The HTTP status of a client call (200 for success).
fn status<T>(r: Result<T, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ClientError::Status { status, .. }) => status,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn tokens_gate_reading_and_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("srv");
    let server = Serve::builder().data(&data).tokens().start();
    let agent = server.agent.clone().unwrap();
    let viewer = server.viewer.clone().unwrap();
    let admin = server.admin.clone().unwrap();
    assert!(
        agent.starts_with("plumb_") && agent.len() == 6 + 64,
        "{agent}"
    );
    // Only hashes are stored: the token itself is nowhere in the store.
    for entry in list(&data) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            memchr::memmem::find(&bytes, agent.as_bytes()).is_none(),
            "token found in {}",
            entry.display()
        );
    }
    let (_, frames, _) = spooled_run("secret-job", 3);
    // Writing: agent or admin only.
    assert_eq!(
        status(client(&server.api, None).post_frames(&frames.bytes)),
        401
    );
    assert_eq!(
        status(client(&server.api, Some("plumb_bogus")).post_frames(&frames.bytes)),
        401
    );
    assert_eq!(
        status(client(&server.api, Some(&viewer)).post_frames(&frames.bytes)),
        403
    );
    assert_eq!(
        status(client(&server.api, Some(&agent)).post_frames(&frames.bytes)),
        200
    );
    assert_eq!(
        status(client(&server.api, Some(&admin)).post_frames(&frames.bytes)),
        200
    );
    // Reading: nothing without a viewer (or admin) token.
    let paths = [
        "/api/v1/runs",
        "/api/v1/runs/last",
        "/api/v1/runs/last/id",
        "/api/v1/runs/last/output",
        "/api/v1/search?text=job",
        "/api/v1/diff?a=last&b=last",
        "/api/v1/fingerprints/x",
        "/metrics",
    ];
    for p in paths {
        let get = |t: Option<&str>| status(client(&server.api, t).get_raw(p, &[]).map(|_| ()));
        assert_eq!(get(None), 401, "{p} without a token");
        assert_eq!(get(Some(&agent)), 403, "{p} with an agent token");
        let with_viewer = get(Some(&viewer));
        assert!(
            with_viewer == 200 || with_viewer == 404,
            "{p}: {with_viewer}"
        );
        assert_eq!(get(Some(&admin)), with_viewer, "{p} with admin");
    }
    // The CLI takes its token from PLUMB_TOKEN.
    let out = plumb_at(dir, &["ls", "--collector", &server.api])
        .env("PLUMB_TOKEN", &viewer)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ok(out, "ls").stdout).contains("secret-job"));
    let out = plumb_at(dir, &["ls", "--collector", &server.api])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // Health checks stay open for load balancers.
    assert_eq!(
        status(
            client(&server.api, None)
                .get_raw("/healthz", &[])
                .map(|_| ())
        ),
        200
    );
}

#[test]
fn a_non_loopback_address_without_tokens_is_refused_unless_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = plumb_at(
        tmp.path(),
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--otlp-listen",
            "off",
            "--data",
        ],
    )
    .arg(tmp.path().join("srv"))
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-loopback") && err.contains("--insecure"),
        "{err}"
    );
}

#[test]
fn tls_with_a_private_ca_works_and_a_client_without_it_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Serve::builder().data(&dir.join("srv")).tls().start();
    let cert_path = server.ca.clone().unwrap();
    assert!(server.api.starts_with("https://"), "{}", server.api);
    let (run, frames, text) = spooled_run("over-tls", 10);
    let trusted = Client::new(&ClientConfig {
        ca_cert: Some(cert_path.clone()),
        ..ClientConfig::new(server.api.clone())
    })
    .unwrap();
    trusted.post_frames(&frames.bytes).unwrap();
    assert_eq!(output_of(&RemoteStore::new(trusted), run.id), text);
    // Without the CA the certificate is not trusted.
    let untrusted = Client::new(&ClientConfig::new(server.api.clone())).unwrap();
    match untrusted.post_frames(&frames.bytes) {
        Err(ClientError::Transport { message, .. }) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}")
        }
        other => panic!("a client without the CA connected: {other:?}"),
    }
    // The CLI verifies with PLUMB_CA_CERT.
    let out = plumb_at(dir, &["logs", "last", "--collector", &server.api])
        .env("PLUMB_CA_CERT", &cert_path)
        .output()
        .unwrap();
    assert_eq!(ok(out, "logs over TLS").stdout, text);
    let out = plumb_at(dir, &["ls", "--collector", &server.api])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the CLI trusted an unknown certificate"
    );
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = server.api.replace("https://", "http://");
    assert!(
        Client::new(&ClientConfig::new(plain))
            .unwrap()
            .get_raw("/healthz", &[])
            .is_err()
    );
}

#[test]
fn metrics_pass_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::builder().data(&tmp.path().join("srv")).start();
    let client = client(&server.api, None);
    let (_, frames, _) = spooled_run("metered", 5);
    client.post_frames(&frames.bytes).unwrap();
    let _ = post(&server.api, "text/plain", None, b"x");
    let (body, headers) = client.get_raw("/metrics", &[]).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{headers:?}"
    );
    for needle in [
        "plumb_ingest_requests_total{endpoint=\"spool\",code=\"200\"} 1",
        "plumb_ingest_requests_total{endpoint=\"spool\",code=\"415\"} 1",
        "plumb_ingest_latency_seconds_bucket",
        "plumb_runs{state=\"succeeded\"} 1",
    ] {
        assert!(text.contains(needle), "no `{needle}` in\n{text}");
    }
    promtool_ok(&text);
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_record_and_stores_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("srv");
    let mut server = Serve::builder().data(&data).start();
    let api = server.api.clone();
    // Four senders, each with its own runs; each remembers what was
    // acknowledged.
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let api = api.clone();
            std::thread::spawn(move || {
                let client = Client::new(&ClientConfig {
                    timeout: Duration::from_secs(10),
                    ..ClientConfig::new(api)
                })
                .unwrap();
                let mut sent = Vec::new();
                let mut acked = Vec::new();
                for i in 0..150 {
                    let (run, frames, text) = spooled_run(&format!("s{s}-{i}"), 200);
                    let result = client.post_frames(&frames.bytes);
                    sent.push((run.id, frames, text));
                    match result {
                        Ok(_) => acked.push(run.id),
                        Err(_) => break,
                    }
                }
                (sent, acked)
            })
        })
        .collect();
    // Let them get going, then kill the collector without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = client(&server.api, None);
    let store = RemoteStore::new(probe);
    while store.list_runs(&Default::default()).map_or(0, |r| r.len()) < 40 {
        assert!(Instant::now() < deadline, "ingest did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    let results: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let acked: usize = results.iter().map(|(_, a)| a.len()).sum();
    assert!(acked >= 40, "only {acked} acknowledged");
    // Restart on the same store; every sender retries everything it sent
    // (at-least-once), which must not duplicate anything.
    let server = Serve::builder().data(&data).start();
    let client = client(&server.api, None);
    let store = RemoteStore::new(client.clone());
    for (sent, acked) in &results {
        for (id, _, text) in sent.iter().filter(|(id, _, _)| acked.contains(id)) {
            assert_eq!(
                &output_of(&store, *id),
                text,
                "acknowledged run {id} after kill -9"
            );
        }
        for (_, frames, _) in sent {
            client.post_frames(&frames.bytes).unwrap();
        }
        for (id, _, text) in sent {
            assert_eq!(&output_of(&store, *id), text, "run {id} after retries");
        }
    }
    let total: usize = results.iter().map(|(s, _)| s.len()).sum();
    let runs = store.list_runs(&plumb_store::RunFilter::default()).unwrap();
    assert_eq!(runs.len(), total, "each run stored exactly once");
}

/// Sends a raw HTTP request and returns (status, head in lower case, body).
fn raw_http_full(api: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let a = http_raw(api, head, body);
    let fields: String = a
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!("http/1.1 {}\r\n{fields}", a.status);
    (a.status, head.to_ascii_lowercase(), a.text())
}

fn get_with(api: &str, path: &str, extra: &str) -> (u16, String, String) {
    let host = api.trim_start_matches("http://");
    raw_http_full(
        api,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n"),
        b"",
    )
}

#[test]
fn issue_21_other_sites_cannot_use_a_browser_against_an_open_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::builder()
        .data(&tmp.path().join("srv"))
        .args(["--allow-host", "plumb.test"])
        .start();
    let api = &server.api;
    let port = api.rsplit(':').next().unwrap();
    // DNS rebinding: a name of the attacker's resolving to 127.0.0.1.
    let (code, _, body) = raw_http_full(
        api,
        "GET /api/v1/runs HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("attacker.example"), "{body}");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("plumb.test:{port}"),
    ] {
        let (code, _, body) = raw_http_full(
            api,
            &format!("GET /api/v1/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            b"",
        );
        assert_eq!(code, 200, "{host}: {body}");
    }
    // A page elsewhere posting (no-cors) to a state-changing endpoint.
    let host = api.trim_start_matches("http://");
    let resolve = |extra: &str| {
        raw_http_full(
            api,
            &format!(
                "POST /api/v1/errors/0123456789abcdef/resolve HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
            ),
            b"",
        )
    };
    let (code, _, body) = resolve("Origin: http://evil.example\r\n");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    let (code, _, body) = resolve("Sec-Fetch-Site: cross-site\r\n");
    assert_eq!(code, 403, "{body}");
    // The same request from this origin, or from a client that is not a
    // browser, reaches the endpoint (which knows no such group).
    assert_eq!(resolve(&format!("Origin: http://{host}\r\n")).0, 404);
    assert_eq!(resolve("").0, 404);
    // Pages cannot be framed or sniffed, and run only their own scripts.
    let (code, head, _) = get_with(api, "/runs", "");
    assert_eq!(code, 200);
    assert!(
        head.contains("content-security-policy: default-src 'self'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[test]
fn issue_21_login_redirects_only_here_and_its_cookie_is_a_revocable_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("srv");
    let out = ok(
        plumb_at(dir, &["token", "create", "--role", "viewer", "--data"])
            .arg(&data)
            .output()
            .unwrap(),
        "token create",
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A second token keeps auth on once the viewer's is revoked.
    ok(
        plumb_at(dir, &["token", "create", "--role", "admin", "--data"])
            .arg(&data)
            .output()
            .unwrap(),
        "token create",
    );
    let mut server = Serve::builder().data(&data).start();
    let login = |api: &str, next: &str| {
        let host = api.trim_start_matches("http://");
        let form = format!("token={token}&next={next}");
        raw_http_full(
            api,
            &format!(
                "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                form.len()
            ),
            form.as_bytes(),
        )
    };
    let port = server.api.rsplit(':').next().unwrap().to_string();
    // A tab after the slash: browsers drop it and go to //127.0.0.1:PORT.
    let (code, head, _) = login(&server.api, &format!("%2F%09%2F127.0.0.1:{port}%2Fphish"));
    assert_eq!(code, 303, "{head}");
    assert!(head.contains("\r\nlocation: /\r\n"), "{head}");
    // A newline is not a 500 with the cookie set anyway.
    let (code, head, _) = login(&server.api, "%2Fruns%0D%0AX-Evil:%201");
    assert_eq!(code, 303, "{head}");
    assert!(head.contains("\r\nlocation: /\r\n"), "{head}");
    assert!(!head.contains("x-evil"), "{head}");
    // A path here is followed.
    let (code, head, _) = login(&server.api, "%2Fnodes");
    assert_eq!(code, 303);
    assert!(head.contains("\r\nlocation: /nodes\r\n"), "{head}");
    // The cookie is a session id, not the token.
    let set_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie")
        .to_string();
    assert!(
        !set_cookie.contains(&token.to_ascii_lowercase()),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("httponly") && set_cookie.contains("samesite=strict"),
        "{set_cookie}"
    );
    let session = set_cookie.split(';').next().unwrap().to_string();
    let with_cookie = |api: &str| {
        get_with(
            api,
            "/api/v1/pages/nodes",
            &format!("Cookie: {session}\r\n"),
        )
        .0
    };
    assert_eq!(with_cookie(&server.api), 200);
    assert_eq!(
        get_with(
            &server.api,
            "/api/v1/pages/nodes",
            "Cookie: plumb_session=plumbs_forged\r\n"
        )
        .0,
        401
    );
    // The session survives a restart of the collector.
    drop(server);
    server = Serve::builder().data(&data).start();
    assert_eq!(with_cookie(&server.api), 200);
    // Revoking the token ends it (the collector rereads within a second).
    let ls = ok(
        plumb_at(dir, &["token", "ls", "--data"])
            .arg(&data)
            .output()
            .unwrap(),
        "token ls",
    );
    let ls = String::from_utf8(ls.stdout).unwrap();
    let hash = ls
        .lines()
        .filter(|l| l.contains("viewer"))
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no viewer hash in `{ls}`"))
        .to_string();
    ok(
        plumb_at(dir, &["token", "revoke", &hash, "--data"])
            .arg(&data)
            .output()
            .unwrap(),
        "token revoke",
    );
    let mut refused = false;
    for _ in 0..50 {
        if with_cookie(&server.api) == 401 {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused, "a session outlived its revoked token");
}

/// Issue 13, item 4, through a collector: the final record settles the cap
/// on the collector's store, and `logs --collector` marks the gap as the
/// local store does.
#[test]
fn a_run_over_the_cap_shipped_to_a_collector_keeps_head_and_tail_to_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::builder().data(&dir.path().join("data")).start();
    let script = "import sys\nfor i in range(100000): sys.stdout.write(f'row {i:06d}\\n')";
    let out = ok(
        plumb_at(
            dir.path(),
            &[
                "run",
                "--collector",
                &server.api,
                "--",
                "python3",
                "-c",
                script,
            ],
        )
        .env("PLUMB_OUTPUT_CAP", "100K")
        .output()
        .unwrap(),
        "plumb run",
    );
    let all = out.stdout;
    assert_eq!(all.len(), 100_000 * 11);
    let cap = 100 << 10;
    let mut want = all[..cap / 2].to_vec();
    if !want.ends_with(b"\n") {
        want.push(b'\n');
    }
    want.extend_from_slice(
        plumb_model::display::output_gap((all.len() - cap) as u64, cap as u64).as_bytes(),
    );
    want.push(b'\n');
    want.extend_from_slice(&all[all.len() - cap / 2..]);
    // The run is shipped when it ends; wait (bounded) for the collector.
    let mut got = Vec::new();
    for _ in 0..100 {
        let o = plumb_at(dir.path(), &["logs", "last", "--collector", &server.api])
            .output()
            .unwrap();
        got = o.stdout;
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        got == want,
        "logs from the collector: {} bytes, expected {}",
        got.len(),
        want.len()
    );
}
