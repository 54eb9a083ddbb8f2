//! `plumb chaos run` with targets on other nodes: a real collector with
//! tokens, real agents (two node names on 127.0.0.1, each with its own
//! plumb home), real `sleep` processes with a unique argv marker. A kill,
//! a pause and an eviction are carried out by the named node's agent (the
//! pause's SIGCONT and the eviction's SIGKILL too; a run stopped early
//! has it end the pause at once), the report and the collector's events
//! name the node; an
//! agent without --allow-chaos, an unknown node, a viewer token and a
//! collector without tokens are refused, saying why, before anything is
//! done; an agent SIGKILLed mid-pause continues the process when it is
//! started again.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::*;

/// A `sleep` whose command line starts with a marker no other process
/// has (`exec -a`), killed and reaped on drop.
struct Marked {
    child: Child,
    marker: String,
}

impl Marked {
    fn start(tag: &str) -> Marked {
        Marked::start_with(tag, "")
    }

    /// Started after `prelude` (shell), e.g. `trap '' TERM;` to ignore
    /// SIGTERM across the exec.
    fn start_with(tag: &str, prelude: &str) -> Marked {
        let marker = format!("plumb-fleet-{tag}-{}", std::process::id());
        let child = Command::new("bash")
            .args(["-c", &format!("{prelude} exec -a {marker} sleep 300")])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let m = Marked { child, marker };
        let mark = m.marker.clone();
        wait_for("the marked sleep", Duration::from_secs(10), || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline.starts_with(mark.as_bytes()).then_some(())
        });
        m
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its state letter (`S`, `T`, `Z`), `None` once reaped.
    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    /// The pattern target that stands for it alone.
    fn pattern(&self) -> String {
        format!("^{} ", self.marker)
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector with tokens.
struct Fleet {
    serve: Serve,
    admin: String,
    agent_token: String,
    viewer: String,
    tmp: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let serve = Serve::builder().tokens().start();
        Fleet {
            admin: serve.admin.clone().unwrap(),
            agent_token: serve.agent.clone().unwrap(),
            viewer: serve.viewer.clone().unwrap(),
            serve,
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> &str {
        &self.serve.api
    }

    fn home(&self, name: &str) -> PathBuf {
        let home = self.tmp.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// `plumb agent --name NAME EXTRA...` from its own home `home`.
    fn agent(&self, name: &str, home: &Path, extra: &[&str]) -> Proc {
        Proc(
            plumb_in(home)
                .args(["agent", "--name", name, "--interval", "300ms"])
                .args([
                    "--collector",
                    self.url(),
                    "--no-health",
                    "--clock-every",
                    "off",
                ])
                .args(["--bench-every", "off"])
                .args(extra)
                .env("PLUMB_TOKEN", &self.agent_token)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Waits until the collector knows `names` and each one's agent is
    /// polling for requests (an empty stack request comes back from it).
    fn wait_for_nodes(&self, names: &[&str]) {
        let user = self.home("user");
        wait_for("the agents' nodes", Duration::from_secs(30), || {
            let out = plumb_in(&user)
                .args(["nodes", "--json"])
                .env("PLUMB_COLLECTOR", self.url())
                .env("PLUMB_TOKEN", &self.viewer)
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let known: Vec<&str> = v
                .as_array()?
                .iter()
                .filter_map(|n| n["node"].as_str())
                .collect();
            names.iter().all(|n| known.contains(n)).then_some(())
        });
    }

    /// `plumb chaos run --json SCENARIO` as a client of the collector with
    /// `token`.
    fn chaos(&self, scenario: &Path, token: &str) -> Command {
        let mut c = plumb_in(&self.home("user"));
        c.args(["chaos", "run", "--json"])
            .arg(scenario)
            .env("PLUMB_COLLECTOR", self.url())
            .env("PLUMB_TOKEN", token);
        c
    }

    fn scenario(&self, name: &str, body: &str) -> PathBuf {
        let path = self.home("scenarios").join(format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    }
}

/// A scenario with one fault `fault` (its TOML lines) on target `t`, the
/// processes matching `pattern` on `node`.
fn scenario(duration: &str, pattern: &str, node: &str, fault: &str) -> String {
    format!(
        r#"title = "fleet"
duration = "{duration}"
settle = "100ms"
seed = 3

[[target]]
name = "t"
pattern = "{pattern}"
node = "{node}"

[[fault]]
target = "t"
{fault}
"#
    )
}

/// A spawned command's output and status, once it ends (its pipes read
/// to their end, which it closes when it exits).
fn output_of(p: &mut Proc) -> Output {
    use std::io::Read as _;
    let mut err = p.0.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let mut stdout = Vec::new();
    let _ = p.0.stdout.take().unwrap().read_to_end(&mut stdout);
    let stderr = stderr.join().unwrap();
    let status = p.0.wait().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn faults_on_other_nodes_are_carried_out_by_their_agents_and_refusals_say_why() {
    let f = Fleet::start();
    let (home_a, home_b) = (f.home("node-a"), f.home("node-b"));
    let _a = f.agent("chaos-a", &home_a, &["--allow-chaos"]);
    let _b = f.agent("chaos-b", &home_b, &[]);
    f.wait_for_nodes(&["chaos-a", "chaos-b"]);

    // A kill on node A's target: the marked process dies by SIGKILL, and
    // the report names the node and the pid.
    let mut victim = Marked::start("kill");
    let path = f.scenario(
        "kill",
        &scenario(
            "1s",
            &victim.pattern(),
            "chaos-a",
            "kind = \"kill\"\nat = \"100ms\"",
        ),
    );
    let out = f.chaos(&path, &f.admin).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    let r = report(&out);
    let fault = &r["faults"][0];
    assert_eq!(fault["node"], "chaos-a", "{fault:#}");
    assert_eq!(
        fault["pids"],
        serde_json::json!([victim.pid()]),
        "{fault:#}"
    );
    assert!(
        fault["action"].as_str().unwrap().contains(&format!(
            "SIGKILL pid {} ({}",
            victim.pid(),
            victim.marker
        )),
        "{fault:#}"
    );
    assert!(
        se.contains(&format!(
            "injected kill on node chaos-a (pid {})",
            victim.pid()
        )),
        "{se}"
    );
    let status = wait_for("the victim's end", Duration::from_secs(10), || {
        victim.child.try_wait().unwrap()
    });
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // The live event names the node.
    let user = f.home("user");
    wait_for("the injection's event", Duration::from_secs(15), || {
        let out = plumb_in(&user)
            .args(["search", "chaos_injected"])
            .env("PLUMB_COLLECTOR", f.url())
            .env("PLUMB_TOKEN", &f.viewer)
            .output()
            .unwrap();
        text(&out.stdout)
            .contains("chaos_injected kind=kill on=t node=chaos-a: SIGKILL pid")
            .then_some(())
    });

    // A pause: stopped (T), then continued by the agent after its duration.
    let paused = Marked::start("pause");
    let path = f.scenario(
        "pause",
        &scenario(
            "3s",
            &paused.pattern(),
            "chaos-a",
            "kind = \"pause\"\nat = \"100ms\"\nduration = \"1500ms\"",
        ),
    );
    let mut run = Proc(
        f.chaos(&path, &f.admin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("the pause", Duration::from_secs(20), || {
        (paused.state() == Some('T')).then_some(())
    });
    wait_for("the agent's SIGCONT", Duration::from_secs(20), || {
        matches!(paused.state(), Some(s) if s != 'T').then_some(())
    });
    let out = output_of(&mut run);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    let r = report(&out);
    let fault = &r["faults"][0];
    assert_eq!(fault["node"], "chaos-a", "{fault:#}");
    assert_eq!(
        fault["pids"],
        serde_json::json!([paused.pid()]),
        "{fault:#}"
    );
    assert!(
        fault["removal"]
            .as_str()
            .unwrap()
            .starts_with("by node chaos-a's agent: SIGCONT after"),
        "{fault:#}"
    );
    assert_ne!(paused.state(), Some('T'));

    // A run stopped (SIGINT) during a long pause has the agent end it at
    // once, and exits 130.
    let long = Marked::start("stopped");
    let path = f.scenario(
        "stopped",
        &scenario(
            "2s",
            &long.pattern(),
            "chaos-a",
            "kind = \"pause\"\nat = \"100ms\"\nduration = \"5m\"",
        ),
    );
    let mut run = Proc(
        f.chaos(&path, &f.admin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("the long pause", Duration::from_secs(20), || {
        (long.state() == Some('T')).then_some(())
    });
    signal(run.0.id(), libc::SIGINT);
    let out = output_of(&mut run);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{so}\n{se}");
    let cleanup = report(&out)["cleanup"].to_string();
    assert!(
        cleanup.contains("pause: ended early by node chaos-a's agent: SIGCONT 1 process(es)"),
        "{cleanup}"
    );
    wait_for("the early SIGCONT", Duration::from_secs(5), || {
        matches!(long.state(), Some(s) if s != 'T').then_some(())
    });

    // An eviction of a process that ignores the warning: the agent
    // SIGKILLs it after the grace, on its own.
    let mut stubborn = Marked::start_with("evict", "trap '' TERM;");
    let path = f.scenario(
        "evict",
        &scenario(
            "1s",
            &stubborn.pattern(),
            "chaos-a",
            "kind = \"evict\"\nat = \"100ms\"\ngrace = \"500ms\"",
        ),
    );
    let out = f.chaos(&path, &f.admin).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    let fault = &report(&out)["faults"][0];
    assert_eq!(
        fault["pids"],
        serde_json::json!([stubborn.pid()]),
        "{fault:#}"
    );
    assert!(
        fault["action"]
            .as_str()
            .unwrap()
            .starts_with(&format!("SIGTERM pid {}", stubborn.pid())),
        "{fault:#}"
    );
    let status = wait_for("the evicted process's end", Duration::from_secs(10), || {
        stubborn.child.try_wait().unwrap()
    });
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "SIGTERM was ignored: the agent's SIGKILL after the grace ended it"
    );

    // Node B's agent was not started with --allow-chaos: refused, named,
    // non-zero, and the process untouched.
    let spared = Marked::start("spared");
    let path = f.scenario(
        "refused",
        &scenario(
            "1s",
            &spared.pattern(),
            "chaos-b",
            "kind = \"kill\"\nat = \"100ms\"",
        ),
    );
    let out = f.chaos(&path, &f.admin).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    let fault = &report(&out)["faults"][0];
    let error = fault["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("node chaos-b refused the chaos fault")
            && error.contains("start its agent with --allow-chaos"),
        "{fault:#}"
    );
    assert_eq!(fault["node"], "chaos-b");
    assert!(fault["injected"].is_null(), "{fault:#}");
    assert_eq!(spared.state(), Some('S'), "the refused kill did nothing");

    // A viewer may not fault processes on nodes (it may list them).
    let out = f.chaos(&path, &f.viewer).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let fault = &report(&out)["faults"][0];
    assert!(
        fault["error"]
            .as_str()
            .unwrap_or_default()
            .contains("admin"),
        "{fault:#}"
    );
    assert_eq!(spared.state(), Some('S'));

    // A node nobody knows: refused before anything is injected, naming it.
    let path = f.scenario(
        "ghost",
        &scenario(
            "1s",
            &spared.pattern(),
            "ghost",
            "kind = \"pause\"\nat = \"100ms\"",
        ),
    );
    let out = f.chaos(&path, &f.admin).output().unwrap();
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(
        se.contains("target `t`: no node `ghost` is known to the collector")
            && se.contains("nothing was injected"),
        "{se}"
    );
    assert!(out.stdout.is_empty(), "no report: nothing ran");
    assert_eq!(spared.state(), Some('S'));

    // No collector configured: refused before anything, naming the node.
    let out = plumb_in(&f.home("user"))
        .args(["chaos", "run"])
        .arg(&path)
        .output()
        .unwrap();
    let se = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{se}");
    assert!(
        se.contains("target `t` is on node ghost") && se.contains("none is configured"),
        "{se}"
    );
}

#[test]
fn a_collector_without_tokens_refuses_chaos_on_nodes() {
    let open = Serve::builder().start();
    let body = serde_json::json!({
        "node": "chaos-a",
        "order": {
            "kind": "kill",
            "target": "t",
            "select": {"by": "pattern", "value": "^nothing "},
            "signal": "SIGKILL",
            "duration_ms": 0,
            "seed": 1
        },
        "wait_ms": 1000
    });
    let a = http(
        &open.api,
        "POST",
        "/api/v1/chaos/inject",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("chaos faults on nodes need tokens"),
        "{}",
        a.text()
    );
}

#[test]
fn an_agent_killed_mid_pause_continues_the_process_when_started_again() {
    let f = Fleet::start();
    let home_a = f.home("node-a");
    let mut agent = f.agent("chaos-a", &home_a, &["--allow-chaos"]);
    f.wait_for_nodes(&["chaos-a"]);
    let paused = Marked::start("restart");
    // A pause far longer than this test waits for.
    let path = f.scenario(
        "long",
        &scenario(
            "2s",
            &paused.pattern(),
            "chaos-a",
            "kind = \"pause\"\nat = \"100ms\"\nduration = \"5m\"",
        ),
    );
    let mut run = Proc(
        f.chaos(&path, &f.admin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the pause", Duration::from_secs(20), || {
        (paused.state() == Some('T')).then_some(())
    });
    // The journal entry is on disk before the stop: the agent's home.
    let journal = home_a.join("chaos").join("journal");
    let entries = || {
        std::fs::read_dir(&journal)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(entries(), 1, "the pause is journaled in the agent's home");
    // Both die without a word: plumb chaos run and the agent.
    let _ = run.0.kill();
    let _ = run.0.wait();
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    // Nobody continued it: it is still stopped.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        paused.state(),
        Some('T'),
        "still stopped with its agent dead"
    );
    // Started again, the agent replays its journal first.
    let _again = f.agent("chaos-a", &home_a, &["--allow-chaos"]);
    wait_for("the replay's SIGCONT", Duration::from_secs(20), || {
        matches!(paused.state(), Some(s) if s != 'T').then_some(())
    });
    wait_for("the journal emptied", Duration::from_secs(10), || {
        (entries() == 0).then_some(())
    });
}

/// `(utime + stime in ticks, VmHWM in KiB)` of a process.
fn cpu_and_peak(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    (ticks, hwm)
}

#[test]
fn cpu_and_memory_pressure_on_a_node_are_made_by_its_agent() {
    let f = Fleet::start();
    let home_a = f.home("node-a");
    let a = f.agent("chaos-a", &home_a, &["--allow-chaos"]);
    f.wait_for_nodes(&["chaos-a"]);
    let agent_pid = a.0.id();
    let (ticks0, hwm0) = cpu_and_peak(agent_pid);
    // plumb's own load, so it is the agent's own CPU time and memory that
    // grow, and can be read from its /proc entry.
    let path = f.scenario(
        "pressure",
        r#"title = "pressure on a node"
duration = "2s"
settle = "100ms"

[[fault]]
kind = "cpu"
node = "chaos-a"
with = "plumb"
workers = 1
at = "100ms"
duration = "1s"

[[fault]]
kind = "memory"
node = "chaos-a"
with = "plumb"
size = "96M"
at = "1200ms"
duration = "500ms"
"#,
    );
    let out = f.chaos(&path, &f.admin).output().unwrap();
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    let r = report(&out);
    for (i, (kind, after)) in [("cpu", "1.0s"), ("memory", "500ms")].iter().enumerate() {
        let fault = &r["faults"][i];
        assert_eq!(fault["kind"], *kind, "{fault:#}");
        assert_eq!(fault["node"], "chaos-a", "{fault:#}");
        assert!(fault["error"].is_null(), "{fault:#}");
        assert_eq!(
            fault["removal"],
            format!("by node chaos-a's agent: load removed after {after}"),
            "{fault:#}"
        );
    }
    assert!(
        r["faults"][0]["action"]
            .as_str()
            .unwrap()
            .contains("busy thread"),
        "{:#}",
        r["faults"][0]
    );
    assert!(se.contains("injected cpu on node chaos-a"), "{se}");
    // The agent's own CPU time grew by most of a second, and its peak
    // resident memory by the 96 MiB it held (once the memory fault's
    // removal is done: the agent frees it after 500 ms).
    let ticks_per_s = 100;
    wait_for("the agent's load", Duration::from_secs(10), || {
        let (ticks, hwm) = cpu_and_peak(agent_pid);
        (ticks - ticks0 >= ticks_per_s / 2 && hwm - hwm0 >= 90 * 1024).then_some(())
    });
    drop(a);
}
