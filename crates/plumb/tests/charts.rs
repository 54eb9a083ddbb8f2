//! Charts end to end: a store seeded with runs spread over three days, a
//! real `plumb serve` on it, and what the dashboard's JSON twins, its pages
//! and `plumb ls --chart` (local and through the collector) say, checked
//! against the runs written and the store's own statistics.

mod support;

use plumb_model::{Run, RunState, Timestamp};
use plumb_store::prelude::*;
use serde_json::Value;
use support::*;

fn url_enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs of `runs` that `keep` accepts, started in `[start, end)`.
fn count(runs: &[Run], keep: &dyn Fn(&Run) -> bool, start: i64, end: i64) -> u64 {
    runs.iter()
        .filter(|r| keep(r) && r.started.as_nanos() >= start && r.started.as_nanos() < end)
        .count() as u64
}

/// Every bar of a chart (JSON) against a direct count of the runs.
#[track_caller]
fn check_bars(chart: &Value, runs: &[Run], keep: &dyn Fn(&Run) -> bool) -> u64 {
    let bars = chart["bars"].as_array().expect("bars");
    assert!(!bars.is_empty(), "{chart}");
    let mut total = 0;
    for b in bars {
        let (s, e) = (b["start"].as_i64().unwrap(), b["end"].as_i64().unwrap());
        assert_eq!(e - s, chart["interval_ns"].as_i64().unwrap());
        let want = count(runs, keep, s, e);
        assert_eq!(b["total"].as_u64().unwrap(), want, "bar at {s}: {b}");
        for c in b["counts"].as_array().unwrap() {
            let state: RunState = c["state"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                c["n"].as_u64().unwrap(),
                count(runs, &|r| keep(r) && r.state == state, s, e),
                "{b}"
            );
        }
        total += want;
    }
    assert_eq!(chart["total"].as_u64().unwrap(), total, "{chart}");
    total
}

#[test]
fn charts_count_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runs = seed_chart_runs(&data);
    let serve = Serve::start(&data);
    let api = serve.api.clone();

    // /runs: every run, from the first one's bucket; empty intervals are
    // bars too.
    let page = get_json(&api, "/api/v1/pages/runs");
    assert!(page["runs"].is_array(), "the page keeps its shape: {page}");
    let chart = &page["chart"];
    assert_eq!(check_bars(chart, &runs, &|_| true), runs.len() as u64);
    assert!(
        chart["bars"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["total"] == 0),
        "a day without runs: {chart}"
    );
    // The run written as running then failed is counted once, as failed.
    let failed = runs.iter().filter(|r| r.state == RunState::Failed).count() as u64;
    let failed_in_chart: u64 = chart["bars"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["counts"].as_array().unwrap())
        .filter(|c| c["state"] == "failed")
        .map(|c| c["n"].as_u64().unwrap())
        .sum();
    assert_eq!(failed_in_chart, failed);
    assert!(
        !chart.to_string().contains("\"running\""),
        "nothing is left counted as running: {chart}"
    );

    // A filter: name and state; the API the CLI reads says the same.
    let q = url_enc("name:nightly state:failed");
    let chart = &get_json(&api, &format!("/api/v1/pages/runs?q={q}"))["chart"];
    let keep = |r: &Run| r.name == "nightly" && r.state == RunState::Failed;
    assert_eq!(check_bars(chart, &runs, &keep), failed);
    let chart2 = get_json(&api, "/api/v1/runs/chart?name=nightly&state=failed");
    assert_eq!(&chart2, chart);
    // A host filter reads the runs themselves and agrees.
    let chart = get_json(&api, "/api/v1/runs/chart?host=seed-node");
    assert_eq!(check_bars(&chart, &runs, &|_| true), runs.len() as u64);
    assert!(chart.get("partial_from").is_none(), "{chart}");
    // A bad parameter is named.
    let (code, body) =
        http(&api, "GET", "/api/v1/runs/chart?colour=red", &[], b"").status_and_text();
    assert_eq!(code, 400);
    assert!(body.contains("colour"), "{body}");

    // A bar's link narrows the list to exactly that bar's runs.
    let chart = &get_json(&api, "/api/v1/pages/runs")["chart"];
    let bar = chart["bars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["total"].as_u64().unwrap() >= 2)
        .expect("a bar of two runs or more");
    let (s, e) = (bar["start"].as_i64().unwrap(), bar["end"].as_i64().unwrap());
    let html = serve.get("/runs").unwrap();
    let narrowed = format!(
        "since:{} until:{}",
        Timestamp::from_nanos(s).to_rfc3339_secs(),
        Timestamp::from_nanos(e).to_rfc3339_secs()
    );
    assert!(
        html.contains(&format!("href=\"/runs?q={}\"", url_enc(&narrowed))),
        "the bar links to its interval"
    );
    let listed = get_json(
        &api,
        &format!("/api/v1/pages/runs?q={}", url_enc(&narrowed)),
    );
    let listed = listed["runs"].as_array().unwrap();
    assert_eq!(listed.len() as u64, bar["total"].as_u64().unwrap());
    for r in listed {
        let t = r["started"].as_i64().unwrap();
        assert!(s <= t && t < e, "{r}");
    }
    // Hostile names: escaped in the chart and the list, never markup.
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(html.contains("<svg class=\"chart\" id=\"runs-chart\""));

    // A job's history: every run of the name, the band is the slow-run
    // statistics, the failure rate per day is a direct count.
    let job = get_json(&api, "/api/v1/pages/jobs/nightly");
    let nightly: Vec<&Run> = runs.iter().filter(|r| r.name == "nightly").collect();
    assert_eq!(job["runs"].as_array().unwrap().len(), nightly.len());
    let store = plumb_store::Store::open_read_only(&data).unwrap();
    let window = plumb_model::insights::SlowConfig::default().window;
    let stats = store.duration_stats("nightly", window).unwrap();
    assert_eq!(job["stats"]["n"].as_u64().unwrap() as usize, stats.n);
    assert_eq!(job["stats"]["p50_s"].as_f64().unwrap(), stats.p50_s);
    assert_eq!(job["stats"]["p95_s"].as_f64().unwrap(), stats.p95_s);
    assert!(stats.n > 10 && stats.p95_s > stats.p50_s, "{stats:?}");
    // Runs longer than usual stand out, by the slow-run test.
    let cfg = plumb_model::insights::SlowConfig::default();
    let mut slow = 0;
    for p in job["runs"].as_array().unwrap() {
        let d = p["duration_s"].as_f64().unwrap();
        let want =
            stats.n >= cfg.min_history && d >= cfg.min_elapsed_s && d > cfg.factor * stats.p95_s;
        assert_eq!(p["longer_than_usual"].as_bool().unwrap(), want, "{p}");
        slow += usize::from(want);
    }
    assert!(slow > 0, "the slowest runs are longer than the p95: {job}");
    const DAY: i64 = 86_400_000_000_000;
    let days = job["days"].as_array().unwrap();
    assert!(days.len() >= 3, "{job}");
    for d in days {
        let start = d["day"].as_i64().unwrap();
        let in_day =
            |r: &&&Run| r.started.as_nanos() >= start && r.started.as_nanos() < start + DAY;
        let all = nightly.iter().filter(in_day).count() as u64;
        let bad = nightly
            .iter()
            .filter(in_day)
            .filter(|r| r.state.is_failure())
            .count() as u64;
        assert_eq!(d["runs"].as_u64().unwrap(), all, "{d}");
        assert_eq!(d["failed"].as_u64().unwrap(), bad, "{d}");
    }
    assert!(
        days.iter().any(|d| d["runs"] == 0),
        "the day without runs is there: {job}"
    );
    let html = serve.get("/jobs/nightly").unwrap();
    assert_eq!(
        html.matches("<g class=\"point").count(),
        nightly.len(),
        "a point per run"
    );
    assert!(html.contains("id=\"job-failures\""));
    assert_eq!(html.matches("<g class=\"point slow\"").count(), slow);
    // The run page marks its run and links to the job.
    let id = nightly[3].id;
    let html = serve.get(&format!("/runs/{id}")).unwrap();
    assert!(html.contains("href=\"/jobs/nightly\""), "the job link");
    assert_eq!(html.matches("<g class=\"current\"").count(), 1);
    let rv = get_json(&api, &format!("/api/v1/pages/runs/{id}"));
    assert_eq!(rv["history"]["stats"], job["stats"]);
    assert_eq!(rv["duration"]["stats"]["p95_s"], job["stats"]["p95_s"]);
    // A hostile name's job page and an unknown job.
    let html = serve
        .get(&format!("/jobs/{}", url_enc(HOSTILE_NAME)))
        .unwrap();
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(html.contains("&lt;script&gt;alert(&#39;chart&#39;)"));
    let (code, _) = http(&api, "GET", "/jobs/nobody-by-this-name", &[], b"").status_and_text();
    assert_eq!(code, 404);

    // plumb ls --chart: one line per interval off a terminal, the same
    // counts locally and through the collector.
    let local = plumb_in(&data)
        .args(["ls", "--chart", "--name", "nightly"])
        .output()
        .unwrap();
    let local = text(&ok(local, "plumb ls --chart").stdout);
    let remote = plumb_in(dir.path())
        .args(["ls", "--chart", "--name", "nightly", "--collector", &api])
        .output()
        .unwrap();
    let remote = text(&ok(remote, "plumb ls --chart --collector").stdout);
    let lines: Vec<&str> = local.lines().collect();
    assert!(
        lines[0].starts_with("START") && lines[0].contains("FAILED"),
        "{local}"
    );
    let mut sum = 0;
    for l in &lines[1..] {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (s, e) = (
            Timestamp::parse_rfc3339(cols[0]).unwrap().as_nanos(),
            Timestamp::parse_rfc3339(cols[1]).unwrap().as_nanos(),
        );
        let n: u64 = cols[2].parse().unwrap();
        assert_eq!(n, count(&runs, &|r| r.name == "nightly", s, e), "{l}");
        sum += n;
    }
    assert_eq!(sum, nightly.len() as u64);
    // Through the collector the same lines, bar the moment "now" was read
    // (the last interval may end later).
    let rl: Vec<&str> = remote.lines().collect();
    assert!(rl.len() >= lines.len() - 1, "{remote}");
    assert_eq!(rl[..lines.len() - 1], lines[..lines.len() - 1], "{remote}");
    // --failed keeps the failure states only.
    let out = plumb_in(&data)
        .args(["ls", "--chart", "--failed", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&ok(out, "ls --chart --failed").stdout).unwrap();
    let want = runs.iter().filter(|r| r.state.is_failure()).count() as u64;
    assert_eq!(v["total"].as_u64().unwrap(), want, "{v}");
    // Nothing matches: exit 1, like grep.
    let out = plumb_in(&data)
        .args(["ls", "--chart", "--name", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A collector that is down is named.
    let out = plumb_in(dir.path())
        .args(["ls", "--chart", "--collector", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
}
