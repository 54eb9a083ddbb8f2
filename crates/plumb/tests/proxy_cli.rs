//! `plumb proxy` as a server and as a command-line client of that server:
//! real processes, a real TCP echo upstream on 127.0.0.1.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A `plumb proxy` server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// Starts a server with extra arguments and environment variables.
    fn start_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Server {
        let mut cmd = plumb();
        cmd.args(["proxy", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // The server announces its admin address on stderr once it listens.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("plumb proxy exited before announcing its address")
                .unwrap();
            if let Some(addr) = line.strip_prefix("plumb proxy: admin API on http://") {
                break addr.trim().parse::<SocketAddr>().unwrap().port();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, port }
    }

    fn cli(&self, args: &[&str]) -> Output {
        plumb()
            .args(["proxy", "--port", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a client command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "plumb proxy {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round trip of a short message through `addr`; returns its duration.
fn round_trip(addr: &str) -> std::io::Result<Duration> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let t = Instant::now();
    s.write_all(b"ping\n")?;
    let mut got = [0u8; 5];
    s.read_exact(&mut got)?;
    assert_eq!(&got, b"ping\n");
    Ok(t.elapsed())
}

#[test]
fn cli_client_drives_a_running_server_end_to_end() {
    let server = Server::start(&[]);
    let upstream = echo_server();

    let created = server.json(&["add", "db", "--upstream", &upstream.to_string()]);
    assert_eq!(created["name"], "db");
    assert_eq!(created["enabled"], true);
    let listen = created["listen"].as_str().unwrap().to_string();
    assert!(!listen.ends_with(":0"), "a real port was chosen: {listen}");

    let list = server.ok(&["list"]);
    assert!(
        list.contains("db") && list.contains(&upstream.to_string()),
        "{list}"
    );

    // A latency toxic added from the command line slows real round trips.
    let toxic = server.json(&[
        "toxic",
        "add",
        "db",
        "--type",
        "latency",
        "-a",
        "latency=200",
    ]);
    assert_eq!(toxic["name"], "latency_downstream");
    assert_eq!(toxic["attributes"]["latency"], 200);
    let slow = round_trip(&listen).unwrap();
    assert!(
        slow >= Duration::from_millis(190),
        "latency toxic: {slow:?}"
    );
    assert!(
        server
            .ok(&["list"])
            .contains("latency_downstream(latency,downstream)")
    );

    // Changed in place, then removed: round trips are fast again.
    let updated = server.json(&[
        "toxic",
        "update",
        "db",
        "latency_downstream",
        "-a",
        "latency=5",
    ]);
    assert_eq!(updated["attributes"]["latency"], 5);
    server.ok(&["toxic", "remove", "db", "latency_downstream"]);
    let fast = round_trip(&listen).unwrap();
    assert!(fast < Duration::from_millis(150), "after removal: {fast:?}");

    // Disabled: the listener is gone; enabled again: it answers.
    assert_eq!(server.json(&["disable", "db"])["enabled"], false);
    assert!(round_trip(&listen).is_err(), "a disabled proxy must refuse");
    assert_eq!(server.json(&["enable", "db"])["enabled"], true);
    round_trip(&listen).unwrap();

    // Every change above is in the event log, in order, with UTC times:
    // a table by default, the API's JSON with --json.
    let events = server.json(&["events", "--json"]);
    let text = events.to_string();
    for needle in ["latency_downstream", "db"] {
        assert!(text.contains(needle), "events lack {needle}: {text}");
    }
    let table = server.ok(&["events"]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].contains("TIME (UTC)"), "{table}");
    assert_eq!(
        rows.len() - 1,
        events["events"].as_array().unwrap().len(),
        "{table}"
    );
    let added = rows
        .iter()
        .find(|r| r.contains("toxic_added"))
        .unwrap_or_else(|| panic!("no toxic_added row: {table}"));
    let time = added.split_whitespace().nth(1).unwrap();
    assert!(
        time.ends_with('Z')
            && plumb_model::parse_moment(time, plumb_model::Timestamp::now()).is_ok(),
        "an RFC 3339 UTC time, not {time}: {added}"
    );
    assert!(
        added.contains("db") && added.contains("latency_downstream"),
        "{added}"
    );

    let metrics = server.ok(&["metrics"]);
    assert!(metrics.contains("db"), "metrics name the proxy: {metrics}");

    server.ok(&["delete", "db"]);
    assert!(!server.ok(&["list"]).contains(&upstream.to_string()));
}

#[test]
fn cli_client_reports_bad_input_and_server_errors_clearly() {
    let server = Server::start(&[]);
    let upstream = echo_server().to_string();
    server.ok(&["add", "api", "--upstream", &upstream]);

    // A malformed attribute never reaches the server.
    let out = server.cli(&["toxic", "add", "api", "-t", "latency", "-a", "latency=fast"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("latency") && err.contains("not an integer"),
        "{err}"
    );

    // An unknown toxic type is named, with the valid ones, before any
    // request is sent.
    let out = server.cli(&["toxic", "add", "api", "-t", "no_such_toxic"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["no_such_toxic", "latency", "bandwidth", "drop_connection"] {
        assert!(err.contains(needle), "lacks {needle}: {err}");
    }

    // The server's own refusals come back with their message and a failure.
    let out = server.cli(&["add", "api", "--upstream", &upstream]);
    assert!(!out.status.success(), "a duplicate proxy is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = server.cli(&["show", "missing"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // Nothing that was there is harmed by the refusals.
    assert_eq!(server.json(&["show", "api"])["upstream"], upstream.as_str());
}

#[test]
fn server_config_and_populate_create_proxies_with_toxics() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo_server().to_string();
    let config = dir.path().join("proxies.json");
    std::fs::write(
        &config,
        serde_json::json!([{
            "name": "cache",
            "listen": "127.0.0.1:0",
            "upstream": upstream,
            "toxics": [{"type": "latency", "attributes": {"latency": 150}}]
        }])
        .to_string(),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let cache = server.json(&["show", "cache"]);
    assert_eq!(cache["toxics"][0]["type"], "latency");
    let slow = round_trip(cache["listen"].as_str().unwrap()).unwrap();
    assert!(
        slow >= Duration::from_millis(140),
        "toxic from --config: {slow:?}"
    );

    let more = dir.path().join("more.json");
    std::fs::write(
        &more,
        serde_json::json!([{"name": "queue", "listen": "127.0.0.1:0", "upstream": upstream}])
            .to_string(),
    )
    .unwrap();
    server.ok(&["populate", more.to_str().unwrap()]);
    let queue = server.json(&["show", "queue"]);
    round_trip(queue["listen"].as_str().unwrap()).unwrap();

    // `reset` removes every toxic.
    server.ok(&["reset"]);
    assert_eq!(
        server.json(&["show", "cache"])["toxics"],
        serde_json::json!([])
    );

    // A bad config names the file and the line of the proxy at fault (or
    // of the syntax error), without HTTP status codes.
    let bad = dir.path().join("bad.json");
    for (text, line, needle) in [
        (
            format!(
                "[\n  {{\"name\": \"a\", \"listen\": \"127.0.0.1:0\", \"upstream\": \"{upstream}\"}},\n  {{\"name\": \"b\", \"listen\": \"127.0.0.1:0\",\n   \"upstream\": \"{upstream}\", \"toxics\": [{{\"type\": \"nope\"}}]}}\n]"
            ),
            3,
            "invalid toxic type",
        ),
        (
            "[\n  {\"name\": \"a\",,}\n]".to_string(),
            2,
            "key must be a string",
        ),
        ("{\"name\": \"a\"}".to_string(), 0, "array of proxies"),
    ] {
        std::fs::write(&bad, &text).unwrap();
        let out = plumb()
            .args(["proxy", "--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&bad)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        let at = match line {
            0 => format!("{}:", bad.display()),
            n => format!("{}:{n}:", bad.display()),
        };
        assert!(err.contains(&at), "names {at}: {err}");
        assert!(err.contains(needle), "says {needle}: {err}");
        assert!(!err.contains("HTTP"), "{err}");
    }

    // --config is refused in client mode with a message saying why.
    let out = server.cli(&["--config", config.to_str().unwrap(), "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server mode"));
}

#[test]
fn proxy_events_reach_the_collector_and_are_searchable() {
    let collector = Serve::builder().start();
    let home = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &[],
        &[
            ("PLUMB_COLLECTOR", std::path::Path::new(&collector.api)),
            ("PLUMB_HOME", home.path()),
        ],
    );

    let upstream = echo_server().to_string();
    server.ok(&["add", "orders", "--upstream", &upstream]);
    server.ok(&[
        "toxic",
        "add",
        "orders",
        "-t",
        "latency",
        "-n",
        "slowdb",
        "-a",
        "latency=120",
    ]);

    // Shipping is asynchronous: poll the collector's search, bounded.
    let found = wait_for(
        "the toxic event at the collector",
        Duration::from_secs(10),
        || {
            let out = plumb_in(home.path())
                .args(["search", "--collector", &collector.api, "slowdb"])
                .output()
                .unwrap();
            let found = text(&out.stdout);
            found.contains("toxic_added").then_some(found)
        },
    );
    assert!(
        found.contains("toxic_added")
            && found.contains("proxy=orders")
            && found.contains("latency=120"),
        "the toxic event is searchable at the collector: {found:?}"
    );
}
