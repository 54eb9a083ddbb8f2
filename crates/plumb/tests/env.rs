//! `plumb env` (show, drift, diff, lock, check), `plumb run
//! --require-lock`, `plumb rerun` and `plumb integrity`, on real Python
//! virtualenvs, real agents and a real collector.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// A virtualenv (without pip: fast, no network) with `packages` installed
/// as `*.dist-info` directories, which is all `importlib.metadata` reads.
fn venv(dir: &Path, packages: &[(&str, &str)]) -> PathBuf {
    let out = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(dir)
        .output()
        .expect("python3 -m venv (install python3-venv)");
    assert!(out.status.success(), "venv: {}", text(&out.stderr));
    for (name, version) in packages {
        install(dir, name, version);
    }
    dir.join("bin/python")
}

fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let py = std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))
        .expect("lib/pythonX.Y");
    py.path().join("site-packages")
}

fn install(venv: &Path, name: &str, version: &str) {
    let d = site_packages(venv).join(format!("{}-{version}.dist-info", name.replace('-', "_")));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("METADATA"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    )
    .unwrap();
}

fn uninstall(venv: &Path, name: &str, version: &str) {
    let d = site_packages(venv).join(format!("{}-{version}.dist-info", name.replace('-', "_")));
    std::fs::remove_dir_all(d).unwrap();
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn drift_across_agents_names_each_differing_component_and_the_majority() {
    let site = Site::new();
    let tmp = site.dir();
    let config = tmp.join("collector.toml");
    std::fs::write(&config, "[alerts]\ninterval = \"200ms\"\n").unwrap();
    let _serve = Serve::builder()
        .data(&site.data)
        .port(site.port)
        .env("PLUMB_CONFIG", &config)
        .start();
    let v1 = venv(&tmp.join("v1"), &[("demo-pkg", "1.0"), ("common", "3.2")]);
    let v2 = venv(
        &tmp.join("v2"),
        &[("demo-pkg", "2.0"), ("common", "3.2"), ("only-here", "0.1")],
    );
    let mut agents = Vec::new();
    for (name, python, app) in [("a", &v1, "1.4"), ("b", &v1, "1.4"), ("c", &v2, "1.5")] {
        let home = tmp.join(format!("agent-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("plumb.toml"),
            format!(
                "python = \"{}\"\n[tools]\napp = \"echo app {app}\"\n",
                python.display()
            ),
        )
        .unwrap();
        // Different variables too: c runs with 8 threads; each has its own
        // token (secret-looking: reported only as set, so no drift).
        let threads = if name == "c" { "8" } else { "4" };
        let child = plumb_in(&home)
            .args(["agent", "--name", name, "--interval", "500ms"])
            .args(["--collector", &site.url, "--label", "role=worker"])
            .args(["--fingerprint-every", "1s"])
            .args(["--env-var", "OMP_NUM_THREADS", "--env-var", "SERVICE_TOKEN"])
            .env("OMP_NUM_THREADS", threads)
            .env("SERVICE_TOKEN", format!("tok-secret-{name}"))
            .spawn()
            .expect("plumb agent starts");
        agents.push(Agent {
            proc: Proc(child),
            home: home.clone(),
        });
    }
    let home = Home::new();
    let drift = || {
        home.cmd(&["env", "drift", "--collector", &site.url, "--json"])
            .output()
            .unwrap()
    };
    let view = wait_for("three fingerprints", Duration::from_secs(60), || {
        let v: serde_json::Value = serde_json::from_slice(&drift().stdout).ok()?;
        (v["drift"]["nodes"].as_array()?.len() == 3).then_some(v)
    });
    let items = view["drift"]["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "env:OMP_NUM_THREADS",
            "python:demo-pkg",
            "python:only-here",
            "tool:app"
        ],
        "exactly what differs: {view:#}"
    );
    assert_eq!(items[0]["majority"], "4");
    assert_eq!(items[0]["versions"][1]["version"], "8");
    assert_eq!(items[0]["versions"][1]["nodes"], serde_json::json!(["c"]));
    assert!(
        !view.to_string().contains("tok-secret"),
        "a secret-looking variable's value never leaves the node"
    );
    let items = &items[1..];
    assert_eq!(items[0]["majority"], "1.0");
    assert_eq!(
        items[0]["versions"][0]["nodes"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(items[0]["versions"][1]["version"], "2.0");
    assert_eq!(items[0]["versions"][1]["nodes"], serde_json::json!(["c"]));
    assert_eq!(items[1]["versions"][0]["version"], serde_json::Value::Null);
    assert_eq!(items[2]["majority"], "app 1.4");

    // As text, with the exit code of diff(1).
    let out = home
        .cmd(&["env", "drift", "--collector", &site.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("4 components differ across 3 nodes"), "{t}");
    assert!(t.contains("env:OMP_NUM_THREADS"), "{t}");
    let out = home
        .cmd(&[
            "agent",
            "--collector",
            &site.url,
            "--env-var",
            "OMP-THREADS",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("`OMP-THREADS` is not a variable name"),
        "{}",
        text(&out.stderr)
    );
    assert!(t.contains("1 node differs from the majority: c"), "{t}");
    assert!(t.contains("(majority)"), "{t}");

    // A label nobody has: said, exit 1.
    let out = home
        .cmd(&[
            "env",
            "drift",
            "--collector",
            &site.url,
            "--label",
            "role=gpu",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no nodes with labels role=gpu"),
        "{}",
        text(&out.stderr)
    );
    let out = home
        .cmd(&["env", "drift", "--collector", &site.url, "--label", "role"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("expected KEY=VALUE"),
        "{}",
        text(&out.stderr)
    );

    // One node's environment, and the diff of two.
    let v = home.json(&["env", "--node", "c", "--collector", &site.url, "--json"]);
    assert_eq!(v["components"]["python:demo-pkg"], "2.0", "{v:#}");
    let out = home
        .cmd(&["env", "diff", "a", "c", "--collector", &site.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("demo-pkg: 1.0 -> 2.0"), "{t}");
    assert!(t.contains("only-here: (absent) -> 0.1"), "{t}");
    let out = home
        .cmd(&["env", "diff", "a", "b", "--collector", &site.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("environments are the same"));
    let out = home
        .cmd(&["env", "--node", "zz", "--collector", &site.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no node named zz"),
        "{}",
        text(&out.stderr)
    );

    // A node checked against a lock.
    let req = tmp.join("requirements.txt");
    std::fs::write(&req, "demo-pkg==1.0\ncommon==3.2\n").unwrap();
    let req_s = req.to_str().unwrap();
    let out = home
        .cmd(&[
            "env",
            "check",
            "--lock",
            req_s,
            "--node",
            "c",
            "--collector",
            &site.url,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("python:demo-pkg: 2.0 installed, the lock wants 1.0 (")
            && t.contains("requirements.txt:1)"),
        "{t}"
    );
    let out = home
        .cmd(&[
            "env",
            "check",
            "--lock",
            req_s,
            "--node",
            "a",
            "--collector",
            &site.url,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("2 pins checked"));

    // The alert: node c, and only c, drifted from its group.
    let alerts = wait_for("the drift alert", Duration::from_secs(30), || {
        let v = get_json(&site.url, "/api/v1/alerts");
        let firing: Vec<serde_json::Value> = v["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == "EnvironmentDrift")
            .cloned()
            .collect();
        (!firing.is_empty()).then_some(firing)
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["labels"]["node"], "c");
    assert_eq!(alerts[0]["labels"]["group"], "role=worker");
    let description = alerts[0]["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("python:demo-pkg 2.0 (most have 1.0)"),
        "{description}"
    );

    // The node's page and `plumb nodes show` name what differs.
    let page = get(&site.url, "/nodes/c").expect("the node page");
    assert!(
        page.contains("Software that differs from its group"),
        "{page}"
    );
    assert!(
        page.contains(">python:demo-pkg</td><td>2.0</td><td>1.0</td>"),
        "{page}"
    );
    let shown = text(
        &ok(
            home.run(&["nodes", "show", "c", "--collector", &site.url]),
            "plumb nodes show c",
        )
        .stdout,
    );
    assert!(
        shown.contains("SOFTWARE THAT DIFFERS FROM ITS GROUP"),
        "{shown}"
    );
    let a = get_json(&site.url, "/api/v1/nodes/a");
    assert_eq!(a["differs_in"], serde_json::json!([]), "{a:#}");

    // An upgrade on c: its fingerprint changes, and the EnvironmentChanged
    // alert, the node page and `plumb nodes show` name what changed.
    let v2_dir = v2.parent().unwrap().parent().unwrap();
    uninstall(v2_dir, "demo-pkg", "2.0");
    install(v2_dir, "demo-pkg", "2.1");
    let changed = wait_for("the change alert", Duration::from_secs(60), || {
        let v = get_json(&site.url, "/api/v1/alerts");
        let firing: Vec<serde_json::Value> = v["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == "EnvironmentChanged")
            .cloned()
            .collect();
        (!firing.is_empty()).then_some(firing)
    });
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["labels"]["node"], "c");
    let description = changed[0]["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("python:demo-pkg 2.0 -> 2.1"),
        "{description}"
    );
    assert!(!description.contains("only-here"), "{description}");
    let page = get(&site.url, "/nodes/c").expect("the node page");
    assert!(page.contains("Software changes"), "{page}");
    assert!(page.contains("python:demo-pkg 2.0 -&gt; 2.1"), "{page}");
    let shown = text(
        &ok(
            home.run(&["nodes", "show", "c", "--collector", &site.url]),
            "plumb nodes show c",
        )
        .stdout,
    );
    assert!(shown.contains("SOFTWARE CHANGES"), "{shown}");
    assert!(shown.contains("python:demo-pkg 2.0 -> 2.1"), "{shown}");
    let a = get_json(&site.url, "/api/v1/nodes/a");
    assert_eq!(a["env_changes"], serde_json::json!([]), "{a:#}");

    // A collector that is down is said, not taken for "no drift".
    drop(_serve);
    let out = home
        .cmd(&["env", "drift", "--collector", &site.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("127.0.0.1"),
        "{}",
        text(&out.stderr)
    );
    drop(agents);
}

#[test]
fn lock_checks_against_plumb_locks_pip_freeze_and_cargo_lock() {
    let home = Home::new();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = venv(
        &tmp.path().join("v1"),
        &[("demo-pkg", "1.0"), ("common", "3.2")],
    );
    let py = v1.to_str().unwrap();

    // plumb's own lock round-trips, and catches an upgrade and an addition.
    let out = ok(home.run(&["env", "lock", "--python", py]), "plumb env lock");
    let lock = tmp.path().join("plumb.lock");
    std::fs::write(&lock, &out.stdout).unwrap();
    let lock_s = lock.to_str().unwrap();
    assert!(text(&out.stdout).contains("\"python:demo-pkg\" = \"1.0\""));
    ok(
        home.run(&["env", "check", "--lock", lock_s, "--python", py]),
        "check against its own lock",
    );
    uninstall(v1.parent().unwrap().parent().unwrap(), "demo-pkg", "1.0");
    install(v1.parent().unwrap().parent().unwrap(), "demo-pkg", "1.1");
    install(v1.parent().unwrap().parent().unwrap(), "extra", "9");
    let out = home.run(&["env", "check", "--lock", lock_s, "--python", py]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("python:demo-pkg: 1.1 installed, the lock wants 1.0"),
        "{t}"
    );
    assert!(
        t.contains("python:extra: 9 installed, not in the lock"),
        "{t}"
    );
    let out = home.run(&["env", "check", "--lock", lock_s, "--python", py, "--json"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "plumb");
    assert_eq!(v["mismatches"].as_array().unwrap().len(), 2, "{v:#}");

    // Real `pip freeze` output of that environment, with a planted
    // mismatch.
    let venv_dir = v1.parent().unwrap().parent().unwrap();
    let sp = std::fs::read_dir(venv_dir.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    let freeze = Command::new("python3")
        .args(["-m", "pip", "freeze", "--path"])
        .arg(&sp)
        .output()
        .expect("python3 -m pip");
    assert!(
        freeze.status.success(),
        "pip freeze: {}",
        text(&freeze.stderr)
    );
    let frozen = text(&freeze.stdout);
    assert!(
        frozen.contains("demo-pkg==1.1") || frozen.contains("demo_pkg==1.1"),
        "{frozen}"
    );
    let req = tmp.path().join("frozen.txt");
    std::fs::write(&req, &frozen).unwrap();
    ok(
        home.run(&[
            "env",
            "check",
            "--lock",
            req.to_str().unwrap(),
            "--python",
            py,
        ]),
        "pip freeze output matches",
    );
    let planted = frozen.replace("common==3.2", "common==3.3");
    std::fs::write(&req, &planted).unwrap();
    let line = planted
        .lines()
        .position(|l| l.starts_with("common=="))
        .unwrap()
        + 1;
    let out = home.run(&[
        "env",
        "check",
        "--lock",
        req.to_str().unwrap(),
        "--python",
        py,
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains(&format!(
            "python:common: 3.2 installed, the lock wants 3.3 ({}:{line})",
            req.display()
        )),
        "{t}"
    );

    // The repository's own Cargo.lock against the Rust tools "installed"
    // in a CARGO_HOME: one at the locked version, one not.
    let cargo_lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let locked = std::fs::read_to_string(&cargo_lock).unwrap();
    let version_of = |name: &str| {
        let at = locked
            .find(&format!("name = \"{name}\"\nversion = \""))
            .unwrap();
        locked[at..]
            .lines()
            .nth(1)
            .unwrap()
            .split('"')
            .nth(1)
            .unwrap()
            .to_string()
    };
    let cargo_home = tmp.path().join("cargo");
    std::fs::create_dir_all(&cargo_home).unwrap();
    std::fs::write(
        cargo_home.join(".crates2.json"),
        serde_json::json!({"installs": {
            format!("memchr {} (registry+https://github.com/rust-lang/crates.io-index)", version_of("memchr")): {},
            "toml 0.1.0 (registry+https://github.com/rust-lang/crates.io-index)": {},
        }})
        .to_string(),
    )
    .unwrap();
    let out = home
        .cmd(&[
            "env",
            "check",
            "--lock",
            cargo_lock.to_str().unwrap(),
            "--python",
            py,
        ])
        .env("CARGO_HOME", &cargo_home)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains(&format!(
            "cargo:toml: 0.1.0 installed, the lock wants {}",
            version_of("toml")
        )),
        "{t}"
    );
    assert!(!t.contains("cargo:memchr"), "{t}");
    assert!(t.contains("1 of 2 differ"), "{t}");

    // A malformed lock is named with its line; nothing else happens.
    let bad = tmp.path().join("uv.lock");
    std::fs::write(
        &bad,
        "version = 1\n[[package]]\nname = \"x\"\nversion = 1.0.0\n",
    )
    .unwrap();
    let out = home.run(&["env", "check", "--lock", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("uv.lock:4"),
        "{}",
        text(&out.stderr)
    );
    let out = home.run(&["env", "check", "--lock", "/nonexistent/req.txt"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("/nonexistent/req.txt"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn require_lock_refuses_a_mismatching_environment_and_records_the_refusal() {
    let home = Home::new();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = venv(&tmp.path().join("v1"), &[("demo-pkg", "1.0")]);
    let py = v1.to_str().unwrap();
    let req = tmp.path().join("requirements.txt");
    std::fs::write(&req, "# pinned\ndemo-pkg==2.0\n").unwrap();
    let marker = tmp.path().join("ran");
    let script = format!(
        "import pathlib; pathlib.Path({:?}).write_text('x')",
        marker.to_str().unwrap()
    );
    let out = home.run(&[
        "run",
        "--require-lock",
        req.to_str().unwrap(),
        "--",
        py,
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("python:demo-pkg: 1.0 installed, the lock wants 2.0"),
        "{err}"
    );
    assert!(err.contains("requirements.txt:2"), "{err}");
    assert!(!marker.exists(), "the command must not have run");
    let runs = home.json(&["ls", "--json"]);
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(run["state"], "cancelled", "{runs:#}");
    let show = text(&ok(home.run(&["show", "last"]), "plumb show").stdout);
    assert!(
        show.contains("launch    refused: the environment does not match"),
        "{show}"
    );
    assert!(show.contains("python:demo-pkg: 1.0 installed"), "{show}");

    std::fs::write(&req, "demo-pkg==1.0\n").unwrap();
    ok(
        home.run(&[
            "run",
            "--require-lock",
            req.to_str().unwrap(),
            "--",
            py,
            "-c",
            &script,
        ]),
        "a matching environment runs",
    );
    assert!(marker.exists());
}

#[test]
fn rerun_does_the_same_again_and_says_what_changed_first() {
    let home = Home::new();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = venv(&tmp.path().join("v1"), &[("demo-pkg", "1.0")]);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.txt"), "input data\n").unwrap();
    let script = "import os; print(open('in.txt').read().strip(), os.environ['MODE'], len(os.environ['API_TOKEN']))";
    let out = home
        .cmd(&[
            "run",
            "--name",
            "job",
            "--tag",
            "team=ml",
            "--",
            v1.to_str().unwrap(),
            "-c",
            script,
        ])
        .current_dir(&work)
        .env("MODE", "fast")
        .env("API_TOKEN", "abcd")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "input data fast 4\n");
    let first = home.json(&["ls", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Without the secret, the rerun is refused naming it.
    let out = home
        .cmd(&["rerun", "last"])
        .env("MODE", "slow")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("never stored: API_TOKEN"),
        "{}",
        text(&out.stderr)
    );

    // From elsewhere, with another MODE now: the recorded directory and
    // MODE are used, the secret is taken from here.
    let out = home
        .cmd(&["rerun", "last"])
        .current_dir(tmp.path())
        .env("MODE", "slow")
        .env("API_TOKEN", "wxyz")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "input data fast 4\n");
    let err = text(&out.stderr);
    assert!(err.contains("the software is the same"), "{err}");
    let runs = home.json(&["ls", "--json"]);
    let second = runs[0]["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let shown = &home.json(&["show", &second, "--json"])["run"];
    assert_eq!(shown["tags"]["rerun_of"], first.as_str(), "{shown:#}");
    assert_eq!(shown["tags"]["team"], "ml");
    assert_eq!(shown["name"], "job");

    // A package upgraded since: the difference is printed before the
    // program's output.
    let venv_dir = tmp.path().join("v1");
    uninstall(&venv_dir, "demo-pkg", "1.0");
    install(&venv_dir, "demo-pkg", "1.1");
    let out = home
        .cmd(&["rerun", &first])
        .env("API_TOKEN", "wxyz")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the software changed since the run was recorded"),
        "{err}"
    );
    assert!(err.contains("demo-pkg: 1.0 -> 1.1"), "{err}");

    // A reference to nothing.
    let out = home.run(&["rerun", "ffffffff"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
}

#[test]
fn integrity_flags_equal_inputs_with_different_outputs_only() {
    let home = Home::new();
    let work = home.dir().join("w");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.csv"), "1,2,3\n").unwrap();
    let run = |name: &str, result: &str| {
        let out = home
            .cmd(&[
                "run", "--name", name, "--input", "in.csv", "--output", "out.csv", "--", "sh", "-c",
            ])
            .arg(format!("echo {result} > out.csv"))
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run("stable", "6");
    run("stable", "6");
    let out = home.run(&["integrity"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("no runs with the same inputs and different outputs"));

    run("flaky", "6");
    run("flaky", "7");
    let out = home.run(&["integrity"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("flaky: same inputs, different outputs (2 outcomes in 2 runs)"),
        "{t}"
    );
    assert!(!t.contains("stable"), "{t}");
    let out = home.run(&["integrity", "--name", "flaky", "--json"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["outcomes"].as_array().unwrap().len(), 2, "{v:#}");
    let out = home.run(&["integrity", "--name", "stable"]);
    assert_eq!(code(&out), 0);
    let out = home.run(&["integrity", "--last", "0"]);
    assert_eq!(code(&out), 2);

    // The dashboard flags them on the job's page, and its JSON twin lists
    // the same groups.
    let serve = Serve::start(&home.store());
    let page = serve.get("/jobs/flaky").expect("the job page");
    assert!(page.contains("Same inputs, different outputs"), "{page}");
    assert!(page.contains("out.csv"), "{page}");
    let v = serve.get_json("/api/v1/pages/jobs/flaky");
    let flagged = v["integrity"].as_array().expect("integrity in the twin");
    assert_eq!(flagged.len(), 1, "{v:#}");
    assert_eq!(flagged[0]["outcomes"].as_array().unwrap().len(), 2);
    assert!(v["runs"].as_array().is_some(), "the history is still there");
    let page = serve.get("/jobs/stable").expect("the job page");
    assert!(!page.contains("Same inputs, different outputs"), "{page}");
    assert_eq!(
        serve.get_json("/api/v1/pages/jobs/stable")["integrity"],
        serde_json::json!([])
    );
}
