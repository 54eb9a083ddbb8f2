//! Hardware health end to end with real processes: a real `plumb serve`
//! with alert rules and a webhook receiver run by the test, and real
//! `plumb agent`s:
//!
//! - "sick" reads a fake sysfs/procfs root laid out as the kernel documents
//!   it (crates/plumb-agent/testdata/health/failing: EDAC uncorrected
//!   errors, throttling, memory pressure, I/O errors) and a stand-in
//!   `smartctl` (a shell script written here, standing for the external
//!   tool) that prints the recorded JSON of a failing SATA disk and a
//!   healthy NVMe drive;
//! - "real" reads this machine, with a smartctl that does not exist;
//! - "bare" reads an empty root: every source unavailable.
//!
//! `plumb nodes health` lists "sick" first, the webhook gets its SMART,
//! memory and pressure alerts, unavailable sources come with reasons, and
//! every agent keeps heartbeating.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plumb-agent/testdata/health")
}

/// A stand-in for smartmontools' `smartctl` (not installed here): prints
/// the recorded JSON for the device it is asked about, with smartctl's
/// exit status bits (8: disk failing, 32: attributes past threshold).
fn fake_smartctl(dir: &Path) -> PathBuf {
    let td = testdata().join("smartctl");
    let path = dir.join("smartctl");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$3\" in\n  /dev/sda) cat {}; exit 40;;\n  /dev/nvme0n1) cat {}; exit 0;;\n  *) echo '{{\"smartctl\":{{\"exit_status\":2,\"messages\":[{{\"string\":\"no such device\",\"severity\":\"error\"}}]}}}}'; exit 2;;\nesac\n",
            td.join("failing-ata.json").display(),
            td.join("healthy-nvme.json").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn seq(url: &str, node: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(&get(url, "/api/v1/nodes")?).ok()?;
    v.as_array()?.iter().find(|n| n["node"] == node)?["report"]["seq"].as_u64()
}

fn unavailable<'a>(view: &'a Value, source: &str) -> Option<&'a str> {
    view["unavailable"]
        .as_array()?
        .iter()
        .find(|u| u["source"] == source)?["reason"]
        .as_str()
}

#[test]
fn a_failing_disk_and_memory_errors_are_listed_first_and_alerted_and_unavailable_sources_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    let config = receiver.config(tmp.path(), "");
    let serve = Serve::builder()
        .data(&tmp.path().join("collector"))
        .env("PLUMB_CONFIG", &config)
        .start();
    let url = serve.api.clone();
    let smartctl = fake_smartctl(tmp.path());
    let failing = testdata().join("failing");
    let empty = tmp.path().join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let _sick = Agent::start(
        &tmp.path().join("sick"),
        &url,
        "sick",
        "200ms",
        &[
            "--health-root",
            failing.to_str().unwrap(),
            "--smartctl",
            smartctl.to_str().unwrap(),
        ],
    );
    let _real = Agent::start(
        &tmp.path().join("real"),
        &url,
        "real",
        "200ms",
        &["--smartctl", "/nonexistent/smartctl"],
    );
    let _bare = Agent::start(
        &tmp.path().join("bare"),
        &url,
        "bare",
        "200ms",
        &[
            "--health-root",
            empty.to_str().unwrap(),
            "--smartctl",
            "/nonexistent/smartctl",
        ],
    );
    let home = Home::new();

    // The fleet view: sick first (critical), once SMART has been read.
    let fleet = wait_for(
        "sick's SMART in the fleet view",
        Duration::from_secs(30),
        || {
            let out = home
                .cmd(&["nodes", "health", "--collector", &url, "--json"])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let nodes = v.as_array()?;
            // Every agent's first SMART read is done (its reading goes
            // with the next heartbeat, since it changed).
            let read = |n: &Value| {
                n["health"]["smart"]["status"] == "ok"
                    || n["health"]["smart"]["reason"]
                        .as_str()
                        .is_some_and(|r| !r.starts_with("not read yet"))
            };
            (nodes.len() == 3 && nodes.iter().all(read)).then_some(v)
        },
    );
    let first = &fleet[0];
    assert_eq!(first["node"], "sick", "{fleet:#}");
    assert_eq!(first["findings"][0]["level"], "critical", "{first:#}");
    let texts: Vec<&str> = first["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("/dev/sda fails its SMART self-assessment")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("3 uncorrected memory error")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("pending 56")), "{texts:?}");

    // The table says the same: sick on the first line after the header.
    let out = ok(
        home.cmd(&["nodes", "health", "--collector", &url])
            .output()
            .unwrap(),
        "plumb nodes health",
    );
    let table = text(&out.stdout);
    let line = table.lines().nth(1).unwrap();
    assert!(
        line.starts_with("sick ") && line.contains("CRITICAL"),
        "{table}"
    );

    // One node: values, and what it cannot read with why.
    let out = ok(
        home.cmd(&["nodes", "health", "sick", "--collector", &url])
            .output()
            .unwrap(),
        "plumb nodes health sick",
    );
    let t = text(&out.stdout);
    for needle in [
        "SMART /dev/sda",
        "FAILED",
        "SMART /dev/nvme0n1",
        "PASSED",
        "memory errors mc0",
        "12 corrected, 3 uncorrected",
        "coretemp Package id 0",
        "thermal throttling",
        "I/O errors block sda",
    ] {
        assert!(t.contains(needle), "no `{needle}` in\n{t}");
    }

    // The alerts reach the webhook, Alertmanager-shaped.
    let a = receiver.firing("DiskSmartFailing", &[("node", "sick")], 30);
    assert_eq!(a["labels"]["node"], "sick");
    assert_eq!(a["labels"]["device"], "/dev/sda");
    assert_eq!(a["labels"]["severity"], "critical");
    assert!(
        a["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("pending 56"),
        "{a}"
    );
    let m = receiver.firing("MemoryUncorrectedErrors", &[("node", "sick")], 30);
    assert_eq!(m["labels"]["node"], "sick");
    // Memory pressure 35.5% in every reading: after three in a row. (The
    // real node may be under pressure too while the suite runs.)
    let p = receiver.firing("NodePressure", &[("node", "sick")], 30);
    assert_eq!(p["labels"]["node"], "sick");
    assert_eq!(p["labels"]["resource"], "memory");

    // Unavailable sources come with reasons, never as zeros.
    let real = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "real")
        .unwrap();
    let reason = unavailable(real, "smart").expect("smart unavailable on real");
    assert!(reason.contains("smartmontools"), "{reason}");
    assert!(real["health"]["smart"]["value"].is_null(), "{real:#}");
    // This machine's PSI, for real when the kernel has it.
    if Path::new("/proc/pressure/memory").exists() {
        let mem = &real["health"]["psi"]["value"]["memory"]["some"];
        assert!(mem["avg10"].as_f64().is_some(), "{real:#}");
        assert!(mem["total_us"].as_u64().is_some(), "{real:#}");
    } else {
        let reason = unavailable(real, "psi").expect("psi unavailable");
        assert!(reason.contains("pressure"), "{reason}");
    }
    let bare = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "bare")
        .unwrap();
    assert_eq!(bare["unavailable"].as_array().unwrap().len(), 9, "{bare:#}");
    assert!(unavailable(bare, "memory_errors").unwrap().contains("EDAC"));
    assert!(unavailable(bare, "psi").unwrap().contains("CONFIG_PSI"));
    assert!(bare["findings"].as_array().unwrap().is_empty(), "{bare:#}");

    // And every agent keeps heartbeating.
    for node in ["sick", "real", "bare"] {
        let before = seq(&url, node).unwrap();
        wait_for(
            &format!("{node}'s next heartbeats"),
            Duration::from_secs(20),
            || (seq(&url, node)? >= before + 3).then_some(()),
        );
    }

    // Heartbeats stay small: an unchanging node sends its health again
    // only once a minute (the first reading, then the one with its first
    // SMART attempt), not with each of its heartbeats.
    let beats = seq(&url, "bare").unwrap();
    assert!(beats >= 5, "{beats}");
    let sent = get_json(&url, "/api/v1/nodes/bare/health?history=1000")["history"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        (1..=2).contains(&sent),
        "{sent} readings stored for {beats} heartbeats"
    );

    // The dashboard's node page and its JSON twin carry the health.
    let page = get(&url, "/nodes/sick").expect("the node page");
    assert!(page.contains("id=\"health-findings\""), "{page}");
    assert!(page.contains("fails its SMART self-assessment"));
    let detail = get_json(&url, "/api/v1/nodes/bare");
    assert!(
        detail["health"]["current"]["unavailable"]
            .as_array()
            .unwrap()
            .len()
            == 9
    );
    let one = get_json(&url, "/api/v1/nodes/sick/health?history=5");
    assert!(!one["history"].as_array().unwrap().is_empty(), "{one:#}");
    assert!(one["history"].as_array().unwrap().len() <= 5, "{one:#}");

    // A node that never reported.
    let out = home
        .cmd(&["nodes", "health", "nosuch", "--collector", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no node `nosuch`"), "{err}");
}

#[test]
fn bad_health_rules_and_flags_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    for (toml, needle) in [
        (
            "[alerts.rules.pressure]\nmemory_above = 0\n",
            "alerts.rules.pressure.memory_above",
        ),
        (
            "[alerts.rules.pressure]\nintervals = 0\n",
            "alerts.rules.pressure.intervals",
        ),
        (
            "[alerts.rules.oom_kill]\nwindow = \"0s\"\n",
            "alerts.rules.oom_kill.window",
        ),
        ("[alerts.rules.smart]\ntreshold = 3\n", "treshold"),
        ("[alerts.rules.smartt]\nenabled = false\n", "smartt"),
    ] {
        let config = tmp.path().join("plumb.toml");
        std::fs::write(&config, toml).unwrap();
        let out = plumb()
            .args(["serve", "--otlp-listen", "off", "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("PLUMB_CONFIG", &config)
            .env("PLUMB_HOME", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}: {out:?}");
        assert!(err.contains(needle), "{toml}: no `{needle}` in {err}");
    }
    let home = Home::new();
    // A node asked of a home without a store: named, not a database error.
    let out = home
        .cmd(&["nodes", "health", "nosuch", "--local"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no node `nosuch` has reported"), "{err}");
    for (args, needle) in [
        (&["--smart-every", "10ms"][..], "too short a SMART interval"),
        (&["--health-root", "/nonexistent/root"][..], "--health-root"),
    ] {
        let out = home
            .cmd(&["agent", "--collector", "http://127.0.0.1:9"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
