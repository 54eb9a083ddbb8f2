//! Alerts end to end with real processes: a real `plumb serve` with alert
//! rules in its plumb.toml, a real `plumb agent` watching a small tmpfs, a
//! webhook receiver and an exec command run by the test. Filling the tmpfs
//! fires the disk alert (once, however many evaluations), a collector
//! restart neither loses it nor notifies it again, freeing the space
//! resolves it, and killing the agent fires node down.
//!
//! Needs root (to mount the tmpfs), as tests have on this machine and in CI;
//! and promtool (Debian package prometheus, see .ci/install-collector.sh).

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// A webhook receiver on 127.0.0.1: keeps every JSON body posted to it.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_request(stream) {
                    let v: Value = serde_json::from_slice(&body).expect("the payload is JSON");
                    g.lock().unwrap().push(v);
                }
            }
        });
        Receiver { url, got }
    }

    /// Payloads whose alerts include `alertname` with `status`.
    /// Waits up to `secs` for a payload with an alert `alertname` in
    /// `status`, and returns the first.
    fn first(&self, alertname: &str, status: &str, secs: u64) -> Value {
        let what = format!("{alertname} {status} at the webhook");
        wait_for(&what, Duration::from_secs(secs), || {
            self.matching(alertname, status).into_iter().next()
        })
    }

    fn matching(&self, alertname: &str, status: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|p| {
                p["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["labels"]["alertname"] == alertname && a["status"] == status)
            })
            .cloned()
            .collect()
    }
}

fn read_request(mut stream: std::net::TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0;
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    assert!(first.starts_with("POST /hook "), "{first}");
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
        if k.eq_ignore_ascii_case("content-type") {
            assert_eq!(v.trim(), "application/json");
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    Some(body)
}

/// `plumb serve` with `config` as its plumb.toml on a fixed port (so a
/// restart keeps the address); killed on drop.
fn serve(data: &Path, config: &Path, port: u16) -> Serve {
    Serve::builder()
        .data(data)
        .port(port)
        .env("PLUMB_CONFIG", config)
        .start()
}

/// Waits until the file at `path` holds `needle` (what the exec command
/// writes), and returns its text.
fn file_with(path: &Path, needle: &str) -> String {
    let what = format!("`{needle}` in {}", path.display());
    wait_for(&what, Duration::from_secs(10), || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.contains(needle))
    })
}

fn alerts(url: &str) -> Value {
    serde_json::from_str(&get(url, "/api/v1/alerts").expect("GET /api/v1/alerts")).unwrap()
}

#[test]
fn a_filling_tmpfs_fires_the_disk_alert_to_a_webhook_and_an_exec_then_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount("16m");
    let mount = std::fs::canonicalize(fs.path()).unwrap();
    let mount_s = mount.to_str().unwrap().to_string();
    let receiver = Receiver::start();
    let exec_out = tmp.path().join("exec.jsonl");
    let exec_env = tmp.path().join("exec.env");
    let config = tmp.path().join("plumb.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
interval = "200ms"

[alerts.rules.disk_low]
mounts = [{mount_s:?}]

[alerts.rules.node_down]
for = "0s"

[[alerts.webhook]]
url = "{}"

[[alerts.exec]]
command = "{{ cat; echo; }} >> {}; echo \"$PLUMB_ALERT_STATUS $PLUMB_ALERT_NAMES\" >> {}"
timeout = "5s"
"#,
            receiver.url,
            exec_out.display(),
            exec_env.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("collector");
    let home = tmp.path().join("node");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let mut collector = serve(&data, &config, port);
    let url = collector.api.clone();
    // Without hardware health: this machine's own (an OOM kill by another
    // test, memory pressure) would add alerts this test does not expect.
    let agent = Agent::start(
        &home,
        &url,
        "disky",
        "200ms",
        &["--mount", &mount_s, "--no-health"],
    );
    // The agent reports the tmpfs although tmpfs is skipped by default.
    wait_for(
        "the agent reports the tmpfs given with --mount",
        Duration::from_secs(20),
        || ({ get(&url, "/api/v1/nodes").is_some_and(|b| b.contains(&mount_s)) }).then_some(()),
    );
    assert!(receiver.matching("DiskSpaceLow", "firing").is_empty());

    // Fill it past 95%: the critical disk alert fires.
    let fill = mount.join("fill");
    std::fs::write(&fill, vec![1u8; 15 * 1024 * 1024 + 512 * 1024]).unwrap();
    let p = &receiver.first("DiskSpaceLow", "firing", 30);
    assert_eq!(p["version"], "4");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["receiver"], "webhook-0");
    assert_eq!(p["groupLabels"]["alertname"], "DiskSpaceLow");
    assert_eq!(p["groupKey"], "{}:{alertname=\"DiskSpaceLow\"}");
    assert_eq!(p["truncatedAlerts"], 0);
    assert_eq!(p["externalURL"], url.as_str());
    assert_eq!(p["commonLabels"]["node"], "disky");
    let a = &p["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "DiskSpaceLow");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["node"], "disky");
    assert_eq!(a["labels"]["mount"], mount_s.as_str());
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert!(a["startsAt"].as_str().unwrap().ends_with('Z'), "{a}");
    let fp = a["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 16);
    assert!(a["generatorURL"].as_str().unwrap().starts_with(&url));
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("space left"),
        "{a}"
    );
    assert!(a["annotations"]["description"].is_string());

    // Several evaluations later it has still been told once.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.matching("DiskSpaceLow", "firing").len(), 1);
    // The exec command got the same JSON on stdin, and the variables.
    file_with(&exec_out, "DiskSpaceLow");
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&exec_out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["receiver"], "exec-0");
    assert_eq!(first["alerts"][0]["fingerprint"], fp.as_str());
    assert!(
        std::fs::read_to_string(&exec_env)
            .unwrap()
            .contains("firing DiskSpaceLow")
    );

    // The API, the CLI and /metrics show it.
    let list = alerts(&url);
    let firing: Vec<&Value> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{list}");
    assert_eq!(firing[0]["fingerprint"], fp.as_str());
    assert_eq!(firing[0]["name"], "DiskSpaceLow");
    let starts_at = firing[0]["starts_at"].clone();
    assert!(firing[0]["last_notified"].is_number());
    assert!(
        list["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule"] == "disk_low")
    );
    let out = plumb_in(&home)
        .args(["alerts", "--collector", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("STATE")
            && text.contains("firing")
            && text.contains("DiskSpaceLow")
            && text.contains("node=disky"),
        "{text}"
    );
    let out = plumb_in(&home)
        .args(["alerts", "rules", "--collector", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("disk_low") && text.contains("failure_rate") && text.contains("10%"),
        "{text}"
    );
    let metrics = get(&url, "/metrics").unwrap();
    assert!(
        metrics.contains("plumb_alerts_firing{alertname=\"DiskSpaceLow\",severity=\"critical\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("fingerprint=\"{fp}\"")),
        "{metrics}"
    );
    promtool_ok(&metrics);

    // A restarted collector keeps the alert and does not tell it again.
    collector.kill9();
    drop(collector);
    let collector = serve(&data, &config, port);
    std::thread::sleep(Duration::from_millis(1500));
    let list = alerts(&url);
    let again = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["fingerprint"] == fp.as_str())
        .cloned()
        .unwrap();
    assert_eq!(again["state"], "firing", "{list}");
    assert_eq!(again["starts_at"], starts_at);
    assert_eq!(receiver.matching("DiskSpaceLow", "firing").len(), 1);

    // Freeing the space resolves it, told once.
    std::fs::remove_file(&fill).unwrap();
    let r = &receiver.first("DiskSpaceLow", "resolved", 30);
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["alerts"][0]["fingerprint"], fp.as_str());
    assert_ne!(r["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    file_with(&exec_env, "resolved DiskSpaceLow");

    // A killed agent: its node goes down and that fires.
    drop(agent);
    let d = &receiver.first("NodeDown", "firing", 60);
    assert_eq!(d["alerts"][0]["labels"]["node"], "disky");
    assert_eq!(d["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(receiver.matching("DiskSpaceLow", "resolved").len(), 1);
    drop(collector);
}

#[test]
fn bad_alert_rules_are_named_and_stop_the_collector() {
    let tmp = tempfile::tempdir().unwrap();
    for (toml, needle) in [
        (
            "[alerts.rules.disk_low]\nwarning_below = 150\n",
            "alerts.rules.disk_low.warning_below",
        ),
        ("[alerts.rules.disk_low]\nwarn_below = 3\n", "warn_below"),
        ("[alerts.rules.node_down]\nfor = \"soon\"\n", "soon"),
        ("[alerts.rules.failure_rate]\nseverity = \"dire\"\n", "dire"),
        (
            "[[alerts.webhook]]\nurl = \"ftp://x\"\n",
            "alerts.webhook[0].url",
        ),
    ] {
        let config = tmp.path().join("plumb.toml");
        std::fs::write(&config, toml).unwrap();
        let out = plumb()
            .args(["serve", "--otlp-listen", "off", "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("PLUMB_CONFIG", &config)
            .env("PLUMB_HOME", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}: {out:?}");
        assert!(err.contains(needle), "{toml}: no `{needle}` in {err}");
    }
}

/// Checks the Alertmanager v4 webhook shape of a payload sent by the
/// collector at `url` for one alert `alertname` in `status`, and returns
/// that alert.
fn assert_v4(p: &Value, url: &str, alertname: &str, status: &str) -> Value {
    assert_eq!(p["version"], "4", "{p}");
    assert_eq!(p["status"], status, "{p}");
    assert_eq!(p["receiver"], "webhook-0", "{p}");
    assert_eq!(p["groupLabels"]["alertname"], alertname, "{p}");
    assert_eq!(
        p["groupKey"],
        format!("{{}}:{{alertname=\"{alertname}\"}}").as_str(),
        "{p}"
    );
    assert_eq!(p["truncatedAlerts"], 0, "{p}");
    assert_eq!(p["externalURL"], url, "{p}");
    assert_eq!(p["commonLabels"]["alertname"], alertname, "{p}");
    let alerts = p["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "one alert in the group: {p}");
    let a = alerts[0].clone();
    assert_eq!(a["status"], status, "{a}");
    assert_eq!(a["labels"]["alertname"], alertname, "{a}");
    assert!(a["labels"]["severity"].is_string(), "{a}");
    assert!(a["startsAt"].as_str().unwrap().ends_with('Z'), "{a}");
    if status == "firing" {
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z", "{a}");
    } else {
        let ends = a["endsAt"].as_str().unwrap();
        assert!(
            ends != "0001-01-01T00:00:00Z" && ends >= a["startsAt"].as_str().unwrap(),
            "a resolved alert ends after it starts: {a}"
        );
    }
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16, "{a}");
    assert!(a["generatorURL"].as_str().unwrap().starts_with(url), "{a}");
    assert!(
        !a["annotations"]["summary"].as_str().unwrap().is_empty(),
        "{a}"
    );
    assert!(a["annotations"]["description"].is_string(), "{a}");
    a
}

/// A plumb.toml evaluating every 200 ms with only `rule` enabled (so the
/// machine's own state cannot fire anything else), plus `extra` lines for
/// that rule, and the receiver as the one webhook.
fn one_rule_config(dir: &Path, receiver: &Receiver, rule: &str, extra: &str) -> PathBuf {
    let mut toml = String::from("[alerts]\ninterval = \"200ms\"\n\n");
    for r in [
        "disk_low",
        "disk_fill",
        "node_down",
        "slow_run",
        "failure_rate",
        "new_error",
        "clock_offset",
        "smart",
        "memory_errors",
        "thermal_throttle",
        "oom_kill",
        "io_errors",
        "pressure",
    ] {
        toml.push_str(&format!("[alerts.rules.{r}]\nenabled = {}\n", r == rule));
        if r == rule {
            toml.push_str(extra);
            toml.push('\n');
        }
        toml.push('\n');
    }
    toml.push_str(&format!("[[alerts.webhook]]\nurl = \"{}\"\n", receiver.url));
    let path = dir.join("plumb.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// `plumb run --name NAME -- sh -c SCRIPT`, shipped to `url`; returns its
/// exit code.
fn run_shipped(home: &Path, url: &str, name: &str, script: &str) -> Option<i32> {
    plumb_in(home)
        .env("PLUMB_COLLECTOR", url)
        .env("PLUMB_SPOOL", home.join("spool"))
        .env("PLUMB_OUTBOX", home.join("outbox"))
        .args(["run", "--name", name, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .code()
}

/// Runs of `name` the collector holds as finished.
fn finished_runs(url: &str, name: &str) -> usize {
    get(url, &format!("/api/v1/runs?name={name}"))
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| {
            let runs = v
                .as_array()
                .cloned()
                .or_else(|| v["runs"].as_array().cloned())?;
            Some(
                runs.iter()
                    .filter(|r| !r["ended"].is_null() && r["name"] == name)
                    .count(),
            )
        })
        .unwrap_or(0)
}

/// What the single-rule tests share: a webhook receiver, a collector with
/// only `rule` enabled on a fixed port (so a restart keeps its address) and
/// a node's home beside it.
struct RuleTest {
    receiver: Receiver,
    collector: Serve,
    url: String,
    home: PathBuf,
    data: PathBuf,
    config: PathBuf,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl RuleTest {
    fn start(rule: &str, extra: &str) -> RuleTest {
        let tmp = tempfile::tempdir().unwrap();
        let receiver = Receiver::start();
        let config = one_rule_config(tmp.path(), &receiver, rule, extra);
        let data = tmp.path().join("collector");
        let home = tmp.path().join("node");
        std::fs::create_dir_all(&home).unwrap();
        let port = free_port();
        let collector = serve(&data, &config, port);
        RuleTest {
            receiver,
            url: collector.api.clone(),
            collector,
            home,
            data,
            config,
            port,
            _tmp: tmp,
        }
    }

    /// Restarts the collector after kill -9, lets it evaluate several
    /// times, and checks nothing was told again.
    fn restart_tells_nothing_new(&mut self) {
        let before = self.receiver.got.lock().unwrap().len();
        self.collector.kill9();
        self.collector = serve(&self.data, &self.config, self.port);
        // Ten evaluations at 200 ms, and time for a delivery to arrive.
        std::thread::sleep(Duration::from_millis(2500));
        let got = self.receiver.got.lock().unwrap();
        assert_eq!(
            got.len(),
            before,
            "a restarted collector notified again: {:?}",
            &got[before..]
        );
    }
}

#[test]
fn a_job_failing_too_often_fires_survives_a_restart_and_resolves_when_it_recovers() {
    let mut t = RuleTest::start("failure_rate", "above = 0.5\nlast = 4\nmin_runs = 4");
    let (url, home) = (t.url.clone(), t.home.clone());

    // Three failures out of three: not enough runs to judge yet.
    for _ in 0..3 {
        assert_eq!(run_shipped(&home, &url, "etl", "exit 3"), Some(3));
    }
    wait_for(
        "the runs reach the collector",
        Duration::from_secs(20),
        || (finished_runs(&url, "etl") == 3).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        t.receiver.got.lock().unwrap().is_empty(),
        "three runs are below min_runs = 4: {:?}",
        t.receiver.got.lock().unwrap()
    );

    // The fourth failure: 4 of the last 4 failed.
    assert_eq!(run_shipped(&home, &url, "etl", "exit 3"), Some(3));
    let p = t.receiver.first("JobFailureRate", "firing", 30);
    let a = assert_v4(&p, &url, "JobFailureRate", "firing");
    assert_eq!(a["labels"]["job"], "etl", "{a}");
    assert_eq!(a["labels"]["severity"], "warning", "{a}");
    assert_eq!(p["commonLabels"]["job"], "etl", "{p}");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("4 of the last 4 runs of etl failed"),
        "{a}"
    );
    let fp = a["fingerprint"].as_str().unwrap().to_string();

    // Restarted while firing: still firing, told once.
    t.restart_tells_nothing_new();
    let list = alerts(&url);
    assert!(
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["fingerprint"] == fp.as_str() && a["state"] == "firing"),
        "{list}"
    );

    // Three successes: 1 of the last 4 failed, below the share: resolved.
    for _ in 0..3 {
        assert_eq!(run_shipped(&home, &url, "etl", "true"), Some(0));
    }
    let r = t.receiver.first("JobFailureRate", "resolved", 30);
    let ra = assert_v4(&r, &url, "JobFailureRate", "resolved");
    assert_eq!(ra["fingerprint"], fp.as_str());
    assert_eq!(ra["startsAt"], a["startsAt"], "the same episode");
    t.restart_tells_nothing_new();
    assert_eq!(t.receiver.matching("JobFailureRate", "firing").len(), 1);
    assert_eq!(t.receiver.matching("JobFailureRate", "resolved").len(), 1);
}

#[test]
fn a_run_longer_than_usual_fires_then_resolves_when_it_ends_and_a_restart_is_quiet() {
    let mut t = RuleTest::start("slow_run", "min_history = 3\nfactor = 1.0");
    let (url, home) = (t.url.clone(), t.home.clone());
    for _ in 0..3 {
        assert_eq!(run_shipped(&home, &url, "nightly", "true"), Some(0));
    }
    wait_for(
        "the quick runs reach the collector",
        Duration::from_secs(20),
        || (finished_runs(&url, "nightly") == 3).then_some(()),
    );
    // Quick runs take milliseconds; a run of several seconds passes both
    // their p95 and the 1 s floor, even on a loaded machine.
    let slow = Proc(
        plumb_in(&home)
            .env("PLUMB_COLLECTOR", &url)
            .env("PLUMB_SPOOL", home.join("spool"))
            .env("PLUMB_OUTBOX", home.join("outbox"))
            .args(["run", "--name", "nightly", "--", "sleep", "6"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let p = t.receiver.first("RunLongerThanUsual", "firing", 20);
    let a = assert_v4(&p, &url, "RunLongerThanUsual", "firing");
    assert_eq!(a["labels"]["job"], "nightly", "{a}");
    assert_eq!(a["labels"]["severity"], "warning", "{a}");
    let run_id = a["labels"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(run_id.len(), 36, "{a}");
    assert!(a["labels"]["node"].is_string(), "{a}");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("longer than usual"),
        "{a}"
    );

    // The run ends: the condition clears and the resolution is told.
    let mut slow = slow;
    assert!(slow.0.wait().unwrap().success());
    let r = t.receiver.first("RunLongerThanUsual", "resolved", 30);
    let ra = assert_v4(&r, &url, "RunLongerThanUsual", "resolved");
    assert_eq!(ra["labels"]["run_id"], run_id.as_str());
    assert_eq!(ra["fingerprint"], a["fingerprint"]);
    t.restart_tells_nothing_new();
    assert_eq!(t.receiver.matching("RunLongerThanUsual", "firing").len(), 1);
    assert_eq!(
        t.receiver.matching("RunLongerThanUsual", "resolved").len(),
        1
    );
}

#[test]
fn a_new_error_group_fires_once_across_a_restart_and_resolves_with_the_group() {
    let mut t = RuleTest::start("new_error", "");
    let (url, home) = (t.url.clone(), t.home.clone());
    let script = "python3 -c 'raise KeyError(\"alert-e2e\")'";
    assert_eq!(run_shipped(&home, &url, "lookup", script), Some(1));
    let p = t.receiver.first("NewErrorGroup", "firing", 30);
    let a = assert_v4(&p, &url, "NewErrorGroup", "firing");
    assert_eq!(a["labels"]["kind"], "KeyError", "{a}");
    let group = a["labels"]["error"].as_str().unwrap().to_string();
    let groups: Value = serde_json::from_str(&get(&url, "/api/v1/errors").unwrap()).unwrap();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["fingerprint"] == group.as_str() && g["status"] == "new"),
        "the label names the error group: {groups}"
    );
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("KeyError"),
        "{a}"
    );

    // A restarted collector starts watching anew, yet the group it already
    // alerted about is neither forgotten (resolved) nor told again.
    t.restart_tells_nothing_new();
    // The same error again only counts in the group: no second alert.
    assert_eq!(run_shipped(&home, &url, "lookup", script), Some(1));
    wait_for(
        "the second occurrence joins the group",
        Duration::from_secs(30),
        || {
            ({
                get(&url, &format!("/api/v1/errors/{group}"))
                    .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                    .is_some_and(|g| g["group"]["count"] == 2)
            })
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(t.receiver.matching("NewErrorGroup", "firing").len(), 1);
    assert!(t.receiver.matching("NewErrorGroup", "resolved").is_empty());

    // Resolving the group clears the condition: the alert resolves.
    let out = plumb_in(&home)
        .args(["errors", "resolve", &group, "--collector", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = t.receiver.first("NewErrorGroup", "resolved", 30);
    let ra = assert_v4(&r, &url, "NewErrorGroup", "resolved");
    assert_eq!(ra["labels"]["error"], group.as_str());
    t.restart_tells_nothing_new();
    assert_eq!(t.receiver.matching("NewErrorGroup", "firing").len(), 1);
    assert_eq!(t.receiver.matching("NewErrorGroup", "resolved").len(), 1);
}
