//! Post-mortem locals: a Python program under `plumb run` that dies of an
//! uncaught exception leaves every frame's local variables with the run,
//! with no change to the program (issue 16).

mod support;

use std::path::Path;
use support::{Home, Serve, ok, text};

/// A program that fails in the way `how` names; `x = 42` and a secret
/// are locals of the failing function.
const PROGRAM: &str = r#"
import os, sys, threading, multiprocessing

def own_hook(kind, value, tb):
    print("OWN HOOK CALLED", file=sys.stderr)
    sys.__excepthook__(kind, value, tb)

def failing(n):
    x = 42
    api_token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"
    note = "plain " + "text"
    raise ValueError("bad input %d" % n)

def pool_task(i):
    in_pool_task = i * 7
    raise KeyError("task %d" % i)

def process_target(i):
    in_child_process = "child %d" % i
    raise RuntimeError("child failed")

def thread_target():
    in_thread = "thread local"
    raise LookupError("thread failed")

if __name__ == "__main__":
    how = sys.argv[1]
    print("PYTHONPATH=" + os.environ.get("PYTHONPATH", ""), flush=True)
    if how == "own-hook":
        sys.excepthook = own_hook
    if how == "thread":
        t = threading.Thread(target=thread_target, name="loader")
        t.start(); t.join()
    if how == "process":
        multiprocessing.set_start_method("spawn")
        p = multiprocessing.Process(target=process_target, args=(3,))
        p.start(); p.join()
    if how == "pool":
        with multiprocessing.Pool(2) as pool:
            pool.map(pool_task, [5])
    failing(7)
"#;

fn write_program(dir: &Path) -> String {
    let path = dir.join("job.py");
    std::fs::write(&path, PROGRAM).unwrap();
    path.to_string_lossy().into_owned()
}

/// `plumb run -- python3 job.py HOW` (plus `extra` before `--`), then the
/// run as JSON.
fn run_job(home: &Home, how: &str, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let program = write_program(home.dir());
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "python3", &program, how]);
    let out = home.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let shown = home.json(&["show", "last", "--json"]);
    (out, shown["run"].clone())
}

/// The post-mortem whose origin starts with `origin`.
fn postmortem<'a>(run: &'a serde_json::Value, origin: &str) -> &'a serde_json::Value {
    run["postmortem"]
        .as_array()
        .unwrap_or_else(|| panic!("no post-mortems in {run:#}"))
        .iter()
        .find(|p| p["origin"].as_str().unwrap().starts_with(origin))
        .unwrap_or_else(|| panic!("no post-mortem from {origin} in {:#}", run["postmortem"]))
}

/// The locals of the frame of `function` in a post-mortem, as name = value.
fn locals_of(pm: &serde_json::Value, function: &str) -> Vec<(String, String)> {
    let frame = pm["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == function)
        .unwrap_or_else(|| panic!("no frame {function} in {pm:#}"));
    frame["locals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_uncaught_exception_leaves_its_locals_with_secrets_redacted() {
    let home = Home::new();
    let (_, run) = run_job(&home, "main", &[]);
    let pm = postmortem(&run, "main thread");
    assert_eq!(pm["kind"], "ValueError");
    assert_eq!(pm["message"], "bad input 7");
    let locals = locals_of(pm, "failing");
    let get = |n: &str| locals.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("x"), Some("42"));
    assert_eq!(get("n"), Some("7"));
    assert_eq!(get("note"), Some("'plain text'"));
    let token = get("api_token").unwrap();
    assert!(token.starts_with("[redacted:"), "api_token = {token}");

    let shown = ok(home.run(&["show", "last", "--locals"]), "show --locals");
    let shown = text(&shown.stdout);
    assert!(shown.contains("ValueError: bad input 7"), "{shown}");
    assert!(shown.contains("x = 42"), "{shown}");
    assert!(
        !shown.contains("ghp_0123456789"),
        "the secret leaked: {shown}"
    );
    // Without --locals, a line says they are there.
    let plain = text(&ok(home.run(&["show", "last"]), "show").stdout);
    assert!(
        plain.contains("1 post-mortem with every frame's locals"),
        "{plain}"
    );
    assert!(!plain.contains("x = 42"), "{plain}");
    // The dashboard's run page shows the same lines.
    let serve = Serve::builder().data(&home.store()).start();
    let page = serve
        .get(&format!("/runs/{}", run["id"].as_str().unwrap()))
        .expect("the run page");
    assert!(page.contains("Post-mortem locals"), "{page}");
    assert!(page.contains("x = 42"), "{page}");
    assert!(
        !page.contains("ghp_0123456789"),
        "the secret leaked to the page"
    );
    // Nothing is left behind.
    let left: Vec<_> = std::fs::read_dir(home.store().join("postmortem"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn threads_processes_and_pool_tasks_leave_their_own_frames() {
    let home = Home::new();
    let (_, run) = run_job(&home, "thread", &[]);
    let pm = postmortem(&run, "thread loader");
    assert_eq!(pm["kind"], "LookupError");
    assert_eq!(
        locals_of(pm, "thread_target"),
        vec![("in_thread".into(), "'thread local'".into())]
    );
    postmortem(&run, "main thread");

    let (_, run) = run_job(&home, "process", &[]);
    let pm = postmortem(&run, "process ");
    assert_eq!(pm["kind"], "RuntimeError");
    assert!(
        locals_of(pm, "process_target").contains(&("in_child_process".into(), "'child 3'".into())),
        "{pm:#}"
    );
    let pid = pm["pid"].as_u64().unwrap();
    assert_ne!(
        pid,
        postmortem(&run, "main thread")["pid"].as_u64().unwrap()
    );

    let (_, run) = run_job(&home, "pool", &[]);
    let pm = postmortem(&run, "pool worker");
    assert_eq!(pm["kind"], "KeyError");
    assert!(
        locals_of(pm, "pool_task").contains(&("in_pool_task".into(), "35".into())),
        "{pm:#}"
    );
    // The parent died of the same error, re-raised by the pool: its own
    // frames are there too.
    assert_eq!(postmortem(&run, "main thread")["kind"], "KeyError");
}

#[test]
fn the_programs_own_excepthook_and_sitecustomize_still_run() {
    let home = Home::new();
    let theirs = home.dir().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(
        theirs.join("sitecustomize.py"),
        "import sys\nprint('THEIR SITECUSTOMIZE', file=sys.stderr)\n",
    )
    .unwrap();
    let program = write_program(home.dir());
    let out = home
        .cmd(&["run", "--", "python3", &program, "own-hook"])
        .env("PYTHONPATH", &theirs)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("OWN HOOK CALLED"), "{stderr}");
    assert!(stderr.contains("THEIR SITECUSTOMIZE"), "{stderr}");
    assert!(stderr.contains("ValueError: bad input 7"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(":{}", theirs.display())),
        "their PYTHONPATH is kept after plumb's: {stdout}"
    );
    let run = &home.json(&["show", "last", "--json"])["run"];
    assert_eq!(postmortem(run, "main thread")["kind"], "ValueError");
}

#[test]
fn no_locals_leaves_the_path_alone_and_records_none() {
    let home = Home::new();
    let (out, run) = run_job(&home, "main", &["--no-locals"]);
    assert!(run.get("postmortem").is_none(), "{run:#}");
    assert!(
        text(&out.stdout).contains("PYTHONPATH=\n"),
        "{}",
        text(&out.stdout)
    );
    let shown = text(&ok(home.run(&["show", "last", "--locals"]), "show").stdout);
    assert!(shown.contains("none recorded"), "{shown}");
}

#[test]
fn garbage_in_the_postmortem_file_is_left_out_with_a_warning() {
    let home = Home::new();
    let script = home.dir().join("scribble.py");
    std::fs::write(
        &script,
        "import os\nopen(os.environ['PLUMB_POSTMORTEM_FILE'], 'a').write('not json\\n' * 3)\nraise SystemExit(1)\n",
    )
    .unwrap();
    let out = home.run(&["run", "--", "python3", script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let run = &home.json(&["show", "last", "--json"])["run"];
    assert!(run.get("postmortem").is_none(), "{run:#}");
    let warnings = run["warnings"].to_string();
    assert!(warnings.contains("3 post-mortem record(s)"), "{warnings}");
}
