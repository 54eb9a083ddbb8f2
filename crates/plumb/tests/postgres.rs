//! Collectors on PostgreSQL, with real processes and a real server (the
//! tests' private cluster, see `plumb_store_postgres::testing`): bad and
//! unreachable stores are named, a schema from a newer plumb is refused,
//! the database going away gets 503 with Retry-After and loses nothing
//! acknowledged, two collectors on one database store every record once
//! while one is killed, and the lease for the work that must happen once
//! passes to the survivor, which sends a pending alert exactly once.

mod support;

use plumb_store_postgres::testing::{fresh_store_url, server_url};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// A direct connection to the tests' server, as its superuser.
fn admin() -> postgres::Client {
    postgres::Client::connect(&server_url(), postgres::NoTls).expect("the tests' server answers")
}

/// The schema a store URL names.
fn schema_of(url: &str) -> String {
    url.rsplit_once("schema=").expect("a schema").1.to_string()
}

/// Log records stored in the store at `url`.
fn log_records(url: &str) -> i64 {
    admin()
        .query_one(
            &format!(
                "SELECT coalesce(sum(lines), 0)::BIGINT FROM {}.log_chunks",
                schema_of(url)
            ),
            &[],
        )
        .unwrap()
        .get(0)
}

/// An OTLP/JSON logs body of `n` records, each with its own time and text.
fn logs_body(sender: usize, batch: usize, n: usize) -> Vec<u8> {
    let base: u64 = 1_764_000_000_000_000_000 + (sender as u64) * 1_000_000_000_000;
    let records: Vec<Value> = (0..n)
        .map(|j| {
            let seq = (batch * n + j) as u64;
            serde_json::json!({
                "timeUnixNano": (base + seq * 1000).to_string(),
                "severityNumber": 9,
                "body": {"stringValue": format!("record s{sender} b{batch} r{j} payload ok")}
            })
        })
        .collect();
    serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": format!("sender-{sender}")}}]},
        "scopeLogs": [{"logRecords": records}]
    }]})
    .to_string()
    .into_bytes()
}

/// POSTs `body` to `base` + `path`; the status, or `None` when the
/// collector cannot be reached or answers nothing (killed mid-request).
fn try_post(base: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, answer))
}

/// `plumb serve` on the store at `url`, with OTLP, on `port` (0: any).
fn serve_on(url: &str, port: u16, config: Option<&Path>) -> Serve {
    let mut b = Serve::builder().store(url).otlp();
    if port != 0 {
        b = b.port(port);
    }
    if let Some(c) = config {
        b = b.env("PLUMB_CONFIG", c);
    }
    b.start()
}

/// `plumb serve --store URL` that must fail; its stderr.
fn serve_fails(url: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = plumb_in(home.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-listen",
            "off",
            "--store",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "plumb serve --store {url} started");
    text(&out.stderr)
}

#[test]
fn bad_unreachable_and_newer_stores_are_named_and_nothing_starts() {
    // Not a URL plumb knows.
    let e = serve_fails("mysql://plumb@db/fleet");
    assert!(e.contains("store URL `mysql://plumb@db/fleet`"), "{e}");
    // A port nothing listens on: the host and port are named.
    let port = free_port();
    let e = serve_fails(&format!("postgres://plumb:secret@127.0.0.1:{port}/fleet"));
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("cannot reach the store database"),
        "{e}"
    );
    assert!(!e.contains("secret"), "the password is not shown: {e}");
    // A database that does not exist.
    let url = server_url().replace("/postgres", "/no_such_database");
    let e = serve_fails(&url);
    assert!(e.contains("no_such_database"), "{e}");
    // A bad schema name.
    let e = serve_fails(&format!("{}?schema=Robert'); DROP", server_url()));
    assert!(e.contains("schema `Robert');"), "{e}");

    // A store written by a newer plumb is refused, named, and untouched.
    let url = fresh_store_url();
    let schema = schema_of(&url);
    let mut c = admin();
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.plumb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO {schema}.plumb_meta VALUES ('schema_version', '999');"
    ))
    .unwrap();
    let e = serve_fails(&url);
    assert!(
        e.contains("schema version 999") && e.contains("upgrade plumb"),
        "{e}"
    );
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was created beside plumb_meta");
}

#[test]
fn the_database_going_away_gets_503_with_retry_after_and_loses_nothing_acknowledged() {
    // A role of its own, so taking it away touches no other test.
    let role = format!("r_{}_{}", std::process::id(), free_port());
    let mut c = admin();
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE postgres TO {role};"
    ))
    .unwrap();
    let url = fresh_store_url().replace("postgres://postgres@", &format!("postgres://{role}@"));
    let serve = serve_on(&url, 0, None);
    let otlp = serve.otlp().to_string();
    for b in 0..3 {
        let (status, answer) = try_post(&otlp, "/v1/logs", &logs_body(0, b, 100)).unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    // The database goes away: logins refused, connections cut.
    c.batch_execute(&format!(
        "ALTER ROLE {role} NOLOGIN;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
    ))
    .unwrap();
    let mut refused = 0;
    for b in 3..6 {
        let (status, answer) = try_post(&otlp, "/v1/logs", &logs_body(0, b, 100)).unwrap();
        if status == 200 {
            continue;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after:"),
            "503 says when to retry: {answer}"
        );
        refused += 1;
    }
    assert!(
        refused > 0,
        "every request was acknowledged without a database"
    );
    // It comes back: the same requests, retried, are stored (an
    // acknowledged one again stores nothing twice).
    c.batch_execute(&format!("ALTER ROLE {role} LOGIN;"))
        .unwrap();
    for b in 3..6 {
        let (status, answer) = wait_for(
            "the collector to store again",
            Duration::from_secs(30),
            || try_post(&otlp, "/v1/logs", &logs_body(0, b, 100)).filter(|(s, _)| *s != 503),
        );
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(log_records(&url), 600, "every acknowledged record, once");
    drop(serve);
}

#[test]
fn two_collectors_store_every_record_once_while_one_is_killed_and_restarted() {
    const SENDERS: usize = 8;
    const BATCHES: usize = 50;
    const PER_BATCH: usize = 500;
    let url = fresh_store_url();
    let a = serve_on(&url, 0, None);
    let port_b = free_port();
    let b = Arc::new(Mutex::new(serve_on(&url, port_b, None)));
    let targets = [a.otlp().to_string(), b.lock().unwrap().otlp().to_string()];
    let sent = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for sender in 0..SENDERS {
        let (targets, sent, retries) = (targets.clone(), sent.clone(), retries.clone());
        threads.push(std::thread::spawn(move || {
            for batch in 0..BATCHES {
                let body = logs_body(sender, batch, PER_BATCH);
                // Spread over both; on a failure, the other one, in turn,
                // as an agent listing both does. Bounded: 600 tries.
                let mut ok = false;
                for attempt in 0..600 {
                    let target = &targets[(sender + batch + attempt) % 2];
                    match try_post(target, "/v1/logs", &body) {
                        Some((200, _)) => {
                            ok = true;
                            break;
                        }
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                assert!(ok, "sender {sender} batch {batch} was never acknowledged");
                sent.fetch_add(PER_BATCH as u64, Ordering::Relaxed);
            }
        }));
    }
    // Mid-run: collector B is killed with SIGKILL, then started again on
    // its port.
    wait_for("a quarter of the records", Duration::from_secs(120), || {
        (sent.load(Ordering::Relaxed) >= (SENDERS * BATCHES * PER_BATCH / 4) as u64).then_some(())
    });
    {
        let mut b = b.lock().unwrap();
        b.kill9();
        std::thread::sleep(Duration::from_millis(500));
        *b = serve_on(&url, port_b, None);
    }
    for t in threads {
        t.join().unwrap();
    }
    let total = (SENDERS * BATCHES * PER_BATCH) as i64;
    assert_eq!(sent.load(Ordering::Relaxed) as i64, total);
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "no request met the killed collector: the kill came too late to test anything"
    );
    assert_eq!(
        log_records(&url),
        total,
        "every record stored exactly once ({} retries)",
        retries.load(Ordering::Relaxed)
    );
    drop(a);
}

/// A webhook receiver on 127.0.0.1 that keeps every JSON body posted.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                g.lock().unwrap().push(v);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn firing(got: &Mutex<Vec<Value>>, alertname: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == alertname && a["status"] == "firing")
        .count()
}

#[test]
fn the_lease_passes_to_the_survivor_which_sends_a_pending_alert_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook, got) = receiver();
    let mut toml = String::from("[alerts]\ninterval = \"200ms\"\n\n");
    for r in [
        "disk_low",
        "disk_fill",
        "node_down",
        "slow_run",
        "new_error",
        "clock_offset",
        "env_drift",
    ] {
        toml.push_str(&format!("[alerts.rules.{r}]\nenabled = false\n\n"));
    }
    toml.push_str(
        "[alerts.rules.failure_rate]\nenabled = true\nabove = 0.5\nlast = 2\nmin_runs = 2\nfor = \"6s\"\n\n",
    );
    toml.push_str(&format!("[[alerts.webhook]]\nurl = \"{hook}\"\n"));
    let config = tmp.path().join("plumb.toml");
    std::fs::write(&config, toml).unwrap();
    let url = fresh_store_url();
    let mut a = serve_on(&url, 0, Some(&config));
    let mut b = serve_on(&url, 0, Some(&config));
    // Who leads: the lease row names the holder's pid.
    let holder = || -> Option<String> {
        admin()
            .query_opt(
                &format!(
                    "SELECT holder FROM {}.leases WHERE name = 'collector'",
                    schema_of(&url)
                ),
                &[],
            )
            .ok()
            .flatten()
            .map(|r| r.get(0))
    };
    let first = wait_for("a collector to lead", Duration::from_secs(10), holder);
    let a_leads = first.contains(&format!(":{}:", a.pid()));
    assert!(
        a_leads || first.contains(&format!(":{}:", b.pid())),
        "{first} is neither collector"
    );
    // Two failed runs of one job, shipped to the collector that does not
    // lead: the alert is pending on the leader for 6 s.
    let api = if a_leads {
        b.api.clone()
    } else {
        a.api.clone()
    };
    let home = tmp.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    for _ in 0..2 {
        let status = plumb_in(&home)
            .env("PLUMB_COLLECTOR", &api)
            .env("PLUMB_OUTBOX", home.join("outbox"))
            .args(["run", "--name", "etl", "--", "sh", "-c", "exit 3"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
    }
    // Pending alerts are not listed by the API: the store says.
    let schema = schema_of(&url);
    wait_for("the alert to be pending", Duration::from_secs(20), || {
        admin()
            .query_opt(
                &format!("SELECT 1 FROM {schema}.alerts WHERE name = 'JobFailureRate' AND state = 'pending'"),
                &[],
            )
            .ok()
            .flatten()
            .map(|_| ())
    });
    assert_eq!(firing(&got, "JobFailureRate"), 0, "not fired while pending");
    // The leader dies; the survivor takes the lease within 10 s and fires
    // the alert when its 6 s are up: once.
    let survivor_pid = if a_leads {
        a.kill9();
        b.pid()
    } else {
        b.kill9();
        a.pid()
    };
    let now_leading = wait_for("the survivor to lead", Duration::from_secs(15), || {
        holder().filter(|h| h.contains(&format!(":{survivor_pid}:")))
    });
    assert_ne!(now_leading, first);
    wait_for("the alert at the webhook", Duration::from_secs(20), || {
        (firing(&got, "JobFailureRate") > 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(firing(&got, "JobFailureRate"), 1, "sent exactly once");
}

#[test]
fn a_list_of_collectors_is_tried_in_turn_for_shipping_and_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let url = fresh_store_url();
    let a = serve_on(&url, 0, None);
    let b = serve_on(&url, 0, None);
    // The first listed is down: nothing listens on its port.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let list = format!("{dead},{}", b.api);
    let home = tmp.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    let status = plumb_in(&home)
        .env("PLUMB_COLLECTOR", &list)
        .env("PLUMB_OUTBOX", home.join("outbox"))
        .args([
            "run",
            "--name",
            "failover",
            "--",
            "echo",
            "shipped past a dead collector",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Read through the list, and through the other collector on the same
    // store: the run is there once.
    let listed = wait_for("the run on the store", Duration::from_secs(20), || {
        let out = plumb_in(&home)
            .args(["ls", "--collector", &list, "--json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let runs: Value = serde_json::from_slice(&out.stdout).ok()?;
        let n = runs
            .as_array()?
            .iter()
            .filter(|r| r["name"] == "failover")
            .count();
        (n > 0).then_some(n)
    });
    assert_eq!(listed, 1);
    let via_a: Value =
        serde_json::from_str(&get(&a.api, "/api/v1/runs?name=failover").unwrap()).unwrap();
    assert_eq!(via_a.as_array().map(Vec::len), Some(1), "{via_a}");
    // A bad URL in the list is named.
    let out = plumb_in(&home)
        .args(["ls", "--collector", &format!("{},ftp://nope", b.api)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ftp://nope"),
        "{}",
        text(&out.stderr)
    );
}

/// `plumb demo --store URL` runs the fleet scene's collector on
/// PostgreSQL: the workload's runs land in that database, and the demo
/// says where its store is. A URL that is not PostgreSQL's, or a server
/// that does not answer, is named before anything runs.
#[test]
fn the_demo_runs_its_fleet_scene_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for (url, says) in [
        ("sqlite:/tmp/x", "not a PostgreSQL URL"),
        ("postgres://plumb@127.0.0.1:1/plumb", "127.0.0.1:1"),
    ] {
        let out = plumb_in(dir.path())
            .env("PLUMB_HOME", &home)
            .args(["demo", "--no-keep", "--store", url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{url}: {err}");
        assert!(!home.join("demo").exists(), "nothing ran for {url}");
    }
    let url = fresh_store_url();
    let out = ok(
        plumb_in(dir.path())
            .env("PLUMB_HOME", &home)
            .args(["demo", "--no-keep", "--store", &url])
            .output()
            .unwrap(),
        "plumb demo --store",
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("(store {url})")),
        "the demo names its store:\n{shown}"
    );
    let runs: i64 = admin()
        .query_one(
            &format!(
                "SELECT count(*) FROM {s}.runs r JOIN {s}.run_tags t ON t.run_id = r.id
                 WHERE t.key = 'where' AND t.value = 'collector'",
                s = schema_of(&url)
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(runs >= 2, "the workload's runs are in PostgreSQL: {runs}");
}
