//! `plumb agent` and node states with real processes: an agent stopped with
//! SIGSTOP goes suspect, then down; SIGCONT brings it back up; every
//! transition is recorded and `plumb nodes` shows the node.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

fn transitions(url: &str) -> Vec<(String, String)> {
    let Some(body) = get(url, "/api/v1/nodes/transitions?node=stopper") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("-").to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_stopped_agent_goes_suspect_then_down_and_comes_back_up() {
    let site = Site::new();
    let _serve = site.serve();
    let agent = Agent::start(
        &site.home,
        &site.url,
        "stopper",
        "1s",
        &["--label", "role=test"],
    );
    let state = |url: &str| -> String {
        get(url, "/api/v1/nodes")
            .and_then(|b| {
                let v: serde_json::Value = serde_json::from_str(&b).ok()?;
                v.as_array()?
                    .iter()
                    .find(|n| n["node"] == "stopper")
                    .map(|n| n["state"].as_str().unwrap().to_string())
            })
            .unwrap_or_default()
    };
    wait_for("the agent to come up", Duration::from_secs(20), || {
        (state(&site.url) == "up" || state(&site.url) == "busy").then_some(())
    });
    // A few heartbeats so the detector learns the rhythm.
    std::thread::sleep(Duration::from_secs(3));
    signal(agent.pid(), libc::SIGSTOP);
    wait_for(
        "a stopped agent to be declared down",
        Duration::from_secs(40),
        || (state(&site.url) == "down").then_some(()),
    );
    signal(agent.pid(), libc::SIGCONT);
    wait_for("the agent to come back", Duration::from_secs(20), || {
        (matches!(state(&site.url).as_str(), "up" | "busy")).then_some(())
    });
    let t = transitions(&site.url);
    let pos = |from: &str, to: &str| t.iter().position(|(f, x)| f == from && x == to);
    let suspect = t
        .iter()
        .position(|(_, x)| x == "suspect")
        .expect("went suspect");
    let down = pos("suspect", "down").unwrap_or_else(|| panic!("suspect -> down in {t:?}"));
    assert!(suspect < down, "suspect before down: {t:?}");
    assert!(
        t[down + 1..]
            .iter()
            .any(|(f, x)| f == "down" && (x == "up" || x == "busy")),
        "{t:?}"
    );
    // The CLI shows the node with its state and its history.
    let out = plumb_in(&site.home)
        .args(["nodes", "--collector", &site.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("stopper"), "{text}");
    let hist = plumb_in(&site.home)
        .args(["nodes", "--collector", &site.url, "--history", "stopper"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&hist.stdout);
    assert!(text.contains("suspect") && text.contains("down"), "{text}");
    // JSON carries the report: labels, disks, fingerprint hash.
    let json = plumb_in(&site.home)
        .args(["nodes", "--collector", &site.url, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let node = &v[0];
    assert_eq!(node["report"]["labels"]["role"], "test");
    assert!(node["report"]["cpu"]["cpus"].as_u64().unwrap() >= 1);
    assert!(node["report"]["memory"]["total"].as_u64().unwrap() > 0);
    assert!(
        node["fingerprint"].as_str().is_some_and(|h| h.len() == 64),
        "{node}"
    );
}

#[test]
fn bad_arguments_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:1";
    // (arguments, what the error names; empty: only that it fails)
    let cases: [(&[&str], &str); 4] = [
        (&["agent"], "no collector"),
        (
            &["agent", "--collector", "ftp://x", "--name", "n"],
            "not a collector URL",
        ),
        (
            &["agent", "--collector", url, "--name", "bad name"],
            "node name",
        ),
        (&["agent", "--collector", url, "--interval", "fast"], ""),
    ];
    for (args, names) in cases {
        let out = plumb_in(tmp.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out.stderr).contains(names), "{args:?}: {out:?}");
    }
}

/// Issue 13, item 19: log records a short Python stage spooled while the
/// collector was down are sent by `plumb agent` on that node once it is up,
/// each once, though no Python process ever runs there again; a live
/// process's spool is left to it.
#[test]
fn the_agent_sends_what_dead_python_processes_spooled() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let down = format!("http://127.0.0.1:{}", free_port());
    // The handler's default spool follows PLUMB_HOME: <home>/outbox/logs.
    let stage = |words: &str, stay: bool| {
        let script = "import logging, sys, plumb\n\
h = plumb.PlumbHandler(sys.argv[1], flush_interval=0.05, timeout=1, retry_interval=3600 if sys.argv[3] == 'stay' else 5)\n\
log = logging.getLogger('stage'); log.propagate = False; log.addHandler(h); log.setLevel(logging.INFO)\n\
for w in sys.argv[2].split(): log.info('%s', w)\n\
h.flush()\n\
if sys.argv[3] == 'stay':\n    print('spooled', flush=True); sys.stdin.read()\n";
        plumb_in(&home)
            .env("PYTHONPATH", &python)
            .args([
                "run", "--local", "--", "python3", "-c", script, &down, words,
            ])
            .arg(if stay { "stay" } else { "go" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The live stage first: a handler takes over the files of processes
    // dead when it retries, and this one retries only after an hour.
    let mut live = stage("delta-44", true);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(live.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let first = stage("alpha-41 beta-42", false).wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    let second = stage("gamma-43", false).wait_with_output().unwrap();
    assert!(second.status.success());
    let spool = home.join("outbox").join("logs");
    let waiting = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .count()
    };
    assert_eq!(waiting(&spool), 3, "one spool file per stage");

    let data = tmp.path().join("collector");
    let serve = Serve::start(&data);
    let _agent = Agent::start(&home, &serve.api, "n1", "1s", &[]);
    let found = |word: &str| {
        plumb_in(&home)
            .args(["search", word, "--json", "--collector", &serve.api])
            .output()
            .map(|o| {
                serde_json::from_slice::<serde_json::Value>(&o.stdout)
                    .ok()
                    .and_then(|v| v.as_array().map(Vec::len))
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    wait_for(
        "the dead stages' records to reach the collector",
        Duration::from_secs(30),
        || {
            (found("alpha-41") == 1 && found("beta-42") == 1 && found("gamma-43") == 1)
                .then_some(())
        },
    );
    wait_for(
        "sent files are removed; the live stage's stays",
        Duration::from_secs(10),
        || (waiting(&spool) == 1).then_some(()),
    );
    // A few more rounds: nothing is sent twice, the live one is not taken.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(found("alpha-41"), 1, "sent once");
    assert_eq!(found("delta-44"), 0, "a live process's spool is its own");
    drop(live.stdin.take());
    let _ = live.wait();
}
