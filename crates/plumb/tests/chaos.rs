//! `plumb chaos`: the scenarios of examples/chaos run against their real
//! example processes (a Python HTTP service and a checkpointing worker),
//! each asserting the fault's effect and that nothing is left behind; a
//! plumb SIGKILLed mid-scenario is cleaned up by the next start; bad
//! scenarios are refused, with their line, before anything is injected.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Home, Serve, text, wait_for};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chaos")
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

/// A copy of examples/chaos (programs and one scenario) in the home's
/// directory, every 184xx port in the scenario replaced by a free one.
/// Returns the scenario's path and the ports (old -> new).
fn example(home: &Home, name: &str) -> (PathBuf, BTreeMap<u16, u16>) {
    let dir = home.dir().join("app");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in ["service.py", "worker.py", "clockcheck.py", "netcheck.py"] {
        std::fs::copy(examples().join(f), dir.join(f)).unwrap();
    }
    let mut scenario = std::fs::read_to_string(examples().join(name)).unwrap();
    let mut ports = BTreeMap::new();
    for word in scenario.clone().split(|c: char| !c.is_ascii_digit()) {
        if word.len() == 5
            && word.starts_with("184")
            && let Ok(p) = word.parse::<u16>()
        {
            ports.entry(p).or_insert_with(quiet_port);
        }
    }
    for (old, new) in &ports {
        scenario = scenario.replace(&old.to_string(), &new.to_string());
    }
    let path = dir.join(name);
    std::fs::write(&path, scenario).unwrap();
    (path, ports)
}

/// A free loopback port below Linux's ephemeral range (32768 and up), so
/// no bind to port 0 (plumb's own proxy admin API, a client's connection)
/// takes it between now and the scenario's use of it.
fn quiet_port() -> u16 {
    for _ in 0..200 {
        let p = 20_000 + fastrand::u16(..12_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 20000..32000");
}

/// `plumb chaos run --json` in `home`: (exit code, report, stderr).
fn chaos(home: &Home, scenario: &Path, extra: &[&str]) -> (i32, Value, String) {
    chaos_with(home, scenario, extra, &[])
}

/// [`chaos`] with more environment variables.
fn chaos_with(
    home: &Home,
    scenario: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, Value, String) {
    let mut args = vec!["chaos", "run", "--json"];
    args.extend_from_slice(extra);
    let s = scenario.to_str().unwrap();
    args.push(s);
    let out = home
        .cmd(&args)
        .env("PYTHONPATH", python_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report, text(&out.stderr))
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn our_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" tmpfs plumb-chaos "))
        .map(str::to_string)
        .collect()
}

/// plumb as uid and gid 65534 (nobody), through setpriv.
fn as_nobody() -> std::process::Command {
    let mut c = std::process::Command::new("/usr/bin/setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        support::PLUMB,
    ]);
    c
}

/// `plumb chaos validate SCENARIO` as nobody, with a home of its own.
fn validate_as_nobody(home: &Home, scenario: &Path) -> std::process::Output {
    as_nobody()
        .args(["chaos", "validate", scenario.to_str().unwrap()])
        .env("PLUMB_HOME", home.dir().join("nobody-home"))
        .output()
        .unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Nothing the run started or injected is left: its started processes are
/// gone (or zombies of another parent), no tmpfs of plumb's is mounted
/// over its directories, its links refuse connections, its journal is empty.
#[track_caller]
fn assert_clean(home: &Home, report: &Value, dir: &Path) {
    for t in report["targets"].as_array().unwrap() {
        for pid in t["pids"].as_array().unwrap() {
            let pid = pid.as_u64().unwrap() as u32;
            let state = proc_state(pid);
            assert!(
                matches!(state, None | Some('Z')),
                "target {} pid {pid} is still there ({state:?})",
                t["name"]
            );
        }
    }
    let dir = dir.canonicalize().unwrap();
    let mounts = our_mounts();
    assert!(
        !mounts.iter().any(|m| m.contains(dir.to_str().unwrap())),
        "a tmpfs is left over {}: {mounts:?}",
        dir.display()
    );
    for l in report["links"].as_array().unwrap() {
        let addr: std::net::SocketAddr = l["listen"].as_str().unwrap().parse().unwrap();
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "link {} still listens on {addr}",
            l["name"]
        );
    }
    let journal = home.store().join("chaos/journal");
    let left: Vec<_> = std::fs::read_dir(&journal)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "journal entries left: {left:?}");
}

fn fault(report: &Value) -> &Value {
    &report["faults"][0]
}

/// Every check made while the first fault was on (between its injection
/// and its removal), from the report's list of every check.
fn during_fault(report: &Value) -> Vec<&Value> {
    let f = fault(report);
    let from = ns(f["injected"].as_str().unwrap());
    let to = ns(f["removed"].as_str().unwrap());
    report["during"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| (from..to).contains(&ns(c["at"].as_str().unwrap())))
        .collect()
}

fn ns(rfc3339: &str) -> i64 {
    plumb_model::Timestamp::parse_rfc3339(rfc3339)
        .unwrap()
        .as_nanos()
}

#[test]
fn disk_full_makes_writes_fail_with_enospc_and_unmounts() {
    if !is_root() {
        eprintln!("skipped: disk_full needs root (the not-root refusal is tested below)");
        return;
    }
    let home = Home::new();
    let (scenario, _) = example(&home, "disk_full.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "the hypothesis did not hold: {stderr}");
    let f = fault(&report);
    assert_eq!(f["kind"], "disk_full");
    assert_eq!(f["verdict"], "deviated");
    let dev = f["first_deviation"]["detail"].as_str().unwrap();
    assert!(dev.to_lowercase().contains("no space left"), "{dev}");
    // The probe's own writes failed with ENOSPC...
    let enospc = during_fault(&report)
        .iter()
        .filter(|c| c["probe"] == "data writable")
        .any(|c| {
            c["detail"]
                .as_str()
                .unwrap()
                .contains("No space left on device")
        });
    assert!(enospc, "{report:#}");
    // ... and the worker's own checkpoint writes failed with ENOSPC too.
    let worker = std::fs::read_to_string(report["targets"][0]["log"].as_str().unwrap()).unwrap();
    assert!(worker.contains("no space left"), "{worker}");
    assert!(
        report["after"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{report:#}"
    );
    assert_clean(&home, &report, &scenario.parent().unwrap().join("data"));
    assert!(
        !scenario
            .parent()
            .unwrap()
            .join("data/.plumb-chaos-fill")
            .exists()
    );
}

#[test]
fn disk_full_without_root_is_refused_saying_what_is_needed() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to become another user");
        return;
    }
    let home = Home::new();
    let (scenario, _) = example(&home, "disk_full.toml");
    // Readable by nobody.
    for p in [home.dir(), scenario.parent().unwrap()] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = validate_as_nobody(&home, &scenario);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("disk_full.toml:22: fault disk_full: it mounts"),
        "{err}"
    );
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn disk_full_with_preload_fails_the_targets_writes_without_root_then_lets_them_through() {
    let home = Home::new();
    let (scenario, _) = example(&home, "disk_full_preload.toml");
    let app = scenario.parent().unwrap().to_path_buf();
    // As an unprivileged user when the test can become one: the point of
    // this mode is that it needs no root.
    let nobody = is_root() && Path::new("/usr/bin/setpriv").exists();
    let plumb_home = home.dir().join("nobody-home");
    std::fs::create_dir_all(&plumb_home).unwrap();
    let mut cmd = if nobody {
        std::fs::set_permissions(
            home.dir(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let chown = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&app)
            .arg(&plumb_home)
            .status()
            .unwrap();
        assert!(chown.success());
        as_nobody()
    } else {
        std::process::Command::new(support::PLUMB)
    };
    let out = cmd
        .args(["chaos", "run", "--json", scenario.to_str().unwrap()])
        .env("PLUMB_HOME", &plumb_home)
        .env("PYTHONPATH", python_dir())
        .env_remove("PLUMB_COLLECTOR")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no report ({e}): {stderr}"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the worker's log shows the full disk: {stderr}"
    );
    let f = fault(&report);
    assert_eq!(f["kind"], "disk_full");
    let action = f["action"].as_str().unwrap();
    assert!(
        action.contains("writes of `worker` under") && action.contains("fail with ENOSPC"),
        "{action}"
    );
    assert!(
        f["first_deviation"]["detail"]
            .as_str()
            .unwrap()
            .contains("no space left"),
        "{f:#}"
    );
    // The worker's own writes failed with ENOSPC (its checkpoint library
    // turns that errno into StorageFull) and went through once removed,
    // without a restart.
    let log = std::fs::read_to_string(report["targets"][0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("checkpoint failed: no space left"), "{log}");
    assert!(log.contains("checkpoints written again at step"), "{log}");
    assert_eq!(
        log.matches("worker: starting at step 0").count(),
        1,
        "never restarted: {log}"
    );
    // Nothing is mounted, and the injector touched nothing else: the
    // directory is writable by others all along.
    let real = app.canonicalize().unwrap();
    assert!(
        !our_mounts()
            .iter()
            .any(|m| m.contains(real.to_str().unwrap())),
        "{:?}",
        our_mounts()
    );
    std::fs::write(app.join("data/after.bin"), b"x").unwrap();
    let pids: Vec<u32> = report["targets"][0]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    for pid in pids {
        assert!(
            matches!(proc_state(pid), None | Some('Z')),
            "pid {pid} left"
        );
    }
}

/// Checks of `probe` that started while fault `i` was injected.
fn during_fault_i<'r>(report: &'r Value, i: usize, probe: &str) -> Vec<&'r Value> {
    let f = &report["faults"][i];
    let from = ns(f["injected"].as_str().unwrap());
    let to = ns(f["removed"].as_str().unwrap());
    report["during"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["probe"] == probe && (from..to).contains(&ns(c["at"].as_str().unwrap())))
        .collect()
}

/// The namespaces a report's cleanup says it deleted.
fn deleted_namespaces(report: &Value) -> Vec<String> {
    report["cleanup"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str()?.strip_prefix("network namespaces deleted: "))
        .flat_map(|l| l.split(", ").map(str::to_string))
        .collect()
}

fn can_make_namespaces() -> bool {
    is_root()
        && ["ip", "tc", "nft"]
            .iter()
            .all(|p| std::process::Command::new(p).arg("-V").output().is_ok())
}

#[test]
fn partition_loss_and_bandwidth_inside_namespaces_plumb_makes_and_deletes() {
    if !can_make_namespaces() {
        eprintln!("skipped: needs root, iproute2 and nftables (.ci/install-chaos.sh)");
        return;
    }
    let home = Home::new();
    let (scenario, _) = example(&home, "network.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "each fault shows: {stderr}");
    let kinds: Vec<_> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["partition", "loss", "bandwidth"], "{report:#}");
    for f in report["faults"].as_array().unwrap() {
        assert_eq!(f["verdict"], "deviated", "{f:#}");
        assert!(f["removed"].is_string(), "{f:#}");
    }
    assert!(
        report["before"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "west reached east before: {report:#}"
    );
    // The partition: west's requests to east went unanswered.
    let cut = during_fault_i(&report, 0, "health from west");
    // (A check that starts in the moment between the rules going and the
    // removal's timestamp may pass.)
    assert!(
        cut.len() >= 2 && cut[0]["ok"] == false && cut[1]["ok"] == false,
        "{cut:#?}"
    );
    // The loss: some connections made it, not all.
    let lossy: Vec<&str> = during_fault_i(&report, 1, "connections from west")
        .iter()
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    let made: Vec<u32> = lossy
        .iter()
        .filter_map(|d| d.split('/').next()?.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(!made.is_empty(), "{lossy:?}");
    assert!(
        made.iter().all(|m| *m < 20),
        "40% loss drops some: {lossy:?}"
    );
    assert!(made.iter().any(|m| *m > 0), "and not all: {lossy:?}");
    // The bandwidth: 200 KB at 1 Mbit/s takes more than a second.
    let slow: Vec<f64> = during_fault_i(&report, 2, "200 KB from west")
        .iter()
        .filter_map(|c| {
            let d = c["detail"].as_str()?;
            d.split(" bytes in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(slow.iter().any(|s| *s >= 1.0), "{slow:?}: {report:#}");
    assert!(
        report["after"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{report:#}"
    );
    // Every namespace it made is gone, and so is the service in it.
    let gone = deleted_namespaces(&report);
    assert_eq!(gone.len(), 3, "east, west and the hub: {gone:?}");
    for ns in &gone {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} is left");
    }
    assert_clean(&home, &report, &scenario.parent().unwrap().join("data"));
}

#[test]
fn a_partition_from_one_namespace_leaves_the_others_connected() {
    if !can_make_namespaces() {
        eprintln!("skipped: needs root, iproute2 and nftables (.ci/install-chaos.sh)");
        return;
    }
    let home = Home::new();
    let (scenario, _) = example(&home, "network.toml");
    let dir = scenario.parent().unwrap();
    let path = dir.join("split.yaml");
    std::fs::write(
        &path,
        "duration: 2500ms
interval: 200ms
settle: 300ms
netns:
  - name: east
  - name: west
  - name: north
target:
  - name: service
    command: [python3, service.py, --port, \"8080\", --host, 0.0.0.0]
    netns: east
    ready: 127.0.0.1:8080
probe:
  - name: from west
    http: http://10.213.0.1:8080/health
    netns: west
    timeout: 300ms
  - name: from north
    http: http://10.213.0.1:8080/health
    netns: north
    timeout: 300ms
fault:
  - kind: partition
    netns: east
    from: [west]
    at: 500ms
    duration: 1500ms
",
    )
    .unwrap();
    let (code, report, stderr) = chaos(&home, &path, &[]);
    assert_eq!(code, 1, "{stderr}");
    let f = fault(&report);
    assert_eq!(
        f["action"], "`east` cut off from `west` (10.213.0.2)",
        "{f:#}"
    );
    let west = during_fault_i(&report, 0, "from west");
    let north = during_fault_i(&report, 0, "from north");
    assert!(!west.is_empty() && west[0]["ok"] == false, "{west:#?}");
    assert!(
        !north.is_empty() && north.iter().all(|c| c["ok"] == true),
        "north still reaches east: {north:#?}"
    );
    assert_eq!(deleted_namespaces(&report).len(), 4);
}

#[test]
fn a_plumb_killed_with_namespaces_up_leaves_none_after_cleanup() {
    if !can_make_namespaces() {
        eprintln!("skipped: needs root, iproute2 and nftables (.ci/install-chaos.sh)");
        return;
    }
    let home = Home::new();
    let (scenario, _) = example(&home, "network.toml");
    let body = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("duration = \"13s\"", "duration = \"60s\"")
        .replace(
            "at = \"500ms\"\nduration = \"1500ms\"",
            "at = \"500ms\"\nduration = \"50s\"",
        );
    assert!(body.contains("duration = \"50s\""), "{body}");
    std::fs::write(&scenario, body).unwrap();
    let mut child = home
        .cmd(&["chaos", "run", scenario.to_str().unwrap()])
        .env("PYTHONPATH", python_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the partition, reading its progress lines.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut names = Vec::new();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if let Some(n) = line.strip_prefix("plumb chaos: network namespaces: ") {
            names = n.split(", ").map(str::to_string).collect::<Vec<_>>();
        }
        if line.contains("injected partition") {
            break;
        }
        assert!(seen.len() < 50, "{seen:#?}");
    }
    assert_eq!(names.len(), 3, "{seen:#?}");
    child.kill().unwrap();
    child.wait().unwrap();
    for ns in &names {
        assert!(Path::new("/run/netns").join(ns).exists(), "{ns} is up");
    }
    let out = support::ok(home.run(&["chaos", "cleanup"]), "cleanup");
    let said = text(&out.stdout) + &text(&out.stderr);
    for ns in &names {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns}: {said}");
        assert!(
            said.contains(&format!("deleted network namespace {ns}")),
            "{said}"
        );
    }
}

#[test]
fn delay_needs_netem_and_namespace_mistakes_are_named_before_anything_runs() {
    let home = Home::new();
    let write = |name: &str, body: &str| {
        let p = home.dir().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let base = "duration = \"2s\"\n[[netns]]\nname = \"a\"\n[[netns]]\nname = \"b\"\n";
    for (body, want) in [
        (
            format!("{base}[[fault]]\nkind = \"partition\"\nnetns = \"c\"\nat = \"1s\"\n"),
            "6: fault partition: netns `c` is not a [[netns]] of this scenario (netns: a, b)",
        ),
        (
            format!("{base}[[fault]]\nkind = \"loss\"\nnetns = \"a\"\nat = \"1s\"\n"),
            "6: fault loss: say how much: percent = 30",
        ),
        (
            format!(
                "{base}[[fault]]\nkind = \"bandwidth\"\nnetns = \"a\"\nrate = \"fast\"\nat = \"1s\"\n"
            ),
            "6: fault bandwidth: rate = \"fast\"",
        ),
        (
            format!(
                "{base}[[target]]\nname = \"t\"\nprocess = \"x\"\nnetns = \"a\"\n[[fault]]\nkind = \"kill\"\ntarget = \"t\"\nat = \"1s\"\n"
            ),
            "6: target `t`: env, env_remove, cwd, faketime, ready, restart and netns are for a command plumb starts",
        ),
    ] {
        let p = write("bad.toml", &body);
        let out = home.run(&["chaos", "validate", p.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{want}\n{err}");
    }
    // Namespaces need root, and say so with the first one's line.
    if is_root() && Path::new("/usr/bin/setpriv").exists() {
        let p = write(
            "ns.toml",
            &format!("{base}[[fault]]\nkind = \"partition\"\nnetns = \"a\"\nat = \"1s\"\n"),
        );
        std::fs::set_permissions(
            home.dir(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let out = validate_as_nobody(&home, &p);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("ns.toml:2: netns `a`: network namespaces need root"),
            "{err}"
        );
    }
    // delay is tc netem's; a kernel without it is named before anything
    // runs (this project's CI kernel has none).
    let p = write(
        "delay.toml",
        &format!(
            "{base}[[fault]]\nkind = \"delay\"\nnetns = \"a\"\nlatency = \"200ms\"\nat = \"1s\"\n"
        ),
    );
    let out = home.run(&["chaos", "validate", p.to_str().unwrap()]);
    let err = text(&out.stderr);
    if !can_make_namespaces() {
        assert!(
            err.contains("need root") || err.contains("not installed"),
            "{err}"
        );
    } else if plumb_chaos::netns::netem_available() {
        assert!(out.status.success(), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("no tc netem (sch_netem)"), "{err}");
    }
}

#[test]
fn clock_skew_puts_the_target_an_hour_ahead_then_back() {
    let home = Home::new();
    let (scenario, _) = example(&home, "clock.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "{stderr}");
    let dev = fault(&report)["first_deviation"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    // "service clock is ahead by 3600 s"
    let ahead: i64 = dev
        .rsplit("ahead by ")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{dev}"));
    assert!((3590..=3610).contains(&ahead), "{dev}");
    for c in report["after"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "the clock came back: {c}");
    }
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn latency_adds_200_ms_through_the_link_and_the_html_report_says_so() {
    let home = Home::new();
    let (scenario, _) = example(&home, "latency.toml");
    let html = home.dir().join("report.html");
    let (code, report, stderr) = chaos(&home, &scenario, &["--report", html.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["verdict"], "deviated");
    let slow: Vec<f64> = during_fault(&report)
        .iter()
        .map(|c| c["latency_ms"].as_f64().unwrap())
        .collect();
    assert!(!slow.is_empty());
    // Every request made while the toxic is on sees the 200 ms; the first
    // may start as it is being added and the last as it is being removed.
    let delayed = slow.iter().filter(|l| **l >= 200.0).count();
    assert!(delayed >= 1 && delayed + 2 >= slow.len(), "{slow:?}");
    assert!(
        report["before"][0]["latency_ms"].as_f64().unwrap() < 200.0,
        "{report:#}"
    );
    assert!(stderr.contains("link `api`"), "{stderr}");
    assert!(!stderr.contains("accept failed"), "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("hypothesis deviated"));
    assert!(page.contains("over 150ms"));
    assert!(
        !page.contains("<script") && !page.contains("<link"),
        "self-contained"
    );
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn a_fragile_frontend_deviates_when_the_link_goes_down_a_robust_one_holds() {
    let home = Home::new();
    let (fragile, _) = example(&home, "down-fragile.toml");
    let (code, report, stderr) = chaos(&home, &fragile, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["held"], false);
    let f = fault(&report);
    assert_eq!(f["verdict"], "deviated");
    assert!(
        f["first_deviation"]["detail"]
            .as_str()
            .unwrap()
            .contains("status 502"),
        "{f:#}"
    );
    assert_clean(&home, &report, fragile.parent().unwrap());

    let home = Home::new();
    let (robust, _) = example(&home, "down-robust.toml");
    let (code, report, stderr) = chaos(&home, &robust, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["verdict"], "held");
    assert_eq!(fault(&report)["verdict"], "held");
    assert!(fault(&report)["during"][0]["checks"].as_u64().unwrap() > 0);
    assert_clean(&home, &report, robust.parent().unwrap());
}

#[test]
fn pause_stops_the_service_then_continues_it() {
    let home = Home::new();
    let (scenario, _) = example(&home, "pause.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "{stderr}");
    let f = fault(&report);
    assert!(
        f["action"].as_str().unwrap().starts_with("SIGSTOP pid "),
        "{f}"
    );
    assert!(
        f["first_deviation"]["detail"]
            .as_str()
            .unwrap()
            .contains("no complete answer within 300ms"),
        "{f:#}"
    );
    assert_eq!(
        f["after"][0]["ok"], true,
        "answers again once continued: {f:#}"
    );
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn kill_sigkills_the_service_and_restart_brings_it_back() {
    let home = Home::new();
    let (scenario, _) = example(&home, "kill.toml");
    let (_, report, stderr) = chaos(&home, &scenario, &[]);
    let t = &report["targets"][0];
    let pids = t["pids"].as_array().unwrap();
    assert_eq!(pids.len(), 2, "started again: {t}\n{stderr}");
    let exits = t["exits"].to_string();
    assert!(
        exits.contains(&format!("pid {} was killed by SIGKILL", pids[0])),
        "{exits}"
    );
    assert!(
        fault(&report)["removal"]
            .as_str()
            .unwrap()
            .contains("restarted as pid")
    );
    assert_eq!(report["after"][0]["ok"], true, "{report:#}");
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn evict_warns_the_worker_which_checkpoints_and_resumes() {
    let home = Home::new();
    let (scenario, _) = example(&home, "evict.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let t = &report["targets"][0];
    assert!(
        t["exits"][0][1]
            .as_str()
            .unwrap()
            .ends_with("exited with 75"),
        "{t}"
    );
    assert!(
        fault(&report)["removal"]
            .as_str()
            .unwrap()
            .contains("had exited within the grace"),
        "{report:#}"
    );
    let log = std::fs::read_to_string(t["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("worker: resumed at step"), "{log}");
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn env_restarts_the_service_without_the_variable_then_with_it() {
    let home = Home::new();
    let (scenario, _) = example(&home, "env.toml");
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "{stderr}");
    let details: Vec<&str> = during_fault(&report)
        .iter()
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("status 404")),
        "GREETING was missing during the fault: {details:?}"
    );
    assert_eq!(report["after"][0]["ok"], true);
    assert_eq!(report["targets"][0]["pids"].as_array().unwrap().len(), 3);
    assert_clean(&home, &report, scenario.parent().unwrap());
}

/// A process for a pattern target to find: `sleep` with a unique argument.
fn bystander(secs: u32) -> std::process::Child {
    std::process::Command::new("sleep")
        .arg(secs.to_string())
        .spawn()
        .unwrap()
}

#[test]
fn a_plumb_killed_mid_scenario_is_cleaned_up_by_the_next_start() {
    let home = Home::new();
    let victim_secs = 900_000 + fastrand::u32(..99_999);
    let mut victim = bystander(victim_secs);
    let disk = home.dir().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let root = is_root();
    let disk_fault = if root {
        format!(
            "[[fault]]\nkind = \"disk_full\"\npath = \"{}\"\nat = \"100ms\"\nduration = \"50s\"\n",
            disk.display()
        )
    } else {
        String::new()
    };
    let scenario = home.dir().join("long.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"duration = "60s"
[[target]]
name = "bystander"
pattern = "^sleep {victim_secs}$"

[[target]]
name = "helper"
command = ["sleep", "1000"]

[[fault]]
kind = "pause"
target = "bystander"
at = "100ms"
duration = "50s"
{disk_fault}"#
        ),
    )
    .unwrap();
    let mut plumb = home
        .cmd(&["chaos", "run", scenario.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = home.store().join("chaos/journal");
    let want = if root { 3 } else { 2 };
    let count = || {
        std::fs::read_dir(&journal)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for(
        "the injections to be journaled",
        Duration::from_secs(20),
        || (count() >= want).then_some(()),
    );
    wait_for("the bystander to stop", Duration::from_secs(5), || {
        (proc_state(victim.id()) == Some('T')).then_some(())
    });
    // Which process plumb started, from its journal.
    let mut helper_pid = 0u32;
    for e in std::fs::read_dir(&journal).unwrap() {
        let body = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<Value>(&body)
            && v["undo"] == "kill_group"
        {
            helper_pid = v["pid"].as_u64().unwrap() as u32;
        }
    }
    assert!(helper_pid > 0, "the started target is journaled");
    plumb.kill().unwrap();
    plumb.wait().unwrap();
    // plumb is gone; what it did is still there.
    assert_eq!(proc_state(victim.id()), Some('T'));
    assert!(matches!(proc_state(helper_pid), Some(s) if s != 'Z'));
    if root {
        assert!(
            our_mounts()
                .iter()
                .any(|m| m.contains(disk.to_str().unwrap())),
            "the tmpfs is still mounted"
        );
    }

    // The next start undoes it before running its own scenario.
    let next = home.dir().join("next.toml");
    std::fs::write(
        &next,
        r#"duration = "1s"
[[target]]
name = "t"
command = ["sleep", "100"]
[[probe]]
name = "true"
command = ["true"]
[[fault]]
kind = "pause"
target = "t"
at = "100ms"
duration = "100ms"
"#,
    )
    .unwrap();
    let (code, report, stderr) = chaos(&home, &next, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert!(
        stderr.contains("undone from a run that did not finish"),
        "{stderr}"
    );
    assert!(
        stderr.contains("continued 1 of 1 stopped processes"),
        "{stderr}"
    );
    assert_ne!(
        proc_state(victim.id()),
        Some('T'),
        "the bystander runs again"
    );
    assert!(
        matches!(proc_state(helper_pid), None | Some('Z')),
        "the helper plumb had started is gone"
    );
    if root {
        assert!(stderr.contains("unmounted the tmpfs over"), "{stderr}");
        assert!(
            !our_mounts()
                .iter()
                .any(|m| m.contains(disk.to_str().unwrap()))
        );
    }
    assert_clean(&home, &report, &disk);
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// Runs `plumb chaos run` on `body`; returns (exit code, stderr).
fn refused(home: &Home, body: &str) -> (i32, String) {
    let path = home.dir().join("bad.toml");
    std::fs::write(&path, body).unwrap();
    let out = home.run(&["chaos", "run", path.to_str().unwrap()]);
    assert!(out.stdout.is_empty(), "no report: {}", text(&out.stdout));
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

#[test]
fn bad_scenarios_are_refused_with_their_line_before_anything_is_injected() {
    let home = Home::new();
    let victim_secs = 800_000 + fastrand::u32(..99_999);
    let mut victim = bystander(victim_secs);
    let good = format!(
        r#"duration = "5s"
[[target]]
name = "victim"
pattern = "^sleep {}$"

[[fault]]
kind = "pause"
target = "victim"
at = "100ms"
"#,
        victim_secs
    );
    let cases: &[(&str, &str)] = &[
        ("colour = \"red\"\n", "bad.toml:10: unknown field `colour`"),
        (
            "\n[[fault]]\nkind = \"meteor\"\ntarget = \"victim\"\nat = \"1s\"\n",
            "bad.toml:12: unknown variant `meteor`",
        ),
        (
            "\n[[fault]]\nkind = \"kill\"\ntarget = \"ghost\"\nat = \"1s\"\n",
            "bad.toml:11: fault kill: target `ghost` is not a [[target]] of this scenario (targets: victim)",
        ),
        (
            "\n[[fault]]\nkind = \"kill\"\ntarget = \"victim\"\nat = \"9s\"\n",
            "bad.toml:11: fault kill: at = \"9s\" is not within the scenario's duration (5.0s)",
        ),
        (
            "\n[[fault]]\nkind = \"kill\"\ntarget = \"victim\"\nevery = \"1s\"\njitter = \"1s\"\n",
            "bad.toml:11: fault kill: jitter must be less than every",
        ),
        (
            "\n[[fault]]\nkind = \"pause\"\ntarget = \"victim\"\n",
            "bad.toml:11: fault pause: say when with one of at",
        ),
        (
            "\n[[fault]]\nkind = \"latency\"\nlink = \"db\"\nat = \"1s\"\nlatency = \"1s\"\n",
            "bad.toml:11: fault latency: link `db` is not a [[link]] of this scenario (links: none)",
        ),
        (
            "\n[[fault]]\nkind = \"clock\"\ntarget = \"victim\"\nat = \"1s\"\noffset = \"+1h\"\n",
            "must be a command plumb starts",
        ),
    ];
    for (extra, want) in cases {
        // The good pause fault comes first: it must not have run.
        let (code, err) = refused(&home, &format!("{good}{extra}"));
        assert_eq!(code, 2, "{extra}: {err}");
        assert!(err.contains(want), "{extra}\nwanted: {want}\ngot: {err}");
        assert_ne!(proc_state(victim.id()), Some('T'), "nothing was injected");
    }
    assert!(
        !home.store().join("chaos/journal").exists(),
        "nothing was started, not even a journal"
    );
    let (code, err) = refused(&home, "duration = \"5s\"\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml:1: the scenario has no [[fault]]"),
        "{err}"
    );
    let out = home.run(&["chaos", "run", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read scenario missing.toml"));
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// Three kills at random and a pause every 10 s ± 2 s on a process that
/// is not there: a plan to print, never to run.
const SEEDED_PLAN: &str = r#"duration = "60s"
seed = 42
[[target]]
name = "w"
process = "nothing-runs-this"
[[fault]]
kind = "kill"
target = "w"
random = 3
[[fault]]
kind = "pause"
target = "w"
every = "10s"
jitter = "2s"
duration = "1s"
"#;

#[test]
fn validate_prints_the_same_seeded_plan_every_time() {
    let home = Home::new();
    let path = home.dir().join("random.toml");
    std::fs::write(&path, SEEDED_PLAN).unwrap();
    let plan = || {
        let out = support::ok(
            home.run(&["chaos", "validate", path.to_str().unwrap()]),
            "validate",
        );
        text(&out.stdout)
    };
    let first = plan();
    assert_eq!(first, plan(), "same seed, same plan");
    assert_eq!(first.matches(" kill on `w`").count(), 3, "{first}");
    assert_eq!(first.matches(" pause on `w`").count(), 5, "{first}");
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("seed = 42", "seed = 43"),
    )
    .unwrap();
    assert_ne!(first, plan(), "another seed, another plan");
}

#[test]
fn a_scenario_written_as_yaml_or_json_plans_as_its_toml_twin_and_errors_name_lines() {
    let home = Home::new();
    let toml = SEEDED_PLAN;
    let yaml = "duration: 60s
seed: 42
target:
  - name: w
    process: nothing-runs-this
fault:
  - kind: kill
    target: w
    random: 3
  - kind: pause
    target: w
    every: 10s
    jitter: 2s
    duration: 1s
";
    let json = r#"{"duration": "60s", "seed": 42,
 "target": [{"name": "w", "process": "nothing-runs-this"}],
 "fault": [
  {"kind": "kill", "target": "w", "random": 3},
  {"kind": "pause", "target": "w", "every": "10s", "jitter": "2s", "duration": "1s"}
 ]}
"#;
    let plan = |name: &str, body: &str| {
        let path = home.dir().join(name);
        std::fs::write(&path, body).unwrap();
        let out = support::ok(
            home.run(&["chaos", "validate", path.to_str().unwrap()]),
            "validate",
        );
        let out = text(&out.stdout);
        let (first, rest) = out.split_once('\n').unwrap();
        assert!(
            first.starts_with(&format!("{}: ok: ", path.display())),
            "{out}"
        );
        // Each names the line of its own file.
        rest.lines()
            .map(|l| l.split(" (line ").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let want = plan("s.toml", toml);
    assert_eq!(
        want.iter().filter(|l| l.contains(" kill on `w`")).count(),
        3,
        "{want:?}"
    );
    assert_eq!(plan("s.yaml", yaml), want);
    assert_eq!(plan("s.json", json), want);

    // Mistakes name the file and line, and nothing runs.
    for (name, body, want) in [
        (
            "bad.yaml",
            yaml.replace("    random: 3\n", "    random: 3\n    colour: red\n"),
            "bad.yaml:10: fault[0].colour: Unknown field `colour`",
        ),
        (
            "bad.json",
            json.replace("\"random\": 3", "\"random\": 3, \"colour\": 1"),
            "bad.json:4: fault[0].colour: Unknown field `colour`",
        ),
        (
            "kind.yml",
            yaml.replace("kind: pause", "kind: meteor"),
            "kind.yml:10: fault[1].kind: unknown variant `meteor`",
        ),
        (
            "syntax.json",
            json.replace("\"nothing-runs-this\"}],", "\"nothing-runs-this\"}"),
            "syntax.json:3: expected `,` or `]`",
        ),
    ] {
        let path = home.dir().join(name);
        std::fs::write(&path, body).unwrap();
        let out = home.run(&["chaos", "run", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
    }
}

#[test]
fn an_https_probe_checks_the_certificate_against_plumb_ca_cert() {
    let home = Home::new();
    let serve = Serve::builder().tls().start();
    let ca = serve.ca.clone().unwrap();
    let path = home.dir().join("tls.yaml");
    std::fs::write(
        &path,
        format!(
            "duration: 300ms
interval: 100ms
settle: 100ms
target:
  - name: sleeper
    command: [sleep, \"30\"]
probe:
  - name: tls health
    http: {}/healthz
fault:
  - kind: kill
    target: sleeper
    at: 100ms
",
            serve.api
        ),
    )
    .unwrap();
    assert!(serve.api.starts_with("https://"), "{}", serve.api);
    let (code, report, stderr) = chaos_with(
        &home,
        &path,
        &[],
        &[("PLUMB_CA_CERT", ca.to_str().unwrap())],
    );
    assert_eq!(
        code, 0,
        "verified against the CA, it holds: {stderr}\n{report:#}"
    );
    assert_eq!(report["before"][0]["ok"], true, "{report:#}");
    // Without the CA, the self-signed certificate is refused, and the
    // report says why.
    let (code, report, _) = chaos_with(&home, &path, &[], &[("PLUMB_CA_CERT", "")]);
    assert_eq!(code, 1, "{report:#}");
    let detail = report["before"][0]["detail"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(detail.contains("certificate"), "{detail}");
}

#[test]
fn a_plumb_run_by_name_is_a_target_and_rollbacks_run_at_the_end() {
    let home = Home::new();
    let mut job = home
        .cmd(&["run", "--name", "chaosjob", "--", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Generous: on a loaded CI machine the recorder's first write and
    // `plumb ls` share the store with many other tests' processes.
    wait_for(
        "the running run in the store",
        Duration::from_secs(90),
        || {
            let out = home.run(&["ls", "--name", "chaosjob", "--json"]);
            text(&out.stdout).contains("\"running\"").then_some(())
        },
    );
    let scenario = home.dir().join("run.toml");
    std::fs::write(
        &scenario,
        r#"duration = "1500ms"
[[target]]
name = "job"
run = "chaosjob"

[[probe]]
name = "true"
command = ["true"]

[[fault]]
kind = "pause"
target = "job"
all = true
at = "100ms"
duration = "500ms"

[[rollback]]
command = ["touch", "rolled-back"]
"#,
    )
    .unwrap();
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let f = fault(&report);
    let action = f["action"].as_str().unwrap();
    assert!(
        action.starts_with("SIGSTOP pid ") && action.ends_with("of `job`"),
        "{action}"
    );
    let pid: u32 = action["SIGSTOP pid ".len()..]
        .split([',', ' '])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        cmdline.split('\0').collect::<Vec<_>>(),
        ["sleep", "300", ""],
        "the run's program was the target"
    );
    assert_ne!(proc_state(pid), Some('T'), "continued");
    assert!(home.dir().join("rolled-back").exists(), "the rollback ran");
    assert!(
        report["rollbacks"][0].as_str().unwrap().contains("touch"),
        "{report:#}"
    );
    job.kill().unwrap();
    job.wait().unwrap();
    // SAFETY: kill(2) of the sleep the killed recorder left behind.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// chaostoolkit's `chaos`: $PLUMB_CHAOSTOOLKIT, else on PATH, else where
/// .ci/install-chaos.sh puts it.
fn chaostoolkit() -> PathBuf {
    if let Some(p) = std::env::var_os("PLUMB_CHAOSTOOLKIT") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("chaos"))
                .find(|c| c.is_file())
        })
        .unwrap_or_default();
    let ci = PathBuf::from("/opt/plumb-ci/chaostoolkit/bin/chaos");
    on_path
        .or_else(|| ci.is_file().then_some(ci))
        .expect("chaostoolkit's `chaos` is not installed: run .ci/install-chaos.sh")
}

/// (name, met) of each probe of one phase of chaostoolkit's journal.
fn ctk_phase(journal: &Value, phase: &str) -> Vec<(String, bool)> {
    journal["steady_states"][phase]["probes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["activity"]["name"].as_str().unwrap().to_string(),
                        p["tolerance_met"].as_bool().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn plumb_phase(report: &Value, phase: &str) -> Vec<(String, bool)> {
    report[phase]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["probe"].as_str().unwrap().to_string(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn chaostoolkit_experiments_run_unchanged_with_chaostoolkit_s_verdicts() {
    let ctk = chaostoolkit();
    // The third: the deviating one as YAML, written by chaostoolkit's own
    // Python (PyYAML), which both tools then read.
    for (name, holds, yaml) in [
        ("ctk-holds.json", true, false),
        ("ctk-deviates.json", false, false),
        ("ctk-deviates.json", false, true),
        // configuration, secrets from the environment, a `ref`.
        ("ctk-config.json", true, false),
    ] {
        let home = Home::new();
        let (mut experiment, ports) = example(&home, name);
        if yaml {
            let to = experiment.with_extension("yaml");
            let python = Some(ctk.with_file_name("python3"))
                .filter(|p| p.exists())
                .unwrap_or_else(|| "python3".into());
            let out = std::process::Command::new(python)
                .args([
                    "-c",
                    "import json, sys, yaml; yaml.safe_dump(json.load(open(sys.argv[1])), open(sys.argv[2], 'w'))",
                ])
                .arg(&experiment)
                .arg(&to)
                .output()
                .unwrap();
            support::ok(out, "PyYAML next to chaostoolkit");
            assert!(std::fs::read_to_string(&to).unwrap().contains("method:\n"));
            experiment = to;
        }
        let dir = experiment.parent().unwrap().to_path_buf();
        let port = ports[&18491];
        let mut service = std::process::Command::new("python3")
            .args(["service.py", "--port", &port.to_string()])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the service", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let flag = dir.join("data/flag");

        std::fs::write(&flag, "ready\n").unwrap();
        let journal = dir.join("journal.json");
        let env = [("PLUMB_CTK_TOKEN", "s3cr3t-42"), ("PLUMB_CTK_WAIT", "0.2")];
        let theirs = std::process::Command::new(&ctk)
            .args(["--no-log-file", "run", "--no-verify-tls", "--journal-path"])
            .arg(&journal)
            .arg(&experiment)
            .envs(env)
            .current_dir(&dir)
            .output()
            .unwrap();
        let journal: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap())
            .unwrap_or_else(|e| panic!("{e}: {}", text(&theirs.stderr)));

        std::fs::write(&flag, "ready\n").unwrap();
        let (code, report, stderr) = chaos_with(&home, &experiment, &[], &env);

        assert_eq!(
            journal["deviated"],
            !holds,
            "chaostoolkit: {}",
            text(&theirs.stderr)
        );
        assert_eq!(report["held"], holds, "{stderr}\n{report:#}");
        assert_eq!(code, theirs.status.code().unwrap(), "the same exit code");
        for phase in ["before", "after"] {
            assert_eq!(
                plumb_phase(&report, phase),
                ctk_phase(&journal, phase),
                "{name}: the probes {phase} and whether each was within tolerance"
            );
        }
        assert_eq!(
            report["faults"].as_array().unwrap().len(),
            journal["run"].as_array().unwrap().len()
        );
        assert!(!dir.join("data/neighbour").exists(), "the rollbacks ran");
        service.kill().unwrap();
        service.wait().unwrap();
    }
}

#[test]
fn a_broken_yaml_experiment_is_refused_naming_its_line() {
    let home = Home::new();
    let path = home.dir().join("experiment.yaml");
    std::fs::write(
        &path,
        "title: broken\nmethod:\n  - type: action\n\tname: tabbed\n",
    )
    .unwrap();
    let out = home.run(&["chaos", "run", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("experiment.yaml:4: "), "{err}");
    assert!(err.contains("tab"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_chaostoolkit_experiment_with_python_activities_is_refused_naming_them() {
    let home = Home::new();
    let path = home.dir().join("experiment.json");
    let mut e: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("ctk-holds.json")).unwrap())
            .unwrap();
    e["method"].as_array_mut().unwrap().push(serde_json::json!({
        "type": "action", "name": "stop-an-instance",
        "provider": {"type": "python", "module": "chaosaws.ec2.actions", "func": "stop_instance"}
    }));
    e["rollbacks"].as_array_mut().unwrap().push(serde_json::json!({
        "type": "action", "name": "start-it",
        "provider": {"type": "python", "module": "chaosaws.ec2.actions", "func": "start_instances"}
    }));
    std::fs::write(&path, serde_json::to_string_pretty(&e).unwrap()).unwrap();
    let out = home.run(&["chaos", "run", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("plumb cannot run these activities (nothing was run)"),
        "{err}"
    );
    assert!(
        err.contains(
            "method[1] 'stop-an-instance': a python provider (chaosaws.ec2.actions.stop_instance)"
        ),
        "{err}"
    );
    assert!(
        err.contains("rollbacks[1] 'start-it': a python provider"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_monkey_kills_at_random_but_never_takes_a_target_down_past_its_limit() {
    let home = Home::new();
    let secs = 700_000 + fastrand::u32(..99_999);
    let mut herd: Vec<std::process::Child> = (0..3).map(|_| bystander(secs)).collect();
    let pattern = format!("^sleep {secs}$");
    wait_for("the herd to start", Duration::from_secs(10), || {
        herd.iter()
            .all(|c| {
                std::fs::read_to_string(format!("/proc/{}/cmdline", c.id()))
                    .is_ok_and(|l| l.starts_with("sleep"))
            })
            .then_some(())
    });
    let args = [
        "chaos",
        "monkey",
        "--pattern",
        &pattern,
        "--every",
        "100ms",
        "--jitter",
        "50ms",
        "--max-down",
        "0",
        "--count",
        "5",
        "--seed",
        "3",
        "--json",
    ];
    let out = support::ok(home.run(&args), "monkey");
    let turns: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 5);
    let killed: Vec<u64> = turns
        .iter()
        .filter(|t| t["what"] == "killed")
        .map(|t| t["pid"].as_u64().unwrap())
        .collect();
    // With --max-down 0 the last process of the target is never killed.
    assert_eq!(killed.len(), 2, "{turns:#?}");
    assert!(
        turns[2..].iter().all(|t| t["what"] == "skipped"
            && t["detail"]
                .as_str()
                .unwrap()
                .contains("every kill would take a target down")),
        "{turns:#?}"
    );
    let mut alive = 0;
    for c in herd.iter_mut() {
        match c.try_wait().unwrap() {
            Some(status) => {
                assert!(killed.contains(&u64::from(c.id())));
                assert_eq!(
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    Some(9)
                );
            }
            None => alive += 1,
        }
    }
    assert_eq!(alive, 1);

    // A stop file ends it at its first turn; nothing is killed.
    let stop = home.dir().join("STOP");
    std::fs::write(&stop, "").unwrap();
    let out = support::ok(
        home.run(&[
            "chaos",
            "monkey",
            "--pattern",
            &pattern,
            "--every",
            "50ms",
            "--stop-file",
            stop.to_str().unwrap(),
        ]),
        "monkey with a stop file",
    );
    assert!(
        text(&out.stdout).contains("stopped    stop file"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        herd.iter_mut()
            .map(|c| c.try_wait().unwrap())
            .filter(Option::is_none)
            .count(),
        1
    );

    // Bad flags are named.
    let out = home.run(&["chaos", "monkey", "--every", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("say what to kill"));
    let out = home.run(&["chaos", "monkey", "--pattern", "x", "--window", "9-17"]);
    assert!(text(&out.stderr).contains("window \"9-17\": give HH:MM-HH:MM in UTC"));
    for c in herd.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn with_a_collector_every_injection_removal_and_verdict_is_a_searchable_event() {
    let collector = support::Serve::builder().start();
    let home = Home::new();
    let (scenario, _) = example(&home, "pause.toml");
    // Longer, so the run is surely still going when the injection is seen.
    let longer = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("duration = \"3s\"", "duration = \"5s\"")
        .replace("duration = \"1s\"", "duration = \"3s\"");
    std::fs::write(&scenario, longer).unwrap();
    let run = home
        .cmd(&["chaos", "run", "--json", "-q", scenario.to_str().unwrap()])
        .env("PLUMB_COLLECTOR", &collector.api)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = run.id();
    // Each injection is sent as it happens, not with the verdict.
    let live = wait_for(
        "the injection at the collector",
        Duration::from_secs(15),
        || {
            let out = home.run(&["search", "--collector", &collector.api, "chaos_injected"]);
            let still = proc_state(pid).is_some_and(|s| s != 'Z');
            text(&out.stdout)
                .contains("chaos_injected")
                .then_some(still)
        },
    );
    assert!(
        live,
        "the injection reached the collector only after the run ended"
    );
    let out = run.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("3 event(s) sent to {}", collector.api)),
        "{stderr}"
    );
    // The report links to the dashboard's timeline of the fault's window.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = report["faults"][0]["links"][0][1]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        link.starts_with(&format!("{}/timeline?since=", collector.api)),
        "{link}"
    );
    let search = |word: &str| {
        wait_for(
            "the events at the collector",
            Duration::from_secs(10),
            || {
                let out = home.run(&["search", "--collector", &collector.api, word]);
                let found = text(&out.stdout);
                found.contains(word).then_some(found)
            },
        )
    };
    let found = search("chaos_injected") + &search("chaos_removed") + &search("chaos_verdict");
    assert!(
        found.contains("kind=pause on=service: SIGSTOP pid"),
        "{found}"
    );
    assert!(found.contains("chaos_verdict deviated"), "{found}");
    let page = support::http(
        &collector.api,
        "GET",
        &link[collector.api.len()..],
        &[],
        b"",
    );
    assert_eq!(page.status, 200, "{link}");
    assert!(
        text(&page.body).contains("chaos_injected"),
        "the window shows the injection"
    );
    // ... and on the merged timeline, in order.
    let out = support::ok(
        home.run(&["timeline", "--collector", &collector.api]),
        "plumb timeline",
    );
    let timeline = text(&out.stdout);
    let at = |w: &str| {
        timeline
            .find(w)
            .unwrap_or_else(|| panic!("{w} in {timeline}"))
    };
    assert!(
        at("chaos_injected") < at("chaos_removed") && at("chaos_removed") < at("chaos_verdict")
    );

    // A collector that is away costs a warning, not the verdict.
    let out = home
        .cmd(&["chaos", "run", "-q", scenario.to_str().unwrap()])
        .env(
            "PLUMB_COLLECTOR",
            format!("http://127.0.0.1:{}", quiet_port()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("warning: cannot send the events to the collector"),
        "{}",
        text(&out.stderr)
    );
}

/// `any = true`: the kill hits a random process of a started target's
/// tree (a worker of a pool), seeded, and the pool's main process lives on.
#[test]
fn a_kill_with_any_hits_a_worker_of_the_pool_and_its_main_process_lives_on() {
    let home = Home::new();
    let secs = 600_000 + fastrand::u32(..99_999);
    let scenario = home.dir().join("pool.toml");
    let text_of = |kind: &str, extra: &str| {
        format!(
            r#"title = "a pool loses a worker"
duration = "1500ms"
seed = 7
interval = "200ms"

[[target]]
name = "pool"
command = ["sh", "-c", "sleep {secs} & sleep {secs} & sleep {secs} & wait"]

[[probe]]
name = "ok"
command = ["true"]

[[fault]]
kind = "{kind}"
target = "pool"
{extra}any = true
at = "500ms"
"#
        )
    };
    std::fs::write(&scenario, text_of("kill", "signal = \"SIGKILL\"\n")).unwrap();
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 0, "{stderr}");
    let action = report["faults"][0]["action"].as_str().unwrap();
    // With seed 7 the third of the four (by pid) is hit: a worker.
    assert!(
        action.starts_with("SIGKILL pid ") && action.contains(&format!("(sleep {secs}) of `pool`")),
        "{action}"
    );
    let exits = report["targets"][0]["exits"].to_string();
    assert!(
        exits.contains("killed by SIGTERM"),
        "the main process lived until the end: {exits}"
    );
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(&format!("sleep\0{secs}")))
        })
        .collect();
    assert!(left.is_empty(), "workers left running: {left:?}");
    assert_clean(&home, &report, home.dir());

    // `any` is for kill only.
    std::fs::write(&scenario, text_of("pause", "duration = \"1s\"\n")).unwrap();
    let out = home.run(&["chaos", "validate", scenario.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pool.toml:14: fault pause: `any` applies to kill only"),
        "{err}"
    );
}

/// examples/chaos/pressure.toml with `with = WHAT` on both its faults.
fn pressure_with(home: &Home, what: &str) -> PathBuf {
    let (scenario, _) = example(home, "pressure.toml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    let text = text
        .replace(
            "kind = \"cpu\"\n",
            &format!("kind = \"cpu\"\nwith = \"{what}\"\n"),
        )
        .replace(
            "kind = \"memory\"\n",
            &format!("kind = \"memory\"\nwith = \"{what}\"\n"),
        );
    assert_eq!(text.matches("\nwith = ").count(), 2, "{text}");
    std::fs::write(&scenario, text).unwrap();
    scenario
}

/// stress-ng processes (by comm) now.
fn stress_ng_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with("stress-ng"))
                && proc_state(*pid) != Some('Z')
        })
        .collect()
}

/// Where stress-ng is installed (.ci/install-run-health.sh), the default
/// load comes from it: its workers use the CPU, its worker holds the
/// memory, and none of its processes is left.
#[test]
fn cpu_and_memory_pressure_come_from_stress_ng_and_its_processes_go() {
    let home = Home::new();
    let scenario = pressure_with(&home, "stress-ng");
    let before = stress_ng_pids();
    let (_, report, stderr) = chaos(&home, &scenario, &[]);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{stderr}\n{report:#}");
    let cpu = &faults[0];
    let action = cpu["action"].as_str().unwrap();
    assert!(action.starts_with("stress-ng --cpu 2 (pid "), "{action}");
    // "stress-ng (pid 123) stopped after using 2.9s of CPU"
    let removal = cpu["removal"].as_str().unwrap();
    let used = removal
        .rsplit("using ")
        .next()
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let ns = plumb_model::parse_duration_ns(used).unwrap_or_else(|e| panic!("{removal}: {e}"));
    assert!(ns > 100_000_000, "its workers were busy: {removal}");
    let mem = &faults[1];
    let action = mem["action"].as_str().unwrap();
    // "stress-ng --vm 1 --vm-bytes 67108864 --vm-hang 0 (pid 7; resident memory 64.2 MiB)"
    assert!(action.contains("--vm-bytes 67108864"), "{action}");
    let resident: f64 = action
        .rsplit("resident memory ")
        .next()
        .and_then(|s| s.strip_suffix(" MiB)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{action}"));
    assert!(resident >= 57.0, "the memory is held: {action}");
    let after: Vec<u32> = stress_ng_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(after.is_empty(), "stress-ng left running: {after:?}");
    assert_clean(&home, &report, scenario.parent().unwrap());
}

/// A stress-ng fault on a machine without it, or an unknown generator, is
/// refused before anything starts.
#[test]
fn a_load_generator_that_is_not_there_or_unknown_is_named() {
    let home = Home::new();
    let scenario = pressure_with(&home, "stress");
    let out = home.run(&["chaos", "validate", scenario.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("with = \"stress\": \"stress-ng\" or \"plumb\""),
        "{err}"
    );
    let scenario = pressure_with(&home, "stress-ng");
    let out = home
        .cmd(&["chaos", "validate", scenario.to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stress-ng is not on PATH"), "{err}");
}

#[test]
fn cpu_and_memory_pressure_come_from_plumb_s_own_load_generator_and_go() {
    let home = Home::new();
    let scenario = pressure_with(&home, "plumb");
    let (_, report, stderr) = chaos(&home, &scenario, &[]);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{stderr}\n{report:#}");
    let cpu = &faults[0];
    assert_eq!(cpu["kind"], "cpu");
    assert_eq!(cpu["action"], "2 busy thread(s) in plumb");
    // "2 busy thread(s) stopped after using 2.9s of CPU"
    let used = cpu["removal"].as_str().unwrap();
    let secs = used
        .rsplit("using ")
        .next()
        .and_then(|s| s.split(' ').next())
        .unwrap();
    let ns = plumb_model::parse_duration_ns(secs).unwrap_or_else(|e| panic!("{used}: {e}"));
    assert!(ns > 100_000_000, "the threads were busy: {used}");
    let mem = &faults[1];
    assert_eq!(mem["kind"], "memory");
    let action = mem["action"].as_str().unwrap();
    // "64.0 MiB allocated and touched in plumb (resident memory grew by 64.1 MiB)"
    let grew: f64 = action
        .rsplit("grew by ")
        .next()
        .and_then(|s| s.strip_suffix(" MiB)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{action}"));
    assert!(grew >= 60.0, "the memory is resident: {action}");
    assert_eq!(mem["removal"], "64.0 MiB freed");
    assert_clean(&home, &report, scenario.parent().unwrap());
}

#[test]
fn the_demo_scene_runs_a_kill_an_eviction_and_a_latency_spike_and_cleans_up() {
    let home = Home::new();
    let out = support::ok(home.run(&["chaos", "demo"]), "plumb chaos demo");
    let shown = text(&out.stdout);
    for kind in ["kill     service", "evict    worker", "latency  api"] {
        assert!(shown.contains(kind), "{shown}");
    }
    assert!(
        shown.contains("over 150ms"),
        "the latency spike was seen: {shown}"
    );
    let html = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("HTML report: "))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        std::fs::read_to_string(html)
            .unwrap()
            .contains("hypothesis deviated")
    );
    // Nothing it started is left running, and its journal is empty.
    let journal = home.store().join("chaos/journal");
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 0);
    let dir = home.store().join("demo/chaos");
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir)
                && !matches!(proc_state(*pid), Some('Z') | None)
        })
        .collect();
    assert!(
        left.is_empty(),
        "processes left in {}: {left:?}",
        dir.display()
    );
}

/// A fresh cgroup (v1 pids controller, or v2) holding `pid`, removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn with(pid: u32) -> Option<Cgroup> {
        let name = format!("plumb-chaos-test-{}", fastrand::u32(..));
        let parent = [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.join("cgroup.procs").is_file())?;
        let dir = parent.join(name);
        std::fs::create_dir(&dir).ok()?;
        let g = Cgroup(dir);
        std::fs::write(g.0.join("cgroup.procs"), pid.to_string()).ok()?;
        Some(g)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_cgroup_is_a_target() {
    let home = Home::new();
    let mut member = bystander(600);
    let Some(group) = Cgroup::with(member.id()) else {
        member.kill().unwrap();
        member.wait().unwrap();
        assert!(!is_root(), "root can make a cgroup");
        eprintln!("skipped: cannot make a cgroup here");
        return;
    };
    let scenario = home.dir().join("cgroup.toml");
    std::fs::write(
        &scenario,
        format!(
            "duration = \"1s\"\n[[target]]\nname = \"group\"\ncgroup = \"{}\"\n\n[[fault]]\nkind = \"pause\"\ntarget = \"group\"\nall = true\nat = \"100ms\"\nduration = \"300ms\"\n",
            group.0.display()
        ),
    )
    .unwrap();
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(
        fault(&report)["action"],
        format!("SIGSTOP pid {} of `group`", member.id())
    );
    assert_ne!(proc_state(member.id()), Some('T'));
    // A directory that is no cgroup is named, with its line.
    std::fs::write(
        &scenario,
        "duration = \"1s\"\n[[target]]\nname = \"g\"\ncgroup = \"/tmp\"\n[[fault]]\nkind = \"kill\"\ntarget = \"g\"\nat = \"1ms\"\n",
    )
    .unwrap();
    let out = home.run(&["chaos", "run", scenario.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("cgroup.toml:2: target `g`: /tmp has no cgroup.procs"),
        "{}",
        text(&out.stderr)
    );
    member.kill().unwrap();
    member.wait().unwrap();
}

#[test]
fn a_metric_probe_sees_the_fragile_frontend_s_errors_climb() {
    let home = Home::new();
    let (scenario, ports) = example(&home, "down-fragile.toml");
    // The frontend's own count of failed checkouts must stay at 0.
    let mut text_ = std::fs::read_to_string(&scenario).unwrap();
    text_.push_str(&format!(
        "\n[[probe]]\nname = \"no failed checkouts\"\nmetric = \"http://127.0.0.1:{}/metrics\"\nseries = 'service_requests_total{{path=\"/checkout\",code=\"502\"}}'\nmax = 0\n",
        ports[&18453]
    ));
    std::fs::write(&scenario, text_).unwrap();
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let metric: Vec<&Value> = report["during"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["probe"] == "no failed checkouts")
        .collect();
    assert!(
        metric.iter().any(|c| c["detail"]
            .as_str()
            .unwrap()
            .starts_with("service_requests_total = ")
            && c["detail"].as_str().unwrap().contains("(over 0)")),
        "{metric:#?}"
    );
    // Bad series and bounds are named before anything runs.
    std::fs::write(
        &scenario,
        "duration = \"1s\"\n[[target]]\nname = \"t\"\nprocess = \"x\"\n[[probe]]\nname = \"m\"\nmetric = \"http://127.0.0.1:1/metrics\"\nseries = 'a{b=c}'\nmax = 1\n[[fault]]\nkind = \"kill\"\ntarget = \"t\"\nat = \"1ms\"\n",
    )
    .unwrap();
    let out = home.run(&["chaos", "validate", scenario.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains(":5: probe `m`: series \"a{b=c}\": label values are quoted"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn env_can_restart_a_target_as_another_user_and_back() {
    if !is_root() || !Path::new("/usr/bin/pgrep").exists() {
        eprintln!("skipped: needs root (to change user) and pgrep");
        return;
    }
    let home = Home::new();
    let secs = 500_000 + fastrand::u32(..99_999);
    let scenario = home.dir().join("user.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"duration = "2500ms"
interval = "100ms"
[[target]]
name = "t"
command = ["sleep", "{secs}"]

[[probe]]
name = "runs as root"
command = ["/usr/bin/pgrep", "-u", "root", "-f", "^sleep {secs}$"]

[[fault]]
kind = "env"
target = "t"
user = "nobody"
at = "500ms"
duration = "1s"
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = chaos(&home, &scenario, &[]);
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let f = fault(&report);
    assert!(
        f["action"]
            .as_str()
            .unwrap()
            .ends_with("`t` restarted as user nobody (uid 65534)"),
        "{f:#}"
    );
    assert!(
        during_fault(&report).iter().any(|c| c["ok"] == false),
        "it ran as nobody: {report:#}"
    );
    assert_eq!(report["after"][0]["ok"], true, "and as root again after");
    assert_clean(&home, &report, home.dir());
    let out = home.run(&["chaos", "validate", scenario.to_str().unwrap()]);
    assert!(support::ok(out, "validate").status.success());
    std::fs::write(
        &scenario,
        std::fs::read_to_string(&scenario)
            .unwrap()
            .replace("\"nobody\"", "\"no-such-user-here\""),
    )
    .unwrap();
    let out = home.run(&["chaos", "validate", scenario.to_str().unwrap()]);
    assert!(
        text(&out.stderr)
            .contains("user.toml:11: fault env: user \"no-such-user-here\" does not exist"),
        "{}",
        text(&out.stderr)
    );
}
