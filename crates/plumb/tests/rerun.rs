//! `plumb rerun RUN --on-node`: a run recorded through a real collector is
//! started again by its node's real `plumb agent`, in the same directory,
//! as the same user, linked to the original; and each way it can be
//! refused says why. Needs root (the agent switches users), as the other
//! system tests do.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

const USER: &str = "plumb-rerun";

/// The test's non-root user.
fn test_user() -> (u32, u32) {
    system_user(USER)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `plumb ARGS` as a client of `url` with `token`, from `home`.
fn client(home: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    plumb_in(home)
        .args(args)
        .env("PLUMB_COLLECTOR", url)
        .env("PLUMB_TOKEN", token)
        .output()
        .unwrap()
}

/// Records `sh -c SCRIPT` in `dir` through the collector (as `as_user`
/// when given, through setpriv) and returns the run's id.
fn record(
    home: &Path,
    url: &str,
    token: &str,
    viewer: &str,
    dir: &Path,
    script: &str,
    as_user: Option<(u32, u32)>,
) -> String {
    let mut cmd = match as_user {
        None => plumb(),
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(PLUMB)
                .stdin(std::process::Stdio::null());
            c
        }
    };
    // The user reads its token from its own config file, as a user would.
    let config = home.join("plumb.toml");
    std::fs::write(&config, format!("token = \"{token}\"\n")).unwrap();
    // Named after its directory, so each recording is found by name.
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let out = cmd
        .args(["run", "--name", &name, "--", "sh", "-c", script])
        .env("PLUMB_HOME", home)
        .env("PLUMB_CONFIG", &config)
        .env("PLUMB_COLLECTOR", url)
        .env_remove("PLUMB_TOKEN")
        .env("GREETING", "hello")
        .current_dir(dir)
        .output()
        .unwrap();
    let out = ok(out, "plumb run");
    let err = text(&out.stderr);
    let said = text(&out.stdout);
    assert!(said.starts_with("hello from"), "{said}\n{err}");
    // The run's id, from the collector's newest run of that name.
    let url_ = url.to_string();
    wait_for("the run at the collector", Duration::from_secs(30), || {
        let out = client(home, &url_, viewer, &["ls", "--name", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let runs = v.as_array()?;
        runs.iter()
            .find(|r| r["state"] != "running")
            .map(|r| r["id"].as_str().unwrap().to_string())
    })
}

/// A run's output, stdout then stderr (each stream in order; across
/// streams the order is the scheduler's).
fn logs(home: &Path, url: &str, token: &str, id: &str) -> String {
    let stream = |s: &str| {
        text(
            &ok(
                client(home, url, token, &["logs", id, "--stream", s]),
                "plumb logs",
            )
            .stdout,
        )
    };
    format!("{}--\n{}", stream("stdout"), stream("stderr"))
}

#[test]
fn rerun_on_node_runs_it_again_there_linked_and_refusals_say_why() {
    let serve = Serve::builder().tokens().start();
    let url = serve.api.clone();
    let (admin, agent_token, viewer) = (
        serve.admin.clone().unwrap(),
        serve.agent.clone().unwrap(),
        serve.viewer.clone().unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let host = plumb_record::host::hostname();
    // The run's node: an agent named like this host, allowing reruns.
    let node_home = tmp.path().join("node");
    std::fs::create_dir_all(&node_home).unwrap();
    let _agent = Proc(
        plumb_in(&node_home)
            .args(["agent", "--name", &host, "--interval", "300ms"])
            .args(["--collector", &url, "--allow-reruns"])
            .env("PLUMB_TOKEN", &agent_token)
            .spawn()
            .unwrap(),
    );
    // A node whose agent does not allow reruns.
    let locked_home = tmp.path().join("locked");
    std::fs::create_dir_all(&locked_home).unwrap();
    let mut locked = Proc(
        plumb_in(&locked_home)
            .args(["agent", "--name", "locked", "--interval", "300ms"])
            .args(["--collector", &url])
            .env("PLUMB_TOKEN", &agent_token)
            .spawn()
            .unwrap(),
    );
    let home = tmp.path().join("user");
    std::fs::create_dir_all(&home).unwrap();
    wait_for("both agents", Duration::from_secs(30), || {
        let out = client(&home, &url, &viewer, &["nodes", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v.as_array()?.len() == 2).then_some(())
    });
    wait_for("the node's fingerprint", Duration::from_secs(30), || {
        let out = client(&home, &url, &viewer, &["env", "--node", &host]);
        out.status.success().then_some(())
    });

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = "echo \"$GREETING from $(pwd)\"; echo \"as $(id -un)\"; echo err >&2";
    let first = record(&home, &url, &agent_token, &viewer, &work, script, None);

    // Rerun on its node: the software difference first, then the new run.
    let rerun = |args: &[&str], token: &str| {
        let mut a = vec!["rerun"];
        a.extend_from_slice(args);
        client(&home, &url, token, &a)
    };
    // The agents poll for requests; the first request may come before.
    let out = wait_for(
        "the agent to take the rerun",
        Duration::from_secs(30),
        || {
            let out = rerun(&[&first, "--on-node", "--timeout", "60s"], &admin);
            (!text(&out.stderr).contains("did not take the rerun")).then_some(out)
        },
    );
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{:?}\n{so}\n{se}", out.status);
    assert!(se.contains(&format!("node {host}'s software")), "{se}");
    assert!(
        se.contains(&format!("on node {host}, in {}", work.display())),
        "{se}"
    );
    assert!(
        so.contains(&format!("(rerun of {first}) on node {host}: succeeded"))
            || so.contains(&format!("(rerun of {first}) on node {host}:")),
        "{so}"
    );
    assert!(so.contains(&format!("{url}/runs/")), "{so}");
    let second = so
        .split_whitespace()
        .nth(1)
        .expect("the new run's id")
        .to_string();
    assert_ne!(second, first);
    // The same output, in the same directory, as the same user; linked.
    let (a, b) = (
        logs(&home, &url, &viewer, &first),
        logs(&home, &url, &viewer, &second),
    );
    assert!(a.contains(&format!("hello from {}", work.display())), "{a}");
    assert!(a.contains("as root"), "{a}");
    assert_eq!(a, b, "the rerun's output equals the original's");
    let shown: serde_json::Value = serde_json::from_slice(
        &ok(
            client(&home, &url, &viewer, &["show", &second, "--json"]),
            "plumb show",
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(
        shown["run"]["tags"]["rerun_of"],
        first.as_str(),
        "{shown:#}"
    );
    assert_eq!(shown["run"]["cwd"], work.to_str().unwrap());
    assert_eq!(shown["run"]["exit"]["code"], 0);
    // The run page links both ways.
    let page = |id: &str| {
        let a = http(
            &url,
            "GET",
            &format!("/runs/{id}"),
            &[("authorization", &format!("Bearer {viewer}"))],
            b"",
        );
        assert_eq!(a.status, 200, "{}", a.text());
        a.text()
    };
    let p = page(&second);
    assert!(
        p.contains(&format!(
            "<dd id=\"rerun-of\">rerun of <a class=\"mono\" href=\"/runs/{first}\">"
        )),
        "the rerun's page names the original"
    );
    let p = page(&first);
    let reruns = &p[p
        .find("<dd id=\"reruns\">")
        .expect("the original's page lists its reruns")..];
    assert!(
        reruns.contains(&format!("href=\"/runs/{second}\"")),
        "the original's page lists the rerun"
    );

    // A viewer may not run programs on nodes.
    let out = rerun(&[&first, "--on-node"], &viewer);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));
    // A run that does not exist.
    let out = rerun(&["ffffffff", "--on-node"], &admin);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    // A node nobody knows.
    let out = rerun(&[&first, "--on-node", "--node", "ghost"], &admin);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("no node `ghost` is known"),
        "{}",
        text(&out.stderr)
    );
    // An agent that does not allow reruns.
    let out = rerun(
        &[&first, "--on-node", "--node", "locked", "--timeout", "10s"],
        &admin,
    );
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("node locked refused")
            && text(&out.stderr).contains("--allow-reruns"),
        "{}",
        text(&out.stderr)
    );
    // Its agent gone: named within the timeout.
    let _ = locked.0.kill();
    let _ = locked.0.wait();
    let out = rerun(
        &[&first, "--on-node", "--node", "locked", "--timeout", "2s"],
        &admin,
    );
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("node locked did not take the rerun: no answer within 2"),
        "{}",
        text(&out.stderr)
    );
    // The directory is gone.
    let gone = tmp.path().join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    let third = record(&home, &url, &agent_token, &viewer, &gone, script, None);
    std::fs::remove_dir(&gone).unwrap();
    let out = rerun(&[&third, "--on-node", "--timeout", "10s"], &admin);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains(&format!(
            "{}, which does not exist on node {host} now",
            gone.display()
        )),
        "{}",
        text(&out.stderr)
    );
    // No collector configured, and a collector that is down.
    let out = plumb_in(&home)
        .args(["rerun", &first, "--on-node"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("--on-node asks the run's node through a collector"),
        "{}",
        text(&out.stderr)
    );
    let down = format!("http://127.0.0.1:{}", free_port());
    let out = client(&home, &down, &admin, &["rerun", &first, "--on-node"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains(&down), "{}", text(&out.stderr));
    // A collector without tokens never hands out reruns: anyone who can
    // reach it would be "admin".
    let open = Serve::builder().start();
    let a = http(
        &open.api,
        "POST",
        "/api/v1/rerun",
        &[("Content-Type", "application/json")],
        br#"{"run": "last", "wait_ms": 1000}"#,
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("reruns need tokens"), "{}", a.text());
}

#[test]
fn rerun_on_node_switches_to_the_runs_user() {
    let (uid, gid) = test_user();
    let serve = Serve::builder().tokens().start();
    let url = serve.api.clone();
    let (admin, agent_token, viewer) = (
        serve.admin.clone().unwrap(),
        serve.agent.clone().unwrap(),
        serve.viewer.clone().unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let host = plumb_record::host::hostname();
    let node_home = tmp.path().join("node");
    std::fs::create_dir_all(&node_home).unwrap();
    let _agent = Proc(
        plumb_in(&node_home)
            .args(["agent", "--name", &host, "--interval", "300ms"])
            .args(["--collector", &url, "--allow-reruns"])
            .env("PLUMB_TOKEN", &agent_token)
            .spawn()
            .unwrap(),
    );
    // The user's own plumb home and working directory.
    let home = tmp.path().join("user");
    let work = tmp.path().join("work");
    for d in [&home, &work] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
    }
    let script = "echo \"$GREETING from $(pwd)\"; echo \"as $(id -un)\"";
    let first = record(
        &home,
        &url,
        &agent_token,
        &viewer,
        &work,
        script,
        Some((uid, gid)),
    );
    std::os::unix::fs::chown(home.join("plumb.toml"), Some(uid), Some(gid)).unwrap();
    let out = wait_for(
        "the agent to take the rerun",
        Duration::from_secs(30),
        || {
            let out = client(
                &node_home,
                &url,
                &admin,
                &["rerun", &first, "--on-node", "--timeout", "60s"],
            );
            (!text(&out.stderr).contains("did not take the rerun")).then_some(out)
        },
    );
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{:?}\n{so}\n{se}", out.status);
    assert!(se.contains(&format!("as {USER}")), "{se}");
    let second = so.split_whitespace().nth(1).unwrap().to_string();
    let (a, b) = (
        logs(&node_home, &url, &viewer, &first),
        logs(&node_home, &url, &viewer, &second),
    );
    assert!(a.contains(&format!("as {USER}")), "{a}");
    assert_eq!(a, b);
    let shown: serde_json::Value = serde_json::from_slice(
        &ok(
            client(&node_home, &url, &viewer, &["show", &second, "--json"]),
            "plumb show",
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(shown["run"]["user"]["uid"], uid);
    assert_eq!(shown["run"]["user"]["gid"], gid);
}
