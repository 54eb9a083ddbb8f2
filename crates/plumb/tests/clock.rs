//! Clock offsets with real processes: `plumb clock probe` against a real
//! `plumb serve` on loopback, on this host's clock and on clocks shifted by
//! libfaketime (Debian package `faketime`, installed by
//! `.ci/install-clock.sh`); bad targets and counts.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn probe_json(cmd: Command) -> Value {
    let mut cmd = cmd;
    let out = ok(cmd.output().unwrap(), "plumb clock probe");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", text(&out.stdout));
    })
}

fn probe_cmd(home: &Home, target: &str) -> Command {
    home.cmd(&["clock", "probe", target, "--json"])
}

#[test]
fn probe_on_loopback_finds_the_same_clock_within_its_bound() {
    let serve = Serve::builder().start();
    let home = Home::new();
    let v = probe_json(probe_cmd(&home, &serve.api));
    let e = &v["estimate"];
    let (offset, error) = (
        e["offset_ns"].as_i64().unwrap(),
        e["error_ns"].as_i64().unwrap(),
    );
    // One clock on both ends: the true offset is zero.
    assert!(offset.abs() <= error, "{v}");
    assert!(error >= e["delay_ns"].as_i64().unwrap() / 2, "{v}");
    // Loopback round trips are far below a millisecond; a bound of 5 ms
    // would mean the stamps are taken far from the socket.
    assert!(error < 5_000_000, "{v}");
    assert_eq!(v["answered"], 8, "{v}");
    assert!(v["local_clock"]["state"].is_string(), "{v}");
    // The words say who sets clocks.
    let out = ok(
        home.cmd(&["clock", "probe", &serve.api]).output().unwrap(),
        "probe",
    );
    let t = text(&out.stdout);
    assert!(t.contains("chrony"), "{t}");
    assert!(t.contains("offset") && t.contains("error bound"), "{t}");
    // The collector counts what its probe server did in /metrics: the
    // 16 probes of the two `plumb clock probe` above.
    let metrics = serve.get("/metrics").unwrap();
    let answered: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plumb_clock_probes_answered_total "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(answered, 16, "{metrics}");
    assert!(
        metrics.contains("plumb_clock_probes_limited_total 0"),
        "{metrics}"
    );
}

#[test]
fn probe_under_faketime_reports_the_shift_within_its_bound() {
    let serve = Serve::builder().start();
    let home = Home::new();
    for (shift, ns) in [("+5s", 5_000_000_000i64), ("-2.5s", -2_500_000_000)] {
        let v = probe_json(shifted(probe_cmd(&home, &serve.api), shift));
        let e = &v["estimate"];
        let (offset, error) = (
            e["offset_ns"].as_i64().unwrap(),
            e["error_ns"].as_i64().unwrap(),
        );
        assert!(
            (offset - ns).abs() <= error,
            "shift {shift}: offset {offset} ± {error}: {v}"
        );
        // And it is not merely a wide bound.
        assert!(error < 5_000_000, "{v}");
    }
}

/// A UDP relay in front of the collector's probe port that holds each
/// packet back, as `tc qdisc ... netem delay D J` would on a link (this
/// VM's kernel has no sch_netem): `out` plus up to `jitter` on the way to
/// the collector, `back` plus up to `jitter` on the way back, so the two
/// directions differ, which is what an offset measurement cannot see.
struct DelayRelay {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DelayRelay {
    fn start(upstream: &str, out: Duration, back: Duration, jitter: Duration) -> DelayRelay {
        use std::net::UdpSocket;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        up.connect(upstream).unwrap();
        let addr = front.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None));
        let delay = move |base: Duration| base + jitter.mul_f64(fastrand::f64());
        for towards_collector in [true, false] {
            let (front, up, stop, client) =
                (front.clone(), up.clone(), stop.clone(), client.clone());
            std::thread::spawn(move || {
                let from = if towards_collector { &front } else { &up };
                from.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut buf = [0u8; 512];
                // Bounded by `stop`, set when the relay is dropped.
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = from.recv_from(&mut buf) else {
                        continue;
                    };
                    let packet = buf[..n].to_vec();
                    let (front, up) = (front.clone(), up.clone());
                    let wait = if towards_collector {
                        *client.lock().unwrap() = Some(peer);
                        delay(out)
                    } else {
                        delay(back)
                    };
                    let to = *client.lock().unwrap();
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        if towards_collector {
                            let _ = up.send(&packet);
                        } else if let Some(to) = to {
                            let _ = front.send_to(&packet, to);
                        }
                    });
                }
            });
        }
        DelayRelay { addr, stop }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Issue 15's netem test, with the delays made by a relay: a host 3 s
/// ahead (libfaketime) probing through a path of 1 ms out and 6 ms back,
/// each with up to 3 ms of jitter. Every sample's offset is off the truth
/// by half the asymmetry, and its bound (half its delay) must still hold
/// the truth in at least 99% of samples; the estimate must hold it too.
#[test]
fn through_an_asymmetric_jittery_path_the_true_offset_stays_inside_the_bounds() {
    let serve = Serve::builder().start();
    let home = Home::new();
    let port = serve.api.rsplit(':').next().unwrap();
    let relay = DelayRelay::start(
        &format!("127.0.0.1:{port}"),
        Duration::from_millis(1),
        Duration::from_millis(6),
        Duration::from_millis(3),
    );
    let truth = 3_000_000_000i64;
    let v = probe_json(shifted(
        home.cmd(&["clock", "probe", &relay.addr, "--json", "--count", "200"]),
        "+3s",
    ));
    let samples = v["samples"].as_array().unwrap();
    assert!(samples.len() >= 190, "{} answered", samples.len());
    let mut inside = 0;
    let mut errors = Vec::new();
    for s in samples {
        let t = |k: &str| s[k].as_i64().unwrap();
        let (t1, t2, t3, t4) = (t("t1"), t("t2"), t("t3"), t("t4"));
        // This clock minus the collector's: -θ, θ = ((T2-T1)+(T3-T4))/2.
        let offset = -((t2 - t1) + (t3 - t4)) / 2;
        let delay = (t4 - t1) - (t3 - t2);
        // The bound the estimate starts from: half the delay, plus the
        // clocks' reading precision.
        let bound = delay / 2 + plumb_model::clock::PRECISION_NS;
        if (offset - truth).abs() <= bound {
            inside += 1;
        }
        errors.push(offset - truth);
    }
    assert!(
        inside * 100 >= samples.len() * 99,
        "truth inside the bound in only {inside} of {}",
        samples.len()
    );
    // The path really was asymmetric: the samples put this clock ahead
    // of the truth by about half the difference, (6 - 1) / 2 ms.
    errors.sort();
    let median = errors[errors.len() / 2];
    assert!(
        (1_000_000..=4_000_000).contains(&median),
        "median error {median} ns"
    );
    let e = &v["estimate"];
    let (offset, error) = (
        e["offset_ns"].as_i64().unwrap(),
        e["error_ns"].as_i64().unwrap(),
    );
    assert!((offset - truth).abs() <= error, "{offset} ± {error}: {v}");
    assert!(error < 10_000_000, "a bound that says something: {error}");
}

#[test]
fn probe_of_the_clock_port_given_as_host_and_port() {
    let port = free_port();
    let serve = Serve::builder()
        .args(["--clock-port", &port.to_string()])
        .start();
    let home = Home::new();
    let v = probe_json(probe_cmd(&home, &format!("127.0.0.1:{port}")));
    assert_eq!(v["address"], format!("127.0.0.1:{port}"), "{v}");
    // The API's port number does not answer probes when another was
    // chosen.
    let api_port = serve.api.rsplit(':').next().unwrap();
    let out = home
        .cmd(&[
            "clock",
            "probe",
            &format!("127.0.0.1:{api_port}"),
            "--timeout",
            "300ms",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn bad_probes_get_clear_errors_in_bounded_time() {
    let home = Home::new();
    // A closed port: ICMP says so at once.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A port that is open and silent: the timeout bounds the wait.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![closed.to_string()], "the port is closed"),
        (
            vec![
                silent.clone(),
                "--count".into(),
                "2".into(),
                "--timeout".into(),
                "200ms".into(),
            ],
            "no answer to clock probes",
        ),
        (vec!["127.0.0.1".into()], "a port is needed"),
        (
            vec!["ftp://127.0.0.1:1".into()],
            "only http:// and https://",
        ),
        (vec!["127.0.0.1:99999".into()], "not a port"),
        (
            vec!["host.invalid:7700".into()],
            "cannot resolve `host.invalid:7700`",
        ),
        (
            vec!["127.0.0.1:7700".into(), "--count".into(), "0".into()],
            "0 is not in 1..=1000",
        ),
        (
            vec!["127.0.0.1:7700".into(), "--timeout".into(), "0s".into()],
            "not a positive duration",
        ),
    ];
    for (args, says) in cases {
        let started = Instant::now();
        let mut cmd = home.cmd(&["clock", "probe"]);
        let out = cmd.args(&args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?}");
    }
}

/// A plumb.toml evaluating alerts every 200 ms with only the clock rule.
fn clock_rule_config(dir: &std::path::Path) -> PathBuf {
    let mut toml = String::from("[alerts]\ninterval = \"200ms\"\n\n");
    for r in [
        "disk_low",
        "disk_fill",
        "node_down",
        "slow_run",
        "failure_rate",
        "new_error",
        "smart",
        "memory_errors",
        "thermal_throttle",
        "oom_kill",
        "io_errors",
        "pressure",
    ] {
        toml.push_str(&format!("[alerts.rules.{r}]\nenabled = false\n\n"));
    }
    toml.push_str("[alerts.rules.clock_offset]\nmax_offset = \"100ms\"\n");
    let path = dir.join("plumb.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn node<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
    view["nodes"].as_array()?.iter().find(|n| n["node"] == name)
}

#[test]
fn an_agent_under_faketime_shows_its_offset_in_plumb_clock_and_fires_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let config = clock_rule_config(dir.path());
    let serve = Serve::builder().env("PLUMB_CONFIG", &config).start();
    let agent = |name: &str, shift: Option<&str>| clock_agent(dir.path(), &serve.api, name, shift);
    let _skewed = agent("skewed", Some("+5s"));
    let _fine = agent("fine", None);
    let home = Home::new();
    let view = wait_for(
        "both nodes' clocks in plumb clock",
        Duration::from_secs(30),
        || {
            let out = home
                .cmd(&["clock", "--json", "--collector", &serve.api])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            (node(&v, "skewed").is_some() && node(&v, "fine").is_some()).then_some(v)
        },
    );
    let skewed = node(&view, "skewed").unwrap();
    let (offset, error) = (
        skewed["offset_ns"].as_i64().unwrap(),
        skewed["error_ns"].as_i64().unwrap(),
    );
    assert!((offset - 5_000_000_000).abs() <= error, "{view}");
    assert!(error < 5_000_000, "{view}");
    assert_eq!(skewed["beyond"], true, "{view}");
    let fine = node(&view, "fine").unwrap();
    let (offset, error) = (
        fine["offset_ns"].as_i64().unwrap(),
        fine["error_ns"].as_i64().unwrap(),
    );
    assert!(offset.abs() <= error, "{view}");
    assert_eq!(fine["beyond"], false, "{view}");
    assert!(view["collector"]["state"].is_string(), "{view}");
    assert_eq!(view["max_offset_ns"], 100_000_000, "{view}");
    // The table says the same in words.
    let out = ok(
        home.cmd(&["clock", "--collector", &serve.api])
            .output()
            .unwrap(),
        "plumb clock",
    );
    let t = text(&out.stdout);
    let line = t
        .lines()
        .find(|l| l.starts_with("skewed"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(line.contains("+4.99") || line.contains("+5.00"), "{line}");
    assert!(line.contains("BEYOND 100"), "{line}");
    assert!(
        t.contains("collector clock:") && t.contains("chrony"),
        "{t}"
    );
    // The skewed node, and only it, fires the clock alert, whose words
    // say who sets clocks.
    let alert = wait_for(
        "the ClockOffset alert to fire",
        Duration::from_secs(30),
        || {
            let v = get_json(&serve.api, "/api/v1/alerts");
            v["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "ClockOffset" && a["state"] == "firing")
                .cloned()
        },
    );
    assert_eq!(alert["labels"]["node"], "skewed", "{alert}");
    let d = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        d.contains("ahead of the collector's") && d.contains("chrony"),
        "{d}"
    );
    let v = get_json(&serve.api, "/api/v1/alerts");
    let clock_alerts = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "ClockOffset")
        .count();
    assert_eq!(clock_alerts, 1, "{v}");
    // The collector's own store, read directly, says the same.
    let local = plumb_at(dir.path(), &["clock", "--json", "--local"])
        .env("PLUMB_HOME", &serve.data)
        .env("PLUMB_CONFIG", &config)
        .output()
        .unwrap();
    let local: Value = serde_json::from_slice(&ok(local, "plumb clock --local").stdout).unwrap();
    assert!(node(&local, "skewed").is_some(), "{local}");
    // Read locally, the clock described is this host's, not "the
    // collector's" (the reader may not be on the collector's host).
    let local = plumb_at(dir.path(), &["clock", "--local"])
        .env("PLUMB_HOME", &serve.data)
        .env("PLUMB_CONFIG", &config)
        .output()
        .unwrap();
    let t = text(&ok(local, "plumb clock --local").stdout);
    assert!(
        t.contains("this host's clock:") && !t.contains("collector clock"),
        "{t}"
    );
}

/// The demo's skewed node on machines without libfaketime: an agent told
/// to simulate an offset reports that offset, within its error bound, and
/// a bad value is refused.
#[test]
fn a_simulated_clock_offset_is_measured_like_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::builder().start();
    let home = dir.path().join("sim");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = plumb_in(&home);
    cmd.args([
        "agent",
        "--name",
        "sim",
        "--interval",
        "200ms",
        "--clock-every",
        "200ms",
        "--simulate-clock-offset",
        "-2s",
        "--collector",
        &serve.api,
    ]);
    let _agent = Proc(cmd.spawn().expect("plumb agent starts"));
    let view = wait_for("the node's clock measured", Duration::from_secs(30), || {
        let v = get_json(&serve.api, "/api/v1/clock");
        node(&v, "sim").is_some().then_some(v)
    });
    let sim = node(&view, "sim").unwrap();
    let offset = sim["offset_ns"].as_i64().unwrap();
    let error = sim["error_ns"].as_i64().unwrap();
    assert!(
        (offset + 2_000_000_000).abs() <= error.max(2_000_000),
        "{view}"
    );
    let out = plumb_in(&home)
        .args([
            "agent",
            "--simulate-clock-offset",
            "2 s",
            "--collector",
            &serve.api,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--simulate-clock-offset"));
}
