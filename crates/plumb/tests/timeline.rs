//! `plumb timeline` with real processes and files: `--merge` of plain log
//! files in every recognised format with per-file offsets, causal order of
//! request/response pairs across two skewed hosts, bad input; and the
//! store timeline corrected by an agent's measured offset.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use support::*;

const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2026-12-03T20:55:06Z.
const T0: i64 = 1_796_331_306 * SEC;

/// An RFC 3339 time with milliseconds.
fn iso(ns: i64) -> String {
    let s = ns.div_euclid(SEC);
    let days = s.div_euclid(86_400);
    // T0's day is 2026-12-03; the tests stay within it.
    assert_eq!(days, T0 / SEC / 86_400, "the tests stay on one day");
    let t = s.rem_euclid(86_400);
    format!(
        "2026-12-03T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ns.rem_euclid(SEC) / MS
    )
}

/// Epoch seconds with microseconds.
fn epoch(ns: i64) -> String {
    format!("{}.{:06}", ns.div_euclid(SEC), ns.rem_euclid(SEC) / 1000)
}

/// Two hosts: the client (true clock, RFC 3339 stamps) sends a request
/// every 50 ms; the server, whose clock is `skew` ahead (epoch stamps),
/// receives it 2 ms later and answers 1 ms after that; the client receives
/// the answer 2 ms later. Returns the two files' contents.
fn exchange(pairs: i64, skew: i64) -> (String, String) {
    let (mut client, mut server) = (String::new(), String::new());
    for k in 0..pairs {
        let t = T0 + k * 50 * MS;
        client.push_str(&format!("{} GET /item/{k} plumb.msg.send=q{k}\n", iso(t)));
        server.push_str(&format!(
            "{} handling plumb.msg.recv=q{k}\n",
            epoch(t + 2 * MS + skew)
        ));
        server.push_str(&format!(
            "{} 200 OK plumb.msg.send=r{k}\n",
            epoch(t + 3 * MS + skew)
        ));
        client.push_str(&format!(
            "{} got 200 plumb.msg.recv=r{k}\n",
            iso(t + 5 * MS)
        ));
    }
    (client, server)
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

/// The JSON lines `plumb timeline --merge ARGS --json` prints.
fn merged(home: &Home, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["timeline", "--json", "--merge"];
    all.extend_from_slice(args);
    let out = ok(home.run(&all), &format!("plumb {all:?}"));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The send and receive ids out of order: receives that come before
/// their send (or with no send before them).
fn receives_before_sends(lines: &[Value]) -> Vec<String> {
    let mut seen = HashMap::new();
    let mut bad = Vec::new();
    for l in lines {
        let t = l["text"].as_str().unwrap();
        if let Some(id) = t.split("plumb.msg.send=").nth(1) {
            seen.insert(id.trim().to_string(), ());
        }
        if let Some(id) = t.split("plumb.msg.recv=").nth(1)
            && !seen.contains_key(id.trim())
        {
            bad.push(id.trim().to_string());
        }
    }
    bad
}

#[test]
fn merge_with_offsets_puts_every_response_after_its_request_and_raw_timestamps_would_not() {
    let home = Home::new();
    let (c, s) = exchange(20, 3 * SEC + 250 * MS);
    let c = write(home.dir(), "client.log", &c);
    let s = write(home.dir(), "server.log", &s);

    // Corrected by the server's known offset, with the causal pass off:
    // the correction alone orders every pair, and nothing is moved.
    let fixed = merged(&home, &[&c, &format!("{s}@+3.25s"), "--causal-window", "0"]);
    assert_eq!(fixed.len(), 80);
    assert_eq!(receives_before_sends(&fixed), Vec::<String>::new());
    assert!(
        fixed.iter().all(|l| l["shift_ns"].is_null()),
        "nothing moved"
    );
    let first_server = fixed.iter().find(|l| l["host"] == "server").unwrap();
    assert_eq!(first_server["raw_ns"], T0 + 2 * MS + 3 * SEC + 250 * MS);
    assert_eq!(first_server["placed_ns"], T0 + 2 * MS);
    assert_eq!(first_server["offset_ns"], 3 * SEC + 250 * MS);

    // The same lines on their raw timestamps: the server's lines come
    // seconds late, so its answers' receipts precede their sends.
    let raw = merged(&home, &[&c, &s, "--causal-window", "0"]);
    assert_eq!(raw.len(), 80);
    let bad = receives_before_sends(&raw);
    assert_eq!(
        bad.len(),
        20,
        "every answer is received before it is sent: {bad:?}"
    );

    // The offset given by label, the other way of giving it, agrees.
    let by_label = merged(&home, &[&c, &s, "--offset", "server=+3.25s"]);
    assert_eq!(by_label, fixed);
}

#[test]
fn without_offsets_the_causal_pass_moves_receives_after_their_sends_and_marks_them() {
    let home = Home::new();
    // The server is 40 ms behind: its receipts of requests land before
    // the requests on raw time, but within one exchange.
    let (c, s) = exchange(10, -40 * MS);
    let c = write(home.dir(), "client.log", &c);
    let s = write(home.dir(), "server.log", &s);
    let lines = merged(&home, &[&c, &s]);
    assert_eq!(lines.len(), 40);
    assert_eq!(receives_before_sends(&lines), Vec::<String>::new());
    let moved: Vec<&Value> = lines
        .iter()
        .filter(|l| l["shift_ns"].as_i64().unwrap_or(0) > 0)
        .collect();
    assert!(!moved.is_empty());
    // A host's own order holds, and the placed times never go back.
    for host in ["client", "server"] {
        let raws: Vec<i64> = lines
            .iter()
            .filter(|l| l["host"] == host)
            .map(|l| l["raw_ns"].as_i64().unwrap())
            .collect();
        assert!(raws.windows(2).all(|w| w[0] <= w[1]), "{host}: {raws:?}");
    }
    let placed: Vec<i64> = lines
        .iter()
        .map(|l| l["placed_ns"].as_i64().unwrap())
        .collect();
    assert!(placed.windows(2).all(|w| w[0] <= w[1]), "{placed:?}");
    // In text, a moved line is marked `>`.
    let out = ok(home.run(&["timeline", "--merge", &c, &s]), "text");
    let t = text(&out.stdout);
    assert!(
        t.lines()
            .any(|l| l.contains(" > server ") || l.contains(" > client ")),
        "{t}"
    );
}

#[test]
fn merge_reads_every_recognised_format_and_a_pattern() {
    let home = Home::new();
    let d = home.dir();
    // One moment, 2026-12-03T20:55:06Z, in each format (plus a fraction
    // that orders the first three).
    let files = [
        write(d, "epoch.log", "1796331306.000100 e1\n"),
        write(d, "iso.log", "2026-12-03T20:55:06.0002Z i1\n"),
        write(d, "zoned.log", "2026-12-03T21:55:06.0003+01:00 z1\n"),
        write(d, "py.log", "2026-12-03 20:55:06,000 INFO p1\n"),
        write(d, "sys.log", "Dec  3 20:55:06 host sshd[7]: s1\n"),
        write(d, "web.log", "[03/Dec/2026:20:55:06 +0000] \"GET /\" 200\n"),
    ];
    let mut args: Vec<String> = files[..4].to_vec();
    // The Python host's clock is 4 ms behind and the syslog host's 5 ms:
    // their lines are placed 4 and 5 ms later, after the three others.
    args[3] = format!("{}@-4ms", files[3]);
    args.push(format!("{}@-5ms", files[4]));
    args.extend(["--year".into(), "2026".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = merged(&home, &a);
    let order: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["host"].as_str().unwrap(),
                l["placed_ns"].as_i64().unwrap() - T0,
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("epoch", 100_000),
            ("iso", 200_000),
            ("zoned", 300_000),
            ("py", 4 * MS),
            ("sys", 5 * MS)
        ]
    );
    // The access log's format is none of the built-in ones: named, with
    // the way out; with --pattern it reads.
    let out = home.run(&["timeline", "--merge", &files[5]]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("web.log:1") && e.contains("--pattern"), "{e}");
    let lines = merged(&home, &[&files[5], "--pattern", "[%d/%b/%Y:%H:%M:%S %z]"]);
    assert_eq!(lines[0]["placed_ns"], T0);
}

#[test]
fn continuation_lines_stay_under_their_line_and_a_last_line_without_newline_is_kept() {
    let home = Home::new();
    let d = home.dir();
    let app = write(
        d,
        "app.log",
        "2026-12-03 20:55:06,100 ERROR boom\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n2026-12-03 20:55:06,300 INFO after\n2026-12-03 20:55:06,500 INFO cut short",
    );
    let other = write(
        d,
        "other.log",
        "1796331306.200 between\n1796331306.400 later\n",
    );
    let lines = merged(&home, &[&app, &other]);
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "2026-12-03 20:55:06,100 ERROR boom\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad",
            "1796331306.200 between",
            "2026-12-03 20:55:06,300 INFO after",
            "1796331306.400 later",
            "2026-12-03 20:55:06,500 INFO cut short",
        ]
    );
    assert_eq!(lines[2]["line"], 5, "line numbers count continuation lines");
    // Text output keeps the traceback lines right under their line, and
    // ends the cut-short line.
    let out = ok(home.run(&["timeline", "--merge", &app, &other]), "text");
    let t = text(&out.stdout);
    let l: Vec<&str> = t.lines().collect();
    assert!(
        l[0].ends_with("ERROR boom") && l[1] == "Traceback (most recent call last):",
        "{t}"
    );
    assert!(t.ends_with("cut short\n"), "{t}");
}

#[test]
fn bad_merge_input_gets_clear_errors_naming_the_file() {
    let home = Home::new();
    let d = home.dir();
    let good = write(d, "good.log", "1796331306.1 x\n");
    let prose = write(d, "prose.txt", "\n\nDear diary, today\n");
    let cases: [(Vec<String>, &[&str]); 5] = [
        (
            vec![prose.clone()],
            &["prose.txt:3", "no timestamp in a known format", "--pattern"],
        ),
        (
            vec![format!("{good}@soon")],
            &["good.log@soon", "bad offset `soon`"],
        ),
        (
            vec![good.clone(), d.join("missing.log").to_string_lossy().into()],
            &["cannot open", "missing.log"],
        ),
        (
            vec![good.clone(), "--offset".into(), "gooood=+1s".into()],
            &["no file is labelled `gooood`", "good"],
        ),
        (
            vec![good.clone(), "--pattern".into(), "%H:%M".into()],
            &["good.log:1", "--pattern `%H:%M`"],
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["timeline".to_string(), "--merge".into()];
        all.extend(args);
        let a: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = home.run(&a);
        let e = text(&out.stderr);
        assert!(!out.status.success(), "{a:?} succeeded");
        for w in want {
            assert!(e.contains(w), "{a:?}: `{w}` not in {e}");
        }
    }
}

/// One OTLP/JSON log record of `host` at `ns` saying `body`.
fn post_log(serve: &Serve, host: &str, ns: i64, body: &str) {
    let req = serde_json::json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "shop"}},
        {"key": "host.name", "value": {"stringValue": host}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": ns.to_string(),
            "severityNumber": 9, "body": {"stringValue": body}}]}]}]});
    let (status, text) = http(
        serve.otlp(),
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        req.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(status, 200, "{text}");
}

/// Two hosts: `skewed`, whose agent runs under libfaketime 3 s ahead and
/// measures that against the collector, and `steady`, whose agent runs on
/// the true clock. Each logs its side of request/response pairs on its own
/// clock (the skewed host's stamps 3 s ahead); the timeline read from the
/// collector corrects the skewed host by its measured offset and puts every
/// receive after its send with no causal move needed, where the raw stamps
/// would not.
#[test]
fn store_timeline_corrects_each_host_by_its_agents_measured_offset() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::builder().otlp().start();
    let agent = |name: &str, shift: Option<&str>| clock_agent(dir.path(), &serve.api, name, shift);
    let _skewed = agent("skewed", Some("+3s"));
    let _steady = agent("steady", None);
    let home = Home::new();
    wait_for(
        "both nodes' clocks measured",
        std::time::Duration::from_secs(30),
        || {
            let out = home
                .cmd(&["clock", "--json", "--collector", &serve.api])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let nodes = v["nodes"].as_array()?;
            (nodes.len() == 2).then_some(())
        },
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let skew = 3 * SEC;
    for k in 0..5 {
        let t = now + k * 40 * MS;
        post_log(
            &serve,
            "steady",
            t,
            &format!("GET /x/{k} plumb.msg.send=q{k}"),
        );
        post_log(
            &serve,
            "skewed",
            t + 5 * MS + skew,
            &format!("handling plumb.msg.recv=q{k}"),
        );
        post_log(
            &serve,
            "skewed",
            t + 10 * MS + skew,
            &format!("200 plumb.msg.send=r{k}"),
        );
        post_log(
            &serve,
            "steady",
            t + 15 * MS,
            &format!("got 200 plumb.msg.recv=r{k}"),
        );
    }

    let view = home.json(&[
        "timeline",
        "--json",
        "--collector",
        &serve.api,
        "--grep",
        "plumb.msg.",
    ]);
    let events = view["events"].as_array().unwrap();
    assert_eq!(events.len(), 20, "{view:#}");
    let as_lines = |order: &[&Value]| -> Vec<Value> {
        order
            .iter()
            .map(|e| serde_json::json!({"text": e["event"]["text"]}))
            .collect()
    };
    let placed: Vec<&Value> = events.iter().collect();
    assert_eq!(
        receives_before_sends(&as_lines(&placed)),
        Vec::<String>::new(),
        "{view:#}"
    );
    for e in events {
        // Placed by correction alone: no causal move, and the skewed
        // host's correction is its measured offset, near 3 s.
        assert_eq!(e["shift_ns"], 0, "{e}");
        if e["event"]["host"] == "skewed" {
            let off = e["correction"]["offset_ns"].as_i64().unwrap();
            let err = e["correction"]["error_ns"].as_i64().unwrap();
            assert!((off - skew).abs() <= err.max(2 * MS), "{e}");
        }
    }
    let hosts = view["hosts"].as_array().unwrap();
    assert!(
        hosts
            .iter()
            .any(|h| h["host"] == "skewed" && h["node"] == "skewed"),
        "{view:#}"
    );
    // On raw timestamps the skewed host's lines all come 3 s late.
    let mut raw = placed.clone();
    raw.sort_by_key(|e| e["event"]["raw_ns"].as_i64().unwrap());
    assert_eq!(
        receives_before_sends(&as_lines(&raw)).len(),
        5,
        "every answer received before sent"
    );

    // The text output shows raw time and correction with --raw.
    let out = ok(
        home.run(&[
            "timeline",
            "--raw",
            "--collector",
            &serve.api,
            "--host",
            "skewed",
        ]),
        "plumb timeline --raw",
    );
    let t = text(&out.stdout);
    assert_eq!(
        t.lines().filter(|l| l.contains(" skewed ")).count(),
        10,
        "{t}"
    );
    // The correction column reads like "-2.999999s±0.027ms": the
    // measured offset, within 2 ms of the 3 s skew.
    let shown: Vec<f64> = t
        .lines()
        .filter(|l| l.contains(" skewed "))
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("s±")))
        .filter_map(|w| w.split("s±").next()?.parse().ok())
        .collect();
    assert_eq!(shown.len(), 10, "the correction shown: {t}");
    assert!(
        shown.iter().all(|s| (s + 3.0).abs() < 0.002),
        "the correction shown: {t}"
    );

    // The dashboard's timeline page: one lane per host, the events in
    // them.
    let page = serve
        .get("/timeline?grep=plumb.msg.")
        .expect("the timeline page");
    assert_eq!(page.matches("class=\"lane\"").count(), 2, "{page}");
    assert!(
        page.contains(">skewed</th>") && page.contains(">steady</th>"),
        "{page}"
    );
    assert_eq!(page.matches("plumb.msg.recv=").count(), 10, "{page}");
}

#[test]
fn offsets_estimated_from_send_receive_pairs_order_the_merge() {
    let home = Home::new();
    let skew = 2 * SEC + 700 * MS;
    let (c, s) = exchange(20, skew);
    let c = write(home.dir(), "client.log", &c);
    let s = write(home.dir(), "server.log", &s);
    let out = ok(
        home.run(&[
            "timeline",
            "--json",
            "--causal-window",
            "0",
            "--estimate-offsets",
            "--merge",
            &c,
            &s,
        ]),
        "--estimate-offsets",
    );
    let e = text(&out.stderr);
    assert!(
        e.contains("server offset estimated from send/receive pairs: +2.7"),
        "{e}"
    );
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 80);
    assert_eq!(receives_before_sends(&lines), Vec::<String>::new());
    // Each message takes 2 ms either way, so the tightest bounds are
    // symmetric about the true offset: the estimate is exact, ±2 ms.
    let off = lines.iter().find(|l| l["host"] == "server").unwrap()["offset_ns"]
        .as_i64()
        .unwrap();
    assert_eq!(off, skew);
    assert!(e.contains("±2.000 ms"), "{e}");
}

#[test]
fn a_receive_whose_send_never_comes_is_let_go_marked_and_in_order() {
    let home = Home::new();
    let a = write(
        home.dir(),
        "a.log",
        "1796331306.000 got plumb.msg.recv=lost\n1796331306.001 after it on a\n",
    );
    let b: String = (0..30)
        .map(|k| format!("{} b line {k}\n", epoch(T0 + k * 100 * MS)))
        .collect();
    let b = write(home.dir(), "b.log", &b);
    let lines = merged(&home, &[&a, &b, "--causal-window", "1s"]);
    assert_eq!(lines.len(), 32);
    let lost = lines
        .iter()
        .position(|l| l["unmatched"] == true)
        .expect("marked");
    assert!(lines[lost]["text"].as_str().unwrap().contains("recv=lost"));
    // It waited a second of merged time, and a's next line waited with it.
    assert!(lines[lost]["placed_ns"].as_i64().unwrap() >= T0 + SEC);
    assert_eq!(lines[lost + 1]["text"], "1796331306.001 after it on a");
    let placed: Vec<i64> = lines
        .iter()
        .map(|l| l["placed_ns"].as_i64().unwrap())
        .collect();
    assert!(placed.windows(2).all(|w| w[0] <= w[1]), "{placed:?}");
    let out = ok(
        home.run(&["timeline", "--merge", &a, &b, "--causal-window", "1s"]),
        "text",
    );
    assert!(
        text(&out.stdout).lines().any(|l| l.contains(" ? a ")),
        "{}",
        text(&out.stdout)
    );
}
