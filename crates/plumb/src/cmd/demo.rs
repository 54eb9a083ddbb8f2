//! `plumb demo`: a small real workload recorded on the embedded store, then
//! what plumb says about it.
//!
//! Everything the demo writes lives in the store directory (its scripts in
//! `<store>/demo/`); the runs are tagged `demo=<session>` so they can be told
//! apart from the user's own.

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Arguments of `plumb demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Python interpreter to run the workload with.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Keep the collector and its dashboard running at the end until Enter
    /// is pressed. The default is to keep it when standard input is a
    /// terminal, and to stop everything otherwise (CI, scripts).
    #[arg(long, overrides_with = "no_keep")]
    pub keep: bool,
    /// Stop everything at the end, even on a terminal.
    #[arg(long)]
    pub no_keep: bool,
    /// Run the fleet scene's collector on this PostgreSQL store instead of
    /// the embedded one (postgres://user@host:port/database[?schema=NAME]);
    /// the rest of the demo records locally as always.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

const TRAIN: &str = r#"
import os, sys, json, time
size = os.environ.get("MODEL_SIZE", "small")
steps = {"small": 3, "large": 5}.get(size, 3)
for step in range(steps):
    print(f"step {step}: loss={1.0 / (step + 1):.3f}", flush=True)
    time.sleep(0.05)
print(json.dumps({"model": size, "steps": steps, "status": "converged"}))
"#;

const FAIL: &str = r#"
import json, sys
def load_config(path):
    with open(path) as f:
        return json.load(f)
def main():
    try:
        cfg = load_config("/nonexistent/plumb-demo.json")
    except FileNotFoundError as e:
        raise RuntimeError("cannot start the pipeline without its configuration") from e
print("starting pipeline", flush=True)
print("warning: retrying once", file=sys.stderr, flush=True)
main()
"#;

const KILLED: &str = r#"
import os, signal, time
print("worker 3: holding the lock", flush=True)
time.sleep(0.1)
os.kill(os.getpid(), signal.SIGKILL)
"#;

const ECHO_SERVER: &str = r#"
import socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
open(sys.argv[1], "w").write(str(srv.getsockname()[1]))
print(f"echo server on port {srv.getsockname()[1]}", flush=True)
srv.settimeout(30)
conn, _ = srv.accept()
with conn:
    while data := conn.recv(4096):
        conn.sendall(data)
print("client went away", flush=True)
"#;

const ECHO_CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
for i in range(40):
    t = time.monotonic()
    s.sendall(f"ping {i}\n".encode())
    reply = s.recv(4096)
    if not reply:
        raise ConnectionError(f"server closed the connection at request {i}")
    print(f"request {i}: {(time.monotonic() - t) * 1000:.1f} ms", flush=True)
    time.sleep(0.1)
"#;

/// A fake installed distribution, so one run has a different package set
/// without touching the network or the system.
const EXTRA_METADATA: &str = "Metadata-Version: 2.1\nName: plumb-demo-extra\nVersion: 2.0.1\n";

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    // A PostgreSQL store is checked first, so a bad URL or a database that
    // cannot be reached is named before anything runs.
    let pg = match &args.store {
        None => None,
        Some(url) => {
            use plumb_store::Connector as _;
            let c = plumb_store_postgres::PgConnector::new(url)?;
            drop(
                c.open()
                    .with_context(|| format!("plumb demo --store {}", c.describe()))?,
            );
            Some((url.clone(), c.describe()))
        }
    };
    let home = cfg.home.clone();
    let dir = home.join("demo");
    std::fs::create_dir_all(dir.join("site/plumb_demo_extra-2.0.1.dist-info"))
        .with_context(|| format!("cannot create the demo directory in {}", dir.display()))?;
    for (name, text) in [
        ("train.py", TRAIN),
        ("fail.py", FAIL),
        ("killed.py", KILLED),
    ] {
        std::fs::write(dir.join(name), text)?;
    }
    std::fs::write(
        dir.join("site/plumb_demo_extra-2.0.1.dist-info/METADATA"),
        EXTRA_METADATA,
    )?;
    let config = dir.join("train.toml");
    std::fs::write(
        &config,
        "learning_rate = 0.01\nbatch = 32\napi_token = \"demo-not-a-real-token\"\n",
    )?;
    let python = which(&args.python).with_context(|| {
        format!(
            "the demo runs Python scripts, and `{}` was not found",
            args.python.display()
        )
    })?;
    let session = plumb_model::new_id().simple().to_string()[20..].to_string();
    let me = std::env::current_exe().context("cannot find the plumb executable")?;
    outln!(
        "plumb demo: store {}  (session tag demo={session})\n",
        home.display()
    );

    let run = |title: &str,
               name: &str,
               script: &str,
               extra: &[(&str, &str)],
               flags: &[&str]|
     -> Result<i32> {
        outln!("── {title}");
        let mut cmd = Command::new(&me);
        cmd.env("PLUMB_HOME", &home)
            .args(["run", "--name", name, "--tag", &format!("demo={session}")])
            .args(flags)
            .arg("--")
            .arg(&python)
            .arg(dir.join(script));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let status = cmd.status().context("cannot start plumb run")?;
        let code = status.code().unwrap_or(255);
        outln!("   exit code {code}\n");
        Ok(code)
    };
    let config_flag = format!("--config={}", config.display());
    let ok = run(
        "a run that succeeds",
        "train",
        "train.py",
        &[],
        &[&config_flag],
    )?;
    let site = dir.join("site");
    let site = site.to_string_lossy();
    run(
        "the same job with another environment and package set",
        "train",
        "train.py",
        &[
            ("MODEL_SIZE", "large"),
            ("PYTHONPATH", &site),
            ("API_TOKEN", "s3cr3t-demo-value"),
        ],
        &[&config_flag],
    )?;
    let failed = run(
        "a run that dies with a traceback",
        "ingest",
        "fail.py",
        &[],
        &[],
    )?;
    let killed = run("a run killed by a signal", "worker", "killed.py", &[], &[])?;
    if ok != 0 || failed != 1 || killed != 137 {
        bail!(
            "unexpected exit codes from the demo workload: {ok}, {failed}, {killed} (expected 0, 1, 137)"
        );
    }

    let plumb = |title: &str, args: &[&str]| -> Result<()> {
        outln!("── $ plumb {}   ({title})", args.join(" "));
        let status = Command::new(&me)
            .env("PLUMB_HOME", &home)
            .args(args)
            .status()?;
        // `diff` exits 1 when the runs differ, as diff(1) does.
        let differ = args.first() == Some(&"diff") && status.code() == Some(1);
        if !status.success() && !differ {
            bail!("`plumb {}` failed with {status}", args.join(" "));
        }
        outln!();
        Ok(())
    };
    let tag = format!("demo={session}");
    plumb("what ran", &["ls", "--tag", &tag])?;
    plumb("everything recorded about the failure", &["show", "last~1"])?;
    plumb(
        "why the two training runs differ",
        &["diff", "last~3", "last~2"],
    )?;
    plumb(
        "search all recorded output",
        &["search", "loss", "--limit", "4"],
    )?;
    proxy_section(&me, &home, &dir, &python, &session)?;
    outln!("── surviving eviction: a worker is evicted mid-run, saves, and resumes");
    crate::cmd::evict_demo::demo_scene(&home, &python)?;
    outln!();
    crate::cmd::env_demo::local_scene(&me, &home, &dir, &python)?;
    // A process of its own, so its logging is `plumb chaos`'s.
    let status = Command::new(&me)
        .env("PLUMB_HOME", &home)
        .args(["chaos", "demo", "--python"])
        .arg(&python)
        .status()?;
    if !status.success() {
        bail!("`plumb chaos demo` failed with {status}");
    }
    outln!();
    let keep = args.keep || (!args.no_keep && std::io::IsTerminal::is_terminal(&std::io::stdin()));
    fleet_section(&me, &home, &dir, &python, &session, keep, pg.as_ref())?;
    outln!(
        "Try: plumb ls · plumb show last · plumb logs last -t · plumb search converged · plumb proxy --help · plumb serve"
    );
    Ok(ExitCode::SUCCESS)
}

/// A collector (`plumb serve`) and three agents as separate processes; the
/// workload ships its runs to the collector, an OpenTelemetry program sends
/// logs and spans to it, and the CLI reads it all back from the collector.
/// Everything started here is stopped before the demo ends.
fn fleet_section(
    me: &Path,
    home: &Path,
    dir: &Path,
    python: &Path,
    session: &str,
    keep: bool,
    pg: Option<&(String, String)>,
) -> Result<()> {
    outln!("── one place for the whole fleet: a collector and three agents");
    // The collector starts with the alerts scene's rules and webhook.
    let alerts_demo = crate::cmd::alerts::demo_prepare(&dir.join("alerts"))?;
    let collector = crate::cmd::serve::demo_scene_with(
        home,
        Some(&alerts_demo.config),
        pg.map(|(url, _)| url.as_str()),
    )?;
    let mut agents = crate::cmd::agent::demo_scene(&collector.api, &dir.join("agents"))?;
    let result = (|| -> Result<()> {
        outln!();
        outln!(
            "── the workload again, shipped to the collector (PLUMB_COLLECTOR={})",
            collector.api
        );
        for (name, script) in [("train", "train.py"), ("ingest", "fail.py")] {
            let status = Command::new(me)
                .env("PLUMB_HOME", home)
                .env("PLUMB_COLLECTOR", &collector.api)
                .env("PLUMB_SPOOL", dir.join("fleet-spool"))
                .args(["run", "--name", name, "--tag", &format!("demo={session}")])
                .args(["--tag", "where=collector", "--"])
                .arg(python)
                .arg(dir.join(script))
                .status()
                .context("cannot start plumb run")?;
            outln!("   exit code {}", status.code().unwrap_or(255));
        }
        outln!();
        outln!("── a throttle with one slot: the second backup waits for it, on record");
        for name in ["backup-1", "backup-2"] {
            agents.push(
                Command::new(me)
                    .env("PLUMB_HOME", home)
                    .env("PLUMB_COLLECTOR", &collector.api)
                    .env("PLUMB_SPOOL", dir.join("fleet-spool"))
                    .args(["run", "--throttle", "backup=1", "--name", name])
                    .args(["--tag", &format!("demo={session}"), "--", "sleep", "600"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .context("cannot start plumb run --throttle")?,
            );
            // The first takes the slot before the second asks for it.
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        // The waiting record reaches the collector within a shipping round.
        for _ in 0..50 {
            let out = Command::new(me)
                .env("PLUMB_HOME", home)
                .args([
                    "ls",
                    "--collector",
                    &collector.api,
                    "--state",
                    "waiting",
                    "--json",
                ])
                .output()?;
            if String::from_utf8_lossy(&out.stdout).contains("backup-2") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        outln!();
        if !collector.otlp.is_empty() {
            outln!(
                "── an OpenTelemetry program sends logs and spans, unchanged but for its endpoint"
            );
            crate::cmd::otlp::demo_scene(&collector.otlp, &collector.api, home)?;
            outln!();
        }
        for args in [
            vec![
                "ls",
                "--collector",
                &collector.api,
                "--tag",
                "where=collector",
            ],
            vec!["ls", "--collector", &collector.api, "--name", "backup-2"],
            vec!["nodes", "--collector", &collector.api],
        ] {
            outln!("── $ plumb {}", args.join(" "));
            let status = Command::new(me)
                .env("PLUMB_HOME", home)
                .args(&args)
                .status()?;
            if !status.success() {
                bail!("`plumb {}` failed with {status}", args.join(" "));
            }
            outln!();
        }
        outln!("── errors grouped across runs, and a run taking longer than usual");
        agents.push(crate::cmd::errors::demo_scene(&collector.api, dir, 600)?);
        outln!();
        outln!("── a stuck worker: plumb stack asks every node and singles it out");
        agents.push(crate::cmd::stack::demo_scene(
            &collector.api,
            home,
            dir,
            &dir.join("agents").join("node-1"),
            python,
        )?);
        outln!();
        outln!("── a node whose clock is off: plumb clock measures it, plumb timeline corrects it");
        agents.push(crate::cmd::clock::demo_scene(
            &collector.api,
            &collector.otlp,
            home,
            &dir.join("agents").join("skewed"),
        )?);
        outln!();
        outln!("── alerts: a disk rule fires and its webhook is called");
        agents.push(crate::cmd::alerts::demo_scene(
            &collector.api,
            &alerts_demo,
            &dir.join("agents"),
        )?);
        outln!();
        outln!("── a node whose software drifted from its rack");
        agents.push(crate::cmd::env_demo::fleet_scene(
            &collector.api,
            &dir.join("agents"),
            &dir.join("site"),
        )?);
        outln!();
        crate::cmd::dashboard::demo_scene(&collector.api)?;
        outln!();
        if keep {
            outln!(
                "   The dashboard stays up at {}/ : press Enter to stop the collector, its agents and the slow run.",
                collector.api.trim_end_matches('/')
            );
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        } else {
            outln!(
                "   (standard input is not a terminal, so the demo stops now; `plumb demo --keep` leaves the dashboard up)"
            );
        }
        Ok(())
    })();
    for a in &mut agents {
        // SIGTERM first, so a `plumb run` among them records how it ended.
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(a.id() as libc::pid_t, libc::SIGTERM) };
    }
    for a in &mut agents {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline && matches!(a.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = a.kill();
        let _ = a.wait();
    }
    drop(collector);
    match pg {
        Some((_, shown)) => outln!(
            "   (the demo's collector and agents are stopped; its store stays in {shown}; start one with `plumb serve --store URL`)\n"
        ),
        None => outln!(
            "   (the demo's collector and agents are stopped; its store stays in {}; start one with `plumb serve --data {}`)\n",
            home.join("collector").display(),
            home.join("collector").display()
        ),
    }
    result
}

/// Two workload processes talk through `plumb proxy`; the demo injects
/// latency and then a reset while they run, and shows both in the records.
fn proxy_section(me: &Path, home: &Path, dir: &Path, python: &Path, session: &str) -> Result<()> {
    use std::time::{Duration, Instant};
    outln!("── breaking the network on purpose: a client talks to a server through plumb proxy");
    std::fs::write(dir.join("echo_server.py"), ECHO_SERVER)?;
    std::fs::write(dir.join("echo_client.py"), ECHO_CLIENT)?;
    let port_file = dir.join("echo.port");
    let _ = std::fs::remove_file(&port_file);
    let tag = format!("demo={session}");
    let recorded = |name: &str, args: &[&std::ffi::OsStr]| {
        let mut c = Command::new(me);
        c.env("PLUMB_HOME", home)
            .args(["run", "--name", name, "--tag", &tag, "--"])
            .arg(python)
            .args(args);
        c
    };
    let mut server = recorded(
        "echo-server",
        &[
            dir.join("echo_server.py").as_os_str(),
            port_file.as_os_str(),
        ],
    )
    .spawn()
    .context("cannot start the echo server")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            break p;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            bail!("the demo's echo server did not start within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let proxy = plumb_proxy::spawn("127.0.0.1:0").context("cannot start plumb proxy")?;
    let api = proxy.client();
    let created = api
        .create_proxy("echo", "127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .context("cannot create the demo proxy")?;
    let listen = created["listen"].as_str().unwrap_or_default().to_string();
    let proxy_port = listen.rsplit(':').next().unwrap_or_default().to_string();
    outln!(
        "   plumb proxy admin API on http://{}, proxy `echo` {listen} -> 127.0.0.1:{port}",
        proxy.admin_addr()
    );
    let mut client = recorded(
        "echo-client",
        &[
            dir.join("echo_client.py").as_os_str(),
            std::ffi::OsStr::new(&proxy_port),
        ],
    )
    .spawn()
    .context("cannot start the echo client")?;
    std::thread::sleep(Duration::from_millis(500));
    outln!("   >> injecting 150 ms of latency on the server's answers");
    api.add_toxic(
        "echo",
        &serde_json::json!({"type": "latency", "attributes": {"latency": 150}}),
    )
    .context("cannot add the latency toxic")?;
    std::thread::sleep(Duration::from_millis(1000));
    outln!("   >> resetting the connection (reset_peer)");
    api.add_toxic("echo", &serde_json::json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}))
        .context("cannot add the reset_peer toxic")?;
    let status = client.wait()?;
    let _ = server.wait();
    outln!("   client exit code {}\n", status.code().unwrap_or(255));
    let events = api.events(0).unwrap_or_default();
    outln!("── the faults, as plumb proxy recorded them (UTC)");
    for e in events["events"].as_array().into_iter().flatten() {
        let t = plumb_model::Timestamp::from_nanos(e["ts_ns"].as_i64().unwrap_or(0));
        outln!(
            "   {t}  {} {}",
            e["kind"].as_str().unwrap_or("?"),
            e["toxic"].as_str().or(e["proxy"].as_str()).unwrap_or("")
        );
    }
    proxy.shutdown();
    outln!();
    let plumb = |args: &[&str]| -> Result<()> {
        outln!("── $ plumb {}", args.join(" "));
        Command::new(me)
            .env("PLUMB_HOME", home)
            .args(args)
            .status()?;
        outln!();
        Ok(())
    };
    plumb(&["logs", "last", "--timestamps"])?;
    plumb(&["ls", "--tag", &tag, "--limit", "2"])?;
    Ok(())
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
