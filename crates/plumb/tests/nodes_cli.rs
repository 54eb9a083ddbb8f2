//! `plumb nodes show NAME` with real processes: a real `plumb serve`, a
//! real `plumb agent` reporting this machine, a real `plumb run` in progress
//! on it, and reports posted for nodes of one label group, one of them with
//! a different software fingerprint. Read from the collector, then from
//! its store directly (`--local`); an unknown name is an error naming it.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use support::*;

/// A report of a node of rack r7 with a scratch disk.
fn report(name: &str, fingerprint: &str) -> Value {
    let mut r = node_report(name, fingerprint, fingerprint);
    r["labels"] = serde_json::json!({"rack": "r7"});
    r["disks"][0]["mount"] = "/scratch".into();
    r["disks"][0]["fs_type"] = "xfs".into();
    r["disks"][0]["device"] = "/dev/sdz1".into();
    r
}

fn post_report(url: &str, body: &Value) {
    let client = plumb_ship::Client::new(&plumb_ship::ClientConfig {
        collector: url.to_string(),
        token: None,
        ca_cert: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    client
        .post(
            "/api/v1/ingest/node",
            "application/json",
            body.to_string().as_bytes(),
            false,
            &[],
        )
        .expect("the collector takes the report");
}

fn show(home: &Path, args: &[&str]) -> Output {
    plumb_in(home)
        .args(["nodes", "show"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "plumb nodes show failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn nodes_show_tells_everything_about_one_node_from_the_collector_or_its_store() {
    let site = Site::new();
    let serve = site.serve();

    // A run in progress, shipped as it runs.
    let _sleeper = Proc(
        plumb_in(&site.home)
            .env("PLUMB_COLLECTOR", &site.url)
            .env("PLUMB_SPOOL", site.home.join("spool"))
            .env("PLUMB_OUTBOX", site.home.join("outbox"))
            .args(["run", "--name", "long-job", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut run = Value::Null;
    wait_for(
        "the running run reaches the collector",
        Duration::from_secs(30),
        || {
            ({
                run = get(&site.url, "/api/v1/runs?name=long-job")
                    .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                    .map(|v| v[0].clone())
                    .unwrap_or(Value::Null);
                run["state"] == "running"
            })
            .then_some(())
        },
    );
    let run_id = run["id"].as_str().unwrap().to_string();
    // The agent reports this machine under the name runs record as host.
    let host = run["host"].as_str().unwrap().to_string();
    let _agent = Agent::start(
        &site.home,
        &site.url,
        &host,
        "200ms",
        &["--spool", "agent-spool"],
    );
    // Three nodes of rack r7: two agree on their software, one does not.
    post_report(&site.url, &report("twin-1", "fp-same"));
    post_report(&site.url, &report("twin-2", "fp-same"));
    post_report(&site.url, &report("odd-1", "fp-odd"));
    // Two more: one differs only in hardware (not marked: the list
    // compares software), one only in a package (marked).
    let mut hw = report("hw-1", "fp-hw");
    hw["fingerprint"]["fingerprint"]["os"] =
        report("x", "fp-same")["fingerprint"]["fingerprint"]["os"].clone();
    hw["fingerprint"]["fingerprint"]["cpu_model"] = "Xeon Max".into();
    hw["fingerprint"]["fingerprint"]["memory_bytes"] = (1u64 << 40).into();
    post_report(&site.url, &hw);
    let mut pkg = report("pkg-1", "fp-pkg");
    pkg["fingerprint"]["fingerprint"]["os"] = hw["fingerprint"]["fingerprint"]["os"].clone();
    pkg["fingerprint"]["fingerprint"]["python"] = serde_json::json!({"executable": "/usr/bin/python3", "version": "3.11", "prefix": "/usr",
                           "packages": {"numpy": "2.0.1"}});
    post_report(&site.url, &pkg);
    wait_for(
        "the agent reports its disks and fingerprint",
        Duration::from_secs(30),
        || {
            (get(&site.url, &format!("/api/v1/nodes/{host}"))
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .is_some_and(|v| {
                    v["node"]["fingerprint"].is_string()
                        && !v["node"]["report"]["disks"].as_array().unwrap().is_empty()
                }))
            .then_some(())
        },
    );

    // The collector's view, for people.
    let out = text(&show(&site.home, &[&host, "--collector", &site.url]));
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` line in\n{out}"))
            .to_string()
    };
    assert!(line("node").ends_with(&host), "{out}");
    let state = line("state");
    assert!(
        (state.contains("up since") || state.contains("busy since")) && state.contains(" ago)"),
        "{out}"
    );
    assert!(line("load 1/5/15").contains("CPUs"), "{out}");
    assert!(line("memory").contains("free of"), "{out}");
    assert!(line("fingerprint").contains("(same as its group)"), "{out}");
    assert!(out.contains("\nDISKS\n"), "{out}");
    let disks = out
        .split("\nDISKS\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    assert!(
        disks.lines().any(|l| l.contains(" free of ")),
        "a disk line with its free space: {out}"
    );
    assert!(out.contains("RUNS IN PROGRESS"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&run_id) && l.contains("long-job")),
        "the run in progress is listed: {out}"
    );
    assert!(out.contains("STATE HISTORY"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("-        -> up") || l.contains("-        -> busy")),
        "the first transition (from nothing) is in the history: {out}"
    );

    // JSON: the same document as GET /api/v1/nodes/{name}.
    let out = text(&show(
        &site.home,
        &[&host, "--collector", &site.url, "--json"],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"]["node"], host.as_str());
    assert_eq!(v["running"][0]["id"], run_id.as_str(), "{v}");
    assert_eq!(v["running"][0]["state"], "running", "{v}");
    assert!(!v["transitions"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["node"]["fingerprint_differs"], false);

    // The outlier of its group says so; its peers do not.
    let odd = text(&show(&site.home, &["odd-1", "--collector", &site.url]));
    assert!(
        odd.contains("fp-odd  DIFFERS from most nodes labelled rack=r7"),
        "{odd}"
    );
    assert!(odd.contains("/scratch") && odd.contains("xfs"), "{odd}");
    let twin = text(&show(&site.home, &["twin-1", "--collector", &site.url]));
    assert!(twin.contains("fp-same  (same as its group)"), "{twin}");
    // The list (/nodes and its JSON twin) marks by software only.
    let list = get_json(&site.url, "/api/v1/pages/nodes");
    let differs = |n: &str| {
        list["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .unwrap_or_else(|| panic!("{n} in {list}"))["fingerprint_differs"]
            .as_bool()
            .unwrap_or(false)
    };
    assert!(!differs("hw-1"), "hardware alone is not drift");
    assert!(!differs("twin-1"));
    assert!(differs("pkg-1"), "a package is");
    assert!(differs("odd-1"));
    let page = get(&site.url, "/nodes").unwrap();
    assert_eq!(page.matches("≠ group</span>").count(), 2, "odd-1 and pkg-1");

    // The collector's own store, read where it lies (PLUMB_HOME = its site.data
    // directory), without asking the collector.
    let local = plumb_in(&site.data)
        .args(["nodes", "show", "odd-1", "--local", "--json"])
        .output()
        .unwrap();
    let lv: Value = serde_json::from_str(&text(&local)).unwrap();
    assert_eq!(lv["node"]["node"], "odd-1");
    assert_eq!(lv["node"]["fingerprint_differs"], true, "{lv}");
    let local = plumb_in(&site.data)
        .args(["nodes", "show", &host, "--local"])
        .output()
        .unwrap();
    assert!(
        text(&local).contains(&run_id),
        "the local store lists the run too"
    );
    // `plumb nodes` reads the same sources as `nodes show`: the collector's
    // list and the local store's list are the same nodes in the same states.
    let remote_list: Value = serde_json::from_str(&text(
        &plumb_in(&site.home)
            .args(["nodes", "--json", "--collector", &site.url])
            .output()
            .unwrap(),
    ))
    .unwrap();
    let local_list: Value = serde_json::from_str(&text(
        &plumb_in(&site.data)
            .args(["nodes", "--json", "--local"])
            .output()
            .unwrap(),
    ))
    .unwrap();
    let names_states = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap().into(),
                    n["state"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert!(names_states(&remote_list).len() >= 3, "{remote_list}");
    assert_eq!(names_states(&local_list), names_states(&remote_list));
    // Without any collector configured, a node's own (empty) store is read
    // and says why it is empty, rather than failing.
    let empty = plumb_in(&site.home).args(["nodes"]).output().unwrap();
    assert!(empty.status.success(), "{empty:?}");
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("no node has reported to the store"),
        "{empty:?}"
    );
    assert!(String::from_utf8_lossy(&empty.stdout).starts_with("NODE"));

    // Unknown names are named, remotely and locally.
    for (dir, args) in [
        (
            &site.home,
            vec!["no-such-node", "--collector", site.url.as_str()],
        ),
        (&site.data, vec!["no-such-node", "--local"]),
    ] {
        let o = plumb_in(dir)
            .args(["nodes", "show"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("no node `no-such-node`"), "{args:?}: {err}");
    }
    drop(serve);
}
