//! The dashboard's scene in `plumb demo`: every page of a running collector
//! fetched once (so a broken page shows up in the demo), then where to open
//! it in a browser.

use crate::out::outln;
use anyhow::{Context, Result};
use std::time::Instant;

/// The pages a user opens first, with what each shows.
const PAGES: &[(&str, &str)] = &[
    (
        "/runs",
        "runs over time by state (click a bar), filters such as `state:failed since:2h`",
    ),
    (
        "/jobs/nightly",
        "a job's history: every run's duration, the p50-p95 band, failures per day",
    ),
    (
        "/nodes/demo-node-4",
        "a node, and the software where it differs from its group",
    ),
    (
        "/nodes",
        "nodes: state, load, memory, disks, fingerprint outliers",
    ),
    ("/errors", "error groups, new and regressed"),
    ("/alerts", "firing and resolved alerts, rules"),
    (
        "/timeline?grep=plumb.msg.",
        "one timeline, a lane per host, each corrected by its clock offset",
    ),
    (
        "/search?q=error",
        "every line of output and logs containing `error`",
    ),
];

/// Fetches each dashboard page of the collector at `collector_url` once
/// and prints its URL, size and time, then the address to open.
pub fn demo_scene(collector_url: &str) -> Result<()> {
    let base = collector_url.trim_end_matches('/');
    let client = plumb_http::Client::new(&plumb_http::Config::new(base))
        .context("cannot reach the collector for the dashboard scene")?;
    outln!("== the web dashboard, served by plumb serve on the same port as its API");
    for (path, what) in PAGES {
        let t = Instant::now();
        let body = client
            .get(path)
            .send()
            .with_context(|| format!("the dashboard page {base}{path} failed"))?
            .body;
        outln!(
            "  {base}{path:<18} {:>6} KiB in {:>4} ms  {what}",
            body.len() / 1024,
            t.elapsed().as_millis()
        );
    }
    outln!(
        "open {base}/ in a browser (press / to search; every page has a JSON twin under /api/v1)"
    );
    Ok(())
}
