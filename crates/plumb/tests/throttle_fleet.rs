//! Fleet-wide throttles: `plumb run --throttle NAME=N` with a collector
//! configured holds a lease at the collector. Real collectors, real
//! `plumb run` processes from several plumb homes ("nodes"), checked from
//! the runs the collector stored and from `plumb throttles`.

mod support;

use plumb_store::prelude::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Home, Serve, free_port, ok, signal, text, wait_for};

/// `plumb ARGS` in `home`, talking to `api` with `token`, leases lasting
/// `ttl_ms`.
fn node_cmd(home: &Home, api: &str, token: &str, ttl_ms: u64, args: &[&str]) -> Command {
    let mut c = home.cmd(args);
    c.env("PLUMB_COLLECTOR", api)
        .env("PLUMB_TOKEN", token)
        .env("PLUMB_THROTTLE_TTL_MS", ttl_ms.to_string());
    c
}

/// `plumb throttles --json` through the collector, as a viewer.
fn throttles(home: &Home, serve: &Serve) -> serde_json::Value {
    let out = home
        .cmd(&["throttles", "--json"])
        .env("PLUMB_COLLECTOR", &serve.api)
        .env("PLUMB_TOKEN", serve.viewer.as_ref().unwrap())
        .output()
        .unwrap();
    serde_json::from_slice(&ok(out, "plumb throttles --json").stdout).unwrap()
}

/// The holders and waiters of throttle `name` (their run ids), from
/// `plumb throttles --json`.
fn leases(home: &Home, serve: &Serve, name: &str) -> (Vec<String>, Vec<String>) {
    let v = throttles(home, serve);
    let Some(t) = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
    else {
        return (vec![], vec![]);
    };
    let ids = |k: &str| -> Vec<String> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|l| l["run_id"].as_str().unwrap().to_string())
            .collect()
    };
    (ids("holders"), ids("queue"))
}

/// Spawns `plumb run` with stderr to a file, returning the child.
fn spawn(mut c: Command, stderr: &std::path::Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit within `timeout`, returning its status.
fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    wait_for(what, timeout, || child.try_wait().unwrap())
}

#[test]
fn twenty_runs_from_three_nodes_never_hold_more_than_three_slots() {
    let serve = Serve::builder().tokens().start();
    let agent = serve.agent.clone().unwrap();
    let nodes = [Home::new(), Home::new(), Home::new()];
    let mut children = Vec::new();
    for i in 0..20 {
        let home = &nodes[i % 3];
        let c = node_cmd(
            home,
            &serve.api,
            &agent,
            6000,
            &[
                "run",
                "--name",
                "fleet-job",
                "--throttle",
                "x=3",
                "--",
                "sh",
                "-c",
                "sleep 0.3",
            ],
        );
        children.push(spawn(c, &home.dir().join(format!("stderr-{i}"))));
    }
    for (i, child) in children.iter_mut().enumerate() {
        let status = exit_within(child, Duration::from_secs(120), "a throttled run to end");
        let err = std::fs::read_to_string(nodes[i % 3].dir().join(format!("stderr-{i}"))).unwrap();
        assert!(status.success(), "run {i}: {status}\n{err}");
    }
    // Every run reached the collector, each with its own start and end.
    let store = plumb_store::Store::open_read_only(&serve.data).unwrap();
    let runs: Vec<plumb_model::Run> = store
        .list_runs(&plumb_store::RunFilter {
            name: Some("fleet-job".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .iter()
        .map(|s| store.get_run(s.id).unwrap())
        .collect();
    assert_eq!(runs.len(), 20, "every run stored at the collector");
    let mut events = Vec::new();
    for r in &runs {
        assert_eq!(r.state, plumb_model::RunState::Succeeded, "{:?}", r.state);
        let ended = r.ended.expect("a finished run has an end");
        events.push((r.started.as_nanos(), 1i32));
        events.push((ended.as_nanos(), -1i32));
    }
    // Ends before starts at the same instant: touching is not overlapping.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 3, "{most} runs overlapped; the throttle allows 3");
    assert!(most >= 2, "the throttle let only one run at a time: {most}");
    let waited: Vec<&plumb_model::Waiting> =
        runs.iter().filter_map(|r| r.waiting.as_ref()).collect();
    assert!(
        waited.len() >= 17,
        "at most 3 started without waiting: {}",
        waited.len()
    );
    assert!(
        waited
            .iter()
            .any(|w| w.reason.contains("held fleet-wide") && w.reason.contains("in queue")),
        "{:?}",
        waited.iter().map(|w| &w.reason).collect::<Vec<_>>()
    );
    // Every lease was released at exit: nothing is left held.
    assert!(
        leases(&nodes[0], &serve, "x").0.is_empty(),
        "{}",
        throttles(&nodes[0], &serve)
    );
}

/// A `plumb run --throttle NAME=N -- sh -c 'echo $$ > PIDFILE; exec sleep 60'`
/// that holds its slot for a minute; the command's pid lands in PIDFILE.
fn long_holder(home: &Home, api: &str, token: &str, ttl_ms: u64, spec: &str, tag: &str) -> Child {
    let pidfile = home.dir().join(format!("{tag}.pid"));
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let c = node_cmd(
        home,
        api,
        token,
        ttl_ms,
        &[
            "run",
            "--name",
            tag,
            "--throttle",
            spec,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    spawn(c, &home.dir().join(format!("{tag}.stderr")))
}

/// The pid the command of [`long_holder`] `tag` wrote, once it has.
fn command_pid(home: &Home, tag: &str) -> u32 {
    let file = home.dir().join(format!("{tag}.pid"));
    wait_for("the held command to start", Duration::from_secs(30), || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

#[test]
fn a_killed_holder_frees_its_slot_once_its_lease_expires() {
    let serve = Serve::builder().tokens().start();
    let agent = serve.agent.clone().unwrap();
    let (a, b) = (Home::new(), Home::new());
    let mut holder = long_holder(&a, &serve.api, &agent, 3000, "k=1", "holder");
    let held_pid = command_pid(&a, "holder");
    let marker = b.dir().join("ran");
    let mut waiter = spawn(
        node_cmd(
            &b,
            &serve.api,
            &agent,
            3000,
            &[
                "run",
                "--name",
                "waiter",
                "--throttle",
                "k=1",
                "--",
                "touch",
                marker.to_str().unwrap(),
            ],
        ),
        &b.dir().join("waiter.stderr"),
    );
    let (held, queued) = wait_for("the waiter to queue", Duration::from_secs(30), || {
        let (h, q) = leases(&a, &serve, "k");
        (q.len() == 1).then_some((h, q))
    });
    assert_eq!(held.len(), 1, "one holder");
    // The table says the same, in words.
    let out = a
        .cmd(&["throttles"])
        .env("PLUMB_COLLECTOR", &serve.api)
        .env("PLUMB_TOKEN", serve.viewer.as_ref().unwrap())
        .output()
        .unwrap();
    let table = text(&ok(out, "plumb throttles").stdout);
    assert!(
        table.contains("throttle k: 1 of 1 held, 1 waiting"),
        "{table}"
    );
    assert!(table.contains(&held[0].replace('-', "")[..12]), "{table}");
    assert!(table.contains("waits 1"), "{table}");
    assert!(!marker.exists(), "the waiter ran while the slot was held");
    assert!(waiter.try_wait().unwrap().is_none());
    // SIGKILL: plumb releases nothing; the lease expires after 3 s.
    signal(holder.id(), libc::SIGKILL);
    let _ = holder.wait();
    let status = exit_within(&mut waiter, Duration::from_secs(30), "the waiter to run");
    signal(held_pid, libc::SIGKILL);
    let err = std::fs::read_to_string(b.dir().join("waiter.stderr")).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(marker.exists(), "the waiter's command ran");
    assert!(
        err.contains("waiting for a slot of throttle `k` (1 of 1 held fleet-wide, 1st in queue)"),
        "{err}"
    );
    assert!(!queued.is_empty());
    assert!(
        leases(&a, &serve, "k").0.is_empty(),
        "nothing held at the end"
    );
}

#[test]
fn a_restarted_collector_keeps_its_leases_and_grants_no_extra_slot() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut serve = Serve::builder()
        .data(data.path())
        .port(port)
        .tokens()
        .start();
    let agent = serve.agent.clone().unwrap();
    let viewer = serve.viewer.clone();
    let (a, b, c) = (Home::new(), Home::new(), Home::new());
    // Long enough to cover the restart on a loaded machine.
    let ttl = 8000;
    let mut h1 = long_holder(&a, &serve.api, &agent, ttl, "r=2", "one");
    let mut h2 = long_holder(&b, &serve.api, &agent, ttl, "r=2", "two");
    let p1 = command_pid(&a, "one");
    let p2 = command_pid(&b, "two");
    let (before, _) = leases(&a, &serve, "r");
    assert_eq!(before.len(), 2);
    serve.kill9();
    let mut serve = Serve::builder().data(data.path()).port(port).start();
    serve.viewer = viewer;
    let marker = c.dir().join("ran");
    let mut third = spawn(
        node_cmd(
            &c,
            &serve.api,
            &agent,
            ttl,
            &[
                "run",
                "--name",
                "third",
                "--throttle",
                "r=2",
                "--",
                "touch",
                marker.to_str().unwrap(),
            ],
        ),
        &c.dir().join("third.stderr"),
    );
    wait_for("the third run to queue", Duration::from_secs(30), || {
        (leases(&a, &serve, "r").1.len() == 1).then_some(())
    });
    // Longer than a TTL: the holders kept renewing across the restart.
    std::thread::sleep(Duration::from_millis(ttl + 1000));
    let (after, queue) = leases(&a, &serve, "r");
    let (mut x, mut y) = (before.clone(), after.clone());
    x.sort();
    y.sort();
    assert_eq!(x, y, "the same two holders after the restart");
    assert_eq!(queue.len(), 1, "the third waits");
    assert!(!marker.exists(), "no third slot was granted");
    // The holders end (SIGTERM is forwarded to the command): their
    // leases are released and the third runs.
    signal(h1.id(), libc::SIGTERM);
    let _ = exit_within(&mut h1, Duration::from_secs(30), "the first holder to end");
    let status = exit_within(&mut third, Duration::from_secs(30), "the third to run");
    assert!(status.success(), "{status}");
    assert!(marker.exists());
    signal(h2.id(), libc::SIGTERM);
    let _ = exit_within(&mut h2, Duration::from_secs(30), "the second holder to end");
    signal(p1, libc::SIGKILL);
    signal(p2, libc::SIGKILL);
    wait_for("every lease released", Duration::from_secs(10), || {
        leases(&a, &serve, "r").0.is_empty().then_some(())
    });
}

#[test]
fn a_collector_that_is_down_is_waited_for_and_never_replaced_by_local_slots() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let home = Home::new();
    let marker = home.dir().join("ran");
    let mut c = home.cmd(&[
        "run",
        "--throttle",
        "d=1",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    c.env("PLUMB_COLLECTOR", &url);
    let err_file = home.dir().join("stderr");
    let mut child = spawn(c, &err_file);
    wait_for(
        "the down collector to be said",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&err_file)
                .unwrap()
                .contains("cannot reach the collector")
                .then_some(())
        },
    );
    assert!(!marker.exists(), "ran without a slot");
    assert!(child.try_wait().unwrap().is_none(), "still waiting");
    let data = tempfile::tempdir().unwrap();
    let _serve = Serve::builder().data(data.path()).port(port).start();
    let status = exit_within(
        &mut child,
        Duration::from_secs(30),
        "the run once the collector is up",
    );
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(marker.exists());
    assert!(err.contains("local slots are not used"), "{err}");
}

#[test]
fn refused_tokens_conflicting_n_and_bad_specs_are_clear_errors_and_nothing_runs() {
    let serve = Serve::builder().tokens().start();
    let home = Home::new();
    let marker = home.dir().join("ran");
    let run = |token: &str, spec: &str| {
        node_cmd(
            &home,
            &serve.api,
            token,
            3000,
            &[
                "run",
                "--throttle",
                spec,
                "--",
                "touch",
                marker.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap()
    };
    let out = run("not-a-token", "z=1");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("throttle `z`") && err.contains("refused the token"),
        "{err}"
    );
    let out = run(serve.viewer.as_ref().unwrap(), "z=1");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("403"), "{err}");
    assert!(!marker.exists(), "nothing ran");
    // A holder with N=2, then a run saying N=3: a conflict naming both.
    let agent = serve.agent.clone().unwrap();
    let mut holder = long_holder(&home, &serve.api, &agent, 3000, "z=2", "holder");
    let pid = command_pid(&home, "holder");
    let out = run(&agent, "z=3");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("throttle `z` has 2 slots") && err.contains("this request says 3"),
        "{err}"
    );
    assert!(!marker.exists(), "nothing ran");
    signal(holder.id(), libc::SIGTERM);
    let _ = exit_within(&mut holder, Duration::from_secs(30), "the holder to end");
    signal(pid, libc::SIGKILL);
    for (spec, says) in [
        (
            "x=0",
            "the number of slots must be a whole number from 1 to 4096",
        ),
        ("=3", "the name must be 1 to 64 letters"),
        ("x", "expected NAME=N"),
    ] {
        let out = run(&agent, spec);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{spec}");
        assert!(err.contains(says) && err.contains(spec), "{spec}: {err}");
    }
    // Fleet scope needs a collector.
    let out = home
        .cmd(&[
            "run",
            "--throttle",
            "x=1",
            "--throttle-scope",
            "fleet",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--throttle-scope fleet needs a collector"));
    // The TTL variable is checked before anything runs.
    let out = node_cmd(
        &home,
        &serve.api,
        &agent,
        0,
        &["run", "--throttle", "x=1", "--", "true"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("PLUMB_THROTTLE_TTL_MS=0"));
    assert!(!marker.exists(), "nothing ran");
}

#[test]
fn host_scope_keeps_local_slots_and_throttles_lists_them_without_a_collector() {
    let serve = Serve::builder().tokens().start();
    let home = Home::new();
    let agent = serve.agent.clone().unwrap();
    // With --throttle-scope host the collector is not asked: nothing is
    // listed there, and the slot file is on this host.
    let out = node_cmd(
        &home,
        &serve.api,
        &agent,
        3000,
        &[
            "run",
            "--throttle",
            "h=2",
            "--throttle-scope",
            "host",
            "--",
            "true",
        ],
    )
    .output()
    .unwrap();
    ok(out, "plumb run --throttle-scope host");
    assert!(leases(&home, &serve, "h").0.is_empty());
    let local = home.json(&["throttles", "--json"]);
    assert_eq!(local[0]["name"], "h", "{local}");
    assert_eq!(local[0]["held"], 0, "{local}");
    let out = home.run(&["throttles"]);
    let err = text(&out.stderr);
    assert!(err.contains("no collector configured"), "{err}");
}

#[test]
fn an_interrupted_waiter_leaves_the_queue_at_once() {
    let serve = Serve::builder().tokens().start();
    let agent = serve.agent.clone().unwrap();
    let (a, b) = (Home::new(), Home::new());
    // A minute's TTL: only a release can take the waiter's place away
    // within this test.
    let mut holder = long_holder(&a, &serve.api, &agent, 60_000, "w=1", "holder");
    let pid = command_pid(&a, "holder");
    let mut waiter = spawn(
        node_cmd(
            &b,
            &serve.api,
            &agent,
            60_000,
            &["run", "--throttle", "w=1", "--", "true"],
        ),
        &b.dir().join("waiter.stderr"),
    );
    wait_for("the waiter to queue", Duration::from_secs(30), || {
        (leases(&a, &serve, "w").1.len() == 1).then_some(())
    });
    signal(waiter.id(), libc::SIGINT);
    let status = exit_within(&mut waiter, Duration::from_secs(30), "the waiter to stop");
    assert_eq!(status.code(), Some(130), "{status}");
    let (held, queued) = leases(&a, &serve, "w");
    assert_eq!((held.len(), queued.len()), (1, 0), "the place was given up");
    signal(holder.id(), libc::SIGTERM);
    let _ = exit_within(&mut holder, Duration::from_secs(30), "the holder to end");
    signal(pid, libc::SIGKILL);
}

#[test]
fn the_lease_api_refuses_bad_requests_with_what_is_wrong() {
    let serve = Serve::builder().tokens().start();
    let agent = format!("Bearer {}", serve.agent.as_ref().unwrap());
    let viewer = format!("Bearer {}", serve.viewer.as_ref().unwrap());
    let post = |auth: &str, path: &str, body: &str| {
        support::http(
            &serve.api,
            "POST",
            path,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .status_and_text()
    };
    let acquire = "/api/v1/throttles/api/acquire";
    for (body, says) in [
        (
            r#"{"holder":"h","slots":0}"#,
            "the number of slots must be from 1",
        ),
        (r#"{"holder":"","slots":1}"#, "holder ``"),
        (r#"{"holder":"h","slots":1,"ttl_ms":1}"#, "ttl_ms 1"),
        (
            r#"{"holder":"h","slots":1,"ttl_ms":3600000}"#,
            "ttl_ms 3600000",
        ),
    ] {
        let (code, text) = post(&agent, acquire, body);
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let (code, text) = post(
        &agent,
        "/api/v1/throttles/.bad/acquire",
        r#"{"holder":"h","slots":1}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("throttle name `.bad`"), "{text}");
    // Asking for slots is an agent's; a viewer only reads.
    let (code, _) = post(&viewer, acquire, r#"{"holder":"h","slots":1}"#);
    assert_eq!(code, 403);
    let (code, text) = post(&agent, acquire, r#"{"holder":"h","slots":1}"#);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""granted":true"#), "{text}");
    let (code, text) = post(
        &agent,
        "/api/v1/throttles/api/renew",
        r#"{"holder":"nobody"}"#,
    );
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("no lease or place for `nobody`"), "{text}");
    for released in ["true", "false"] {
        let (code, text) = post(&agent, "/api/v1/throttles/api/release", r#"{"holder":"h"}"#);
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains(&format!(r#""released":{released}"#)),
            "{text}"
        );
    }
}
