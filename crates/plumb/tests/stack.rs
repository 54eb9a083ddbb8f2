//! `plumb stack` and the timeouts of `plumb run`, end to end: real Python
//! and C processes, the real py-spy and eu-stack (or gdb), a real store.
//!
//! These tests need py-spy (pip) and elfutils or gdb (apt); they fail
//! naming what to install when one is missing (`.ci/install-stack.sh`
//! installs them), never skip.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

/// A job of four processes: the parent starts three busy workers
/// (`busy_loop`), prints their pids, then deadlocks acquiring a lock it
/// already holds (`wait_for_lock`, line 11). With `ignore-term` every
/// process ignores SIGTERM, so only SIGKILL ends it.
const JOB: &str = r#"import signal, subprocess, sys, threading

def busy_loop():
    while True: pass

def wait_for_lock(lock):
    # The parent holds the lock already: this never returns.
    print("waiting", flush=True)
    lock.acquire()
    lock.acquire()

if __name__ == "__main__":
    if "ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "busy" in sys.argv:
        busy_loop()
    extra = ["ignore-term"] if "ignore-term" in sys.argv else []
    workers = [subprocess.Popen([sys.executable, __file__, "busy"] + extra) for _ in range(3)]
    print("workers", " ".join(str(w.pid) for w in workers), flush=True)
    wait_for_lock(threading.Lock())
"#;

/// The line of `JOB` that waits on the lock.
const LOCK_LINE: u64 = 10;

/// The real Python interpreter behind `python3` (not a version manager's
/// shim script, which would be one more process in the tree).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed: apt install python3");
    text(&out.stdout).trim().to_string()
}

/// Panics naming what to install when py-spy is missing.
fn need_py_spy() {
    let found = Command::new("py-spy").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "py-spy is not installed: pip install py-spy (or run .ci/install-stack.sh)"
    );
}

/// Panics naming what to install when neither eu-stack nor gdb is there.
fn need_native_tool() {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        ok("eu-stack") || ok("gdb"),
        "neither eu-stack nor gdb is installed: apt install elfutils (or run .ci/install-stack.sh)"
    );
}

fn write_job(dir: &Path) -> PathBuf {
    let path = dir.join("job.py");
    std::fs::write(&path, JOB).unwrap();
    path
}

/// A `plumb run` in the background, killed (with its process group) on drop.
struct Background {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Background { child, lines: rx }
    }

    /// The first stdout line starting with `prefix` (bounded wait).
    fn line(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // plumb passes SIGTERM on to every process of the run.
        signal(self.child.id(), libc::SIGTERM);
        let _ = self.child.wait();
    }
}

use std::os::unix::process::CommandExt;

fn pids(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Whether `pid` is still one of the job's processes.
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("job.py"))
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

fn function_names(frames: &serde_json::Value) -> Vec<String> {
    frames
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn stack_by_name_groups_the_busy_workers_and_singles_out_the_one_stuck_on_a_lock() {
    need_py_spy();
    let home = Home::new();
    let job = write_job(home.dir());
    let py = python();
    let bg = Background::start(home.cmd(&[
        "run",
        "--name",
        "stackjob",
        "--",
        &py,
        job.to_str().unwrap(),
    ]));
    let workers = pids(&bg.line("workers"));
    bg.line("waiting");
    // The run is in the store once its writer has flushed the start.
    let snap = wait_for(
        "the running run in the store",
        Duration::from_secs(30),
        || {
            let out = home.run(&["stack", "--name", "stackjob", "--json"]);
            if !out.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            // Wait until every worker is in its loop (not still starting).
            let three = v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["members"].as_array().unwrap().len() == 3);
            three.then_some(v)
        },
    );
    let groups = snap["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{snap:#}");
    let busy = &groups[0];
    assert_eq!(busy["members"].as_array().unwrap().len(), 3, "{snap:#}");
    assert_eq!(busy["odd"], false);
    assert_eq!(function_names(&busy["frames"])[0], "busy_loop");
    let mut member_pids: Vec<u64> = busy["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_u64().unwrap())
        .collect();
    member_pids.sort();
    let mut want: Vec<u64> = workers.iter().map(|&p| u64::from(p)).collect();
    want.sort();
    assert_eq!(member_pids, want);
    let stuck = &groups[1];
    assert_eq!(stuck["odd"], true, "{snap:#}");
    assert_eq!(stuck["members"].as_array().unwrap().len(), 1);
    assert_eq!(stuck["frames"][0]["function"], "wait_for_lock");
    assert_eq!(stuck["frames"][0]["line"], LOCK_LINE, "{snap:#}");

    // The text form: largest group first, the stuck one flagged with the
    // line that waits.
    let out = ok(home.run(&["stack", "--name", "stackjob"]), "plumb stack");
    let t = text(&out.stdout);
    let three = t.find("3 threads (python stack)").expect(&t);
    let odd = t.find("odd one out").expect(&t);
    assert!(three < odd, "{t}");
    assert!(
        t.contains(&format!("wait_for_lock ({}:{LOCK_LINE})", job.display())),
        "{t}"
    );
    drop(bg);
}

#[test]
fn stack_of_a_c_program_shows_the_function_it_is_blocked_in() {
    need_native_tool();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("stuck.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\n\
         __attribute__((noinline)) void stuck_here(void) { pause(); }\n\
         int main(void) { stuck_here(); return 0; }\n",
    )
    .unwrap();
    let bin = dir.path().join("stuck");
    let cc = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc is needed: apt install gcc");
    assert!(cc.status.success(), "{}", text(&cc.stderr));
    let mut child = Command::new(&bin).spawn().unwrap();
    let pid = child.id().to_string();
    let t = wait_for("pause() in the stack", Duration::from_secs(30), || {
        let out = ok(
            plumb().args(["stack", "--pid", &pid]).output().unwrap(),
            "plumb stack",
        );
        let t = text(&out.stdout);
        t.contains("pause").then_some(t)
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(t.contains("stuck_here"), "{t}");
    assert!(t.contains("1 thread (native stack)"), "{t}");
}

#[test]
fn a_missing_tool_is_reported_for_each_process_with_the_reason() {
    let empty = tempfile::tempdir().unwrap();
    let py = python();
    let mut child = Command::new(&py)
        .args(["-c", "import time\nwhile True: time.sleep(1)"])
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the interpreter to sleep", Duration::from_secs(30), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .trim_start()
            .starts_with('S')
            .then_some(())
    });
    let out = plumb()
        .args(["stack", "--pid", &pid.to_string()])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let t = text(&ok(out, "plumb stack without tools").stdout);
    assert!(
        t.contains("no python stacks (not-installed): py-spy is not installed"),
        "{t}"
    );
    assert!(t.contains("no native stacks (not-installed)"), "{t}");
    // The /proc facts are there all the same.
    assert!(t.contains(&format!(":{pid}  sleeping")), "{t}");
}

#[test]
fn ptrace_refused_is_reported_for_each_process_with_the_reason() {
    need_py_spy();
    need_native_tool();
    // Looking at root's processes as nobody: /proc hides their files and
    // ptrace is refused, whatever Yama says.
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs plumb stack as nobody (setpriv) on a process of root's: run it as root"
    );
    let py = python();
    let mut child = Command::new(&py)
        .args(["-c", "import time\nwhile True: time.sleep(1)"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // nobody may not be able to reach root's py-spy (under /root with
    // pyenv): a copy where it can, first on its PATH.
    let tools = tempfile::tempdir().unwrap();
    let real = Path::new(&py).with_file_name("py-spy");
    let real = if real.is_file() {
        real
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("py-spy"))
            .find(|p| p.is_file())
            .unwrap()
    };
    std::fs::copy(&real, tools.path().join("py-spy")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", tools.path().display());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", PLUMB])
        .args(["stack", "--pid", &pid.to_string()])
        .env("PATH", path)
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux) is needed");
    child.kill().unwrap();
    let _ = child.wait();
    let t = text(&ok(out, "plumb stack as nobody").stdout);
    assert!(
        t.contains("no python stacks (ptrace-denied): py-spy may not attach"),
        "{t}"
    );
    assert!(t.contains("no open files (permission-denied)"), "{t}");
}

#[test]
fn stack_of_a_run_that_is_not_running_is_refused_naming_it() {
    let home = Home::new();
    ok(
        home.run(&["run", "--name", "done-already", "--", "true"]),
        "plumb run",
    );
    let id = home.json(&["ls", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = home.run(&["stack", "--run", &id]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains(&id) && e.contains("succeeded, not running"),
        "{e}"
    );
    let out = home.run(&["stack", "--name", "nothing-by-that-name"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // A run whose recorder died with its record still saying running, and
    // whose pid the kernel has given to another program since (here pid 1,
    // started at boot, long before the run): refused, not looked at.
    {
        use plumb_store::prelude::*;
        let store = plumb_store::Store::open(&home.store()).unwrap();
        let mut run = store.get_run(store.resolve(&id).unwrap()).unwrap();
        run.state = plumb_model::RunState::Running;
        run.ended = None;
        run.pid = 1;
        run.started = plumb_model::Timestamp::now();
        store.put_run(&run).unwrap();
    }
    let out = home.run(&["stack", "--run", &id]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("that pid is another program's now"), "{e}");
    let out = home.run(&["stack", "--name", "done-already"]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("processes are gone"), "{e}");
}

/// Runs the job under `plumb run ARGS`, waits for it, and returns the
/// recorded run, the worker pids and the parent's pid.
fn timed_out_run(home: &Home, args: &[&str], job_args: &[&str]) -> (serde_json::Value, Vec<u32>) {
    let job = write_job(home.dir());
    let py = python();
    let mut all: Vec<&str> = vec!["run"];
    all.extend_from_slice(args);
    all.extend(["--", &py, job.to_str().unwrap()]);
    all.extend_from_slice(job_args);
    let mut bg = Background::start(home.cmd(&all));
    let workers = pids(&bg.line("workers"));
    let status = wait_for("plumb run to end", Duration::from_secs(60), || {
        bg.child.try_wait().unwrap()
    });
    assert!(!status.success());
    let id = home.json(&["ls", "--json", "--limit", "1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = home.json(&["show", "--json", &id])["run"].clone();
    (run, workers)
}

fn assert_timed_out_with_evidence(run: &serde_json::Value, workers: &[u32], kind: &str) {
    assert_eq!(run["state"], "timed-out", "{run:#}");
    let t = &run["timeout"];
    assert_eq!(t["kind"], kind, "{t:#}");
    let procs = t["snapshot"]["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 4, "the program and its three workers: {t:#}");
    let parent = procs
        .iter()
        .find(|p| p["pid"] == run["pid"])
        .expect("the program is in the snapshot");
    assert_eq!(
        function_names(&parent["stacks"][0]["frames"])[0],
        "wait_for_lock",
        "{parent:#}"
    );
    // Nothing of the run is left.
    let mut everyone: Vec<u32> = workers.to_vec();
    everyone.push(run["pid"].as_u64().unwrap() as u32);
    for pid in everyone {
        assert!(!alive(pid), "process {pid} of the run is still alive");
    }
}

#[test]
fn timeout_takes_the_stacks_then_stops_the_whole_tree() {
    need_py_spy();
    let home = Home::new();
    let (run, workers) = timed_out_run(&home, &["--timeout", "2s"], &[]);
    assert_timed_out_with_evidence(&run, &workers, "total");
    assert_eq!(run["timeout"]["signal"], "SIGTERM");
    assert_eq!(run["timeout"]["signalled"], 4, "{run:#}");
    assert!(run.get("eviction").is_none(), "a timeout is no eviction");
    // plumb show says which timeout fired and shows the grouped stacks.
    let id = run["id"].as_str().unwrap();
    let t = text(&ok(home.run(&["show", id]), "plumb show").stdout);
    assert!(t.contains("state     timed-out"), "{t}");
    assert!(t.contains("timed out --timeout 2.0s fired"), "{t}");
    assert!(t.contains("stacks when the timeout fired"), "{t}");
    assert!(t.contains("3 threads (python stack)"), "{t}");
    // The dashboard's run page says the same, with the stuck function.
    let serve = Serve::builder().data(&home.store()).start();
    let page = serve.get(&format!("/runs/{id}")).expect("the run page");
    assert!(page.contains("Timed out"), "{page}");
    assert!(page.contains("--timeout 2.0s fired"), "{page}");
    assert!(page.contains("wait_for_lock"), "{page}");
    // And it is a failure for the views that list failures.
    let failed = home.json(&["ls", "--json", "--failed"]);
    assert_eq!(failed.as_array().unwrap().len(), 1);
}

#[test]
fn silence_timeout_kills_a_tree_that_ignores_the_warning() {
    need_py_spy();
    let home = Home::new();
    let (run, workers) = timed_out_run(
        &home,
        &["--silence-timeout", "2s", "--grace", "1s"],
        &["ignore-term"],
    );
    assert_timed_out_with_evidence(&run, &workers, "silence");
    assert_eq!(run["timeout"]["grace_expired"], true, "{run:#}");
    assert!(run["timeout"]["killed"].as_u64().unwrap() >= 4, "{run:#}");
    assert_eq!(run["exit"]["signal"], libc::SIGKILL);
}

#[test]
fn timeout_auto_is_a_multiple_of_the_names_history() {
    need_py_spy();
    let home = Home::new();
    // Without history: the fallback, said on stderr.
    let out = ok(
        home.run(&[
            "run",
            "--name",
            "auto-job",
            "--timeout",
            "auto",
            "--",
            "true",
        ]),
        "plumb run --timeout auto",
    );
    let e = text(&out.stderr);
    assert!(
        e.contains("--timeout auto: only 0 succeeded runs of `auto-job`") && e.contains("1h"),
        "{e}"
    );
    for _ in 0..4 {
        ok(
            home.run(&["run", "--name", "auto-job", "--", "true"]),
            "history",
        );
    }
    let (run, workers) = timed_out_run(
        &home,
        &[
            "--name",
            "auto-job",
            "--timeout",
            "auto",
            "--timeout-factor",
            "2",
            "--timeout-floor",
            "2s",
        ],
        &[],
    );
    assert_timed_out_with_evidence(&run, &workers, "total");
    let basis = run["timeout"]["basis"].as_str().unwrap();
    assert!(
        basis.starts_with("auto: 2 x p95") && basis.contains("of the last 5 succeeded runs"),
        "{basis}"
    );
    // The floor, 2 s, is above twice the history's p95.
    assert_eq!(run["timeout"]["limit_ns"], 2_000_000_000u64);
}

#[test]
fn snapshot_on_silence_attaches_the_stacks_and_lets_the_run_finish() {
    need_py_spy();
    let home = Home::new();
    let script = "import time\n\
                  def quiet_for_a_while():\n    time.sleep(4)\n\
                  print('start', flush=True)\n\
                  quiet_for_a_while()\n\
                  print('done', flush=True)\n";
    let py = python();
    let out = ok(
        home.run(&[
            "run",
            "--name",
            "quiet",
            "--snapshot-on-silence",
            "1s",
            "--",
            &py,
            "-c",
            script,
        ]),
        "plumb run --snapshot-on-silence",
    );
    assert!(text(&out.stdout).contains("done"));
    let id = home.json(&["ls", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = home.json(&["show", "--json", &id])["run"].clone();
    assert_eq!(run["state"], "succeeded", "nothing was stopped: {run:#}");
    let snaps = run["snapshots"].as_array().expect("a snapshot is attached");
    assert_eq!(snaps.len(), 1, "one per silence: {run:#}");
    assert!(
        snaps[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no output for")
    );
    let frames = &snaps[0]["processes"][0]["stacks"][0]["frames"];
    assert_eq!(function_names(frames)[0], "quiet_for_a_while", "{frames:#}");
    let t = text(&ok(home.run(&["show", &id]), "plumb show").stdout);
    assert!(t.contains("stacks taken by plumb (no output for"), "{t}");
}

#[test]
fn bad_timeout_values_are_refused_before_anything_runs() {
    let home = Home::new();
    let marker = home.dir().join("ran");
    for (args, flag) in [
        (&["--timeout", "0"][..], "--timeout"),
        (&["--timeout", "0s"][..], "--timeout"),
        (&["--timeout", "-5s"][..], "--timeout"),
        (&["--timeout", "soon"][..], "--timeout"),
        (&["--silence-timeout", "0"][..], "--silence-timeout"),
        (&["--silence-timeout", "x"][..], "--silence-timeout"),
        (
            &["--timeout", "auto", "--timeout-factor", "-1"][..],
            "--timeout-factor",
        ),
        (
            &["--timeout", "auto", "--timeout-factor", "nan"][..],
            "--timeout-factor",
        ),
        (
            &["--timeout", "5m", "--timeout-factor", "2"][..],
            "--timeout-factor",
        ),
        (&["--timeout-floor", "1m"][..], "--timeout-floor"),
        (&["--snapshot-on-silence", "0"][..], "--snapshot-on-silence"),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend(["--", "touch", marker.to_str().unwrap()]);
        let out = home.run(&all);
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(flag), "{args:?} should name {flag}: {e}");
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
}

/// One run of a job spread over two nodes: the parent starts one child
/// (which prints `child PID`), then both call `busy_loop` from the same
/// line, so their stacks are identical; with `stuck` the parent instead
/// deadlocks acquiring a lock it already holds (`FLEET_LOCK_LINE`).
const FLEET_JOB: &str = r#"import subprocess, sys, threading

def busy_loop():
    while True: pass

def wait_for_lock(lock):
    lock.acquire()
    lock.acquire()

if __name__ == "__main__":
    if "child" not in sys.argv:
        child = subprocess.Popen([sys.executable, __file__, "child"])
        print("child", child.pid, flush=True)
    if "stuck" in sys.argv:
        print("waiting", flush=True)
        wait_for_lock(threading.Lock())
    busy_loop()
"#;

/// The line of `FLEET_JOB` that waits on the lock.
const FLEET_LOCK_LINE: u64 = 8;

/// `FLEET_JOB` written to `dir`.
fn fleet_job(dir: &Path) -> PathBuf {
    let path = dir.join("fleet_job.py");
    std::fs::write(&path, FLEET_JOB).unwrap();
    path
}

/// A node of the fleet tests: its own plumb home, an agent named `name`
/// reporting to `serve` from that home, and the job's script (one path
/// for every node, as a job deployed the same way everywhere has, since
/// the file is part of what makes two stacks identical).
struct Node {
    home: Home,
    agent: Option<Agent>,
    job: PathBuf,
}

impl Node {
    fn start(serve: &Serve, name: &str, job: &Path) -> Node {
        let home = Home::new();
        let agent = Agent::start(
            &home.store(),
            &serve.api,
            name,
            "500ms",
            &["--clock-every", "off"],
        );
        Node {
            home,
            agent: Some(agent),
            job: job.to_path_buf(),
        }
    }

    /// `plumb run --name NAME -- python fleet_job.py ARGS`, recording into
    /// this node's outbox and shipping to `serve`.
    fn run_job(&self, serve: &Serve, name: &str, args: &[&str]) -> Background {
        let py = python();
        let mut cmd =
            self.home
                .cmd(&["run", "--name", name, "--", &py, self.job.to_str().unwrap()]);
        cmd.args(args).env("PLUMB_COLLECTOR", &serve.api);
        Background::start(cmd)
    }

    /// `plumb ARGS` from this node's home, asking `serve`.
    fn plumb(&self, serve: &Serve, args: &[&str]) -> std::process::Output {
        self.home
            .cmd(args)
            .env("PLUMB_COLLECTOR", &serve.api)
            .output()
            .unwrap()
    }
}

fn members(group: &serde_json::Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["host"].as_str().unwrap().to_string(),
                m["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn stack_through_the_collector_groups_a_job_over_two_nodes_and_names_a_node_that_does_not_answer() {
    need_py_spy();
    let serve = Serve::builder().start();
    let shared = tempfile::tempdir().unwrap();
    let job = fleet_job(shared.path());
    let mut a = Node::start(&serve, "fleet-a", &job);
    let b = Node::start(&serve, "fleet-b", &job);
    let run_a = a.run_job(&serve, "fleetjob", &[]);
    let run_b = b.run_job(&serve, "fleetjob", &["stuck"]);
    let child_a: u64 = pids(&run_a.line("child"))[0].into();
    let child_b: u64 = pids(&run_b.line("child"))[0].into();
    run_b.line("waiting");
    // Until both nodes answer with all four processes in their loops (a
    // child may still be starting, an agent still making its first poll).
    let snap = wait_for(
        "both nodes' processes in one snapshot",
        Duration::from_secs(60),
        || {
            let out = a.plumb(&serve, &["stack", "--name", "fleetjob", "--json"]);
            if !out.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let three = v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["members"].as_array().unwrap().len() == 3);
            (three && v["answered"].as_array().unwrap().len() == 2).then_some(v)
        },
    );
    assert_eq!(snap["answered"], serde_json::json!(["fleet-a", "fleet-b"]));
    assert_eq!(snap["not_answered"], serde_json::json!([]));
    let groups = snap["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{snap:#}");
    let busy = &groups[0];
    assert_eq!(function_names(&busy["frames"])[0], "busy_loop", "{snap:#}");
    assert_eq!(busy["odd"], false);
    let busy_members = members(busy);
    assert_eq!(busy_members.len(), 3, "{snap:#}");
    assert!(
        busy_members.contains(&("fleet-a".into(), child_a)),
        "{snap:#}"
    );
    assert!(
        busy_members.contains(&("fleet-b".into(), child_b)),
        "{snap:#}"
    );
    assert_eq!(
        busy_members.iter().filter(|(n, _)| n == "fleet-a").count(),
        2,
        "both processes of node a: {snap:#}"
    );
    let stuck = &groups[1];
    assert_eq!(stuck["odd"], true, "{snap:#}");
    let stuck_members = members(stuck);
    assert_eq!(stuck_members.len(), 1);
    assert_eq!(stuck_members[0].0, "fleet-b", "{snap:#}");
    assert_ne!(stuck_members[0].1, child_b, "the parent is the stuck one");
    assert_eq!(stuck["frames"][0]["function"], "wait_for_lock");
    assert_eq!(stuck["frames"][0]["line"], FLEET_LOCK_LINE, "{snap:#}");
    assert_eq!(snap["runs"].as_array().unwrap().len(), 2, "{snap:#}");

    // The text form names the nodes and the line that waits.
    let out = ok(
        a.plumb(&serve, &["stack", "--name", "fleetjob"]),
        "plumb stack",
    );
    let t = text(&out.stdout);
    let three = t.find("3 threads (python stack)").expect(&t);
    let odd = t.find("odd one out").expect(&t);
    assert!(three < odd, "{t}");
    assert!(
        t.contains(&format!(
            "wait_for_lock ({}:{FLEET_LOCK_LINE})",
            b.job.display()
        )),
        "{t}"
    );
    assert!(t.contains("2 answered: fleet-a, fleet-b"), "{t}");
    assert!(!t.contains("NOT ANSWERING"), "{t}");

    // The snapshot is stored with each run it covers.
    let run_b_id = snap["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .find(|id| {
            let out = ok(
                a.plumb(&serve, &["show", "--json", id]),
                "plumb show --json",
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["run"]["argv"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "stuck")
        })
        .expect("node b's run is one of the runs covered");
    let shown = text(&ok(a.plumb(&serve, &["show", &run_b_id]), "plumb show").stdout);
    assert!(
        shown.contains("stacks taken by plumb (plumb stack, name fleetjob)"),
        "{shown}"
    );
    assert!(shown.contains("wait_for_lock"), "{shown}");
    // The dashboard's stack page of that run asks the nodes live: node b
    // has its processes, node a has nothing of it.
    let run_page = serve.get(&format!("/runs/{run_b_id}")).unwrap();
    assert!(run_page.contains(&format!("href=\"/runs/{run_b_id}/stack\"")));
    let page = serve.get(&format!("/runs/{run_b_id}/stack")).unwrap();
    assert!(page.contains("data-stacks=\"live\""), "{page}");
    assert!(page.contains("wait_for_lock"), "{page}");
    assert!(page.contains("busy_loop"), "{page}");
    assert!(page.contains("<dt>answered</dt><dd>fleet-b</dd>"), "{page}");
    assert!(
        page.contains("<dt>nothing there</dt><dd>fleet-a</dd>"),
        "{page}"
    );

    // Node a's agent goes away: node a is named as not answering, and
    // node b's processes are still there.
    drop(a.agent.take());
    let out = ok(
        a.plumb(&serve, &["stack", "--name", "fleetjob", "--wait", "2s"]),
        "plumb stack with an agent down",
    );
    let t = text(&out.stdout);
    assert!(t.contains("NOT ANSWERING: fleet-a"), "{t}");
    assert!(t.contains("1 answered: fleet-b"), "{t}");
    assert!(t.contains("wait_for_lock"), "{t}");
    drop(run_a);
    drop(run_b);
}

#[test]
fn stack_through_the_collector_refuses_bad_input_naming_it() {
    let serve = Serve::builder().start();
    let shared = tempfile::tempdir().unwrap();
    let job = fleet_job(shared.path());
    let node = Node::start(&serve, "fleet-c", &job);
    wait_for(
        "the agent's first heartbeat",
        Duration::from_secs(30),
        || serve.get("/api/v1/nodes").filter(|b| b.contains("fleet-c")),
    );
    let out = node.plumb(
        &serve,
        &["stack", "--run", "0193aaaa-0000-7000-8000-000000000000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no run matches"),
        "{}",
        text(&out.stderr)
    );
    let out = node.plumb(&serve, &["stack", "--node", "no-such-node"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no node `no-such-node`"),
        "{}",
        text(&out.stderr)
    );
    let out = node.plumb(&serve, &["stack", "--name", "fleetjob", "--wait", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no time to answer"),
        "{}",
        text(&out.stderr)
    );
    // A name nothing runs under: the node says "nothing here" at once.
    let out = node.plumb(&serve, &["stack", "--name", "not-running-anywhere"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "no node has a running process for name not-running-anywhere (asked: fleet-c)"
        ),
        "{}",
        text(&out.stderr)
    );
    // --node without a collector.
    let out = node.home.run(&["stack", "--node", "fleet-c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no collector is configured"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_run_flagged_longer_than_usual_gets_a_snapshot_from_its_node_by_itself() {
    need_py_spy();
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("plumb.toml");
    std::fs::write(
        &toml,
        "[insights.slow]\nmin_history = 3\nmin_elapsed_s = 0.5\nfactor = 1.0\n",
    )
    .unwrap();
    let serve = Serve::builder().env("PLUMB_CONFIG", &toml).start();
    let job = fleet_job(tmp.path());
    let node = Node::start(&serve, "fleet-d", &job);
    for _ in 0..3 {
        ok(
            node.plumb(&serve, &["run", "--name", "usually-quick", "--", "true"]),
            "a quick run",
        );
    }
    wait_for("the quick runs to arrive", Duration::from_secs(30), || {
        serve
            .get("/api/v1/durations/usually-quick")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .filter(|v| v["n"] == 3)
    });
    let slow = node.run_job(&serve, "usually-quick", &[]);
    slow.line("child");
    let run = wait_for(
        "the slow run's automatic snapshot",
        Duration::from_secs(60),
        || {
            let flagged = serve.get_json("/api/v1/runs/slow");
            let id = flagged["runs"].as_array()?.first()?["run_id"]
                .as_str()?
                .to_string();
            let out = node.plumb(&serve, &["show", "--json", &id]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let run = v["run"].clone();
            (!run["snapshots"].as_array()?.is_empty()).then_some(run)
        },
    );
    let snap = &run["snapshots"][0];
    assert!(
        snap["reason"]
            .as_str()
            .unwrap()
            .starts_with("longer than usual"),
        "{snap:#}"
    );
    let procs = snap["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "parent and child: {snap:#}");
    for p in procs {
        assert_eq!(p["host"], "fleet-d");
        assert_eq!(
            function_names(&p["stacks"][0]["frames"])[0],
            "busy_loop",
            "{snap:#}"
        );
    }
    let id = run["id"].as_str().unwrap();
    let shown = text(&ok(node.plumb(&serve, &["show", id]), "plumb show").stdout);
    assert!(
        shown.contains("stacks taken by plumb (longer than usual"),
        "{shown}"
    );
    drop(slow);
}

#[test]
fn with_tokens_agents_answer_with_their_token_and_live_locals_need_an_admin() {
    need_py_spy();
    let serve = Serve::builder().tokens().start();
    let (agent_token, viewer, admin) = (
        serve.agent.clone().unwrap(),
        serve.viewer.clone().unwrap(),
        serve.admin.clone().unwrap(),
    );
    let shared = tempfile::tempdir().unwrap();
    let job = fleet_job(shared.path());
    let home = Home::new();
    std::fs::create_dir_all(home.store()).unwrap();
    let _agent = Proc(
        plumb_in(&home.store())
            .env("PLUMB_TOKEN", &agent_token)
            .args(["agent", "--name", "fleet-t", "--interval", "500ms"])
            .args(["--clock-every", "off", "--collector", &serve.api])
            .spawn()
            .unwrap(),
    );
    let py = python();
    let mut cmd = home.cmd(&[
        "run",
        "--name",
        "tokjob",
        "--",
        &py,
        job.to_str().unwrap(),
        "stuck",
    ]);
    cmd.env("PLUMB_COLLECTOR", &serve.api)
        .env("PLUMB_TOKEN", &agent_token);
    let bg = Background::start(cmd);
    bg.line("waiting");
    let stack = |token: &str, extra: &[&str]| {
        let mut args = vec!["stack", "--name", "tokjob", "--json"];
        args.extend_from_slice(extra);
        home.cmd(&args)
            .env("PLUMB_COLLECTOR", &serve.api)
            .env("PLUMB_TOKEN", token)
            .output()
            .unwrap()
    };
    // A viewer sees the stacks, answered by an agent polling with its
    // agent token.
    wait_for("the agent's answer", Duration::from_secs(60), || {
        let out = stack(&viewer, &[]);
        out.status.success().then_some(())
    });
    // Live locals are unredacted memory: a viewer is refused, naming the
    // role it needs; an admin gets them.
    let out = stack(&viewer, &["--locals"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(e.contains("403") && e.contains("admin"), "{e}");
    let out = ok(
        stack(&admin, &["--locals"]),
        "plumb stack --locals as admin",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stuck = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["frames"][0]["function"] == "wait_for_lock")
        .unwrap_or_else(|| panic!("{v:#}"))
        .clone();
    let locals = stuck["frames"][0]["locals"].to_string();
    assert!(locals.contains("\"lock\""), "{stuck:#}");
    drop(bg);
}

/// A CPU-bound job of two Python processes that spend nearly all their
/// time in `hot_function` and a little in `cool_function`.
const HOT: &str = r#"import subprocess, sys, time

def hot_function():
    x = 0
    for i in range(200000):
        x += i * i
    return x

def cool_function():
    return sum(range(1000))

if __name__ == "__main__":
    if "child" not in sys.argv:
        child = subprocess.Popen([sys.executable, __file__, "child"])
        print("child", child.pid, flush=True)
    else:
        print("up", flush=True)
    while True:
        hot_function()
        cool_function()
"#;

#[test]
fn profile_of_a_cpu_bound_python_job_puts_its_hot_function_on_top() {
    need_py_spy();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hot.py");
    std::fs::write(&script, HOT).unwrap();
    let mut job = Command::new(python())
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(job.stdout.take().unwrap()).lines();
    let child: u32 = lines.next().unwrap().unwrap()["child ".len()..]
        .parse()
        .unwrap();
    let out_dir = dir.path().join("graphs");
    let out = plumb()
        .args([
            "profile",
            "--duration",
            "2s",
            "--pid",
            &job.id().to_string(),
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let json = plumb()
        .args([
            "profile",
            "--duration",
            "1s",
            "--json",
            "--pid",
            &job.id().to_string(),
        ])
        .output()
        .unwrap();
    signal(child, libc::SIGKILL);
    job.kill().unwrap();
    let _ = job.wait();
    let t = text(&ok(out, "plumb profile").stdout);
    let first = t
        .lines()
        .skip_while(|l| !l.contains("own   total  function"))
        .nth(1)
        .unwrap_or_default();
    // Aggregated by function (its `def` line), not by the line running.
    assert!(first.contains("hot_function (hot.py:3)"), "{t}");
    assert!(t.contains("from 2 of 2 processes"), "{t}");
    let svg = std::fs::read_to_string(out_dir.join("profile.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("hot_function (hot.py:"));
    let json: serde_json::Value =
        serde_json::from_slice(&ok(json, "plumb profile --json").stdout).unwrap();
    let procs = json["profile"]["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{json:#}");
    assert_eq!(json["answered"].as_array().unwrap().len(), 1, "{json:#}");
    for p in procs {
        assert_eq!(p["kind"], "python", "{p:#}");
        assert!(!p["stacks"].as_array().unwrap().is_empty(), "{p:#}");
    }
}

#[test]
fn profile_of_a_c_program_shows_its_hot_function_through_perf() {
    let perf = Command::new("perf").arg("--version").output();
    assert!(
        perf.is_ok_and(|o| o.status.success()),
        "perf is not installed: apt install linux-perf (or run .ci/install-stack.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("spin.c");
    std::fs::write(
        &src,
        "int spin_here(long n){ volatile long x = 0; for (long i = 0; i < n; i++) x += i; return (int)x; }\nint main(void){ for (;;) spin_here(100000000); }\n",
    )
    .unwrap();
    let bin = dir.path().join("spin");
    let cc = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc is needed: apt install gcc");
    assert!(cc.status.success(), "{}", text(&cc.stderr));
    let mut child = Command::new(&bin).spawn().unwrap();
    let out = plumb()
        .args([
            "profile",
            "--duration",
            "1s",
            "--pid",
            &child.id().to_string(),
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let t = text(&ok(out, "plumb profile of a C program").stdout);
    let first = t
        .lines()
        .skip_while(|l| !l.contains("own   total  function"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.ends_with("spin_here"), "{t}");
}

#[test]
fn profile_through_the_collector_merges_two_nodes_and_puts_them_side_by_side() {
    need_py_spy();
    let serve = Serve::builder().start();
    let shared = tempfile::tempdir().unwrap();
    let script = shared.path().join("hot.py");
    std::fs::write(&script, HOT).unwrap();
    let a = Node::start(&serve, "prof-a", &script);
    let b = Node::start(&serve, "prof-b", &script);
    let run_a = a.run_job(&serve, "hotjob", &[]);
    let run_b = b.run_job(&serve, "hotjob", &[]);
    run_a.line("child");
    run_b.line("child");
    // Until both agents answer (each may still be making its first poll).
    let v = wait_for(
        "both nodes' profiles in one",
        Duration::from_secs(60),
        || {
            let out = a.plumb(
                &serve,
                &["profile", "--name", "hotjob", "--duration", "1s", "--json"],
            );
            if !out.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            (v["answered"].as_array().unwrap().len() == 2).then_some(v)
        },
    );
    assert_eq!(v["answered"], serde_json::json!(["prof-a", "prof-b"]));
    let procs = v["profile"]["processes"].as_array().unwrap();
    for node in ["prof-a", "prof-b"] {
        let mine: Vec<_> = procs.iter().filter(|p| p["host"] == node).collect();
        assert_eq!(mine.len(), 2, "two processes on {node}: {v:#}");
    }
    assert_eq!(v["runs"].as_array().unwrap().len(), 2, "{v:#}");

    // The text form: one graph for the job, one per node, and the two
    // nodes side by side.
    let graphs = shared.path().join("graphs");
    let out = ok(
        a.plumb(
            &serve,
            &[
                "profile",
                "--name",
                "hotjob",
                "--duration",
                "2s",
                "--compare",
                "prof-a,prof-b",
                "--out",
                graphs.to_str().unwrap(),
            ],
        ),
        "plumb profile --compare",
    );
    let t = text(&out.stdout);
    let first = t
        .lines()
        .skip_while(|l| !l.contains("own   total  function"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.contains("hot_function (hot.py:3)"), "{t}");
    assert!(t.contains("from 4 of 4 processes"), "{t}");
    assert!(t.contains("2 answered: prof-a, prof-b"), "{t}");
    for f in ["profile.svg", "profile-prof-a.svg", "profile-prof-b.svg"] {
        let svg = std::fs::read_to_string(graphs.join(f)).unwrap();
        assert!(svg.contains("hot_function (hot.py:"), "{f}");
    }
    let html = std::fs::read_to_string(graphs.join("compare-prof-a-prof-b.html")).unwrap();
    assert!(html.contains("prof-a") && html.contains("prof-b"));
    assert_eq!(html.matches("<svg").count(), 2);

    // Bad input is refused before any sampling, naming what is wrong.
    for (args, says) in [
        (vec!["--compare", "prof-a,nosuch"], "no node `nosuch`"),
        (vec!["--compare", "prof-a,prof-a"], "twice"),
        (vec!["--compare", "prof-a"], "A,B"),
        (vec!["--node", "nosuch"], "no node `nosuch`"),
        (vec!["--wait", "0s"], "no time"),
    ] {
        let mut all = vec!["profile", "--name", "hotjob", "--duration", "1s"];
        all.extend(&args);
        let out = a.plumb(&serve, &all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = a.plumb(
        &serve,
        &["profile", "--local", "--name", "hotjob", "--compare", "x,y"],
    );
    assert!(
        text(&out.stderr).contains("--compare asks the nodes' agents through the collector"),
        "{}",
        text(&out.stderr)
    );
    drop(run_a);
    drop(run_b);
}

#[test]
fn profile_says_per_process_what_is_missing_and_refuses_bad_windows() {
    let empty = tempfile::tempdir().unwrap();
    let mut py = Command::new(python())
        .args(["-c", "import time\nwhile True: time.sleep(1)"])
        .spawn()
        .unwrap();
    let pid = py.id().to_string();
    let out = plumb()
        .args(["profile", "--duration", "1s", "--pid", &pid])
        .arg("--out")
        .arg(empty.path())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    py.kill().unwrap();
    let _ = py.wait();
    assert_eq!(out.status.code(), Some(1), "no samples is a failure");
    let t = text(&out.stdout);
    assert!(
        t.contains(&format!(
            "pid {pid} (" 
        )) && t.contains("no cpu samples: py-spy is not installed (not on PATH): pip install py-spy (not-installed)"),
        "{t}"
    );
    for (args, says) in [
        (vec!["--duration", "0s"], "under a second"),
        (vec!["--duration", "500ms"], "under a second"),
        (vec!["--duration", "-5s"], "negative"),
        (vec!["--duration", "2h"], "over an hour"),
        (vec!["--rate", "0"], "--rate"),
        (vec!["--rate", "5000"], "--rate"),
    ] {
        let out = plumb()
            .args(["profile", "--pid", "1"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = plumb()
        .args(["profile", "--pid", "4194303"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no process 4194303"),
        "{}",
        text(&out.stderr)
    );
}
