//! Runs killed by the kernel's OOM killer say so: real OOM kills, in a
//! cgroup v1 memory cgroup made for each test with a 64 MiB limit. These
//! tests need root (CI runs as root) and the v1 memory controller at
//! /sys/fs/cgroup/memory; without them they fail, saying so.

mod support;

use support::{Home, MemCgroup, text};

const LIMIT: u64 = support::MEM_CGROUP_LIMIT;

fn show_json(home: &Home) -> serde_json::Value {
    home.json(&["show", "--json", "last"])["run"].clone()
}

#[test]
fn a_run_killed_by_the_oom_killer_is_recorded_with_its_limit_and_peak() {
    let cg = MemCgroup::new("oom");
    let home = Home::new();
    let out = cg
        .plumb(
            &home,
            &[
                "run",
                "--name",
                "oomjob",
                "--",
                "python3",
                "-c",
                "x = bytearray(512 << 20)",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "plumb run exits as a SIGKILLed command does; stderr: {}",
        text(&out.stderr)
    );
    let run = show_json(&home);
    assert_eq!(run["name"], "oomjob");
    assert_eq!(run["state"], "killed", "{run}");
    assert_eq!(run["exit"]["signal"], 9, "{run}");
    let oom = &run["oom"];
    assert_eq!(oom["root"], true, "{run}");
    assert_eq!(oom["source"], "cgroup_v1", "{run}");
    assert_eq!(oom["limit"], LIMIT, "{run}");
    let peak = oom["peak"].as_u64().expect("a peak");
    assert!(
        peak > LIMIT / 2 && peak <= LIMIT,
        "peak {peak} near the limit"
    );
    assert!(oom["kills"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(oom["pids"][0], run["pid"], "the kernel log names the pid");
    assert_eq!(oom["command"], "python3", "{run}");
    assert_eq!(
        oom["cgroup"].as_str().unwrap(),
        format!("/{}", cg.dir.file_name().unwrap().to_string_lossy())
    );

    let shown = text(&home.run(&["show", "last"]).stdout);
    assert!(
        shown.contains("cause     killed by the OOM killer (limit 64.0 MiB, peak "),
        "{shown}"
    );
    assert!(shown.contains("from the v1 memory cgroup)"), "{shown}");
    // The list's exit column says OOM rather than SIGKILL.
    let listed = home.json(&["ls", "--json"]);
    assert_eq!(listed[0]["oom_killed"], true, "{listed}");
    let table = text(&home.run(&["ls"]).stdout);
    let row = table
        .lines()
        .find(|l| l.contains("oomjob"))
        .expect("the run's row");
    assert!(row.contains(" OOM ") && !row.contains("SIGKILL"), "{table}");
}

#[test]
fn a_kill_9_is_not_reported_as_the_oom_killer() {
    let cg = MemCgroup::new("kill9");
    let home = Home::new();
    let out = cg
        .plumb(
            &home,
            &["run", "--name", "shot", "--", "sh", "-c", "kill -9 $$"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let run = show_json(&home);
    assert_eq!(run["state"], "killed", "{run}");
    assert_eq!(run["exit"]["signal"], 9, "{run}");
    assert!(run.get("oom").is_none(), "{run}");
    // The cgroup's count answered the question: nothing is unknown.
    assert!(run.get("warnings").is_none(), "{run}");
    let shown = text(&home.run(&["show", "last"]).stdout);
    assert!(!shown.contains("OOM"), "{shown}");
    let table = text(&home.run(&["ls"]).stdout);
    assert!(
        table.contains("SIGKILL") && !table.contains("OOM"),
        "{table}"
    );
}

#[test]
fn a_worker_killed_by_the_oom_killer_is_recorded_though_the_run_went_on() {
    let cg = MemCgroup::new("worker");
    let home = Home::new();
    let out = cg
        .plumb(
            &home,
            &[
                "run",
                "--name",
                "pool",
                "--",
                "sh",
                "-c",
                "python3 -c 'x = bytearray(512 << 20)'; echo survived",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("survived"));
    let run = show_json(&home);
    assert_eq!(run["state"], "succeeded", "{run}");
    let oom = &run["oom"];
    assert_eq!(oom["root"], false, "{run}");
    assert_eq!(oom["command"], "python3", "{run}");
    assert_eq!(oom["pids"].as_array().unwrap().len(), 1, "{run}");
    assert_ne!(oom["pids"][0], run["pid"], "{run}");
    assert_eq!(oom["limit"], LIMIT, "{run}");
    let shown = text(&home.run(&["show", "last"]).stdout);
    assert!(
        shown.contains("cause     a process of the run (pid "),
        "{shown}"
    );
    assert!(
        shown.contains(", python3) killed by the OOM killer (limit 64.0 MiB"),
        "{shown}"
    );
}

#[test]
fn an_oom_kill_reaches_the_collector_and_its_run_page() {
    let cg = MemCgroup::new("shipped");
    let home = Home::new();
    let server = support::Serve::start(&home.dir().join("srv"));
    let out = cg
        .plumb(
            &home,
            &[
                "run",
                "--name",
                "oomshipped",
                "--",
                "python3",
                "-c",
                "x = bytearray(512 << 20)",
            ],
        )
        .env("PLUMB_COLLECTOR", &server.api)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let id = support::wait_for(
        "the OOM-killed run at the collector",
        std::time::Duration::from_secs(30),
        || {
            let list = support::get_json(&server.api, "/api/v1/runs?name=oomshipped");
            let r = list.as_array()?.first()?.clone();
            (r["state"] == "killed").then(|| r["id"].as_str().unwrap().to_string())
        },
    );
    let run = &support::get_json(&server.api, &format!("/api/v1/runs/{id}"))["run"];
    assert_eq!(run["oom"]["root"], true, "{run}");
    assert_eq!(run["oom"]["source"], "cgroup_v1", "{run}");
    assert_eq!(run["oom"]["limit"], LIMIT, "{run}");
    let (code, page) =
        support::http(&server.api, "GET", &format!("/runs/{id}"), &[], b"").status_and_text();
    let (_, list) = support::http(&server.api, "GET", "/runs", &[], b"").status_and_text();
    assert!(list.contains(">OOM<"), "{list}");
    assert_eq!(code, 200);
    assert!(
        page.contains("<dt>cause</dt>")
            && page.contains("killed by the OOM killer (limit 64.0 MiB, peak "),
        "{page}"
    );
    // The error groups file it as an OOM kill of python3, not a bare signal.
    let group = support::wait_for(
        "the OOM kill's error group",
        std::time::Duration::from_secs(30),
        || {
            let g = support::get_json(&server.api, "/api/v1/errors");
            g["groups"]
                .as_array()?
                .iter()
                .find(|g| g["kind"] == "OOMKilled")
                .cloned()
        },
    );
    assert_eq!(group["language"], "kernel", "{group}");
    assert!(
        group["message"].as_str().unwrap() == "python3 killed by the OOM killer",
        "{group}"
    );
}
