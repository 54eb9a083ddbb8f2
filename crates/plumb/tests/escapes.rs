//! Terminal escapes in what other machines send (issue 21, item 6): a run
//! whose name, host and exception message hold `ESC ]0;` (retitle the
//! window), `ESC [2J` (clear the screen) and `ESC ]52;` (write the
//! clipboard), shipped to a real `plumb serve`, and a node report whose
//! labels and disk hold them too. Every command that prints them,
//! from the collector and from a local store, prints no ESC byte and shows
//! the escaped form instead.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const TITLE: &str = "\u{1b}]0;x\u{7}";
const CLEAR: &str = "\u{1b}[2J";
const CLIPBOARD: &str = "\u{1b}]52;c;ZXZpbA==\u{7}";

fn evil(what: &str) -> String {
    format!("{what}{TITLE}{CLEAR}{CLIPBOARD}")
}

/// `plumb ARGS` with an isolated home; its stdout, after checking that it
/// succeeded, held no ESC byte and showed the escaped title sequence.
fn printed(home: &Path, args: &[&str], shows: &str) -> String {
    let out = plumb_in(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "plumb {args:?} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stdout.contains(&0x1b),
        "plumb {args:?} printed a raw ESC: {text:?}"
    );
    // The exception parser drops `ESC ]` itself; the BEL after it stays.
    assert!(
        text.contains(&format!("{shows}\\u{{1b}}]0;x"))
            || text.contains(&format!("{shows}0;x\\u{{7}}")),
        "plumb {args:?} does not show {shows} escaped: {text}"
    );
    text
}

#[test]
fn control_characters_from_other_machines_never_reach_the_terminal() {
    if !unshare_works() {
        eprintln!("skipped: needs `unshare -r -u` to give the run its own host name");
        return;
    }
    let site = Site::new();
    let serve = site.serve();

    // A failing run named, hosted and failing with escapes: the host name
    // is set in a UTS namespace of its own, as a hostile node would.
    let name = evil("job");
    let status = Command::new("unshare")
        .args(["-r", "-u", "python3", "-c"])
        .arg("import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])")
        .arg(evil("host"))
        .arg(PLUMB)
        .args(["run", "--name", &name, "--", "python3", "-c"])
        .arg("import sys\ndef charge():\n    raise ValueError(sys.argv[1])\ncharge()\n")
        .arg(evil("msg"))
        .env("PLUMB_HOME", &site.home)
        .env("PLUMB_COLLECTOR", &site.url)
        .env("PLUMB_SPOOL", site.home.join("spool"))
        .env("PLUMB_OUTBOX", site.home.join("outbox"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "the python program fails");

    // A node reporting with escapes in its labels and disk (node names
    // are refused unless plain: letters, digits, `.`, `-`, `_`).
    let node = "evil-node".to_string();
    let report = serde_json::json!({
        "version": 1, "node": node, "sent": 0, "seq": 1, "interval_ms": 60000,
        "labels": {"rack": evil("rack")},
        "cpu": {"load1": 0.25, "load5": 0.2, "load15": 0.1, "cpus": 4},
        "memory": {"total": 8u64 << 30, "available": 3u64 << 30, "swap_total": 0, "swap_free": 0},
        "disks": [{"mount": evil("/mnt"), "fs_type": "xfs", "device": evil("/dev/x"),
                   "total": 100u64 << 30, "available": 40u64 << 30, "inodes_total": 1000, "inodes_free": 900}],
        "runs_in_progress": 0
    });
    plumb_ship::Client::new(&plumb_ship::ClientConfig {
        collector: site.url.clone(),
        token: None,
        ca_cert: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
    .post(
        "/api/v1/ingest/node",
        "application/json",
        report.to_string().as_bytes(),
        false,
        &[],
    )
    .expect("the collector takes the report");

    let groups = |_: ()| -> Vec<Value> {
        get(&site.url, "/api/v1/errors")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["groups"].as_array().cloned())
            .unwrap_or_default()
    };
    wait_for(
        "the run's error reaches the collector",
        Duration::from_secs(30),
        || (!groups(()).is_empty()).then_some(()),
    );
    let fingerprint = groups(())[0]["fingerprint"].as_str().unwrap().to_string();

    let c = ["--collector", site.url.as_str()];
    let local = ["--local"];
    // Each command, from the collector, then reading the collector's
    // store directly (`ls` and `show` read the local store by default).
    for (dir, more) in [(&site.home, &c[..]), (&site.data, &[][..])] {
        let run = |args: &[&str], shows: &str| {
            let args: Vec<&str> = args.iter().chain(more).copied().collect();
            printed(dir, &args, shows);
        };
        run(&["ls"], "job");
        run(&["ls"], "host");
        run(&["show", "last"], "job");
        run(&["show", "last"], "msg");
        run(&["nodes", "show", &node], "rack");
        run(&["nodes", "show", &node], "/dev/x");
    }
    for (dir, more) in [(&site.home, &c[..]), (&site.data, &local[..])] {
        let run = |args: &[&str], shows: &str| {
            let args: Vec<&str> = args.iter().chain(more).copied().collect();
            printed(dir, &args, shows);
        };
        run(&["errors"], "msg");
        run(&["errors", "show", &fingerprint], "host");
        run(&["errors", "show", &fingerprint], "msg");
        run(&["slow", "--name", &name], "job");
    }
    // `nodes` lists from a collector only.
    printed(&site.home, &["nodes", "--collector", &site.url], "/mnt");
    drop(serve);
}
