//! The collector's query API as a client sees it: [`Client`] (the one
//! HTTP client, [`plumb_http::Client`], with the calls the CLI needs) and
//! [`RemoteStore`], the [`plumb_store::RunStore`] of a remote collector, so
//! the CLI reads a collector exactly as it reads the local store.
//!
//! HTTPS certificates are verified against Mozilla's roots, or only against
//! the CA in `ca_cert` when one is given (a private CA).

use crate::runs::{CURSOR_HEADER, OUTPUT_MEDIA_TYPE, SPOOL_MEDIA_TYPE};
use plumb_http::{HeaderMap, encode_segment as path_segment};
use plumb_model::telemetry::{Hit, LogLine, Trace};
use plumb_model::{Fingerprint, Run, Stream, Timestamp, Uuid};
use plumb_store::spool::ImportStats;
use plumb_store::{OutputCursor, OutputSink, RunFilter, RunStore, RunSummary, SearchOptions};

/// Where the collector is and how to reach it: the one client's settings.
pub type ClientConfig = plumb_http::Config;

/// What a request to the collector can fail with: the one client's error,
/// which keeps the URL, the status and the collector's message.
pub type ClientError = plumb_http::Error;

/// What reading a remote collector as a [`RunStore`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The request failed or the collector refused it.
    #[error(transparent)]
    Http(#[from] ClientError),
    /// A run's output came, but could not be written where it was asked
    /// to go (a closed pipe).
    #[error("cannot write the output of run {run}")]
    Write {
        /// The run.
        run: Uuid,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    /// The HTTP status, when the collector answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Http(e) => e.status(),
            RemoteError::Write { .. } => None,
        }
    }
}

/// A connection to one collector. Cheap to clone; its `Debug` hides the
/// token.
#[derive(Debug, Clone)]
pub struct Client {
    http: plumb_http::Client,
}

impl From<plumb_http::Client> for Client {
    /// The collector's calls over a client made elsewhere (the CLI's,
    /// with its token and CA).
    fn from(http: plumb_http::Client) -> Client {
        Client { http }
    }
}

/// The largest answer read (output of a big run comes in one answer).
const MAX_ANSWER: u64 = 1 << 30;

impl Client {
    /// A client for `config`; reads the CA file now, so a bad path is
    /// reported at once.
    pub fn new(config: &ClientConfig) -> Result<Client, ClientError> {
        Ok(Client {
            http: plumb_http::Client::new(config)?,
        })
    }

    /// The client underneath, for requests of other shapes.
    pub fn http(&self) -> &plumb_http::Client {
        &self.http
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.http.base()
    }

    /// GET `path` with `query`, as raw bytes and the response headers.
    pub fn get_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(Vec<u8>, HeaderMap), ClientError> {
        let resp = self
            .http
            .get(path)
            .queries(query)
            .max_body(MAX_ANSWER)
            .send()?;
        Ok((resp.body, resp.headers))
    }

    /// GET `path` with `query`, parsed as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.http.get(path).queries(query).send()?.json()
    }

    /// POSTs spool frames (gzipped) to native ingest.
    pub fn post_frames(&self, frames: &[u8]) -> Result<ImportStats, ClientError> {
        self.http
            .post("/api/v1/ingest/spool")
            .bytes(SPOOL_MEDIA_TYPE, frames.to_vec())
            .gzip()
            .send()?
            .json()
    }
}

/// A remote collector seen as a [`RunStore`].
#[derive(Debug, Clone)]
pub struct RemoteStore {
    client: Client,
}

impl RemoteStore {
    /// Reads through `client`.
    pub fn new(client: Client) -> RemoteStore {
        RemoteStore { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The answer of `GET /api/v1/runs/{ref}`; its fingerprint is fetched
/// separately by [`RunStore::run_fingerprint`].
#[derive(serde::Deserialize)]
struct Shown {
    run: Run,
}

impl RunStore for RemoteStore {
    type Error = RemoteError;

    fn node_bench_before(
        &self,
        node: &str,
        before: Timestamp,
    ) -> Result<Option<plumb_store::bench::BenchRow>, RemoteError> {
        let path = format!("/api/v1/nodes/{}/bench", plumb_http::encode_segment(node));
        let v: Vec<crate::bench::BenchEntry> = self.client.get_json(
            &path,
            &[
                ("before", before.as_nanos().to_string()),
                ("limit", "1".into()),
            ],
        )?;
        Ok(v.into_iter().next().map(|e| plumb_store::bench::BenchRow {
            node: e.node,
            at: e.at,
            bench: e.bench,
        }))
    }

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunSummary>, RemoteError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(n) = &f.name {
            q.push(("name", n.clone()));
        }
        if let Some(h) = &f.host {
            q.push(("host", h.clone()));
        }
        if f.failed {
            q.push(("failed", "true".into()));
        }
        if let Some(s) = f.state {
            q.push(("state", s.as_str().into()));
        }
        if let Some(t) = f.since {
            q.push(("since", t.as_nanos().to_string()));
        }
        for (k, v) in &f.tags {
            q.push(("tag", format!("{k}={v}")));
        }
        q.push(("limit", f.limit.to_string()));
        Ok(self.client.get_json("/api/v1/runs", &q)?)
    }

    fn output_horizon(&self) -> Result<Option<plumb_model::Timestamp>, RemoteError> {
        match self
            .client
            .get_json::<crate::retention::RetentionView>("/api/v1/retention", &[])
        {
            Ok(r) => Ok(r.output_before_ns.map(plumb_model::Timestamp::from_nanos)),
            // A collector older than retention dropped nothing.
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn runs_chart(
        &self,
        rq: &plumb_store::dash::RunQuery,
    ) -> Result<plumb_model::chart::RunsChart, RemoteError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(n) = &rq.name {
            q.push(("name", n.clone()));
        }
        if let Some(h) = &rq.host {
            q.push(("host", h.clone()));
        }
        if let Some(s) = rq.state {
            q.push(("state", s.as_str().into()));
        }
        if let Some(t) = rq.since {
            q.push(("since", t.as_nanos().to_string()));
        }
        if let Some(t) = rq.until {
            q.push(("until", t.as_nanos().to_string()));
        }
        for (k, v) in &rq.tags {
            q.push(("tag", format!("{k}={v}")));
        }
        for w in &rq.text {
            q.push(("text", w.clone()));
        }
        Ok(self.client.get_json("/api/v1/runs/chart", &q)?)
    }

    fn resolve(&self, reference: &str) -> Result<Uuid, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Uuid,
        }
        let id: Id = self
            .client
            .get_json(&format!("/api/v1/runs/{}/id", path_segment(reference)), &[])?;
        Ok(id.id)
    }

    fn get_run(&self, id: Uuid) -> Result<Run, RemoteError> {
        let s: Shown = self.client.get_json(&format!("/api/v1/runs/{id}"), &[])?;
        Ok(s.run)
    }

    fn run_fingerprint(&self, run: &Run) -> Result<Option<Fingerprint>, RemoteError> {
        let Some(hash) = &run.fingerprint else {
            return Ok(None);
        };
        match self
            .client
            .get_json(&format!("/api/v1/fingerprints/{}", path_segment(hash)), &[])
        {
            Ok(fp) => Ok(Some(fp)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn trace(&self, reference: &str) -> Result<Trace, RemoteError> {
        Ok(self
            .client
            .get_json(&format!("/api/v1/traces/{}", path_segment(reference)), &[])?)
    }

    fn run_logs(&self, id: Uuid) -> Result<Vec<LogLine>, RemoteError> {
        Ok(self
            .client
            .get_json(&format!("/api/v1/telemetry/runs/{id}/logs"), &[])?)
    }

    fn search(&self, o: &SearchOptions) -> Result<Vec<Hit>, RemoteError> {
        let mut q: Vec<(&str, String)> =
            vec![("text", o.text.clone()), ("mode", o.mode.as_str().into())];
        if o.ignore_case {
            q.push(("ignore_case", "true".into()));
        }
        if let Some(h) = &o.host {
            q.push(("host", h.clone()));
        }
        if let Some(r) = &o.run {
            q.push(("run", r.to_string()));
        }
        if let Some(s) = o.stream {
            q.push(("stream", s.as_str().into()));
        }
        if !o.kinds.is_empty() {
            let kinds: Vec<&str> = o.kinds.iter().map(|k| k.as_str()).collect();
            q.push(("kind", kinds.join(",")));
        }
        if let Some(t) = o.since {
            q.push(("since", t.as_nanos().to_string()));
        }
        if let Some(t) = o.until {
            q.push(("until", t.as_nanos().to_string()));
        }
        q.push(("limit", o.limit.to_string()));
        Ok(self.client.get_json("/api/v1/search", &q)?)
    }

    fn replay_output(
        &self,
        run_id: Uuid,
        only: Option<Stream>,
        cursor: &mut OutputCursor,
        out: &mut OutputSink<'_>,
    ) -> Result<(), RemoteError> {
        let path = format!("/api/v1/runs/{run_id}/output");
        let url = self.client.http.url(&path);
        let mut q: Vec<(&str, String)> = vec![(
            "cursor",
            serde_json::to_string(cursor).expect("cursor serializes"),
        )];
        if let Some(s) = only {
            q.push(("stream", s.as_str().into()));
        }
        let (body, headers) = self.client.get_raw(&path, &q)?;
        let decode = |message: String| {
            RemoteError::Http(ClientError::Decode {
                service: "collector",
                url: url.clone(),
                message,
            })
        };
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct != OUTPUT_MEDIA_TYPE {
            return Err(decode(format!(
                "content type `{ct}`, expected {OUTPUT_MEDIA_TYPE}"
            )));
        }
        crate::runs::decode_replayed(&body, &mut *out).map_err(|e| match e {
            crate::runs::DecodeError::Malformed(message) => decode(message),
            crate::runs::DecodeError::Write(source) => RemoteError::Write {
                run: run_id,
                source,
            },
        })?;
        let next = headers
            .get(CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| decode(format!("no {CURSOR_HEADER} header")))?;
        *cursor = serde_json::from_str(next).map_err(|e| decode(format!("bad cursor: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_config_client_or_store_hides_the_token() {
        let mut config = ClientConfig::new("http://127.0.0.1:9");
        config.token = Some(plumb_model::Secret::new("viewer-secret-77ab"));
        let client = Client::new(&config).unwrap();
        let store = RemoteStore::new(client.clone());
        for shown in [
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{store:#?}"),
        ] {
            assert!(!shown.contains("viewer-secret-77ab"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
