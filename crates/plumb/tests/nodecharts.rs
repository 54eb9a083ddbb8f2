//! Node charts end to end: a real `plumb serve` whose clock is moved by
//! libfaketime (a timestamp file it rereads, so the test steps the
//! collector through simulated minutes and hours), heartbeats posted
//! through the real ingest API, and what the node page, its JSON twin, the
//! nodes list and `plumb nodes show` say about them: the highest value per
//! minute and per ten minutes, empty intervals left empty, a single
//! sample, states from the failure detector, the disk-fill prediction, and
//! a hostile mount name escaped.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use support::*;

const MIN: i64 = 60_000_000_000;
const SEC: i64 = 1_000_000_000;
const HOSTILE_MOUNT: &str = "/mnt/<b>x</b>&\"q";

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The collector's clock: libfaketime rereads the offset in `file` at every
/// call (FAKETIME_NO_CACHE), monotonic clocks left alone so timers work.
struct Clock {
    file: PathBuf,
}

impl Clock {
    fn new(dir: &std::path::Path) -> Clock {
        let c = Clock {
            file: dir.join("faketime"),
        };
        c.write(0);
        c
    }

    fn write(&self, secs: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{secs:+}s\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Moves the collector's clock so that it reads `t` (ns) now, to the
    /// second.
    fn set(&self, t: i64) {
        self.write((t - real_now()).div_euclid(SEC));
    }

    fn serve(&self) -> Serve {
        Serve::builder()
            .env("LD_PRELOAD", faketime_lib())
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_RESET", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .start()
    }
}

/// A heartbeat: memory and disks of 1,000 bytes each, `available` given.
fn report(node: &str, load: f64, mem_available: u64, disks: &[(&str, u64)]) -> Value {
    json!({
        "version": 1, "node": node, "sent": real_now(), "seq": 1, "interval_ms": 1000,
        "cpu": {"load1": load, "load5": 0.0, "load15": 0.0, "cpus": 4},
        "memory": {"total": 1000, "available": mem_available, "swap_total": 0, "swap_free": 0},
        "disks": disks.iter().map(|(m, a)| json!({
            "mount": m, "fs_type": "ext4", "device": "/dev/x", "total": 1000, "available": a,
            "inodes_total": 0, "inodes_free": 0
        })).collect::<Vec<_>>(),
    })
}

#[track_caller]
fn beat(api: &str, r: &Value) {
    let (code, body) = http(
        api,
        "POST",
        "/api/v1/ingest/node",
        &[("Content-Type", "application/json")],
        r.to_string().as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{body}");
}

/// `(minutes after m0, value)` of a chart series.
fn series(v: &Value, m0: i64) -> Vec<(i64, f64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("a series: {v}"))
        .iter()
        .map(|p| {
            let at = p["at"].as_i64().unwrap();
            assert_eq!((at - m0).rem_euclid(MIN), 0, "at a minute's start: {p}");
            ((at - m0) / MIN, p["value"].as_f64().unwrap())
        })
        .collect()
}

/// Points drawn in the `<svg id="{id}">` of a page: the coordinate pairs of
/// its lines.
fn svg_points(html: &str, id: &str) -> usize {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    svg.split("<polyline class=\"line\"")
        .skip(1)
        .map(|p| {
            let pts = p.split("points=\"").nth(1).unwrap();
            pts[..pts.find('"').unwrap()].split_whitespace().count()
        })
        .sum()
}

#[test]
fn node_charts_show_the_highest_per_interval_gaps_states_and_the_fill_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new(dir.path());
    let serve = clock.serve();
    let api = serve.api.clone();
    // A day ahead, on a ten-minute boundary: nothing real is there.
    let m0 = {
        let t = real_now() + 24 * 60 * MIN;
        t - t.rem_euclid(10 * MIN) + 10 * MIN
    };
    let at = |t: i64| {
        clock.set(t);
        // The collector reads the file at each call: once it says so, its
        // heartbeats land there (bounded: the clock file is written).
        wait_for(
            "the collector's clock to move",
            Duration::from_secs(10),
            || {
                let now = get_json(&api, "/api/v1/pages/nodes")["now"].as_i64()?;
                ((now - t).abs() < 5 * SEC).then_some(())
            },
        );
    };

    // Minute 0: three heartbeats; the highest of each figure stays.
    at(m0 + 10 * SEC);
    beat(
        &api,
        &report("n1", 1.0, 900, &[("/", 800), (HOSTILE_MOUNT, 900)]),
    );
    at(m0 + 25 * SEC);
    beat(&api, &report("n1", 3.0, 950, &[("/", 700)]));
    at(m0 + 40 * SEC);
    beat(&api, &report("n1", 2.0, 800, &[("/", 750)]));
    // Minute 1 is empty. Minute 2: the failure detector saw the silence
    // first (the node went down), then one heartbeat.
    at(m0 + 2 * MIN + 20 * SEC);
    wait_for("n1 to be declared down", Duration::from_secs(20), || {
        let v = get_json(&api, "/api/v1/nodes");
        let n = v.as_array()?.iter().find(|n| n["node"] == "n1")?.clone();
        (n["state"] == "down").then_some(())
    });
    beat(&api, &report("n1", 0.5, 990, &[("/", 600)]));
    at(m0 + 5 * MIN + 20 * SEC);
    beat(&api, &report("n1", 4.0, 500, &[("/", 500)]));
    at(m0 + 9 * MIN + 30 * SEC);

    let d = get_json(&api, "/api/v1/nodes/n1?range=1h");
    let c = &d["charts"];
    assert_eq!(c["range"], "1h", "{c}");
    assert_eq!(c["step_ns"], MIN, "{c}");
    assert_eq!(
        series(&c["load"], m0),
        [(0, 3.0), (2, 0.5), (5, 4.0)],
        "{c}"
    );
    assert_eq!(series(&c["memory"], m0), [(0, 20.0), (2, 1.0), (5, 50.0)]);
    let disks = c["disks"].as_array().unwrap();
    let disk = |m: &str| {
        disks
            .iter()
            .find(|d| d["mount"] == m)
            .unwrap_or_else(|| panic!("{m} in {c}"))
    };
    assert_eq!(
        series(&disk("/")["points"], m0),
        [(0, 30.0), (2, 40.0), (5, 50.0)]
    );
    // A mount reported once: a single sample.
    assert_eq!(series(&disk(HOSTILE_MOUNT)["points"], m0), [(0, 10.0)]);
    assert_eq!(c["memory_total"], 1000);
    // The silence is in the states: down, then up again.
    let states: Vec<&str> = c["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"down"), "{c}");
    assert_eq!(states.last(), Some(&"up"), "{c}");

    // The page draws what its JSON twin holds, point for point.
    let html = serve.get("/nodes/n1?range=1h").unwrap();
    assert_eq!(svg_points(&html, "load-chart"), 3, "{html}");
    assert_eq!(svg_points(&html, "memory-chart"), 3);
    assert_eq!(svg_points(&html, "disk-chart"), 4);
    // The empty minutes break the line: minutes 0, 2 and 5 stand alone,
    // each with its hover dot.
    let load_svg = &html[html.find("id=\"load-chart\"").unwrap()..];
    let load_svg = &load_svg[..load_svg.find("</svg>").unwrap()];
    assert_eq!(load_svg.matches("<polyline").count(), 3, "{load_svg}");
    assert_eq!(load_svg.matches("<circle").count(), 3, "{load_svg}");
    assert!(html.contains("class=\"band band-down\""), "state shading");
    assert!(!html.contains("<b>x</b>"), "the mount is escaped");
    assert!(html.contains("/mnt/&lt;b&gt;x&lt;/b&gt;&amp;&quot;q"));
    assert!(html.contains("href=\"/nodes/n1?range=7d#charts\""));
    // A range that is not one of the three is named.
    let (code, body) = http(&api, "GET", "/api/v1/nodes/n1?range=2d", &[], b"").status_and_text();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("2d") && body.contains("1h, 1d, 7d"), "{body}");

    // Two hours on, the disk fills by 100 bytes an hour: the day view has
    // one point per ten minutes with the interval's highest, and the
    // prediction says when `/` fills (3 h after the last sample).
    at(m0 + 60 * MIN + 20 * SEC);
    beat(&api, &report("n1", 1.5, 500, &[("/", 400)]));
    at(m0 + 120 * MIN + 20 * SEC);
    beat(&api, &report("n1", 2.5, 500, &[("/", 300)]));
    let mut r2 = report("n2", 0.25, 500, &[("/", 100)]);
    r2["spool"] = json!({"files": 2, "bytes": 300, "dropped_runs": 1, "dropped_bytes": 50});
    beat(&api, &r2);
    at(m0 + 121 * MIN);
    let c = get_json(&api, "/api/v1/nodes/n1")["charts"].clone();
    assert_eq!(c["range"], "1d", "the default range");
    assert_eq!(
        series(&c["load"], m0),
        [(0, 4.0), (60, 1.5), (120, 2.5)],
        "{c}"
    );
    let root = c["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mount"] == "/")
        .unwrap()
        .clone();
    assert_eq!(
        series(&root["points"], m0),
        [(0, 50.0), (60, 60.0), (120, 70.0)]
    );
    let fills = root["fills_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("{root}"));
    assert!(
        (fills - (m0 + 300 * MIN)).abs() < 30 * MIN,
        "fills {} min after m0",
        (fills - m0) / MIN
    );
    let html = serve.get("/nodes/n1").unwrap();
    assert!(
        html.contains("class=\"forecast\""),
        "the prediction is drawn"
    );
    assert!(html.contains("/ full "), "and labelled");

    // `plumb nodes show` into a pipe: one line per interval, plain numbers.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = ok(
        plumb_in(&home)
            .args(["nodes", "show", "n1", "--collector", &api])
            .output()
            .unwrap(),
        "plumb nodes show",
    );
    let t = text(&out.stdout);
    assert!(t.contains("HISTORY: the highest per 10 minutes"), "{t}");
    let row = |m: i64| {
        let start = plumb_model::Timestamp::from_nanos(m0 + m * MIN).to_rfc3339_secs();
        t.lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no line for {start}: {t}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // LOAD, MEM%, then the disks by mount: `/` and the hostile one.
    assert_eq!(row(0), ["4.00", "50.00", "50.00", "10.00"], "{t}");
    assert_eq!(row(60), ["1.50", "50.00", "60.00", "-"], "{t}");
    assert!(
        !t.contains('█') && !t.contains('▁'),
        "no sparklines into a pipe: {t}"
    );

    // The nodes list: a sparkline per node from one read, the same values
    // in its JSON twin, and the bulky report left to the node's own JSON.
    let list = get_json(&api, "/api/v1/pages/nodes");
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(list["spark_from"], m0, "{list}");
    let n1 = &nodes[0]["spark"];
    let mut want = vec![Value::Null; 13];
    want[0] = json!(4.0);
    want[6] = json!(1.5);
    want[12] = json!(2.5);
    assert_eq!(n1["load"], Value::Array(want), "{n1}");
    assert_eq!(n1["disk"][12], 70.0, "{n1}");
    assert_eq!(nodes[1]["spark"]["load"][12], 0.3, "rounded to a tenth");
    assert!(nodes[0].get("report").is_none(), "{}", nodes[0]);
    let page = serve.get("/nodes").unwrap();
    assert_eq!(page.matches("<td class=sp><svg").count(), 2, "{page}");
    assert_eq!(page.matches("<path class=l2").count(), 2);

    // /status: the collector's own counters (the eight heartbeats, one
    // record each) and the backlog the agents reported.
    let st = get_json(&api, "/api/v1/status");
    assert_eq!(st["records_total"], 8, "{st}");
    assert_eq!(st["spool_files"], 2, "{st}");
    assert_eq!(st["spool_bytes"], 300, "{st}");
    assert_eq!(st["dropped_runs"], 1, "{st}");
    assert_eq!(st["nodes_with_backlog"], json!(["n2"]), "{st}");
    assert!(!st["per_minute"].as_array().unwrap().is_empty(), "{st}");
    let html = serve.get("/status").unwrap();
    assert!(html.contains("id=\"ingest-chart\""), "{html}");
    assert!(html.contains("href=\"/nodes/n2\""), "{html}");
    assert!(page.contains("href=\"/status\""), "linked from every page");
}

/// /status counts lines as well as records: a recorded run's output lines
/// (shipped in chunks by `plumb run`) and OTLP log records, each counted
/// once, in `lines_total` and on the page, beside a lines/s series.
#[test]
fn status_counts_the_lines_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::builder()
        .data(&tmp.path().join("srv"))
        .otlp()
        .start();
    let api = serve.api.clone();
    let st = get_json(&api, "/api/v1/status");
    assert_eq!(st["lines_total"], 0, "{st}");
    // Five lines on stdout, two on stderr, the last without a newline.
    let out = plumb_at(
        tmp.path(),
        &[
            "run",
            "--name",
            "lines",
            "--",
            "sh",
            "-c",
            "printf 'a\\nb\\nc\\nd\\ne\\n'; printf 'x\\ny' >&2",
        ],
    )
    .env("PLUMB_COLLECTOR", &api)
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("the run's 7 lines", Duration::from_secs(30), || {
        (get_json(&api, "/api/v1/status")["lines_total"] == 7).then_some(())
    });
    // Three log records over OTLP.
    let records: Vec<Value> = (0..3)
        .map(|i| json!({"timeUnixNano": (real_now() + i).to_string(), "body": {"stringValue": format!("log {i}")}}))
        .collect();
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeLogs": [{"logRecords": records}],
    }]})
    .to_string();
    let (code, text) = http(
        serve.otlp(),
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .status_and_text();
    assert_eq!(code, 200, "{text}");
    let st = get_json(&api, "/api/v1/status");
    assert_eq!(st["lines_total"], 10, "{st}");
    for r in st["per_minute"].as_array().unwrap() {
        assert!(r["lines_per_s"].is_number(), "{st}");
    }
    let html = serve.get("/status").unwrap();
    assert!(
        html.contains("<dd id=\"lines-total\">10 output lines and log records"),
        "{html}"
    );
    assert!(html.contains("lines/s"), "the lines series' legend: {html}");
}
