//! Alerts end to end with real processes: a real `plumb serve` with alert
//! rules in its plumb.toml, a real `plumb agent` watching a small tmpfs, a
//! webhook receiver and an exec command run by the test. Filling the tmpfs
//! fires the disk alert (once, however many evaluations), a collector
//! restart neither loses it nor notifies it again, freeing the space
//! resolves it, and killing the agent fires node down.
//!
//! Needs root (to mount the tmpfs), as tests have on this machine and in CI;
//! and promtool (Debian package prometheus, see .ci/install-collector.sh).

mod ship_common;

use serde_json::Value;
use ship_common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount (tests need it, as root): {e}"));
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs at {} (the disk-alert test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

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
    let mut child = Command::new(PLUMB)
        .args(["serve", "--otlp-listen", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(data)
        .env("PLUMB_HOME", data)
        .env("PLUMB_CONFIG", config)
        .env_remove("PLUMB_COLLECTOR")
        .env_remove("PLUMB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("api"), "plumb serve printed {line:?}");
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for(Duration::from_secs(30), || get(&url, "/readyz").is_some()),
        "collector never ready"
    );
    Serve { child, url }
}

fn alerts(url: &str) -> Value {
    serde_json::from_str(&get(url, "/api/v1/alerts").expect("GET /api/v1/alerts")).unwrap()
}

fn promtool_ok(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; see .ci/install-collector.sh)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_filling_tmpfs_fires_the_disk_alert_to_a_webhook_and_an_exec_then_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&tmp.path().join("small"), "16m");
    let mount = std::fs::canonicalize(&fs.0).unwrap();
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
    let url = collector.url.clone();
    let agent = Proc(
        plumb(&home)
            .args(["agent", "--name", "disky", "--interval", "200ms"])
            .args(["--collector", &url, "--mount"])
            .arg(&mount)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The agent reports the tmpfs although tmpfs is skipped by default.
    assert!(
        wait_for(Duration::from_secs(20), || {
            get(&url, "/api/v1/nodes").is_some_and(|b| b.contains(&mount_s))
        }),
        "the agent reports the tmpfs given with --mount"
    );
    assert!(receiver.matching("DiskSpaceLow", "firing").is_empty());

    // Fill it past 95%: the critical disk alert fires.
    let fill = mount.join("fill");
    std::fs::write(&fill, vec![1u8; 15 * 1024 * 1024 + 512 * 1024]).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || !receiver
            .matching("DiskSpaceLow", "firing")
            .is_empty()),
        "a firing payload reaches the webhook; got {:?}",
        receiver.got.lock().unwrap()
    );
    let p = &receiver.matching("DiskSpaceLow", "firing")[0];
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
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            &exec_out
        )
        .is_ok_and(|t| t.contains("DiskSpaceLow"))),
        "the exec command wrote its stdin"
    );
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
    let out = plumb(&home)
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
    let out = plumb(&home)
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
    assert!(
        wait_for(Duration::from_secs(30), || !receiver
            .matching("DiskSpaceLow", "resolved")
            .is_empty()),
        "a resolved payload reaches the webhook"
    );
    let r = &receiver.matching("DiskSpaceLow", "resolved")[0];
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["alerts"][0]["fingerprint"], fp.as_str());
    assert_ne!(r["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            &exec_env
        )
        .is_ok_and(|t| t.contains("resolved DiskSpaceLow"))),
        "the exec command is told of the resolution"
    );

    // A killed agent: its node goes down and that fires.
    drop(agent);
    assert!(
        wait_for(Duration::from_secs(60), || !receiver
            .matching("NodeDown", "firing")
            .is_empty()),
        "node down reaches the webhook; alerts: {}",
        alerts(&url)
    );
    let d = &receiver.matching("NodeDown", "firing")[0];
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
        let out = Command::new(PLUMB)
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
