//! Shipping that loses nothing, with real processes: `plumb run` with a
//! collector that is down, `plumb agent` shipping what was left behind, a
//! collector killed with SIGKILL while agents and recorders stream, and an
//! outbox bound that drops the oldest runs and says so.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

/// The run id a child printed as its first stderr line.
fn run_id_from(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| l.len() == 36 && l.matches('-').count() == 4)
        .unwrap_or_else(|| panic!("no run id in stderr: {}", String::from_utf8_lossy(stderr)))
        .to_string()
}

fn seq(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Runs `sh -c script` under `plumb run` with `collector` configured; returns
/// (run id, stdout).
fn run_shipped(home: &Path, collector: &str, script: &str) -> (String, Vec<u8>) {
    let out = plumb_in(home)
        .env("PLUMB_COLLECTOR", collector)
        .args(["run", "--", "sh", "-c"])
        .arg(format!("echo $PLUMB_RUN_ID >&2; {script}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "plumb run failed: {out:?}");
    (run_id_from(&out.stderr), out.stdout)
}

#[test]
fn collector_down_for_the_whole_job_then_up_the_next_run_ships_everything() {
    let site = Site::new();
    // Nothing listens: the job runs and exits as usual, its output intact.
    let (id, stdout) = run_shipped(&site.home, &site.url, "seq 1 20000");
    assert_eq!(stdout, seq(20000), "the job's own output is untouched");
    let outbox = site.home.join("outbox");
    assert_eq!(spool_files(&outbox).len(), 1, "the run waits in the outbox");
    // The collector comes up; the next run ships itself and the one before.
    let _serve = Serve::builder().data(&site.data).port(site.port).start();
    let (id2, _) = run_shipped(&site.home, &site.url, "echo second");
    wait_for(
        "both runs reach the collector",
        Duration::from_secs(30),
        || (stored_ended(&site.data, &id) && stored_ended(&site.data, &id2)).then_some(()),
    );
    assert_eq!(
        stored_stdout(&site.data, &id).unwrap(),
        seq(20000),
        "every line, once, in order"
    );
    assert_eq!(stored_stdout(&site.data, &id2).unwrap(), b"second\n");
    wait_for(
        "shipped files leave the outbox",
        Duration::from_secs(10),
        || (spool_files(&outbox).is_empty()).then_some(()),
    );
}

#[test]
fn collector_down_for_the_whole_job_then_up_the_agent_ships_everything() {
    let site = Site::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = run_shipped(&site.home, &site.url, &format!("seq 1 {}", 1000 * (i + 1)));
        ids.push(id);
    }
    assert_eq!(spool_files(&site.home.join("outbox")).len(), 3);
    let _serve = Serve::builder().data(&site.data).port(site.port).start();
    let _agent = Agent::start(&site.home, &site.url, "shipper-node", "500ms", &[]);
    wait_for(
        "the agent ships every run left behind",
        Duration::from_secs(30),
        || (ids.iter().all(|id| stored_ended(&site.data, id))).then_some(()),
    );
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            stored_stdout(&site.data, id).unwrap(),
            seq(1000 * (i as u32 + 1))
        );
    }
    wait_for("the outbox to empty", Duration::from_secs(10), || {
        (spool_files(&site.home.join("outbox")).is_empty()).then_some(())
    });
}

#[test]
fn a_full_outbox_drops_the_oldest_runs_and_the_collector_shows_the_count() {
    let site = Site::new();
    // Incompressible output: each run's spool file is about 40 KiB, and the
    // bound holds one of them.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = plumb_in(&site.home)
            .env("PLUMB_COLLECTOR", &site.url)
            .env("PLUMB_SPOOL_MAX", "50K")
            .args([
                "run",
                "--",
                "sh",
                "-c",
                "echo $PLUMB_RUN_ID >&2; head -c 30000 /dev/urandom | od -An -tx1 | head -c 40000",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        ids.push(run_id_from(&out.stderr));
    }
    let left = spool_files(&site.home.join("outbox"));
    assert!(left.len() < 3, "the bound dropped something: {left:?}");
    let _serve = Serve::builder().data(&site.data).port(site.port).start();
    let _agent = Proc(
        plumb_in(&site.home)
            .env("PLUMB_SPOOL_MAX", "50K")
            .args([
                "agent",
                "--name",
                "tiny-spool",
                "--interval",
                "300ms",
                "--collector",
                &site.url,
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The newest run survives and arrives; the oldest was dropped.
    wait_for(
        "the newest run at the collector",
        Duration::from_secs(30),
        || (stored_ended(&site.data, &ids[2])).then_some(()),
    );
    assert!(
        !stored_ended(&site.data, &ids[0]),
        "the oldest run was dropped, not shipped"
    );
    let dropped = wait_for(
        "the drop count at the collector",
        Duration::from_secs(15),
        || {
            let body = get(&site.url, "/api/v1/nodes")?;
            let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
            let dropped = nodes
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node"] == "tiny-spool")
                .map_or(0, |n| {
                    n["report"]["spool"]["dropped_runs"].as_u64().unwrap()
                });
            (dropped >= 1).then_some(dropped)
        },
    );
    let metrics = get(&site.url, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "plumb_node_spool_dropped_runs{{node=\"tiny-spool\"}} {dropped}"
        )),
        "{metrics}"
    );
}

#[test]
fn kill_9_of_the_collector_while_4_agents_and_4_recorders_stream_loses_nothing() {
    const PER_RUN: u32 = 50_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("collector");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut serve = Serve::builder().data(&data).port(port).start();
    let mut agents = Vec::new();
    let mut recorders = Vec::new();
    for n in 0..4 {
        let home = tmp.path().join(format!("node{n}"));
        std::fs::create_dir_all(&home).unwrap();
        agents.push(Agent::start(
            &home,
            &url,
            &format!("node-{n}"),
            "500ms",
            &[],
        ));
        // 50,000 numbered lines over about 3 seconds, so the collector dies
        // while they stream.
        let script = format!(
            "echo $PLUMB_RUN_ID >&2; awk 'BEGIN {{ for (i = 1; i <= {PER_RUN}; i++) {{ print i; if (i % 5000 == 0) {{ fflush(); system(\"sleep 0.3\") }} }} }}'"
        );
        recorders.push((
            home.clone(),
            plumb_in(&home)
                .env("PLUMB_COLLECTOR", &url)
                .args(["run", "--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
    }
    std::thread::sleep(Duration::from_millis(1500));
    serve.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    let _serve = Serve::builder().data(&data).port(port).start();
    let mut ids = Vec::new();
    for (home, child) in recorders {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            out.stdout,
            seq(PER_RUN),
            "the job's own output is untouched"
        );
        ids.push((home, run_id_from(&out.stderr)));
    }
    wait_for(
        "every run reaches the restarted collector",
        Duration::from_secs(90),
        || (ids.iter().all(|(_, id)| stored_ended(&data, id))).then_some(()),
    );
    for (home, id) in &ids {
        assert_eq!(
            stored_stdout(&data, id).unwrap(),
            seq(PER_RUN),
            "run {id}: every one of the {PER_RUN} lines exactly once, in order"
        );
        wait_for("the outbox to empty", Duration::from_secs(15), || {
            (spool_files(&home.join("outbox")).is_empty()).then_some(())
        });
    }
    let nodes: serde_json::Value =
        serde_json::from_str(&get(&url, "/api/v1/nodes").unwrap()).unwrap();
    assert_eq!(
        nodes.as_array().unwrap().len(),
        4,
        "every agent's heartbeats arrived"
    );
    drop(agents);
}

/// Issue 13, item 15: a collector that refuses the token (401) or its role
/// (403) is named as such by `plumb run`, once, with what to do; the run
/// keeps its exit status and stays spooled; `plumb agent` says it once,
/// not at every retry, and ships the runs once given the right token.
#[test]
fn a_refused_token_is_named_once_and_the_run_stays_spooled_until_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("node");
    let data = tmp.path().join("collector");
    std::fs::create_dir_all(&home).unwrap();
    let token = |role: &str| {
        let out = plumb_in(&home)
            .args(["token", "create", "--role", role, "--data"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let agent_token = token("agent");
    let viewer_token = token("viewer");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _serve = Serve::builder().data(&data).port(port).start();
    let outbox = home.join("outbox");

    let run_with = |tok: &str| {
        let out = plumb_in(&home)
            .env("PLUMB_COLLECTOR", &url)
            .env("PLUMB_TOKEN", tok)
            .args(["run", "--", "sh", "-c", "echo $PLUMB_RUN_ID >&2; exit 3"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "the program's exit status");
        let id = run_id_from(&out.stderr);
        (id, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (id1, err) = run_with("not-a-token");
    let said = format!("plumb: the collector at {url} refused the token (401");
    assert_eq!(err.matches(&said).count(), 1, "said once: {err}");
    assert!(err.contains("check PLUMB_TOKEN"), "{err}");
    assert!(
        err.contains(&format!("run {id1} stays spooled in {}", outbox.display())),
        "{err}"
    );
    assert!(!err.contains("did not take all"), "{err}");
    let (id2, err) = run_with(&viewer_token);
    assert!(
        err.contains("refused the token's role (403") && err.contains("--role agent"),
        "{err}"
    );
    assert_eq!(spool_files(&outbox).len(), 2, "both runs stay spooled");
    assert!(!stored_ended(&data, &id1) && !stored_ended(&data, &id2));

    // The agent with the wrong token: one warning, however many retries.
    let agent = |tok: &str, log: &Path| {
        Proc(
            plumb_in(&home)
                .env("PLUMB_TOKEN", tok)
                .args(["agent", "--name", "n1", "--interval", "200ms"])
                .args(["--collector", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let log = tmp.path().join("agent.log");
    let refused = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("the collector refused the token (401")
            .count()
    };
    let wrong = agent("not-a-token", &log);
    wait_for("the agent says why", Duration::from_secs(20), || {
        (refused() >= 1).then_some(())
    });
    // Time for more than a dozen refused heartbeats (one each 200 ms) and
    // several shipping retries (backing off from 200 ms).
    std::thread::sleep(Duration::from_secs(3));
    drop(wrong);
    assert_eq!(refused(), 1, "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(spool_files(&outbox).len(), 2);

    let _right = agent(&agent_token, &tmp.path().join("agent2.log"));
    wait_for(
        "the runs left spooled reach the collector once the token is right",
        Duration::from_secs(30),
        || (stored_ended(&data, &id1) && stored_ended(&data, &id2)).then_some(()),
    );
}

/// Issue 13, item 15, for a batch over the collector's limit (413): the
/// run keeps its exit status, its spool is set aside (retrying the same
/// batch cannot help), and `plumb run` says so once, naming the file.
#[test]
fn a_batch_refused_as_too_large_is_named_and_kept() {
    let site = Site::new();
    // 1 MiB for decompressing bodies: a batch of several MiB of output
    // can never fit, so it is refused with 413, not 429.
    let _serve = Serve::builder()
        .data(&site.data)
        .port(site.port)
        .args(["--ingest-memory-mib", "1"])
        .start();
    let out = plumb_in(&site.home)
        .env("PLUMB_COLLECTOR", &site.url)
        .args(["run", "--", "sh", "-c"])
        .arg("echo $PLUMB_RUN_ID >&2; seq 1 1000000; exit 4")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "the program's exit status");
    let id = run_id_from(&out.stderr);
    let err = String::from_utf8_lossy(&out.stderr);
    let aside = site.home.join("outbox").join(format!("{id}.spool.bad"));
    let said = format!(
        "plumb: the collector at {} refused a batch as too large (413",
        site.url
    );
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    assert!(
        err.contains(&format!("is kept in {}", aside.display())),
        "{err}"
    );
    assert!(aside.exists());
}
