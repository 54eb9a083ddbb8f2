//! Node benchmarks end to end with real processes: `plumb bench-node` on
//! this machine (real CPU, memory, a real directory, a real collector over
//! loopback), results posted through the collector's API as agents post
//! them, `plumb nodes --rank` reading the collector, and the
//! `node_bench_drop` alert reaching a webhook receiver.
//!
//! No test asserts a figure's size beyond "positive and finite": speed
//! belongs in `cargo xtask bench node`.

mod support;

use plumb_model::Timestamp;
use plumb_model::bench::{BENCH_VERSION, Figure, NodeBench};
use serde_json::Value;
use std::time::Duration;
use support::*;

fn fig(v: f64) -> Figure {
    Figure {
        value: v,
        spread_pct: 1.5,
        reps: 5,
    }
}

/// A result with one-core CPU figures `cpu` (all-core twice that) and
/// memory bandwidth `mem`.
fn result(node: &str, cpu: f64, mem: f64) -> NodeBench {
    NodeBench {
        version: BENCH_VERSION,
        node: node.into(),
        taken_at: Timestamp::now(),
        wall_s: 10.0,
        quick: false,
        cpus: 2,
        cpu_int_mops: fig(cpu),
        cpu_float_mflops: fig(cpu * 1.5),
        cpu_all_int_mops: fig(cpu * 2.0),
        cpu_all_float_mflops: fig(cpu * 3.0),
        mem_triad_mbs: fig(mem),
        mem_bytes: 384 << 20,
        disk: None,
        net: None,
    }
}

/// Posts `b` as an agent does; panics unless the collector took it.
#[track_caller]
fn post(serve: &Serve, b: &NodeBench) {
    let token = format!(
        "Bearer {}",
        serve.agent.as_deref().expect("started with tokens")
    );
    let body = serde_json::to_vec(b).unwrap();
    let a = http(
        &serve.api,
        "POST",
        "/api/v1/ingest/bench",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &token),
        ],
        &body,
    );
    assert_eq!(a.status, 200, "ingest of {}: {}", b.node, a.text());
}

fn assert_figure(v: &Value, what: &str) {
    let value = v["value"].as_f64().unwrap_or(f64::NAN);
    let spread = v["spread_pct"].as_f64().unwrap_or(f64::NAN);
    assert!(value.is_finite() && value > 0.0, "{what}: {v}");
    assert!(spread.is_finite() && spread >= 0.0, "{what}: spread {v}");
    assert!(v["reps"].as_u64().unwrap_or(0) >= 3, "{what}: reps {v}");
}

/// A file system that refuses O_DIRECT and keeps its pages in memory: the
/// figures are still given, and the result says both things.
#[test]
fn on_a_ramfs_the_result_says_reads_were_buffered_and_came_from_memory() {
    let home = Home::new();
    let fs = Tmpfs::ramfs();
    let v = home.json(&[
        "bench-node",
        "--quick",
        "--json",
        "--path",
        fs.path().to_str().unwrap(),
    ]);
    let d = &v["disk"];
    assert_eq!(d["direct_io"], false, "{d}");
    assert_eq!(d["cache_dropped"], false, "{d}");
    let note = d["note"].as_str().unwrap_or_else(|| panic!("a note: {d}"));
    assert!(note.contains("refused O_DIRECT"), "{note}");
    assert!(note.contains("stayed in the page cache"), "{note}");
    assert_figure(&d["seq_read_mbs"], "seq_read_mbs");
    // And the words reach a terminal reader too.
    let out = ok(
        home.cmd(&[
            "bench-node",
            "--quick",
            "--path",
            fs.path().to_str().unwrap(),
        ])
        .output()
        .unwrap(),
        "plumb bench-node",
    );
    assert!(text(&out.stdout).contains("refused O_DIRECT"));
}

#[test]
fn quick_json_gives_every_figure_positive_and_finite_with_spreads() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let v = home.json(&[
        "bench-node",
        "--quick",
        "--json",
        "--name",
        "here",
        "--path",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(v["node"], "here");
    assert_eq!(v["quick"], true);
    for k in [
        "cpu_int_mops",
        "cpu_float_mflops",
        "cpu_all_int_mops",
        "cpu_all_float_mflops",
        "mem_triad_mbs",
    ] {
        assert_figure(&v[k], k);
    }
    for k in ["seq_write_mbs", "seq_read_mbs", "rand_read_iops"] {
        assert_figure(&v["disk"][k], k);
    }
    assert!(v["cpus"].as_u64().unwrap() >= 1);
    assert!(v["mem_bytes"].as_u64().unwrap() >= 3 * (16 << 20));
    // Reads go around the page cache on a real file system (O_DIRECT), or
    // the result says why not.
    assert!(
        (v["disk"]["cache_dropped"] == true && v["disk"]["direct_io"] == true)
            || v["disk"]["note"].is_string(),
        "{v}"
    );
    assert!(v.get("net").is_none(), "no collector, no network figures");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the test file is removed"
    );
    // The table for people has every figure with its unit and spread.
    let out = ok(
        home.run(&["bench-node", "--quick", "--name", "here"]),
        "plumb bench-node --quick",
    );
    let t = text(&out.stdout);
    for w in [
        "CPU one core, integer",
        "Mops/s",
        "Memory bandwidth (triad)",
        "MB/s",
        "%",
    ] {
        assert!(t.contains(w), "{w} in:\n{t}");
    }
}

#[test]
fn a_real_run_is_sent_and_three_nodes_rank_as_their_figures_say() {
    let serve = Serve::builder().tokens().start();
    let url = serve.api.clone();
    let home = Home::new();
    let agent = serve.agent.clone().unwrap();
    let viewer = serve.viewer.clone().unwrap();

    // A real benchmark, network to this collector included, sent with the
    // agent token.
    let out = home
        .cmd(&[
            "bench-node",
            "--quick",
            "--name",
            "real",
            "--collector",
            &url,
        ])
        .env("PLUMB_TOKEN", &agent)
        .output()
        .unwrap();
    let t = text(&ok(out, "plumb bench-node --collector").stdout);
    assert!(t.contains("Round trip to the collector"), "{t}");
    assert!(t.contains(&format!("sent to {url}")), "{t}");
    let hist = home
        .cmd(&["nodes", "--rank", "net", "--collector", &url, "--json"])
        .env("PLUMB_TOKEN", &viewer)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&ok(hist, "plumb nodes --rank net").stdout).unwrap();
    assert_eq!(v[0]["node"], "real", "{v}");
    assert_figure(&v[0]["bench"]["net"]["rtt_ms"], "rtt");
    assert_figure(&v[0]["bench"]["net"]["upload_mbs"], "upload");

    // Three nodes' histories: the latest result of each is what ranks.
    // a: fast CPU, slow memory; b: slow CPU, fast memory; c: in between.
    for (node, old_cpu, cpu, mem) in [
        ("a", 10.0, 900.0, 1000.0),
        ("b", 5000.0, 100.0, 20000.0),
        ("c", 1.0, 500.0, 8000.0),
    ] {
        for _ in 0..3 {
            post(&serve, &result(node, old_cpu, mem));
        }
        post(&serve, &result(node, cpu, mem));
    }
    let rank = |keys: &str| -> Vec<String> {
        let out = home
            .cmd(&["nodes", "--rank", keys, "--collector", &url, "--json"])
            .env("PLUMB_TOKEN", &viewer)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&ok(out, "plumb nodes --rank").stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"].as_str().unwrap().to_string())
            .filter(|n| n != "real")
            .collect()
    };
    assert_eq!(rank("cpu"), ["a", "c", "b"], "by the latest CPU figures");
    assert_eq!(rank("mem"), ["b", "c", "a"], "by memory bandwidth");
    assert_eq!(rank("mem,cpu"), ["b", "c", "a"]);
    // The table names the ranking and lists the best first.
    let out = home
        .cmd(&["nodes", "--rank", "cpu", "--collector", &url])
        .env("PLUMB_TOKEN", &viewer)
        .output()
        .unwrap();
    let t = text(&ok(out, "plumb nodes --rank cpu").stdout);
    let pos = |n: &str| {
        t.lines()
            .position(|l| l.split_whitespace().nth(1) == Some(n))
            .unwrap_or_else(|| panic!("{n} in:\n{t}"))
    };
    assert!(pos("a") < pos("c") && pos("c") < pos("b"), "{t}");
    assert!(t.contains("ranked by cpu"), "{t}");
    // One node's history, newest first, through the API.
    let a = http(
        &url,
        "GET",
        "/api/v1/nodes/a/bench",
        &[("Authorization", &format!("Bearer {viewer}"))],
        b"",
    )
    .json();
    assert_eq!(a.as_array().unwrap().len(), 4);
    assert_eq!(a[0]["bench"]["cpu_int_mops"]["value"], 900.0);

    // The dashboard's nodes page ranks them too, best CPU first.
    let page = http(
        &url,
        "GET",
        "/nodes",
        &[("Authorization", &format!("Bearer {viewer}"))],
        b"",
    )
    .text();
    let ranking = page
        .split("id=\"bench-ranking\"")
        .nth(1)
        .unwrap_or_else(|| panic!("a ranking on /nodes:\n{page}"));
    let at = |n: &str| {
        ranking
            .find(&format!(">{n}</a>"))
            .unwrap_or_else(|| panic!("{n} in the ranking:\n{ranking}"))
    };
    assert!(at("a") < at("c") && at("c") < at("b"), "{ranking}");

    // An unknown key is refused, named, before anything is asked.
    let out = home
        .cmd(&["nodes", "--rank", "cpu,gpu", "--collector", &url])
        .env("PLUMB_TOKEN", &viewer)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("`gpu`") && e.contains("cpu, mem, disk, net"),
        "{e}"
    );
    // And by the API itself.
    let a = http(
        &url,
        "GET",
        "/api/v1/nodes/bench?rank=speed",
        &[("Authorization", &format!("Bearer {viewer}"))],
        b"",
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("speed"), "{}", a.text());
    // A result with a figure that is not a measurement is refused, named.
    let mut bad = result("a", 1.0, 1.0);
    bad.mem_triad_mbs.value = -1.0;
    let a = http(
        &url,
        "POST",
        "/api/v1/ingest/bench",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {agent}")),
        ],
        &serde_json::to_vec(&bad).unwrap(),
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("mem_triad"), "{}", a.text());
}

#[test]
fn a_result_far_below_the_nodes_own_history_fires_the_alert_and_a_normal_one_does_not() {
    let receiver = WebhookReceiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = receiver.config(
        tmp.path(),
        "[alerts.rules.node_bench_drop]\ndrop = \"30%\"\n",
    );
    let serve = Serve::builder()
        .tokens()
        .env("PLUMB_CONFIG", &config)
        .start();
    for _ in 0..3 {
        post(&serve, &result("steady", 1000.0, 10000.0));
        post(&serve, &result("slowed", 1000.0, 10000.0));
    }
    // steady: within 30% of its median; slowed: memory bandwidth halved.
    post(&serve, &result("steady", 900.0, 9000.0));
    post(&serve, &result("slowed", 1000.0, 5000.0));
    let a = receiver.firing(
        "NodeBenchmarkDrop",
        &[("node", "slowed"), ("figure", "mem_triad")],
        30,
    );
    let d = a["annotations"]["description"].as_str().unwrap();
    assert!(d.contains("memory bandwidth (triad)"), "{d}");
    assert!(
        d.contains("5000 MB/s") && d.contains("10000 MB/s"),
        "both values: {d}"
    );
    let s = a["annotations"]["summary"].as_str().unwrap();
    assert!(s.contains("50%"), "{s}");
    // Let a few more evaluations pass; nothing fires for steady, or for
    // slowed's CPU, which did not change.
    let viewer = serve.viewer.clone().unwrap();
    wait_for("three more evaluations", Duration::from_secs(10), || {
        let v = http(
            &serve.api,
            "GET",
            "/api/v1/alerts",
            &[("Authorization", &format!("Bearer {viewer}"))],
            b"",
        )
        .json();
        v["alerts"].as_array().filter(|a| !a.is_empty()).map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(600));
    for a in receiver.alerts() {
        if a["labels"]["alertname"] == "NodeBenchmarkDrop" {
            assert_eq!(a["labels"]["node"], "slowed", "{a}");
            assert_eq!(a["labels"]["figure"], "mem_triad", "{a}");
        }
    }
    // The rule is listed with its settings.
    let rules = http(
        &serve.api,
        "GET",
        "/api/v1/alerts",
        &[("Authorization", &format!("Bearer {viewer}"))],
        b"",
    )
    .json();
    let rule = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "node_bench_drop")
        .cloned()
        .unwrap_or_else(|| panic!("node_bench_drop in {rules}"));
    assert_eq!(rule["alertname"], "NodeBenchmarkDrop");
}

#[test]
fn a_bad_path_a_down_collector_and_a_refused_token_are_clear_errors() {
    let home = Home::new();
    // A directory that does not exist.
    let out = home.run(&["bench-node", "--quick", "--path", "/nonexistent/bench-dir"]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("/nonexistent/bench-dir") && e.contains("disk I/O"),
        "{e}"
    );
    // A file where a directory should be.
    let file = home.dir().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = home.run(&["bench-node", "--quick", "--path", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a directory"),
        "{}",
        text(&out.stderr)
    );
    // A directory it cannot write (unless root, who can write anywhere).
    // SAFETY: geteuid has no effects.
    if unsafe { libc::geteuid() } != 0 {
        let ro = home.dir().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let out = home.run(&["bench-node", "--quick", "--path", ro.to_str().unwrap()]);
        assert!(!out.status.success());
        let e = text(&out.stderr);
        assert!(e.contains("cannot create a test file"), "{e}");
    }
    // A collector that is not there.
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = home.run(&["bench-node", "--quick", "--collector", &down]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains(&down) && e.contains("cannot"), "{e}");
    // A collector that refuses the token: a viewer token cannot send.
    let serve = Serve::builder().tokens().start();
    let out = home
        .cmd(&["bench-node", "--quick", "--collector", &serve.api])
        .env("PLUMB_TOKEN", serve.viewer.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("403") || e.contains("agent"), "{e}");
    let out = home
        .cmd(&["bench-node", "--quick", "--collector", &serve.api])
        .env("PLUMB_TOKEN", "plumb_not-a-token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("401") || e.contains("token"), "{e}");
    // A bad flag.
    let out = home.run(&["bench-node", "--fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--fast"));
}

#[test]
fn an_idle_agent_benchmarks_its_node_after_its_delay_and_sends_it() {
    let serve = Serve::builder().start();
    let tmp = tempfile::tempdir().unwrap();
    let _agent = Agent::start(
        &tmp.path().join("node"),
        &serve.api,
        "benched",
        "200ms",
        &[
            "--bench-every",
            "1h",
            "--bench-delay",
            "300ms",
            // This machine is shared: idle for the test whatever its load.
            "--bench-idle-below",
            "1000",
            "--bench-quick",
        ],
    );
    let v = wait_for(
        "the agent's benchmark at the collector",
        Duration::from_secs(60),
        || {
            let v: Value = serde_json::from_str(&serve.get("/api/v1/nodes/benched/bench")?).ok()?;
            (!v.as_array()?.is_empty()).then_some(v)
        },
    );
    let b = &v[0]["bench"];
    assert_eq!(b["node"], "benched");
    assert_figure(&b["cpu_all_int_mops"], "all cores");
    assert_figure(&b["disk"]["seq_write_mbs"], "disk at the outbox");
    assert_figure(&b["net"]["rtt_ms"], "round trip");
    // The node page shows its benchmark history.
    let page = serve.get("/nodes/benched").expect("the node page");
    assert!(page.contains("id=\"bench-history\""), "{page}");
    // Once an hour: no second result soon after.
    std::thread::sleep(Duration::from_secs(2));
    let again: Value = serve.get_json("/api/v1/nodes/benched/bench");
    assert_eq!(again.as_array().unwrap().len(), 1, "{again}");
}

#[test]
fn show_gives_a_runs_node_benchmark_taken_before_it_started() {
    let home = Home::new();
    // The collector serves the store the run is recorded in.
    let serve = Serve::builder().tokens().data(&home.store()).start();
    let host = plumb_record::host::hostname();
    let mut before = result(&host, 777.0, 5555.0);
    before.taken_at = Timestamp::from_nanos(Timestamp::now().as_nanos() - 1_000_000_000);
    post(&serve, &before);
    ok(home.run(&["run", "--", "true"]), "plumb run");
    // Taken after the run started: not the one the run ran on.
    post(&serve, &result(&host, 999.0, 6666.0));
    let local = text(&ok(home.run(&["show", "last", "--local"]), "plumb show").stdout);
    let remote = text(
        &ok(
            home.cmd(&["show", "last", "--collector", &serve.api])
                .env("PLUMB_TOKEN", serve.viewer.as_deref().unwrap())
                .output()
                .unwrap(),
            "plumb show --collector",
        )
        .stdout,
    );
    for (how, t) in [("local", &local), ("collector", &remote)] {
        assert!(t.contains("node benchmark"), "{how}:\n{t}");
        assert!(t.contains("before the run started"), "{how}:\n{t}");
        assert!(
            t.contains("777") && t.contains("5555"),
            "{how}: the earlier one:\n{t}"
        );
        assert!(!t.contains("999"), "{how}: not the later one:\n{t}");
    }
    // A run on a node never benchmarked shows no such section.
    let other = Home::new();
    ok(other.run(&["run", "--", "true"]), "plumb run");
    let t = text(&ok(other.run(&["show", "last"]), "plumb show").stdout);
    assert!(!t.contains("node benchmark"), "{t}");
}
