//! `plumb preflight`: each kind of check, run as a non-root user created
//! here, failing with reasons that name the node, the check and the value.
//! Needs root (to create the user, switch to it and mount a tmpfs), as
//! the other system tests do.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use support::*;

const USER: &str = "plumb-preflight";

/// The test's non-root user.
fn test_user() -> (u32, u32) {
    system_user(USER)
}

#[test]
fn every_check_kind_fails_with_a_reason_naming_node_check_and_value() {
    let (uid, gid) = test_user();
    let home = Home::new();
    let tmp = tempfile::tempdir().unwrap();
    // The user must be able to reach what it should read.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let readable = tmp.path().join("readable");
    std::fs::create_dir(&readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = tmp.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let writable = tmp.path().join("out");
    std::fs::create_dir(&writable).unwrap();
    std::os::unix::fs::chown(&writable, Some(uid), Some(gid)).unwrap();

    // A full disk.
    let full = Tmpfs::mount("1M");
    std::fs::set_permissions(full.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::write(full.path().join("filler"), vec![0u8; 2 << 20]);

    // A port in use.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    // A port that answers.
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap();

    let spec = tmp.path().join("job.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[user]
name = "{USER}"
uid = {uid}
run_as = true

[[env]]
name = "DATA_DIR"
pattern = "^/"
[[env]]
name = "MODE"
default = "batch"
[[env]]
name = "MUST_BE_SET"

[[path]]
path = "readable"
access = "r"
[[path]]
path = "secret"
access = "r"
[[path]]
path = "out"
access = "rw"
[[path]]
path = "readable"
access = "w"

[[disk]]
path = "{full}"
free = "512K"

[[port]]
listen = {taken_port}
[[port]]
connect = "{open_addr}"

[[command]]
name = "sh"
[[command]]
name = "python3"
min_version = "99.1"
"#,
            full = full.path().display()
        ),
    )
    .unwrap();
    let spec_s = spec.to_str().unwrap();
    let out = home
        .cmd(&["preflight", spec_s, "--json"])
        .env("DATA_DIR", "relative/path")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["user"], USER, "the checks ran as the job's user");
    assert_eq!(v["node"], plumb_record::host::hostname());
    let checks = v["checks"].as_array().unwrap();
    let get = |name: &str| -> (bool, String) {
        let c = checks
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no check `{name}` in {v:#}"));
        (
            c["ok"].as_bool().unwrap(),
            c["detail"].as_str().unwrap().to_string(),
        )
    };
    let passes = |name: &str| {
        let (ok, d) = get(name);
        assert!(ok, "{name} should pass: {d}");
        d
    };
    let fails = |name: &str, why: &str| {
        let (ok, d) = get(name);
        assert!(!ok, "{name} should fail: {d}");
        assert!(d.contains(why), "{name}: `{d}` should say `{why}`");
    };
    assert!(passes(&format!("user {USER}")).contains(&format!("uid={uid}")));
    fails("env DATA_DIR", "relative/path: does not match `^/`");
    assert_eq!(passes("env MODE"), "not set, default: batch");
    fails("env MUST_BE_SET", "not set, and no default");
    passes("path readable r");
    // Root could read it; the job's user cannot, and plumb tried as it.
    fails("path secret r", "Permission denied");
    assert!(passes("path out rw").contains("created a file in it"));
    fails(
        "path readable w",
        "creating a file in the directory: Permission denied",
    );
    assert_eq!(
        std::fs::read_dir(&writable).unwrap().count(),
        0,
        "the probe file is removed"
    );
    fails(&format!("disk {}", full.path().display()), "needs 512K");
    fails(
        &format!("port {taken_port} free"),
        &format!("cannot listen on {taken_port}"),
    );
    assert!(passes(&format!("port {open_addr} reachable")).contains("connected to"));
    passes("command sh");
    fails("command python3", "older than 99.1");
    assert_eq!(
        checks
            .iter()
            .filter(|c| c["check"] == format!("user {USER}"))
            .count(),
        1
    );

    // As text: the node, each check and its reason.
    let out = home
        .cmd(&["preflight", spec_s])
        .env("DATA_DIR", "/data")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    assert!(
        t.starts_with(&format!(
            "preflight on {} as {USER}",
            plumb_record::host::hostname()
        )),
        "{t}"
    );
    assert!(t.contains("path secret r") && t.contains("FAIL"), "{t}");
    assert!(t.contains("checks failed"), "{t}");
    drop((taken, open));

    // A spec whose checks all pass exits 0.
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "[[path]]\npath = \"readable\"\n[[command]]\nname = \"sh\"\n",
    )
    .unwrap();
    let out = home.run(&["preflight", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("all 2 checks passed"));
}

#[test]
fn bad_specs_are_refused_with_the_line_before_any_check() {
    let home = Home::new();
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[[path]]\npath = \"/\"\n\n[[procs]]\nname = \"x\"\n",
            "spec.toml:4: unknown field `procs`",
        ),
        ("[[path]]\npath = \"/\"\nacess = \"r\"\n", "spec.toml:3:"),
        ("[[path]\npath = \"/\"\n", "spec.toml:1:"),
        (
            "[[disk]]\npath = \"/\"\nfree = \"much\"\n",
            "free: `much` is not a size",
        ),
        ("[clock]\nmax_offset = \"soon\"\n", "[clock] max_offset"),
        (
            "[[port]]\nlisten = 1\nconnect = \"a:1\"\n",
            "exactly one of listen",
        ),
    ];
    for (text_, want) in cases {
        let spec = tmp.path().join("spec.toml");
        std::fs::write(&spec, text_).unwrap();
        let out = home.run(&["preflight", spec.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text_}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want),
            "{text_}: `{err}` should contain `{want}`"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing checked: {}",
            text(&out.stdout)
        );
    }
    let out = home.run(&["preflight", "/nonexistent/spec.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/spec.toml"));
}

#[test]
fn preflight_on_every_node_through_the_agents_names_each_nodes_failures() {
    let site = Site::new();
    let _serve = site.serve();
    let mut agents = Vec::new();
    for (name, role) in [("pf-one", "a"), ("pf-two", "b")] {
        let home = site.dir().join(format!("agent-{name}"));
        agents.push(Agent::start(
            &home,
            &site.url,
            name,
            "300ms",
            &["--label", &format!("role={role}")],
        ));
    }
    wait_for("both agents", std::time::Duration::from_secs(30), || {
        let v = get_json(&site.url, "/api/v1/nodes");
        (v.as_array()?.len() == 2).then_some(())
    });
    let spec = site.dir().join("fleet.toml");
    // Each agent runs the checks in its own environment: its PLUMB_HOME
    // names it.
    std::fs::write(
        &spec,
        "[[env]]\nname = \"PLUMB_HOME\"\npattern = \"agent-pf-one\"\n[[path]]\npath = \"/\"\n[clock]\nmax_offset = \"1s\"\n",
    )
    .unwrap();
    let spec_s = spec.to_str().unwrap();
    let home = Home::new();
    let ask = |which: &str, json: bool| {
        let mut args = vec![
            "preflight",
            spec_s,
            "--nodes",
            which,
            "--collector",
            &site.url,
        ];
        if json {
            args.push("--json");
        }
        home.run(&args)
    };
    // Agents poll for requests; the first may come before they do.
    let v = wait_for(
        "results from both nodes",
        std::time::Duration::from_secs(60),
        || {
            let out = ask("all", true);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["nodes"].as_array()?.len() == 2).then_some((out.status.code(), v))
        },
    );
    assert_eq!(v.0, Some(1), "one node fails a check: {:#}", v.1);
    let nodes = v.1["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["node"], "pf-one");
    assert!(
        nodes[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{:#}",
        v.1
    );
    // The clock check measured each node against the collector its agent
    // reports to (one host here: well within a second).
    for n in nodes {
        let clock = n["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "clock within 1s")
            .unwrap_or_else(|| panic!("no clock check: {n:#}"));
        assert_eq!(clock["ok"], true, "{clock}");
        assert!(
            clock["detail"].as_str().unwrap().starts_with("offset "),
            "{clock}"
        );
    }
    assert_eq!(nodes[1]["node"], "pf-two");
    let env = &nodes[1]["checks"][0];
    assert_eq!(env["check"], "env PLUMB_HOME");
    assert_eq!(env["ok"], false);
    assert!(
        env["detail"].as_str().unwrap().contains("does not match"),
        "{env}"
    );

    // As a table, with the failure named by node, check and value.
    let out = ask("all", false);
    let t = text(&out.stdout);
    assert!(t.contains("pf-one") && t.contains("pf-two"), "{t}");
    assert!(t.contains("pf-two (as "), "{t}");
    assert!(t.contains("env PLUMB_HOME: set: "), "{t}");
    assert!(t.contains("2 nodes answered, 1 failed check"), "{t}");

    // Recorded: the dashboard lists it and shows the node-by-check table
    // with the failure's reason, and its JSON twin has the same results.
    let link = t
        .lines()
        .find_map(|l| l.strip_prefix("recorded: "))
        .unwrap_or_else(|| panic!("no recorded link: {t}"));
    let path = link
        .strip_prefix(site.url.as_str())
        .expect("a link to this collector");
    let id = path.strip_prefix("/preflight/").expect("/preflight/ID");
    let page = get(&site.url, path).expect("the preflight page");
    assert!(page.contains("id=\"preflight-matrix\""), "{page}");
    assert!(page.contains("✗ set: "), "the failure's reason: {page}");
    assert!(page.contains("pf-one") && page.contains("pf-two"), "{page}");
    let twin = get_json(&site.url, &format!("/api/v1/preflights/{id}"));
    assert_eq!(
        twin["result"]["nodes"].as_array().unwrap().len(),
        2,
        "{twin:#}"
    );
    assert_eq!(twin["result"]["nodes"][1]["checks"][0]["ok"], false);
    assert!(twin["spec"].as_str().unwrap().contains("PLUMB_HOME"));
    let listed = get_json(&site.url, "/api/v1/preflights");
    assert!(
        listed.as_array().unwrap().len() >= 2,
        "every fleet preflight so far: {listed:#}"
    );
    assert_eq!(listed[0]["id"], id, "the newest first");
    assert_eq!(listed[0]["failed_checks"], 1);
    let list_page = get(&site.url, "/preflight").expect("the list");
    assert!(
        list_page.contains(&format!("/preflight/{id}")),
        "{list_page}"
    );
    let bad = http(&site.url, "GET", "/api/v1/preflights/not-an-id", &[], b"");
    assert_eq!(bad.status, 400, "a bad id is refused: {}", bad.text());
    assert!(bad.text().contains("not-an-id"), "{}", bad.text());

    // By label, and by name.
    let out = ask("label=role=a", true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(v["nodes"][0]["node"], "pf-one");
    let out = ask("pf-two", true);
    assert_eq!(out.status.code(), Some(1));
    let out = ask("nosuch", false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
    let out = ask("label=role", false);
    assert_eq!(out.status.code(), Some(2));
    drop(agents);
}
