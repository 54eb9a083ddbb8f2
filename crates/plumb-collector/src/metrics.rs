//! `/metrics`: the collector's Prometheus registry.
//!
//! Route modules add their own metric families with [`Metrics::register`]
//! at startup, and values that live in the store (runs by state, nodes by
//! state) are refreshed at scrape time by closures added with
//! [`Metrics::on_scrape`], which run on a read-only store.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};

/// A closure that refreshes gauges from the store before a scrape.
pub type ScrapeHook =
    Arc<dyn Fn(&dyn plumb_store::Backend) -> plumb_store::Result<()> + Send + Sync>;

/// Labels of per-endpoint metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The ingest endpoint, e.g. `spool`, `otlp_logs`.
    pub endpoint: String,
}

/// Labels of per-endpoint, per-outcome request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The ingest endpoint.
    pub endpoint: String,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels of by-state gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state's name.
    pub state: String,
}

/// The collector's metrics. Cheap to clone; every handle is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    hooks: Arc<Mutex<Vec<ScrapeHook>>>,
    /// Ingest requests by endpoint and status.
    pub ingest_requests: Family<RequestLabels, Counter>,
    /// Records stored (deduplicated or not) by endpoint.
    pub ingest_records: Family<EndpointLabels, Counter>,
    /// Output lines (in spooled chunks) and OTLP log records received.
    pub ingest_lines: Counter,
    /// Request body bytes received by endpoint (as sent, before gunzip).
    pub ingest_bytes: Family<EndpointLabels, Counter>,
    /// Seconds from request to acknowledgement, by endpoint.
    pub ingest_latency: Family<EndpointLabels, Histogram>,
    /// Stored runs by state (refreshed at scrape time).
    pub runs: Family<StateLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s: ingest acknowledgements span fsync-bound
    // milliseconds up to seconds under overload.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the collector's own metrics (prefix `plumb_`).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("plumb");
        let ingest_requests = Family::<RequestLabels, Counter>::default();
        let ingest_records = Family::<EndpointLabels, Counter>::default();
        let ingest_bytes = Family::<EndpointLabels, Counter>::default();
        let ingest_lines = Counter::default();
        let ingest_latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let runs = Family::<StateLabels, Gauge>::default();
        registry.register(
            "ingest_requests",
            "Ingest requests by endpoint and HTTP status",
            ingest_requests.clone(),
        );
        registry.register(
            "ingest_records",
            "Records received by ingest endpoint (before deduplication)",
            ingest_records.clone(),
        );
        registry.register(
            "ingest_lines",
            "Output lines and OTLP log records received (before deduplication)",
            ingest_lines.clone(),
        );
        registry.register_with_unit(
            "ingest",
            "Request body bytes received by ingest endpoint, as sent",
            prometheus_client::registry::Unit::Bytes,
            ingest_bytes.clone(),
        );
        registry.register_with_unit(
            "ingest_latency",
            "Time from request to acknowledgement by ingest endpoint",
            prometheus_client::registry::Unit::Seconds,
            ingest_latency.clone(),
        );
        registry.register("runs", "Stored runs by state", runs.clone());
        let m = Metrics {
            registry: Arc::new(Mutex::new(registry)),
            hooks: Arc::new(Mutex::new(Vec::new())),
            ingest_requests,
            ingest_records,
            ingest_lines,
            ingest_bytes,
            ingest_latency,
            runs,
        };
        let gauge = m.runs.clone();
        m.on_scrape(Arc::new(move |store| {
            for (state, n) in store.count_runs_by_state()? {
                gauge
                    .get_or_create(&StateLabels {
                        state: state.as_str().to_string(),
                    })
                    .set(n as i64);
            }
            Ok(())
        }));
        m
    }

    /// Adds a metric (family) under `plumb_<name>`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }

    /// Adds a closure run on a read-only store before every scrape.
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Runs the scrape hooks and encodes everything in the text format.
    pub async fn render(&self, db: &crate::Db) -> Result<String, ApiError> {
        let hooks: Vec<ScrapeHook> = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        db.read(move |store| {
            for h in &hooks {
                h(store)?;
            }
            Ok(())
        })
        .await?;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().unwrap_or_else(|p| p.into_inner()),
        )
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
        Ok(openmetrics_to_prometheus(&out))
    }

    /// Records one finished ingest request.
    pub fn observe_ingest(
        &self,
        endpoint: &str,
        code: u16,
        body_bytes: u64,
        records: u64,
        seconds: f64,
    ) {
        let ep = EndpointLabels {
            endpoint: endpoint.to_string(),
        };
        self.ingest_requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                code,
            })
            .inc();
        self.ingest_bytes.get_or_create(&ep).inc_by(body_bytes);
        self.ingest_records.get_or_create(&ep).inc_by(records);
        self.ingest_latency.get_or_create(&ep).observe(seconds);
    }
}

/// Rewrites OpenMetrics text (what prometheus-client writes) as the
/// Prometheus text format 0.0.4, which every scraper and `promtool check
/// metrics` read: counter families are named with their `_total` suffix,
/// and the `# UNIT` and `# EOF` lines, unknown to that format, are dropped.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `GET /metrics` (viewer).
pub async fn handler(
    _: crate::auth::Viewer,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let text = state.metrics.render(&state.db).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
