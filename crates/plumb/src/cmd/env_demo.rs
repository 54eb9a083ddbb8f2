//! `plumb demo`'s environment scenes: a preflight check that fails, a
//! rerun that says which package changed since, two runs with the same
//! input and different outputs, and (with the fleet) a node whose Python
//! packages drifted from its group.

use crate::out::outln;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PREFLIGHT: &str = r#"# What the demo's training job needs of a host.
[[env]]
name = "HOME"
pattern = "^/"
[[env]]
name = "TRAIN_MODE"
default = "quick"
[[path]]
path = "data"
access = "r"
[[path]]
path = "/nonexistent/checkpoints"
access = "rw"
[[disk]]
path = "."
free = "10M"
[[command]]
name = "sh"
"#;

/// The local scenes, on the demo's store (`home`), in `dir`.
pub fn local_scene(me: &Path, home: &Path, dir: &Path, python: &Path) -> Result<()> {
    let work = dir.join("env");
    std::fs::create_dir_all(work.join("data"))?;
    std::fs::write(work.join("data/input.csv"), "1,2,3\n4,5,6\n")?;
    std::fs::write(work.join("preflight.toml"), PREFLIGHT)?;
    let plumb = |args: &[&str]| -> Command {
        let mut c = Command::new(me);
        c.env("PLUMB_HOME", home)
            .env_remove("PLUMB_COLLECTOR")
            .current_dir(&work)
            .args(args)
            .stdin(Stdio::null());
        c
    };

    outln!(
        "── $ plumb preflight preflight.toml   (what a job needs of this host, each check tried)"
    );
    let status = plumb(&["preflight", "preflight.toml"]).status()?;
    outln!(
        "   exit code {} (a check failed)\n",
        status.code().unwrap_or(255)
    );

    // A run with a package at 1.0, then the package upgraded: the rerun
    // says so before it runs.
    let site = work.join("site");
    let pkg = |v: &str| site.join(format!("plumb_demo_lib-{v}.dist-info"));
    let _ = std::fs::remove_dir_all(&site);
    std::fs::create_dir_all(pkg("1.0"))?;
    std::fs::write(
        pkg("1.0").join("METADATA"),
        "Metadata-Version: 2.1\nName: plumb-demo-lib\nVersion: 1.0\n",
    )?;
    let py = python.to_string_lossy();
    let site_s = site.to_string_lossy();
    let status = plumb(&[
        "run",
        "--name",
        "report",
        "--",
        &py,
        "-c",
        "print('report: 6 rows')",
    ])
    .env("PYTHONPATH", &*site_s)
    .stdout(Stdio::null())
    .status()?;
    if !status.success() {
        bail!("the demo's report run failed: {status}");
    }
    std::fs::rename(pkg("1.0"), pkg("1.1"))?;
    std::fs::write(
        pkg("1.1").join("METADATA"),
        "Metadata-Version: 2.1\nName: plumb-demo-lib\nVersion: 1.1\n",
    )?;
    outln!(
        "── $ plumb rerun last   (the same command, directory and environment; what changed first)"
    );
    let out = plumb(&["rerun", "last"]).output()?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        outln!("   {}", plumb_model::text::escape_controls(line));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        outln!("   {}", plumb_model::text::escape_controls(line));
    }
    outln!();

    // The same input, a nondeterministic result.
    for _ in 0..2 {
        let status = plumb(&[
            "run",
            "--name",
            "aggregate",
            "--input",
            "data/input.csv",
            "--output",
            "total.txt",
            "--",
            "sh",
            "-c",
            "awk -F, '{s+=$1+$2+$3} END {print s}' data/input.csv > total.txt; date +%N >> total.txt",
        ])
        .stdout(Stdio::null())
        .status()?;
        if !status.success() {
            bail!("the demo's aggregate run failed: {status}");
        }
    }
    outln!("── $ plumb integrity --name aggregate   (same inputs, different outputs)");
    let status = plumb(&["integrity", "--name", "aggregate"]).status()?;
    outln!("   exit code {} (flagged)\n", status.code().unwrap_or(255));
    Ok(())
}

/// A fourth agent whose Python sees one more package than the others of
/// its rack, and `plumb env drift` finding it. Returns the agent.
pub fn fleet_scene(collector: &str, agents_dir: &Path, site: &Path) -> Result<Child> {
    let me = std::env::current_exe().context("cannot find the plumb executable")?;
    let agent = Command::new(&me)
        .args(["agent", "--collector", collector, "--interval", "1s"])
        .args(["--name", "demo-node-4", "--label", "rack=r1"])
        .arg("--spool")
        .arg(agents_dir.join("node-4"))
        .env("PYTHONPATH", site)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the drifted demo agent")?;
    outln!("Started demo-node-4 in rack r1, whose Python has one more package.");
    let drift = |json: bool| {
        let mut c = Command::new(&me);
        c.args([
            "env",
            "drift",
            "--label",
            "rack=r1",
            "--collector",
            collector,
        ])
        .stdin(Stdio::null());
        if json {
            c.arg("--json");
        }
        c.output()
    };
    // Bounded: an agent sends its fingerprint once it has taken it, within
    // a few seconds of starting.
    for _ in 0..150 {
        let out = drift(true)?;
        let compared = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["drift"]["nodes"]
                    .as_array()
                    .map(|n| n.iter().any(|n| n == "demo-node-4"))
            })
            .unwrap_or(false);
        if compared {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    outln!("── $ plumb env drift --label rack=r1");
    let out = drift(false)?;
    for line in String::from_utf8_lossy(&out.stdout).lines().take(30) {
        outln!("   {}", plumb_model::text::escape_controls(line));
    }
    Ok(agent)
}
